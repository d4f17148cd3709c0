package compat

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/google/go-cmp/cmp"

	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

// TestSDKScenario runs the same scenario with armcompute v8 at its default
// api-version and with the clients pinned to the Azure Stack
// 2020-09-01-hybrid profile's Microsoft.Compute version.
func TestSDKScenario(t *testing.T) {
	for _, tc := range []struct {
		name, pin, want string
	}{
		{name: "armcompute-v8-default", pin: "", want: "2026-04-01"},
		{name: "hybrid-2020-09-01-profile", pin: "2020-06-01", want: "2020-06-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each run has its own server
			e := testenv.Start(t, testenv.Options{PageSize: 2})
			c := newClients(t, e, staticCred(e.Token), tc.pin)
			runScenario(t, c)
			if got := c.rec.seen(); !cmp.Equal(got, []string{tc.want}) {
				t.Errorf("Microsoft.Compute api-versions sent: %v, want only %s", got, tc.want)
			}
		})
	}
}

type step struct {
	name string
	run  func(t *testing.T)
}

func runScenario(t *testing.T, c *clients) {
	const rg, name = "rg-sdk", "web"
	var vmIDs []string // current instance ids of "web", shared by the steps
	imageRef := &armcompute.ImageReference{
		Publisher: to.Ptr(server.DemoPublisher), Offer: to.Ptr(server.DemoOffer), SKU: to.Ptr(server.DemoSKU), Version: to.Ptr("latest"),
	}
	steps := []step{
		{"S4/resource-group-create", func(t *testing.T) {
			res, err := c.rgs.CreateOrUpdate(ctxT(t, 30*time.Second), rg, armresources.ResourceGroup{Location: to.Ptr("local")}, nil)
			if err != nil {
				t.Fatalf("create rg: %v", err)
			}
			if val(res.Name) != rg || res.Properties == nil || val(res.Properties.ProvisioningState) != "Succeeded" {
				t.Fatalf("rg: %+v", res.ResourceGroup)
			}
			if _, err := c.rgs.Get(ctxT(t, 30*time.Second), rg, nil); err != nil {
				t.Fatalf("get rg: %v", err)
			}
		}},
		{"M4/images", func(t *testing.T) {
			ctx := ctxT(t, 30*time.Second)
			names := func(rs []*armcompute.VirtualMachineImageResource) []string {
				var out []string
				for _, r := range rs {
					out = append(out, val(r.Name))
				}
				return out
			}
			pubs, err := c.images.ListPublishers(ctx, "local", nil)
			if err != nil || !slices.Contains(names(pubs.VirtualMachineImageResourceArray), server.DemoPublisher) {
				t.Fatalf("publishers: %v %v", names(pubs.VirtualMachineImageResourceArray), err)
			}
			offers, err := c.images.ListOffers(ctx, "local", server.DemoPublisher, nil)
			if err != nil || !cmp.Equal(names(offers.VirtualMachineImageResourceArray), []string{server.DemoOffer}) {
				t.Fatalf("offers: %v %v", names(offers.VirtualMachineImageResourceArray), err)
			}
			skus, err := c.images.ListSKUs(ctx, "local", server.DemoPublisher, server.DemoOffer, nil)
			if err != nil || !cmp.Equal(names(skus.VirtualMachineImageResourceArray), []string{server.DemoSKU}) {
				t.Fatalf("skus: %v %v", names(skus.VirtualMachineImageResourceArray), err)
			}
			vers, err := c.images.List(ctx, "local", server.DemoPublisher, server.DemoOffer, server.DemoSKU, nil)
			if err != nil || !cmp.Equal(names(vers.VirtualMachineImageResourceArray), []string{"1.0.0", "1.1.0"}) {
				t.Fatalf("versions: %v %v", names(vers.VirtualMachineImageResourceArray), err)
			}
			// How az CLI resolves "latest" (arm-api.md §7).
			top, err := c.images.List(ctx, "local", server.DemoPublisher, server.DemoOffer, server.DemoSKU,
				&armcompute.VirtualMachineImagesClientListOptions{Orderby: to.Ptr("name desc"), Top: to.Ptr[int32](1)})
			if err != nil || !cmp.Equal(names(top.VirtualMachineImageResourceArray), []string{"1.1.0"}) {
				t.Fatalf("versions name desc top 1: %v %v", names(top.VirtualMachineImageResourceArray), err)
			}
			img, err := c.images.Get(ctx, "local", server.DemoPublisher, server.DemoOffer, server.DemoSKU, "1.1.0", nil)
			if err != nil {
				t.Fatalf("get version: %v", err)
			}
			if val(img.Name) != "1.1.0" || img.Properties == nil || img.Properties.OSDiskImage == nil ||
				img.Properties.OSDiskImage.OperatingSystem == nil || *img.Properties.OSDiskImage.OperatingSystem != armcompute.OperatingSystemTypesLinux {
				t.Fatalf("image version: %+v", img.VirtualMachineImage)
			}
			_, err = c.images.Get(ctx, "local", server.DemoPublisher, server.DemoOffer, server.DemoSKU, "7.7.7", nil)
			responseError(t, "get missing version", err, http.StatusNotFound, "NotFound")
		}},
		{"V3/pinned-missing-version-ImageNotFound", func(t *testing.T) {
			_, err := c.sets.BeginCreateOrUpdate(ctxT(t, 30*time.Second), rg, "pinned", scaleSet(1, "9.9.9"), nil)
			responseError(t, "create with version 9.9.9", err, http.StatusNotFound, "ImageNotFound")
			_, err = c.sets.Get(ctxT(t, 30*time.Second), rg, "pinned", nil)
			responseError(t, "get after refused create", err, http.StatusNotFound, "ResourceNotFound")
		}},
		{"S1/create-latest-capacity-2", func(t *testing.T) {
			p, err := c.sets.BeginCreateOrUpdate(ctxT(t, 30*time.Second), rg, name, scaleSet(2, "latest"), nil)
			res := done(t, "create", p, err)
			if got := val(res.Properties.ProvisioningState); got != "Succeeded" {
				t.Errorf("provisioningState after polling = %q, want Succeeded", got)
			}
			got := res.Properties.VirtualMachineProfile.StorageProfile.ImageReference
			if diff := cmp.Diff(imageRef, got, cmpImageRef); diff != "" {
				t.Errorf("imageReference (-want +got):\n%s", diff)
			}
			if res.Properties.VirtualMachineProfile.OSProfile.AdminPassword != nil {
				t.Errorf("adminPassword echoed")
			}
			if val(res.ID) != "/subscriptions/"+server.DefaultSubscriptionID+"/resourceGroups/"+rg+"/providers/Microsoft.Compute/virtualMachineScaleSets/"+name {
				t.Errorf("id = %q", val(res.ID))
			}
			vmIDs = waitVMs(t, c, rg, name, 2)
		}},
		{"S1/get", func(t *testing.T) {
			g, err := c.sets.Get(ctxT(t, 30*time.Second), rg, name, nil)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if val(g.Name) != name || val(g.Type) != "Microsoft.Compute/virtualMachineScaleSets" ||
				g.SKU == nil || val(g.SKU.Capacity) != 2 || val(g.SKU.Name) != "Standard_A1" {
				t.Errorf("get: name=%q type=%q sku=%+v", val(g.Name), val(g.Type), g.SKU)
			}
			if diff := cmp.Diff(imageRef, g.Properties.VirtualMachineProfile.StorageProfile.ImageReference, cmpImageRef); diff != "" {
				t.Errorf("imageReference (-want +got):\n%s", diff)
			}
			if g.Etag == nil || *g.Etag == "" {
				t.Errorf("no etag")
			}
		}},
		{"S2/list-paging-rg-and-subscription", func(t *testing.T) {
			for _, n := range []string{"aux-1", "aux-2"} {
				p, err := c.sets.BeginCreateOrUpdate(ctxT(t, 30*time.Second), rg, n, scaleSet(0, "latest"), nil)
				done(t, "create "+n, p, err)
			}
			want := []string{"aux-1", "aux-2", name}
			var got []string
			pages := 0
			pg := c.sets.NewListPager(rg, nil)
			for pg.More() {
				p, err := pg.NextPage(ctxT(t, 30*time.Second))
				if err != nil {
					t.Fatalf("list in rg: %v", err)
				}
				pages++
				for _, s := range p.Value {
					got = append(got, val(s.Name))
				}
			}
			slices.Sort(got)
			if !cmp.Equal(got, want) || pages < 2 {
				t.Errorf("list in rg: %v in %d pages, want %v in >= 2 pages (PageSize 2)", got, pages, want)
			}
			got, pages = nil, 0
			all := c.sets.NewListAllPager(nil)
			for all.More() {
				p, err := all.NextPage(ctxT(t, 30*time.Second))
				if err != nil {
					t.Fatalf("list in subscription: %v", err)
				}
				pages++
				for _, s := range p.Value {
					got = append(got, val(s.Name))
				}
			}
			slices.Sort(got)
			if !cmp.Equal(got, want) || pages < 2 {
				t.Errorf("list in subscription: %v in %d pages, want %v in >= 2 pages", got, pages, want)
			}
		}},
		{"S3/put-merge-scale-to-3", func(t *testing.T) {
			// az vmss scale: PUT {location, sku} only; the model must stay.
			p, err := c.sets.BeginCreateOrUpdate(ctxT(t, 30*time.Second), rg, name, armcompute.VirtualMachineScaleSet{
				Location: to.Ptr("local"), SKU: &armcompute.SKU{Capacity: to.Ptr[int64](3)},
			}, nil)
			res := done(t, "scale put", p, err)
			if val(res.SKU.Capacity) != 3 || val(res.SKU.Name) != "Standard_A1" {
				t.Errorf("sku after merge: %+v", res.SKU)
			}
			vp := res.Properties.VirtualMachineProfile
			if vp == nil || vp.OSProfile == nil || val(vp.OSProfile.ComputerNamePrefix) != "web" || vp.StorageProfile == nil {
				t.Fatalf("PUT {location, sku} wiped the model: %+v", vp)
			}
			if diff := cmp.Diff(imageRef, vp.StorageProfile.ImageReference, cmpImageRef); diff != "" {
				t.Errorf("imageReference after merge (-want +got):\n%s", diff)
			}
			if mode := res.Properties.UpgradePolicy; mode == nil || mode.Mode == nil || *mode.Mode != armcompute.UpgradeModeManual {
				t.Errorf("upgradePolicy after merge: %+v", mode)
			}
			vmIDs = waitVMs(t, c, rg, name, 3)
			if _, pages := listVMs(t, c, rg, name, false); pages < 2 {
				t.Errorf("3 instances with PageSize 2 in %d page(s)", pages)
			}
		}},
		{"S3/patch-scale-to-2", func(t *testing.T) {
			p, err := c.sets.BeginUpdate(ctxT(t, 30*time.Second), rg, name, armcompute.VirtualMachineScaleSetUpdate{
				SKU: &armcompute.SKU{Capacity: to.Ptr[int64](2)},
			}, nil)
			res := done(t, "patch", p, err)
			if val(res.SKU.Capacity) != 2 {
				t.Errorf("capacity after patch: %v", val(res.SKU.Capacity))
			}
			vmIDs = waitVMs(t, c, rg, name, 2)
		}},
		{"U3-U4/model-update-then-manualupgrade-one", func(t *testing.T) {
			p, err := c.sets.BeginUpdate(ctxT(t, 30*time.Second), rg, name, armcompute.VirtualMachineScaleSetUpdate{
				Properties: &armcompute.VirtualMachineScaleSetUpdateProperties{
					VirtualMachineProfile: &armcompute.VirtualMachineScaleSetUpdateVMProfile{
						StorageProfile: &armcompute.VirtualMachineScaleSetUpdateStorageProfile{
							ImageReference: &armcompute.ImageReference{Version: to.Ptr("1.0.0")},
						},
					},
				},
			}, nil)
			res := done(t, "model update", p, err)
			ir := res.Properties.VirtualMachineProfile.StorageProfile.ImageReference
			if val(ir.Version) != "1.0.0" || val(ir.Publisher) != server.DemoPublisher {
				t.Fatalf("imageReference after model update: %+v", ir)
			}
			for _, id := range vmIDs {
				vm, err := c.vms.Get(ctxT(t, 30*time.Second), rg, name, id, nil)
				if err != nil {
					t.Fatalf("get vm %s: %v", id, err)
				}
				if val(vm.Properties.LatestModelApplied) {
					t.Errorf("vm %s: latestModelApplied before manualupgrade (Manual policy)", id)
				}
			}
			upgraded := vmIDs[0]
			p2, err := c.sets.BeginUpdateInstances(ctxT(t, 30*time.Second), rg, name,
				armcompute.VirtualMachineScaleSetVMInstanceRequiredIDs{InstanceIDs: to.SliceOfPtrs(upgraded)}, nil)
			done(t, "manualupgrade", p2, err)
			for _, id := range vmIDs {
				vm, err := c.vms.Get(ctxT(t, 30*time.Second), rg, name, id, nil)
				if err != nil {
					t.Fatalf("get vm %s: %v", id, err)
				}
				if got, want := val(vm.Properties.LatestModelApplied), id == upgraded; got != want {
					t.Errorf("vm %s: latestModelApplied = %v, want %v", id, got, want)
				}
				if id == upgraded {
					if ev := val(vm.Properties.StorageProfile.ImageReference.ExactVersion); ev != "1.0.0" {
						t.Errorf("upgraded vm %s: exactVersion %q, want 1.0.0", id, ev)
					}
				}
			}
		}},
		{"U5/instance-views", func(t *testing.T) {
			ctx := ctxT(t, 30*time.Second)
			iv, err := c.sets.GetInstanceView(ctx, rg, name, nil)
			if err != nil {
				t.Fatalf("set instance view: %v", err)
			}
			counts := map[string]int32{}
			if iv.VirtualMachine != nil {
				for _, s := range iv.VirtualMachine.StatusesSummary {
					counts[val(s.Code)] = val(s.Count)
				}
			}
			if counts["ProvisioningState/succeeded"] != 2 {
				t.Errorf("statusesSummary: %v, want ProvisioningState/succeeded: 2", counts)
			}
			vmiv, err := c.vms.GetInstanceView(ctx, rg, name, vmIDs[0], nil)
			if err != nil {
				t.Fatalf("vm instance view: %v", err)
			}
			if vmiv.PlatformFaultDomain == nil || vmiv.PlatformUpdateDomain == nil || len(vmiv.Statuses) < 2 {
				t.Errorf("vm instance view: %+v", vmiv.VirtualMachineScaleSetVMInstanceView)
			}
			vms, _ := listVMs(t, c, rg, name, true)
			if len(vms) != 2 {
				t.Fatalf("list with instanceView: %d vms", len(vms))
			}
			for _, vm := range vms {
				if vm.Properties.InstanceView == nil || len(vm.Properties.InstanceView.Statuses) == 0 {
					t.Errorf("vm %s: no instanceView with $expand=instanceView", val(vm.InstanceID))
				}
				if want := name + "_" + val(vm.InstanceID); val(vm.Name) != want {
					t.Errorf("vm name %q, want %q", val(vm.Name), want)
				}
			}
			var skus []string
			pg := c.sets.NewListSKUsPager(rg, name, nil)
			for pg.More() {
				p, err := pg.NextPage(ctx)
				if err != nil {
					t.Fatalf("skus: %v", err)
				}
				for _, s := range p.Value {
					skus = append(skus, val(s.SKU.Name))
				}
			}
			if !slices.Contains(skus, "Standard_A1") {
				t.Errorf("skus: %v", skus)
			}
		}},
		{"S1/power-actions", func(t *testing.T) {
			id := vmIDs[0]
			ctx := ctxT(t, 3*opTimeout)
			p1, err := c.sets.BeginPowerOff(ctx, rg, name, &armcompute.VirtualMachineScaleSetsClientBeginPowerOffOptions{VMInstanceIDs: ids(id)})
			done(t, "poweroff", p1, err)
			waitPower(t, c, rg, name, id, "PowerState/stopped")
			p2, err := c.sets.BeginStart(ctx, rg, name, &armcompute.VirtualMachineScaleSetsClientBeginStartOptions{VMInstanceIDs: ids(id)})
			done(t, "start", p2, err)
			waitPower(t, c, rg, name, id, "PowerState/running")
			p3, err := c.sets.BeginRestart(ctx, rg, name, &armcompute.VirtualMachineScaleSetsClientBeginRestartOptions{VMInstanceIDs: ids(id)})
			done(t, "restart", p3, err)
			waitPower(t, c, rg, name, id, "PowerState/running")
			p4, err := c.sets.BeginReimage(ctx, rg, name, &armcompute.VirtualMachineScaleSetsClientBeginReimageOptions{
				VMScaleSetReimageInput: &armcompute.VirtualMachineScaleSetReimageParameters{InstanceIDs: to.SliceOfPtrs(id)}})
			done(t, "reimage", p4, err)
			waitPower(t, c, rg, name, id, "PowerState/running")
			p5, err := c.sets.BeginDeallocate(ctx, rg, name, &armcompute.VirtualMachineScaleSetsClientBeginDeallocateOptions{VMInstanceIDs: ids(id)})
			done(t, "deallocate", p5, err)
			waitPower(t, c, rg, name, id, "PowerState/deallocated")
			// The other instance was not touched.
			if got := powerState(t, c, rg, name, vmIDs[1]); got != "PowerState/running" {
				t.Errorf("untouched instance %s: %s", vmIDs[1], got)
			}
		}},
		{"S3/delete-instances", func(t *testing.T) {
			p, err := c.sets.BeginDeleteInstances(ctxT(t, 30*time.Second), rg, name,
				armcompute.VirtualMachineScaleSetVMInstanceRequiredIDs{InstanceIDs: to.SliceOfPtrs(vmIDs[1])}, nil)
			done(t, "delete instances", p, err)
			left := waitVMs(t, c, rg, name, 1)
			if !cmp.Equal(left, vmIDs[:1]) {
				t.Errorf("instances left %v, want %v", left, vmIDs[:1])
			}
			g, err := c.sets.Get(ctxT(t, 30*time.Second), rg, name, nil)
			if err != nil {
				t.Fatalf("get: %v", err)
			}
			if val(g.SKU.Capacity) != 1 {
				t.Errorf("capacity after deleting one of two: %d", val(g.SKU.Capacity))
			}
			_, err = c.vms.Get(ctxT(t, 30*time.Second), rg, name, vmIDs[1], nil)
			responseError(t, "get deleted vm", err, http.StatusNotFound, "ResourceNotFound")
		}},
		{"etag-preconditions", func(t *testing.T) {
			ctx := ctxT(t, 60*time.Second)
			g1, err := c.sets.Get(ctx, rg, name, nil)
			if err != nil || g1.Etag == nil {
				t.Fatalf("get: %v etag=%v", err, g1.Etag)
			}
			etag1 := *g1.Etag
			p, err := c.sets.BeginUpdate(ctx, rg, name, armcompute.VirtualMachineScaleSetUpdate{Tags: map[string]*string{"step": to.Ptr("etag")}}, nil)
			done(t, "tag patch", p, err)
			g2, err := c.sets.Get(ctx, rg, name, nil)
			if err != nil || g2.Etag == nil || *g2.Etag == etag1 {
				t.Fatalf("etag did not change after PATCH: %v %v", err, g2.Etag)
			}
			body := armcompute.VirtualMachineScaleSet{Location: to.Ptr("local"), Tags: map[string]*string{"step": to.Ptr("stale")}}
			_, err = c.sets.BeginCreateOrUpdate(ctx, rg, name, body, &armcompute.VirtualMachineScaleSetsClientBeginCreateOrUpdateOptions{IfMatch: to.Ptr(etag1)})
			responseError(t, "If-Match stale etag", err, http.StatusPreconditionFailed, "PreconditionFailed")
			_, err = c.sets.BeginCreateOrUpdate(ctx, rg, name, body, &armcompute.VirtualMachineScaleSetsClientBeginCreateOrUpdateOptions{IfNoneMatch: to.Ptr("*")})
			responseError(t, "If-None-Match * on existing", err, http.StatusPreconditionFailed, "PreconditionFailed")
			g3, err := c.sets.Get(ctx, rg, name, nil)
			if err != nil || val(g3.Etag) != val(g2.Etag) || val(g3.Tags["step"]) != "etag" {
				t.Fatalf("refused PUTs changed the set: etag %v->%v tags %v (%v)", val(g2.Etag), val(g3.Etag), g3.Tags, err)
			}
			body.Tags["step"] = to.Ptr("current")
			p2, err := c.sets.BeginCreateOrUpdate(ctx, rg, name, body, &armcompute.VirtualMachineScaleSetsClientBeginCreateOrUpdateOptions{IfMatch: g3.Etag})
			res := done(t, "If-Match current etag", p2, err)
			if val(res.Tags["step"]) != "current" {
				t.Errorf("tags after If-Match PUT: %v", res.Tags)
			}
			// If-None-Match * creates a new set.
			p3, err := c.sets.BeginCreateOrUpdate(ctx, rg, "fresh", scaleSet(0, "latest"), &armcompute.VirtualMachineScaleSetsClientBeginCreateOrUpdateOptions{IfNoneMatch: to.Ptr("*")})
			done(t, "If-None-Match * on a new set", p3, err)
		}},
		{"S1/delete", func(t *testing.T) {
			for _, n := range []string{name, "aux-1", "aux-2", "fresh"} {
				p, err := c.sets.BeginDelete(ctxT(t, 30*time.Second), rg, n, nil)
				done(t, "delete "+n, p, err)
				_, err = c.sets.Get(ctxT(t, 30*time.Second), rg, n, nil)
				responseError(t, "get after delete", err, http.StatusNotFound, "ResourceNotFound")
			}
			pg := c.sets.NewListPager(rg, nil)
			for pg.More() {
				p, err := pg.NextPage(ctxT(t, 30*time.Second))
				if err != nil {
					t.Fatalf("list: %v", err)
				}
				if len(p.Value) != 0 {
					t.Errorf("sets left after delete: %d", len(p.Value))
				}
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.Fatalf("step %s failed; later steps depend on it", s.name)
		}
	}
}

// cmpImageRef compares the image coordinates a client set (not the
// read-only exactVersion).
var cmpImageRef = cmp.Comparer(func(a, b *armcompute.ImageReference) bool {
	if a == nil || b == nil {
		return a == b
	}
	eq := func(x, y *string) bool { return strings.EqualFold(val(x), val(y)) }
	return eq(a.Publisher, b.Publisher) && eq(a.Offer, b.Offer) && eq(a.SKU, b.SKU) && eq(a.Version, b.Version) && a.ID == nil && b.ID == nil
})
