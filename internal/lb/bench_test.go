package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// BenchmarkVersusHAProxy measures requests/s and latency through this LB
// and through HAProxy (mode tcp, roundrobin: the same L4 job) in front of
// the same two backends, and direct to one backend for the added latency.
// It is measured, not asserted. Without haproxy it skips, or fails when
// VMSSD_E2E=1 (CI installs haproxy). Run with
//
//	go test ./internal/lb -run '^$' -bench VersusHAProxy -benchtime 1x
func BenchmarkVersusHAProxy(b *testing.B) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			b.Fatal("VMSSD_E2E=1 and haproxy is not installed (apt-get install -y haproxy)")
		}
		b.Skip("haproxy not installed (apt-get install -y haproxy)")
	}
	bk := []*testBackend{startBackend(b, "a"), startBackend(b, "b")}
	fe, port := frontend(b)
	lbAddr := netip.AddrPortFrom(fe, uint16(port)).String()
	// The LB runs in its own process (this test binary), as HAProxy does,
	// so neither shares a Go scheduler with the load generator.
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	lbCmd := exec.Command(self, "-test.run", "^$")
	lbCmd.Env = append(os.Environ(), "VMSSD_LB_BENCH_SERVE="+lbAddr+","+bk[0].addr+","+bk[1].addr)
	lbCmd.Stderr = os.Stderr
	lbIn, err := lbCmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	lbOut, err := lbCmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := lbCmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lbIn.Close(); _ = lbCmd.Wait() })
	if line, err := bufio.NewReader(lbOut).ReadString('\n'); err != nil || line != "ready\n" {
		b.Fatalf("lb process: %q, %v", line, err)
	}

	hfe, hport := frontend(b)
	cfg := fmt.Sprintf(`global
	maxconn 8000
defaults
	mode tcp
	timeout connect 3s
	timeout client 60s
	timeout server 60s
frontend fe
	bind %s
	default_backend pool
backend pool
	balance roundrobin
	server a %s
	server b %s
`, netip.AddrPortFrom(hfe, uint16(hport)), bk[0].addr, bk[1].addr)
	cfgPath := filepath.Join(b.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-db", "-f", cfgPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	haddr := netip.AddrPortFrom(hfe, uint16(hport)).String()
	waitFor(b, 5*time.Second, "haproxy listening", func() bool {
		c, err := net.Dial("tcp", haddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	targets := []struct{ name, url string }{
		{"direct", "http://" + bk[0].addr + "/"},
		{"lb", "http://" + lbAddr + "/"},
		{"haproxy", "http://" + haddr + "/"},
	}
	b.ResetTimer()
	for _, keepAlive := range []bool{false, true} {
		mode := "newconn"
		if keepAlive {
			mode = "keepalive"
		}
		// Interleaved rounds, so that the other tenants of this machine
		// weigh on every target alike.
		res := map[string]loadResult{}
		for round := range 3 {
			for i := range targets {
				tg := targets[(i+round)%len(targets)]
				res[tg.name] = res[tg.name].merge(load(b, tg.url, 32, time.Second, keepAlive))
			}
		}
		for name, r := range res {
			res[name] = r.finish()
		}
		for _, name := range []string{"direct", "lb", "haproxy"} {
			r := res[name]
			fmt.Printf("%-9s %-7s %8.0f req/s  p50 %7s  p99 %7s  errors %d\n", mode, name, r.rps, r.p50, r.p99, r.errors)
		}
		ratio := res["lb"].rps / res["haproxy"].rps
		addLB, addHA := res["lb"].p99-res["direct"].p99, res["haproxy"].p99-res["direct"].p99
		fmt.Printf("%-9s lb/haproxy throughput %.2f; added p99: lb %s, haproxy %s\n", mode, ratio, addLB, addHA)
		b.ReportMetric(res["lb"].rps, mode+"-lb-req/s")
		b.ReportMetric(res["haproxy"].rps, mode+"-haproxy-req/s")
		b.ReportMetric(ratio, mode+"-ratio")
		b.ReportMetric(float64(addLB.Microseconds()), mode+"-lb-added-p99-µs")
		b.ReportMetric(float64(addHA.Microseconds()), mode+"-haproxy-added-p99-µs")
	}

	// Added latency at a steady rate well below saturation (open loop, a
	// new connection per request): what a client sees, not what the
	// machine can push.
	lat := map[string]loadResult{}
	for round := range 3 {
		for i := range targets {
			tg := targets[(i+round)%len(targets)]
			lat[tg.name] = lat[tg.name].merge(steady(b, tg.url, 1000, 1500*time.Millisecond))
		}
	}
	for name, r := range lat {
		lat[name] = r.finish()
	}
	for _, name := range []string{"direct", "lb", "haproxy"} {
		r := lat[name]
		fmt.Printf("1000/s    %-7s p50 %7s  p99 %7s  errors %d\n", name, r.p50, r.p99, r.errors)
	}
	for _, name := range []string{"lb", "haproxy"} {
		add50, add99 := lat[name].p50-lat["direct"].p50, lat[name].p99-lat["direct"].p99
		fmt.Printf("1000/s    %-7s added p50 %s, added p99 %s\n", name, add50, add99)
		b.ReportMetric(float64(add50.Microseconds()), "steady-"+name+"-added-p50-µs")
		b.ReportMetric(float64(add99.Microseconds()), "steady-"+name+"-added-p99-µs")
	}
}

// steady sends rate requests/s to url for d with vegeta (a new connection
// per request) and returns the latencies.
func steady(b *testing.B, url string, rate int, d time.Duration) loadResult {
	atk := vegeta.NewAttacker(vegeta.KeepAlive(false), vegeta.Proxy(nil), vegeta.Timeout(5*time.Second))
	var r loadResult
	start := time.Now()
	for res := range atk.Attack(vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url}),
		vegeta.Rate{Freq: rate, Per: time.Second}, d, "steady") {
		if res.Error != "" || res.Code != http.StatusOK {
			r.errors++
			continue
		}
		r.lat = append(r.lat, res.Latency)
	}
	r.elapsed = time.Since(start)
	if len(r.lat) == 0 {
		b.Fatalf("no request to %s succeeded", url)
	}
	time.Sleep(300 * time.Millisecond)
	return r
}

// BenchmarkProbeFailureToOutOfRotation measures the time from a member's
// health endpoint starting to fail to the member leaving rotation, with
// interval 100 ms and numberOfProbes 2 (so at most about 300 ms is expected:
// the failure lands somewhere in an interval, then two failed probes).
func BenchmarkProbeFailureToOutOfRotation(b *testing.B) {
	bk := []*testBackend{startBackend(b, "a"), startBackend(b, "b")}
	fe, port := frontend(b)
	l := newLB(b)
	if err := l.Apply(context.Background(), webConfig(fe, port, 100*time.Millisecond, bk[0].member(0, 80), bk[1].member(1, 80))); err != nil {
		b.Fatal(err)
	}
	var took []time.Duration
	for range max(b.N, 5) {
		waitFor(b, 5*time.Second, "a healthy", func() bool { return inRotation(l, "a") })
		bk[0].health.Store(http.StatusServiceUnavailable)
		start := time.Now()
		for l.routes.Load() != nil && slices.Contains((*l.routes.Load())[ListenerKey{TCP, netip.AddrPortFrom(fe, uint16(port))}].Candidates, "a") {
			time.Sleep(time.Millisecond)
		}
		took = append(took, time.Since(start))
		bk[0].health.Store(http.StatusOK)
	}
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	slices.Sort(took)
	fmt.Printf("probe failure -> out of rotation (interval 100ms, threshold 2): mean %s, min %s, max %s over %d\n",
		(sum / time.Duration(len(took))).Round(time.Millisecond), took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), len(took))
	b.ReportMetric(float64((sum / time.Duration(len(took))).Milliseconds()), "ms-to-out-of-rotation")
}

type loadResult struct {
	lat      []time.Duration
	elapsed  time.Duration
	rps      float64
	p50, p99 time.Duration
	errors   int
}

func (r loadResult) merge(o loadResult) loadResult {
	return loadResult{lat: append(r.lat, o.lat...), elapsed: r.elapsed + o.elapsed, errors: r.errors + o.errors}
}

func (r loadResult) finish() loadResult {
	slices.Sort(r.lat)
	r.rps = float64(len(r.lat)) / r.elapsed.Seconds()
	r.p50, r.p99 = r.lat[len(r.lat)/2], r.lat[len(r.lat)*99/100]
	return r
}

// load runs conc closed-loop clients against url for d.
func load(b *testing.B, url string, conc int, d time.Duration, keepAlive bool) loadResult {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	errors := 0
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			bad := 0
			for time.Now().Before(deadline) {
				t := time.Now()
				resp, err := client.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errors += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start)
	if len(lat) == 0 {
		b.Fatalf("no request to %s succeeded", url)
	}
	time.Sleep(300 * time.Millisecond) // let connection churn settle between runs
	return loadResult{lat: lat, elapsed: el, errors: errors}
}

// TestMain doubles the test binary as the benchmark's LB process when
// VMSSD_LB_BENCH_SERVE is "frontend,backendA,backendB": it serves a rule
// with a Tcp probe, prints "ready" once both members are in rotation, and
// exits when its stdin closes.
func TestMain(m *testing.M) {
	spec := os.Getenv("VMSSD_LB_BENCH_SERVE")
	if spec == "" {
		os.Exit(m.Run())
	}
	parts := strings.Split(spec, ",")
	fe := netip.MustParseAddrPort(parts[0])
	l := New(Options{})
	var members []Member
	for i, a := range parts[1:] {
		members = append(members, Member{ID: fmt.Sprintf("m%d", i), InstanceID: int64(i), Ports: map[int]string{80: a}})
	}
	cfg := webConfig(fe.Addr(), int(fe.Port()), 100*time.Millisecond, members...)
	cfg.Probes[0] = Probe{Name: "http", Protocol: ProbeTCP, Port: 80, Interval: 100 * time.Millisecond, Threshold: 2}
	if err := l.Apply(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for {
		h := l.Health()
		if h["m0"].InRotation && h["m1"].InRotation {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = l.Close()
}
