package reconcile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
)

// ---------------------------------------------------------------------------
// Fixtures.

var (
	t0   = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	tNow = t0.Add(24 * time.Hour)
)

const (
	imgPub   = "vmssd"
	imgOffer = "demo"
	imgSKU   = "guest"
)

func ptr[T any](v T) *T { return &v }

// setSpec describes a scale set fixture. Zero fields are left out of the ARM
// model, so the model's defaults (Manual, 5 fault domains, Default rule, the
// lower-cased set name as prefix) apply.
type setSpec struct {
	Name         string // "Web" when empty
	Capacity     int64
	Mode         armcompute.UpgradeMode
	FDCount      int32
	Rule         armcompute.VirtualMachineScaleSetScaleInRules
	Prefix       string
	Version      string // imageReference.version, "latest" when empty
	ImageURI     string // osDisk.image.uri (custom image) when set
	ModelVersion int64  // 1 when zero
	Deleting     bool
}

// mockScaleSet builds a model.ScaleSet whose Model is an ARM
// VirtualMachineScaleSet as the API would store it.
func mockScaleSet(s setSpec) *model.ScaleSet {
	if s.Name == "" {
		s.Name = "Web"
	}
	if s.Version == "" {
		s.Version = "latest"
	}
	if s.ModelVersion == 0 {
		s.ModelVersion = 1
	}
	sp := &armcompute.VirtualMachineScaleSetStorageProfile{
		ImageReference: &armcompute.ImageReference{
			Publisher: ptr(imgPub), Offer: ptr(imgOffer), SKU: ptr(imgSKU), Version: ptr(s.Version),
		},
	}
	if s.ImageURI != "" {
		sp.ImageReference = nil
		sp.OSDisk = &armcompute.VirtualMachineScaleSetOSDisk{Image: &armcompute.VirtualHardDisk{URI: ptr(s.ImageURI)}}
	}
	props := &armcompute.VirtualMachineScaleSetProperties{
		VirtualMachineProfile: &armcompute.VirtualMachineScaleSetVMProfile{StorageProfile: sp},
	}
	if s.Mode != "" {
		props.UpgradePolicy = &armcompute.UpgradePolicy{Mode: ptr(s.Mode)}
	}
	if s.FDCount != 0 {
		props.PlatformFaultDomainCount = ptr(s.FDCount)
	}
	if s.Rule != "" {
		props.ScaleInPolicy = &armcompute.ScaleInPolicy{Rules: []*armcompute.VirtualMachineScaleSetScaleInRules{ptr(s.Rule)}}
	}
	if s.Prefix != "" {
		props.VirtualMachineProfile.OSProfile = &armcompute.VirtualMachineScaleSetOSProfile{ComputerNamePrefix: ptr(s.Prefix)}
	}
	return &model.ScaleSet{
		Sub: "sub1", RG: "rg1", Name: s.Name,
		Model: &armcompute.VirtualMachineScaleSet{
			Location:   ptr("local"),
			SKU:        &armcompute.SKU{Name: ptr("Standard_D2"), Capacity: ptr(s.Capacity)},
			Properties: props,
		},
		UniqueID:     "uid-1",
		Created:      t0,
		Generation:   1,
		ModelVersion: s.ModelVersion,
		Deleting:     s.Deleting,
	}
}

// image is a catalog entry of the default publisher and offer.
func image(sku, version string) model.ImageVersion {
	return model.ImageVersion{
		Publisher: imgPub, Offer: imgOffer, SKU: sku, Version: version,
		Location: "local", OSType: "Linux", Digest: "sha256:" + sku + "-" + version, Created: t0,
	}
}

// defaultCatalog is deliberately unsorted; 1.10.0 is the newest guest image.
func defaultCatalog() []model.ImageVersion {
	return []model.ImageVersion{
		image(imgSKU, "1.9.0"),
		image(imgSKU, "1.10.0"),
		image(imgSKU, "1.0.0"),
		image("other", "9.9.9"),
	}
}

// resolved is what a "latest" or pinned reference resolves to.
func resolved(asked, exact string) model.ResolvedImage {
	return model.ResolvedImage{
		Publisher: imgPub, Offer: imgOffer, SKU: imgSKU, Version: asked, ExactVersion: exact,
		Digest: "sha256:" + imgSKU + "-" + exact, OSType: "Linux",
	}
}

// vm builds a converged instance record: placed, Succeeded, desired running,
// on model version 1, in fault and update domain 0.
func vm(id int64, opts ...func(*model.Instance)) *model.Instance {
	inst := &model.Instance{
		Sub: "sub1", RG: "rg1", ScaleSet: "Web",
		ID: id, VMID: fmt.Sprintf("vm-%d", id), ComputerName: ComputerName("web", id),
		Host: "host0", Created: t0.Add(time.Duration(id) * time.Minute),
		ModelVersion: 1, Image: resolved("latest", "1.0.0"), Size: "Standard_D2",
		ProvisioningState: model.StateSucceeded, Placed: true, Power: model.PowerRunning,
	}
	for _, o := range opts {
		o(inst)
	}
	return inst
}

func at(fd, ud int) func(*model.Instance) {
	return func(i *model.Instance) { i.FaultDomain, i.UpdateDomain = fd, ud }
}
func created(d time.Duration) func(*model.Instance) {
	return func(i *model.Instance) { i.Created = t0.Add(d) }
}
func power(p string) func(*model.Instance) { return func(i *model.Instance) { i.Power = p } }
func state(s string) func(*model.Instance) {
	return func(i *model.Instance) { i.ProvisioningState = s }
}
func onModel(v int64) func(*model.Instance) { return func(i *model.Instance) { i.ModelVersion = v } }
func target(v int64) func(*model.Instance)  { return func(i *model.Instance) { i.TargetModel = v } }
func reimage(seq, applied int64) func(*model.Instance) {
	return func(i *model.Instance) { i.ReimageSeq, i.AppliedReimage = seq, applied }
}
func restart(seq, applied int64) func(*model.Instance) {
	return func(i *model.Instance) { i.RestartSeq, i.AppliedRestart = seq, applied }
}

var (
	protectScaleIn = func(i *model.Instance) { i.ProtectScaleIn = true }
	protectActions = func(i *model.Instance) { i.ProtectActions = true }
	deleting       = func(i *model.Instance) { i.Deleting = true; i.ProvisioningState = model.StateDeleting }
	notPlaced      = func(i *model.Instance) { i.Placed = false; i.ProvisioningState = model.StateCreating }
)

// observedPower is what a host reports for an instance in its desired state.
func observedPower(desired string) driver.Power {
	switch desired {
	case model.PowerStopped:
		return driver.PowerStopped
	case model.PowerDeallocated:
		return driver.PowerDeallocated
	}
	return driver.PowerRunning
}

// seqVMIDs returns a deterministic NewVMID and a counter of its calls.
func seqVMIDs(prefix string) (func() string, *int) {
	n := new(int)
	return func() string {
		*n++
		return fmt.Sprintf("%s%d", prefix, *n)
	}, n
}

// newInput builds an Input in which every placed instance is observed in its
// desired power state and Status.NextInstanceID follows the highest id.
func newInput(set *model.ScaleSet, insts ...*model.Instance) Input {
	next := int64(0)
	obs := map[string]driver.Status{}
	for _, inst := range insts {
		next = max(next, inst.ID+1)
		if inst.Placed {
			obs[inst.VMID] = driver.Status{ID: inst.VMID, Power: observedPower(inst.Power)}
		}
	}
	newID, _ := seqVMIDs("new-")
	return Input{
		Set:       set,
		Status:    model.ScaleSetStatus{NextInstanceID: next, ProvisioningState: model.StateSucceeded},
		Instances: insts,
		Observed:  obs,
		Hosts:     []Host{{"host0", 0}, {"host1", 1}, {"host2", 2}},
		Images:    defaultCatalog(),
		Now:       tNow,
		NewVMID:   newID,
	}
}

func observe(in Input, id int64, p driver.Power) Input {
	vmid := fmt.Sprintf("vm-%d", id)
	in.Observed[vmid] = driver.Status{ID: vmid, Power: p}
	return in
}

func unobserve(in Input, id int64) Input {
	delete(in.Observed, fmt.Sprintf("vm-%d", id))
	return in
}

var ignoreReason = cmpopts.IgnoreFields(Action{}, "Reason")

func ids(insts []*model.Instance) []int64 {
	out := make([]int64, len(insts))
	for i, inst := range insts {
		out[i] = inst.ID
	}
	return out
}

// ---------------------------------------------------------------------------
// Names.

func TestComputerName(t *testing.T) {
	cases := []struct {
		prefix string
		id     int64
		want   string
	}{
		{"web", 0, "web000000"},
		{"web", 9, "web000009"},
		{"", 10, "00000A"},   // example from the design notes
		{"", 1146, "0000VU"}, // example from vmssvmname.py
		{"myvmss", 35, "myvmss00000Z"},
		{"myvmss", 36, "myvmss000010"},
		{"x", 36*36*36*36*36*36 - 1, "xZZZZZZ"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s_%d", c.prefix, c.id), func(t *testing.T) {
			if got := ComputerName(c.prefix, c.id); got != c.want {
				t.Errorf("ComputerName(%q, %d) = %q, want %q", c.prefix, c.id, got, c.want)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Scale-out.

// TestComputeScaleOutRecords checks every field of the records a scale-out
// creates.
func TestComputeScaleOutRecords(t *testing.T) {
	set := mockScaleSet(setSpec{Capacity: 3, Prefix: "web", FDCount: 2, ModelVersion: 4})
	in := newInput(set)
	in.Status.NextInstanceID = 10
	p := Compute(in)

	mk := func(id int64, vmid, name string, fd, ud int, host string) *model.Instance {
		return &model.Instance{
			Sub: "sub1", RG: "rg1", ScaleSet: "Web",
			ID: id, VMID: vmid, ComputerName: name, FaultDomain: fd, UpdateDomain: ud,
			Host: host, Created: tNow, ModelVersion: 4, Image: resolved("latest", "1.10.0"),
			Size: "Standard_D2", ProvisioningState: model.StateCreating, Power: model.PowerRunning,
		}
	}
	want := []*model.Instance{
		mk(10, "new-1", "web00000A", 0, 0, "host0"),
		mk(11, "new-2", "web00000B", 1, 1, "host1"),
		mk(12, "new-3", "web00000C", 0, 2, "host0"),
	}
	if diff := cmp.Diff(want, p.Create); diff != "" {
		t.Errorf("S1 Create mismatch (-want +got):\n%s", diff)
	}
	if p.NextInstanceID != 13 {
		t.Errorf("NextInstanceID = %d, want 13", p.NextInstanceID)
	}
	if p.Err != nil || len(p.Retire) != 0 || len(p.Actions) != 0 {
		t.Errorf("unexpected err/retire/actions: %v %v %v", p.Err, p.Retire, p.Actions)
	}
}

func TestComputeScaleOut(t *testing.T) {
	type placed struct {
		ID     int64
		Name   string
		FD, UD int
	}
	cases := []struct {
		name     string
		spec     setSpec
		existing []*model.Instance
		next     int64 // Status.NextInstanceID; -1 keeps newInput's
		want     []placed
	}{
		{
			name: "S1 no VM ahead of time: capacity 0 creates nothing",
			spec: setSpec{Capacity: 0},
			next: -1,
		},
		{
			name: "S1 capacity creates ids from NextInstanceID (names 00000A, 00000B)",
			spec: setSpec{Capacity: 2, Prefix: "vm"},
			next: 10,
			want: []placed{{10, "vm00000A", 0, 0}, {11, "vm00000B", 1, 1}},
		},
		{
			name: "S1 id 1146 is named 0000VU",
			spec: setSpec{Capacity: 1, Prefix: "web"},
			next: 1146,
			want: []placed{{1146, "web0000VU", 0, 0}},
		},
		{
			name: "S1 prefix defaults to the lower-cased set name",
			spec: setSpec{Name: "MySet", Capacity: 1},
			next: 0,
			want: []placed{{0, "myset000000", 0, 0}},
		},
		{
			name: "S1 default 5 fault domains, 5 update domains, balanced",
			spec: setSpec{Capacity: 7, Prefix: "w"},
			next: 0,
			want: []placed{
				{0, "w000000", 0, 0}, {1, "w000001", 1, 1}, {2, "w000002", 2, 2}, {3, "w000003", 3, 3},
				{4, "w000004", 4, 4}, {5, "w000005", 0, 0}, {6, "w000006", 1, 1},
			},
		},
		{
			name: "S1 platformFaultDomainCount 1 puts everything in FD 0, UDs still spread",
			spec: setSpec{Capacity: 6, FDCount: 1, Prefix: "w"},
			next: 0,
			want: []placed{
				{0, "w000000", 0, 0}, {1, "w000001", 0, 1}, {2, "w000002", 0, 2},
				{3, "w000003", 0, 3}, {4, "w000004", 0, 4}, {5, "w000005", 0, 0},
			},
		},
		{
			name: "S1 new instances fill the emptiest domains of a balanced set",
			spec: setSpec{Capacity: 5, FDCount: 3, Prefix: "w"},
			existing: []*model.Instance{
				vm(0, at(0, 0)), vm(1, at(1, 1)), vm(2, at(2, 2)), vm(3, at(0, 3)),
			},
			next: -1,
			want: []placed{{4, "w000004", 1, 4}},
		},
		{
			name: "S1 new instances fill the holes of an unbalanced set",
			spec: setSpec{Capacity: 5, FDCount: 3, Prefix: "w"},
			existing: []*model.Instance{
				vm(0, at(0, 0)), vm(1, at(0, 0)), vm(2, at(0, 0)),
			},
			next: -1,
			want: []placed{{3, "w000003", 1, 1}, {4, "w000004", 2, 2}},
		},
		{
			name: "S1 deleting instances are not capacity and are removed",
			spec: setSpec{Capacity: 2, FDCount: 2, Prefix: "w"},
			existing: []*model.Instance{
				vm(0, at(0, 0)), vm(1, at(1, 1), deleting),
			},
			next: -1,
			want: []placed{{2, "w000002", 1, 1}},
		},
		{
			name: "S1 protected and failed instances count as capacity",
			spec: setSpec{Capacity: 3, FDCount: 3, Prefix: "w"},
			existing: []*model.Instance{
				vm(0, at(0, 0), protectScaleIn), vm(1, at(1, 1), state(model.StateFailed)),
			},
			next: 5,
			want: []placed{{5, "w000005", 2, 2}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := newInput(mockScaleSet(c.spec), c.existing...)
			if c.next >= 0 {
				in.Status.NextInstanceID = c.next
			}
			start := in.Status.NextInstanceID
			p := Compute(in)
			var got []placed
			for _, inst := range p.Create {
				got = append(got, placed{inst.ID, inst.ComputerName, inst.FaultDomain, inst.UpdateDomain})
				if inst.Power != model.PowerRunning || inst.ModelVersion != in.Set.ModelVersion {
					t.Errorf("instance %d: power %q model %d, want running model %d", inst.ID, inst.Power, inst.ModelVersion, in.Set.ModelVersion)
				}
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("Create mismatch (-want +got):\n%s", diff)
			}
			if want := start + int64(len(c.want)); p.NextInstanceID != want {
				t.Errorf("NextInstanceID = %d, want %d", p.NextInstanceID, want)
			}
			if len(p.Retire) != 0 || p.Err != nil {
				t.Errorf("unexpected retire %v err %v", p.Retire, p.Err)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Images (V1, V3).

func TestComputeImageResolution(t *testing.T) {
	cases := []struct {
		name    string
		spec    setSpec
		catalog []model.ImageVersion
		custom  map[string]CustomImage
		want    model.ResolvedImage
		wantErr *errs.Error // Kind, Code, Target compared; Message checked by wantMsg
		wantMsg string
	}{
		{
			name:    "V1 latest uses the newest version at that moment (numeric order)",
			spec:    setSpec{Capacity: 1},
			catalog: defaultCatalog(),
			want:    resolved("latest", "1.10.0"),
		},
		{
			name:    "V1 latest is case-insensitive",
			spec:    setSpec{Capacity: 1, Version: "Latest"},
			catalog: defaultCatalog(),
			want:    resolved("Latest", "1.10.0"),
		},
		{
			name:    "V1 a newer download is used by the next scale-out",
			spec:    setSpec{Capacity: 1},
			catalog: append(defaultCatalog(), image(imgSKU, "2.0.0")),
			want:    resolved("latest", "2.0.0"),
		},
		{
			name:    "V3 pinned version that exists is used exactly",
			spec:    setSpec{Capacity: 1, Version: "1.9.0"},
			catalog: defaultCatalog(),
			want:    resolved("1.9.0", "1.9.0"),
		},
		{
			name:    "V3 pinned version replaced by a newer download cannot scale out",
			spec:    setSpec{Capacity: 2, Version: "1.0.0"},
			catalog: []model.ImageVersion{image(imgSKU, "1.1.0")},
			wantErr: &errs.Error{Kind: errs.NotFound, Code: "ImageNotFound", Target: "imageReference"},
			wantMsg: "vmssd:demo:guest:1.0.0",
		},
		{
			name:    "V1 latest with no image of that sku fails clearly",
			spec:    setSpec{Capacity: 1},
			catalog: []model.ImageVersion{image("other", "1.0.0")},
			wantErr: &errs.Error{Kind: errs.NotFound, Code: "ImageNotFound", Target: "imageReference"},
			wantMsg: "vmssd:demo:guest:latest",
		},
		{
			name: "custom image URI resolved at the edge",
			spec: setSpec{Capacity: 1, ImageURI: "https://blobs/os.vhd"},
			custom: map[string]CustomImage{"https://blobs/os.vhd": {
				Image: model.ResolvedImage{URI: "https://blobs/os.vhd", Digest: "sha256:custom", OSType: "Linux"},
			}},
			want: model.ResolvedImage{URI: "https://blobs/os.vhd", Digest: "sha256:custom", OSType: "Linux"},
		},
		{
			name:    "custom image URI not resolved is ImageNotFound on osDisk.image.uri",
			spec:    setSpec{Capacity: 1, ImageURI: "https://blobs/missing.vhd"},
			custom:  map[string]CustomImage{},
			wantErr: &errs.Error{Kind: errs.NotFound, Code: "ImageNotFound", Target: "osDisk.image.uri"},
			wantMsg: "https://blobs/missing.vhd",
		},
		{
			name: "custom image resolution error is reported as is",
			spec: setSpec{Capacity: 1, ImageURI: "https://blobs/bad.vhd"},
			custom: map[string]CustomImage{"https://blobs/bad.vhd": {
				Err: errs.New(errs.Invalid, "InvalidImage", "bad header").WithTarget("osDisk.image.uri"),
			}},
			wantErr: &errs.Error{Kind: errs.Invalid, Code: "InvalidImage", Target: "osDisk.image.uri"},
			wantMsg: "bad header",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := newInput(mockScaleSet(c.spec), vm(0, at(0, 0)))
			in.Set.Model.SKU.Capacity = ptr(c.spec.Capacity + 1)
			in.Images, in.Custom = c.catalog, c.custom
			newID, calls := seqVMIDs("new-")
			in.NewVMID = newID
			p := Compute(in)
			if c.wantErr != nil {
				if p.Err == nil {
					t.Fatalf("Err = nil, want %s", c.wantErr.Code)
				}
				got := &errs.Error{Kind: p.Err.Kind, Code: p.Err.Code, Target: p.Err.Target}
				if diff := cmp.Diff(c.wantErr, got); diff != "" {
					t.Errorf("Err mismatch (-want +got):\n%s", diff)
				}
				if !strings.Contains(p.Err.Message, c.wantMsg) {
					t.Errorf("Err message %q does not name %q", p.Err.Message, c.wantMsg)
				}
				if len(p.Create) != 0 || *calls != 0 || p.NextInstanceID != in.Status.NextInstanceID {
					t.Errorf("V3 failed scale-out must create nothing: create=%d vmids=%d next=%d",
						len(p.Create), *calls, p.NextInstanceID)
				}
				return
			}
			if p.Err != nil {
				t.Fatalf("Err = %v", p.Err)
			}
			if len(p.Create) != int(c.spec.Capacity) {
				t.Fatalf("created %d, want %d", len(p.Create), c.spec.Capacity)
			}
			for _, inst := range p.Create {
				if diff := cmp.Diff(c.want, inst.Image); diff != "" {
					t.Errorf("instance %d image (-want +got):\n%s", inst.ID, diff)
				}
			}
		})
	}
}

// TestComputeLatestFollowsCatalog replays V1: the same model scales out twice,
// with a newer image downloaded in between; then the user retires the oldest
// instance (OldestVM) to finish the move.
func TestComputeLatestFollowsCatalog(t *testing.T) {
	set := mockScaleSet(setSpec{Capacity: 1, Rule: armcompute.VirtualMachineScaleSetScaleInRulesOldestVM})
	in := newInput(set)
	in.Images = []model.ImageVersion{image(imgSKU, "1.0.0")}
	p := Compute(in)
	if len(p.Create) != 1 || p.Create[0].Image.ExactVersion != "1.0.0" {
		t.Fatalf("first scale-out: %+v", p.Create)
	}
	first := p.Create[0]
	first.Placed, first.ProvisioningState = true, model.StateSucceeded
	first.Created = t0

	set.Model.SKU.Capacity = ptr(int64(2))
	in = newInput(set, first)
	in.Images = []model.ImageVersion{image(imgSKU, "1.1.0")} // 1.0.0 was replaced
	p = Compute(in)
	if p.Err != nil || len(p.Create) != 1 {
		t.Fatalf("V1 second scale-out: err %v create %d", p.Err, len(p.Create))
	}
	second := p.Create[0]
	if second.Image.ExactVersion != "1.1.0" || second.ID != first.ID+1 {
		t.Errorf("V1 second instance: id %d image %s, want id %d image 1.1.0", second.ID, second.Image.ExactVersion, first.ID+1)
	}
	if len(p.Actions) != 0 {
		t.Errorf("V1 the first instance keeps its image (no upgrade): %+v", p.Actions)
	}

	second.Placed, second.ProvisioningState = true, model.StateSucceeded
	set.Model.SKU.Capacity = ptr(int64(1))
	in = newInput(set, first, second)
	in.Images = []model.ImageVersion{image(imgSKU, "1.1.0")}
	p = Compute(in)
	if diff := cmp.Diff([]int64{first.ID}, p.Retire); diff != "" {
		t.Errorf("V1 OldestVM scale-in retires the old-image instance (-want +got):\n%s", diff)
	}
}

// TestComputePinnedMissingOnlyBlocksScaleOut: V3 says the set can no longer
// scale out; a set at capacity is fine and other actions still happen.
func TestComputePinnedMissingOnlyBlocksScaleOut(t *testing.T) {
	catalog := []model.ImageVersion{image(imgSKU, "1.1.0")}
	t.Run("V3 at capacity: no error", func(t *testing.T) {
		in := newInput(mockScaleSet(setSpec{Capacity: 1, Version: "1.0.0"}), vm(0))
		in.Images = catalog
		if p := Compute(in); !p.Converged() || p.Err != nil {
			t.Errorf("plan %s err %v, want converged without error", p.Summary(), p.Err)
		}
	})
	t.Run("V3 scale-in still works", func(t *testing.T) {
		in := newInput(mockScaleSet(setSpec{Capacity: 1, Version: "1.0.0"}), vm(0, at(0, 0)), vm(1, at(1, 1)))
		in.Images = catalog
		p := Compute(in)
		if p.Err != nil || !cmp.Equal(p.Retire, []int64{1}) {
			t.Errorf("retire %v err %v, want [1] and no error", p.Retire, p.Err)
		}
	})
	t.Run("V3 blocked scale-out still plans instance actions", func(t *testing.T) {
		in := newInput(mockScaleSet(setSpec{Capacity: 3, Version: "1.0.0"}), vm(0, power(model.PowerStopped)))
		in = observe(in, 0, driver.PowerRunning)
		in.Images = catalog
		p := Compute(in)
		if p.Err == nil || p.Err.Code != "ImageNotFound" || len(p.Create) != 0 {
			t.Fatalf("err %v create %d, want ImageNotFound and no creates", p.Err, len(p.Create))
		}
		want := []Action{{Kind: ActStop, InstanceID: 0}}
		if diff := cmp.Diff(want, p.Actions, ignoreReason); diff != "" {
			t.Errorf("actions (-want +got):\n%s", diff)
		}
	})
}

// ---------------------------------------------------------------------------
// Scale-in.

func TestComputeScaleIn(t *testing.T) {
	// Five instances over 3 fault domains: FD0 {0,3}, FD1 {1,4}, FD2 {2};
	// creation times are deliberately not in id order.
	five := func(mods map[int64][]func(*model.Instance)) []*model.Instance {
		fds := []int{0, 1, 2, 0, 1}
		age := []time.Duration{5, 1, 4, 2, 3} // minutes after t0
		var out []*model.Instance
		for id := range int64(5) {
			opts := []func(*model.Instance){at(fds[id], int(id)), created(age[id] * time.Minute)}
			out = append(out, vm(id, append(opts, mods[id]...)...))
		}
		return out
	}
	cases := []struct {
		name     string
		capacity int64
		rule     armcompute.VirtualMachineScaleSetScaleInRules
		insts    []*model.Instance
		want     []int64
	}{
		{"S1 capacity met: nothing retired", 5, "", five(nil), nil},
		{"Default keeps FDs balanced then highest id", 4, "", five(nil), []int64{4}},
		{"Default explicit rule name", 4, armcompute.VirtualMachineScaleSetScaleInRulesDefault, five(nil), []int64{4}},
		{"Default retires from the fullest FDs", 3, "", five(nil), []int64{3, 4}},
		{"Default to one per FD", 2, "", five(nil), []int64{2, 3, 4}},
		{"Default skips protected, next in a full FD", 4, "", five(map[int64][]func(*model.Instance){4: {protectScaleIn}}), []int64{3}},
		{"Default to zero retires all", 0, "", five(nil), []int64{0, 1, 2, 3, 4}},
		{"OldestVM takes the oldest Created", 3, armcompute.VirtualMachineScaleSetScaleInRulesOldestVM, five(nil), []int64{1, 3}},
		{"OldestVM is case-insensitive", 4, "oldestvm", five(nil), []int64{1}},
		{"OldestVM skips protected", 4, armcompute.VirtualMachineScaleSetScaleInRulesOldestVM, five(map[int64][]func(*model.Instance){1: {protectScaleIn}}), []int64{3}},
		{"NewestVM takes the newest Created", 3, armcompute.VirtualMachineScaleSetScaleInRulesNewestVM, five(nil), []int64{0, 2}},
		{"NewestVM skips protected", 4, armcompute.VirtualMachineScaleSetScaleInRulesNewestVM, five(map[int64][]func(*model.Instance){0: {protectScaleIn}}), []int64{2}},
		{
			"protected instances above capacity stay", 1, "",
			five(map[int64][]func(*model.Instance){0: {protectScaleIn}, 1: {protectScaleIn}, 2: {protectScaleIn}}),
			[]int64{3, 4},
		},
		{
			"all protected: nothing retired", 0, armcompute.VirtualMachineScaleSetScaleInRulesOldestVM,
			[]*model.Instance{vm(0, protectScaleIn), vm(1, protectScaleIn)}, nil,
		},
		{
			"deleting instances are not counted", 3, "",
			five(map[int64][]func(*model.Instance){4: {deleting}, 3: {deleting}}), nil,
		},
		{
			"OldestVM ties on Created go to the lower id", 2, armcompute.VirtualMachineScaleSetScaleInRulesOldestVM,
			[]*model.Instance{vm(7, created(0)), vm(3, created(0)), vm(5, created(0))}, []int64{3},
		},
		{
			"NewestVM ties on Created go to the higher id", 2, armcompute.VirtualMachineScaleSetScaleInRulesNewestVM,
			[]*model.Instance{vm(7, created(0)), vm(3, created(0)), vm(5, created(0))}, []int64{7},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set := mockScaleSet(setSpec{Capacity: c.capacity, FDCount: 3, Rule: c.rule})
			in := newInput(set, c.insts...)
			p := Compute(in)
			if diff := cmp.Diff(c.want, p.Retire, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Retire mismatch (-want +got):\n%s", diff)
			}
			if len(p.Create) != 0 || p.Err != nil || p.NextInstanceID != in.Status.NextInstanceID {
				t.Errorf("scale-in must not create: create=%d err=%v next=%d", len(p.Create), p.Err, p.NextInstanceID)
			}
			retired := map[int64]bool{}
			for _, id := range p.Retire {
				retired[id] = true
			}
			for _, a := range p.Actions {
				if retired[a.InstanceID] {
					t.Errorf("retired instance %d also has action %s", a.InstanceID, a.Kind)
				}
			}
		})
	}
}

func TestComputeScaleInRetiredGetNoActions(t *testing.T) {
	// Instance 1 would need a start and an upgrade, but it is retired.
	set := mockScaleSet(setSpec{Capacity: 1, Mode: armcompute.UpgradeModeAutomatic, ModelVersion: 2, FDCount: 2})
	in := newInput(set, vm(0, at(0, 0), onModel(2)), vm(1, at(1, 1)))
	in = observe(in, 1, driver.PowerStopped)
	p := Compute(in)
	if !cmp.Equal(p.Retire, []int64{1}) || len(p.Actions) != 0 {
		t.Errorf("retire %v actions %+v, want [1] and none", p.Retire, p.Actions)
	}
}

// ---------------------------------------------------------------------------
// Upgrades (U3, U4).

func TestComputeUpgrade(t *testing.T) {
	latest := resolved("latest", "1.10.0")
	up := func(id int64) Action {
		return Action{Kind: ActUpgrade, InstanceID: id, Image: latest, ModelVersion: 2}
	}
	cases := []struct {
		name  string
		mode  armcompute.UpgradeMode
		insts []*model.Instance
		want  []Action
	}{
		{
			name:  "U3 Manual: a model change alone upgrades nothing",
			mode:  armcompute.UpgradeModeManual,
			insts: []*model.Instance{vm(0), vm(1)},
		},
		{
			name:  "U3 Manual is the default mode",
			insts: []*model.Instance{vm(0), vm(1)},
		},
		{
			name:  "U4 Manual: manualUpgrade of one instance (TargetModel = model)",
			mode:  armcompute.UpgradeModeManual,
			insts: []*model.Instance{vm(0), vm(1, target(2)), vm(2)},
			want:  []Action{up(1)},
		},
		{
			name:  "U4 TargetModel above the model also upgrades",
			insts: []*model.Instance{vm(0, target(3))},
			want:  []Action{up(0)},
		},
		{
			name:  "U4 a stale TargetModel (older model) does not upgrade",
			insts: []*model.Instance{vm(0, target(1))},
		},
		{
			name:  "U4 an up-to-date instance is not upgraded again",
			insts: []*model.Instance{vm(0, onModel(2), target(2))},
		},
		{
			name:  "U4 explicit upgrade of a ProtectActions instance",
			insts: []*model.Instance{vm(0, target(2), protectActions)},
			want:  []Action{up(0)},
		},
		{
			name:  "U3 Automatic upgrades every outdated instance",
			mode:  armcompute.UpgradeModeAutomatic,
			insts: []*model.Instance{vm(0), vm(1, onModel(2)), vm(2)},
			want:  []Action{up(0), up(2)},
		},
		{
			name:  "U3 Automatic mode is case-insensitive",
			mode:  "automatic",
			insts: []*model.Instance{vm(0)},
			want:  []Action{up(0)},
		},
		{
			name:  "U3 Automatic skips ProtectActions instances",
			mode:  armcompute.UpgradeModeAutomatic,
			insts: []*model.Instance{vm(0, protectActions), vm(1)},
			want:  []Action{up(1)},
		},
		{
			name:  "U3 Automatic skips ProtectActions but still does their other actions",
			mode:  armcompute.UpgradeModeAutomatic,
			insts: []*model.Instance{vm(0, protectActions, restart(1, 0))},
			want:  []Action{{Kind: ActRestart, InstanceID: 0}},
		},
		{
			name:  "U4 a Failed instance is upgraded",
			insts: []*model.Instance{vm(0, target(2), state(model.StateFailed))},
			want:  []Action{up(0)},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set := mockScaleSet(setSpec{Capacity: int64(len(c.insts)), Mode: c.mode, ModelVersion: 2})
			p := Compute(newInput(set, c.insts...))
			if diff := cmp.Diff(c.want, p.Actions, ignoreReason, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Actions mismatch (-want +got):\n%s", diff)
			}
			if p.Err != nil || len(p.Create) != 0 || len(p.Retire) != 0 {
				t.Errorf("unexpected err %v create %d retire %v", p.Err, len(p.Create), p.Retire)
			}
		})
	}
}

func TestComputeUpgradeImage(t *testing.T) {
	t.Run("U3 V1 upgrade carries the image resolved now", func(t *testing.T) {
		set := mockScaleSet(setSpec{Capacity: 1, Mode: armcompute.UpgradeModeAutomatic, ModelVersion: 3})
		in := newInput(set, vm(0, onModel(2)))
		in.Images = append(in.Images, image(imgSKU, "1.11.0"))
		p := Compute(in)
		want := []Action{{Kind: ActUpgrade, InstanceID: 0, Image: resolved("latest", "1.11.0"), ModelVersion: 3}}
		if diff := cmp.Diff(want, p.Actions, ignoreReason); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("U3 pinned version in the new model", func(t *testing.T) {
		set := mockScaleSet(setSpec{Capacity: 1, Version: "1.9.0", ModelVersion: 2})
		p := Compute(newInput(set, vm(0, target(2))))
		want := []Action{{Kind: ActUpgrade, InstanceID: 0, Image: resolved("1.9.0", "1.9.0"), ModelVersion: 2}}
		if diff := cmp.Diff(want, p.Actions, ignoreReason); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("U1 custom URI in the new model", func(t *testing.T) {
		set := mockScaleSet(setSpec{Capacity: 1, ImageURI: "https://blobs/v2.vhd", ModelVersion: 2})
		in := newInput(set, vm(0, target(2)))
		img := model.ResolvedImage{URI: "https://blobs/v2.vhd", Digest: "sha256:v2", OSType: "Linux"}
		in.Custom = map[string]CustomImage{"https://blobs/v2.vhd": {Image: img}}
		p := Compute(in)
		want := []Action{{Kind: ActUpgrade, InstanceID: 0, Image: img, ModelVersion: 2}}
		if diff := cmp.Diff(want, p.Actions, ignoreReason); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("V3 upgrade to a missing pinned version fails with ImageNotFound", func(t *testing.T) {
		set := mockScaleSet(setSpec{Capacity: 2, Mode: armcompute.UpgradeModeAutomatic, Version: "3.0.0", ModelVersion: 2})
		p := Compute(newInput(set, vm(0), vm(1)))
		if p.Err == nil || p.Err.Code != "ImageNotFound" || !strings.Contains(p.Err.Message, "vmssd:demo:guest:3.0.0") {
			t.Errorf("Err = %v, want ImageNotFound naming vmssd:demo:guest:3.0.0", p.Err)
		}
		for _, a := range p.Actions {
			if a.Kind == ActUpgrade {
				t.Errorf("upgrade planned without an image: %+v", a)
			}
		}
	})
}

// TestComputeUpgradeImageErrorDoesNotStarveInstance: an instance whose
// upgrade cannot resolve its image must not lose its other actions (V3: only
// the operations that need the image fail). Today Compute `continue`s past it,
// so a lost instance is never re-placed and power, restart and reimage
// requests are ignored until the model changes.
func TestComputeUpgradeImageErrorDoesNotStarveInstance(t *testing.T) {

	set := mockScaleSet(setSpec{Capacity: 4, Mode: armcompute.UpgradeModeAutomatic, Version: "3.0.0", ModelVersion: 2})
	in := newInput(set,
		vm(0, power(model.PowerStopped)),
		vm(1),
		vm(2, restart(1, 0)),
		vm(3, state(model.StateUpdating)),
	)
	in = observe(in, 0, driver.PowerRunning)
	in = unobserve(in, 1)
	p := Compute(in)
	if p.Err == nil || p.Err.Code != "ImageNotFound" {
		t.Fatalf("Err = %v, want ImageNotFound", p.Err)
	}
	want := []Action{
		{Kind: ActStop, InstanceID: 0},
		{Kind: ActPlace, InstanceID: 1},
		{Kind: ActRestart, InstanceID: 2},
		{Kind: ActSettle, InstanceID: 3},
	}
	if diff := cmp.Diff(want, p.Actions, ignoreReason); diff != "" {
		t.Errorf("V3 actions of instances whose upgrade is blocked (-want +got):\n%s", diff)
	}
}

// ---------------------------------------------------------------------------
// Deletion.

func TestComputeDeleting(t *testing.T) {
	cases := []struct {
		name         string
		setDeleting  bool
		capacity     int64
		insts        []*model.Instance
		wantActions  []Action
		wantFinalize bool
	}{
		{
			name:        "deleting instance is removed",
			capacity:    1,
			insts:       []*model.Instance{vm(0), vm(1, deleting)},
			wantActions: []Action{{Kind: ActRemove, InstanceID: 1}},
		},
		{
			name:        "deleting protected or failed instances are removed too",
			capacity:    0,
			insts:       []*model.Instance{vm(0, deleting, protectScaleIn), vm(1, deleting, state(model.StateFailed))},
			wantActions: []Action{{Kind: ActRemove, InstanceID: 0}, {Kind: ActRemove, InstanceID: 1}},
		},
		{
			name:        "set deleting removes every instance, whatever its state",
			setDeleting: true,
			capacity:    3,
			insts: []*model.Instance{
				vm(0, protectScaleIn, protectActions), vm(1, notPlaced), vm(2, deleting), vm(3, target(9)),
			},
			wantActions: []Action{
				{Kind: ActRemove, InstanceID: 0}, {Kind: ActRemove, InstanceID: 1},
				{Kind: ActRemove, InstanceID: 2}, {Kind: ActRemove, InstanceID: 3},
			},
		},
		{
			name:         "set deleting with no instances finalizes",
			setDeleting:  true,
			capacity:     3,
			wantFinalize: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			set := mockScaleSet(setSpec{Capacity: c.capacity, Deleting: c.setDeleting, ModelVersion: 2})
			in := newInput(set, c.insts...)
			in.Images = nil // deletion never needs an image
			p := Compute(in)
			if diff := cmp.Diff(c.wantActions, p.Actions, ignoreReason, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Actions mismatch (-want +got):\n%s", diff)
			}
			if p.Finalize != c.wantFinalize {
				t.Errorf("Finalize = %v, want %v", p.Finalize, c.wantFinalize)
			}
			if len(p.Create) != 0 || len(p.Retire) != 0 || p.Err != nil {
				t.Errorf("unexpected create %d retire %v err %v", len(p.Create), p.Retire, p.Err)
			}
			if p.Converged() {
				t.Errorf("a plan with removals or Finalize is not converged")
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Per-instance actions: power, reimage, restart, place, settle.

func TestComputeInstanceActions(t *testing.T) {
	const none = ActionKind("")
	cases := []struct {
		name     string
		inst     *model.Instance
		observed driver.Power // "" = as desired; "absent" = not on its host
		want     ActionKind
		reason   string // checked when not empty
	}{
		{"converged running instance", vm(0), "", none, ""},
		{"converged stopped instance", vm(0, power(model.PowerStopped)), "", none, ""},
		{"converged deallocated instance", vm(0, power(model.PowerDeallocated)), "", none, ""},

		{"stop: desired stopped, observed running", vm(0, power(model.PowerStopped)), driver.PowerRunning, ActStop, ""},
		{"stop: desired stopped, observed starting", vm(0, power(model.PowerStopped)), driver.PowerStarting, ActStop, ""},
		{"deallocate: desired deallocated, observed running", vm(0, power(model.PowerDeallocated)), driver.PowerRunning, ActDeallocate, ""},
		{"deallocate: desired deallocated, observed stopped", vm(0, power(model.PowerDeallocated)), driver.PowerStopped, ActDeallocate, ""},
		{"start: desired running, observed stopped", vm(0), driver.PowerStopped, ActStart, ""},
		{"start: desired running, observed deallocated", vm(0), driver.PowerDeallocated, ActStart, ""},

		{"reimage requested", vm(0, reimage(2, 1)), "", ActReimage, ""},
		{"reimage already applied", vm(0, reimage(2, 2)), "", none, ""},
		{"restart requested", vm(0, restart(1, 0)), "", ActRestart, ""},
		{"restart already applied", vm(0, restart(3, 3)), "", none, ""},
		{"reimage before restart", vm(0, reimage(1, 0), restart(1, 0)), "", ActReimage, ""},
		{"reimage before power", vm(0, reimage(1, 0), power(model.PowerStopped)), driver.PowerRunning, ActReimage, ""},

		{"place: new instance not placed", vm(0, notPlaced), "absent", ActPlace, "new instance"},
		{"place: not placed even if the host has it", vm(0, notPlaced), driver.PowerRunning, ActPlace, "new instance"},
		{"place: placed but lost by its host", vm(0), "absent", ActPlace, "lost by its host"},
		{"place before reimage", vm(0, reimage(1, 0)), "absent", ActPlace, ""},

		{"failed instance is left alone", vm(0, state(model.StateFailed)), "", none, ""},
		{"failed instance: no stop", vm(0, state(model.StateFailed), power(model.PowerStopped)), driver.PowerRunning, none, ""},
		{"failed instance: no start", vm(0, state(model.StateFailed)), driver.PowerStopped, none, ""},
		{"failed instance: a restart retries it", vm(0, state(model.StateFailed), restart(1, 0)), "", ActRestart, ""},
		{"failed instance: no place", vm(0, state(model.StateFailed)), "absent", none, ""},
		{"failed instance: reimage", vm(0, state(model.StateFailed), reimage(1, 0)), "", ActReimage, ""},

		{"settle: Updating and in desired state", vm(0, state(model.StateUpdating)), "", ActSettle, ""},
		{"settle: Creating, placed, running", vm(0, state(model.StateCreating)), "", ActSettle, ""},
		{"settle: Updating, stopped as desired", vm(0, state(model.StateUpdating), power(model.PowerStopped)), "", ActSettle, ""},
		{"no settle before the power action", vm(0, state(model.StateUpdating)), driver.PowerStopped, ActStart, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := newInput(mockScaleSet(setSpec{Capacity: 1}), c.inst)
			switch c.observed {
			case "":
			case "absent":
				in = unobserve(in, 0)
			default:
				in = observe(in, 0, c.observed)
			}
			p := Compute(in)
			if c.want == none {
				if len(p.Actions) != 0 {
					t.Fatalf("actions %+v, want none", p.Actions)
				}
				if !p.Converged() {
					t.Errorf("plan %q not converged", p.Summary())
				}
				return
			}
			if len(p.Actions) != 1 {
				t.Fatalf("actions %+v, want one %s", p.Actions, c.want)
			}
			a := p.Actions[0]
			if a.Kind != c.want || a.InstanceID != 0 {
				t.Errorf("action %s on %d, want %s on 0", a.Kind, a.InstanceID, c.want)
			}
			if c.reason != "" && a.Reason != c.reason {
				t.Errorf("reason %q, want %q", a.Reason, c.reason)
			}
			if a.Kind != ActUpgrade && (a.Image != (model.ResolvedImage{}) || a.ModelVersion != 0) {
				t.Errorf("non-upgrade action carries image/model: %+v", a)
			}
		})
	}
}

// TestComputeOneActionPerInstance: several instances each get their own
// action, in instance order.
func TestComputeOneActionPerInstance(t *testing.T) {
	in := newInput(mockScaleSet(setSpec{Capacity: 5, ModelVersion: 2}),
		vm(0, power(model.PowerStopped)),
		vm(1, reimage(1, 0)),
		vm(2),
		vm(3, target(2), restart(1, 0)),
		vm(4, notPlaced),
	)
	in = observe(in, 0, driver.PowerRunning)
	in = unobserve(in, 4)
	p := Compute(in)
	want := []Action{
		{Kind: ActStop, InstanceID: 0},
		{Kind: ActReimage, InstanceID: 1},
		{Kind: ActUpgrade, InstanceID: 3, Image: resolved("latest", "1.10.0"), ModelVersion: 2},
		{Kind: ActPlace, InstanceID: 4},
	}
	if diff := cmp.Diff(want, p.Actions, ignoreReason); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got, want := p.Summary(), "place=1 reimage=1 stop=1 upgrade=1"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
}

// ---------------------------------------------------------------------------
// Plan helpers.

func TestPlanSummary(t *testing.T) {
	cases := []struct {
		name      string
		plan      Plan
		want      string
		converged bool
	}{
		{"empty", Plan{}, "converged", true},
		{"error only is still converged", Plan{Err: errs.New(errs.NotFound, "ImageNotFound", "x")}, "error=ImageNotFound", true},
		{"create", Plan{Create: []*model.Instance{{}, {}}}, "create=2", false},
		{"retire", Plan{Retire: []int64{1}}, "retire=1", false},
		{"finalize", Plan{Finalize: true}, "finalize", false},
		{
			"mixed, kinds sorted",
			Plan{Create: []*model.Instance{{}}, Actions: []Action{{Kind: ActStop}, {Kind: ActPlace}, {Kind: ActStop}}},
			"create=1 place=1 stop=2", false,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.plan.Summary(); got != c.want {
				t.Errorf("Summary = %q, want %q", got, c.want)
			}
			if got := c.plan.Converged(); got != c.converged {
				t.Errorf("Converged = %v, want %v", got, c.converged)
			}
		})
	}
}

// TestComputeHostReportedFailure: an instance its host saw fail (a VM that
// missed its boot deadline) is marked failed once, then left alone until
// the user retries it.
func TestComputeHostReportedFailure(t *testing.T) {
	set := mockScaleSet(setSpec{Capacity: 1})
	in := newInput(set, vm(0))
	in.Observed["vm-0"] = driver.Status{ID: "vm-0", Power: driver.PowerStopped, Failure: "OSProvisioningTimedOut", Message: "boot deadline exceeded"}
	p := Compute(in)
	if len(p.Actions) != 1 || p.Actions[0].Kind != ActFail || p.Actions[0].Failure != "OSProvisioningTimedOut" || p.Actions[0].Reason != "boot deadline exceeded" {
		t.Fatalf("plan %+v, want one fail action carrying the host's code and message", p.Actions)
	}
	// Once recorded, no start is attempted.
	in = newInput(set, vm(0, state(model.StateFailed)))
	in.Observed["vm-0"] = driver.Status{ID: "vm-0", Power: driver.PowerStopped, Failure: "OSProvisioningTimedOut"}
	if p := Compute(in); len(p.Actions) != 0 {
		t.Fatalf("failed instance got %+v", p.Actions)
	}
	// A restart request retries it.
	in = newInput(set, vm(0, state(model.StateFailed), restart(1, 0)))
	in.Observed["vm-0"] = driver.Status{ID: "vm-0", Power: driver.PowerStopped, Failure: "OSProvisioningTimedOut"}
	if p := Compute(in); len(p.Actions) != 1 || p.Actions[0].Kind != ActRestart {
		t.Fatalf("restart of a failed instance: %+v", p.Actions)
	}
}
