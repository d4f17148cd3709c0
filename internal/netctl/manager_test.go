package netctl

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/lb"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

// TestHealthAndLeave runs a real data plane over two real HTTP backends:
// the manager reports the load balancer probe's verdict as the instance
// health of a set whose healthProbe names it (and nothing for other sets),
// keeps the host's Unknown for an instance not running, and Leave takes
// the instance out of rotation before it returns.
func TestHealthAndLeave(t *testing.T) {
	set := model.SetRef{Sub: "s", RG: "rg", Name: "web"}
	var codes [2]atomic.Int32
	cfg := &lb.Config{
		Frontends: []lb.Frontend{{Name: "fe", Address: netip.MustParseAddr("127.0.0.1")}},
		Probes:    []lb.Probe{{Name: "p", Protocol: lb.ProbeHTTP, Port: 80, RequestPath: "/health", Interval: 50 * time.Millisecond, Threshold: 2}},
	}
	var members []lb.Member
	for i := range 2 {
		codes[i].Store(http.StatusOK)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(codes[i].Load())) }))
		t.Cleanup(srv.Close)
		members = append(members, lb.Member{ID: MemberID(set, int64(i), "nic"), InstanceID: int64(i), Ports: map[int]string{80: srv.Listener.Addr().String()}})
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg.Pools = []lb.Pool{{Name: "pool", Members: members}}
	cfg.Rules = []lb.Rule{{Name: "r", Frontend: "fe", Protocol: lb.TCP, FrontendPort: port, Pool: "pool", BackendPort: 80, Probe: "p"}}

	m := New(Options{Store: memstore.New(memstore.Options{}), DrainPeriod: time.Second})
	data := lb.New(lb.Options{})
	t.Cleanup(func() { _ = data.Close() })
	if err := data.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	m.lbs["lb"] = &balancer{lb: data, applied: cfg}
	m.healthLB[set.String()] = "lb"

	inst := func(id int64) *model.Instance { return &model.Instance{Sub: "s", RG: "rg", ScaleSet: "web", ID: id} }
	health := func(id int64) host.Health {
		h, _, ok := m.Health(inst(id), host.HealthHealthy)
		if !ok {
			t.Fatalf("no load balancer verdict for instance %d", id)
		}
		return h
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("both healthy", func() bool { return health(0) == host.HealthHealthy && health(1) == host.HealthHealthy })

	codes[1].Store(http.StatusServiceUnavailable)
	waitFor("instance 1 unhealthy", func() bool { return health(1) == host.HealthUnhealthy })
	if h, _, _ := m.Health(inst(1), host.HealthUnknown); h != host.HealthUnknown {
		t.Errorf("an instance the host does not see running: %s, want Unknown", h)
	}
	other := &model.Instance{Sub: "s", RG: "rg", ScaleSet: "api", ID: 0}
	if _, _, ok := m.Health(other, host.HealthHealthy); ok {
		t.Error("a set whose healthProbe names no load balancer probe got a verdict")
	}
	if h := health(7); h != host.HealthInitializing {
		t.Errorf("an instance not yet a member: %s, want Initializing", h)
	}

	start := time.Now()
	if err := m.Leave(t.Context(), inst(0)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second+500*time.Millisecond {
		t.Errorf("Leave took %s, more than the drain period", d)
	}
	if h := data.Health()[MemberID(set, 0, "nic")]; h.InRotation || !(h.Draining || h.Drained) {
		t.Errorf("instance 0 after Leave: %+v", h)
	}
	if err := m.Leave(t.Context(), inst(9)); err != nil {
		t.Errorf("Leave of an instance in no load balancer: %v", err)
	}
}
