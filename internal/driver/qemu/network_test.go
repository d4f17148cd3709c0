package qemu

import (
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/drivertest"
	"github.com/vmssd/vmssd/internal/driver/netattach"
)

// TestNetwork (issue 9): VMs on one virtual network reach each other by
// private IP over their TAPs; a VM on another network with the same range
// is not reached (its address finds the neighbour of the caller's own
// network) and reaches nothing of the first; the loopback forwards keep
// working; Recover re-adopts the VMs with their TAPs and sweeps orphans;
// nothing is left after the deletes.
func TestNetwork(t *testing.T) {
	requireQEMU(t)
	drivertest.RequireNetattach(t)
	t.Parallel()
	img := testImage(t, imageOpts{version: "1.0.0"})
	root := t.TempDir()
	names := netattach.NewNames(netattach.Scope(root))
	t.Cleanup(func() {
		if links, _ := names.Links(); len(links) != 0 {
			t.Errorf("links left behind: %v", links)
			names.Sweep(nil, true)
		}
	})
	d := newTestDriver(t, root)
	netA := driver.Network{NetworkID: "/subscriptions/a/vnet", PrefixLen: 24, Gateway: "10.89.0.1"}
	netB := driver.Network{NetworkID: "/subscriptions/b/vnet", PrefixLen: 24, Gateway: "10.89.0.1"}
	vms := []struct {
		id string
		n  driver.Network
		ip string
	}{{"na-1", netA, "10.89.0.4"}, {"na-2", netA, "10.89.0.5"}, {"nb-1", netB, "10.89.0.5"}}
	for _, vm := range vms {
		spec := testSpec(vm.id, img)
		spec.Network = vm.n
		spec.Network.PrivateIP = vm.ip
		if _, err := d.Create(t.Context(), spec); err != nil {
			t.Fatalf("create %s: %v", vm.id, err)
		}
	}
	sts := map[string]driver.Status{}
	for _, vm := range vms {
		st := waitRunning(t, d, vm.id, nil) // through the loopback forward
		if st.Network != netattach.ModeBridge || st.PrivateIP != vm.ip || !names.Attached(vm.id, vm.n, true) {
			t.Errorf("%s: network %q %q, attached %v", vm.id, st.Network, st.PrivateIP, names.Attached(vm.id, vm.n, true))
		}
		sts[vm.id] = st
	}
	fetch := func(from, ip string) string { return guestGet(t, sts[from], "/cgi-bin/fetch?"+ip) }
	check := func(when string) {
		t.Helper()
		if got := fetch("na-1", "10.89.0.5"); !strings.Contains(got, "vmssd.vmid=na-2") {
			t.Errorf("%s: na-1 -> 10.89.0.5 did not reach na-2: %q", when, got)
		}
		if got := fetch("na-2", "10.89.0.4"); !strings.Contains(got, "vmssd.vmid=na-1") {
			t.Errorf("%s: na-2 -> 10.89.0.4 did not reach na-1: %q", when, got)
		}
		if got := fetch("nb-1", "10.89.0.4"); strings.Contains(got, "vmssd.vmid=") {
			t.Errorf("%s: nb-1 reached network A: %q", when, got)
		}
	}
	check("created")

	// vmssd dies; a persistent TAP of an unknown VM is left behind.
	d.Close()
	ghost := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: names.Tap("ghost")}, Mode: netlink.TUNTAP_MODE_TAP}
	if err := netlink.LinkAdd(ghost); err != nil {
		t.Fatal(err)
	}
	d2, _ := recovered(t, root)
	for _, vm := range vms {
		st, err := d2.Inspect(t.Context(), vm.id)
		if err != nil || st.PID != sts[vm.id].PID || st.Network != netattach.ModeBridge {
			t.Errorf("%s after Recover: %+v, %v", vm.id, st, err)
		}
	}
	if _, err := netlink.LinkByName(names.Tap("ghost")); err == nil {
		t.Error("Recover did not sweep an orphan TAP")
	}
	check("recovered")

	for _, vm := range vms {
		if err := d2.Delete(t.Context(), vm.id); err != nil {
			t.Fatalf("delete %s: %v", vm.id, err)
		}
	}
	if links, err := names.Links(); err != nil || len(links) != 0 {
		t.Errorf("left after deletes: %v %v", links, err)
	}
}
