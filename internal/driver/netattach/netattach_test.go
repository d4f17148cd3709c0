package netattach

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/sandbox"
)

// requireNet skips without root or netlink, unless VMSSD_E2E=1 (then it
// fails).
func requireNet(t *testing.T) {
	t.Helper()
	err := Available()
	if err == nil {
		if _, err = exec.LookPath("unshare"); err == nil {
			return
		}
	}
	if os.Getenv("VMSSD_E2E") == "1" {
		t.Fatalf("VMSSD_E2E=1: %v", err)
	}
	t.Skip(err)
}

// netnsProc starts a process in a new network namespace (with loopback up)
// and returns its pid; it is killed when the test ends.
func netnsProc(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "sh", "-c", "ip link set lo up 2>/dev/null; exec sleep 300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	self, _ := os.Readlink("/proc/self/ns/net")
	for range 200 {
		if ns, err := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/ns/net"); err == nil && ns != self {
			if exe, _ := os.Readlink("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/exe"); exe != "" && exe != "/usr/bin/unshare" {
				return cmd.Process.Pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("unshare did not enter a new network namespace")
	return 0
}

// serve answers every connection to port in pid's namespace with word.
func serve(t *testing.T, pid int, port int, word string) {
	t.Helper()
	ns, err := sandbox.OpenNetns(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ln, err := ns.Listen(t.Context(), net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, word)
			c.Close()
		}
	}()
}

// fetch connects from pid's namespace to addr and returns what it says.
func fetch(t *testing.T, pid int, addr string) (string, error) {
	t.Helper()
	ns, err := sandbox.OpenNetns(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	c, err := ns.Dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestNamesAndValidate(t *testing.T) {
	a, b := NewNames("/data/one"), NewNames("/data/two")
	for _, name := range []string{a.Bridge("net"), a.Veth("id"), a.Tap("id"), a.peer("id")} {
		if len(name) != 15 {
			t.Errorf("%q: %d characters, want 15 (IFNAMSIZ-1)", name, len(name))
		}
	}
	if a.Bridge("net") == b.Bridge("net") || a.Veth("id") == b.Veth("id") {
		t.Error("two scopes share names")
	}
	if a.Veth("id") != NewNames("/data/one").Veth("id") || a.Veth("id") == a.Veth("id2") {
		t.Error("names are not deterministic per id")
	}
	if Scope("/d/hosts/local/instances") != Scope("/d/hosts/local/vms") {
		t.Error("the drivers of one vmssd do not share a scope")
	}
	mac, _ := MAC("vm-1", driver.Network{})
	if mac[0]&1 != 0 || mac[0]&2 == 0 {
		t.Errorf("derived MAC %s is not unicast, locally administered", mac)
	}
	ok := driver.Network{NetworkID: "n", PrivateIP: "10.0.0.4", PrefixLen: 24, Gateway: "10.0.0.1", MAC: "02:00:00:00:00:01"}
	for _, tc := range []struct {
		name string
		mod  func(*driver.Network)
		ok   bool
	}{
		{"valid", func(*driver.Network) {}, true},
		{"no network", func(n *driver.Network) { *n = driver.Network{} }, true},
		{"ipv6", func(n *driver.Network) { n.PrivateIP = "fd00::4" }, false},
		{"no ip", func(n *driver.Network) { n.PrivateIP = "" }, false},
		{"prefix 0", func(n *driver.Network) { n.PrefixLen = 0 }, false},
		{"prefix 32", func(n *driver.Network) { n.PrefixLen = 32 }, false},
		{"gateway outside", func(n *driver.Network) { n.Gateway = "10.0.1.1" }, false},
		{"gateway is the ip", func(n *driver.Network) { n.Gateway = "10.0.0.4" }, false},
		{"multicast mac", func(n *driver.Network) { n.MAC = "01:00:00:00:00:01" }, false},
		{"bad mac", func(n *driver.Network) { n.MAC = "x" }, false},
	} {
		n := ok
		tc.mod(&n)
		err := Validate(n)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, driver.ErrNetworkInvalid)) {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
}

// TestIsolation attaches four namespaces to two networks with the same
// address range: each reaches its neighbour, not the other network's, and
// not the host even with a hand-made route and neighbour entry.
func TestIsolation(t *testing.T) {
	requireNet(t)
	nm := NewNames(t.TempDir())
	t.Cleanup(func() { nm.Sweep(nil, false) })
	netA := driver.Network{NetworkID: "/subscriptions/a/vnet", PrefixLen: 24, Gateway: "10.77.0.1"}
	netB := driver.Network{NetworkID: "/subscriptions/b/vnet", PrefixLen: 24}
	type inst struct {
		id  string
		n   driver.Network
		ip  string
		pid int
	}
	insts := []*inst{{id: "a1", n: netA, ip: "10.77.0.4"}, {id: "a2", n: netA, ip: "10.77.0.5"}, {id: "b1", n: netB, ip: "10.77.0.4"}, {id: "b2", n: netB, ip: "10.77.0.5"}}
	for _, in := range insts {
		in.pid = netnsProc(t)
		in.n.PrivateIP = in.ip
		if err := nm.AttachNetns(in.id, in.pid, in.n); err != nil {
			t.Fatalf("attach %s: %v", in.id, err)
		}
		if !nm.Attached(in.id, in.n, false) {
			t.Fatalf("%s not attached", in.id)
		}
		serve(t, in.pid, 8080, in.id)
	}
	for _, tc := range []struct{ from, want string }{{"a1", "a2"}, {"a2", "a1"}, {"b1", "b2"}, {"b2", "b1"}} {
		from := insts[slices.IndexFunc(insts, func(i *inst) bool { return i.id == tc.from })]
		peer := insts[slices.IndexFunc(insts, func(i *inst) bool { return i.id == tc.want })]
		got, err := fetch(t, from.pid, net.JoinHostPort(peer.ip, "8080"))
		if err != nil || got != tc.want {
			t.Errorf("%s -> %s (%s): %q, %v", tc.from, tc.want, peer.ip, got, err)
		}
	}
	// Re-attaching replaces the link (Recover after a crash in between).
	if err := nm.AttachNetns("a1", insts[0].pid, insts[0].n); err != nil {
		t.Fatalf("re-attach: %v", err)
	}
	if got, err := fetch(t, insts[0].pid, "10.77.0.5:8080"); err != nil || got != "a2" {
		t.Errorf("after re-attach: %q, %v", got, err)
	}

	// The host: listening on every address, unreachable from a1 even with
	// a route and a neighbour entry pointing at the bridge.
	host, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "host")
			c.Close()
		}
	}()
	port := host.Addr().(*net.TCPAddr).Port
	br, err := netlink.LinkByName(nm.Bridge(netA.NetworkID))
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.GetFromPid(insts[0].pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	eth0, err := h.LinkByName(GuestIfName)
	if err != nil {
		t.Fatal(err)
	}
	tried := 0
	for _, a := range addrs {
		if a.IP.IsLoopback() || a.IP.IsLinkLocalUnicast() {
			continue
		}
		dst := &net.IPNet{IP: a.IP, Mask: net.CIDRMask(32, 32)}
		h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK})
		h.NeighAdd(&netlink.Neigh{LinkIndex: eth0.Attrs().Index, IP: a.IP, HardwareAddr: br.Attrs().HardwareAddr, State: netlink.NUD_PERMANENT})
		if got, err := fetch(t, insts[0].pid, net.JoinHostPort(a.IP.String(), strconv.Itoa(port))); err == nil {
			t.Errorf("a1 reached the host at %s: %q", a.IP, got)
		}
		tried++
	}
	if tried == 0 {
		t.Log("the host has no non-loopback IPv4 address to try")
	}
	if got, _ := netlink.AddrList(br, netlink.FAMILY_ALL); len(got) != 0 {
		t.Errorf("the bridge has addresses: %v", got)
	}

	// Detach removes the links, and the bridge with the last one.
	for _, in := range insts {
		if err := nm.Detach(in.id, in.n); err != nil {
			t.Errorf("detach %s: %v", in.id, err)
		}
	}
	if links, err := nm.Links(); err != nil || len(links) != 0 {
		t.Errorf("left after detach: %v, %v", links, err)
	}
}

// TestCrashLeftovers: a namespace that ends takes its veth along; what a
// crash leaves (an unmoved veth, an empty bridge) Sweep removes, keeping
// the instances it is told to keep.
func TestCrashLeftovers(t *testing.T) {
	requireNet(t)
	nm := NewNames(t.TempDir())
	t.Cleanup(func() { nm.Sweep(nil, false); nm.Sweep(nil, true) })
	n := driver.Network{NetworkID: "net", PrivateIP: "10.78.0.4", PrefixLen: 24}

	pid := netnsProc(t)
	if err := nm.AttachNetns("keep", pid, n); err != nil {
		t.Fatal(err)
	}
	gone := netnsProc(t)
	n2 := n
	n2.PrivateIP = "10.78.0.5"
	if err := nm.AttachNetns("gone", gone, n2); err != nil {
		t.Fatal(err)
	}
	syscallKill(t, gone)
	waitFor(t, "the veth of an ended namespace to vanish", func() bool { return !nm.Attached("gone", n2, false) })

	// A veth pair that never reached a namespace, and an empty bridge of
	// another network.
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nm.Veth("ghost")}, PeerName: nm.peer("ghost")}); err != nil {
		t.Fatal(err)
	}
	bridgeMu.Lock()
	_, err := nm.ensureBridge("other")
	bridgeMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tap, err := nm.CreateTap("vm", driver.Network{NetworkID: "net", PrivateIP: "10.78.0.6", PrefixLen: 24})
	if err != nil {
		t.Fatal(err)
	}
	if !nm.Attached("vm", n, true) {
		t.Error("tap not on the bridge")
	}

	removed, err := nm.Sweep([]string{"keep"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 2 || !slices.Contains(removed, nm.Bridge("other")) {
		t.Errorf("swept %v, want the empty bridge %s and one end of the ghost veth", removed, nm.Bridge("other"))
	}
	links, _ := nm.Links()
	for _, name := range []string{nm.Veth("ghost"), nm.peer("ghost"), nm.Bridge("other")} {
		if slices.Contains(links, name) {
			t.Errorf("%s left after Sweep", name)
		}
	}
	if !nm.Attached("keep", n, false) || !nm.Attached("vm", n, true) {
		t.Error("Sweep removed what it had to keep (or another driver's TAP)")
	}
	if got, err := fetch(t, pid, "10.78.0.4:1"); err == nil {
		t.Errorf("nothing listens, yet: %q", got)
	}
	// A TAP vanishes with its last descriptor.
	tap.Close()
	waitFor(t, "a closed TAP to vanish", func() bool { return !nm.Attached("vm", n, true) })
	if err := nm.Detach("keep", n); err != nil {
		t.Fatal(err)
	}
	if links, _ := nm.Links(); len(links) != 0 {
		t.Errorf("left: %v", links)
	}
}

func syscallKill(t *testing.T, pid int) {
	t.Helper()
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 300 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
