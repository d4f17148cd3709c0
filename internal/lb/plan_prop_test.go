package lb

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// drawInput draws a valid config, a current state (listeners, probers,
// member states possibly unrelated to the config) and probe results.
func drawInput(t *rapid.T) Input {
	cfg := &Config{}
	nFE := rapid.IntRange(1, 3).Draw(t, "frontends")
	for i := range nFE {
		cfg.Frontends = append(cfg.Frontends, Frontend{Name: fmt.Sprintf("fe%d", i), Address: netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})})
	}
	ids := []string{"m0", "m1", "m2", "m3", "m4", "m5"}
	nPools := rapid.IntRange(1, 2).Draw(t, "pools")
	for i := range nPools {
		p := Pool{Name: fmt.Sprintf("pool%d", i)}
		for j, id := range ids {
			if rapid.Bool().Draw(t, fmt.Sprintf("in%d_%s", i, id)) {
				p.Members = append(p.Members, mem(id, int64(j), fmt.Sprintf("10.0.0.%d", 4+j)))
			}
		}
		cfg.Pools = append(cfg.Pools, p)
	}
	nProbes := rapid.IntRange(0, 2).Draw(t, "probes")
	for i := range nProbes {
		cfg.Probes = append(cfg.Probes, Probe{Name: fmt.Sprintf("pr%d", i), Protocol: ProbeTCP, Port: 80 + i, Interval: time.Second, Threshold: 2})
	}
	used := map[ListenerKey]bool{}
	nRules := rapid.IntRange(0, 4).Draw(t, "rules")
	for i := range nRules {
		r := Rule{Name: fmt.Sprintf("r%d", i),
			Frontend:     cfg.Frontends[rapid.IntRange(0, nFE-1).Draw(t, "rfe")].Name,
			Protocol:     rapid.SampledFrom([]Protocol{TCP, UDP}).Draw(t, "rproto"),
			FrontendPort: rapid.IntRange(80, 83).Draw(t, "rport"),
			Pool:         cfg.Pools[rapid.IntRange(0, nPools-1).Draw(t, "rpool")].Name,
			BackendPort:  80,
			Distribution: rapid.SampledFrom([]Distribution{"", Default, SourceIP, SourceIPProtocol}).Draw(t, "dist"),
		}
		if nProbes > 0 && rapid.Bool().Draw(t, "hasProbe") {
			r.Probe = cfg.Probes[rapid.IntRange(0, nProbes-1).Draw(t, "rprobe")].Name
		}
		k := ListenerKey{r.Protocol, netip.AddrPortFrom(cfg.frontend(r.Frontend), uint16(r.FrontendPort))}
		if used[k] {
			continue
		}
		used[k] = true
		cfg.Rules = append(cfg.Rules, r)
	}
	if rapid.Bool().Draw(t, "natPool") {
		cfg.NATPools = append(cfg.NATPools, NATPool{Name: "nat", Frontend: cfg.Frontends[0].Name, Protocol: TCP,
			Start: 50000, End: 50000 + rapid.IntRange(0, 6).Draw(t, "natSize"), Pool: cfg.Pools[0].Name, BackendPort: 22})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("drawn config is invalid: %v", err)
	}

	in := Input{Desired: cfg, Now: t0, Probes: map[ProbeKey]ProbeResult{}, Current: State{Members: map[string]MemberState{}}}
	// Current listeners: some of the desired, some stale.
	for _, k := range Compute(Input{Desired: cfg, Now: t0}).Open {
		if rapid.Bool().Draw(t, "alreadyOpen") {
			in.Current.Listeners = append(in.Current.Listeners, k)
		}
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "stale") {
		in.Current.Listeners = append(in.Current.Listeners, lk(TCP, fmt.Sprintf("127.0.0.99:%d", 9000+i)))
	}
	for _, pt := range Compute(Input{Desired: cfg, Now: t0}).StartProbes {
		if rapid.Bool().Draw(t, "proberRunning") {
			in.Current.Probers = append(in.Current.Probers, pt)
		}
	}
	in.Current.Probers = append(in.Current.Probers, ProbeTarget{Key: ProbeKey{"old", "m9"}, Target: "10.9.9.9:1"})
	for _, id := range append(ids, "m9") {
		switch rapid.IntRange(0, 3).Draw(t, "memberState_"+id) {
		case 1:
			in.Current.Members[id] = MemberState{Draining: true, DrainDeadline: t0.Add(time.Duration(rapid.IntRange(-2, 2).Draw(t, "deadline")) * time.Second), Conns: rapid.IntRange(0, 2).Draw(t, "conns")}
		case 2:
			in.Current.Members[id] = MemberState{Drained: true}
		case 3:
			in.Current.Members[id] = MemberState{Conns: rapid.IntRange(0, 2).Draw(t, "conns")}
		}
		for _, pr := range cfg.Probes {
			in.Probes[ProbeKey{pr.Name, id}] = ProbeResult{Health: rapid.SampledFrom([]Health{Healthy, Unhealthy, Unknown, ""}).Draw(t, "verdict")}
		}
	}
	return in
}

func TestComputeProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := drawInput(t)
		p := Compute(in)
		cfg := in.Desired
		running := map[ProbeKey]ProbeTarget{}
		for _, pt := range in.Current.Probers {
			running[pt.Key] = pt
		}
		restarted := map[ProbeKey]bool{}
		for _, pt := range p.StartProbes {
			restarted[pt.Key] = true
		}

		// Never sends a rule's new flows to an unhealthy, unprobed, draining
		// or drained member, nor to one outside the rule's pool.
		for _, r := range cfg.Rules {
			k := ListenerKey{r.Protocol, netip.AddrPortFrom(cfg.frontend(r.Frontend), uint16(r.FrontendPort))}
			route, ok := p.Routes[k]
			if !ok {
				t.Fatalf("rule %s has no route", r.Name)
			}
			for _, id := range route.Candidates {
				s := in.Current.Members[id]
				if s.Draining || s.Drained {
					t.Fatalf("rule %s sends to %s which is draining or drained", r.Name, id)
				}
				if !slices.ContainsFunc(cfg.pool(r.Pool), func(m Member) bool { return m.ID == id }) {
					t.Fatalf("rule %s sends to %s outside pool %s", r.Name, id, r.Pool)
				}
				if r.Probe != "" {
					pk := ProbeKey{r.Probe, id}
					if in.Probes[pk].Health != Healthy || restarted[pk] {
						t.Fatalf("rule %s sends to %s whose probe says %q (restarted %v)", r.Name, id, in.Probes[pk].Health, restarted[pk])
					}
				}
			}
			// Every eligible member is in rotation.
			for _, m := range cfg.pool(r.Pool) {
				s := in.Current.Members[m.ID]
				pk := ProbeKey{r.Probe, m.ID}
				eligible := !s.Draining && !s.Drained && (r.Probe == "" || (in.Probes[pk].Health == Healthy && !restarted[pk]))
				if eligible != slices.Contains(route.Candidates, m.ID) {
					t.Fatalf("rule %s: member %s eligible=%v but candidates=%v", r.Name, m.ID, eligible, route.Candidates)
				}
			}
		}

		// Listeners after the plan are exactly the routes' keys: none left
		// for a removed frontend, rule or NAT port.
		after := map[ListenerKey]bool{}
		for _, k := range in.Current.Listeners {
			after[k] = true
		}
		for _, k := range p.Close {
			if !after[k] {
				t.Fatalf("closes %s which is not open", k)
			}
			delete(after, k)
		}
		for _, k := range p.Open {
			if after[k] {
				t.Fatalf("opens %s twice", k)
			}
			after[k] = true
		}
		if len(after) != len(p.Routes) {
			t.Fatalf("%d listeners after the plan, %d routes", len(after), len(p.Routes))
		}
		for k := range after {
			if _, ok := p.Routes[k]; !ok {
				t.Fatalf("listener %s has no route", k)
			}
			fe := false
			for _, f := range cfg.Frontends {
				fe = fe || f.Address == k.Addr.Addr()
			}
			if !fe {
				t.Fatalf("listener %s is on no configured frontend", k)
			}
		}

		// Drains: exactly the draining members with no connection or past
		// their deadline end.
		for id, s := range in.Current.Members {
			want := s.Draining && (s.Conns == 0 || !in.Now.Before(s.DrainDeadline))
			if got := slices.Contains(p.DrainDone, id); got != want {
				t.Fatalf("member %s (%+v): drain done %v, want %v", id, s, got, want)
			}
		}
		// Forgotten members are neither configured nor still draining.
		members := cfg.members()
		for _, id := range p.Forget {
			s := in.Current.Members[id]
			if _, ok := members[id]; ok || (s.Draining && !slices.Contains(p.DrainDone, id)) {
				t.Fatalf("forgets %s which is configured or still draining", id)
			}
		}

		// Executing the plan converges: the next plan opens, closes, starts
		// and stops nothing.
		next := in
		next.Current = State{Members: map[string]MemberState{}}
		for k := range after {
			next.Current.Listeners = append(next.Current.Listeners, k)
		}
		for k, pt := range running {
			if !slices.Contains(p.StopProbes, k) {
				next.Current.Probers = append(next.Current.Probers, pt)
			}
		}
		next.Current.Probers = append(next.Current.Probers, p.StartProbes...)
		for id, s := range in.Current.Members {
			if slices.Contains(p.Forget, id) {
				continue
			}
			if slices.Contains(p.DrainDone, id) {
				s = MemberState{Drained: true}
			}
			next.Current.Members[id] = s
		}
		p2 := Compute(next)
		if len(p2.Open)+len(p2.Close)+len(p2.StartProbes)+len(p2.StopProbes)+len(p2.DrainDone)+len(p2.Forget) != 0 {
			t.Fatalf("not converged after executing the plan: %+v", p2)
		}
	})
}
