package netattach

import (
	"net/netip"
	"os"
	"testing"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/nsg"
)

// TestNSGEnforced: two instances on one virtual network (real namespaces,
// veths, bridge); an NSG on the second denies TCP 7001 inbound from the
// virtual network: a connection from the first on 7001 fails, 7002 works;
// changing the rule to allow lets 7001 through; the rules follow the
// instance across a re-attachment and go when no NSG applies.
func TestNSGEnforced(t *testing.T) {
	requireNet(t)
	if err := nsg.Apply(-1, nil); err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: nftables: %v", err)
		}
		t.Skipf("nftables: %v", err)
	}
	nm := NewNames(t.TempDir())
	t.Cleanup(func() { nm.Sweep(nil, false) })
	vnet := driver.Network{NetworkID: "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/nsgtest", PrefixLen: 24}
	a, b := vnet, vnet
	a.PrivateIP, b.PrivateIP = "10.78.0.4", "10.78.0.5"
	env := nsg.Env{VNet: []netip.Prefix{netip.MustParsePrefix("10.78.0.0/16")}}
	ruleset := func(allow bool) *nsg.Ruleset {
		rs, err := nsg.Translate(nil, &nsg.Group{ID: "nsg", Rules: []nsg.Rule{{
			Name: "p", Priority: 100, Allow: allow, Direction: nsg.Inbound, Protocol: "Tcp",
			Src: []string{"VirtualNetwork"}, Dst: []string{"*"}, SrcPorts: []string{"*"}, DstPorts: []string{"7001"},
		}}}, env)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	kb := nsg.Key{NetworkID: b.NetworkID, IP: b.PrivateIP}
	if err := nsg.Default.Want(kb, ruleset(false)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsg.Default.Want(kb, nil) })
	pa, pb := netnsProc(t), netnsProc(t)
	for _, x := range []struct {
		id  string
		pid int
		n   driver.Network
	}{{"nsg-a", pa, a}, {"nsg-b", pb, b}} {
		if err := nm.AttachNetns(x.id, x.pid, x.n); err != nil {
			t.Fatalf("attach %s: %v", x.id, err)
		}
		t.Cleanup(func() { nm.Detach(x.id, x.n) })
	}
	serve(t, pb, 7001, "p")
	serve(t, pb, 7002, "q")
	serve(t, pa, 7001, "a")
	check := func(what string, pid int, addr string, want bool) {
		t.Helper()
		got, err := fetch(t, pid, addr)
		if ok := err == nil && got != ""; ok != want {
			t.Errorf("%s: %s answered %q (%v), want reachable %v", what, addr, got, err, want)
		}
	}
	check("denied port", pa, "10.78.0.5:7001", false)
	check("other port", pa, "10.78.0.5:7002", true)
	check("loopback (the load balancer's path)", pb, "127.0.0.1:7001", true)
	check("outbound from the protected instance", pb, "10.78.0.4:7001", true)
	if err := nsg.Default.Want(kb, ruleset(true)); err != nil {
		t.Fatal(err)
	}
	check("allowed after the change", pa, "10.78.0.5:7001", true)
	// A re-attachment (a restarted guest) gets the wanted rules at once.
	if err := nsg.Default.Want(kb, ruleset(false)); err != nil {
		t.Fatal(err)
	}
	if err := nm.AttachNetns("nsg-b", pb, b); err != nil {
		t.Fatal(err)
	}
	check("denied after re-attach", pa, "10.78.0.5:7001", false)
	if err := nsg.Default.Want(kb, nil); err != nil {
		t.Fatal(err)
	}
	check("no NSG", pa, "10.78.0.5:7001", true)
	// Detach forgets the namespace.
	nm.Detach("nsg-b", b)
	if _, ok := nsg.Default.Applied("nsg-b"); ok {
		t.Error("detached instance still tracked")
	}
}
