package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/reconcile"
	"github.com/vmssd/vmssd/internal/rollout"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// Rolling upgrades: every reconcile round first steps the scale set's
// rollout (internal/rollout plans, this file persists and acts), then the
// reconciler does the rest. The step's record is written before any
// instance is touched; upgrades and rollbacks reuse the reconciler's
// upgrade action (act with reconcile.ActUpgrade).

// rolloutSlack is added to the health grace period (the Application Health
// extension's gracePeriod, or the hosts' own) to bound how long a rollout
// waits for an upgraded instance to report: it covers the upgrade itself
// (a VM's boot), which the grace period does not.
const rolloutSlack = 30 * time.Second

// latestRollout returns a scale set's newest rollout and its revision (nil
// when it has none).
func latestRollout(ctx context.Context, s store.Store, ref model.SetRef) (*model.Rollout, int64, error) {
	kvs, _, err := state.ListPage(ctx, s, model.RolloutPrefix(ref), "", 1)
	if err != nil || len(kvs) == 0 {
		return nil, 0, err
	}
	var r model.Rollout
	if err := json.Unmarshal(kvs[0].Value, &r); err != nil {
		return nil, 0, fmt.Errorf("rollout %s: %w", kvs[0].Key, err)
	}
	return &r, kvs[0].ModRevision, nil
}

// applyProbes points the hosts' probes of the set's instances at the
// model's Application Health extension, if it has one.
func (c *Controller) applyProbes(set *model.ScaleSet, insts []*model.Instance) (time.Duration, bool) {
	ext, ok := set.HealthExtension()
	var spec *host.ProbeSpec
	var grace time.Duration
	for _, h := range c.opts.Hosts {
		grace = max(grace, h.Grace())
	}
	if ok {
		spec = &host.ProbeSpec{Protocol: ext.Protocol, Port: ext.Port, Path: ext.RequestPath, Interval: ext.Interval, Probes: ext.Probes, Grace: ext.Grace}
		grace = ext.Grace
	}
	grace += rolloutSlack
	for _, inst := range insts {
		if h := c.hosts[inst.Host]; h != nil {
			h.SetProbe(inst.VMID, spec)
		}
	}
	return grace, ok
}

// rolloutState is what the reconciler needs to know of the rollout step:
// whether it changed anything (re-read and re-plan), when to look again,
// and how many maxSurge instances are above capacity for now.
type rolloutState struct {
	wake    time.Duration
	changed bool
	surge   int
}

// stepRollout advances the scale set's rollout by one step.
func (c *Controller) stepRollout(ctx context.Context, set *model.ScaleSet, st *model.ScaleSetStatus, stRev int64, insts []*model.Instance, revs []int64, in reconcile.Input) (rolloutState, error) {
	grace, _ := c.applyProbes(set, insts)
	if set.Deleting {
		return rolloutState{}, nil
	}
	ref := set.Ref()
	r, rev, err := latestRollout(ctx, c.opts.Store, ref)
	if err != nil {
		return rolloutState{}, err
	}
	var out rolloutState
	if r != nil && r.Active() {
		out.surge = surgeInFlight(r, insts)
	}
	out.wake, out.changed, err = c.step(ctx, set, st, stRev, insts, revs, in, r, rev, grace)
	return out, err
}

// surgeInFlight counts the live maxSurge instances of the batch in flight.
func surgeInFlight(r *model.Rollout, insts []*model.Instance) int {
	b := r.Current()
	if b == nil {
		return 0
	}
	n := 0
	for _, inst := range insts {
		if !inst.Deleting && slices.Contains(b.Surge, inst.ID) {
			n++
		}
	}
	return n
}

func (c *Controller) step(ctx context.Context, set *model.ScaleSet, st *model.ScaleSetStatus, stRev int64, insts []*model.Instance, revs []int64, in reconcile.Input, r *model.Rollout, rev int64, grace time.Duration) (time.Duration, bool, error) {
	ref := set.Ref()
	now := c.opts.Now()

	if r != nil && r.Active() && r.Phase != model.PhaseStarting && r.TargetModel < set.ModelVersion {
		// A newer model supersedes the rollout: it ends, the next starts.
		next := *r
		t := now
		next.Status, next.Phase, next.Ended = model.RolloutCancelled, "", &t
		next.Error = &arm.ErrorDetail{Code: "RollingUpgradeSuperseded", Message: fmt.Sprintf("The scale set model changed (version %d) during the rolling upgrade to version %d; a new rolling upgrade takes over.", set.ModelVersion, r.TargetModel)}
		return 0, true, c.writeRollout(ctx, r, &next, rev, nil, nil)
	}

	if r == nil || rollout.Terminal(r.Status) && len(r.RollbackPending) == 0 {
		kind, ok := rollout.Trigger(c.triggerInput(set, insts, r, in))
		if !ok {
			return 0, false, nil
		}
		seq := int64(1)
		if r != nil {
			seq = r.Seq + 1
		}
		nr := &model.Rollout{
			Sub: set.Sub, RG: set.RG, ScaleSet: set.Name, Seq: seq, Kind: kind,
			StartedBy: model.StartedByUser, Policy: set.RollingPolicy(), TargetModel: set.ModelVersion,
			Status: model.RolloutRollingForward, Phase: model.PhaseStarting,
			Started: now, LastAction: "Start", LastActionTime: now,
		}
		if kind == model.RolloutKindAutomaticOS {
			a := set.AutomaticOSUpgrade()
			if !a.UseRollingPolicy {
				// Azure's defaults, unless useRollingUpgradePolicy; vmssd's
				// tags (domain-aware, approval) still apply.
				pol := set.RollingPolicy()
				nr.Policy = model.RollingPolicy{
					MaxBatchInstancePercent:             model.DefaultMaxBatchInstancePercent,
					MaxUnhealthyInstancePercent:         model.DefaultMaxUnhealthyInstancePercent,
					MaxUnhealthyUpgradedInstancePercent: model.DefaultMaxUnhealthyUpgradedInstancePercent,
					DomainAware:                         pol.DomainAware, Approval: pol.Approval,
				}
			}
			nr.StartedBy = model.StartedByPlatform
			nr.DisableRollback = a.DisableRollback
			// An automatic OS upgrade rolls failed instances back unless
			// disableAutomaticRollback says otherwise.
			nr.Policy.RollbackFailedInstancesOnPolicyBreach = !a.DisableRollback
		}
		k := model.RolloutKey(ref, seq)
		ops := []store.Op{state.PutOp(k, nr)}
		if seq > model.RolloutHistory {
			ops = append(ops, store.Delete(model.RolloutKey(ref, seq-model.RolloutHistory)))
		}
		if _, err := c.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(k, 0)}, ops...); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return 0, true, nil
			}
			return 0, false, err
		}
		c.log.Info("rolling upgrade started", "set", ref.String(), "seq", seq, "kind", kind, "model", set.ModelVersion)
		return 0, true, nil
	}

	if r.Active() && r.Phase == model.PhaseStarting {
		next := *r
		img, ierr := reconcile.ResolveImage(set.ImageSource(), in.Images, in.Custom)
		if ierr != nil {
			t := now
			next.Status, next.Phase, next.Ended = model.RolloutFaulted, "", &t
			next.Error = state.ErrorDetail(ierr)
		} else {
			next.TargetImage, next.TargetModel, next.Phase = img, set.ModelVersion, ""
			next.Total = 0
			for _, pi := range plannerInstances(&next, insts, c) {
				if !pi.UpToDate && !pi.Protected {
					next.Total++
				}
			}
		}
		return 0, true, c.writeRollout(ctx, r, &next, rev, nil, nil)
	}

	removing := 0
	for _, inst := range insts {
		if inst.Deleting {
			removing++
		}
	}
	res := rollout.Step(rollout.Input{Rollout: r, Instances: plannerInstances(r, insts, c), Now: now, Grace: grace, NextID: st.NextInstanceID, Removing: removing})
	// maxSurge creations and retirements are written with the record.
	var conds []store.Cond
	var ops []store.Op
	if len(res.Create) > 0 {
		var created []*model.Instance
		conds, ops, created = c.surgeOps(set, st, stRev, insts, res.Rollout, res.Create, now)
		defer func() {
			c.mu.Lock()
			for _, inst := range created {
				c.index[inst.VMID] = ref.String()
			}
			c.mu.Unlock()
		}()
	}
	var actions []rollout.Action
	for _, a := range res.Actions {
		if a.Kind != rollout.ActRetire {
			actions = append(actions, a)
			continue
		}
		for i, inst := range insts {
			if inst.ID == a.ID && !inst.Deleting {
				k := model.InstanceKey(ref, inst.ID)
				cp := *inst
				cp.Deleting, cp.ProvisioningState = true, model.StateDeleting
				conds = append(conds, store.ModRevisionIs(k, revs[i]))
				ops = append(ops, state.PutOp(k, &cp))
			}
		}
	}
	if res.Changed {
		// A new batch's members are marked Updating with the record: one
		// write for the batch instead of one per member (act skips it).
		for _, a := range actions {
			if a.Kind != rollout.ActUpgrade {
				continue
			}
			for i, inst := range insts {
				if inst.ID == a.ID && inst.ProvisioningState != model.StateUpdating {
					k := model.InstanceKey(ref, inst.ID)
					cp := *inst
					cp.ProvisioningState = model.StateUpdating
					conds = append(conds, store.ModRevisionIs(k, revs[i]))
					ops = append(ops, state.PutOp(k, &cp))
				}
			}
		}
	}
	if res.Changed || len(ops) > 0 {
		if err := c.writeRollout(ctx, r, res.Rollout, rev, conds, ops); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return 0, true, nil
			}
			return 0, false, err
		}
		if res.Rollout.Status != r.Status {
			c.log.Info("rolling upgrade ended", "set", ref.String(), "seq", r.Seq, "status", res.Rollout.Status, "error", res.Rollout.Error)
		}
	}
	if len(actions) == 0 {
		return res.Wake, res.Changed || len(ops) > 0, nil
	}
	c.runRolloutActions(ctx, set, res.Rollout, insts, actions)
	return res.Wake, true, nil
}

// surgeOps returns the writes that create maxSurge instances: each takes
// the fault and update domain and host of the instance it replaces, and
// runs the rollout's target.
func (c *Controller) surgeOps(set *model.ScaleSet, st *model.ScaleSetStatus, stRev int64, insts []*model.Instance, r *model.Rollout, create []rollout.Surge, now time.Time) ([]store.Cond, []store.Op, []*model.Instance) {
	ref := set.Ref()
	conds := []store.Cond{store.ModRevisionIs(model.ScaleSetStatusKey(ref), stRev)}
	var ops []store.Op
	var created []*model.Instance
	ns := *st
	for _, sg := range create {
		var old *model.Instance
		for _, inst := range insts {
			if inst.ID == sg.Replaces {
				old = inst
			}
		}
		if old == nil {
			continue
		}
		inst := &model.Instance{
			Sub: set.Sub, RG: set.RG, ScaleSet: set.Name, ID: sg.ID, VMID: state.NewID(),
			ComputerName: reconcile.ComputerName(set.ComputerNamePrefix(), sg.ID),
			FaultDomain:  old.FaultDomain, UpdateDomain: old.UpdateDomain, Host: old.Host, Created: now,
			ModelVersion: r.TargetModel, Image: r.TargetImage, Size: set.Size(),
			ProvisioningState: model.StateCreating, Power: model.PowerRunning,
		}
		k := model.InstanceKey(ref, sg.ID)
		conds = append(conds, store.ModRevisionIs(k, 0))
		ops = append(ops, state.PutOp(k, inst))
		created = append(created, inst)
		ns.NextInstanceID = max(ns.NextInstanceID, sg.ID+1)
	}
	ops = append(ops, state.PutOp(model.ScaleSetStatusKey(ref), &ns))
	return conds, ops, created
}

// writeRollout writes the next rollout record, ending the operations that
// wait for it when it reaches a final state, in one transaction.
func (c *Controller) writeRollout(ctx context.Context, prev, next *model.Rollout, rev int64, conds []store.Cond, ops []store.Op) error {
	key := model.RolloutKey(next.Ref(), next.Seq)
	conds = append(conds, store.ModRevisionIs(key, rev))
	ops = append(ops, state.PutOp(key, next))
	if !rollout.Terminal(prev.Status) && rollout.Terminal(next.Status) {
		now := c.opts.Now()
		status, e := arm.StatusSucceeded, (*arm.ErrorDetail)(nil)
		switch next.Status {
		case model.RolloutFaulted:
			status, e = arm.StatusFailed, next.Error
		case model.RolloutCancelled:
			status, e = arm.StatusCanceled, &arm.ErrorDetail{Code: "OperationCanceled", Message: "The rolling upgrade was cancelled."}
			if next.Error != nil {
				e = next.Error
			}
		}
		for _, id := range next.CancelOperations {
			cs, os := c.endOperation(ctx, id, arm.StatusSucceeded, nil, now)
			conds, ops = append(conds, cs...), append(ops, os...)
		}
		if next.Operation != "" {
			cs, os := c.endOperation(ctx, next.Operation, status, e, now)
			conds, ops = append(conds, cs...), append(ops, os...)
		}
	}
	_, err := c.opts.Store.Txn(ctx, conds, ops...)
	return err
}

// endOperation returns the writes that end an operation a rollout owns
// (none if it is gone or already ended).
func (c *Controller) endOperation(ctx context.Context, id, status string, e *arm.ErrorDetail, now time.Time) ([]store.Cond, []store.Op) {
	op, rev, err := state.Get[model.Operation](ctx, c.opts.Store, model.OperationKey(id))
	if err != nil || op.Status != arm.StatusInProgress {
		return nil, nil
	}
	op.Status, op.Error = status, e
	t := now
	op.End = &t
	return []store.Cond{store.ModRevisionIs(model.OperationKey(id), rev)}, []store.Op{state.PutOp(model.OperationKey(id), op)}
}

// plannerInstances is the planner's view of the active instances.
func plannerInstances(r *model.Rollout, insts []*model.Instance, c *Controller) []rollout.Instance {
	out := make([]rollout.Instance, 0, len(insts))
	for _, inst := range insts {
		if inst.Deleting {
			continue
		}
		h := rollout.Unknown
		if o, ok := c.Observe(inst); ok {
			h = rollout.Health(o.Health)
		}
		out = append(out, rollout.Instance{
			ID: inst.ID, UpdateDomain: inst.UpdateDomain,
			UpToDate:  inst.ModelVersion >= r.TargetModel && inst.Image.Digest == r.TargetImage.Digest,
			Protected: inst.ProtectActions,
			Failed:    inst.ProvisioningState == model.StateFailed && inst.FailedModel == r.TargetModel,
			Health:    h, ModelVersion: inst.ModelVersion, Image: inst.Image,
		})
	}
	return out
}

func (c *Controller) triggerInput(set *model.ScaleSet, insts []*model.Instance, latest *model.Rollout, in reconcile.Input) rollout.TriggerInput {
	ti := rollout.TriggerInput{
		Rolling:      strings.EqualFold(set.UpgradeMode(), "Rolling"),
		ModelVersion: set.ModelVersion, Latest: latest,
	}
	src := set.ImageSource()
	auto := set.AutomaticOSUpgrade().Enabled && !src.IsCustom() && strings.EqualFold(src.Version, "latest")
	var newest model.ResolvedImage
	if auto {
		img, err := reconcile.ResolveImage(src, in.Images, in.Custom)
		if err == nil {
			newest = img
			ti.AutoOS, ti.Newest = true, img.ExactVersion
		}
	}
	for _, inst := range insts {
		if inst.Deleting || inst.ProtectActions {
			continue
		}
		if inst.ModelVersion < set.ModelVersion && inst.FailedModel != set.ModelVersion {
			ti.Outdated++
		}
		if ti.AutoOS && inst.Image.Digest != newest.Digest {
			ti.Behind++
		}
	}
	return ti
}

// runRolloutActions upgrades a batch, or rolls failed instances back, in
// parallel; outcomes show in the instance records (and, for rollbacks, in
// the rollout's rollback info).
func (c *Controller) runRolloutActions(ctx context.Context, set *model.ScaleSet, r *model.Rollout, insts []*model.Instance, actions []rollout.Action) {
	byID := make(map[int64]*model.Instance, len(insts))
	for _, inst := range insts {
		byID[inst.ID] = inst
	}
	sem := make(chan struct{}, c.opts.Parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[int64]*arm.ErrorDetail{}
	for _, a := range actions {
		inst := byID[a.ID]
		if inst == nil {
			if a.Kind == rollout.ActRollback {
				outcomes[a.ID] = &arm.ErrorDetail{Code: "NotFound", Message: fmt.Sprintf("Instance %d was deleted before its rollback.", a.ID)}
			}
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			switch a.Kind {
			case rollout.ActUpgrade:
				err := c.act(ctx, set, inst, reconcile.Action{Kind: reconcile.ActUpgrade, InstanceID: inst.ID, Image: r.TargetImage, ModelVersion: r.TargetModel, Reason: "rolling upgrade"})
				if err != nil {
					c.log.Warn("rolling upgrade of an instance failed", "set", set.Ref().String(), "instance", inst.ID, "err", err)
				}
			case rollout.ActRollback:
				var err error
				if inst.Image.Digest != a.Prev.Image.Digest || inst.ModelVersion != a.Prev.ModelVersion {
					err = c.act(ctx, set, inst, reconcile.Action{Kind: reconcile.ActUpgrade, InstanceID: inst.ID, Image: a.Prev.Image, ModelVersion: a.Prev.ModelVersion, Reason: "rollback"})
				}
				mu.Lock()
				outcomes[inst.ID] = state.ErrorDetail(err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(outcomes) == 0 {
		return
	}
	_, err := state.Update(ctx, c.opts.Store, model.RolloutKey(r.Ref(), r.Seq), func(cur *model.Rollout) error {
		for id, e := range outcomes {
			rollout.RecordRollback(cur, id, e)
		}
		return nil
	})
	if err != nil {
		c.log.Warn("recording rollbacks failed", "set", set.Ref().String(), "err", err)
	}
}

// withCapacity returns a copy of set with another sku.capacity.
func withCapacity(set *model.ScaleSet, n int64) *model.ScaleSet {
	cp := *set
	m := *set.Model
	sku := armcompute.SKU{}
	if m.SKU != nil {
		sku = *m.SKU
	}
	sku.Capacity = &n
	m.SKU = &sku
	cp.Model = &m
	return &cp
}
