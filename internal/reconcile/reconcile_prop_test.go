package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/model"
)

// tb is what the property helpers need from *rapid.T.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// genOpts narrows the scenarios drawScenario generates.
type genOpts struct {
	imageErrors bool // the model's image may not resolve (V3)
	setDeleting bool // the scale set may be deleting
	oddInputs   bool // negative capacity, out-of-range domains, nil maps
}

// scenario is a drawn Compute input plus what the test knows about it.
type scenario struct {
	in      Input
	fdCount int                 // effective platformFaultDomainCount
	imageOK bool                // the model's image resolves
	image   model.ResolvedImage // what it resolves to, when imageOK
}

var (
	genModes = []armcompute.UpgradeMode{"", armcompute.UpgradeModeManual, armcompute.UpgradeModeAutomatic, "automatic"}
	genRules = []armcompute.VirtualMachineScaleSetScaleInRules{
		"", armcompute.VirtualMachineScaleSetScaleInRulesDefault,
		armcompute.VirtualMachineScaleSetScaleInRulesOldestVM, armcompute.VirtualMachineScaleSetScaleInRulesNewestVM,
		"newestvm",
	}
	genStates   = []string{model.StateSucceeded, model.StateSucceeded, model.StateCreating, model.StateUpdating, model.StateFailed}
	genPowers   = []string{model.PowerRunning, model.PowerRunning, model.PowerStopped, model.PowerDeallocated}
	genObserved = []string{"absent", "desired", "desired", "desired",
		string(driver.PowerRunning), string(driver.PowerStopped), string(driver.PowerDeallocated),
		string(driver.PowerStarting), string(driver.PowerStopping), string(driver.PowerUnknown)}
)

// oneIn draws true with probability 1/n.
func oneIn(t *rapid.T, n int, label string) bool { return rapid.IntRange(1, n).Draw(t, label) == 1 }

func drawScenario(t *rapid.T, o genOpts) scenario {
	fdRaw := rapid.IntRange(0, 5).Draw(t, "platformFaultDomainCount") // 0: absent
	fdCount := fdRaw
	if fdCount == 0 {
		fdCount = model.DefaultFaultDomainCount
	}
	minCap := int64(0)
	if o.oddInputs {
		minCap = -2
	}
	spec := setSpec{
		Capacity:     rapid.Int64Range(minCap, 16).Draw(t, "capacity"),
		Mode:         rapid.SampledFrom(genModes).Draw(t, "mode"),
		FDCount:      int32(fdRaw),
		Rule:         rapid.SampledFrom(genRules).Draw(t, "rule"),
		Prefix:       rapid.SampledFrom([]string{"", "web", "app-"}).Draw(t, "prefix"),
		ModelVersion: rapid.Int64Range(1, 3).Draw(t, "modelVersion"),
	}
	sc := scenario{fdCount: fdCount, imageOK: true}
	images := defaultCatalog()
	cases := []string{"latest", "latest-newer", "pinned"}
	if o.imageErrors {
		cases = append(cases, "pinned-missing", "sku-missing")
	}
	switch rapid.SampledFrom(cases).Draw(t, "image") {
	case "latest":
		sc.image = resolved("latest", "1.10.0")
	case "latest-newer":
		images = append(images, image(imgSKU, "2.0.0"))
		sc.image = resolved("latest", "2.0.0")
	case "pinned":
		spec.Version = "1.9.0"
		sc.image = resolved("1.9.0", "1.9.0")
	case "pinned-missing":
		spec.Version = "1.0.1"
		sc.imageOK = false
	case "sku-missing":
		images = []model.ImageVersion{image("other", "1.0.0")}
		sc.imageOK = false
	}
	if o.setDeleting {
		spec.Deleting = oneIn(t, 4, "setDeleting")
	}
	set := mockScaleSet(spec)

	n := rapid.IntRange(0, 14).Draw(t, "instances")
	idList := rapid.SliceOfNDistinct(rapid.Int64Range(0, 200), n, n, rapid.ID[int64]).Draw(t, "ids")
	next := int64(0)
	for _, id := range idList {
		next = max(next, id+1)
	}
	next += rapid.Int64Range(0, 50).Draw(t, "idGap")

	var insts []*model.Instance
	obs := map[string]driver.Status{}
	for _, id := range idList {
		inst := &model.Instance{
			Sub: set.Sub, RG: set.RG, ScaleSet: set.Name,
			ID: id, VMID: fmt.Sprintf("vm-%d", id), ComputerName: ComputerName("web", id),
			FaultDomain:       rapid.IntRange(0, fdCount-1).Draw(t, "fd"),
			UpdateDomain:      rapid.IntRange(0, model.UpdateDomainCount-1).Draw(t, "ud"),
			Created:           t0.Add(time.Duration(rapid.Int64Range(0, 6).Draw(t, "createdMin")) * time.Minute),
			ModelVersion:      rapid.Int64Range(1, spec.ModelVersion).Draw(t, "instModel"),
			Image:             resolved("latest", "1.0.0"),
			ProvisioningState: rapid.SampledFrom(genStates).Draw(t, "state"),
			Placed:            !oneIn(t, 5, "notPlaced"),
			Power:             rapid.SampledFrom(genPowers).Draw(t, "power"),
			TargetModel:       rapid.Int64Range(0, spec.ModelVersion).Draw(t, "targetModel"),
			ProtectScaleIn:    oneIn(t, 4, "protectScaleIn"),
			ProtectActions:    oneIn(t, 4, "protectActions"),
			Deleting:          oneIn(t, 6, "deleting"),
		}
		inst.ReimageSeq = rapid.Int64Range(0, 2).Draw(t, "reimageSeq")
		inst.AppliedReimage = rapid.Int64Range(0, inst.ReimageSeq).Draw(t, "appliedReimage")
		inst.RestartSeq = rapid.Int64Range(0, 2).Draw(t, "restartSeq")
		inst.AppliedRestart = rapid.Int64Range(0, inst.RestartSeq).Draw(t, "appliedRestart")
		if o.oddInputs && oneIn(t, 5, "oddDomain") {
			inst.FaultDomain = rapid.SampledFrom([]int{-1, fdCount, 99}).Draw(t, "oddFD")
			inst.UpdateDomain = rapid.SampledFrom([]int{-1, model.UpdateDomainCount}).Draw(t, "oddUD")
		}
		switch seen := rapid.SampledFrom(genObserved).Draw(t, "observed"); seen {
		case "absent":
		case "desired":
			obs[inst.VMID] = driver.Status{ID: inst.VMID, Power: observedPower(inst.Power)}
		default:
			obs[inst.VMID] = driver.Status{ID: inst.VMID, Power: driver.Power(seen)}
		}
		insts = append(insts, inst)
	}
	if o.oddInputs && len(obs) == 0 && oneIn(t, 2, "nilObserved") {
		obs = nil
	}
	hosts := make([]Host, 0, fdCount)
	for fd := range fdCount {
		hosts = append(hosts, Host{Name: fmt.Sprintf("host%d", fd), FaultDomain: fd})
	}
	newID, _ := seqVMIDs("new-")
	sc.in = Input{
		Set:       set,
		Status:    model.ScaleSetStatus{NextInstanceID: next},
		Instances: insts,
		Observed:  obs,
		Hosts:     hosts,
		Images:    images,
		Now:       tNow,
		NewVMID:   newID,
	}
	return sc
}

// upgradeEligible is the upgrade rule of U3/U4.
func upgradeEligible(set *model.ScaleSet, inst *model.Instance) bool {
	if inst.ModelVersion >= set.ModelVersion {
		return false
	}
	if inst.TargetModel >= set.ModelVersion {
		return true
	}
	return strings.EqualFold(set.UpgradeMode(), string(armcompute.UpgradeModeAutomatic)) && !inst.ProtectActions
}

// spread is max-min of a histogram.
func spread(h []int) int {
	if len(h) == 0 {
		return 0
	}
	return slices.Max(h) - slices.Min(h)
}

// histograms counts in-range fault and update domains.
func histograms(insts []*model.Instance, fdCount int) (fd, ud []int) {
	fd, ud = make([]int, fdCount), make([]int, model.UpdateDomainCount)
	for _, inst := range insts {
		if inst.FaultDomain >= 0 && inst.FaultDomain < fdCount {
			fd[inst.FaultDomain]++
		}
		if inst.UpdateDomain >= 0 && inst.UpdateDomain < model.UpdateDomainCount {
			ud[inst.UpdateDomain]++
		}
	}
	return fd, ud
}

// checkPlan checks the invariants every plan must hold.
func checkPlan(t tb, sc scenario, p *Plan) {
	t.Helper()
	in, set := sc.in, sc.in.Set

	if set.Deleting {
		var want []Action
		for _, inst := range in.Instances {
			want = append(want, Action{Kind: ActRemove, InstanceID: inst.ID})
		}
		if diff := cmp.Diff(want, p.Actions, ignoreReason); diff != "" {
			t.Fatalf("deleting set: actions (-want +got):\n%s", diff)
		}
		if len(p.Create) != 0 || len(p.Retire) != 0 || p.Err != nil || p.Finalize != (len(in.Instances) == 0) {
			t.Fatalf("deleting set: create %d retire %v err %v finalize %v", len(p.Create), p.Retire, p.Err, p.Finalize)
		}
		return
	}
	if p.Finalize {
		t.Fatalf("Finalize on a live scale set")
	}

	byID := map[int64]*model.Instance{}
	var active []*model.Instance
	protected := 0
	for _, inst := range in.Instances {
		byID[inst.ID] = inst
		if !inst.Deleting {
			active = append(active, inst)
			if inst.ProtectScaleIn {
				protected++
			}
		}
	}

	// V3: an error plan creates nothing; errors only come from images.
	if p.Err != nil {
		if sc.imageOK {
			t.Fatalf("Err %v with a resolvable image", p.Err)
		}
		if len(p.Create) != 0 {
			t.Fatalf("V3 ImageNotFound plan has %d creates", len(p.Create))
		}
		if p.Err.Code != "ImageNotFound" {
			t.Fatalf("Err code %q, want ImageNotFound", p.Err.Code)
		}
	}
	if len(p.Create) > 0 && len(p.Retire) > 0 {
		t.Fatalf("plan both creates %d and retires %v", len(p.Create), p.Retire)
	}

	// S1: new records.
	if want := in.Status.NextInstanceID + int64(len(p.Create)); p.NextInstanceID != want {
		t.Fatalf("NextInstanceID %d, want %d (= %d + %d creates)", p.NextInstanceID, want, in.Status.NextInstanceID, len(p.Create))
	}
	vmids := map[string]bool{}
	for _, inst := range in.Instances {
		vmids[inst.VMID] = true
	}
	for i, c := range p.Create {
		if want := in.Status.NextInstanceID + int64(i); c.ID != want {
			t.Fatalf("create[%d].ID = %d, want %d", i, c.ID, want)
		}
		if byID[c.ID] != nil {
			t.Fatalf("create id %d collides with an existing record", c.ID)
		}
		if c.VMID == "" || vmids[c.VMID] {
			t.Fatalf("create %d: VMID %q empty or not unique", c.ID, c.VMID)
		}
		vmids[c.VMID] = true
		if c.FaultDomain < 0 || c.FaultDomain >= sc.fdCount || c.UpdateDomain < 0 || c.UpdateDomain >= model.UpdateDomainCount {
			t.Fatalf("create %d: FD %d UD %d out of [0,%d)x[0,%d)", c.ID, c.FaultDomain, c.UpdateDomain, sc.fdCount, model.UpdateDomainCount)
		}
		if c.ComputerName != ComputerName(set.ComputerNamePrefix(), c.ID) {
			t.Fatalf("create %d: name %q", c.ID, c.ComputerName)
		}
		if c.Power != model.PowerRunning || c.ModelVersion != set.ModelVersion || c.Image != sc.image ||
			c.ProvisioningState != model.StateCreating || c.Placed || !c.Created.Equal(in.Now) ||
			c.ScaleSet != set.Name || c.Size != set.Size() || c.ProtectScaleIn || c.Deleting {
			t.Fatalf("create %d: bad record %+v", c.ID, c)
		}
	}

	// Scale-in: victims are unique, sorted, active and never protected.
	retired := map[int64]bool{}
	for i, id := range p.Retire {
		inst := byID[id]
		switch {
		case inst == nil:
			t.Fatalf("retired id %d is not an instance", id)
		case inst.Deleting:
			t.Fatalf("retired id %d is already deleting", id)
		case inst.ProtectScaleIn:
			t.Fatalf("retired id %d is protected from scale-in", id)
		case retired[id]:
			t.Fatalf("retired id %d twice", id)
		case i > 0 && p.Retire[i-1] > id:
			t.Fatalf("Retire not sorted: %v", p.Retire)
		}
		retired[id] = true
	}

	// Capacity.
	want, n := set.Capacity(), int64(len(active))
	after := n + int64(len(p.Create)) - int64(len(p.Retire))
	switch {
	case n < want && !sc.imageOK:
		if after != n || p.Err == nil {
			t.Fatalf("V3 blocked scale-out: active %d -> %d, err %v", n, after, p.Err)
		}
	case n > want:
		if exp := max(want, int64(protected)); after != exp {
			t.Fatalf("scale-in: active %d -> %d, want %d (capacity %d, %d protected)", n, after, exp, want, protected)
		}
	default:
		if after != want {
			t.Fatalf("active %d -> %d, want capacity %d", n, after, want)
		}
	}

	// Scale-in rules.
	var cands []*model.Instance
	for _, inst := range active {
		if !inst.ProtectScaleIn {
			cands = append(cands, inst)
		}
	}
	older := func(a, b *model.Instance) bool {
		if !a.Created.Equal(b.Created) {
			return a.Created.Before(b.Created)
		}
		return a.ID < b.ID
	}
	switch rule := set.ScaleInRule(); rule {
	case "OldestVM", "NewestVM", "newestvm":
		for _, v := range cands {
			for _, k := range cands {
				if !retired[v.ID] || retired[k.ID] {
					continue
				}
				if rule == "OldestVM" && older(k, v) || rule != "OldestVM" && older(v, k) {
					t.Fatalf("%s retired %d (created %v) but kept %d (created %v)", rule, v.ID, v.Created, k.ID, k.Created)
				}
			}
		}
	}

	// Balance (S1): scale-out from a balanced set keeps it balanced; Default
	// scale-in keeps fault domains balanced when nothing is protected.
	var kept []*model.Instance
	for _, inst := range active {
		if !retired[inst.ID] {
			kept = append(kept, inst)
		}
	}
	fd0, ud0 := histograms(active, sc.fdCount)
	fd1, ud1 := histograms(append(kept, p.Create...), sc.fdCount)
	if len(p.Create) > 0 {
		if spread(fd0) <= 1 && spread(fd1) > 1 {
			t.Fatalf("scale-out unbalanced fault domains: %v -> %v", fd0, fd1)
		}
		if spread(ud0) <= 1 && spread(ud1) > 1 {
			t.Fatalf("scale-out unbalanced update domains: %v -> %v", ud0, ud1)
		}
		if spread(fd1) > spread(fd0) && spread(fd1) > 1 {
			t.Fatalf("scale-out worsened fault domain balance: %v -> %v", fd0, fd1)
		}
	}
	if len(p.Retire) > 0 && protected == 0 && len(fd0) > 0 {
		switch set.ScaleInRule() {
		case "Default", "":
			if spread(fd0) <= 1 && spread(fd1) > 1 {
				t.Fatalf("Default scale-in unbalanced fault domains: %v -> %v", fd0, fd1)
			}
		}
	}

	// Actions: one per instance, never on a retired one; removals exactly for
	// deleting records; upgrades exactly for eligible instances (U3, U4).
	acted := map[int64]ActionKind{}
	for _, a := range p.Actions {
		inst := byID[a.InstanceID]
		if inst == nil {
			t.Fatalf("action %s on unknown instance %d", a.Kind, a.InstanceID)
		}
		if k, dup := acted[a.InstanceID]; dup {
			t.Fatalf("instance %d has two actions: %s and %s", a.InstanceID, k, a.Kind)
		}
		acted[a.InstanceID] = a.Kind
		if retired[a.InstanceID] {
			t.Fatalf("retired instance %d has action %s", a.InstanceID, a.Kind)
		}
		if (a.Kind == ActRemove) != inst.Deleting {
			t.Fatalf("instance %d (deleting=%v) has action %s", a.InstanceID, inst.Deleting, a.Kind)
		}
		if a.Kind == ActUpgrade && (a.ModelVersion != set.ModelVersion || a.Image != sc.image) {
			t.Fatalf("upgrade of %d carries model %d image %+v, want %d %+v", a.InstanceID, a.ModelVersion, a.Image, set.ModelVersion, sc.image)
		}
	}
	for _, inst := range kept {
		eligible := upgradeEligible(set, inst)
		if got := acted[inst.ID] == ActUpgrade; got != (eligible && sc.imageOK) {
			t.Fatalf("instance %d (model %d target %d protectActions %v, set model %d mode %q): upgrade planned %v, eligible %v, image ok %v",
				inst.ID, inst.ModelVersion, inst.TargetModel, inst.ProtectActions, set.ModelVersion, set.UpgradeMode(), got, eligible, sc.imageOK)
		}
		if eligible && !sc.imageOK && p.Err == nil {
			t.Fatalf("instance %d needs an upgrade whose image is missing, but no Err", inst.ID)
		}
		if inst.ProvisioningState == model.StateFailed && inst.ReimageSeq <= inst.AppliedReimage && inst.RestartSeq <= inst.AppliedRestart && !eligible {
			if k, ok := acted[inst.ID]; ok {
				t.Fatalf("failed instance %d got %s", inst.ID, k)
			}
		}
	}
}

// snapshot deep-copies what Compute may not modify.
func snapshot(in Input) ([]model.Instance, map[string]driver.Status, []model.ImageVersion, model.ScaleSet) {
	insts := make([]model.Instance, len(in.Instances))
	for i, p := range in.Instances {
		insts[i] = *p
	}
	var obs map[string]driver.Status
	if in.Observed != nil {
		obs = map[string]driver.Status{}
		for k, v := range in.Observed {
			obs[k] = v
		}
	}
	return insts, obs, slices.Clone(in.Images), *in.Set
}

// TestPropComputeInvariants: capacity (S1), identity, domains, protection,
// upgrades (U3, U4) and ImageNotFound (V3) over random scale sets; Compute
// never panics, does not modify its input and is deterministic.
func TestPropComputeInvariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		o := genOpts{imageErrors: true, setDeleting: true, oddInputs: rapid.Bool().Draw(t, "odd")}
		sc := drawScenario(t, o)
		insts0, obs0, imgs0, set0 := snapshot(sc.in)

		in1 := sc.in
		in1.NewVMID, _ = seqVMIDs("new-")
		p1 := Compute(in1)
		if !o.oddInputs {
			checkPlan(t, sc, p1)
		}

		in2 := sc.in
		in2.NewVMID, _ = seqVMIDs("new-")
		p2 := Compute(in2)
		if diff := cmp.Diff(p1, p2); diff != "" {
			t.Fatalf("Compute is not deterministic (-first +second):\n%s", diff)
		}

		insts1, obs1, imgs1, set1 := snapshot(sc.in)
		if diff := cmp.Diff(insts0, insts1); diff != "" {
			t.Fatalf("Compute modified its instances:\n%s", diff)
		}
		if !cmp.Equal(obs0, obs1) || !cmp.Equal(imgs0, imgs1) || !cmp.Equal(set0, set1) {
			t.Fatalf("Compute modified its input")
		}
	})
}

// TestPropScaleOutFromEmptyIsBalanced (S1): from no active instance, new
// instances spread over fault and update domains with max-min <= 1.
func TestPropScaleOutFromEmptyIsBalanced(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		fdCount := rapid.IntRange(1, 5).Draw(t, "platformFaultDomainCount")
		capacity := rapid.Int64Range(0, 40).Draw(t, "capacity")
		set := mockScaleSet(setSpec{Capacity: capacity, FDCount: int32(fdCount), Prefix: "w"})
		// Deleting leftovers must not skew the placement.
		var insts []*model.Instance
		for id := range rapid.Int64Range(0, 4).Draw(t, "deleting") {
			insts = append(insts, vm(id, at(rapid.IntRange(0, fdCount-1).Draw(t, "fd"), 0), deleting))
		}
		in := newInput(set, insts...)
		in.Status.NextInstanceID += rapid.Int64Range(0, 5000).Draw(t, "idGap")
		p := Compute(in)
		if int64(len(p.Create)) != capacity {
			t.Fatalf("created %d, want %d", len(p.Create), capacity)
		}
		fd, ud := histograms(p.Create, fdCount)
		if spread(fd) > 1 || spread(ud) > 1 {
			t.Fatalf("unbalanced: fault domains %v, update domains %v", fd, ud)
		}
	})
}

// apply writes a plan's scale intent the simple way: creates become placed,
// running and observed; retired instances are dropped.
func apply(in Input, p *Plan) Input {
	out := in
	retired := map[int64]bool{}
	for _, id := range p.Retire {
		retired[id] = true
	}
	out.Instances = nil
	out.Observed = map[string]driver.Status{}
	for k, v := range in.Observed {
		out.Observed[k] = v
	}
	for _, inst := range in.Instances {
		if retired[inst.ID] {
			delete(out.Observed, inst.VMID)
			continue
		}
		out.Instances = append(out.Instances, inst)
	}
	for _, c := range p.Create {
		cp := *c
		cp.Placed = true
		out.Instances = append(out.Instances, &cp)
		out.Observed[cp.VMID] = driver.Status{ID: cp.VMID, Power: driver.PowerRunning}
	}
	out.Status.NextInstanceID = p.NextInstanceID
	return out
}

// TestPropFixpoint: once a plan's creates and retires are applied, the next
// plan neither creates nor retires; new instances at most settle.
func TestPropFixpoint(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, genOpts{})
		p1 := Compute(sc.in)
		checkPlan(t, sc, p1)
		in2 := apply(sc.in, p1)
		p2 := Compute(in2)
		if len(p2.Create) != 0 || len(p2.Retire) != 0 || p2.Err != nil {
			t.Fatalf("second plan not converged on capacity: %s (err %v); first was %s", p2.Summary(), p2.Err, p1.Summary())
		}
		if p2.NextInstanceID != p1.NextInstanceID {
			t.Fatalf("NextInstanceID moved: %d -> %d", p1.NextInstanceID, p2.NextInstanceID)
		}
		created := map[int64]bool{}
		for _, c := range p1.Create {
			created[c.ID] = true
		}
		for _, a := range p2.Actions {
			if created[a.InstanceID] && a.Kind != ActSettle {
				t.Fatalf("new instance %d gets %s after placement", a.InstanceID, a.Kind)
			}
		}
	})
}

// simulate applies a whole plan the way the controller does: creates are
// written unplaced, retired instances are marked deleting, and host actions
// change what the host observes.
func simulate(in Input, p *Plan) Input {
	out := in
	out.Observed = map[string]driver.Status{}
	for k, v := range in.Observed {
		out.Observed[k] = v
	}
	retired := map[int64]bool{}
	for _, id := range p.Retire {
		retired[id] = true
	}
	acts := map[int64]Action{}
	for _, a := range p.Actions {
		acts[a.InstanceID] = a
	}
	set := func(vmid string, pw driver.Power) { out.Observed[vmid] = driver.Status{ID: vmid, Power: pw} }
	out.Instances = nil
	for _, orig := range in.Instances {
		inst := *orig
		if retired[inst.ID] {
			inst.Deleting, inst.ProvisioningState = true, model.StateDeleting
		}
		if a, ok := acts[inst.ID]; ok {
			switch a.Kind {
			case ActRemove:
				delete(out.Observed, inst.VMID)
				continue
			case ActPlace:
				inst.Placed, inst.ProvisioningState = true, model.StateSucceeded
				inst.AppliedReimage, inst.AppliedRestart = inst.ReimageSeq, inst.RestartSeq
				set(inst.VMID, driver.PowerRunning)
			case ActUpgrade, ActReimage:
				if a.Kind == ActUpgrade {
					inst.Image, inst.ModelVersion = a.Image, a.ModelVersion
				}
				inst.Placed, inst.ProvisioningState = true, model.StateSucceeded
				inst.AppliedReimage = inst.ReimageSeq
				set(inst.VMID, driver.PowerRunning)
			case ActRestart:
				inst.AppliedRestart, inst.Power = inst.RestartSeq, model.PowerRunning
				set(inst.VMID, driver.PowerRunning)
			case ActStart:
				set(inst.VMID, driver.PowerRunning)
			case ActStop:
				set(inst.VMID, driver.PowerStopped)
			case ActDeallocate:
				set(inst.VMID, driver.PowerDeallocated)
			case ActSettle:
				inst.ProvisioningState = model.StateSucceeded
			}
		}
		out.Instances = append(out.Instances, &inst)
	}
	for _, c := range p.Create {
		cp := *c
		out.Instances = append(out.Instances, &cp)
	}
	out.Status.NextInstanceID = p.NextInstanceID
	return out
}

// TestPropConverges: replaying plans through a simulated controller reaches a
// converged plan within a few rounds, at capacity (or held up by protection),
// with every instance that is not Failed Succeeded and on the model it should
// run.
func TestPropConverges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		sc := drawScenario(t, genOpts{})
		in := sc.in
		var trail []string
		for round := 0; ; round++ {
			p := Compute(in)
			trail = append(trail, p.Summary())
			if p.Converged() {
				break
			}
			if round == 8 {
				t.Fatalf("not converged after %d rounds: %v", round, trail)
			}
			in = simulate(in, p)
		}
		protected := 0
		for _, inst := range sc.in.Instances {
			if inst.ProtectScaleIn && !inst.Deleting {
				protected++
			}
		}
		if want := max(sc.in.Set.Capacity(), int64(protected)); int64(len(in.Instances)) != want {
			t.Fatalf("converged with %d instances, want %d: %v", len(in.Instances), want, trail)
		}
		for _, inst := range in.Instances {
			if inst.Deleting {
				t.Fatalf("instance %d still deleting: %v", inst.ID, trail)
			}
			if upgradeEligible(in.Set, inst) {
				t.Fatalf("instance %d still needs an upgrade: %v", inst.ID, trail)
			}
			if inst.ProvisioningState != model.StateSucceeded && inst.ProvisioningState != model.StateFailed {
				t.Fatalf("instance %d converged in state %s: %v", inst.ID, inst.ProvisioningState, trail)
			}
		}
	})
}

// TestPropBalanceAcrossScaling (S1): a set grown and shrunk by capacity
// changes alone (Default rule, no protection) keeps its fault domains
// balanced, and scale-outs keep update domains balanced too.
func TestPropBalanceAcrossScaling(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		fdCount := rapid.IntRange(1, 5).Draw(t, "platformFaultDomainCount")
		set := mockScaleSet(setSpec{FDCount: int32(fdCount)})
		in := newInput(set)
		udBalanced := true
		for step := range rapid.IntRange(1, 6).Draw(t, "steps") {
			capacity := rapid.Int64Range(0, 20).Draw(t, "capacity")
			set.Model.SKU.Capacity = ptr(capacity)
			p := Compute(in)
			in = apply(in, p)
			if int64(len(in.Instances)) != capacity {
				t.Fatalf("step %d: %d instances, want %d", step, len(in.Instances), capacity)
			}
			fd, ud := histograms(in.Instances, fdCount)
			if spread(fd) > 1 {
				t.Fatalf("step %d (%s): fault domains %v", step, p.Summary(), fd)
			}
			if len(p.Create) > 0 && udBalanced && spread(ud) > 1 {
				t.Fatalf("step %d (%s): update domains %v", step, p.Summary(), ud)
			}
			udBalanced = spread(ud) <= 1
		}
	})
}
