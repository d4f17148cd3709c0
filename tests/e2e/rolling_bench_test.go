package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/testenv"
)

// latestRecord reads a scale set's newest rollout record from the store.
func latestRecord(tb testing.TB, e *testenv.Env, name string) *model.Rollout {
	tb.Helper()
	ref := model.SetRef{Sub: e.Sub, RG: "rg", Name: name}
	kvs, _, err := state.ListPage(context.Background(), e.Server.Store, model.RolloutPrefix(ref), "", 1)
	if err != nil {
		tb.Fatal(err)
	}
	if len(kvs) == 0 {
		return nil
	}
	var r model.Rollout
	if err := json.Unmarshal(kvs[0].Value, &r); err != nil {
		tb.Fatal(err)
	}
	return &r
}

// rollOnce changes the model's version and waits (polling the store every
// 5 ms) for rollout number seq to complete; it returns the time from the
// request to completion and the rollout.
func rollOnce(tb testing.TB, e *testenv.Env, name, version string, seq int64) (time.Duration, *model.Rollout) {
	tb.Helper()
	start := time.Now()
	r := e.Do(http.MethodPatch, e.VMSSPath("rg", name), map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"imageReference": map[string]any{"version": version}}}}})
	if r.Status != http.StatusOK {
		tb.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	deadline := start.Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if r := latestRecord(tb, e, name); r != nil && r.Seq == seq && r.Status != model.RolloutRollingForward {
			if r.Status != model.RolloutCompleted {
				tb.Fatalf("rollout %d ended %s: %+v", seq, r.Status, r.Error)
			}
			return time.Since(start), r
		}
		time.Sleep(5 * time.Millisecond)
	}
	tb.Fatalf("rollout %d of %s did not complete", seq, name)
	return 0, nil
}

func batchDurations(r *model.Rollout) []time.Duration {
	var out []time.Duration
	for _, b := range r.Batches {
		if b.Finished != nil {
			out = append(out, b.Finished.Sub(b.Started))
		}
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// BenchmarkRollingUpgrade50 measures a rolling upgrade of 50 process
// instances (5 update domains) with no pause, in batches of 2
// (maxBatchInstancePercent 5, Azure's minimum) and of 10 (20%): the total
// from the model change to Completed, the median batch, and the ratio of
// the total to its floor, the number of batches times the median time one
// instance takes from the start of its upgrade to healthy (measured on a
// one-instance set in the same server). Run with
//
//	go test ./tests/e2e -run '^$' -bench RollingUpgrade50 -benchtime 3x
func BenchmarkRollingUpgrade50(b *testing.B) {
	for _, pct := range []int{5, 20} {
		b.Run(fmt.Sprintf("maxBatchInstancePercent=%d", pct), func(b *testing.B) {
			e := testenv.Start(b, testenv.Options{Store: os.Getenv("VMSSD_BENCH_STORE")})
			e.CreateRG("rg")
			waitOp(b, e, e.Do(http.MethodPut, e.VMSSPath("rg", "one"), rollingBody(1, "1.0.0", nil)))
			waitOp(b, e, e.Do(http.MethodPut, e.VMSSPath("rg", "web"), rollingBody(50, "1.0.0", map[string]any{"maxBatchInstancePercent": pct})))
			waitHealthyFast(b, e, "rg", "one", 1)
			waitHealthyFast(b, e, "rg", "web", 50)

			// The floor's unit: one instance, upgrade start to healthy.
			var single []time.Duration
			for i := range 5 {
				_, r := rollOnce(b, e, "one", []string{"1.1.0", "1.0.0"}[i%2], int64(i+1))
				single = append(single, batchDurations(r)...)
			}
			unit := median(single)

			var totals, batches []time.Duration
			nBatches := 0
			versions := []string{"1.1.0", "1.0.0"}
			for i := 0; b.Loop(); i++ {
				total, r := rollOnce(b, e, "web", versions[i%2], int64(i+1))
				totals = append(totals, total)
				batches = append(batches, batchDurations(r)...)
				nBatches = len(r.Batches)
				b.StopTimer()
				waitHealthyFast(b, e, "rg", "web", 50)
				b.StartTimer()
			}
			total := median(totals)
			floor := time.Duration(nBatches) * unit
			b.ReportMetric(total.Seconds(), "s/rollout")
			b.ReportMetric(float64(median(batches).Milliseconds()), "ms/batch")
			b.ReportMetric(float64(nBatches), "batches")
			b.ReportMetric(float64(unit.Milliseconds()), "ms/instance")
			b.ReportMetric(total.Seconds()/floor.Seconds(), "ratio")
			b.Logf("maxBatchInstancePercent %d: %d batches, total %v (median of %d), batch median %v, one instance %v, floor %v, ratio %.2f",
				pct, nBatches, total.Round(time.Millisecond), len(totals), median(batches).Round(time.Millisecond), unit.Round(time.Millisecond),
				floor.Round(time.Millisecond), total.Seconds()/floor.Seconds())
		})
	}
}
