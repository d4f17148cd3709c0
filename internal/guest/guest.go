// Package guest is vmssd's demo guest program: what a demo image's instance
// runs (the host starts it as "vmssd guest", see artifact.BuildDemo). Like
// the application inside a real VM, it serves an application health probe
// and an instance metadata endpoint, both on 127.0.0.1:$VMSSD_PORT (on
// every address of the instance when $VMSSD_PRIVATE_IP says it is on a
// virtual network, so that its neighbours reach it too):
//
//	GET /health              200 {"status":"Healthy",...} once started, if the
//	                         image is healthy; 503 "Initializing" during the
//	                         image's startup delay; 503 "Unhealthy" otherwise
//	GET /metadata/instance   an Azure IMDS-like document built from the
//	                         instance's metadata ({"compute":{...}})
//
// Its behaviour comes from the instance's disk, $VMSSD_DISK/etc/vmssd-guest.json
// (an artifact.GuestConfig), which is re-read on every probe, so editing it in
// a running instance's disk flips its health. The metadata comes from the
// file named by $VMSSD_METADATA (a driver.Metadata), also re-read per request.
package guest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/driver"
)

// ReadyPrefix starts the line the guest prints on stdout once it listens,
// like a boot message on a serial console:
// "GUEST-READY version=<image version> port=<port>".
const ReadyPrefix = "GUEST-READY"

// Health statuses, as the Azure application health extension names them.
const (
	StatusInitializing = "Initializing"
	StatusHealthy      = "Healthy"
	StatusUnhealthy    = "Unhealthy"
)

// EnvPrivateIP is the instance's private IP, set by a driver that attached
// it to a virtual network (the process driver's containers in bridge mode).
const EnvPrivateIP = "VMSSD_PRIVATE_IP"

// shutdownTimeout bounds how long in-flight requests may delay the exit.
const shutdownTimeout = 5 * time.Second

// Run runs the guest until ctx is done, then stops serving and returns nil.
// Its settings come from the environment (env, os.Getenv when nil):
// VMSSD_PORT (0 picks a free port), VMSSD_METADATA and VMSSD_DISK; the flags
// -port, -metadata and -disk in args override them. With VMSSD_PRIVATE_IP
// (or -private-ip) it listens on every address rather than on 127.0.0.1
// only: the instance's address may be configured after the guest starts. It fails at once if a
// setting is missing or the disk's guest config or the metadata cannot be
// read. It prints the ready line (ReadyPrefix) to stdout once it listens.
func Run(ctx context.Context, args []string, env func(string) string, logger *slog.Logger) error {
	return run(ctx, args, env, os.Stdout, logger)
}

// HealthResponse is the body of GET /health.
type HealthResponse struct {
	Status string `json:"status"`
	// ApplicationHealthState repeats Status under the name the Azure
	// application health extension reads.
	ApplicationHealthState string `json:"applicationHealthState"`
	ImageVersion           string `json:"imageVersion"`
	InstanceID             string `json:"instanceId"`
	VMID                   string `json:"vmId"`
}

type settings struct {
	port      int
	metadata  string
	disk      string
	privateIP netip.Addr // invalid (zero) when not on a virtual network
}

// listenHost is the address the guest listens on: loopback, or every
// address when the instance is on a virtual network.
func (s settings) listenHost() string {
	switch {
	case !s.privateIP.IsValid():
		return "127.0.0.1"
	case s.privateIP.Is4():
		return "0.0.0.0"
	default:
		return "::"
	}
}

func parseSettings(args []string, env func(string) string) (settings, error) {
	fs := flag.NewFlagSet("guest", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	port := fs.String("port", env(artifact.EnvPort), "port to listen on, on 127.0.0.1 (default $"+artifact.EnvPort+")")
	metadata := fs.String("metadata", env(artifact.EnvMetadata), "instance metadata JSON file (default $"+artifact.EnvMetadata+")")
	disk := fs.String("disk", env(artifact.EnvDisk), "disk directory (default $"+artifact.EnvDisk+")")
	privateIP := fs.String("private-ip", env(EnvPrivateIP), "the instance's private IP on a virtual network: listen on every address (default $"+EnvPrivateIP+")")
	if err := fs.Parse(args); err != nil {
		return settings{}, err
	}
	if fs.NArg() > 0 {
		return settings{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var s settings
	switch {
	case *port == "":
		return s, fmt.Errorf("no port: set %s", artifact.EnvPort)
	case *metadata == "":
		return s, fmt.Errorf("no metadata file: set %s", artifact.EnvMetadata)
	case *disk == "":
		return s, fmt.Errorf("no disk: set %s", artifact.EnvDisk)
	}
	p, err := strconv.ParseUint(*port, 10, 16)
	if err != nil {
		return s, fmt.Errorf("port %q: want a number from 0 to 65535", *port)
	}
	s = settings{port: int(p), metadata: *metadata, disk: *disk}
	if *privateIP != "" {
		if s.privateIP, err = netip.ParseAddr(*privateIP); err != nil {
			return s, fmt.Errorf("private IP %q: want an IP address", *privateIP)
		}
	}
	return s, nil
}

func run(ctx context.Context, args []string, env func(string) string, stdout io.Writer, logger *slog.Logger) error {
	if env == nil {
		env = os.Getenv
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	set, err := parseSettings(args, env)
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	g := &guest{settings: set, logger: logger}
	cfg, err := g.readConfig()
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	md, err := g.readMetadata()
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	g.cfg, g.md = cfg, md

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(set.listenHost(), strconv.Itoa(set.port)))
	if err != nil {
		return fmt.Errorf("guest: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	g.started = time.Now()
	srv := &http.Server{
		Handler:           g.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	logger.Info("guest ready", "version", cfg.Version, "listen", ln.Addr().String(), "privateIP", set.privateIP, "healthy", cfg.Healthy,
		"startupDelay", cfg.StartupDelay, "instanceId", md.InstanceID, "vmId", md.VMID)
	if _, err := fmt.Fprintf(stdout, "%s version=%s port=%d\n", ReadyPrefix, cfg.Version, port); err != nil {
		logger.Warn("guest: cannot write the ready line", "err", err)
	}

	select {
	case err := <-errc:
		return fmt.Errorf("guest: serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("guest stopping", "cause", context.Cause(ctx))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("guest: requests still running at shutdown, closing them", "err", err)
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("guest: serve: %w", err)
	}
	return nil
}

type guest struct {
	settings
	logger  *slog.Logger
	started time.Time

	mu  sync.Mutex
	cfg artifact.GuestConfig // last good
	md  driver.Metadata      // last good
}

func (g *guest) readConfig() (artifact.GuestConfig, error) {
	name := filepath.Join(g.disk, filepath.FromSlash(artifact.GuestConfigPath))
	var c artifact.GuestConfig
	data, err := os.ReadFile(name)
	if err != nil {
		return c, fmt.Errorf("read guest config: %w", err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("guest config %s: %w", name, err)
	}
	if _, err := c.Delay(); err != nil {
		return c, fmt.Errorf("guest config %s: %w", name, err)
	}
	return c, nil
}

func (g *guest) readMetadata() (driver.Metadata, error) {
	var md driver.Metadata
	data, err := os.ReadFile(g.metadata)
	if err != nil {
		return md, fmt.Errorf("read metadata: %w", err)
	}
	if err := json.Unmarshal(data, &md); err != nil {
		return md, fmt.Errorf("metadata %s: %w", g.metadata, err)
	}
	return md, nil
}

// current re-reads the guest config and the metadata, keeping the last good
// ones when a file cannot be read (for instance while it is being replaced).
func (g *guest) current() (artifact.GuestConfig, driver.Metadata) {
	cfg, cerr := g.readConfig()
	md, merr := g.readMetadata()
	g.mu.Lock()
	defer g.mu.Unlock()
	if cerr != nil {
		g.logger.Warn("guest: keeping the last good guest config", "err", cerr)
	} else {
		g.cfg = cfg
	}
	if merr != nil {
		g.logger.Warn("guest: keeping the last good metadata", "err", merr)
	} else {
		g.md = md
	}
	return g.cfg, g.md
}

func (g *guest) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/health", getOnly(g.health))
	mux.HandleFunc("/metadata/instance", getOnly(g.instance))
	mux.HandleFunc("/metadata/instance/compute", getOnly(g.compute))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found: " + r.URL.Path})
	})
	return mux
}

// getOnly answers 405 to anything but GET and HEAD.
func getOnly(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed: " + r.Method})
			return
		}
		h(w, r)
	}
}

func (g *guest) health(w http.ResponseWriter, r *http.Request) {
	cfg, md := g.current()
	delay, _ := cfg.Delay() // validated by readConfig
	status, code := StatusHealthy, http.StatusOK
	switch {
	case time.Since(g.started) < delay:
		status, code = StatusInitializing, http.StatusServiceUnavailable
	case !cfg.Healthy:
		status, code = StatusUnhealthy, http.StatusServiceUnavailable
	}
	g.logger.Debug("health probe", "status", status, "remote", r.RemoteAddr)
	writeJSON(w, code, HealthResponse{
		Status:                 status,
		ApplicationHealthState: status,
		ImageVersion:           cfg.Version,
		InstanceID:             md.InstanceID,
		VMID:                   md.VMID,
	})
}

func (g *guest) instance(w http.ResponseWriter, r *http.Request) {
	_, md := g.current()
	writeJSON(w, http.StatusOK, InstanceDocument{Compute: newCompute(md)})
}

func (g *guest) compute(w http.ResponseWriter, r *http.Request) {
	_, md := g.current()
	writeJSON(w, http.StatusOK, newCompute(md))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}
