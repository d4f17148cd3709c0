// Package netctl is the host side of vmssd's networking (issue 9): it runs
// one load balancer data plane (internal/lb) per load balancer record and
// keeps it in step with the store and the hosts, and it answers the
// controller's network questions.
//
// The Manager watches the store (network resources, address allocations,
// scale sets, instances) and hears the hosts' changes; each change (and a
// periodic resync) reads every load balancer's configuration
// (network.LoadBalancerConfig: frontends on public IP addresses from the
// operator's pool, rules, probes, inbound NAT pools, and the scale set
// instance NICs whose networkProfile ipConfigurations name its backend or
// NAT pools), turns it into an lb.Config (Convert, pure) and applies the
// difference without dropping connections. Members are reached through the
// loopback forwards their driver reports.
//
// For the controller it implements controller.Network: Attach gives an
// instance's NICs their private addresses (IPAM in the store, idempotent:
// stable across restarts and reimages) and the driver's view of its primary
// NIC; ReleaseOps frees them in the transaction that deletes the instance;
// Leave takes an instance out of rotation and waits for its drain before a
// host action takes it down; Rejoin puts it back once the action is done
// (the load balancer sends it new flows only when its probe passes again);
// Health answers with the load balancer probe's verdict for scale sets
// whose networkProfile.healthProbe names one, so the rolling engine's gate
// and the load balancer agree on what healthy means.
package netctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/lb"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/nsg"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// DefaultDrainPeriod bounds how long a leaving member's connections may
// finish (the load balancer's idle timeout when shorter).
const DefaultDrainPeriod = 5 * time.Second

// Options configures a Manager.
type Options struct {
	Store  store.Store
	Hosts  []*host.Host
	Logger *slog.Logger
	// DrainPeriod bounds a drain (DefaultDrainPeriod by default).
	DrainPeriod time.Duration
	// Resync is the period of a full re-read (2 s by default): it catches
	// forwards that change without a store or host event.
	Resync time.Duration
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Manager owns the load balancers' data planes.
type Manager struct {
	opts  Options
	log   *slog.Logger
	hosts map[string]*host.Host
	kick  chan struct{}

	syncMu sync.Mutex // one sync at a time

	mu  sync.Mutex
	lbs map[string]*balancer // by load balancer record key
	// healthLB maps a scale set (SetRef.String()) to the load balancer
	// whose probe its networkProfile.healthProbe names.
	healthLB map[string]string

	nsgMu   sync.Mutex
	nsgKeys map[nsg.Key]bool // NICs whose security rules this manager set (nsg.go)
}

type balancer struct {
	lb      *lb.LB
	applied *lb.Config
}

// New returns a Manager; call Run.
func New(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.DrainPeriod <= 0 {
		opts.DrainPeriod = DefaultDrainPeriod
	}
	if opts.Resync <= 0 {
		opts.Resync = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Manager{
		opts: opts, log: opts.Logger, hosts: map[string]*host.Host{}, kick: make(chan struct{}, 1),
		lbs: map[string]*balancer{}, healthLB: map[string]string{},
	}
	for _, h := range opts.Hosts {
		m.hosts[h.Name()] = h
	}
	return m
}

// Kick asks for a sync soon (the hosts' OnChange calls it).
func (m *Manager) Kick() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// HostChanged is a host's OnChange callback.
func (m *Manager) HostChanged(string) { m.Kick() }

// Run keeps the data planes in step until ctx ends, then closes them.
func (m *Manager) Run(ctx context.Context) error {
	for _, h := range m.opts.Hosts {
		select {
		case <-h.Ready():
		case <-ctx.Done():
			return nil
		}
	}
	defer m.closeAll()
	rev, err := m.opts.Store.Revision(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { m.watch(ctx, rev+1) })
	t := time.NewTicker(m.opts.Resync)
	defer t.Stop()
	m.Kick()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.kick:
			// Coalesce a burst of events into one sync.
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return nil
			}
		}
		if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("load balancer sync failed", "err", err)
		}
	}
}

func (m *Manager) watch(ctx context.Context, from int64) {
	for ctx.Err() == nil {
		ch, err := m.opts.Store.Watch(ctx, "/", from)
		if err != nil {
			if errors.Is(err, store.ErrCompacted) {
				from = 0
				m.Kick()
				continue
			}
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		for ev := range ch {
			from = ev.KV.ModRevision + 1
			if relevant(string(ev.KV.Key)) {
				m.Kick()
			}
		}
		m.Kick()
		from = 0
	}
}

func relevant(k string) bool {
	for _, p := range []string{model.PrefixNetwork, model.PrefixIPAM, model.PrefixScaleSets, model.PrefixInstances} {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func (m *Manager) closeAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, b := range m.lbs {
		_ = b.lb.Close()
		delete(m.lbs, k)
	}
}

// Sync reads every load balancer's configuration and applies it.
func (m *Manager) Sync(ctx context.Context) error {
	m.syncMu.Lock()
	defer m.syncMu.Unlock()
	recs, _, err := state.List[model.NetResource](ctx, m.opts.Store, model.PrefixNetwork+strings.ToLower(model.NetLoadBalancers)+"/")
	if err != nil {
		return err
	}
	insts, _, err := state.List[model.Instance](ctx, m.opts.Store, model.PrefixInstances)
	if err != nil {
		return err
	}
	m.syncSecurity(ctx, insts)
	byID := make(map[string]*model.Instance, len(insts))
	for _, inst := range insts {
		byID[instancePrefix(inst.Ref(), inst.ID)] = inst
	}
	reach := func(set model.SetRef, id int64) (map[string]string, bool) {
		inst := byID[instancePrefix(set, id)]
		if inst == nil {
			return nil, false
		}
		h := m.hosts[inst.Host]
		if h == nil {
			return nil, false
		}
		o, ok := h.Get(inst.VMID)
		if !ok {
			return nil, false
		}
		return o.Ports, true
	}
	want := map[string]*lb.Config{}
	healthLB := map[string]string{}
	var firstErr error
	for _, rec := range recs {
		key := rec.Ref().Key()
		c, err := network.LoadBalancerConfig(ctx, m.opts.Store, rec.Ref())
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("load balancer %s: %w", key, err))
			continue
		}
		cfg, skipped := Convert(c, reach)
		if len(skipped) > 0 {
			m.log.Debug("load balancer parts not served", "lb", key, "skipped", skipped)
		}
		want[key] = cfg
		for set := range c.HealthProbes {
			healthLB[set] = key
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.healthLB = healthLB
	for key, b := range m.lbs {
		if _, ok := want[key]; !ok {
			_ = b.lb.Close()
			delete(m.lbs, key)
			m.log.Info("load balancer stopped", "lb", key)
		}
	}
	for key, cfg := range want {
		b := m.lbs[key]
		if b == nil {
			b = &balancer{lb: lb.New(lb.Options{Logger: m.log.With("lb", key), Now: m.opts.Now})}
			m.lbs[key] = b
			m.log.Info("load balancer started", "lb", key)
		}
		if reflect.DeepEqual(b.applied, cfg) {
			continue
		}
		if err := b.lb.Apply(ctx, cfg); err != nil {
			firstErr = cmpErr(firstErr, fmt.Errorf("load balancer %s: %w", key, err))
			continue
		}
		b.applied = cfg
	}
	return firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Balancer returns the data plane of the load balancer with record key
// key (nil when it is not running): for tests and diagnostics.
func (m *Manager) Balancer(key string) *lb.LB {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.lbs[key]; b != nil {
		return b.lb
	}
	return nil
}

// memberships are the load balancers an instance is a member of and its
// member ids there.
type membership struct {
	lb     *lb.LB
	ids    []string
	period time.Duration
}

func (m *Manager) memberships(set model.SetRef, id int64) []membership {
	prefix := instancePrefix(set, id)
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []membership
	for _, b := range m.lbs {
		if b.applied == nil {
			continue
		}
		seen := map[string]bool{}
		var ids []string
		for _, p := range b.applied.Pools {
			for _, mem := range p.Members {
				if strings.HasPrefix(mem.ID, prefix) && !seen[mem.ID] {
					seen[mem.ID] = true
					ids = append(ids, mem.ID)
				}
			}
		}
		if len(ids) > 0 {
			out = append(out, membership{lb: b.lb, ids: ids, period: DrainPeriod(b.applied, m.opts.DrainPeriod)})
		}
	}
	return out
}
