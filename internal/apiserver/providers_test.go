package apiserver

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

func TestArmType(t *testing.T) {
	tests := []struct {
		path      string
		ns, chain string
		named     bool
	}{
		{"subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web", nsCompute, "virtualMachineScaleSets", true},
		{"subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web/virtualMachines/0", nsCompute, "virtualMachineScaleSets/virtualMachines", true},
		{"subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web/bogus", nsCompute, "virtualMachineScaleSets/bogus", false},
		{"subscriptions/s/providers/Microsoft.Compute/fooBars", nsCompute, "fooBars", false},
		{"subscriptions/s/providers/Microsoft.Foo/bars/x", "Microsoft.Foo", "bars", true},
		{"providers/Microsoft.Compute/operations", nsCompute, "operations", false},
		{"subscriptions/s", nsResources, "subscriptions", true},
		{"subscriptions/s/locations", nsResources, "locations", false},
		{"subscriptions/s/resourceGroups/rg/resources", nsResources, "resourceGroups/resources", false},
		{"tenants", nsResources, "tenants", false},
	}
	for _, tc := range tests {
		ns, chain, named := armType(strings.Split(tc.path, "/"))
		if ns != tc.ns || strings.Join(chain, "/") != tc.chain || named != tc.named {
			t.Errorf("armType(%s) = %s %v %v, want %s %s %v", tc.path, ns, chain, named, tc.ns, tc.chain, tc.named)
		}
	}
}

// TestProviderIndex: the routes make the resource types (with their parents
// and api-versions); actions and sub-paths do not; admin namespaces are
// the operator's.
func TestProviderIndex(t *testing.T) {
	s := &Server{}
	s.register()
	s.indexProviders(extraTypes())

	compute := s.providers.get("microsoft.compute")
	if compute == nil || compute.operator {
		t.Fatalf("Microsoft.Compute: %+v", compute)
	}
	var types []string
	for _, rt := range compute.types {
		types = append(types, rt.name)
		if len(rt.api) == 0 {
			t.Errorf("type %s has no api-versions", rt.name)
		}
	}
	for _, want := range []string{
		"virtualMachineScaleSets", "virtualMachineScaleSets/virtualMachines", "locations", "locations/operations",
		"locations/publishers", "locations/publishers/artifacttypes/offers/skus/versions", "skus", "locations/vmSizes",
	} {
		if !slices.Contains(types, want) {
			t.Errorf("Microsoft.Compute lacks %s: %v", want, types)
		}
	}
	for _, bad := range []string{"virtualMachineScaleSets/instanceView", "virtualMachineScaleSets/skus", "virtualMachineScaleSets/virtualMachines/bootDiagnostics"} {
		if compute.typ(bad) != nil {
			t.Errorf("Microsoft.Compute lists %s, a sub-path, as a type", bad)
		}
	}
	vmss := compute.typ("VIRTUALMACHINESCALESETS")
	for _, v := range []string{"2017-03-30", "2017-12-01", "2020-06-01", "2026-04-01"} {
		if !vmss.api[v] {
			t.Errorf("virtualMachineScaleSets lacks api-version %s", v)
		}
	}
	if got := newestFirst(vmss.api); got[0] != "2026-04-01" {
		t.Errorf("api-versions not newest first: %v", got[:3])
	}
	for _, ns := range []string{nsNetwork, nsResources, "vmssd.Storage"} {
		if p := s.providers.get(ns); p == nil || p.operator {
			t.Errorf("%s: %+v", ns, p)
		}
	}
	for _, ns := range []string{"vmssd.Admin", "Microsoft.Compute.Admin", "Microsoft.Subscriptions.Admin"} {
		if p := s.providers.get(ns); p == nil || !p.operator {
			t.Errorf("%s should be an operator namespace: %+v", ns, p)
		}
	}
	if !s.providers.get(nsResources).typ("subscriptions").api["2019-11-01"] {
		t.Error("subscriptions lack api-version 2019-11-01 (az's latest profile)")
	}
}

// TestProfileDefaults: GET shows the OS disk and NIC Azure would show; the
// model's own values are kept; echoing them back does not change the model.
func TestProfileDefaults(t *testing.T) {
	var bare armcompute.VirtualMachineScaleSet
	if err := json.Unmarshal([]byte(`{"location":"local","properties":{"virtualMachineProfile":{
		"storageProfile":{"imageReference":{"publisher":"p","offer":"o","sku":"s","version":"1.0.0"}}}}}`), &bare); err != nil {
		t.Fatal(err)
	}
	shown := profileWithDefaults(&bare)
	d := shown.StorageProfile.OSDisk
	if *d.CreateOption != armcompute.DiskCreateOptionTypesFromImage || *d.Caching != armcompute.CachingTypesReadWrite ||
		*d.OSType != armcompute.OperatingSystemTypesLinux || *d.DiskSizeGB != defaultOSDiskSizeGB ||
		*d.ManagedDisk.StorageAccountType != armcompute.StorageAccountTypesStandardLRS {
		t.Errorf("osDisk defaults: %+v", d)
	}
	nics := shown.NetworkProfile.NetworkInterfaceConfigurations
	if len(nics) != 1 || *nics[0].Name != defaultNIC || !*nics[0].Properties.Primary || len(nics[0].Properties.IPConfigurations) != 1 {
		t.Errorf("networkProfile default: %+v", nics)
	}
	if bare.Properties.VirtualMachineProfile.StorageProfile.OSDisk != nil {
		t.Error("profileWithDefaults changed the model")
	}

	// Echoed defaults are no model change.
	echoed := armcompute.VirtualMachineScaleSet{Location: bare.Location, Properties: &armcompute.VirtualMachineScaleSetProperties{VirtualMachineProfile: shown}}
	if modelSignature(&bare) != modelSignature(&echoed) {
		t.Error("echoing the defaults changes the model signature")
	}
	changed := profileWithDefaults(&echoed)
	changed.StorageProfile.ImageReference.Version = ptr("1.1.0")
	if modelSignature(&echoed) == modelSignature(&armcompute.VirtualMachineScaleSet{Properties: &armcompute.VirtualMachineScaleSetProperties{VirtualMachineProfile: changed}}) {
		t.Error("a version change does not change the model signature")
	}

	// What the model says wins; a Windows profile shows a Windows disk; an
	// unmanaged (VHD) disk gets no managed disk.
	var custom armcompute.VirtualMachineScaleSet
	if err := json.Unmarshal([]byte(`{"properties":{"virtualMachineProfile":{
		"osProfile":{"windowsConfiguration":{}},
		"storageProfile":{"osDisk":{"caching":"None","diskSizeGB":64,"image":{"uri":"artifact:sha256:00"}}},
		"networkProfile":{"networkInterfaceConfigurations":[{"name":"mine","properties":{"primary":true,"ipConfigurations":[{"name":"c"}]}}]}}}}`), &custom); err != nil {
		t.Fatal(err)
	}
	shown = profileWithDefaults(&custom)
	d = shown.StorageProfile.OSDisk
	if *d.Caching != armcompute.CachingTypesNone || *d.DiskSizeGB != 64 || *d.OSType != armcompute.OperatingSystemTypesWindows || d.ManagedDisk != nil {
		t.Errorf("osDisk with the model's values: %+v", d)
	}
	if nics := shown.NetworkProfile.NetworkInterfaceConfigurations; len(nics) != 1 || *nics[0].Name != "mine" {
		t.Errorf("the model's NICs were replaced: %+v", nics)
	}
}
