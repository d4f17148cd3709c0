package apiserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/metrics"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

const typeVM = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines"

func status(code, display string, level armcompute.StatusLevelTypes, t *time.Time) *armcompute.InstanceViewStatus {
	return &armcompute.InstanceViewStatus{Code: ptr(code), DisplayStatus: ptr(display), Level: ptr(level), Time: t}
}

var powerDisplay = map[string]string{
	"starting": "VM starting", "running": "VM running", "stopping": "VM stopping", "stopped": "VM stopped",
	"deallocating": "VM deallocating", "deallocated": "VM deallocated", "unknown": "VM status unknown",
}

// instanceView builds the instance view of one instance.
func (s *Server) instanceViewOf(inst *model.Instance) *armcompute.VirtualMachineScaleSetVMInstanceView {
	obs, ok := s.opts.Observer.Observe(inst)
	ps := inst.ProvisioningState
	level := armcompute.StatusLevelTypesInfo
	if ps == model.StateFailed {
		level = armcompute.StatusLevelTypesError
	}
	created := inst.Created
	psStatus := status("ProvisioningState/"+strings.ToLower(ps), "Provisioning "+strings.ToLower(ps), level, &created)
	if inst.Error != nil {
		psStatus.Message = ptr(inst.Error.Code + ": " + inst.Error.Message)
	}
	power := metrics.PowerState(inst, obs, ok)
	iv := &armcompute.VirtualMachineScaleSetVMInstanceView{
		PlatformFaultDomain:  ptr(int32(inst.FaultDomain)),
		PlatformUpdateDomain: ptr(int32(inst.UpdateDomain)),
		ComputerName:         ptr(inst.ComputerName),
		OSName:               ptr(osName(inst)),
		OSVersion:            ptr(inst.Image.ExactVersion),
		AssignedHost:         ptr(inst.Host),
		Statuses: []*armcompute.InstanceViewStatus{
			psStatus,
			status("PowerState/"+power, powerDisplay[power], armcompute.StatusLevelTypesInfo, nil),
		},
	}
	health := host.HealthUnknown
	var since *time.Time
	if ok {
		health = obs.Health
		t := obs.HealthSince
		since = &t
	}
	hs := status("HealthState/"+strings.ToLower(string(health)), "The VM is "+strings.ToLower(string(health)), armcompute.StatusLevelTypesInfo, since)
	switch {
	case health == host.HealthUnhealthy:
		// The probe's error, not what an earlier answer said.
		hs.Level = ptr(armcompute.StatusLevelTypesWarning)
		if obs.ProbeErr != "" {
			hs.Message = ptr(obs.ProbeErr)
		}
	case ok && obs.Version != "":
		hs.Message = ptr("imageVersion=" + obs.Version)
	}
	iv.VMHealth = &armcompute.VirtualMachineHealthStatus{Status: hs}
	if ok && obs.Accel != "" {
		display := "Hardware virtualization (KVM)"
		if obs.Accel == "tcg" {
			display = "Software emulation (TCG): KVM is not usable on this host"
		}
		iv.Statuses = append(iv.Statuses, status("Virtualization/"+obs.Accel, display, armcompute.StatusLevelTypesInfo, nil))
	}
	if ok && obs.Isolation != "" {
		display := "Sandboxed: an OCI container (runc) with its own user, mount, pid and network namespaces"
		level := armcompute.StatusLevelTypesInfo
		if obs.Isolation == "none" {
			display = "Not sandboxed: a plain host process (allowed by the operator)"
			level = armcompute.StatusLevelTypesWarning
		}
		iv.Statuses = append(iv.Statuses, status("Isolation/"+obs.Isolation, display, level, nil))
	}
	if ok && obs.Network != "" {
		display := "Loopback forwards only: the instance has no address on its virtual network"
		if obs.Network == "bridge" {
			display = "Attached to its virtual network's bridge, private IP " + obs.PrivateIP
		}
		iv.Statuses = append(iv.Statuses, status("Network/"+obs.Network, display, armcompute.StatusLevelTypesInfo, nil))
	}
	if ok && obs.Message != "" {
		iv.Statuses = append(iv.Statuses, status("InstanceStatus/driver", obs.Message, armcompute.StatusLevelTypesInfo, nil))
	}
	if ok && len(obs.Ports) > 0 {
		keys := make([]string, 0, len(obs.Ports))
		for k := range obs.Ports {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			iv.Statuses = append(iv.Statuses, status("Endpoint/"+k, obs.Ports[k], armcompute.StatusLevelTypesInfo, nil))
		}
	}
	return iv
}

func osName(inst *model.Instance) string {
	if inst.Image.URI != "" {
		return inst.Image.URI
	}
	return inst.Image.Publisher + " " + inst.Image.Offer + " " + inst.Image.SKU
}

// renderInstance builds the wire instance.
func (s *Server) renderInstance(set *model.ScaleSet, inst *model.Instance, expand bool) *armcompute.VirtualMachineScaleSetVM {
	id := strconv.FormatInt(inst.ID, 10)
	created := inst.Created
	osType := armcompute.OperatingSystemTypes(inst.Image.OSType)
	if osType == "" {
		osType = armcompute.OperatingSystemTypesLinux
	}
	sp := &armcompute.StorageProfile{
		OSDisk: &armcompute.OSDisk{
			OSType: ptr(osType), Name: ptr(fmt.Sprintf("%s_OsDisk_%s", inst.Name(), inst.VMID[:8])),
			CreateOption: ptr(armcompute.DiskCreateOptionTypesFromImage), Caching: ptr(armcompute.CachingTypesReadWrite),
		},
	}
	if inst.Image.URI != "" {
		sp.OSDisk.Image = &armcompute.VirtualHardDisk{URI: ptr(inst.Image.URI)}
	} else {
		sp.ImageReference = &armcompute.ImageReference{
			Publisher: ptr(inst.Image.Publisher), Offer: ptr(inst.Image.Offer), SKU: ptr(inst.Image.SKU),
			Version: ptr(inst.Image.Version), ExactVersion: ptr(inst.Image.ExactVersion),
		}
	}
	var adminUser *string
	if p := set.Model.Properties; p != nil && p.VirtualMachineProfile != nil && p.VirtualMachineProfile.OSProfile != nil {
		adminUser = p.VirtualMachineProfile.OSProfile.AdminUsername
	}
	vm := &armcompute.VirtualMachineScaleSetVM{
		ID: ptr(arm.InstanceID(set.Sub, set.RG, set.Name, id)), Name: ptr(inst.Name()), Type: ptr(typeVM),
		InstanceID: ptr(id), Location: ptr(set.Location()),
		SKU: &armcompute.SKU{Name: ptr(inst.Size), Tier: ptr("Standard")},
		Properties: &armcompute.VirtualMachineScaleSetVMProperties{
			LatestModelApplied:     ptr(inst.ModelVersion == set.ModelVersion),
			VMID:                   ptr(inst.VMID),
			ProvisioningState:      ptr(inst.ProvisioningState),
			ModelDefinitionApplied: ptr("VirtualMachineScaleSet"),
			TimeCreated:            &created,
			HardwareProfile:        &armcompute.HardwareProfile{VMSize: ptr(armcompute.VirtualMachineSizeTypes(inst.Size))},
			StorageProfile:         sp,
			OSProfile:              &armcompute.OSProfile{ComputerName: ptr(inst.ComputerName), AdminUsername: adminUser},
			ProtectionPolicy: &armcompute.VirtualMachineScaleSetVMProtectionPolicy{
				ProtectFromScaleIn: ptr(inst.ProtectScaleIn), ProtectFromScaleSetActions: ptr(inst.ProtectActions),
			},
			NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: instanceNICs(set, arm.InstanceID(set.Sub, set.RG, set.Name, id))},
		},
	}
	if expand {
		vm.Properties.InstanceView = s.instanceViewOf(inst)
	}
	return vm
}

// instanceNICs lists an instance's NICs: one per networkInterfaceConfiguration
// of the scale set model, named after it ("nic0" when the model has none).
func instanceNICs(set *model.ScaleSet, instanceID string) []*armcompute.NetworkInterfaceReference {
	var out []*armcompute.NetworkInterfaceReference
	if set.Model == nil {
		return []*armcompute.NetworkInterfaceReference{{ID: ptr(instanceID + "/networkInterfaces/nic0")}}
	}
	if p := set.Model.Properties; p != nil && p.VirtualMachineProfile != nil && p.VirtualMachineProfile.NetworkProfile != nil {
		for _, nc := range p.VirtualMachineProfile.NetworkProfile.NetworkInterfaceConfigurations {
			if nc == nil || nc.Name == nil || *nc.Name == "" {
				continue
			}
			ref := &armcompute.NetworkInterfaceReference{ID: ptr(instanceID + "/networkInterfaces/" + *nc.Name)}
			if nc.Properties != nil && nc.Properties.Primary != nil {
				ref.Properties = &armcompute.NetworkInterfaceReferenceProperties{Primary: ptr(*nc.Properties.Primary)}
			}
			out = append(out, ref)
		}
	}
	if len(out) == 0 {
		out = append(out, &armcompute.NetworkInterfaceReference{ID: ptr(instanceID + "/networkInterfaces/nic0")})
	}
	return out
}

func (s *Server) loadInstance(ctx context.Context, ref model.SetRef, idStr string) (*model.Instance, int64, error) {
	notFound := errs.New(errs.NotFound, "ResourceNotFound", "The Resource '%s/%s/virtualMachines/%s' under resource group '%s' was not found.", typeVMSS, ref.Name, idStr, ref.RG)
	id, err := strconv.ParseInt(idStr, 10, 64)
	if err != nil || id < 0 || strconv.FormatInt(id, 10) != idStr {
		return nil, 0, notFound
	}
	inst, rev, err := state.Get[model.Instance](ctx, s.opts.Store, model.InstanceKey(ref, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, notFound
	}
	return inst, rev, err
}

// loadSetInstance reads a scale set and one of its instances.
func (s *Server) loadSetInstance(ctx context.Context, ref model.SetRef, id string) (*model.ScaleSet, *model.Instance, error) {
	set, _, err := s.loadSet(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	inst, _, err := s.loadInstance(ctx, ref, id)
	if err != nil {
		return nil, nil, err
	}
	return set, inst, nil
}

func expandInstanceView(rc *reqCtx) bool {
	return strings.Contains(strings.ToLower(rc.query.Get("$expand")), "instanceview")
}

func (s *Server) getInstance(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	set, inst, err := s.loadSetInstance(r.Context(), s.ref(rc), rc.v("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderInstance(set, inst, expandInstanceView(rc)))
	return nil
}

func (s *Server) instanceView(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	_, inst, err := s.loadSetInstance(r.Context(), s.ref(rc), rc.v("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.instanceViewOf(inst))
	return nil
}

// scaleSetInstanceView summarises the instances' statuses.
func (s *Server) scaleSetInstanceView(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	ref := s.ref(rc)
	set, _, err := s.loadSet(ctx, ref)
	if err != nil {
		return err
	}
	st, err := s.loadStatus(ctx, ref)
	if err != nil {
		return err
	}
	insts, _, err := state.List[model.Instance](ctx, s.opts.Store, model.InstancePrefix(ref))
	if err != nil {
		return err
	}
	counts := map[string]int32{}
	for _, inst := range insts {
		obs, ok := s.opts.Observer.Observe(inst)
		counts["ProvisioningState/"+strings.ToLower(inst.ProvisioningState)]++
		counts["PowerState/"+metrics.PowerState(inst, obs, ok)]++
		h := host.HealthUnknown
		if ok {
			h = obs.Health
		}
		counts["HealthState/"+strings.ToLower(string(h))]++
	}
	codes := make([]string, 0, len(counts))
	for c := range counts {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	sum := &armcompute.VirtualMachineScaleSetInstanceViewStatusesSummary{}
	for _, c := range codes {
		sum.StatusesSummary = append(sum.StatusesSummary, &armcompute.VirtualMachineStatusCodeCount{Code: ptr(c), Count: ptr(counts[c])})
	}
	ps := provisioningState(set, st)
	level := armcompute.StatusLevelTypesInfo
	if ps == model.StateFailed {
		level = armcompute.StatusLevelTypesError
	}
	top := status("ProvisioningState/"+strings.ToLower(ps), "Provisioning "+strings.ToLower(ps), level, nil)
	if st.Error != nil {
		top.Message = ptr(st.Error.Code + ": " + st.Error.Message)
	}
	writeJSON(w, http.StatusOK, &armcompute.VirtualMachineScaleSetInstanceView{
		VirtualMachine: sum,
		Statuses:       []*armcompute.InstanceViewStatus{top},
	})
	return nil
}

// Instance actions.
var instanceActions = map[string]bool{
	"start": true, "poweroff": true, "restart": true, "deallocate": true,
	"reimage": true, "reimageall": true, "delete": true, "manualupgrade": true,
	"redeploy": true,
}

// actionBody is the optional {"instanceIds":[...]} body.
type actionBody struct {
	InstanceIDs []string `json:"instanceIds"`
}

func (s *Server) scaleSetAction(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	action := strings.ToLower(rc.v("action"))
	if !instanceActions[action] {
		return unknownAction(r, rc)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var ab actionBody
	if body != nil {
		if err := decode(body, &ab); err != nil {
			return err
		}
	}
	if (action == "delete" || action == "manualupgrade") && len(ab.InstanceIDs) == 0 {
		return errs.InvalidParameter("instanceIds", "Required parameter 'instanceIds' is missing (null).")
	}
	all := len(ab.InstanceIDs) == 0 || len(ab.InstanceIDs) == 1 && ab.InstanceIDs[0] == "*"
	return s.applyAction(w, r, rc, action, ab.InstanceIDs, all, true)
}

func (s *Server) instanceAction(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	action := strings.ToLower(rc.v("action"))
	if !instanceActions[action] || action == "delete" || action == "manualupgrade" {
		return unknownAction(r, rc)
	}
	if _, err := readBody(r); err != nil {
		return err
	}
	return s.applyAction(w, r, rc, action, []string{rc.v("id")}, false, false)
}

func (s *Server) deleteInstance(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.applyAction(w, r, rc, "delete", []string{rc.v("id")}, false, false)
}

// applyAction records an action on instances in one transaction with the
// scale set's generation bump, and answers 202 with an operation.
func (s *Server) applyAction(w http.ResponseWriter, r *http.Request, rc *reqCtx, action string, ids []string, all, setLevel bool) error {
	ctx := r.Context()
	ref := s.ref(rc)
	for attempt := 0; ; attempt++ {
		op, err := s.tryAction(ctx, ref, action, ids, all, setLevel)
		if errors.Is(err, store.ErrConflict) {
			if attempt < 20 {
				continue
			}
			return errs.New(errs.Conflict, "Conflict", "The scale set is being modified concurrently; retry the request.")
		}
		if err != nil {
			return err
		}
		s.lroHeaders(w, r, op, rc.api)
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
}

func (s *Server) tryAction(ctx context.Context, ref model.SetRef, action string, ids []string, all, setLevel bool) (*model.Operation, error) {
	set, setRev, err := s.loadSet(ctx, ref)
	if err != nil {
		return nil, err
	}
	if set.Deleting {
		return nil, errs.New(errs.Conflict, "OperationNotAllowed", "The scale set '%s' is being deleted.", set.Name)
	}
	insts, revs, err := state.List[model.Instance](ctx, s.opts.Store, model.InstancePrefix(ref))
	if err != nil {
		return nil, err
	}
	byID := make(map[string]int, len(insts))
	for i, inst := range insts {
		if !inst.Deleting {
			byID[strconv.FormatInt(inst.ID, 10)] = i
		}
	}
	var chosen []int
	if all {
		for i, inst := range insts {
			if !inst.Deleting && !(setLevel && inst.ProtectActions && action != "delete") {
				chosen = append(chosen, i)
			}
		}
	} else {
		seen := map[string]bool{}
		for _, id := range ids {
			i, ok := byID[id]
			if !ok {
				if !setLevel {
					return nil, errs.New(errs.NotFound, "ResourceNotFound", "The Resource '%s/%s/virtualMachines/%s' under resource group '%s' was not found.", typeVMSS, ref.Name, id, ref.RG)
				}
				return nil, errs.InvalidParameter("instanceIds", "The provided instanceId %s is not an active Virtual Machine Scale Set VM instanceId.", id)
			}
			if !seen[id] {
				seen[id] = true
				chosen = append(chosen, i)
			}
		}
	}
	setKey := model.ScaleSetKey(ref)
	conds := []store.Cond{store.ModRevisionIs(setKey, setRev)}
	var ops []store.Op
	for _, i := range chosen {
		inst := insts[i]
		switch action {
		case "start":
			inst.Power = model.PowerRunning
		case "poweroff":
			inst.Power = model.PowerStopped
		case "deallocate":
			inst.Power = model.PowerDeallocated
		case "restart", "redeploy":
			inst.RestartSeq = max(inst.RestartSeq, inst.AppliedRestart) + 1
			inst.Power = model.PowerRunning
		case "reimage", "reimageall":
			inst.ReimageSeq = max(inst.ReimageSeq, inst.AppliedReimage) + 1
		case "manualupgrade":
			inst.TargetModel = set.ModelVersion
			inst.UpgradeSeq++
			inst.FailedModel = 0 // an explicit request retries a failed upgrade
		case "delete":
			inst.Deleting = true
			inst.ProvisioningState = model.StateDeleting
		}
		k := model.InstanceKey(ref, inst.ID)
		conds = append(conds, store.ModRevisionIs(k, revs[i]))
		ops = append(ops, state.PutOp(k, inst))
	}
	if action == "delete" && len(chosen) > 0 {
		c := set.Capacity() - int64(len(chosen))
		if c < 0 {
			c = 0
		}
		set.Model.SKU.Capacity = &c
	}
	set.Generation++
	op, opOps := state.NewOperation("vmss."+action, ref.Sub, s.opts.Location, ref.String(), set.Generation, s.opts.Now())
	ops = append(ops, opOps...)
	ops = append(ops, state.PutOp(setKey, set))
	if _, err := s.opts.Store.Txn(ctx, conds, ops...); err != nil {
		return nil, err
	}
	return op, nil
}

// putInstance updates what a user may change on one instance: its
// protection policy.
func (s *Server) putInstance(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	ref := s.ref(rc)
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var vm armcompute.VirtualMachineScaleSetVM
	if body == nil {
		return errs.New(errs.Invalid, "InvalidRequestContent", "The request content is missing.")
	}
	if err := decode(body, &vm); err != nil {
		return err
	}
	var set *model.ScaleSet
	var inst *model.Instance
	var op *model.Operation
	for attempt := 0; ; attempt++ {
		var setRev, rev int64
		set, setRev, err = s.loadSet(ctx, ref)
		if err != nil {
			return err
		}
		inst, rev, err = s.loadInstance(ctx, ref, rc.v("id"))
		if err != nil {
			return err
		}
		if vm.Properties != nil && vm.Properties.ProtectionPolicy != nil {
			pp := vm.Properties.ProtectionPolicy
			if pp.ProtectFromScaleIn != nil {
				inst.ProtectScaleIn = *pp.ProtectFromScaleIn
			}
			if pp.ProtectFromScaleSetActions != nil {
				inst.ProtectActions = *pp.ProtectFromScaleSetActions
			}
		}
		set.Generation++
		var ops []store.Op
		op, ops = state.NewOperation("vm.put", ref.Sub, s.opts.Location, ref.String(), set.Generation, s.opts.Now())
		k := model.InstanceKey(ref, inst.ID)
		ops = append(ops, state.PutOp(k, inst), state.PutOp(model.ScaleSetKey(ref), set))
		_, err = s.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(k, rev), store.ModRevisionIs(model.ScaleSetKey(ref), setRev)}, ops...)
		if errors.Is(err, store.ErrConflict) {
			// The controller writes instance records all the time: retry.
			if attempt < 20 {
				continue
			}
			return errs.New(errs.Conflict, "Conflict", "The instance is being modified concurrently; retry the request.")
		}
		if err != nil {
			return err
		}
		break
	}
	s.lroHeaders(w, r, op, rc.api)
	writeJSON(w, http.StatusOK, s.renderInstance(set, inst, false))
	return nil
}
