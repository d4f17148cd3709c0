package lb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmssd/vmssd/internal/errs"
)

// Options tunes an LB.
type Options struct {
	Logger *slog.Logger
	// Now is the clock (tests); time.Now by default.
	Now func() time.Time
	// DialTimeout bounds a connection attempt to a member before the next
	// one is tried; 3 s by default.
	DialTimeout time.Duration
	// Tick is how often drains are re-checked; 50 ms by default.
	Tick time.Duration
}

// LB is one load balancer's data plane. Its methods are safe for
// concurrent use.
type LB struct {
	log  *slog.Logger
	opts Options
	kick chan struct{}
	stop context.CancelFunc
	done chan struct{}

	routes atomic.Pointer[routeTable]

	mu        sync.Mutex
	closed    bool
	cfg       *Config
	listeners map[ListenerKey]*listener
	probers   map[ProbeKey]*prober
	backends  map[string]*backend
	waiters   map[string][]chan struct{}
	health    map[string]MemberHealth
	lastErr   error
}

// New starts an LB with an empty configuration.
func New(opts Options) *LB {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 3 * time.Second
	}
	if opts.Tick <= 0 {
		opts.Tick = 50 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	lb := &LB{
		log: opts.Logger, opts: opts, kick: make(chan struct{}, 1), stop: cancel, done: make(chan struct{}),
		cfg: &Config{}, listeners: map[ListenerKey]*listener{}, probers: map[ProbeKey]*prober{},
		backends: map[string]*backend{}, waiters: map[string][]chan struct{}{}, health: map[string]MemberHealth{},
	}
	lb.routes.Store(&routeTable{})
	go lb.run(ctx)
	return lb
}

// Apply makes cfg the desired configuration and applies the difference at
// once: new listeners open, listeners of removed rules and NAT ports close,
// members join and leave rotation. Established connections and flows are
// not touched (a removed member's open connections finish on their own).
// An invalid cfg is an errs.Invalid error and changes nothing; a listener
// that cannot be opened is reported and retried in the background. The
// caller must not modify cfg afterwards.
func (lb *LB) Apply(ctx context.Context, cfg *Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return errors.New("lb: closed")
	}
	lb.cfg = cfg
	if err := lb.sync(); err != nil {
		return fmt.Errorf("lb: apply: %w", err)
	}
	return nil
}

// Drain takes a member out of rotation at once: new flows go to other
// members. Its open connections may finish for up to period; then the ones
// left are closed and the returned channel is closed (also at once when the
// member has no connection, and when Undrain cancels the drain). The member
// stays out of rotation until Undrain, after which its probe must pass again.
func (lb *LB) Drain(id string, period time.Duration) (<-chan struct{}, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	b, ok := lb.backends[id]
	if !ok {
		return nil, errs.New(errs.NotFound, "NotFound", "Load balancer member '%s' was not found.", id)
	}
	ch := make(chan struct{})
	b.mu.Lock()
	switch {
	case b.drained:
		b.mu.Unlock()
		close(ch)
		return ch, nil
	case !b.draining:
		b.draining = true
		b.deadline = lb.opts.Now().Add(period)
	}
	b.mu.Unlock()
	lb.waiters[id] = append(lb.waiters[id], ch)
	if err := lb.sync(); err != nil {
		lb.log.Debug("lb sync", "err", err)
	}
	return ch, nil
}

// Undrain ends a member's drain (or drained state). Its probers start over:
// the member returns to rotation only when its probe passes again (at once
// for rules without a probe).
func (lb *LB) Undrain(id string) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	b, ok := lb.backends[id]
	if !ok {
		return errs.New(errs.NotFound, "NotFound", "Load balancer member '%s' was not found.", id)
	}
	b.mu.Lock()
	b.draining, b.drained = false, false
	b.mu.Unlock()
	for _, ch := range lb.waiters[id] {
		close(ch)
	}
	delete(lb.waiters, id)
	for k, p := range lb.probers {
		if k.Member == id {
			p.reset()
		}
	}
	if err := lb.sync(); err != nil {
		lb.log.Debug("lb sync", "err", err)
	}
	return nil
}

// Health reports every configured member's probe verdict and rotation.
func (lb *LB) Health() map[string]MemberHealth {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if err := lb.sync(); err != nil {
		lb.log.Debug("lb sync", "err", err)
	}
	return maps.Clone(lb.health)
}

// Err is the last error of a background sync (a listener that cannot open).
func (lb *LB) Err() error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.lastErr
}

// Close stops probing, closes every listener and every open connection.
func (lb *LB) Close() error {
	lb.mu.Lock()
	if lb.closed {
		lb.mu.Unlock()
		return nil
	}
	lb.closed = true
	lb.stop()
	for _, p := range lb.probers {
		p.stop()
	}
	for _, l := range lb.listeners {
		l.close()
	}
	for _, b := range lb.backends {
		b.closeAll()
	}
	for _, ws := range lb.waiters {
		for _, ch := range ws {
			close(ch)
		}
	}
	lb.waiters = nil
	lb.routes.Store(&routeTable{})
	lb.mu.Unlock()
	<-lb.done
	return nil
}

func (lb *LB) notify() {
	select {
	case lb.kick <- struct{}{}:
	default:
	}
}

func (lb *LB) run(ctx context.Context) {
	defer close(lb.done)
	t := time.NewTicker(lb.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lb.kick:
		case <-t.C:
		}
		lb.mu.Lock()
		if !lb.closed {
			if err := lb.sync(); err != nil && (lb.lastErr == nil || err.Error() != lb.lastErr.Error()) {
				lb.log.Warn("load balancer sync", "err", err)
			}
		}
		lb.mu.Unlock()
	}
}

// sync plans one step with Compute and executes it. lb.mu is held.
func (lb *LB) sync() error {
	members := lb.cfg.members()
	for id, m := range members {
		b, ok := lb.backends[id]
		if !ok {
			b = &backend{id: id, hash: stringHash(id), conns: map[flowCloser]struct{}{}}
			lb.backends[id] = b
		}
		if cur := b.member.Load(); cur == nil || !cur.equal(m) {
			b.member.Store(&m)
		}
	}
	st := State{Members: map[string]MemberState{}}
	for k := range lb.listeners {
		st.Listeners = append(st.Listeners, k)
	}
	probes := map[ProbeKey]ProbeResult{}
	for k, p := range lb.probers {
		st.Probers = append(st.Probers, p.t)
		probes[k] = p.result()
	}
	for id, b := range lb.backends {
		st.Members[id] = b.state()
	}
	plan := Compute(Input{Desired: lb.cfg, Current: st, Probes: probes, Now: lb.opts.Now()})

	for _, k := range plan.StopProbes {
		lb.probers[k].stop()
		delete(lb.probers, k)
	}
	for _, t := range plan.StartProbes {
		lb.probers[t.Key] = startProber(t, lb.opts.Now, lb.notify)
	}
	for _, k := range plan.Close {
		lb.listeners[k].close()
		delete(lb.listeners, k)
		lb.log.Info("load balancer listener closed", "listener", k.String())
	}
	var errList []error
	for _, k := range plan.Open {
		l, err := lb.listen(k)
		if err != nil {
			errList = append(errList, err)
			delete(plan.Routes, k)
			continue
		}
		lb.listeners[k] = l
		lb.log.Info("load balancer listening", "listener", k.String(), "name", plan.Routes[k].Name)
	}
	for _, id := range plan.DrainDone {
		b := lb.backends[id]
		b.finishDrain()
		for _, ch := range lb.waiters[id] {
			close(ch)
		}
		delete(lb.waiters, id)
		lb.log.Info("load balancer member drained", "member", id)
	}
	for _, id := range plan.Forget {
		delete(lb.backends, id)
	}

	rt := routeTable{}
	for k, r := range plan.Routes {
		l := lb.listeners[k]
		if l == nil {
			continue
		}
		lr := &liveRoute{Route: r, stats: &l.stats}
		for _, id := range r.Candidates {
			b := lb.backends[id]
			lr.backends = append(lr.backends, b)
			lr.hashes = append(lr.hashes, b.hash)
		}
		l.name.Store(&r.Name)
		rt[k] = lr
	}
	lb.routes.Store(&rt)
	lb.health = plan.Health
	lb.lastErr = errors.Join(errList...)
	return lb.lastErr
}

// routeTable is what listeners read on every new flow.
type routeTable map[ListenerKey]*liveRoute

type liveRoute struct {
	Route
	backends []*backend
	hashes   []uint64
	stats    *counters
}

// counters are live statistics.
type counters struct {
	conns, active, bytesIn, bytesOut, failures atomic.Int64
}

func (c *counters) snapshot() Counters {
	return Counters{Connections: c.conns.Load(), Active: c.active.Load(),
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(), Failures: c.failures.Load()}
}

// Counters are statistics of a frontend listener or a member. Connections
// counts TCP connections and UDP sessions (flows) since the start, Active
// the open ones; BytesIn flow from clients to members, BytesOut back;
// Failures are flows that could not be forwarded (no member in rotation, a
// member that refused).
type Counters struct {
	Connections, Active, BytesIn, BytesOut, Failures int64
}

// FrontendCounters are the counters of one listener and the rule or NAT
// pool it serves.
type FrontendCounters struct {
	Name string
	Counters
}

// Snapshot is a point-in-time copy of the counters; frontends are keyed by
// listener ("tcp/127.0.0.1:80"), members by id.
type Snapshot struct {
	Frontends map[string]FrontendCounters
	Members   map[string]Counters
}

// Snapshot copies the counters of open listeners and known members.
func (lb *LB) Snapshot() Snapshot {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	s := Snapshot{Frontends: map[string]FrontendCounters{}, Members: map[string]Counters{}}
	for k, l := range lb.listeners {
		name := ""
		if n := l.name.Load(); n != nil {
			name = *n
		}
		s.Frontends[k.String()] = FrontendCounters{Name: name, Counters: l.stats.snapshot()}
	}
	for id, b := range lb.backends {
		s.Members[id] = b.stats.snapshot()
	}
	return s
}

// flowCloser is an open TCP connection or UDP session of a member.
type flowCloser interface{ forceClose() }

// backend is the runtime side of a member.
type backend struct {
	id     string
	hash   uint64
	member atomic.Pointer[Member]
	stats  counters

	mu       sync.Mutex
	draining bool
	drained  bool
	deadline time.Time
	conns    map[flowCloser]struct{}
}

func (b *backend) state() MemberState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return MemberState{Draining: b.draining, DrainDeadline: b.deadline, Drained: b.drained, Conns: len(b.conns)}
}

// acquire registers a new flow unless the member is draining or drained:
// the check and the registration are one step, so a drain never misses a
// flow.
func (b *backend) acquire(f flowCloser) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.draining || b.drained {
		return false
	}
	b.conns[f] = struct{}{}
	b.stats.conns.Add(1)
	b.stats.active.Add(1)
	return true
}

func (b *backend) release(f flowCloser) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.conns[f]; ok {
		delete(b.conns, f)
		b.stats.active.Add(-1)
	}
}

func (b *backend) finishDrain() {
	b.mu.Lock()
	b.draining, b.drained = false, true
	left := slices.Collect(maps.Keys(b.conns))
	b.mu.Unlock()
	for _, f := range left {
		f.forceClose()
	}
}

func (b *backend) closeAll() {
	b.mu.Lock()
	left := slices.Collect(maps.Keys(b.conns))
	b.mu.Unlock()
	for _, f := range left {
		f.forceClose()
	}
}

func (b *backend) target(port int) (string, bool) {
	m := b.member.Load()
	if m == nil {
		return "", false
	}
	return m.Target(port)
}

// listener is one listening socket.
type listener struct {
	lb    *LB
	key   ListenerKey
	stats counters
	name  atomic.Pointer[string]
	ln    net.Listener   // TCP
	pc    *net.UDPConn   // UDP
	udp   *udpSessions   // UDP
	wg    sync.WaitGroup // the accept or read loop
}

func (lb *LB) listen(k ListenerKey) (*listener, error) {
	l := &listener{lb: lb, key: k}
	var lc net.ListenConfig
	switch k.Protocol {
	case TCP:
		ln, err := lc.Listen(context.Background(), "tcp", k.Addr.String())
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", k, err)
		}
		l.ln = ln
		l.wg.Add(1)
		go l.acceptLoop()
	case UDP:
		pc, err := lc.ListenPacket(context.Background(), "udp", k.Addr.String())
		if err != nil {
			return nil, fmt.Errorf("listen %s: %w", k, err)
		}
		l.pc = pc.(*net.UDPConn)
		l.udp = &udpSessions{m: map[string]*udpSession{}}
		l.wg.Add(1)
		go l.udpLoop()
	default:
		return nil, fmt.Errorf("listen %s: protocol %q not supported", k, k.Protocol)
	}
	return l, nil
}

// close stops accepting; established TCP connections are left alone. UDP
// sessions of the listener end (their replies went out of its socket).
func (l *listener) close() {
	if l.ln != nil {
		_ = l.ln.Close()
	}
	if l.pc != nil {
		_ = l.pc.Close()
		l.udp.closeAll()
	}
	l.wg.Wait()
}

func (l *listener) route() *liveRoute {
	return (*l.lb.routes.Load())[l.key]
}
