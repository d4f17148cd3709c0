// Package server wires vmssd together: it opens the state store, the image
// store and the TLS material in a data directory, bootstraps the operator
// credential, the default subscription and the demo images on first start,
// and runs the ARM API server, the controller and the local host.
package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/api/client"
	"github.com/vmssd/vmssd/internal/apiserver"
	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/controller"
	"github.com/vmssd/vmssd/internal/dashboard"
	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/process"
	"github.com/vmssd/vmssd/internal/driver/qemu"
	"github.com/vmssd/vmssd/internal/driver/router"
	"github.com/vmssd/vmssd/internal/fsutil"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/marketplace/syndication"
	"github.com/vmssd/vmssd/internal/metrics"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/netctl"
	"github.com/vmssd/vmssd/internal/pki"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/boltstore"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

// Config configures a server.
type Config struct {
	// DataDir holds everything vmssd keeps.
	DataDir string
	// Listen is the HTTPS address (127.0.0.1:8443; port 0 picks one).
	Listen string
	// Location is the cloud's region name.
	Location string
	// Store is "bolt" (default) or "memory".
	Store string
	// GuestBinary runs process-image guests (default: this executable).
	GuestBinary string
	// UnsandboxedProcessImages lets operator process images run as plain
	// host processes where the host cannot sandbox them (no runc, not
	// root). Tenant images are refused there either way.
	UnsandboxedProcessImages bool
	// ProcessIsolation forces how process instances run: "" (runc
	// containers), "runc" or "none" (plain processes, operator images
	// only).
	ProcessIsolation string
	// DefaultSubscription is created on first start.
	DefaultSubscription string
	// PageSize bounds list pages.
	PageSize int
	// HealthGrace is the Application Health grace period.
	HealthGrace time.Duration
	// NoDemoImages skips publishing the demo images on first start.
	NoDemoImages bool
	// VMs enables the QEMU driver for virtual machine images: "auto" (when
	// qemu-system-x86_64 is installed; the default) or "off".
	VMs string
	// Accel is the QEMU acceleration: "auto" (KVM only where proven), "kvm"
	// or "tcg".
	Accel string
	// BootDeadline bounds a VM boot (default 180s).
	BootDeadline time.Duration
	// MemoryOvercommit is how far VM memory may exceed the host's (1.0: not
	// at all).
	MemoryOvercommit float64
	// MaxImageUnpackedBytes bounds what an image artifact unpacks to
	// (default: artifact.DefaultLimits, 16 GiB); uploads are also bounded
	// by the largest OS disk of the size table and the storage quota.
	MaxImageUnpackedBytes int64
	// MaxConnections caps the API's open connections (default
	// DefaultMaxConnections; negative: no cap).
	MaxConnections int
	// HeaderTimeout, IdleTimeout and ReadTimeout bound a connection's TLS
	// handshake and request headers, its keep-alive idleness, and the
	// reading of a request body other than an upload (defaults
	// DefaultHeaderTimeout, DefaultIdleTimeout, DefaultReadTimeout).
	HeaderTimeout, IdleTimeout, ReadTimeout time.Duration
	// TokenRateLimit bounds the token endpoint's requests per second and
	// remote address (default auth.DefaultTokenRatePerAddress; negative:
	// no limit).
	TokenRateLimit float64
	// MetricsAddr, if set, is a plain-HTTP address serving /metrics
	// without authentication (e.g. 127.0.0.1:9464; port 0 picks one).
	// The API listener serves /metrics to operators either way.
	MetricsAddr string
	// DrainPeriod bounds how long a load balancer member's connections may
	// finish before a host action takes it down (default
	// netctl.DefaultDrainPeriod, shorter when the idle timeout is).
	DrainPeriod time.Duration
	// PublicIPPool is where public IP addresses come from (default
	// network.DefaultPublicPool: loopback addresses, no setup).
	PublicIPPool []netip.Prefix
	// ServeMarketplace serves this cloud's images and gallery items
	// read-only as an upstream marketplace at /marketplace/v1/
	// (docs/marketplace.md); MarketplaceKey, if set, is the credential
	// downstream clouds must present.
	ServeMarketplace bool
	MarketplaceKey   string
	Logger           *slog.Logger
}

// DefaultSubscriptionID is the subscription created at first start.
const DefaultSubscriptionID = "00000000-0000-0000-0000-000000000001"

// OperatorClientID is the bootstrap operator's client id.
const OperatorClientID = "operator"

// Demo image coordinates published on first start.
const (
	DemoPublisher = "vmssd"
	DemoOffer     = "demo"
	DemoSKU       = "guest"
)

// DemoVersions are the demo image versions published on first start.
var DemoVersions = []string{"1.0.0", "1.1.0"}

// ClientConfig is the file vmssctl reads (like a kubeconfig).
type ClientConfig = client.Config

// Server is a running vmssd.
type Server struct {
	cfg        Config
	URL        string
	CAFile     string
	CAPEM      []byte
	ConfigFile string
	Client     ClientConfig
	Store      store.Store
	Issuer     *auth.Issuer
	Controller *controller.Controller
	Host       *host.Host
	// Network runs the load balancers (internal/netctl).
	Network *netctl.Manager
	// Metrics is the server's Prometheus registry and instruments;
	// MetricsURL is the separate metrics listener's /metrics ("" when
	// Config.MetricsAddr is not set).
	Metrics    *metrics.Metrics
	MetricsURL string

	httpSrv *http.Server
	metSrv  *http.Server
	credMu  sync.Mutex // guards Client's credential after start
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errMu   sync.Mutex
	err     error
	closers []func() error
}

// Start starts a server; it returns once it listens.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: DataDir is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8443"
	}
	if cfg.Location == "" {
		cfg.Location = "local"
	}
	if cfg.DefaultSubscription == "" {
		cfg.DefaultSubscription = DefaultSubscriptionID
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	s := &Server{cfg: cfg}
	ok := false
	defer func() {
		if !ok {
			s.closeAll()
		}
	}()

	// State store.
	switch cfg.Store {
	case "", "bolt":
		st, err := boltstore.Open(filepath.Join(cfg.DataDir, "state.db"), boltstore.Options{})
		if err != nil {
			return nil, fmt.Errorf("server: open state store: %w", err)
		}
		s.Store = st
	case "memory":
		s.Store = memstore.New(memstore.Options{})
	default:
		return nil, fmt.Errorf("server: unknown store %q", cfg.Store)
	}
	s.closers = append(s.closers, s.Store.Close)

	// TLS and tokens.
	bundle, err := pki.Ensure(filepath.Join(cfg.DataDir, "pki"), nil, time.Now())
	if err != nil {
		return nil, fmt.Errorf("server: tls: %w", err)
	}
	s.CAFile, s.CAPEM = bundle.CAFile, bundle.CACertPEM
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("server: listen: %w", err)
	}
	s.URL = "https://" + ln.Addr().String()
	ln = limitListener(ln, cmp.Or(cfg.MaxConnections, DefaultMaxConnections))
	s.Issuer, err = auth.NewIssuer(filepath.Join(cfg.DataDir, "token-signing.key"), auth.Options{
		ResourceManagerEndpoint: s.URL, Logger: log, RateLimit: auth.RateLimit{PerAddress: cfg.TokenRateLimit}})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("server: token issuer: %w", err)
	}

	// Images, host and controller.
	arts, err := artifact.OpenWithLimits(filepath.Join(cfg.DataDir, "artifacts"), artifact.Limits{MaxUnpackedBytes: cfg.MaxImageUnpackedBytes})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("server: artifacts: %w", err)
	}
	imgs := &images{store: arts, st: s.Store, files: map[string]fileImport{}}
	drv, err := process.New(process.Options{Root: filepath.Join(cfg.DataDir, "hosts", "local", "instances"), GuestBinary: cfg.GuestBinary, Logger: log,
		Isolation: process.Isolation(cfg.ProcessIsolation), AllowUnsandboxed: cfg.UnsandboxedProcessImages})
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("server: process driver: %w", err)
	}
	formats := map[string]driver.Driver{artifact.FormatProcessV1: drv}
	missing := map[string]string{}
	if err := s.enableVMs(formats, missing); err != nil {
		_ = ln.Close()
		_ = drv.Close()
		return nil, err
	}
	hostDrv := router.New(formats, missing)
	s.closers = append(s.closers, hostDrv.Close)
	var ctrl *controller.Controller
	var nets *netctl.Manager
	var dash *dashboard.Dashboard
	s.Host = host.New(hostDrv, host.Options{
		Name: "local", FaultDomain: 0, Logger: log, Grace: cfg.HealthGrace,
		OnChange: func(vmid string) {
			if ctrl != nil {
				ctrl.HostChanged(vmid)
			}
			if nets != nil {
				nets.HostChanged(vmid)
			}
			if dash != nil {
				dash.HostChanged()
			}
		},
	})
	// The load balancers' data planes and the instances' addresses.
	nets = netctl.New(netctl.Options{Store: s.Store, Hosts: []*host.Host{s.Host}, Logger: log, DrainPeriod: cfg.DrainPeriod})
	s.Network = nets
	s.Metrics = metrics.New(metrics.Options{Store: s.Store, Logger: log})
	ctrl = controller.New(controller.Options{Store: s.Store, Hosts: []*host.Host{s.Host}, Images: imgs, Logger: log, Metrics: s.Metrics, Network: nets})
	s.Controller = ctrl
	s.Metrics.RegisterState(ctrl)

	if err := s.bootstrap(ctx, imgs); err != nil {
		_ = ln.Close()
		return nil, err
	}
	// The marketplace: downloads from an upstream, gallery items (the
	// default scale-set item is preloaded at first start).
	mp := syndication.New(syndication.Options{Store: s.Store, Artifacts: arts, Dir: filepath.Join(cfg.DataDir, "marketplace"),
		Location: cfg.Location, Logger: log})
	s.closers = append(s.closers, mp.Close)
	if err := mp.Preload(ctx); err != nil {
		_ = ln.Close()
		return nil, err
	}

	// The browser dashboard at "/" (internal/dashboard): it acts through
	// the API as the signed-in principal.
	dash = dashboard.New(dashboard.Options{Store: s.Store, Credentials: auth.LookupSource{Lookup: lookupCredential(s.Store)}, Logger: log})
	api := apiserver.New(apiserver.Options{
		Store: s.Store, Auth: &authenticator{issuer: s.Issuer, store: s.Store}, Observer: ctrl, Artifacts: imgs,
		TokenHandler: s.Issuer.Handler(auth.LookupSource{Lookup: lookupCredential(s.Store)}), Logger: log,
		Location: cfg.Location, Audience: auth.DefaultAudience, PageSize: cfg.PageSize,
		SecretRotated: s.secretRotated, Metrics: s.Metrics.Handler(), PublicIPPool: cfg.PublicIPPool,
		Marketplace: mp, Dashboard: dash,
	})
	dash.Bind(api)
	var front http.Handler = api
	if cfg.ServeMarketplace {
		catalog := mp.CatalogHandler(cfg.MarketplaceKey)
		front = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, syndication.CatalogPrefix) {
				catalog.ServeHTTP(w, r)
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	tlsCfg := bundle.ServerTLSConfig()
	s.httpSrv = &http.Server{
		Handler: s.Metrics.Middleware(guardHandler(front, cmp.Or(cfg.ReadTimeout, DefaultReadTimeout), log)), TLSConfig: tlsCfg,
		ReadHeaderTimeout: cmp.Or(cfg.HeaderTimeout, DefaultHeaderTimeout),
		IdleTimeout:       cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	s.httpSrv.RegisterOnShutdown(dash.Close) // open dashboard streams end at shutdown

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.wg.Go(func() { s.fail(s.Host.Run(runCtx)) })
	s.wg.Go(func() { s.fail(ctrl.Run(runCtx)) })
	s.wg.Go(func() { s.fail(nets.Run(runCtx)) })
	s.wg.Go(func() { s.fail(imgs.runGC(runCtx, log)) })
	s.wg.Go(func() { s.fail(s.Metrics.Run(runCtx)) })
	// The owner of template deployments: resumes those a crash left
	// running, then runs new ones until shutdown.
	s.wg.Go(func() { s.fail(api.Deployments().Run(runCtx)) })
	if err := s.serveMetrics(); err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Go(func() {
		if err := s.httpSrv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.fail(err)
		}
	})
	if err := s.writeClientConfig(); err != nil {
		s.Close()
		return nil, err
	}
	s.serveControl()
	ok = true
	log.Info("vmssd listening", "url", s.URL, "ca", s.CAFile, "config", s.ConfigFile, "data", cfg.DataDir)
	return s, nil
}

// enableVMs adds the QEMU driver for virtual machine images when QEMU is
// installed (and not turned off), or records why VM images cannot run here.
func (s *Server) enableVMs(formats map[string]driver.Driver, missing map[string]string) error {
	log := s.cfg.Logger
	if s.cfg.VMs == "off" {
		missing[artifact.FormatQEMUV1] = "virtual machines are turned off (--vms=off)"
		return nil
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		missing[artifact.FormatQEMUV1] = "qemu-system-x86_64 is not installed"
		log.Info("virtual machine images disabled: qemu-system-x86_64 is not installed")
		return nil
	}
	qd, err := qemu.New(qemu.Options{
		Root: filepath.Join(s.cfg.DataDir, "hosts", "local", "vms"), Accel: s.cfg.Accel,
		BootDeadline: s.cfg.BootDeadline, MemoryOvercommit: s.cfg.MemoryOvercommit, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("server: qemu driver: %w", err)
	}
	formats[artifact.FormatQEMUV1] = qd
	accel, reason := qemu.DetectAccel()
	if s.cfg.Accel == "tcg" || s.cfg.Accel == "kvm" {
		accel, reason = s.cfg.Accel, "forced by --accel"
	}
	log.Info("virtual machine images enabled", "accel", accel, "why", reason)
	return nil
}

func (s *Server) fail(err error) {
	if err == nil {
		return
	}
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.cfg.Logger.Error("component failed", "err", err)
}

// Err returns the first component failure.
func (s *Server) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// Close stops serving and the controller; instances keep running and are
// re-adopted by the next start.
func (s *Server) Close() {
	if s.httpSrv != nil {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.httpSrv.Shutdown(sctx)
		c()
	}
	if s.metSrv != nil {
		_ = s.metSrv.Close()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	s.closeAll()
}

func (s *Server) closeAll() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i]()
	}
	s.closers = nil
}

// bootstrap creates what a first start needs: the default subscription, the
// operator credential and the demo images.
func (s *Server) bootstrap(ctx context.Context, imgs *images) error {
	now := time.Now()
	subKey := model.SubscriptionKey(s.cfg.DefaultSubscription)
	if _, err := s.Store.Get(ctx, subKey); errors.Is(err, store.ErrNotFound) {
		sub := &model.Subscription{ID: s.cfg.DefaultSubscription, DisplayName: "Default", State: "Enabled", Created: now}
		if _, err := s.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(subKey, 0)}, state.PutOp(subKey, sub)); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	credFile := filepath.Join(s.cfg.DataDir, "operator.json")
	var cred struct {
		ClientID     string `json:"clientId"`
		ClientSecret string `json:"clientSecret"`
	}
	if b, err := os.ReadFile(credFile); err == nil && json.Unmarshal(b, &cred) == nil && cred.ClientSecret != "" {
		s.Client.ClientID, s.Client.ClientSecret = cred.ClientID, cred.ClientSecret
	} else {
		secret, err := auth.NewSecret()
		if err != nil {
			return err
		}
		p := &model.Principal{ClientID: OperatorClientID, DisplayName: "Bootstrap operator", Role: string(auth.RoleOperator), SecretHash: auth.HashSecret(secret), Created: now, UID: auth.NewPrincipalUID()}
		if _, err := s.Store.Txn(ctx, nil, state.PutOp(model.PrincipalKey(OperatorClientID), p)); err != nil {
			return err
		}
		cred.ClientID, cred.ClientSecret = OperatorClientID, secret
		b, _ := json.MarshalIndent(cred, "", "  ")
		if err := writeFileAtomic(credFile, b, 0o600); err != nil {
			return err
		}
		s.Client.ClientID, s.Client.ClientSecret = cred.ClientID, cred.ClientSecret
	}
	if kvs, _, err := s.Store.List(ctx, model.PrefixSizes); err != nil {
		return err
	} else if len(kvs) == 0 {
		var ops []store.Op
		for _, sz := range model.DefaultSizes {
			ops = append(ops, state.PutOp(model.SizeKey(sz.Name), sz))
		}
		if _, err := s.Store.Txn(ctx, nil, ops...); err != nil {
			return err
		}
	}
	if s.cfg.NoDemoImages {
		return nil
	}
	if kvs, _, err := s.Store.List(ctx, model.PrefixImages); err != nil || len(kvs) > 0 {
		return err
	}
	for _, v := range DemoVersions {
		d, n, err := imgs.importDemo(ctx, artifact.DemoOptions{Version: v, Healthy: true})
		if err != nil {
			return fmt.Errorf("server: demo image %s: %w", v, err)
		}
		iv := &model.ImageVersion{Publisher: DemoPublisher, Offer: DemoOffer, SKU: DemoSKU, Version: v, Location: s.cfg.Location, OSType: "Linux", Digest: string(d), Size: n, Created: now}
		if _, err := s.Store.Txn(ctx, nil, state.PutOp(model.ImageKey(DemoPublisher, DemoOffer, DemoSKU, v), iv)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) writeClientConfig() error {
	s.Client.Endpoint = s.URL
	s.Client.CAFile = s.CAFile
	s.Client.Tenant = client.LoginTenant
	s.Client.Audience = auth.DefaultAudience
	s.Client.Subscription = s.cfg.DefaultSubscription
	s.Client.Location = s.cfg.Location
	b, _ := json.MarshalIndent(s.Client, "", "  ")
	s.ConfigFile = filepath.Join(s.cfg.DataDir, client.ConfigFileName)
	return writeFileAtomic(s.ConfigFile, b, 0o600)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return fsutil.WriteFile(path, data, perm)
}

// authenticator verifies tokens and re-reads the principal so that a
// deleted or re-scoped principal takes effect at once.
type authenticator struct {
	issuer *auth.Issuer
	store  store.Store
}

func (a *authenticator) Authenticate(ctx context.Context, token string) (*apiserver.Caller, error) {
	claims, err := a.issuer.Verify(token, time.Now())
	if err != nil {
		return nil, err
	}
	p, _, err := state.Get[model.Principal](ctx, a.store, model.PrincipalKey(claims.Principal().ClientID))
	if err != nil {
		return nil, fmt.Errorf("principal %q: %w", claims.Principal().ClientID, err)
	}
	// The token must be for this very principal record and secret: not
	// for a deleted principal of the same client id, nor a rotated secret.
	if !claims.BoundTo(p.UID, p.SecretGeneration) {
		return nil, fmt.Errorf("principal %q: %w: issued to another principal record or secret", p.ClientID, auth.ErrTokenInvalid)
	}
	return &apiserver.Caller{ClientID: p.ClientID, Role: p.Role, Subscriptions: p.Subscriptions}, nil
}
