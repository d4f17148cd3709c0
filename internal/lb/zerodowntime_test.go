package lb

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// TestZeroFailedRequestsWhileMembersAreReplaced runs a steady load through
// the LB (vegeta, loopback only, bounded in time, a new connection per
// request) while each member in turn is drained, stopped, replaced by a new
// process-like server on another port and put back. Not one request may fail.
func TestZeroFailedRequestsWhileMembersAreReplaced(t *testing.T) {
	const n = 4
	backends := make([]*testBackend, n)
	members := make([]Member, n)
	for i := range n {
		backends[i] = startBackend(t, fmt.Sprintf("m%d-v1", i))
		members[i] = backends[i].member(int64(i), 80)
		members[i].ID = fmt.Sprintf("m%d", i)
	}
	fe, port := frontend(t)
	l := newLB(t)
	cfg := func() *Config { return webConfig(fe, port, 50*time.Millisecond, append([]Member(nil), members...)...) }
	if err := l.Apply(t.Context(), cfg()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "all in rotation", func() bool {
		h := l.Health()
		for _, m := range members {
			if !h[m.ID].InRotation {
				return false
			}
		}
		return true
	})

	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(fe, uint16(port)))
	atk := vegeta.NewAttacker(vegeta.KeepAlive(false), vegeta.Proxy(nil), vegeta.Timeout(5*time.Second))
	results := atk.Attack(vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: url}),
		vegeta.Rate{Freq: 300, Per: time.Second}, 30*time.Second, "rolling")
	var metrics vegeta.Metrics
	bodies := map[string]int{}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for r := range results {
			metrics.Add(r)
			bodies[string(r.Body)]++
		}
	}()

	start := time.Now()
	time.Sleep(300 * time.Millisecond) // steady state first
	for i := range n {
		id := members[i].ID
		drained, err := l.Drain(id, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		<-drained
		// The instance goes down (upgrade), a new one comes up elsewhere.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_ = backends[i].srv.Shutdown(ctx)
		cancel()
		backends[i] = startBackend(t, fmt.Sprintf("m%d-v2", i))
		members[i] = backends[i].member(int64(i), 80)
		members[i].ID = id
		if err := l.Apply(t.Context(), cfg()); err != nil {
			t.Fatal(err)
		}
		if err := l.Undrain(id); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, id+" back in rotation", func() bool { return inRotation(l, id) })
		time.Sleep(100 * time.Millisecond)
	}
	if rest := 2*time.Second - time.Since(start); rest > 0 {
		time.Sleep(rest)
	}
	atk.Stop()
	<-collected
	metrics.Close()

	t.Logf("%d requests in %s: %.0f req/s, p50 %s, p99 %s, max %s, success %.4f, answers %v",
		metrics.Requests, metrics.Duration.Round(time.Millisecond), metrics.Rate,
		metrics.Latencies.P50, metrics.Latencies.P99, metrics.Latencies.Max, metrics.Success, sortedCounts(bodies))
	fmt.Printf("lb zero-downtime: %.0f req/s, p99 %s, %d requests, %d failed\n",
		metrics.Rate, metrics.Latencies.P99, metrics.Requests, metrics.Requests-uint64(metrics.StatusCodes["200"]))
	if metrics.Requests < 300 {
		t.Fatalf("only %d requests were sent", metrics.Requests)
	}
	if ok := uint64(metrics.StatusCodes["200"]); ok != metrics.Requests || len(metrics.Errors) != 0 {
		t.Logf("counters: %+v", l.Snapshot())
		t.Fatalf("%d of %d requests failed: codes %v, errors %v", metrics.Requests-ok, metrics.Requests, metrics.StatusCodes, metrics.Errors)
	}
	for i := range n {
		if bodies[fmt.Sprintf("m%d-v2", i)] == 0 {
			t.Errorf("the replacement of m%d answered nothing: %v", i, bodies)
		}
	}
}

func sortedCounts(m map[string]int) string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	s := ""
	for _, k := range ks {
		s += fmt.Sprintf("%s=%d ", k, m[k])
	}
	return s
}
