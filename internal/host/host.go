// Package host is the controller's view of one machine that runs instances:
// a Driver, a cache of what the driver observes, and an HTTP health prober
// with Application Health semantics (Initializing until the first healthy
// answer or the end of the grace period, then Healthy or Unhealthy; Unknown
// when the instance is not running). Today every host is local and in
// process; a remote host agent will implement the same methods over the wire.
package host

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
)

// Health is an instance's application health.
type Health string

// Health states.
const (
	HealthInitializing Health = "Initializing"
	HealthHealthy      Health = "Healthy"
	HealthUnhealthy    Health = "Unhealthy"
	HealthUnknown      Health = "Unknown"
)

// Observed is what the host knows about one instance.
type Observed struct {
	driver.Status
	Health      Health    `json:"health"`
	HealthSince time.Time `json:"healthSince"`
	// Version is the image version the guest reports on its health probe.
	Version   string    `json:"version,omitempty"`
	LastProbe time.Time `json:"lastProbe"`
	ProbeErr  string    `json:"probeError,omitempty"`
	// Gen grows whenever anything above except LastProbe changes, so that
	// views derived from an observation can be cached.
	Gen       uint64 `json:"gen"`
	started   time.Time
	everOK    bool
	nextProbe time.Time
}

// Options tunes a host.
type Options struct {
	Name        string
	FaultDomain int
	Logger      *slog.Logger
	// Grace is how long a started instance may be unhealthy before it is
	// reported Unhealthy rather than Initializing.
	Grace time.Duration
	// ProbeFast is the probe period until an instance is first healthy;
	// ProbeSlow afterwards.
	ProbeFast, ProbeSlow time.Duration
	// Refresh is how often the driver's list is re-read (crash restarts).
	Refresh time.Duration
	// OnChange is called (from the host's goroutines) when an instance's
	// power or health changes.
	OnChange func(vmid string)
}

// Host runs instances through a driver.
type Host struct {
	opts   Options
	drv    driver.Driver
	prober *prober
	mu     sync.Mutex
	obs    map[string]*Observed
	ready  chan struct{}
}

// New returns a host; call Run to start it.
func New(drv driver.Driver, opts Options) *Host {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Grace == 0 {
		opts.Grace = 30 * time.Second
	}
	if opts.ProbeFast == 0 {
		opts.ProbeFast = 50 * time.Millisecond
	}
	if opts.ProbeSlow == 0 {
		opts.ProbeSlow = 3 * time.Second
	}
	if opts.Refresh == 0 {
		// Reading the driver's list is an in-memory copy; a short period
		// makes a finished VM boot visible (and probed) quickly.
		opts.Refresh = 250 * time.Millisecond
	}
	return &Host{
		opts: opts, drv: drv, obs: map[string]*Observed{}, ready: make(chan struct{}),
		prober: newProber(probeTimeout),
	}
}

// Name is the host's name.
func (h *Host) Name() string { return h.opts.Name }

// FaultDomain is the host's fault domain.
func (h *Host) FaultDomain() int { return h.opts.FaultDomain }

// DriverName names the host's driver.
func (h *Host) DriverName() string { return h.drv.Name() }

// Ready is closed once Recover has run.
func (h *Host) Ready() <-chan struct{} { return h.ready }

// Run recovers the driver's instances, then probes health and refreshes
// driver state until ctx ends. It owns its goroutines.
func (h *Host) Run(ctx context.Context) error {
	sts, err := h.drv.Recover(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	h.mu.Lock()
	for _, s := range sts {
		h.obs[s.ID] = &Observed{Status: s, Health: HealthInitializing, HealthSince: now, started: now}
	}
	h.mu.Unlock()
	h.opts.Logger.Info("host recovered instances", "host", h.opts.Name, "driver", h.drv.Name(), "count", len(sts))
	close(h.ready)

	tick := time.NewTicker(h.opts.ProbeFast)
	defer tick.Stop()
	lastRefresh := now
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, 32)
	for {
		select {
		case <-ctx.Done():
			return nil
		case now = <-tick.C:
		}
		if now.Sub(lastRefresh) >= h.opts.Refresh {
			lastRefresh = now
			h.refresh(ctx)
		}
		for _, o := range h.due(now) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return nil
			}
			wg.Go(func() {
				defer func() { <-sem }()
				h.probe(ctx, o.id, o.url)
			})
		}
	}
}

type probeTarget struct{ id, url string }

func (h *Host) due(now time.Time) []probeTarget {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []probeTarget
	for id, o := range h.obs {
		if o.Power != driver.PowerRunning || o.HealthURL == "" || now.Before(o.nextProbe) {
			continue
		}
		// Push the next probe out now so a slow probe is not started twice.
		o.nextProbe = now.Add(h.opts.ProbeSlow)
		out = append(out, probeTarget{id, o.HealthURL})
	}
	return out
}

// refresh re-reads the driver's list: power changes (a crashed guest that
// the supervisor restarted, a VM that shut itself down) reset health.
func (h *Host) refresh(ctx context.Context) {
	sts, err := h.drv.List(ctx)
	if err != nil {
		h.opts.Logger.Warn("driver list failed", "host", h.opts.Name, "err", err)
		return
	}
	var changed []string
	seen := make(map[string]bool, len(sts))
	h.mu.Lock()
	for _, s := range sts {
		seen[s.ID] = true
		if h.setLocked(s) {
			changed = append(changed, s.ID)
		}
	}
	for id := range h.obs {
		if !seen[id] {
			delete(h.obs, id)
			changed = append(changed, id)
		}
	}
	h.mu.Unlock()
	for _, id := range changed {
		if h.opts.OnChange != nil {
			h.opts.OnChange(id)
		}
	}
}

// setLocked records a driver status; it reports whether anything a
// reconcile cares about changed.
func (h *Host) setLocked(s driver.Status) bool {
	now := time.Now()
	o, ok := h.obs[s.ID]
	if !ok {
		o = &Observed{Health: HealthUnknown, HealthSince: now}
		h.obs[s.ID] = o
	}
	restarted := s.PID != o.PID || s.Restarts != o.Restarts || s.HealthURL != o.HealthURL
	powerChanged := s.Power != o.Power
	if !ok || !sameStatus(o.Status, s) {
		o.Gen++
	}
	o.Status = s
	if s.Power == driver.PowerRunning || s.Power == driver.PowerStarting {
		if restarted || powerChanged && o.Power != driver.PowerStarting {
			o.Health, o.HealthSince, o.started, o.everOK, o.nextProbe = HealthInitializing, now, now, false, now
			o.Version = ""
		}
	} else if o.Health != HealthUnknown {
		o.Health, o.HealthSince, o.Version = HealthUnknown, now, ""
	}
	return !ok || powerChanged || restarted
}

func sameStatus(a, b driver.Status) bool {
	if a.ID != b.ID || a.Power != b.Power || a.ImageDigest != b.ImageDigest || a.HealthURL != b.HealthURL ||
		a.PID != b.PID || !a.Since.Equal(b.Since) || a.Message != b.Message || a.Restarts != b.Restarts || len(a.Ports) != len(b.Ports) ||
		a.Accel != b.Accel || a.Isolation != b.Isolation || a.Network != b.Network || a.PrivateIP != b.PrivateIP ||
		a.Failure != b.Failure {
		return false
	}
	for k, v := range a.Ports {
		if b.Ports[k] != v {
			return false
		}
	}
	return true
}

func (h *Host) set(s driver.Status) {
	h.mu.Lock()
	h.setLocked(s)
	h.mu.Unlock()
}

// Get returns what the host observes about one instance.
func (h *Host) Get(vmid string) (Observed, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	o, ok := h.obs[vmid]
	if !ok {
		return Observed{}, false
	}
	return *o, true
}

// IDs lists the instances the host has.
func (h *Host) IDs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.obs))
	for id := range h.obs {
		out = append(out, id)
	}
	return out
}

func (h *Host) after(s driver.Status, err error) error {
	if err != nil {
		return err
	}
	h.set(s)
	return nil
}

// Create creates and starts an instance.
func (h *Host) Create(ctx context.Context, spec driver.Spec) error {
	s, err := h.drv.Create(ctx, spec)
	return h.after(s, err)
}

// Reimage rebuilds an instance's OS disk from spec's image.
func (h *Host) Reimage(ctx context.Context, spec driver.Spec) error {
	s, err := h.drv.Reimage(ctx, spec)
	return h.after(s, err)
}

// Start starts an instance.
func (h *Host) Start(ctx context.Context, id string) error {
	s, err := h.drv.Start(ctx, id)
	return h.after(s, err)
}

// Stop powers an instance off.
func (h *Host) Stop(ctx context.Context, id string) error {
	s, err := h.drv.Stop(ctx, id, true)
	return h.after(s, err)
}

// Deallocate frees an instance's host resources.
func (h *Host) Deallocate(ctx context.Context, id string) error {
	s, err := h.drv.Deallocate(ctx, id)
	return h.after(s, err)
}

// Restart restarts an instance.
func (h *Host) Restart(ctx context.Context, id string) error {
	s, err := h.drv.Restart(ctx, id)
	return h.after(s, err)
}

// Delete removes an instance; an unknown id is not an error.
func (h *Host) Delete(ctx context.Context, id string) error {
	err := h.drv.Delete(ctx, id)
	if err != nil && !errors.Is(err, driver.ErrNotFound) {
		return err
	}
	h.mu.Lock()
	delete(h.obs, id)
	h.mu.Unlock()
	return nil
}

// Console returns an instance's captured console, if its driver keeps one.
func (h *Host) Console(ctx context.Context, id string) ([]byte, error) {
	cr, ok := h.drv.(driver.ConsoleReader)
	if !ok {
		return nil, errors.New("host: driver " + h.drv.Name() + " does not capture consoles")
	}
	return cr.Console(ctx, id)
}
