// Package rollout is the pure planner of rolling upgrades. Step takes a
// rollout record (model.Rollout), the scale set's instances with their
// health, the policy carried by the record and the time `now`, and returns
// the next record and the instance actions to run: upgrade a batch, roll
// failed instances back. Trigger decides when a rollout starts by itself.
// Nothing here does I/O; the controller persists the record before it acts,
// so a restart resumes from the last step written.
//
// The rules (Azure's rolling upgrade, plus vmssd's options):
//   - a batch holds at most max(1, floor(n * maxBatchInstancePercent / 100))
//     instances, n being the scale set's active instances (or, domain-aware,
//     the instances of the batch's update domain), never two update domains,
//     and takes healthy instances down only while the instances already
//     unavailable plus the batch stay within that size;
//   - instances already on the target, protected from scale set actions, or
//     decided earlier in the rollout are never in a batch;
//   - before each batch: Unhealthy and Unknown instances above
//     maxUnhealthyInstancePercent fault the rollout;
//   - a batch ends when each member is healthy on the target, or failed
//     (its upgrade failed, it is Unhealthy, or it stayed Initializing or
//     Unknown past the grace period); then failed upgraded instances above
//     maxUnhealthyUpgradedInstancePercent of the upgraded ones fault the
//     rollout (rolling the failed ones back when the policy says so);
//   - then approval gates, then pauseTimeBetweenBatches, then the next batch;
//   - a cancel stops the rollout before its next step.
package rollout

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"time"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/model"
)

// Health is an instance's application health as the host reports it.
type Health string

// Health states.
const (
	Healthy      Health = "Healthy"
	Unhealthy    Health = "Unhealthy"
	Initializing Health = "Initializing"
	Unknown      Health = "Unknown"
)

// Instance is what the planner knows of one active (not deleting) instance.
type Instance struct {
	ID           int64
	UpdateDomain int
	// UpToDate: the instance runs the rollout's target model and image.
	UpToDate bool
	// Protected: protectFromScaleSetActions.
	Protected bool
	// Failed: its last upgrade to the target failed (provisioning Failed).
	Failed bool
	Health Health
	// ModelVersion and Image are what it runs now (a rollback target).
	ModelVersion int64
	Image        model.ResolvedImage
}

// Input is everything Step looks at.
type Input struct {
	Rollout   *model.Rollout
	Instances []Instance
	Now       time.Time
	// Grace is how long an upgraded instance may stay Initializing or
	// Unknown before it counts as failed, and how long the rollout waits
	// for health before a batch.
	Grace time.Duration
	// NextID is the first free instance id (maxSurge creates instances).
	NextID int64
	// Removing counts instances being deleted: no batch starts until they
	// are gone (maxSurge's replaced instances, a scale-in).
	Removing int
}

// ActionKind is what to do to one instance.
type ActionKind string

// Action kinds.
const (
	ActUpgrade  ActionKind = "upgrade"  // upgrade to the target model and image
	ActRollback ActionKind = "rollback" // back to Prev
	ActRetire   ActionKind = "retire"   // delete the instance (maxSurge: replaced, or a failed replacement)
)

// Surge is a new instance maxSurge creates on the target.
type Surge struct {
	ID, Replaces int64
	UpdateDomain int
}

// Action is one instance action.
type Action struct {
	Kind ActionKind
	ID   int64
	// Prev is where a rollback goes.
	Prev model.RolloutPrev
}

// Result is Step's answer.
type Result struct {
	// Rollout is the next record (a copy; the input is not modified).
	Rollout *model.Rollout
	// Changed reports whether Rollout differs from the input and must be
	// written before the actions run.
	Changed bool
	Actions []Action
	// Create are the instances to create (maxSurge), in the same write as
	// Rollout.
	Create []Surge
	// Wake is when to step again without an event (0: only on events).
	Wake time.Duration
}

// Breach error codes (Azure's).
const (
	CodeMaxUnhealthy         = "MaxUnhealthyInstancePercentExceededInRollingUpgrade"
	CodeMaxUnhealthyBefore   = "MaxUnhealthyInstancePercentExceededBeforeRollingUpgrade"
	CodeMaxUnhealthyUpgraded = "MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade"
	// CodeDomainNotHealthy is vmssd's (domain-aware rolling).
	CodeDomainNotHealthy = "UpdateDomainNotHealthyInRollingUpgrade"
)

// BatchSize is the most instances one batch may hold out of n.
func BatchSize(n, percent int) int {
	return max(1, n*percent/100)
}

// Terminal reports whether a running status is final.
func Terminal(status string) bool {
	return status == model.RolloutCancelled || status == model.RolloutCompleted || status == model.RolloutFaulted
}

// Step computes the next step of a rollout.
func Step(in Input) Result {
	res := step(in)
	res.Changed = !equal(in.Rollout, res.Rollout)
	return res
}

func step(in Input) Result {
	r := clone(in.Rollout)
	res := Result{Rollout: r}
	byID := make(map[int64]*Instance, len(in.Instances))
	for i := range in.Instances {
		byID[in.Instances[i].ID] = &in.Instances[i]
	}

	if Terminal(r.Status) {
		// Rollbacks owed by a breach run after the rollout ended.
		for _, id := range r.RollbackPending {
			if p, ok := prevOf(r, id); ok {
				res.Actions = append(res.Actions, Action{Kind: ActRollback, ID: id, Prev: p})
			}
		}
		return res
	}
	if r.CancelRequested {
		// The batch in flight ends with what its members show now.
		if b := r.Current(); b != nil {
			t := in.Now
			b.Finished = &t
			for i, id := range b.IDs {
				inst := byID[id]
				if len(b.Surge) == len(b.IDs) && len(b.Surge) > 0 {
					inst = byID[b.Surge[i]]
				}
				switch {
				case inst == nil:
				case inst.UpToDate && inst.Health == Healthy:
					r.Succeeded = append(r.Succeeded, id)
				case inst.Failed || inst.UpToDate && inst.Health == Unhealthy:
					r.Failed = append(r.Failed, id)
				}
			}
		}
		end(r, model.RolloutCancelled, in.Now, nil)
		return res
	}
	if r.Phase == model.PhaseStarting {
		// The controller resolves the target first.
		return res
	}

	if b := r.Current(); b != nil {
		return stepBatch(in, r, b, byID, res)
	}

	// Between batches.
	cands := candidates(in, r)
	if len(cands) == 0 {
		end(r, model.RolloutCompleted, in.Now, nil)
		return res
	}
	finished := len(r.Batches)
	if r.Policy.Approval == model.ApprovalEachBatch && r.Approvals < finished ||
		r.Policy.Approval == model.ApprovalFirstBatch && finished >= 1 && r.Approvals < 1 {
		r.Phase = model.PhaseAwaitingApproval
		return res
	}
	if in.Now.Before(r.PauseUntil) {
		r.Phase = model.PhasePaused
		res.Wake = r.PauseUntil.Sub(in.Now)
		return res
	}
	if in.Removing > 0 {
		res.Wake = 200 * time.Millisecond
		return res
	}

	total := len(in.Instances)
	unhealthy := 0
	for _, inst := range in.Instances {
		if inst.Health == Unhealthy || inst.Health == Unknown {
			unhealthy++
		}
	}
	if unhealthy*100 > r.Policy.MaxUnhealthyInstancePercent*total {
		code := CodeMaxUnhealthy
		if len(r.Batches) == 0 {
			code = CodeMaxUnhealthyBefore
		}
		end(r, model.RolloutFaulted, in.Now, &arm.ErrorDetail{Code: code, Message: fmt.Sprintf(
			"Rolling Upgrade failed after exceeding the MaxUnhealthyInstancePercent value defined in the RollingUpgradePolicy: %d of %d instances (%d%%) are unhealthy, the policy allows %d%%.",
			unhealthy, total, unhealthy*100/max(total, 1), r.Policy.MaxUnhealthyInstancePercent)})
		return res
	}

	ud := cands[0].UpdateDomain
	if r.Policy.DomainAware {
		// Walk the domains in order; a domain starts when every instance of
		// the domains before it is healthy.
		for _, c := range cands {
			ud = min(ud, c.UpdateDomain)
		}
		var sick []int64
		for _, inst := range in.Instances {
			if inst.UpdateDomain < ud && inst.Health != Healthy {
				sick = append(sick, inst.ID)
			}
		}
		if len(sick) > 0 {
			if waited, err := wait(r, in, model.PhaseWaitingForDomain, &res); err {
				end(r, model.RolloutFaulted, in.Now, &arm.ErrorDetail{Code: CodeDomainNotHealthy, Message: fmt.Sprintf(
					"Update domain %d cannot start: instances %v of the update domains before it are not healthy after %s.", ud, sick, waited)})
			}
			return res
		}
	}
	n := total
	if r.Policy.DomainAware {
		n = 0
		for _, inst := range in.Instances {
			if inst.UpdateDomain == ud {
				n++
			}
		}
	}
	size := BatchSize(n, r.Policy.MaxBatchInstancePercent)
	inBatch := map[int64]bool{}
	var batch []*Instance
	for _, c := range cands {
		if c.UpdateDomain == ud && len(batch) < size {
			batch = append(batch, c)
			inBatch[c.ID] = true
		}
	}
	// Instances already unavailable outside the batch use up the budget
	// for healthy instances in it.
	unavailOther := 0
	for _, inst := range in.Instances {
		if inst.Health != Healthy && !inBatch[inst.ID] {
			unavailOther++
		}
	}
	budget := size - unavailOther
	if r.Policy.MaxSurge {
		// New instances come up first: nothing is taken down.
		budget = len(batch)
	}
	kept := batch[:0]
	for _, c := range batch {
		if c.Health != Healthy {
			kept = append(kept, c)
		} else if budget > 0 {
			kept = append(kept, c)
			budget--
		}
	}
	batch = kept
	if len(batch) == 0 {
		if waited, err := wait(r, in, model.PhaseWaitingForHealth, &res); err {
			end(r, model.RolloutFaulted, in.Now, &arm.ErrorDetail{Code: CodeMaxUnhealthy, Message: fmt.Sprintf(
				"Rolling Upgrade stopped: %d instances stayed unavailable for %s, so no batch can start without exceeding the batch size of %d.", unavailOther, waited, size)})
		}
		return res
	}
	nb := model.RolloutBatch{Index: len(r.Batches), UpdateDomain: ud, Started: in.Now}
	next := in.NextID
	for _, inst := range in.Instances {
		next = max(next, inst.ID+1)
	}
	for _, c := range batch {
		nb.IDs = append(nb.IDs, c.ID)
		if r.Policy.MaxSurge {
			nb.Surge = append(nb.Surge, next)
			res.Create = append(res.Create, Surge{ID: next, Replaces: c.ID, UpdateDomain: c.UpdateDomain})
			next++
			continue
		}
		nb.Prev = append(nb.Prev, model.RolloutPrev{ID: c.ID, ModelVersion: c.ModelVersion, Image: c.Image})
		res.Actions = append(res.Actions, Action{Kind: ActUpgrade, ID: c.ID})
	}
	r.Batches = append(r.Batches, nb)
	r.Phase = model.PhaseUpgrading
	r.WaitSince = time.Time{}
	r.PauseUntil = time.Time{}
	return res
}

// wait records a wait for health; it reports how long it has lasted and
// whether it is past the grace period.
func wait(r *model.Rollout, in Input, phase string, res *Result) (time.Duration, bool) {
	if r.Phase != phase || r.WaitSince.IsZero() {
		r.Phase, r.WaitSince = phase, in.Now
	}
	waited := in.Now.Sub(r.WaitSince)
	if waited >= in.Grace {
		return waited, true
	}
	res.Wake = min(in.Grace-waited, time.Second)
	return waited, false
}

func stepBatch(in Input, r *model.Rollout, b *model.RolloutBatch, byID map[int64]*Instance, res Result) Result {
	var ok, bad []int64
	decided := true
	deadline := b.Started.Add(in.Grace)
	surge := len(b.Surge) == len(b.IDs) && len(b.Surge) > 0
	var retire []int64
	for i, id := range b.IDs {
		inst := byID[id]
		if surge {
			// The replacement decides; the member keeps serving meanwhile.
			nu := byID[b.Surge[i]]
			switch {
			case nu != nil && nu.Health == Healthy && !nu.Failed:
				ok = append(ok, id)
				if inst != nil {
					retire = append(retire, id)
				}
			case nu == nil || nu.Failed || nu.Health == Unhealthy || !in.Now.Before(deadline):
				bad = append(bad, id)
				if nu != nil {
					retire = append(retire, nu.ID)
				}
			default:
				decided = false
				res.Wake = deadline.Sub(in.Now)
			}
			continue
		}
		switch {
		case inst == nil:
			// Deleted meanwhile: neither succeeded nor failed.
		case inst.Failed && !inst.UpToDate:
			bad = append(bad, id)
		case !inst.UpToDate:
			res.Actions = append(res.Actions, Action{Kind: ActUpgrade, ID: id})
			decided = false
		case inst.Health == Healthy:
			ok = append(ok, id)
		case inst.Health == Unhealthy:
			bad = append(bad, id)
		case !in.Now.Before(deadline):
			// Initializing or Unknown past the grace period.
			bad = append(bad, id)
		default:
			decided = false
			res.Wake = deadline.Sub(in.Now)
		}
	}
	if !decided {
		return res
	}
	for _, id := range retire {
		res.Actions = append(res.Actions, Action{Kind: ActRetire, ID: id})
	}
	t := in.Now
	b.Finished = &t
	r.Succeeded = append(r.Succeeded, ok...)
	r.Failed = append(r.Failed, bad...)
	upgraded := len(r.Succeeded) + len(r.Failed)
	if len(r.Failed)*100 > r.Policy.MaxUnhealthyUpgradedInstancePercent*upgraded {
		end(r, model.RolloutFaulted, in.Now, &arm.ErrorDetail{Code: CodeMaxUnhealthyUpgraded, Message: fmt.Sprintf(
			"Rolling Upgrade failed after exceeding the MaxUnhealthyUpgradedInstancePercent value defined in the RollingUpgradePolicy: %d of %d upgraded instances (%d%%) are unhealthy (instances %v), the policy allows %d%%.",
			len(r.Failed), upgraded, len(r.Failed)*100/max(upgraded, 1), r.Failed, r.Policy.MaxUnhealthyUpgradedInstancePercent)})
		if r.Policy.RollbackFailedInstancesOnPolicyBreach && !r.DisableRollback {
			for _, id := range r.Failed {
				if _, ok := prevOf(r, id); ok && byID[id] != nil {
					r.RollbackPending = append(r.RollbackPending, id)
					res.Actions = append(res.Actions, Action{Kind: ActRollback, ID: id, Prev: mustPrev(r, id)})
				}
			}
		}
		return res
	}
	r.Phase = ""
	if r.Policy.PauseTimeBetweenBatches > 0 {
		r.PauseUntil = in.Now.Add(r.Policy.PauseTimeBetweenBatches)
	}
	return res
}

// candidates are the instances still to upgrade, in the order batches take
// them: unhealthy first when the policy prioritizes them, then by update
// domain and id.
func candidates(in Input, r *model.Rollout) []*Instance {
	decided := map[int64]bool{}
	for _, b := range r.Batches {
		for _, id := range b.IDs {
			decided[id] = true
		}
	}
	var out []*Instance
	for i := range in.Instances {
		inst := &in.Instances[i]
		if inst.UpToDate || inst.Protected || decided[inst.ID] {
			continue
		}
		out = append(out, inst)
	}
	prio := r.Policy.PrioritizeUnhealthyInstances
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if prio && !r.Policy.DomainAware {
			if ah, bh := a.Health == Healthy, b.Health == Healthy; ah != bh {
				return !ah
			}
		}
		if a.UpdateDomain != b.UpdateDomain {
			return a.UpdateDomain < b.UpdateDomain
		}
		if prio {
			if ah, bh := a.Health == Healthy, b.Health == Healthy; ah != bh {
				return !ah
			}
		}
		return a.ID < b.ID
	})
	return out
}

func end(r *model.Rollout, status string, now time.Time, e *arm.ErrorDetail) {
	t := now
	r.Status, r.Phase, r.Ended, r.Error = status, "", &t, e
	r.WaitSince, r.PauseUntil = time.Time{}, time.Time{}
}

func prevOf(r *model.Rollout, id int64) (model.RolloutPrev, bool) {
	for _, b := range r.Batches {
		for _, p := range b.Prev {
			if p.ID == id {
				return p, true
			}
		}
	}
	return model.RolloutPrev{}, false
}

func mustPrev(r *model.Rollout, id int64) model.RolloutPrev {
	p, _ := prevOf(r, id)
	return p
}

// RecordRollback records the outcome of one rollback action.
func RecordRollback(r *model.Rollout, id int64, err *arm.ErrorDetail) {
	i := slices.Index(r.RollbackPending, id)
	if i < 0 {
		return
	}
	r.RollbackPending = slices.Delete(r.RollbackPending, i, i+1)
	if err != nil {
		r.RollbackFailed = append(r.RollbackFailed, id)
		if r.RollbackError == nil {
			r.RollbackError = err
		}
		return
	}
	r.RolledBack = append(r.RolledBack, id)
}

// Progress counts a rollout's instances as rollingUpgrades/latest shows
// them.
type Progress struct {
	Successful, Failed, InProgress, Pending int
}

// ProgressOf computes a rollout's progress counts.
func ProgressOf(r *model.Rollout) Progress {
	p := Progress{Successful: len(r.Succeeded), Failed: len(r.Failed), InProgress: len(r.InProgress())}
	p.Pending = max(0, r.Total-p.Successful-p.Failed-p.InProgress)
	if Terminal(r.Status) {
		p.Pending, p.InProgress = 0, 0
	}
	return p
}

func clone(r *model.Rollout) *model.Rollout {
	c := *r
	c.Batches = nil
	if r.Batches != nil {
		c.Batches = make([]model.RolloutBatch, len(r.Batches))
	}
	for i, b := range r.Batches {
		b.IDs = slices.Clone(b.IDs)
		b.Prev = slices.Clone(b.Prev)
		b.Surge = slices.Clone(b.Surge)
		if b.Finished != nil {
			t := *b.Finished
			b.Finished = &t
		}
		c.Batches[i] = b
	}
	c.Succeeded = slices.Clone(r.Succeeded)
	c.Failed = slices.Clone(r.Failed)
	c.RollbackPending = slices.Clone(r.RollbackPending)
	c.RolledBack = slices.Clone(r.RolledBack)
	c.RollbackFailed = slices.Clone(r.RollbackFailed)
	c.CancelOperations = slices.Clone(r.CancelOperations)
	if r.Ended != nil {
		t := *r.Ended
		c.Ended = &t
	}
	return &c
}

func equal(a, b *model.Rollout) bool { return reflect.DeepEqual(a, b) }

// TriggerInput is what Trigger looks at.
type TriggerInput struct {
	// Rolling: upgradePolicy.mode is Rolling.
	Rolling bool
	// ModelVersion is the scale set's model version.
	ModelVersion int64
	// Latest is the last rollout (nil when none).
	Latest *model.Rollout
	// Outdated counts unprotected active instances below ModelVersion.
	Outdated int
	// AutoOS: automatic OS image upgrades are on and the model names a
	// platform image at version "latest"; Newest is the newest catalog
	// version of it and Behind counts unprotected instances on an older
	// exact version.
	AutoOS bool
	Newest string
	Behind int
}

// Trigger decides whether a new rollout starts by itself: a model change
// on a Rolling set, or a newer image version for an automatic OS upgrade.
// A version or model that a rollout already went for is not tried again.
func Trigger(in TriggerInput) (kind string, ok bool) {
	if in.Latest != nil && !Terminal(in.Latest.Status) {
		return "", false
	}
	if in.Rolling && in.Outdated > 0 && (in.Latest == nil || in.Latest.TargetModel < in.ModelVersion) {
		return model.RolloutKindModel, true
	}
	if in.AutoOS && in.Behind > 0 && in.Newest != "" &&
		(in.Latest == nil || in.Latest.TargetImage.ExactVersion != in.Newest || in.Latest.TargetModel < in.ModelVersion) {
		return model.RolloutKindAutomaticOS, true
	}
	return "", false
}
