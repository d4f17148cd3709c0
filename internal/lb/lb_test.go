package lb

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testBackend is a real HTTP server on loopback: "/" answers its name,
// "/health" the code in health, "/slow" waits for release.
type testBackend struct {
	name    string
	addr    string
	srv     *http.Server
	health  atomic.Int32
	probes  atomic.Int64
	hits    atomic.Int64
	release chan struct{}
}

func startBackend(t testing.TB, name string) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{name: name, addr: ln.Addr().String(), release: make(chan struct{})}
	b.health.Store(http.StatusOK)
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		b.probes.Add(1)
		if c := int(b.health.Load()); c == http.StatusFound {
			http.Redirect(w, r, "http://"+r.URL.Query().Get("to")+"/health", c)
			return
		}
		w.WriteHeader(int(b.health.Load()))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, b.name)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		b.hits.Add(1)
		_, _ = io.WriteString(w, b.name)
	})
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func (b *testBackend) member(inst int64, ports ...int) Member {
	m := Member{ID: b.name, InstanceID: inst, Ports: map[int]string{}}
	for _, p := range ports {
		m.Ports[p] = b.addr
	}
	return m
}

// frontend returns a loopback address of its own for a test and a free port
// on it.
var feSeq atomic.Int32

func frontend(t testing.TB) (netip.Addr, int) {
	t.Helper()
	n := feSeq.Add(1)
	addr := netip.AddrFrom4([4]byte{127, 0, byte(os.Getpid() % 200), byte(10 + n)})
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return addr, port
}

func newLB(t testing.TB) *LB {
	t.Helper()
	l := New(Options{Logger: slog.New(slog.DiscardHandler), Tick: 20 * time.Millisecond})
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func webConfig(fe netip.Addr, port int, interval time.Duration, members ...Member) *Config {
	return &Config{
		Frontends: []Frontend{{Name: "fe", Address: fe}},
		Pools:     []Pool{{Name: "pool", Members: members}},
		Probes:    []Probe{{Name: "http", Protocol: ProbeHTTP, Port: 80, RequestPath: "/health", Interval: interval, Threshold: 2}},
		Rules:     []Rule{{Name: "web", Frontend: "fe", Protocol: TCP, FrontendPort: port, Pool: "pool", BackendPort: 80, Probe: "http"}},
	}
}

var plainClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 5 * time.Second}

func get(url string) (string, error) {
	resp, err := plainClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(b), nil
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func inRotation(l *LB, id string) bool { return l.Health()[id].InRotation }

// spread sends n requests and counts answers per member.
func spread(t testing.TB, url string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		s, err := get(url)
		if err != nil {
			t.Fatalf("request through the LB: %v", err)
		}
		got[s]++
	}
	return got
}

func TestRequestsReachEveryHealthyMember(t *testing.T) {
	a, b, c := startBackend(t, "a"), startBackend(t, "b"), startBackend(t, "c")
	c.health.Store(http.StatusServiceUnavailable)
	fe, port := frontend(t)
	l := newLB(t)
	if err := l.Apply(t.Context(), webConfig(fe, port, 50*time.Millisecond, a.member(0, 80), b.member(1, 80), c.member(2, 80))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a and b healthy", func() bool { return inRotation(l, "a") && inRotation(l, "b") })
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(port)))
	got := spread(t, url, 60)
	if got["a"] == 0 || got["b"] == 0 || got["c"] != 0 {
		t.Fatalf("answers per member = %v, want a and b, never c", got)
	}
	waitFor(t, 5*time.Second, "c unhealthy", func() bool { return l.Health()["c"].Health == Unhealthy })
	h := l.Health()
	if h["c"].Health != Unhealthy || !strings.Contains(h["c"].Message, "503") {
		t.Errorf("health of c = %+v, want Unhealthy naming the 503", h["c"])
	}
	s := l.Snapshot()
	fc := s.Frontends[ListenerKey{TCP, netip.AddrPortFrom(fe, uint16(port))}.String()]
	if fc.Name != "web" || fc.Connections != 60 || fc.Failures != 0 || fc.BytesIn == 0 || fc.BytesOut == 0 {
		t.Errorf("frontend counters = %+v", fc)
	}
	if s.Members["a"].Connections+s.Members["b"].Connections != 60 || s.Members["a"].Connections != int64(got["a"]) {
		t.Errorf("member counters = %+v, answers %v", s.Members, got)
	}
}

func TestFailingMemberLeavesRotationWithinIntervalTimesThreshold(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	fe, port := frontend(t)
	l := newLB(t)
	const interval = 100 * time.Millisecond // threshold 2
	if err := l.Apply(t.Context(), webConfig(fe, port, interval, a.member(0, 80), b.member(1, 80))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "both healthy", func() bool { return inRotation(l, "a") && inRotation(l, "b") })
	a.health.Store(http.StatusInternalServerError)
	took := waitFor(t, 5*time.Second, "a out of rotation", func() bool { return !inRotation(l, "a") })
	// interval x threshold, plus one interval for where in its period the
	// failure landed, plus scheduling on a busy machine.
	if limit := 3*interval + 250*time.Millisecond; took > limit {
		t.Errorf("a left rotation after %s, want within %s", took, limit)
	}
	t.Logf("probe failure -> out of rotation: %s (interval %s, threshold 2)", took, interval)
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(port)))
	if got := spread(t, url, 20); got["a"] != 0 {
		t.Fatalf("answers %v after a failed its probe", got)
	}
	a.health.Store(http.StatusOK)
	waitFor(t, 5*time.Second, "a back in rotation", func() bool { return inRotation(l, "a") })
	if got := spread(t, url, 40); got["a"] == 0 {
		t.Fatalf("answers %v after a passed its probe again", got)
	}
}

func TestProbeNeverFollowsRedirects(t *testing.T) {
	a, other := startBackend(t, "a"), startBackend(t, "other")
	a.health.Store(http.StatusFound)
	fe, port := frontend(t)
	l := newLB(t)
	cfg := webConfig(fe, port, 30*time.Millisecond, a.member(0, 80))
	cfg.Probes[0].RequestPath = "/health?to=" + other.addr
	if err := l.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a unhealthy", func() bool { return l.Health()["a"].Health == Unhealthy })
	if msg := l.Health()["a"].Message; !strings.Contains(msg, "do not follow redirects") {
		t.Errorf("message %q", msg)
	}
	if n := other.probes.Load(); n != 0 {
		t.Errorf("the redirect target got %d probes; a probe must only reach its own member", n)
	}
}

func TestDrainLetsOpenConnectionsFinishAndSendsNewOnesElsewhere(t *testing.T) {
	a, b := startBackend(t, "a"), startBackend(t, "b")
	fe, port := frontend(t)
	l := newLB(t)
	// Only a at first, so the slow request lands on a.
	if err := l.Apply(t.Context(), webConfig(fe, port, 50*time.Millisecond, a.member(0, 80))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a healthy", func() bool { return inRotation(l, "a") })
	base := fmt.Sprintf("http://%s", netip.AddrPortFrom(fe, uint16(port)))
	resp, err := plainClient.Get(base + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	// Apply adds b while the connection to a is open: it is not dropped.
	if err := l.Apply(t.Context(), webConfig(fe, port, 50*time.Millisecond, a.member(0, 80), b.member(1, 80))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b healthy", func() bool { return inRotation(l, "b") })
	drained, err := l.Drain("a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if h := l.Health()["a"]; h.InRotation || !h.Draining {
		t.Fatalf("a right after Drain: %+v", h)
	}
	if got := spread(t, base+"/", 20); got["a"] != 0 || got["b"] != 20 {
		t.Fatalf("answers during a's drain = %v, want all on b", got)
	}
	select {
	case <-drained:
		t.Fatal("drain reported done while a connection is open")
	case <-time.After(100 * time.Millisecond):
	}
	close(a.release)
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "a" {
		t.Fatalf("the open request got %q, %v; want a's full answer", body, err)
	}
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("drain not reported after the last connection closed")
	}
	if h := l.Health()["a"]; !h.Drained || h.InRotation {
		t.Fatalf("a after its drain: %+v", h)
	}
	// Undrain: back only when the probe passes again.
	a.health.Store(http.StatusServiceUnavailable)
	if err := l.Undrain("a"); err != nil {
		t.Fatal(err)
	}
	if inRotation(l, "a") {
		t.Fatal("a in rotation right after Undrain, before a probe passed")
	}
	time.Sleep(200 * time.Millisecond)
	if inRotation(l, "a") {
		t.Fatal("a in rotation while its probe fails")
	}
	a.health.Store(http.StatusOK)
	waitFor(t, 5*time.Second, "a back after its probe passed", func() bool { return inRotation(l, "a") })
	if _, err := l.Drain("nobody", time.Second); err == nil {
		t.Error("Drain of an unknown member succeeded")
	}
}

func TestDrainPeriodClosesWhatIsLeft(t *testing.T) {
	a := startBackend(t, "a")
	fe, port := frontend(t)
	l := newLB(t)
	if err := l.Apply(t.Context(), webConfig(fe, port, 50*time.Millisecond, a.member(0, 80))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a healthy", func() bool { return inRotation(l, "a") })
	resp, err := plainClient.Get(fmt.Sprintf("http://%s/slow", netip.AddrPortFrom(fe, uint16(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	drained, _ := l.Drain("a", 300*time.Millisecond)
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("drain not reported after its period")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("drained after %s, before the 300ms period with a connection open", d)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("the connection left at the end of the period was not closed")
	}
	// No member in rotation: a new connection is refused, counted as a failure.
	if _, err := get(fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(port)))); err == nil {
		t.Error("request succeeded with the only member drained")
	}
	waitFor(t, time.Second, "failure counted", func() bool {
		return l.Snapshot().Frontends[ListenerKey{TCP, netip.AddrPortFrom(fe, uint16(port))}.String()].Failures == 1
	})
}

func TestApplyMovesListenersWithoutDroppingConnections(t *testing.T) {
	a := startBackend(t, "a")
	fe, port := frontend(t)
	_, port2 := frontend(t)
	l := newLB(t)
	cfg := webConfig(fe, port, 50*time.Millisecond, a.member(0, 80))
	if err := l.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a healthy", func() bool { return inRotation(l, "a") })
	old := netip.AddrPortFrom(fe, uint16(port))
	resp, err := plainClient.Get(fmt.Sprintf("http://%s/slow", old))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The rule moves to another port: the old listener closes, the new one
	// opens, the established connection carries on.
	moved := webConfig(fe, port2, 50*time.Millisecond, a.member(0, 80))
	if err := l.Apply(t.Context(), moved); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", old.String(), time.Second); err == nil {
		t.Error("the removed frontend port still accepts")
	}
	if s, err := get(fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(port2)))); err != nil || s != "a" {
		t.Errorf("new port: %q, %v", s, err)
	}
	close(a.release)
	if body, err := io.ReadAll(resp.Body); err != nil || string(body) != "a" {
		t.Errorf("established connection after Apply: %q, %v", body, err)
	}
	if err := l.Apply(t.Context(), &Config{Rules: []Rule{{Name: "x"}}}); err == nil {
		t.Error("Apply of an invalid config succeeded")
	}
	if s, err := get(fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(port2)))); err != nil || s != "a" {
		t.Errorf("after a refused Apply: %q, %v", s, err)
	}
}

func TestNATPoolPortReachesInstance(t *testing.T) {
	var members []Member
	for i := range 4 {
		if i == 2 {
			continue // instance 2 was deleted: port start+2 maps to nothing
		}
		members = append(members, startBackend(t, fmt.Sprintf("vm%d", i)).member(int64(i), 22))
	}
	fe, _ := frontend(t)
	start := 52000 + os.Getpid()%1000*10
	l := newLB(t)
	cfg := &Config{
		Frontends: []Frontend{{Name: "fe", Address: fe}},
		Pools:     []Pool{{Name: "pool", Members: members}},
		NATPools:  []NATPool{{Name: "ssh", Frontend: "fe", Protocol: TCP, Start: start, End: start + 9, Pool: "pool", BackendPort: 22}},
	}
	if err := l.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	for _, k := range []int{0, 1, 3} {
		for range 3 {
			s, err := get(fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(start+k))))
			if err != nil || s != fmt.Sprintf("vm%d", k) {
				t.Fatalf("port start+%d answered %q, %v; want vm%d", k, s, err, k)
			}
		}
	}
	if _, err := net.DialTimeout("tcp", netip.AddrPortFrom(fe, uint16(start+2)).String(), time.Second); err == nil {
		t.Error("port start+2 accepts with no instance 2")
	}
}

// udpEcho answers each datagram with its name and the datagram.
func udpEcho(t testing.TB, name string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(name+":"+string(buf[:n])), from)
		}
	}()
	return pc.LocalAddr().String()
}

func TestUDPFlows(t *testing.T) {
	var members []Member
	for i := range 3 {
		name := fmt.Sprintf("u%d", i)
		members = append(members, Member{ID: name, InstanceID: int64(i), Ports: map[int]string{53: udpEcho(t, name)}})
	}
	fe, port := frontend(t)
	l := newLB(t)
	cfg := &Config{
		Frontends: []Frontend{{Name: "fe", Address: fe}},
		Pools:     []Pool{{Name: "pool", Members: members}},
		Rules:     []Rule{{Name: "dns", Frontend: "fe", Protocol: UDP, FrontendPort: port, Pool: "pool", BackendPort: 53, IdleTimeout: 300 * time.Millisecond}},
	}
	if err := l.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(fe, uint16(port)))
	seen := map[string]bool{}
	for c := range 12 {
		conn, err := net.DialUDP("udp", nil, dst)
		if err != nil {
			t.Fatal(err)
		}
		var first string
		for i := range 3 { // one flow: every datagram to the same member
			msg := fmt.Sprintf("c%d-%d", c, i)
			if _, err := conn.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 2048)
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("flow %d: %v", c, err)
			}
			who, echoed, _ := strings.Cut(string(buf[:n]), ":")
			if echoed != msg {
				t.Fatalf("flow %d got %q", c, buf[:n])
			}
			if i == 0 {
				first = who
			} else if who != first {
				t.Fatalf("flow %d moved from %s to %s", c, first, who)
			}
		}
		seen[first] = true
		conn.Close()
	}
	if len(seen) < 2 {
		t.Errorf("12 flows all went to %v", seen)
	}
	key := ListenerKey{UDP, netip.AddrPortFrom(fe, uint16(port))}.String()
	if s := l.Snapshot().Frontends[key]; s.Connections != 12 || s.Active != 12 || s.BytesIn == 0 || s.BytesOut <= s.BytesIn {
		t.Errorf("udp counters = %+v", s)
	}
	waitFor(t, 3*time.Second, "sessions idle out", func() bool { return l.Snapshot().Frontends[key].Active == 0 })
}

func TestSourceIPAffinity(t *testing.T) {
	var members []Member
	for i := range 4 {
		members = append(members, startBackend(t, fmt.Sprintf("m%d", i)).member(int64(i), 80))
	}
	fe, port := frontend(t)
	l := newLB(t)
	cfg := webConfig(fe, port, 50*time.Millisecond, members...)
	cfg.Rules[0].Distribution = SourceIP
	if err := l.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "all healthy", func() bool {
		h := l.Health()
		return h["m0"].InRotation && h["m1"].InRotation && h["m2"].InRotation && h["m3"].InRotation
	})
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(port)))
	from := func(src string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DialContext: d.DialContext}, Timeout: 5 * time.Second}
	}
	getFrom := func(c *http.Client) string {
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	all := map[string]bool{}
	for i := range 16 {
		c := from(fmt.Sprintf("127.1.%d.%d", i, 1+i))
		first := getFrom(c)
		for range 5 {
			if got := getFrom(c); got != first {
				t.Fatalf("source %d: %s then %s with SourceIP affinity", i, first, got)
			}
		}
		all[first] = true
	}
	if len(all) < 2 {
		t.Errorf("16 sources all on %v", all)
	}
	// Consistent: draining one member moves only the sources that were on it.
	before := map[int]string{}
	for i := range 16 {
		before[i] = getFrom(from(fmt.Sprintf("127.1.%d.%d", i, 1+i)))
	}
	if _, err := l.Drain("m1", time.Second); err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		got := getFrom(from(fmt.Sprintf("127.1.%d.%d", i, 1+i)))
		if before[i] != "m1" && got != before[i] {
			t.Errorf("source %d moved from %s to %s when m1 left", i, before[i], got)
		}
		if got == "m1" {
			t.Errorf("source %d sent to draining m1", i)
		}
	}
	// Default (5-tuple): one source spreads over members.
	cfg2 := webConfig(fe, port, 50*time.Millisecond, members...)
	if err := l.Apply(context.Background(), cfg2); err != nil {
		t.Fatal(err)
	}
	c := from("127.1.0.1")
	spreadOne := map[string]bool{}
	for range 40 {
		spreadOne[getFrom(c)] = true
	}
	if len(spreadOne) < 2 {
		t.Errorf("5-tuple distribution sent 40 connections of one source to %v", spreadOne)
	}
}

func TestHTTPSAndTCPProbes(t *testing.T) {
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(tlsSrv.Close)
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")
	web := startBackend(t, "web")
	closed, _ := frontend(t) // an address with nothing listening
	fe, port := frontend(t)
	_, port2 := frontend(t)
	l := newLB(t)
	cfg := &Config{
		Frontends: []Frontend{{Name: "fe", Address: fe}},
		Pools: []Pool{{Name: "pool", Members: []Member{
			{ID: "good", Ports: map[int]string{80: web.addr, 443: tlsAddr, 22: web.addr}},
			{ID: "bad", Ports: map[int]string{80: web.addr, 443: web.addr, 22: netip.AddrPortFrom(closed, 1).String()}},
		}}},
		Probes: []Probe{
			{Name: "https", Protocol: ProbeHTTPS, Port: 443, RequestPath: "/ready", Interval: 30 * time.Millisecond, Threshold: 1},
			{Name: "tcp", Protocol: ProbeTCP, Port: 22, Interval: 30 * time.Millisecond, Threshold: 1},
		},
		Rules: []Rule{
			{Name: "a", Frontend: "fe", Protocol: TCP, FrontendPort: port, Pool: "pool", BackendPort: 80, Probe: "https"},
			{Name: "b", Frontend: "fe", Protocol: TCP, FrontendPort: port2, Pool: "pool", BackendPort: 80, Probe: "tcp"},
		},
	}
	if err := l.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "verdicts", func() bool {
		h := l.Health()
		return h["good"].Health == Healthy && h["bad"].Health == Unhealthy
	})
	// "bad" fails both: https against a plain HTTP server, tcp against a
	// closed port.
	if msg := l.Health()["bad"].Message; !strings.Contains(msg, "https") && !strings.Contains(msg, "tcp") {
		t.Errorf("message %q", msg)
	}
	rt := *l.routes.Load()
	for _, p := range []int{port, port2} {
		if c := rt[ListenerKey{TCP, netip.AddrPortFrom(fe, uint16(p))}].Candidates; len(c) != 1 || c[0] != "good" {
			t.Errorf("rotation on %d = %v, want [good]", p, c)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("tcpReset=%v", reset), func(t *testing.T) {
			a := startBackend(t, "a")
			fe, port := frontend(t)
			l := newLB(t)
			cfg := webConfig(fe, port, 30*time.Millisecond, a.member(0, 80))
			cfg.Rules[0].IdleTimeout = 300 * time.Millisecond
			cfg.Rules[0].TCPReset = reset
			if err := l.Apply(t.Context(), cfg); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "a healthy", func() bool { return inRotation(l, "a") })
			c, err := net.Dial("tcp", netip.AddrPortFrom(fe, uint16(port)).String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// Traffic keeps the flow open past the timeout.
			for range 4 {
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 512)
				if _, err := c.Read(buf); err != nil {
					t.Fatalf("active flow closed: %v", err)
				}
				time.Sleep(150 * time.Millisecond)
			}
			// Then silence: closed after the idle timeout.
			start := time.Now()
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			_, err = c.Read(make([]byte, 16))
			took := time.Since(start)
			if took < 100*time.Millisecond || took > 2*time.Second {
				t.Errorf("idle flow closed after %s, want about 300ms", took)
			}
			isReset := err != nil && strings.Contains(err.Error(), "reset")
			if isReset != reset || (!reset && err != io.EOF) {
				t.Errorf("idle close read error %v, want reset=%v", err, reset)
			}
		})
	}
}

func TestUndrainDuringDrainAndClose(t *testing.T) {
	a := startBackend(t, "a")
	fe, port := frontend(t)
	l := New(Options{Tick: 20 * time.Millisecond})
	cfg := webConfig(fe, port, 30*time.Millisecond, a.member(0, 80))
	cfg.Rules[0].Probe = "" // no probe: back at once after Undrain
	if err := l.Apply(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://%s", netip.AddrPortFrom(fe, uint16(port)))
	resp, err := plainClient.Get(url + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	drained, _ := l.Drain("a", time.Minute)
	if err := l.Undrain("a"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-drained:
	case <-time.After(time.Second):
		t.Fatal("Undrain did not end the drain")
	}
	if s, err := get(url + "/"); err != nil || s != "a" {
		t.Fatalf("after Undrain: %q, %v", s, err)
	}
	// Close ends listeners and open connections.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("open connection survived Close")
	}
	if _, err := net.DialTimeout("tcp", netip.AddrPortFrom(fe, uint16(port)).String(), time.Second); err == nil {
		t.Error("listener survived Close")
	}
	if err := l.Apply(t.Context(), cfg); err == nil {
		t.Error("Apply after Close succeeded")
	}
}
