package process

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/drivertest"
	"github.com/vmssd/vmssd/internal/driver/sandbox"
	"github.com/vmssd/vmssd/internal/nsg"
)

// TestNetworkSecurityGroup (issue 9): two sandboxed instances on one
// virtual network; an NSG on the second denies TCP on its guest port
// inbound from the virtual network: the first cannot connect there,
// another port of the second (a listener in its namespace) works, and the
// host's loopback forward (health) keeps working; allowing the port lets
// the first through; a restarted guest (a new namespace) gets the rules
// at once.
func TestNetworkSecurityGroup(t *testing.T) {
	requireSandbox(t)
	drivertest.RequireNetattach(t)
	if err := nsg.Apply(-1, nil); err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: nftables: %v", err)
		}
		t.Skipf("nftables: %v", err)
	}
	root := t.TempDir()
	cleanupSandbox(t, root)
	d := newTestDriver(t, root, inSandbox)
	img := drivertest.ProcessImage(t, "1.0.0")
	vnet := driver.Network{NetworkID: "/subscriptions/n/resourcegroups/r/providers/microsoft.network/virtualnetworks/nsg", PrefixLen: 24}
	a, b := vnet, vnet
	a.PrivateIP, b.PrivateIP = "10.89.0.4", "10.89.0.5"
	kb := nsg.Key{NetworkID: b.NetworkID, IP: b.PrivateIP}
	t.Cleanup(func() { nsg.Default.Want(kb, nil) })
	env := nsg.Env{VNet: []netip.Prefix{netip.MustParsePrefix("10.89.0.0/16")}}
	want := func(access string, port string) {
		t.Helper()
		rs, err := nsg.Translate(nil, &nsg.Group{ID: "nsg", Rules: []nsg.Rule{{
			Name: "guest-port", Priority: 100, Allow: access == "Allow", Direction: nsg.Inbound, Protocol: "Tcp",
			Src: []string{"VirtualNetwork"}, Dst: []string{"*"}, SrcPorts: []string{"*"}, DstPorts: []string{port},
		}}}, env)
		if err != nil {
			t.Fatal(err)
		}
		if err := nsg.Default.Want(kb, rs); err != nil {
			t.Fatal(err)
		}
	}
	// The guest's port is known once it runs; deny every port but 7002
	// first, then narrow the rule down to the guest's port.
	want("Deny", "1-7001")
	sts := map[string]driver.Status{}
	for _, x := range []struct {
		id string
		n  driver.Network
	}{{"nsg-a", a}, {"nsg-b", b}} {
		spec := testSpec(x.id, img)
		spec.OperatorImage = false
		spec.Network = x.n
		if _, err := d.Create(t.Context(), spec); err != nil {
			t.Fatalf("create %s: %v", x.id, err)
		}
		cleanupDelete(t, d, x.id)
	}
	for _, id := range []string{"nsg-a", "nsg-b"} {
		sts[id] = waitHealthy(t, d, id, nil) // the loopback forward passes
	}
	port := guestPort(sts["nsg-b"])
	if p, _ := strconv.Atoi(port); p > 7001 {
		want("Deny", port)
	}
	bAddr := net.JoinHostPort(b.PrivateIP, port)
	reach := func() error {
		_, err := nsGet(t, sts["nsg-a"].PID, "http://"+bAddr+"/metadata")
		return err
	}
	if err := reach(); err == nil {
		t.Fatalf("nsg-a reached %s although the NSG denies it", bAddr)
	}
	// Another port of nsg-b's namespace works.
	ns, err := sandbox.OpenNetns(sts["nsg-b"].PID)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ns.Listen(t.Context(), net.JoinHostPort(b.PrivateIP, "7002"))
	ns.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("other port"))
			c.Close()
		}
	}()
	nsA, err := sandbox.OpenNetns(sts["nsg-a"].PID)
	if err != nil {
		t.Fatal(err)
	}
	defer nsA.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	c, err := nsA.Dial(ctx, net.JoinHostPort(b.PrivateIP, "7002"))
	cancel()
	if err != nil {
		t.Fatalf("port 7002 of nsg-b: %v", err)
	}
	c.Close()
	// Health through the loopback forward still passes.
	if code, body := get(sts["nsg-b"].HealthURL); code != http.StatusOK {
		t.Errorf("nsg-b health under the NSG: %d %s", code, body)
	}
	// Allowing the port lets nsg-a through.
	want("Allow", port)
	if err := reach(); err != nil {
		t.Fatalf("after allowing %s: %v", port, err)
	}
	// A restarted guest (a new namespace) is protected from the start.
	want("Deny", "1-65535")
	if _, err := d.Restart(t.Context(), "nsg-b"); err != nil {
		t.Fatal(err)
	}
	sts["nsg-b"] = waitHealthy(t, d, "nsg-b", func(st driver.Status) bool { return st.PID != sts["nsg-b"].PID })
	bAddr = net.JoinHostPort(b.PrivateIP, guestPort(sts["nsg-b"]))
	if err := reach(); err == nil || strings.Contains(err.Error(), "refused") {
		t.Errorf("restarted nsg-b: %s answered or refused (%v): the rules were not applied", bAddr, err)
	}
}
