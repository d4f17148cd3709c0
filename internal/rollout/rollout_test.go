package rollout

import (
	"slices"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/model"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func defaultPolicy() model.RollingPolicy {
	return model.RollingPolicy{MaxBatchInstancePercent: 20, MaxUnhealthyInstancePercent: 20, MaxUnhealthyUpgradedInstancePercent: 20}
}

// fleet is n healthy, outdated instances spread round-robin over 5 update
// domains (ids 0..n-1, update domain id%5).
func fleet(n int) []Instance {
	out := make([]Instance, n)
	for i := range out {
		out[i] = Instance{ID: int64(i), UpdateDomain: i % 5, Health: Healthy, ModelVersion: 1, Image: model.ResolvedImage{Digest: "old"}}
	}
	return out
}

func running(p model.RollingPolicy) *model.Rollout {
	return &model.Rollout{Status: model.RolloutRollingForward, Policy: p, TargetModel: 2, TargetImage: model.ResolvedImage{Digest: "new"}, Started: t0}
}

func ids(as []Action, kind ActionKind) []int64 {
	var out []int64
	for _, a := range as {
		if a.Kind == kind {
			out = append(out, a.ID)
		}
	}
	return out
}

func withBatch(r *model.Rollout, ud int, members ...int64) *model.Rollout {
	b := model.RolloutBatch{Index: len(r.Batches), UpdateDomain: ud, IDs: members, Started: t0}
	for _, id := range members {
		b.Prev = append(b.Prev, model.RolloutPrev{ID: id, ModelVersion: 1, Image: model.ResolvedImage{Digest: "old"}})
	}
	r.Batches = append(r.Batches, b)
	r.Phase = model.PhaseUpgrading
	return r
}

func finished(r *model.Rollout) *model.Rollout {
	for i := range r.Batches {
		t := t0
		r.Batches[i].Finished = &t
		r.Succeeded = append(r.Succeeded, r.Batches[i].IDs...)
	}
	r.Phase = ""
	return r
}

func upgraded(insts []Instance, h Health, members ...int64) []Instance {
	for i := range insts {
		if slices.Contains(members, insts[i].ID) {
			insts[i].UpToDate, insts[i].Health = true, h
		}
	}
	return insts
}

func TestStep(t *testing.T) {
	grace := 30 * time.Second
	for _, tc := range []struct {
		name      string
		r         *model.Rollout
		insts     []Instance
		now       time.Time
		status    string
		phase     string
		upgrade   []int64
		rollback  []int64
		errCode   string
		wake      bool
		unchanged bool
	}{
		{
			name: "first batch: 20% of 10, update domain 0", r: running(defaultPolicy()), insts: fleet(10),
			status: model.RolloutRollingForward, phase: model.PhaseUpgrading, upgrade: []int64{0, 5},
		},
		{
			name: "up-to-date and protected instances are skipped", r: running(defaultPolicy()),
			insts: func() []Instance {
				f := upgraded(fleet(10), Healthy, 0, 5)
				f[1].Protected = true
				return f
			}(),
			status: model.RolloutRollingForward, phase: model.PhaseUpgrading, upgrade: []int64{6},
		},
		{
			name: "batch members not yet upgraded are upgraded (again after a restart)", r: withBatch(running(defaultPolicy()), 0, 0, 5),
			insts: upgraded(fleet(10), Healthy, 0), status: model.RolloutRollingForward, phase: model.PhaseUpgrading,
			upgrade: []int64{5}, unchanged: true,
		},
		{
			name: "a healthy batch ends; the next starts in the next step", r: withBatch(running(defaultPolicy()), 0, 0, 5),
			insts: upgraded(fleet(10), Healthy, 0, 5), status: model.RolloutRollingForward, phase: "",
		},
		{
			name: "initializing members are waited for", r: withBatch(running(defaultPolicy()), 0, 0, 5),
			insts: upgraded(fleet(10), Initializing, 0, 5), now: t0.Add(time.Second),
			status: model.RolloutRollingForward, phase: model.PhaseUpgrading, wake: true, unchanged: true,
		},
		{
			name: "initializing past the grace period fails: breach", r: withBatch(running(defaultPolicy()), 0, 0, 5),
			insts: upgraded(fleet(10), Initializing, 0, 5), now: t0.Add(grace),
			status: model.RolloutFaulted, errCode: CodeMaxUnhealthyUpgraded,
		},
		{
			name: "unhealthy members: breach, no rollback", r: withBatch(running(defaultPolicy()), 0, 0, 5),
			insts: upgraded(fleet(10), Unhealthy, 0, 5), status: model.RolloutFaulted, errCode: CodeMaxUnhealthyUpgraded,
		},
		{
			name: "unhealthy members: breach and rollback",
			r: func() *model.Rollout {
				p := defaultPolicy()
				p.RollbackFailedInstancesOnPolicyBreach = true
				return withBatch(running(p), 0, 0, 5)
			}(),
			insts: upgraded(fleet(10), Unhealthy, 0, 5), status: model.RolloutFaulted, errCode: CodeMaxUnhealthyUpgraded,
			rollback: []int64{0, 5},
		},
		{
			name: "one failure in 10 upgraded is within 20%",
			r: func() *model.Rollout {
				r := finished(withBatch(withBatch(withBatch(withBatch(running(defaultPolicy()), 0, 0, 5), 1, 1, 6), 2, 2, 7), 3, 3, 8))
				return withBatch(r, 4, 4, 9)
			}(),
			insts:  upgraded(upgraded(fleet(10), Healthy, 0, 1, 2, 3, 4, 5, 6, 7, 8), Unhealthy, 9),
			status: model.RolloutRollingForward,
		},
		{
			name: "too many unhealthy before a batch",
			r:    running(defaultPolicy()),
			insts: func() []Instance {
				f := fleet(10)
				f[7].Health, f[8].Health, f[9].Health = Unhealthy, Unknown, Unhealthy
				return f
			}(),
			status: model.RolloutFaulted, errCode: CodeMaxUnhealthyBefore,
		},
		{
			name: "too many unhealthy after a batch",
			r:    finished(withBatch(running(defaultPolicy()), 0, 0, 5)),
			insts: func() []Instance {
				f := upgraded(fleet(10), Healthy, 0, 5)
				f[7].Health, f[8].Health, f[9].Health = Unhealthy, Unknown, Unhealthy
				return f
			}(),
			status: model.RolloutFaulted, errCode: CodeMaxUnhealthy,
		},
		{
			name: "unavailable instances shrink the batch",
			r:    running(defaultPolicy()),
			insts: func() []Instance {
				f := fleet(10)
				f[9].Health = Unhealthy
				f[9].Protected = true
				return f
			}(),
			status: model.RolloutRollingForward, phase: model.PhaseUpgrading, upgrade: []int64{0},
		},
		{
			name: "approval gate after each batch",
			r: func() *model.Rollout {
				p := defaultPolicy()
				p.Approval = model.ApprovalEachBatch
				return finished(withBatch(running(p), 0, 0, 5))
			}(),
			insts: upgraded(fleet(10), Healthy, 0, 5), status: model.RolloutRollingForward, phase: model.PhaseAwaitingApproval,
		},
		{
			name: "approved: the next batch",
			r: func() *model.Rollout {
				p := defaultPolicy()
				p.Approval = model.ApprovalFirstBatch
				r := finished(withBatch(running(p), 0, 0, 5))
				r.Approvals = 1
				return r
			}(),
			insts: upgraded(fleet(10), Healthy, 0, 5), status: model.RolloutRollingForward, phase: model.PhaseUpgrading, upgrade: []int64{1, 6},
		},
		{
			name: "pause between batches",
			r: func() *model.Rollout {
				r := finished(withBatch(running(defaultPolicy()), 0, 0, 5))
				r.PauseUntil = t0.Add(time.Minute)
				return r
			}(),
			insts: upgraded(fleet(10), Healthy, 0, 5), now: t0.Add(time.Second),
			status: model.RolloutRollingForward, phase: model.PhasePaused, wake: true,
		},
		{
			name: "cancel",
			r: func() *model.Rollout {
				r := withBatch(running(defaultPolicy()), 0, 0, 5)
				r.CancelRequested = true
				return r
			}(),
			insts: upgraded(fleet(10), Healthy, 0), status: model.RolloutCancelled,
		},
		{
			name: "nothing left: completed", r: running(defaultPolicy()), insts: upgraded(fleet(4), Healthy, 0, 1, 2, 3),
			status: model.RolloutCompleted,
		},
		{
			name: "domain-aware: the batch cap is per update domain",
			r: func() *model.Rollout {
				p := defaultPolicy()
				p.DomainAware, p.MaxBatchInstancePercent = true, 50
				return running(p)
			}(),
			insts: fleet(20), status: model.RolloutRollingForward, phase: model.PhaseUpgrading, upgrade: []int64{0, 5},
		},
		{
			name: "domain-aware: waits for the previous update domain",
			r: func() *model.Rollout {
				p := defaultPolicy()
				p.DomainAware = true
				return finished(withBatch(running(p), 0, 0, 5))
			}(),
			insts: func() []Instance {
				f := upgraded(fleet(10), Healthy, 0, 5)
				f[5].Health = Initializing
				return f
			}(),
			status: model.RolloutRollingForward, phase: model.PhaseWaitingForDomain, wake: true,
		},
		{
			name: "prioritize unhealthy instances",
			r: func() *model.Rollout {
				p := defaultPolicy()
				p.PrioritizeUnhealthyInstances = true
				return running(p)
			}(),
			insts: func() []Instance {
				f := fleet(10)
				f[8].Health = Unhealthy
				return f
			}(),
			status: model.RolloutRollingForward, phase: model.PhaseUpgrading, upgrade: []int64{8, 3},
		},
		{
			name: "a faulted rollout rolls back what it still owes",
			r: func() *model.Rollout {
				r := finished(withBatch(running(defaultPolicy()), 0, 0, 5))
				r.Status, r.RollbackPending = model.RolloutFaulted, []int64{5}
				return r
			}(),
			insts: fleet(10), status: model.RolloutFaulted, rollback: []int64{5}, unchanged: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			before := clone(tc.r)
			res := Step(Input{Rollout: tc.r, Instances: tc.insts, Now: now, Grace: grace})
			if !equal(before, tc.r) {
				t.Fatal("Step modified its input")
			}
			r := res.Rollout
			if r.Status != tc.status || tc.status == model.RolloutRollingForward && r.Phase != tc.phase {
				t.Errorf("status %s phase %q, want %s %q", r.Status, r.Phase, tc.status, tc.phase)
			}
			if got := ids(res.Actions, ActUpgrade); !slices.Equal(got, tc.upgrade) {
				t.Errorf("upgrades %v, want %v", got, tc.upgrade)
			}
			if got := ids(res.Actions, ActRollback); !slices.Equal(got, tc.rollback) {
				t.Errorf("rollbacks %v, want %v", got, tc.rollback)
			}
			if code := ""; r.Error != nil || tc.errCode != "" {
				if r.Error != nil {
					code = r.Error.Code
				}
				if code != tc.errCode {
					t.Errorf("error %+v, want %s", r.Error, tc.errCode)
				}
			}
			if (res.Wake > 0) != tc.wake {
				t.Errorf("wake %v, want %v", res.Wake, tc.wake)
			}
			if res.Changed == tc.unchanged {
				t.Errorf("changed %v, want %v", res.Changed, !tc.unchanged)
			}
		})
	}
}

func TestBatchSize(t *testing.T) {
	for _, tc := range []struct{ n, pct, want int }{
		{50, 5, 2}, {50, 20, 10}, {10, 20, 2}, {3, 20, 1}, {0, 20, 1}, {7, 100, 7}, {9, 50, 4},
	} {
		if got := BatchSize(tc.n, tc.pct); got != tc.want {
			t.Errorf("BatchSize(%d, %d) = %d, want %d", tc.n, tc.pct, got, tc.want)
		}
	}
}

func TestTrigger(t *testing.T) {
	done := &model.Rollout{Status: model.RolloutCompleted, TargetModel: 2, TargetImage: model.ResolvedImage{ExactVersion: "1.1.0"}}
	for _, tc := range []struct {
		name string
		in   TriggerInput
		want string
	}{
		{"model change on a Rolling set", TriggerInput{Rolling: true, ModelVersion: 3, Latest: done, Outdated: 2}, model.RolloutKindModel},
		{"the first model change", TriggerInput{Rolling: true, ModelVersion: 2, Outdated: 1}, model.RolloutKindModel},
		{"model already rolled out", TriggerInput{Rolling: true, ModelVersion: 2, Latest: done, Outdated: 2}, ""},
		{"Manual set", TriggerInput{ModelVersion: 3, Latest: done, Outdated: 2}, ""},
		{"nothing outdated", TriggerInput{Rolling: true, ModelVersion: 3, Latest: done}, ""},
		{"a rollout runs", TriggerInput{Rolling: true, ModelVersion: 3, Latest: &model.Rollout{Status: model.RolloutRollingForward}, Outdated: 2}, ""},
		{"newer image", TriggerInput{AutoOS: true, ModelVersion: 2, Latest: done, Newest: "1.2.0", Behind: 3}, model.RolloutKindAutomaticOS},
		{"image version already tried", TriggerInput{AutoOS: true, ModelVersion: 2, Latest: done, Newest: "1.1.0", Behind: 3}, ""},
		{"all on the newest", TriggerInput{AutoOS: true, ModelVersion: 2, Latest: done, Newest: "1.2.0"}, ""},
	} {
		kind, ok := Trigger(tc.in)
		if kind != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: %q %v, want %q", tc.name, kind, ok, tc.want)
		}
	}
}

func TestRecordRollback(t *testing.T) {
	r := &model.Rollout{RollbackPending: []int64{1, 2, 3}}
	RecordRollback(r, 2, nil)
	RecordRollback(r, 3, nil)
	RecordRollback(r, 9, nil) // not pending: ignored
	if !slices.Equal(r.RollbackPending, []int64{1}) || !slices.Equal(r.RolledBack, []int64{2, 3}) {
		t.Errorf("after rollbacks: %+v", r)
	}
	p := ProgressOf(&model.Rollout{Status: model.RolloutRollingForward, Total: 10, Succeeded: []int64{1, 2}, Failed: []int64{3},
		Batches: []model.RolloutBatch{{IDs: []int64{4, 5}}}})
	if p != (Progress{Successful: 2, Failed: 1, InProgress: 2, Pending: 5}) {
		t.Errorf("progress %+v", p)
	}
}

func TestStepMaxSurge(t *testing.T) {
	p := defaultPolicy()
	p.MaxSurge = true
	res := Step(Input{Rollout: running(p), Instances: fleet(10), Now: t0, Grace: time.Minute, NextID: 12})
	want := []Surge{{ID: 12, Replaces: 0, UpdateDomain: 0}, {ID: 13, Replaces: 5, UpdateDomain: 0}}
	if !slices.Equal(res.Create, want) || len(res.Actions) != 0 || !slices.Equal(res.Rollout.Batches[0].Surge, []int64{12, 13}) {
		t.Fatalf("surge batch: create %v actions %v batch %+v", res.Create, res.Actions, res.Rollout.Batches)
	}
	// Replacements up: one healthy, one unhealthy.
	insts := append(fleet(10), Instance{ID: 12, UpToDate: true, Health: Healthy}, Instance{ID: 13, UpToDate: true, Health: Unhealthy})
	res = Step(Input{Rollout: res.Rollout, Instances: insts, Now: t0.Add(time.Second), Grace: time.Minute})
	if got := ids(res.Actions, ActRetire); !slices.Equal(got, []int64{0, 13}) {
		t.Errorf("retired %v, want the replaced 0 and the failed replacement 13", got)
	}
	if r := res.Rollout; !slices.Equal(r.Succeeded, []int64{0}) || !slices.Equal(r.Failed, []int64{5}) || r.Status != model.RolloutFaulted {
		t.Errorf("after the surge batch: %s succeeded %v failed %v", r.Status, r.Succeeded, r.Failed)
	}
}

func TestCancelEndsTheBatchInFlight(t *testing.T) {
	r := withBatch(running(defaultPolicy()), 0, 0, 5)
	r.CancelRequested, r.Total = true, 10
	res := Step(Input{Rollout: r, Instances: upgraded(upgraded(fleet(10), Healthy, 0), Unhealthy, 5), Now: t0, Grace: time.Minute})
	n := res.Rollout
	if n.Status != model.RolloutCancelled || n.Current() != nil || !slices.Equal(n.Succeeded, []int64{0}) || !slices.Equal(n.Failed, []int64{5}) {
		t.Fatalf("cancelled: %s current %v succeeded %v failed %v", n.Status, n.Current(), n.Succeeded, n.Failed)
	}
	if p := ProgressOf(n); p != (Progress{Successful: 1, Failed: 1}) {
		t.Errorf("progress %+v", p)
	}
}
