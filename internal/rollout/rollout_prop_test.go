package rollout

import (
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/vmssd/vmssd/internal/model"
)

var healths = []Health{Healthy, Healthy, Healthy, Healthy, Healthy, Healthy, Unhealthy, Initializing, Unknown}

// world is a drawn scale set the simulated rollout acts on.
type world struct {
	insts []Instance
	now   time.Time
}

func drawWorld(t *rapid.T) *world {
	n := rapid.IntRange(1, 30).Draw(t, "instances")
	w := &world{now: t0}
	for i := range n {
		inst := Instance{
			ID: int64(i), UpdateDomain: rapid.IntRange(0, 4).Draw(t, "ud"),
			Health:       rapid.SampledFrom(healths).Draw(t, "health"),
			UpToDate:     rapid.IntRange(1, 5).Draw(t, "uptodate") == 1,
			Protected:    rapid.IntRange(1, 6).Draw(t, "protected") == 1,
			ModelVersion: 1, Image: model.ResolvedImage{Digest: "old"},
		}
		w.insts = append(w.insts, inst)
	}
	return w
}

func drawPolicy(t *rapid.T) model.RollingPolicy {
	return model.RollingPolicy{
		MaxBatchInstancePercent:               rapid.IntRange(5, 100).Draw(t, "batch%"),
		MaxUnhealthyInstancePercent:           rapid.IntRange(5, 100).Draw(t, "unhealthy%"),
		MaxUnhealthyUpgradedInstancePercent:   rapid.IntRange(0, 100).Draw(t, "upgraded%"),
		PauseTimeBetweenBatches:               time.Duration(rapid.IntRange(0, 3).Draw(t, "pause")) * time.Second,
		PrioritizeUnhealthyInstances:          rapid.Bool().Draw(t, "prioritize"),
		RollbackFailedInstancesOnPolicyBreach: rapid.Bool().Draw(t, "rollback"),
		DomainAware:                           rapid.Bool().Draw(t, "domainAware"),
		MaxSurge:                              rapid.IntRange(1, 4).Draw(t, "maxSurge") == 1,
		Approval:                              rapid.SampledFrom([]string{"", "", model.ApprovalEachBatch, model.ApprovalFirstBatch}).Draw(t, "approval"),
	}
}

// TestStepProperties simulates rollouts over random scale sets whose
// instances answer upgrades with random health, with random cancels and
// approvals, and checks the planner's invariants at every step:
//   - a batch holds one update domain and at most the batch size (of the
//     set, or of its domain when domain-aware); it takes a healthy instance
//     down only while the instances unavailable outside it plus the healthy
//     ones in it stay within the batch size;
//   - an up-to-date, protected, or already batched instance is never in a
//     new batch; no instance is upgraded after its batch ended;
//   - domain-aware: a domain starts only when the domains before it are
//     healthy;
//   - batches never outrun approvals; a cancelled or faulted rollout starts
//     nothing; a breach after a batch always faults it;
//   - the input record is never modified and terminal states stay.
func TestStepProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		w := drawWorld(t)
		pol := drawPolicy(t)
		r := &model.Rollout{Status: model.RolloutRollingForward, Policy: pol, TargetModel: 2, TargetImage: model.ResolvedImage{Digest: "new"}, Started: t0}
		grace := 5 * time.Second
		batched := map[int64]bool{}
		for step := 0; step < 200; step++ {
			before := clone(r)
			in := Input{Rollout: r, Instances: slices.Clone(w.insts), Now: w.now, Grace: grace}
			res := Step(in)
			if !equal(before, r) {
				t.Fatalf("Step modified its input")
			}
			next := res.Rollout
			if Terminal(r.Status) {
				if next.Status != r.Status || len(next.Batches) != len(r.Batches) || len(ids(res.Actions, ActUpgrade)) > 0 {
					t.Fatalf("a %s rollout moved: %s, %d batches, actions %v", r.Status, next.Status, len(next.Batches), res.Actions)
				}
			}
			if r.CancelRequested && !Terminal(r.Status) && next.Status != model.RolloutCancelled {
				t.Fatalf("cancel not honoured: %s", next.Status)
			}
			if len(next.Batches) > len(r.Batches) {
				checkNewBatch(t, in, next, batched)
			}
			if len(next.Batches) < len(r.Batches) {
				t.Fatalf("batches lost")
			}
			// Upgrades only for members of the batch in flight.
			cur := next.Current()
			for _, id := range ids(res.Actions, ActUpgrade) {
				if cur == nil || !slices.Contains(cur.IDs, id) {
					t.Fatalf("upgrade of %d outside the batch in flight %+v", id, cur)
				}
			}
			// A finished batch with too many failures faults the rollout.
			if b := r.Current(); b != nil && next.Current() == nil && !r.CancelRequested {
				up := len(next.Succeeded) + len(next.Failed)
				if len(next.Failed)*100 > pol.MaxUnhealthyUpgradedInstancePercent*up && next.Status != model.RolloutFaulted {
					t.Fatalf("breach (%d of %d failed, %d%% allowed) not faulted: %s", len(next.Failed), up, pol.MaxUnhealthyUpgradedInstancePercent, next.Status)
				}
			}
			if got, max := len(next.Batches), next.Approvals+1; pol.Approval == model.ApprovalEachBatch && got > max ||
				pol.Approval == model.ApprovalFirstBatch && next.Approvals == 0 && got > 1 {
				t.Fatalf("%d batches with %d approvals (%s)", got, next.Approvals, pol.Approval)
			}
			if next.Status == model.RolloutFaulted && len(next.RollbackPending) > 0 && (!pol.RollbackFailedInstancesOnPolicyBreach) {
				t.Fatalf("rollback without the policy asking for it")
			}

			// The world answers.
			r = next
			for _, sg := range res.Create {
				if !pol.MaxSurge {
					t.Fatalf("instances created without maxSurge")
				}
				nu := Instance{ID: sg.ID, UpdateDomain: sg.UpdateDomain, UpToDate: true, Health: rapid.SampledFrom(healths).Draw(t, "surgeHealth")}
				nu.Failed = rapid.IntRange(1, 8).Draw(t, "surgeFails") == 1
				w.insts = append(w.insts, nu)
			}
			for _, a := range res.Actions {
				if a.Kind == ActRetire {
					if !pol.MaxSurge {
						t.Fatalf("retire without maxSurge")
					}
					w.insts = slices.DeleteFunc(w.insts, func(i Instance) bool { return i.ID == a.ID })
				}
			}
			for _, a := range res.Actions {
				for i := range w.insts {
					if w.insts[i].ID != a.ID {
						continue
					}
					switch a.Kind {
					case ActUpgrade:
						if rapid.IntRange(1, 8).Draw(t, "upgradeFails") == 1 {
							w.insts[i].Failed = true
						} else {
							w.insts[i].UpToDate, w.insts[i].Health = true, rapid.SampledFrom(healths).Draw(t, "newHealth")
						}
					case ActRollback:
						w.insts[i].UpToDate, w.insts[i].Health = false, Healthy
						RecordRollback(r, a.ID, nil)
					}
				}
			}
			// Time passes, health changes, users act.
			w.now = w.now.Add(time.Duration(rapid.IntRange(0, 3000).Draw(t, "elapsedMs")) * time.Millisecond)
			if rapid.IntRange(1, 4).Draw(t, "healthChange") == 1 {
				i := rapid.IntRange(0, len(w.insts)-1).Draw(t, "who")
				w.insts[i].Health = rapid.SampledFrom(healths).Draw(t, "health")
			}
			if r.Phase == model.PhaseAwaitingApproval && rapid.Bool().Draw(t, "approve") {
				r.Approvals++
			}
			if rapid.IntRange(1, 40).Draw(t, "cancel") == 1 {
				r.CancelRequested = true
			}
			if Terminal(r.Status) && len(r.RollbackPending) == 0 {
				break
			}
		}
	})
}

func checkNewBatch(t *rapid.T, in Input, next *model.Rollout, batched map[int64]bool) {
	b := next.Batches[len(next.Batches)-1]
	if len(b.IDs) == 0 {
		t.Fatalf("empty batch")
	}
	byID := map[int64]Instance{}
	for _, inst := range in.Instances {
		byID[inst.ID] = inst
	}
	domainSize := 0
	for _, inst := range in.Instances {
		if inst.UpdateDomain == b.UpdateDomain {
			domainSize++
		}
	}
	size := BatchSize(len(in.Instances), in.Rollout.Policy.MaxBatchInstancePercent)
	if in.Rollout.Policy.DomainAware {
		size = BatchSize(domainSize, in.Rollout.Policy.MaxBatchInstancePercent)
	}
	if len(b.IDs) > size {
		t.Fatalf("batch of %d, the size is %d", len(b.IDs), size)
	}
	healthyIn := 0
	for _, id := range b.IDs {
		inst := byID[id]
		if inst.UpdateDomain != b.UpdateDomain {
			t.Fatalf("batch %v spans update domains (%d in %d)", b.IDs, id, b.UpdateDomain)
		}
		if inst.UpToDate || inst.Protected || batched[id] {
			t.Fatalf("instance %+v (batched before: %v) in a new batch", inst, batched[id])
		}
		if inst.Health == Healthy {
			healthyIn++
		}
		batched[id] = true
	}
	unavailOther := 0
	for _, inst := range in.Instances {
		if inst.Health != Healthy && !slices.Contains(b.IDs, inst.ID) {
			unavailOther++
		}
	}
	if len(b.Surge) > 0 {
		if len(b.Surge) != len(b.IDs) {
			t.Fatalf("surge %v for members %v", b.Surge, b.IDs)
		}
		for _, id := range b.Surge {
			if _, ok := byID[id]; ok {
				t.Fatalf("surge instance id %d is taken", id)
			}
		}
		healthyIn = 0 // nothing goes down
	}
	if healthyIn > 0 && unavailOther+healthyIn > size {
		t.Fatalf("batch takes %d healthy instances down with %d already unavailable: more than %d", healthyIn, unavailOther, size)
	}
	if in.Rollout.Policy.DomainAware {
		for _, inst := range in.Instances {
			if inst.UpdateDomain < b.UpdateDomain && inst.Health != Healthy {
				t.Fatalf("domain %d started while instance %d of domain %d is %s", b.UpdateDomain, inst.ID, inst.UpdateDomain, inst.Health)
			}
		}
	}
	if in.Rollout.CancelRequested || Terminal(in.Rollout.Status) {
		t.Fatalf("a batch started on a %s rollout (cancel %v)", in.Rollout.Status, in.Rollout.CancelRequested)
	}
}
