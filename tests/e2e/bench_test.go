package e2e

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// Benchmarks run a real vmssd binary (a separate process, so its RSS is its
// own) with real guest processes. Run them with
//
//	go test ./tests/e2e -run '^$' -bench . -benchtime 3x
//
// and record the figures in docs/benchmarks.md.

// BenchmarkCreate50Healthy measures the time from the create request of a
// scale set of 50 instances to all 50 reported healthy by the API.
func BenchmarkCreate50Healthy(b *testing.B) {
	dataDir := b.TempDir()
	b.Cleanup(func() { testenv.KillInstances(dataDir) })
	p := startProc(b, dataDir, freePort(b))
	e := attach(b, dataDir, p.url)
	e.CreateRG("rg")
	var total time.Duration
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("s%d", i)
		start := time.Now()
		r := e.Do(http.MethodPut, e.VMSSPath("rg", name), testenv.VMSSBody(50, "latest", "Manual"))
		if r.Status != http.StatusCreated {
			b.Fatalf("create: %d %s", r.Status, r.Body)
		}
		waitHealthyFast(b, e, "rg", name, 50)
		total += time.Since(start)
		b.StopTimer()
		waitOp(b, e, e.Do(http.MethodDelete, e.VMSSPath("rg", name), nil))
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/create50-to-healthy")
}

// waitHealthyFast polls the list every 5 ms.
func waitHealthyFast(b *testing.B, e *testenv.Env, rg, name string, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		r := e.Do(http.MethodGet, e.VMSSPath(rg, name)+"/virtualMachines?$expand=instanceView", nil)
		if r.Status == http.StatusOK && strings.Count(string(r.Body), "HealthState/healthy") == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("%d instances not healthy in time", n)
}

// BenchmarkList1000 measures listing 1,000 instances with their instance
// views (one page), and reports the p50/p99 latency and the server's RSS.
func BenchmarkList1000(b *testing.B) {
	dataDir := b.TempDir()
	b.Cleanup(func() { testenv.KillInstances(dataDir) })
	p := startProc(b, dataDir, freePort(b))
	e := attach(b, dataDir, p.url)
	e.CreateRG("rg")
	// 1,000 instances are beyond the default quota (model.DefaultQuota).
	if r := e.Do(http.MethodPut, "/providers/vmssd.Admin/quotas/"+e.Sub+"?api-version=2015-12-01-preview", map[string]any{"vcpus": -1, "instances": -1}); r.Status != http.StatusOK {
		b.Fatalf("quota: %d %s", r.Status, r.Body)
	}
	start := time.Now()
	r := e.Do(http.MethodPut, e.VMSSPath("rg", "big"), testenv.VMSSBody(1000, "latest", "Manual"))
	if r.Status != http.StatusCreated {
		b.Fatalf("create: %d %s", r.Status, r.Body)
	}
	waitHealthyFast(b, e, "rg", "big", 1000)
	b.Logf("1000 instances healthy after %v", time.Since(start))
	time.Sleep(2 * time.Second) // let the health prober settle into its slow period
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		r := e.Do(http.MethodGet, e.VMSSPath("rg", "big")+"/virtualMachines?$expand=instanceView", nil)
		lat = append(lat, time.Since(t0))
		if r.Status != http.StatusOK {
			b.Fatalf("list: %d", r.Status)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "ms-p50")
	b.ReportMetric(pct(0.99), "ms-p99")
	b.ReportMetric(float64(rssKB(p.cmd.Process.Pid))/1024, "server-RSS-MiB")
}

func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}
