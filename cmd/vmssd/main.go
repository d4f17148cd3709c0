// Command vmssd is the vmssd server: an Azure Resource Manager compatible
// virtual machine scale set service. With no arguments it starts on its
// embedded defaults (HTTPS on 127.0.0.1:8443, data in ~/.vmssd). The hidden
// "guest" subcommand is the demo guest program process instances run, and
// "demo-image" writes a demo image artifact (healthy or not) for testing
// upgrades. "backup --out FILE" writes a backup of a data directory (hot,
// through the running server's control socket) and "restore --from FILE"
// restores one into an empty data directory.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/guest"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vmssd:", err)
		os.Exit(1)
	}
}

func defaultDataDir() string {
	if d := os.Getenv("VMSSD_DATA_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".vmssd"
	}
	return filepath.Join(home, ".vmssd")
}

func run(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) > 0 {
		switch args[0] {
		case "guest":
			logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
			return guest.Run(ctx, args[1:], os.Getenv, logger)
		case "demo-image":
			return demoImage(args[1:])
		case "backup":
			return backupCmd(ctx, args[1:])
		case "restore":
			return restoreCmd(ctx, args[1:])
		}
	}
	fs := flag.NewFlagSet("vmssd", flag.ContinueOnError)
	var cfg server.Config
	fs.StringVar(&cfg.DataDir, "data-dir", defaultDataDir(), "data directory (state, images, instances, TLS, credentials)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "HTTPS listen address")
	fs.StringVar(&cfg.Location, "location", "local", "the cloud's location name")
	fs.StringVar(&cfg.Store, "store", "bolt", "state store: bolt or memory")
	fs.DurationVar(&cfg.HealthGrace, "health-grace", 30*time.Second, "application health grace period")
	fs.StringVar(&cfg.VMs, "vms", "auto", "virtual machine images: auto (when QEMU is installed) or off")
	fs.StringVar(&cfg.Accel, "accel", "auto", "VM acceleration: auto (KVM only where proven usable), kvm or tcg")
	fs.BoolVar(&cfg.UnsandboxedProcessImages, "unsandboxed-process-images", false, "where the host cannot sandbox process instances (no runc, not root), run operator images as plain processes (tenant images are refused)")
	fs.DurationVar(&cfg.BootDeadline, "boot-deadline", 180*time.Second, "a VM that has not booted by then is stopped and reported failed")
	fs.Float64Var(&cfg.MemoryOvercommit, "memory-overcommit", 1.0, "how far VM memory may exceed the host's memory")
	fs.BoolVar(&cfg.ServeMarketplace, "serve-marketplace", false, "serve this cloud's platform images and gallery items read-only as an upstream marketplace at /marketplace/v1/ (docs/marketplace.md)")
	fs.StringVar(&cfg.MarketplaceKey, "marketplace-key", os.Getenv("VMSSD_MARKETPLACE_KEY"), "the credential downstream clouds must present to the served marketplace (default $VMSSD_MARKETPLACE_KEY; empty: none)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "also serve Prometheus /metrics on this plain-HTTP address without authentication, e.g. 127.0.0.1:9464 (default off; the API serves /metrics to operator tokens)")
	fs.IntVar(&cfg.MaxConnections, "max-connections", server.DefaultMaxConnections, "cap on open API connections (-1: no cap)")
	fs.DurationVar(&cfg.HeaderTimeout, "header-timeout", server.DefaultHeaderTimeout, "time a connection has to complete TLS and send its request headers")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", server.DefaultIdleTimeout, "idle keep-alive connections are closed after this")
	fs.Float64Var(&cfg.TokenRateLimit, "token-rate-limit", auth.DefaultTokenRatePerAddress, "token requests per second and client address (-1: no limit)")
	fs.Func("public-ip-pool", "comma-separated IPv4 prefixes public IP addresses come from (default 127.0.1.0/24,127.0.2.0/23: loopback)", func(v string) (err error) {
		cfg.PublicIPPool, err = network.ParsePool(v)
		return err
	})
	debug := fs.Bool("debug", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	s, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("vmssd is listening on %s\n", s.URL)
	fmt.Printf("  CA certificate:     %s\n", s.CAFile)
	fmt.Printf("  vmssctl config:     %s\n", s.ConfigFile)
	fmt.Printf("  operator client id: %s (secret in %s)\n", s.Client.ClientID, filepath.Join(cfg.DataDir, "operator.json"))
	if s.MetricsURL != "" {
		fmt.Printf("  metrics:            %s (plain HTTP, no authentication)\n", s.MetricsURL)
	}
	if filepath.Clean(cfg.DataDir) != filepath.Clean(defaultDataDir()) {
		fmt.Printf("  use it with:        export VMSSCTL_CONFIG=%s\n", s.ConfigFile)
	} else {
		fmt.Printf("  vmssctl finds it without flags; try: vmssctl vmss list\n")
	}
	fmt.Print(s.AzureCLIBanner())
	fmt.Printf("  stop:               Ctrl-C; instances keep running (re-adopted at the next start): delete scale sets first to stop them\n")
	<-ctx.Done()
	fmt.Println("vmssd: shutting down (instances keep running and are re-adopted at the next start)")
	s.Close()
	return nil
}

func demoImage(args []string) error {
	fs := flag.NewFlagSet("demo-image", flag.ContinueOnError)
	version := fs.String("version", "1.0.0", "image version the guest reports")
	unhealthy := fs.Bool("unhealthy", false, "build an image whose health probe fails")
	delay := fs.Duration("startup-delay", 0, "time the guest reports Initializing before its verdict")
	out := fs.String("o", "", "output file (tar.gz)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("demo-image: -o is required")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := artifact.BuildDemo(f, artifact.DemoOptions{Version: *version, Healthy: !*unhealthy, StartupDelay: *delay}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
