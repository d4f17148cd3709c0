package netctl

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/lb"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
)

func TestBackendPorts(t *testing.T) {
	for _, tc := range []struct {
		name string
		used []int
		host map[string]string
		want map[int]string
	}{
		{"guest port serves every backend port", []int{22, 80}, map[string]string{"health": "127.0.0.1:4000"},
			map[int]string{22: "127.0.0.1:4000", 80: "127.0.0.1:4000"}},
		{"ssh forward for 22", []int{22, 80}, map[string]string{"health": "127.0.0.1:4000", "ssh": "127.0.0.1:4022"},
			map[int]string{22: "127.0.0.1:4022", 80: "127.0.0.1:4000"}},
		{"numbered forward wins", []int{8080}, map[string]string{"health": "127.0.0.1:4000", "8080": "127.0.0.1:4080"},
			map[int]string{8080: "127.0.0.1:4080"}},
		{"no forward", []int{80}, map[string]string{}, nil},
		{"nothing used", nil, map[string]string{"health": "a:1"}, map[int]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := BackendPorts(tc.used, tc.host); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("BackendPorts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConvert(t *testing.T) {
	set := model.SetRef{Sub: "S", RG: "rg", Name: "web"}
	fe := netip.MustParseAddr("127.0.1.1")
	base := func() *network.LBConfig {
		return &network.LBConfig{
			Frontends: []network.LBFrontend{{Name: "FE", Address: fe}, {Name: "pending"}},
			Rules: []network.LBRule{
				{Name: "http", Frontend: "fe", Protocol: "tcp", FrontendPort: 80, BackendPort: 80, BackendPools: []string{"Pool"}, Probe: "p", IdleTimeoutMinutes: 4, LoadDistribution: "Default"},
				{Name: "all", Frontend: "fe", Protocol: "all", FrontendPort: 0, BackendPort: 0, BackendPools: []string{"pool"}},
				{Name: "later", Frontend: "pending", Protocol: "tcp", FrontendPort: 81, BackendPort: 80, BackendPools: []string{"pool"}},
			},
			Probes:   []network.LBProbe{{Name: "p", Protocol: "http", Path: "health", Port: 80, IntervalSeconds: 5, NumberOfProbes: 2}},
			NATPools: []network.LBNATPool{{Name: "ssh", Frontend: "fe", Protocol: "tcp", FrontendPortStart: 50000, FrontendPortEnd: 50119, BackendPort: 22, IdleTimeoutMinutes: 4}},
			Members: []network.LBMember{
				{Set: set, InstanceID: 0, NIC: "nic", BackendPools: []string{"pool"}, NATPools: []string{"ssh"}},
				{Set: set, InstanceID: 1, NIC: "nic", BackendPools: []string{"pool"}, NATPools: []string{"ssh"}},
				{Set: set, InstanceID: 2, NIC: "nic", BackendPools: []string{"pool"}},
			},
		}
	}
	reach := func(_ model.SetRef, id int64) (map[string]string, bool) {
		switch id {
		case 0:
			return map[string]string{"health": "127.0.0.1:4000"}, true
		case 1:
			return map[string]string{"health": "127.0.0.1:4001", "ssh": "127.0.0.1:5001"}, true
		case 2:
			return map[string]string{}, true // running, no forward yet
		}
		return nil, false
	}
	cfg, skipped := Convert(base(), reach)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("converted config is not valid: %v", err)
	}
	m0 := lb.Member{ID: "s/rg/web/0/nic", InstanceID: 0, Ports: map[int]string{22: "127.0.0.1:4000", 80: "127.0.0.1:4000"}}
	m1 := lb.Member{ID: "s/rg/web/1/nic", InstanceID: 1, Ports: map[int]string{22: "127.0.0.1:5001", 80: "127.0.0.1:4001"}}
	want := &lb.Config{
		Frontends: []lb.Frontend{{Name: "fe", Address: fe}},
		Probes:    []lb.Probe{{Name: "p", Protocol: lb.ProbeHTTP, Port: 80, RequestPath: "/health", Interval: 5 * time.Second, Threshold: 2}},
		Rules: []lb.Rule{{Name: "http", Frontend: "fe", Protocol: lb.TCP, FrontendPort: 80, Pool: "pool", BackendPort: 80, Probe: "p",
			Distribution: lb.Default, IdleTimeout: 4 * time.Minute}},
		NATPools: []lb.NATPool{{Name: "ssh", Frontend: "fe", Protocol: lb.TCP, Start: 50000, End: 50119, Pool: "natpool:ssh", BackendPort: 22, IdleTimeout: 4 * time.Minute}},
		Pools:    []lb.Pool{{Name: "natpool:ssh", Members: []lb.Member{m0, m1}}, {Name: "pool", Members: []lb.Member{m0, m1}}},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("Convert =\n%+v\nwant\n%+v", cfg, want)
	}
	if len(skipped) != 4 { // pending frontend, rule all, rule later, member 2
		t.Fatalf("skipped = %q, want 4 entries", skipped)
	}
	if d := DrainPeriod(cfg, 5*time.Second); d != 5*time.Second {
		t.Fatalf("DrainPeriod = %s", d)
	}
	cfg.Rules[0].IdleTimeout = 2 * time.Second
	if d := DrainPeriod(cfg, 5*time.Second); d != 2*time.Second {
		t.Fatalf("DrainPeriod with a short idle timeout = %s", d)
	}
}
