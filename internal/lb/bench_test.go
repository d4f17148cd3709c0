package lb

import (
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
	"sync"
	"testing"
	"time"
)

// BenchmarkVersusHAProxy measures requests/s and latency through this LB
// and through HAProxy (mode tcp, roundrobin: the same L4 job) in front of
// the same two backends, and direct to one backend for the added latency.
// It is measured, not asserted, and skips without haproxy. Run with
//
//	go test ./internal/lb -run '^$' -bench VersusHAProxy -benchtime 1x
func BenchmarkVersusHAProxy(b *testing.B) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		b.Skip("haproxy not installed (apt-get install -y haproxy)")
	}
	bk := []*testBackend{startBackend(b, "a"), startBackend(b, "b")}
	fe, port := frontend(b)
	l := newLB(b)
	if err := l.Apply(context.Background(), webConfig(fe, port, 100*time.Millisecond, bk[0].member(0, 80), bk[1].member(1, 80))); err != nil {
		b.Fatal(err)
	}
	waitFor(b, 5*time.Second, "backends healthy", func() bool { return inRotation(l, "a") && inRotation(l, "b") })

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
		{"lb", fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(port)))},
		{"haproxy", "http://" + haddr + "/"},
	}
	b.ResetTimer()
	for _, keepAlive := range []bool{false, true} {
		mode := "newconn"
		if keepAlive {
			mode = "keepalive"
		}
		res := map[string]loadResult{}
		for _, tg := range targets {
			res[tg.name] = load(b, tg.url, 32, 2*time.Second, keepAlive)
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
	rps      float64
	p50, p99 time.Duration
	errors   int
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
	slices.Sort(lat)
	time.Sleep(500 * time.Millisecond) // let TIME_WAIT churn settle between runs
	return loadResult{rps: float64(len(lat)) / el.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], errors: errors}
}
