package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// createOp records an InProgress operation as the API does.
func createOp(t *testing.T, st store.Store, kind string, start time.Time) {
	t.Helper()
	_, ops := state.NewOperation(kind, "sub", "local", "sub/rg/"+kind, 1, start)
	if _, err := st.Txn(context.Background(), nil, ops...); err != nil {
		t.Fatal(err)
	}
}

// completeAll completes target's pending operations as the controller does.
func completeAll(t *testing.T, st store.Store, kind string, fail *arm.ErrorDetail, end time.Time) {
	t.Helper()
	if err := state.CompletePending(context.Background(), st, "sub/rg/"+kind, -1, fail, end); err != nil {
		t.Fatal(err)
	}
}

// TestOperationDurations: an operation that completes while the watcher
// runs is observed once, with its duration, type and result; operations
// that had completed before it started are not; in-progress operations are
// counted by type.
func TestOperationDurations(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := memstore.New(memstore.Options{})
	defer st.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	createOp(t, st, "vmss.old", t0)
	completeAll(t, st, "vmss.old", nil, t0.Add(time.Second))
	createOp(t, st, "vmss.put", t0)

	m := New(Options{Store: st, NoRuntime: true})
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	eventually(t, "the first listing", func() bool {
		m.ops.mu.Lock()
		defer m.ops.mu.Unlock()
		return m.ops.synced
	})
	const inProgress = `
# HELP vmssd_operations_in_progress Long-running operations accepted and not yet completed, by type.
# TYPE vmssd_operations_in_progress gauge
vmssd_operations_in_progress{type="vmss.put"} 1
`
	if err := testutil.CollectAndCompare(m.ops, strings.NewReader(inProgress), "vmssd_operations_in_progress"); err != nil {
		t.Fatal(err)
	}

	completeAll(t, st, "vmss.put", nil, t0.Add(3*time.Second))
	createOp(t, st, "vmss.delete", t0)
	completeAll(t, st, "vmss.delete", &arm.ErrorDetail{Code: "X", Message: "x"}, t0.Add(20*time.Minute))
	eventually(t, "two observations", func() bool { return testutil.CollectAndCount(m.ops, "vmssd_operation_duration_seconds") == 2 })

	const want = `
# HELP vmssd_operation_duration_seconds Time from acceptance to completion of long-running operations, by type (operation kind) and result (Succeeded, Failed, Canceled).
# TYPE vmssd_operation_duration_seconds histogram
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="0.05"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="0.1"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="0.25"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="0.5"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="1"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="2.5"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="5"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="10"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="30"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="60"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="120"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="300"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="600"} 0
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="1800"} 1
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="3600"} 1
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="7200"} 1
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="21600"} 1
vmssd_operation_duration_seconds_bucket{result="Failed",type="vmss.delete",le="+Inf"} 1
vmssd_operation_duration_seconds_sum{result="Failed",type="vmss.delete"} 1200
vmssd_operation_duration_seconds_count{result="Failed",type="vmss.delete"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="0.05"} 0
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="0.1"} 0
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="0.25"} 0
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="0.5"} 0
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="1"} 0
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="2.5"} 0
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="5"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="10"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="30"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="60"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="120"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="300"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="600"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="1800"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="3600"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="7200"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="21600"} 1
vmssd_operation_duration_seconds_bucket{result="Succeeded",type="vmss.put",le="+Inf"} 1
vmssd_operation_duration_seconds_sum{result="Succeeded",type="vmss.put"} 3
vmssd_operation_duration_seconds_count{result="Succeeded",type="vmss.put"} 1
`
	if err := testutil.CollectAndCompare(m.ops, strings.NewReader(want), "vmssd_operation_duration_seconds"); err != nil {
		t.Fatal(err)
	}
	const none = `
# HELP vmssd_operations_in_progress Long-running operations accepted and not yet completed, by type.
# TYPE vmssd_operations_in_progress gauge
vmssd_operations_in_progress{type="vmss.delete"} 0
vmssd_operations_in_progress{type="vmss.put"} 0
`
	if err := testutil.CollectAndCompare(m.ops, strings.NewReader(none), "vmssd_operations_in_progress"); err != nil {
		t.Fatal(err)
	}

	// Forgetting finished operations (the 24h sweep) observes nothing.
	if err := state.GCOperations(ctx, st, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	createOp(t, st, "vmss.put", t0)
	completeAll(t, st, "vmss.put", nil, t0.Add(time.Second))
	eventually(t, "the third completion", func() bool { return histCount(t, m.ops, "vmss.put", "Succeeded") == 2 })
	if n := histCount(t, m.ops, "vmss.delete", "Failed"); n != 1 {
		t.Fatalf("vmss.delete Failed count %d after the sweep, want 1", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func histCount(t *testing.T, w *opWatcher, typ, result string) uint64 {
	t.Helper()
	var d dto.Metric
	if err := w.duration.WithLabelValues(typ, result).(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

// TestOperationResync: after a lost watch, a re-list observes the
// operations that completed meanwhile, once; the first listing observes
// none.
func TestOperationResync(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	list := func() []store.KV {
		kvs, _, err := st.List(ctx, "/ops/")
		if err != nil {
			t.Fatal(err)
		}
		return kvs
	}
	createOp(t, st, "vmss.put", t0)
	completeAll(t, st, "vmss.put", nil, t0.Add(time.Second))
	createOp(t, st, "vmss.start", t0)
	w := newOpWatcher(st, nil)
	w.resync(list())
	if n := histCount(t, w, "vmss.put", "Succeeded"); n != 0 {
		t.Fatalf("first listing observed %d operations, want 0", n)
	}
	completeAll(t, st, "vmss.start", nil, t0.Add(2*time.Second))
	w.resync(list())
	w.resync(list())
	if n := histCount(t, w, "vmss.start", "Succeeded"); n != 1 {
		t.Fatalf("re-lists observed vmss.start %d times, want 1", n)
	}
}

// TestOperationTypeBounded: odd or too many kinds become "other".
func TestOperationTypeBounded(t *testing.T) {
	w := newOpWatcher(nil, nil)
	for _, c := range []struct{ kind, want string }{
		{"vmss.put", "vmss.put"},
		{"", "other"},
		{"vmss.{action}/x y", "other"},
		{strings.Repeat("a", 49), "other"},
	} {
		if got := w.typeLabel(c.kind); got != c.want {
			t.Errorf("typeLabel(%q) = %q, want %q", c.kind, got, c.want)
		}
	}
	for i := range 2 * maxOpTypes {
		w.typeLabel("kind" + strings.Repeat("x", i%40) + string(rune('a'+i%26)))
	}
	if len(w.types) > maxOpTypes {
		t.Fatalf("%d type values, bound is %d", len(w.types), maxOpTypes)
	}
	if got := w.typeLabel("brand.new"); got != "other" {
		t.Fatalf("a kind beyond the bound is %q, want other", got)
	}
}
