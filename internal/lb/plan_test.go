package lb

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vmssd/vmssd/internal/errs"
)

var addrCmp = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

var t0 = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

func lk(p Protocol, s string) ListenerKey { return ListenerKey{p, netip.MustParseAddrPort(s)} }

func mem(id string, inst int64, ip string) Member {
	return Member{ID: id, InstanceID: inst, Address: netip.MustParseAddr(ip)}
}

// baseConfig is the example: a rule 80 -> 80 with an HTTP probe and a
// NAT pool 50000-50119 -> 22.
func baseConfig() *Config {
	return &Config{
		Frontends: []Frontend{{Name: "fe", Address: netip.MustParseAddr("127.0.0.10")}},
		Pools: []Pool{{Name: "pool", Members: []Member{
			mem("vm0", 0, "10.0.0.4"), mem("vm1", 1, "10.0.0.5"), mem("vm3", 3, "10.0.0.7"),
		}}},
		Probes:   []Probe{{Name: "http", Protocol: ProbeHTTP, Port: 80, RequestPath: "/health", Interval: 5 * time.Second, Threshold: 2}},
		Rules:    []Rule{{Name: "web", Frontend: "fe", Protocol: TCP, FrontendPort: 80, Pool: "pool", BackendPort: 80, Probe: "http"}},
		NATPools: []NATPool{{Name: "ssh", Frontend: "fe", Protocol: TCP, Start: 50000, End: 50119, Pool: "pool", BackendPort: 22}},
	}
}

func healthy(ids ...string) map[ProbeKey]ProbeResult {
	m := map[ProbeKey]ProbeResult{}
	for _, id := range ids {
		m[ProbeKey{"http", id}] = ProbeResult{Health: Healthy, Since: t0}
	}
	return m
}

func running(c *Config) []ProbeTarget {
	return Compute(Input{Desired: c, Now: t0}).StartProbes
}

func TestComputeRoutesAndListeners(t *testing.T) {
	cfg := baseConfig()
	tests := []struct {
		name    string
		state   State
		probes  map[ProbeKey]ProbeResult
		web     []string // rotation of rule web
		open    []ListenerKey
		close   []ListenerKey
		done    []string
		forget  []string
		health0 Health
	}{
		{name: "fresh: nothing probed, listeners open, no rotation",
			state: State{}, web: nil, health0: Unknown,
			open: []ListenerKey{lk(TCP, "127.0.0.10:80"), lk(TCP, "127.0.0.10:50000"), lk(TCP, "127.0.0.10:50001"), lk(TCP, "127.0.0.10:50003")}},
		{name: "healthy members are in rotation",
			state:  State{Probers: running(cfg), Listeners: []ListenerKey{lk(TCP, "127.0.0.10:80"), lk(TCP, "127.0.0.10:50000"), lk(TCP, "127.0.0.10:50001"), lk(TCP, "127.0.0.10:50003")}},
			probes: healthy("vm0", "vm1", "vm3"), web: []string{"vm0", "vm1", "vm3"}, health0: Healthy},
		{name: "unhealthy and unknown members are not",
			state: State{Probers: running(cfg), Listeners: []ListenerKey{lk(TCP, "127.0.0.10:80"), lk(TCP, "127.0.0.10:50000"), lk(TCP, "127.0.0.10:50001"), lk(TCP, "127.0.0.10:50003")}},
			probes: map[ProbeKey]ProbeResult{
				{"http", "vm0"}: {Health: Unhealthy, Message: "503"}, {"http", "vm1"}: {Health: Healthy},
			}, web: []string{"vm1"}, health0: Unhealthy},
		{name: "a draining member leaves rotation; its drain ends when its connections are gone",
			state: State{Probers: running(cfg), Listeners: []ListenerKey{lk(TCP, "127.0.0.10:80"), lk(TCP, "127.0.0.10:50000"), lk(TCP, "127.0.0.10:50001"), lk(TCP, "127.0.0.10:50003")},
				Members: map[string]MemberState{"vm0": {Draining: true, DrainDeadline: t0.Add(time.Minute)}, "vm1": {Draining: true, DrainDeadline: t0.Add(time.Minute), Conns: 2}}},
			probes: healthy("vm0", "vm1", "vm3"), web: []string{"vm3"}, done: []string{"vm0"}, health0: Healthy},
		{name: "a drain ends at its deadline even with connections; drained stays out",
			state: State{Probers: running(cfg), Listeners: []ListenerKey{lk(TCP, "127.0.0.10:80"), lk(TCP, "127.0.0.10:50000"), lk(TCP, "127.0.0.10:50001"), lk(TCP, "127.0.0.10:50003")},
				Members: map[string]MemberState{"vm1": {Draining: true, DrainDeadline: t0, Conns: 2}, "vm3": {Drained: true}}},
			probes: healthy("vm0", "vm1", "vm3"), web: []string{"vm0"}, done: []string{"vm1"}, health0: Healthy},
		{name: "listeners of removed rules close; removed members are forgotten",
			state: State{Probers: running(cfg), Listeners: []ListenerKey{lk(TCP, "127.0.0.10:80"), lk(TCP, "127.0.0.10:81"), lk(UDP, "127.0.0.10:80"), lk(TCP, "127.0.0.10:50000"), lk(TCP, "127.0.0.10:50001"), lk(TCP, "127.0.0.10:50003")},
				Members: map[string]MemberState{"gone": {}, "gone-draining": {Draining: true, DrainDeadline: t0.Add(time.Second), Conns: 1}}},
			probes: healthy("vm0", "vm1", "vm3"), web: []string{"vm0", "vm1", "vm3"}, health0: Healthy,
			close: []ListenerKey{lk(TCP, "127.0.0.10:81"), lk(UDP, "127.0.0.10:80")}, forget: []string{"gone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Compute(Input{Desired: cfg, Current: tt.state, Probes: tt.probes, Now: t0})
			if diff := cmp.Diff(tt.web, p.Routes[lk(TCP, "127.0.0.10:80")].Candidates); diff != "" {
				t.Errorf("rotation (-want +got):\n%s", diff)
			}
			slices.SortFunc(tt.open, ListenerKey.less)
			if diff := cmp.Diff(tt.open, p.Open, addrCmp); diff != "" {
				t.Errorf("open (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.close, p.Close, addrCmp); diff != "" {
				t.Errorf("close (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.done, p.DrainDone); diff != "" {
				t.Errorf("drain done (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.forget, p.Forget); diff != "" {
				t.Errorf("forget (-want +got):\n%s", diff)
			}
			if got := p.Health["vm0"].Health; got != tt.health0 {
				t.Errorf("health of vm0 = %s, want %s", got, tt.health0)
			}
		})
	}
}

func TestComputeNATPoolFollowsInstanceID(t *testing.T) {
	cfg := baseConfig()
	cfg.Pools[0].Members = append(cfg.Pools[0].Members, mem("vm200", 200, "10.0.0.9")) // beyond the range
	p := Compute(Input{Desired: cfg, Now: t0})
	for port, want := range map[string]string{"127.0.0.10:50000": "vm0", "127.0.0.10:50001": "vm1", "127.0.0.10:50003": "vm3"} {
		r, ok := p.Routes[lk(TCP, port)]
		if !ok || !r.NAT || r.BackendPort != 22 || len(r.Candidates) != 1 || r.Candidates[0] != want {
			t.Errorf("route %s = %+v, want NAT to %s:22", port, r, want)
		}
	}
	if _, ok := p.Routes[lk(TCP, "127.0.0.10:50002")]; ok {
		t.Errorf("port 50002 has a route but no instance 2 exists")
	}
	if n := len(p.Routes); n != 4 {
		t.Errorf("%d routes, want 4 (rule + 3 NAT ports; instance 200 has no port in 50000-50119)", n)
	}
	// NAT ignores probes and drains.
	st := State{Members: map[string]MemberState{"vm1": {Drained: true}}}
	p = Compute(Input{Desired: cfg, Current: st, Probes: map[ProbeKey]ProbeResult{{"http", "vm1"}: {Health: Unhealthy}}, Now: t0})
	if r := p.Routes[lk(TCP, "127.0.0.10:50001")]; len(r.Candidates) != 1 {
		t.Errorf("NAT route of a drained unhealthy member = %+v, want it kept", r)
	}
}

func TestComputeProbers(t *testing.T) {
	cfg := baseConfig()
	p := Compute(Input{Desired: cfg, Now: t0})
	if len(p.StartProbes) != 3 || p.StartProbes[0].Target != "10.0.0.4:80" {
		t.Fatalf("start probes = %+v", p.StartProbes)
	}
	// A member's address changes: its prober restarts and its old verdict
	// no longer counts.
	moved := baseConfig()
	moved.Pools[0].Members[0].Ports = map[int]string{80: "127.0.0.1:31000"}
	p = Compute(Input{Desired: moved, Current: State{Probers: running(cfg)}, Probes: healthy("vm0", "vm1", "vm3"), Now: t0})
	if diff := cmp.Diff([]ProbeKey{{"http", "vm0"}}, p.StopProbes); diff != "" {
		t.Errorf("stop (-want +got):\n%s", diff)
	}
	if len(p.StartProbes) != 1 || p.StartProbes[0].Target != "127.0.0.1:31000" {
		t.Errorf("start = %+v", p.StartProbes)
	}
	if got := p.Routes[lk(TCP, "127.0.0.10:80")].Candidates; slices.Contains(got, "vm0") {
		t.Errorf("rotation %v has vm0 before its new prober answered", got)
	}
	// A rule without a probe sends to every member not draining.
	noProbe := baseConfig()
	noProbe.Rules[0].Probe = ""
	p = Compute(Input{Desired: noProbe, Current: State{Members: map[string]MemberState{"vm3": {Draining: true, DrainDeadline: t0.Add(time.Hour), Conns: 1}}}, Now: t0})
	if diff := cmp.Diff([]string{"vm0", "vm1"}, p.Routes[lk(TCP, "127.0.0.10:80")].Candidates); diff != "" {
		t.Errorf("rotation (-want +got):\n%s", diff)
	}
	if len(p.StartProbes) != 0 {
		t.Errorf("probers for an unreferenced probe: %+v", p.StartProbes)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
	}{
		{"rule to a missing pool", func(c *Config) { c.Rules[0].Pool = "nope" }},
		{"rule to a missing probe", func(c *Config) { c.Rules[0].Probe = "nope" }},
		{"protocol All", func(c *Config) { c.Rules[0].Protocol = "All" }},
		{"bad distribution", func(c *Config) { c.Rules[0].Distribution = "RoundRobin" }},
		{"NAT range overlaps the rule", func(c *Config) { c.NATPools[0].Start, c.NATPools[0].End = 79, 81 }},
		{"NAT range reversed", func(c *Config) { c.NATPools[0].Start = 50200 }},
		{"http probe without a path", func(c *Config) { c.Probes[0].RequestPath = "" }},
		{"tcp probe with a path", func(c *Config) { c.Probes[0].Protocol = ProbeTCP }},
		{"zero threshold", func(c *Config) { c.Probes[0].Threshold = 0 }},
		{"port 0", func(c *Config) { c.Rules[0].BackendPort = 0 }},
		{"duplicate member", func(c *Config) { c.Pools[0].Members[1].ID = "vm0" }},
		{"member in two pools with two addresses", func(c *Config) {
			c.Pools = append(c.Pools, Pool{Name: "p2", Members: []Member{mem("vm0", 0, "10.9.9.9")}})
		}},
		{"frontend without address", func(c *Config) { c.Frontends[0].Address = netip.Addr{} }},
	}
	if err := baseConfig().Validate(); err != nil {
		t.Fatalf("base config: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.mutate(c)
			err := c.Validate()
			if !errs.IsKind(err, errs.Invalid) {
				t.Fatalf("Validate = %v, want an Invalid error", err)
			}
		})
	}
}

func TestPickIsConsistent(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	hashes := func(ids []string) []uint64 {
		var h []uint64
		for _, id := range ids {
			h = append(h, stringHash(id))
		}
		return h
	}
	none := func(int) bool { return false }
	all, fewer := hashes(ids), hashes([]string{"a", "b", "d", "e"}) // c leaves
	moved, count := 0, map[string]int{}
	for i := range 5000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), uint16(1024+i))
		f := flowHash(Default, TCP, src, netip.MustParseAddrPort("127.0.0.1:80"))
		before := ids[pick(f, all, none)]
		after := []string{"a", "b", "d", "e"}[pick(f, fewer, none)]
		count[before]++
		if before != "c" && before != after {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("%d flows not on the removed member moved", moved)
	}
	for _, id := range ids {
		if count[id] < 700 || count[id] > 1300 {
			t.Errorf("member %s got %d of 5000 flows, want about 1000", id, count[id])
		}
	}
	// SourceIP ignores ports and protocol; Default does not.
	a := netip.MustParseAddrPort("10.0.0.1:1000")
	b := netip.MustParseAddrPort("10.0.0.1:2000")
	dst := netip.MustParseAddrPort("127.0.0.1:80")
	if flowHash(SourceIP, TCP, a, dst) != flowHash(SourceIP, UDP, b, dst) {
		t.Errorf("SourceIP hash depends on port or protocol")
	}
	if flowHash(SourceIPProtocol, TCP, a, dst) != flowHash(SourceIPProtocol, TCP, b, dst) || flowHash(SourceIPProtocol, TCP, a, dst) == flowHash(SourceIPProtocol, UDP, a, dst) {
		t.Errorf("SourceIPProtocol hash must ignore ports and depend on protocol")
	}
	if flowHash(Default, TCP, a, dst) == flowHash(Default, TCP, b, dst) {
		t.Errorf("Default hash ignores the source port")
	}
}
