package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// ProbeKey names one prober: a probe against one member.
type ProbeKey struct {
	Probe, Member string
}

// ProbeTarget is a running (or wanted) prober: what it probes and where.
type ProbeTarget struct {
	Key    ProbeKey
	Spec   Probe
	Target string // host:port of the member's probe port
}

// MemberState is the executor's state of one member that the config does
// not carry.
type MemberState struct {
	Draining      bool
	DrainDeadline time.Time
	Drained       bool // drain over; out of rotation until Undrain
	Conns         int  // open connections and UDP sessions
}

// State is what the executor currently has.
type State struct {
	Listeners []ListenerKey
	Probers   []ProbeTarget
	Members   map[string]MemberState
}

// Health is a probe verdict.
type Health string

// Probe verdicts; they use the host package's words so that the rolling
// engine's gate and the load balancer speak the same language.
const (
	Healthy   Health = "Healthy"
	Unhealthy Health = "Unhealthy"
	Unknown   Health = "Unknown" // not probed yet (or since Undrain)
)

// ProbeResult is a prober's current verdict.
type ProbeResult struct {
	Health  Health
	Message string
	Since   time.Time
}

// Input is everything Compute looks at.
type Input struct {
	Desired *Config
	Current State
	Probes  map[ProbeKey]ProbeResult
	Now     time.Time
}

// Route is what a listener does with a new connection or flow.
type Route struct {
	Key ListenerKey
	// Name is the rule or NAT pool name.
	Name string
	NAT  bool
	// Candidates are the members a new flow may go to, by id, sorted: the
	// rule's rotation, or the one member a NAT port maps to.
	Candidates   []string
	BackendPort  int
	Distribution Distribution
	IdleTimeout  time.Duration
	TCPReset     bool
}

// MemberHealth is what Health reports for one member.
type MemberHealth struct {
	// Health is Healthy when every probe the member is behind passes (a
	// member behind no probe is Healthy), Unhealthy when one fails, Unknown
	// when one has no verdict yet.
	Health  Health
	Message string
	Since   time.Time
	// InRotation is true when at least one rule may send it new flows.
	InRotation bool
	Draining   bool
	Drained    bool
}

// Plan is the result of Compute.
type Plan struct {
	Open, Close []ListenerKey
	StartProbes []ProbeTarget
	StopProbes  []ProbeKey
	// DrainDone are draining members whose connections are gone or whose
	// period is over (the executor closes what remains).
	DrainDone []string
	// Forget are members the executor may drop: not in the config and not
	// draining.
	Forget []string
	Routes map[ListenerKey]Route
	Health map[string]MemberHealth
}

// Empty reports whether the plan changes nothing the executor holds (routes
// and health are always recomputed).
func (p *Plan) Empty() bool {
	return len(p.Open)+len(p.Close)+len(p.StartProbes)+len(p.StopProbes)+len(p.DrainDone)+len(p.Forget) == 0
}

// Compute plans one step. It is pure: no clock, no I/O.
func Compute(in Input) *Plan {
	cfg := in.Desired
	if cfg == nil {
		cfg = &Config{}
	}
	p := &Plan{Routes: map[ListenerKey]Route{}, Health: map[string]MemberHealth{}}
	members := cfg.members()
	state := func(id string) MemberState { return in.Current.Members[id] }
	outOfRotation := func(id string) bool { s := state(id); return s.Draining || s.Drained }

	// Probers: each probe referenced by a rule runs against each member of
	// that rule's pool.
	want := map[ProbeKey]ProbeTarget{}
	for _, r := range cfg.Rules {
		spec, ok := cfg.probe(r.Probe)
		if !ok {
			continue
		}
		for _, m := range cfg.pool(r.Pool) {
			t, ok := m.Target(spec.Port)
			if !ok {
				continue
			}
			k := ProbeKey{spec.Name, m.ID}
			want[k] = ProbeTarget{Key: k, Spec: spec, Target: t}
		}
	}
	have := map[ProbeKey]ProbeTarget{}
	for _, t := range in.Current.Probers {
		have[t.Key] = t
	}
	for k, t := range have {
		if w, ok := want[k]; !ok || w != t {
			p.StopProbes = append(p.StopProbes, k)
		}
	}
	for k, w := range want {
		if t, ok := have[k]; !ok || t != w {
			p.StartProbes = append(p.StartProbes, w)
		}
	}
	// A prober that is (re)started has no verdict yet.
	restarted := map[ProbeKey]bool{}
	for _, t := range p.StartProbes {
		restarted[t.Key] = true
	}
	verdict := func(k ProbeKey) ProbeResult {
		r, ok := in.Probes[k]
		if !ok || restarted[k] || r.Health == "" {
			return ProbeResult{Health: Unknown, Message: "not probed yet"}
		}
		return r
	}

	// Routes.
	inRotation := map[string]bool{}
	for _, r := range cfg.Rules {
		k := ListenerKey{r.Protocol, netip.AddrPortFrom(cfg.frontend(r.Frontend), uint16(r.FrontendPort))}
		var cands []string
		for _, m := range cfg.pool(r.Pool) {
			if outOfRotation(m.ID) {
				continue
			}
			if _, ok := m.Target(r.BackendPort); !ok {
				continue
			}
			if r.Probe != "" && verdict(ProbeKey{r.Probe, m.ID}).Health != Healthy {
				continue
			}
			cands = append(cands, m.ID)
			inRotation[m.ID] = true
		}
		slices.Sort(cands)
		dist := r.Distribution
		if dist == "" {
			dist = Default
		}
		p.Routes[k] = Route{Key: k, Name: r.Name, Candidates: cands, BackendPort: r.BackendPort,
			Distribution: dist, IdleTimeout: idle(r.IdleTimeout), TCPReset: r.TCPReset}
	}
	for _, n := range cfg.NATPools {
		addr := cfg.frontend(n.Frontend)
		for _, m := range cfg.pool(n.Pool) {
			if m.InstanceID < 0 || m.InstanceID > int64(n.End-n.Start) {
				continue // no frontend port left for this instance
			}
			if _, ok := m.Target(n.BackendPort); !ok {
				continue
			}
			port := n.Start + int(m.InstanceID)
			k := ListenerKey{n.Protocol, netip.AddrPortFrom(addr, uint16(port))}
			if old, dup := p.Routes[k]; dup {
				// Two members with the same instance id: the lower id wins.
				if old.Candidates[0] < m.ID {
					continue
				}
			}
			p.Routes[k] = Route{Key: k, Name: n.Name, NAT: true, Candidates: []string{m.ID},
				BackendPort: n.BackendPort, Distribution: Default, IdleTimeout: idle(n.IdleTimeout), TCPReset: n.TCPReset}
		}
	}

	// Listeners: exactly the routes' keys.
	open := map[ListenerKey]bool{}
	for _, k := range in.Current.Listeners {
		open[k] = true
		if _, ok := p.Routes[k]; !ok {
			p.Close = append(p.Close, k)
		}
	}
	for k := range p.Routes {
		if !open[k] {
			p.Open = append(p.Open, k)
		}
	}

	// Drains and forgotten members.
	for _, id := range sortedKeys(in.Current.Members) {
		s := in.Current.Members[id]
		if s.Draining && (s.Conns == 0 || !in.Now.Before(s.DrainDeadline)) {
			p.DrainDone = append(p.DrainDone, id)
			s.Draining = false
		}
		if _, ok := members[id]; !ok && !s.Draining {
			p.Forget = append(p.Forget, id)
		}
	}

	// Health of every configured member.
	behind := map[string][]string{} // member -> probes it is behind
	for _, r := range cfg.Rules {
		if r.Probe == "" {
			continue
		}
		for _, m := range cfg.pool(r.Pool) {
			if !slices.Contains(behind[m.ID], r.Probe) {
				behind[m.ID] = append(behind[m.ID], r.Probe)
			}
		}
	}
	for id := range members {
		s := state(id)
		h := MemberHealth{Health: Healthy, InRotation: inRotation[id], Draining: s.Draining, Drained: s.Drained}
		probes := behind[id]
		slices.Sort(probes)
		for _, pr := range probes {
			v := verdict(ProbeKey{pr, id})
			if v.Since.After(h.Since) {
				h.Since = v.Since
			}
			switch {
			case v.Health == Unhealthy:
				h.Health, h.Message = Unhealthy, fmt.Sprintf("probe %s: %s", pr, v.Message)
			case v.Health == Unknown && h.Health == Healthy:
				h.Health, h.Message = Unknown, fmt.Sprintf("probe %s: %s", pr, v.Message)
			}
		}
		p.Health[id] = h
	}

	slices.SortFunc(p.Open, ListenerKey.less)
	slices.SortFunc(p.Close, ListenerKey.less)
	slices.SortFunc(p.StartProbes, func(a, b ProbeTarget) int { return keyLess(a.Key, b.Key) })
	slices.SortFunc(p.StopProbes, keyLess)
	return p
}

func keyLess(a, b ProbeKey) int {
	if a.Probe != b.Probe {
		if a.Probe < b.Probe {
			return -1
		}
		return 1
	}
	switch {
	case a.Member < b.Member:
		return -1
	case a.Member > b.Member:
		return 1
	}
	return 0
}

func idle(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultIdleTimeout
	}
	return d
}
