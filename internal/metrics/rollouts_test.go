package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

// TestRolloutGauges: a set's rollout gauges come from its newest rollout
// record only; a set without rollouts has none.
func TestRolloutGauges(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	defer st.Close()
	t0 := time.Unix(1_800_000_000, 0).UTC()
	end := t0.Add(90 * time.Second)
	web := &model.ScaleSet{Sub: "sub1", RG: "rg", Name: "web"}
	api := &model.ScaleSet{Sub: "sub1", RG: "rg", Name: "api"}
	older := &model.Rollout{Sub: "sub1", RG: "rg", ScaleSet: "web", Seq: 1, Kind: model.RolloutKindModel, StartedBy: model.StartedByUser,
		Status: model.RolloutCompleted, Started: t0.Add(-time.Hour), Total: 9, Succeeded: []int64{1, 2, 3, 4, 5, 6, 7, 8, 9}}
	newest := &model.Rollout{Sub: "sub1", RG: "rg", ScaleSet: "web", Seq: 2, Kind: model.RolloutKindAutomaticOS, StartedBy: model.StartedByPlatform,
		Status: model.RolloutFaulted, Phase: model.PhaseUpgrading, Started: t0, Ended: &end, Total: 6,
		Batches:   []model.RolloutBatch{{Index: 0, IDs: []int64{0, 1}}, {Index: 1, IDs: []int64{2, 3}, Finished: &end}},
		Succeeded: []int64{0, 1}, Failed: []int64{2, 3}, RolledBack: []int64{2}, RollbackFailed: []int64{3}}
	ops := []store.Op{
		state.PutOp(model.ScaleSetKey(web.Ref()), web), state.PutOp(model.ScaleSetKey(api.Ref()), api),
		state.PutOp(model.RolloutKey(web.Ref(), 1), older), state.PutOp(model.RolloutKey(web.Ref(), 2), newest),
	}
	if _, err := st.Txn(ctx, nil, ops...); err != nil {
		t.Fatal(err)
	}
	m := New(Options{Store: st, NoRuntime: true})
	m.RegisterState(nil)

	const want = `
# HELP vmssd_rollout_state 1 for the running state of the scale set's latest rolling upgrade (runningStatus.code), 0 for the others.
# TYPE vmssd_rollout_state gauge
vmssd_rollout_state{resource_group="rg",scale_set="web",state="Cancelled",subscription="sub1"} 0
vmssd_rollout_state{resource_group="rg",scale_set="web",state="Completed",subscription="sub1"} 0
vmssd_rollout_state{resource_group="rg",scale_set="web",state="Faulted",subscription="sub1"} 1
vmssd_rollout_state{resource_group="rg",scale_set="web",state="RollingForward",subscription="sub1"} 0
# HELP vmssd_rollout_instances Instances of the latest rolling upgrade by progress (as rollingUpgrades/latest counts them: successful, failed, in_progress, pending).
# TYPE vmssd_rollout_instances gauge
vmssd_rollout_instances{progress="failed",resource_group="rg",scale_set="web",subscription="sub1"} 2
vmssd_rollout_instances{progress="in_progress",resource_group="rg",scale_set="web",subscription="sub1"} 0
vmssd_rollout_instances{progress="pending",resource_group="rg",scale_set="web",subscription="sub1"} 0
vmssd_rollout_instances{progress="successful",resource_group="rg",scale_set="web",subscription="sub1"} 2
# HELP vmssd_rollout_rollback_instances Failed instances of the latest rolling upgrade by rollback outcome (pending, rolled_back, failed).
# TYPE vmssd_rollout_rollback_instances gauge
vmssd_rollout_rollback_instances{outcome="failed",resource_group="rg",scale_set="web",subscription="sub1"} 1
vmssd_rollout_rollback_instances{outcome="pending",resource_group="rg",scale_set="web",subscription="sub1"} 0
vmssd_rollout_rollback_instances{outcome="rolled_back",resource_group="rg",scale_set="web",subscription="sub1"} 1
# HELP vmssd_rollout_info 1, labelled with what started the latest rolling upgrade: kind (Model, OS, AutomaticOS) and started_by (User, Platform).
# TYPE vmssd_rollout_info gauge
vmssd_rollout_info{kind="AutomaticOS",resource_group="rg",scale_set="web",started_by="Platform",subscription="sub1"} 1
# HELP vmssd_rollout_instances_planned Instances the latest rolling upgrade found to upgrade when it started.
# TYPE vmssd_rollout_instances_planned gauge
vmssd_rollout_instances_planned{resource_group="rg",scale_set="web",subscription="sub1"} 6
# HELP vmssd_rollout_batches Batches the latest rolling upgrade has started.
# TYPE vmssd_rollout_batches gauge
vmssd_rollout_batches{resource_group="rg",scale_set="web",subscription="sub1"} 2
# HELP vmssd_rollout_start_time_seconds Start of the latest rolling upgrade, in seconds since the Unix epoch.
# TYPE vmssd_rollout_start_time_seconds gauge
vmssd_rollout_start_time_seconds{resource_group="rg",scale_set="web",subscription="sub1"} 1.8e+09
# HELP vmssd_rollout_end_time_seconds End of the latest rolling upgrade, in seconds since the Unix epoch (absent while it rolls forward).
# TYPE vmssd_rollout_end_time_seconds gauge
vmssd_rollout_end_time_seconds{resource_group="rg",scale_set="web",subscription="sub1"} 1.80000009e+09
`
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(want),
		"vmssd_rollout_state", "vmssd_rollout_instances", "vmssd_rollout_rollback_instances", "vmssd_rollout_info",
		"vmssd_rollout_instances_planned", "vmssd_rollout_batches", "vmssd_rollout_start_time_seconds", "vmssd_rollout_end_time_seconds"); err != nil {
		t.Fatal(err)
	}
	// A faulted rollout is in no phase.
	n, err := testutil.GatherAndCount(m.Registry, "vmssd_rollout_phase")
	if err != nil || n != len(rolloutPhases) {
		t.Fatalf("%d phase series (%v), want %d (web only)", n, err, len(rolloutPhases))
	}
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(`
# HELP vmssd_scale_sets Scale sets in the store.
# TYPE vmssd_scale_sets gauge
vmssd_scale_sets 2
`), "vmssd_scale_sets"); err != nil {
		t.Fatal(err)
	}
}

// TestScaleSetBound: beyond MaxScaleSets the per-set metrics leave sets
// out and say how many.
func TestScaleSetBound(t *testing.T) {
	st := memstore.New(memstore.Options{})
	defer st.Close()
	for _, name := range []string{"a", "b", "c"} {
		set := &model.ScaleSet{Sub: "s", RG: "rg", Name: name}
		if _, err := st.Txn(context.Background(), nil, state.PutOp(model.ScaleSetKey(set.Ref()), set)); err != nil {
			t.Fatal(err)
		}
	}
	m := New(Options{Store: st, NoRuntime: true, MaxScaleSets: 2})
	m.RegisterState(nil)
	if n, err := testutil.GatherAndCount(m.Registry, "vmssd_scale_set_capacity"); err != nil || n != 2 {
		t.Fatalf("%d capacity series (%v), want 2", n, err)
	}
	if err := testutil.GatherAndCompare(m.Registry, strings.NewReader(`
# HELP vmssd_metrics_scale_sets_omitted Scale sets left out of the per-set metrics of this scrape (beyond the per-scrape bound).
# TYPE vmssd_metrics_scale_sets_omitted gauge
vmssd_metrics_scale_sets_omitted 1
# HELP vmssd_scale_sets Scale sets in the store.
# TYPE vmssd_scale_sets gauge
vmssd_scale_sets 3
`), "vmssd_metrics_scale_sets_omitted", "vmssd_scale_sets"); err != nil {
		t.Fatal(err)
	}
}
