package metrics

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/rollout"
	"github.com/vmssd/vmssd/internal/state"
)

// Label values of the rollout gauges (the wire values of
// rollingUpgrades/latest); every one is reported for every set that has a
// rollout, so that series do not come and go.
var (
	rolloutStates = []string{model.RolloutRollingForward, model.RolloutCancelled, model.RolloutCompleted, model.RolloutFaulted}
	rolloutPhases = []string{
		model.PhaseStarting, model.PhaseUpgrading, model.PhasePaused,
		model.PhaseAwaitingApproval, model.PhaseWaitingForHealth, model.PhaseWaitingForDomain,
	}
	rolloutKinds      = []string{model.RolloutKindModel, model.RolloutKindOS, model.RolloutKindAutomaticOS}
	rolloutStartedBy  = []string{model.StartedByUser, model.StartedByPlatform}
	rolloutProgresses = []string{"successful", "failed", "in_progress", "pending"}
	rollbackOutcomes  = []string{"pending", "rolled_back", "failed"}
)

// rolloutDescs are the per-set rollout gauges, read from the scale set's
// latest rollout record (the one rollingUpgrades/latest shows).
type rolloutDescs struct {
	state, phase, progress, planned, batches, rollback, info, started, ended *prometheus.Desc
}

func newRolloutDescs() rolloutDescs {
	return rolloutDescs{
		state: desc("rollout_state",
			"1 for the running state of the scale set's latest rolling upgrade (runningStatus.code), 0 for the others.", "state"),
		phase: desc("rollout_phase",
			"1 for the phase a rolling-forward upgrade is in (Upgrading a batch, Paused between batches, AwaitingApproval, WaitingForHealth, ...), 0 for the others.", "phase"),
		progress: desc("rollout_instances",
			"Instances of the latest rolling upgrade by progress (as rollingUpgrades/latest counts them: successful, failed, in_progress, pending).", "progress"),
		planned: desc("rollout_instances_planned",
			"Instances the latest rolling upgrade found to upgrade when it started."),
		batches: desc("rollout_batches",
			"Batches the latest rolling upgrade has started."),
		rollback: desc("rollout_rollback_instances",
			"Failed instances of the latest rolling upgrade by rollback outcome (pending, rolled_back, failed).", "outcome"),
		info: desc("rollout_info",
			"1, labelled with what started the latest rolling upgrade: kind (Model, OS, AutomaticOS) and started_by (User, Platform).", "kind", "started_by"),
		started: desc("rollout_start_time_seconds",
			"Start of the latest rolling upgrade, in seconds since the Unix epoch."),
		ended: desc("rollout_end_time_seconds",
			"End of the latest rolling upgrade, in seconds since the Unix epoch (absent while it rolls forward)."),
	}
}

func (d rolloutDescs) all() []*prometheus.Desc {
	return []*prometheus.Desc{d.state, d.phase, d.progress, d.planned, d.batches, d.rollback, d.info, d.started, d.ended}
}

// latestRollout reads a scale set's newest rollout record (nil if none);
// only that key is read.
func (c *stateCollector) latestRollout(ctx context.Context, ref model.SetRef) (*model.Rollout, error) {
	kvs, _, err := state.ListPage(ctx, c.st, model.RolloutPrefix(ref), "", 1)
	if err != nil || len(kvs) == 0 {
		return nil, err
	}
	var r model.Rollout
	if err := json.Unmarshal(kvs[0].Value, &r); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kvs[0].Key, err)
	}
	return &r, nil
}

// collectRollout sends the rollout gauges of one scale set (none when the
// set never had a rollout).
func (c *stateCollector) collectRollout(ctx context.Context, ch chan<- prometheus.Metric, set *model.ScaleSet, lv []string) {
	r, err := c.latestRollout(ctx, set.Ref())
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.ro.state, err)
		return
	}
	if r == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(lv[:len(lv):len(lv)], extra...)...)
	}
	one := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	for _, s := range rolloutStates {
		gauge(c.ro.state, one(r.Status == s), s)
	}
	for _, p := range rolloutPhases {
		gauge(c.ro.phase, one(r.Active() && r.Phase == p), p)
	}
	p := rollout.ProgressOf(r)
	for i, n := range []int{p.Successful, p.Failed, p.InProgress, p.Pending} {
		gauge(c.ro.progress, float64(n), rolloutProgresses[i])
	}
	for i, n := range []int{len(r.RollbackPending), len(r.RolledBack), len(r.RollbackFailed)} {
		gauge(c.ro.rollback, float64(n), rollbackOutcomes[i])
	}
	gauge(c.ro.planned, float64(r.Total))
	gauge(c.ro.batches, float64(len(r.Batches)))
	gauge(c.ro.info, 1, bounded(r.Kind, rolloutKinds, "other"), bounded(r.StartedBy, rolloutStartedBy, "other"))
	if !r.Started.IsZero() {
		gauge(c.ro.started, float64(r.Started.UnixNano())/1e9)
	}
	if r.Ended != nil {
		gauge(c.ro.ended, float64(r.Ended.UnixNano())/1e9)
	}
}
