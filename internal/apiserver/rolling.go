package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/rollout"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// Rolling upgrades: the API records intent (a rollout record for
// osRollingUpgrade, a cancel or approval flag on the running one) and
// renders rollout records; the controller runs them (internal/controller,
// internal/rollout).

// registerRolling registers the rolling upgrade routes; they must come
// before the generic scale set action route.
func (s *Server) registerRolling(cv map[string]bool) {
	get, post := http.MethodGet, http.MethodPost
	s.handle(post, vmssP+"/osRollingUpgrade", cv, s.osRollingUpgrade)
	s.handle(post, vmssP+"/extensionRollingUpgrade", cv, s.extensionRollingUpgrade)
	s.handle(post, vmssP+"/rollingUpgrades/cancel", cv, s.cancelRollingUpgrade)
	s.handle(get, vmssP+"/rollingUpgrades/latest", cv, s.latestRollingUpgrade)
	s.handle(post, vmssP+"/rollingUpgrades/approve", cv, s.approveRollingUpgrade)
	s.handle(get, vmssP+"/osUpgradeHistory", cv, s.osUpgradeHistory)
	// Azure's newer approveRollingUpgrade (202 only) passes the gate too.
	s.handle(post, vmssP+"/approveRollingUpgrade", cv, s.approveRollingUpgradeLRO)
}

const typeRollingUpgrade = "Microsoft.Compute/virtualMachineScaleSets/rollingUpgrades"

func latestRollout(ctx context.Context, st store.Store, ref model.SetRef) (*model.Rollout, int64, error) {
	kvs, _, err := state.ListPage(ctx, st, model.RolloutPrefix(ref), "", 1)
	if err != nil || len(kvs) == 0 {
		return nil, 0, err
	}
	var r model.Rollout
	if err := json.Unmarshal(kvs[0].Value, &r); err != nil {
		return nil, 0, fmt.Errorf("rollout %s: %w", kvs[0].Key, err)
	}
	return &r, kvs[0].ModRevision, nil
}

// retryConflicts runs fn until it does not conflict.
func retryConflicts(fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		if attempt >= 20 {
			return errs.New(errs.Conflict, "Conflict", "The scale set is being modified concurrently; retry the request.")
		}
	}
}

// rolloutOperation is an operation a rollout ends (no pending index: the
// scale set's generation does not complete it, the rollout does).
func (s *Server) rolloutOperation(kind string, set *model.ScaleSet) *model.Operation {
	return &model.Operation{
		ID: state.NewID(), Sub: set.Sub, Location: s.opts.Location, Kind: kind, Target: set.Ref().String(),
		Generation: set.Generation, Status: arm.StatusInProgress, Start: s.opts.Now(),
	}
}

func (s *Server) osRollingUpgrade(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	ref := s.ref(rc)
	if _, err := readBody(r); err != nil {
		return err
	}
	var op *model.Operation
	err := retryConflicts(func() error {
		set, _, err := s.loadSet(ctx, ref)
		if err != nil {
			return err
		}
		if set.Deleting {
			return errs.New(errs.Conflict, "OperationNotAllowed", "The scale set '%s' is being deleted.", set.Name)
		}
		src := set.ImageSource()
		if src.IsCustom() || src.Publisher == "" {
			return errs.New(errs.Conflict, "OperationNotAllowed", "The OS Rolling Upgrade API cannot be used on a VM Scale Set unless the VM Scale Set is using a Platform Image select the OS by setting imageReference.")
		}
		insts, _, err := state.List[model.Instance](ctx, s.opts.Store, model.InstancePrefix(ref))
		if err != nil {
			return err
		}
		unprotected := 0
		for _, inst := range insts {
			if !inst.Deleting && !inst.ProtectActions {
				unprotected++
			}
		}
		if !strings.EqualFold(src.Version, "latest") || unprotected == 0 {
			return errs.New(errs.Conflict, "OperationNotAllowed", "The OS Rolling Upgrade API cannot be used on a Virtual Machine Scale Set unless the Virtual Machine Scale Set has some unprotected instances which have imageReference.version set to latest.")
		}
		latest, latestRev, err := latestRollout(ctx, s.opts.Store, ref)
		if err != nil {
			return err
		}
		if latest != nil && latest.Active() {
			return errs.New(errs.Conflict, "RollingUpgradeInProgress", "A rolling upgrade (started %s) is in progress on the scale set '%s'; cancel it or wait for it to end.", latest.Started.Format(time.RFC3339), set.Name)
		}
		seq := int64(1)
		var conds []store.Cond
		if latest != nil {
			seq = latest.Seq + 1
			conds = append(conds, store.ModRevisionIs(model.RolloutKey(ref, latest.Seq), latestRev))
		}
		now := s.opts.Now()
		op = s.rolloutOperation("vmss.osRollingUpgrade", set)
		ro := &model.Rollout{
			Sub: set.Sub, RG: set.RG, ScaleSet: set.Name, Seq: seq, Kind: model.RolloutKindOS,
			StartedBy: model.StartedByUser, Policy: set.RollingPolicy(), TargetModel: set.ModelVersion,
			Status: model.RolloutRollingForward, Phase: model.PhaseStarting,
			Started: now, LastAction: "Start", LastActionTime: now, Operation: op.ID,
		}
		key := model.RolloutKey(ref, seq)
		conds = append(conds, store.ModRevisionIs(key, 0))
		ops := []store.Op{state.PutOp(key, ro), state.PutOp(model.OperationKey(op.ID), op)}
		if seq > model.RolloutHistory {
			ops = append(ops, store.Delete(model.RolloutKey(ref, seq-model.RolloutHistory)))
		}
		_, err = s.opts.Store.Txn(ctx, conds, ops...)
		return err
	})
	if err != nil {
		return err
	}
	s.lroHeaders(w, r, op, rc.api)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *Server) extensionRollingUpgrade(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	if _, _, err := s.loadSet(r.Context(), s.ref(rc)); err != nil {
		return err
	}
	return errs.New(errs.Conflict, "OperationNotSupported",
		"vmssd does not run VM extensions, so there is nothing for an extension rolling upgrade to do; the Application Health extension's settings are applied by the host's health probe and take effect with the model.")
}

// editLatestRollout changes the scale set's latest rollout (nil when it has
// had none) with edit, which checks it first, and writes it back with the
// extra operations edit returns, retrying when the rollout changed meanwhile.
func (s *Server) editLatestRollout(ctx context.Context, ref model.SetRef, edit func(set *model.ScaleSet, ro *model.Rollout) ([]store.Op, error)) (*model.Rollout, error) {
	var out *model.Rollout
	err := retryConflicts(func() error {
		set, _, err := s.loadSet(ctx, ref)
		if err != nil {
			return err
		}
		ro, rev, err := latestRollout(ctx, s.opts.Store, ref)
		if err != nil {
			return err
		}
		extra, err := edit(set, ro)
		if err != nil {
			return err
		}
		key := model.RolloutKey(ref, ro.Seq)
		_, err = s.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(key, rev)}, append([]store.Op{state.PutOp(key, ro)}, extra...)...)
		out = ro
		return err
	})
	return out, err
}

// approveRollout lets ro, stopped at an approval gate, go on.
func approveRollout(ro *model.Rollout, setName string, now time.Time) error {
	if ro == nil || !ro.Active() || ro.Phase != model.PhaseAwaitingApproval {
		return errs.New(errs.Conflict, "NoApprovalPending", "No rolling upgrade of the scale set '%s' is waiting for approval.", setName)
	}
	ro.Approvals++
	ro.Phase = ""
	ro.LastAction, ro.LastActionTime = "Approve", now
	return nil
}

// rolloutLRO answers a POST that changes the latest rollout: edit changes
// it (see editLatestRollout) and returns the operation to record, which the
// 202 answer names.
func (s *Server) rolloutLRO(w http.ResponseWriter, r *http.Request, rc *reqCtx, edit func(set *model.ScaleSet, ro *model.Rollout) (*model.Operation, error)) error {
	if _, err := readBody(r); err != nil {
		return err
	}
	var op *model.Operation
	_, err := s.editLatestRollout(r.Context(), s.ref(rc), func(set *model.ScaleSet, ro *model.Rollout) ([]store.Op, error) {
		var err error
		if op, err = edit(set, ro); err != nil {
			return nil, err
		}
		return []store.Op{state.PutOp(model.OperationKey(op.ID), op)}, nil
	})
	if err != nil {
		return err
	}
	s.lroHeaders(w, r, op, rc.api)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *Server) cancelRollingUpgrade(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.rolloutLRO(w, r, rc, func(set *model.ScaleSet, ro *model.Rollout) (*model.Operation, error) {
		if ro == nil || !ro.Active() {
			return nil, errs.New(errs.Conflict, "OperationNotAllowed", "There is no ongoing Rolling Upgrade to cancel on the scale set '%s'.", set.Name)
		}
		op := s.rolloutOperation("vmss.cancelRollingUpgrade", set)
		now := s.opts.Now()
		ro.CancelRequested = true
		ro.LastAction, ro.LastActionTime = "Cancel", now
		ro.CancelOperations = append(ro.CancelOperations, op.ID)
		return op, nil
	})
}

// approveRollingUpgrade (vmssd, beyond Azure) lets a rollout stopped at an
// approval gate go on; it answers with the rollout's status.
func (s *Server) approveRollingUpgrade(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ref := s.ref(rc)
	if _, err := readBody(r); err != nil {
		return err
	}
	ro, err := s.editLatestRollout(r.Context(), ref, func(_ *model.ScaleSet, ro *model.Rollout) ([]store.Op, error) {
		return nil, approveRollout(ro, ref.Name, s.opts.Now())
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderRolling(ro))
	return nil
}

// approveRollingUpgradeLRO is POST approveRollingUpgrade, Azure's shape of
// an approval: 202 and an operation, which has succeeded once the gate is
// passed.
func (s *Server) approveRollingUpgradeLRO(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.rolloutLRO(w, r, rc, func(set *model.ScaleSet, ro *model.Rollout) (*model.Operation, error) {
		now := s.opts.Now()
		if err := approveRollout(ro, set.Name, now); err != nil {
			return nil, err
		}
		op := s.rolloutOperation("vmss.approveRollingUpgrade", set)
		op.Status, op.End = arm.StatusSucceeded, &now
		return op, nil
	})
}

func (s *Server) latestRollingUpgrade(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	ref := s.ref(rc)
	set, _, err := s.loadSet(ctx, ref)
	if err != nil {
		return err
	}
	ro, _, err := latestRollout(ctx, s.opts.Store, ref)
	if err != nil {
		return err
	}
	if ro == nil {
		return errs.New(errs.NotFound, "NotFound", "The scale set '%s' has had no rolling upgrade.", set.Name)
	}
	writeJSON(w, http.StatusOK, s.renderRolling(ro))
	return nil
}

func (s *Server) osUpgradeHistory(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	ref := s.ref(rc)
	if _, _, err := s.loadSet(ctx, ref); err != nil {
		return err
	}
	prefix := model.RolloutPrefix(ref)
	start, err := pageStart(rc, prefix, func(rel string) bool { return len(rel) == 12 && strings.Trim(rel, "0123456789") == "" })
	if err != nil {
		return err
	}
	kvs, next, err := state.ListPage(ctx, s.opts.Store, prefix, start, s.opts.PageSize)
	if err != nil {
		return err
	}
	page := arm.Page[historyItem]{Value: []historyItem{}}
	for _, kv := range kvs {
		var ro model.Rollout
		if err := json.Unmarshal(kv.Value, &ro); err != nil {
			return err
		}
		page.Value = append(page.Value, s.renderHistory(&ro))
	}
	if next != "" {
		page.NextLink = pageLink(r, prefix, next)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// Wire shapes (RollingUpgradeStatusInfo, UpgradeOperationHistoricalStatusInfo).

type rollingStatus struct {
	Location   string             `json:"location"`
	Type       string             `json:"type"`
	Name       string             `json:"name"`
	ID         string             `json:"id"`
	Properties rollingStatusProps `json:"properties"`
}

type rollingStatusProps struct {
	Policy        *armcompute.RollingUpgradePolicy        `json:"policy"`
	RunningStatus *armcompute.RollingUpgradeRunningStatus `json:"runningStatus"`
	Progress      *armcompute.RollingUpgradeProgressInfo  `json:"progress"`
	Error         *arm.ErrorDetail                        `json:"error,omitempty"`
	// Vmssd is vmssd's detail (clients that do not know it ignore it).
	Vmssd rollingDetail `json:"vmssd"`
}

// rollingDetail is what vmssd adds to rollingUpgrades/latest.
type rollingDetail struct {
	Phase            string          `json:"phase,omitempty"`
	Kind             string          `json:"kind"`
	StartedBy        string          `json:"startedBy"`
	Batches          int             `json:"batches"`
	CurrentBatch     []int64         `json:"currentBatch,omitempty"`
	UpdateDomain     *int            `json:"updateDomain,omitempty"`
	PauseUntil       *time.Time      `json:"pauseUntil,omitempty"`
	AwaitingApproval bool            `json:"awaitingApproval"`
	Approvals        int             `json:"approvals"`
	DomainAware      bool            `json:"domainAware"`
	Approval         string          `json:"approval,omitempty"`
	TargetImage      *imageRefDetail `json:"targetImage,omitempty"`
	FailedInstances  []int64         `json:"failedInstances,omitempty"`
	RolledBack       []int64         `json:"rolledBackInstances,omitempty"`
}

type imageRefDetail struct {
	Publisher    string `json:"publisher,omitempty"`
	Offer        string `json:"offer,omitempty"`
	SKU          string `json:"sku,omitempty"`
	Version      string `json:"version,omitempty"`
	ExactVersion string `json:"exactVersion,omitempty"`
}

type historyItem struct {
	Location   string       `json:"location"`
	Type       string       `json:"type"`
	Properties historyProps `json:"properties"`
}

type historyProps struct {
	RunningStatus        historyRunning                         `json:"runningStatus"`
	Progress             *armcompute.RollingUpgradeProgressInfo `json:"progress"`
	Error                *arm.ErrorDetail                       `json:"error,omitempty"`
	StartedBy            string                                 `json:"startedBy"`
	TargetImageReference *imageRefDetail                        `json:"targetImageReference,omitempty"`
	RollbackInfo         historyRollback                        `json:"rollbackInfo"`
}

type historyRunning struct {
	Code      string     `json:"code"`
	StartTime time.Time  `json:"startTime"`
	EndTime   *time.Time `json:"endTime,omitempty"`
}

type historyRollback struct {
	Successful    int              `json:"successfullyRolledbackInstanceCount"`
	Failed        int              `json:"failedRolledbackInstanceCount"`
	RollbackError *arm.ErrorDetail `json:"rollbackError,omitempty"`
}

func renderPolicy(p model.RollingPolicy) *armcompute.RollingUpgradePolicy {
	return &armcompute.RollingUpgradePolicy{
		MaxBatchInstancePercent:               ptr(int32(p.MaxBatchInstancePercent)),
		MaxUnhealthyInstancePercent:           ptr(int32(p.MaxUnhealthyInstancePercent)),
		MaxUnhealthyUpgradedInstancePercent:   ptr(int32(p.MaxUnhealthyUpgradedInstancePercent)),
		PauseTimeBetweenBatches:               ptr(model.FormatISODuration(p.PauseTimeBetweenBatches)),
		PrioritizeUnhealthyInstances:          ptr(p.PrioritizeUnhealthyInstances),
		RollbackFailedInstancesOnPolicyBreach: ptr(p.RollbackFailedInstancesOnPolicyBreach),
		MaxSurge:                              ptr(p.MaxSurge),
		EnableCrossZoneUpgrade:                ptr(p.EnableCrossZoneUpgrade),
	}
}

func renderProgress(ro *model.Rollout) *armcompute.RollingUpgradeProgressInfo {
	p := rollout.ProgressOf(ro)
	return &armcompute.RollingUpgradeProgressInfo{
		SuccessfulInstanceCount: ptr(int32(p.Successful)),
		FailedInstanceCount:     ptr(int32(p.Failed)),
		InProgressInstanceCount: ptr(int32(p.InProgress)),
		PendingInstanceCount:    ptr(int32(p.Pending)),
	}
}

func imageDetail(ro *model.Rollout) *imageRefDetail {
	img := ro.TargetImage
	if img.Digest == "" && img.Publisher == "" {
		return nil
	}
	v := img.Version
	if v == "" {
		v = img.ExactVersion
	}
	return &imageRefDetail{Publisher: img.Publisher, Offer: img.Offer, SKU: img.SKU, Version: v, ExactVersion: img.ExactVersion}
}

func (s *Server) renderRolling(ro *model.Rollout) rollingStatus {
	last := armcompute.RollingUpgradeActionTypeStart
	if ro.LastAction == "Cancel" {
		last = armcompute.RollingUpgradeActionTypeCancel
	}
	d := rollingDetail{
		Phase: ro.Phase, Kind: ro.Kind, StartedBy: ro.StartedBy, Batches: len(ro.Batches),
		AwaitingApproval: ro.Active() && ro.Phase == model.PhaseAwaitingApproval, Approvals: ro.Approvals,
		DomainAware: ro.Policy.DomainAware, Approval: ro.Policy.Approval, TargetImage: imageDetail(ro),
		FailedInstances: ro.Failed, RolledBack: ro.RolledBack,
	}
	if b := ro.Current(); b != nil {
		d.CurrentBatch, d.UpdateDomain = b.IDs, ptr(b.UpdateDomain)
	}
	if ro.Active() && !ro.PauseUntil.IsZero() {
		d.PauseUntil = ptr(ro.PauseUntil)
	}
	start, lastTime := ro.Started, ro.LastActionTime
	return rollingStatus{
		Location: s.opts.Location, Type: typeRollingUpgrade, Name: "latest",
		ID: arm.ScaleSetID(ro.Sub, ro.RG, ro.ScaleSet) + "/rollingUpgrades/latest",
		Properties: rollingStatusProps{
			Policy: renderPolicy(ro.Policy),
			RunningStatus: &armcompute.RollingUpgradeRunningStatus{
				Code: ptr(armcompute.RollingUpgradeStatusCode(ro.Status)), StartTime: &start,
				LastAction: &last, LastActionTime: &lastTime,
			},
			Progress: renderProgress(ro),
			Error:    ro.Error,
			Vmssd:    d,
		},
	}
}

func (s *Server) renderHistory(ro *model.Rollout) historyItem {
	return historyItem{
		Location: s.opts.Location, Type: typeRollingUpgrade,
		Properties: historyProps{
			RunningStatus:        historyRunning{Code: ro.Status, StartTime: ro.Started, EndTime: ro.Ended},
			Progress:             renderProgress(ro),
			Error:                ro.Error,
			StartedBy:            ro.StartedBy,
			TargetImageReference: imageDetail(ro),
			RollbackInfo:         historyRollback{Successful: len(ro.RolledBack), Failed: len(ro.RollbackFailed), RollbackError: ro.RollbackError},
		},
	}
}

// validateRolling checks what validate's range checks do not: the pause
// between batches, vmssd's rolling tags and the Application Health
// extension's settings.
func validateRolling(m *armcompute.VirtualMachineScaleSet) error {
	const rp = "properties.upgradePolicy.rollingUpgradePolicy."
	if p := m.Properties; p != nil && p.UpgradePolicy != nil && p.UpgradePolicy.RollingUpgradePolicy != nil {
		pol := p.UpgradePolicy.RollingUpgradePolicy
		if pol.PauseTimeBetweenBatches != nil {
			d, err := model.ParseISODuration(*pol.PauseTimeBetweenBatches)
			if err != nil {
				return errs.InvalidParameter(rp+"pauseTimeBetweenBatches", "The value '%s' of parameter 'pauseTimeBetweenBatches' is not valid: %v.", clip(*pol.PauseTimeBetweenBatches), err)
			}
			if d > model.MaxPauseTimeBetweenBatches {
				return errs.InvalidParameter(rp+"pauseTimeBetweenBatches", "The value '%s' of parameter 'pauseTimeBetweenBatches' is out of range. The value must be between PT0S and PT2H, inclusive.", *pol.PauseTimeBetweenBatches)
			}
		}
	}
	for k, v := range m.Tags {
		val := ""
		if v != nil {
			val = *v
		}
		switch {
		case strings.EqualFold(k, model.TagDomainAware):
			if !strings.EqualFold(val, "true") && !strings.EqualFold(val, "false") {
				return errs.InvalidParameter("tags."+k, "The tag '%s' must be 'true' or 'false', not '%s'.", k, clip(val))
			}
		case strings.EqualFold(k, model.TagApproval):
			if !oneOf(val, "none", model.ApprovalEachBatch, model.ApprovalFirstBatch) {
				return errs.InvalidParameter("tags."+k, "The tag '%s' must be 'none', 'eachBatch' or 'firstBatch', not '%s'.", k, clip(val))
			}
		}
	}
	if ext, ok := (&model.ScaleSet{Model: m}).HealthExtension(); ok {
		target := "properties.virtualMachineProfile.extensionProfile.extensions." + ext.Name + ".settings"
		if !oneOf(ext.Protocol, "http", "https", "tcp") {
			return errs.InvalidParameter(target+".protocol", "The Application Health extension protocol '%s' is not valid. Allowed values are 'http', 'https', 'tcp'.", clip(ext.Protocol))
		}
		if ext.Port < 0 || ext.Port > 65535 {
			return errs.InvalidParameter(target+".port", "The Application Health extension port %d is out of range (1-65535).", ext.Port)
		}
		if ext.Protocol == "tcp" && ext.Port == 0 {
			return errs.InvalidParameter(target+".port", "The Application Health extension needs a port for the tcp protocol.")
		}
		if ext.Protocol != "tcp" && ext.RequestPath != "" && !strings.HasPrefix(ext.RequestPath, "/") {
			return errs.InvalidParameter(target+".requestPath", "The Application Health extension requestPath '%s' must start with '/'.", clip(ext.RequestPath))
		}
		if settings, _ := healthSettings(m); settings != nil {
			for _, c := range []struct {
				name   string
				lo, hi int
			}{{"intervalInSeconds", 5, 60}, {"numberOfProbes", 1, 24}, {"gracePeriod", 0, 14400}} {
				if v, ok := settings[c.name]; ok {
					n, isNum := v.(float64)
					if !isNum || n != float64(int(n)) || int(n) < c.lo || int(n) > c.hi {
						return errs.InvalidParameter(target+"."+c.name, "The Application Health extension setting '%s' must be a whole number between %d and %d.", c.name, c.lo, c.hi)
					}
				}
			}
		}
		if ext.Grace > 4*time.Hour {
			return errs.InvalidParameter(target+".gracePeriod", "The Application Health extension gracePeriod is out of range: at most 14400 seconds.")
		}
	}
	return nil
}

// healthSettings returns the Application Health extension's settings object.
func healthSettings(m *armcompute.VirtualMachineScaleSet) (map[string]any, bool) {
	p := m.Properties
	if p == nil || p.VirtualMachineProfile == nil || p.VirtualMachineProfile.ExtensionProfile == nil {
		return nil, false
	}
	for _, ext := range p.VirtualMachineProfile.ExtensionProfile.Extensions {
		if ext == nil || ext.Properties == nil || ext.Properties.Type == nil {
			continue
		}
		if oneOf(*ext.Properties.Type, "ApplicationHealthLinux", "ApplicationHealthWindows") {
			s, ok := ext.Properties.Settings.(map[string]any)
			return s, ok
		}
	}
	return nil, false
}
