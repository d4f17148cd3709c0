package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/drivertest"
	"github.com/vmssd/vmssd/internal/driver/netattach"
	"github.com/vmssd/vmssd/internal/driver/sandbox"
)

// nsGet GETs u from inside the network namespace of process pid (an
// instance's container) and returns the body.
func nsGet(t *testing.T, pid int, u string) (string, error) {
	t.Helper()
	ns, err := sandbox.OpenNetns(pid)
	if err != nil {
		return "", err
	}
	defer ns.Close()
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return ns.Dial(ctx, addr)
		},
	}}
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func guestPort(st driver.Status) string {
	_, port, _ := net.SplitHostPort(st.Ports["health"])
	return port
}

// TestNetworkBridge (issue 9): sandboxed instances on one virtual network
// reach each other by private IP; two networks with the same range both
// work and cannot reach each other; the host still reaches each through
// its loopback forward; a crash that lost a link is repaired by Recover,
// orphans are swept, and nothing is left after the deletes.
func TestNetworkBridge(t *testing.T) {
	requireSandbox(t)
	drivertest.RequireNetattach(t)
	root := t.TempDir()
	cleanupSandbox(t, root)
	names := netattach.NewNames(netattach.Scope(root))
	t.Cleanup(func() {
		if links, _ := names.Links(); len(links) != 0 {
			t.Errorf("links left behind: %v", links)
			names.Sweep(nil, false)
		}
	})
	d := newTestDriver(t, root, inSandbox)
	img := drivertest.ProcessImage(t, "1.0.0")
	netA := driver.Network{NetworkID: "/subscriptions/a/resourcegroups/r/providers/microsoft.network/virtualnetworks/v", PrefixLen: 24, Gateway: "10.88.0.1"}
	netB := driver.Network{NetworkID: "/subscriptions/b/resourcegroups/r/providers/microsoft.network/virtualnetworks/v", PrefixLen: 24, Gateway: "10.88.0.1"}
	type inst struct {
		id string
		n  driver.Network
		ip string
		st driver.Status
	}
	insts := []*inst{
		{id: "a1", n: netA, ip: "10.88.0.4"}, {id: "a2", n: netA, ip: "10.88.0.5"},
		{id: "b1", n: netB, ip: "10.88.0.4"}, {id: "b2", n: netB, ip: "10.88.0.5"}, {id: "b3", n: netB, ip: "10.88.0.9"},
		{id: "lo"},
	}
	byID := map[string]*inst{}
	for _, in := range insts {
		spec := testSpec(in.id, img)
		spec.OperatorImage = false
		if in.ip != "" {
			in.n.PrivateIP = in.ip
			spec.Network = in.n
		}
		if _, err := d.Create(t.Context(), spec); err != nil {
			t.Fatalf("create %s: %v", in.id, err)
		}
		cleanupDelete(t, d, in.id)
		byID[in.id] = in
	}
	for _, in := range insts {
		in.st = waitHealthy(t, d, in.id, nil) // through the loopback forward
		wantMode, wantIP := "bridge", in.ip
		if in.ip == "" {
			wantMode = "loopback"
		}
		if in.st.Network != wantMode || in.st.PrivateIP != wantIP {
			t.Errorf("%s: network %q %q, want %q %q", in.id, in.st.Network, in.st.PrivateIP, wantMode, wantIP)
		}
	}
	// The attached guests cannot open raw or packet sockets (no forged
	// addresses on the bridge), and ping through ICMP sockets instead.
	for _, in := range insts {
		raw := capEff(t, in.st.PID)&(1<<13) != 0 // CAP_NET_RAW
		if raw != (in.ip == "") {
			t.Errorf("%s: CAP_NET_RAW %v", in.id, raw)
		}
	}
	if out, err := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(byID["a1"].st.PID)+"/ns/net", "cat", "/proc/sys/net/ipv4/ping_group_range").CombinedOutput(); err != nil {
		t.Logf("cannot read ping_group_range: %v %s", err, out)
	} else if got, want := strings.Join(strings.Fields(string(out)), " "), fmt.Sprintf("%d %d", sandbox.DefaultHostID, sandbox.DefaultHostID+sandbox.DefaultIDs-1); got != want {
		// The container's groups 0-65535, as the host sees them.
		t.Errorf("ping_group_range in a1's namespace: %q, want %q", got, want)
	}
	reach := func(from, to string) (string, error) {
		f, dst := byID[from], byID[to]
		return nsGet(t, f.st.PID, "http://"+net.JoinHostPort(dst.ip, guestPort(dst.st))+"/metadata")
	}
	check := func(when string) {
		t.Helper()
		for _, tc := range []struct{ from, to string }{{"a1", "a2"}, {"a2", "a1"}, {"b1", "b2"}, {"b2", "b1"}, {"b3", "b1"}} {
			if body, err := reach(tc.from, tc.to); err != nil || !strings.Contains(body, `"vmId": "`+tc.to+`"`) && !strings.Contains(body, `"vmId":"`+tc.to+`"`) {
				t.Errorf("%s: %s -> %s: %q, %v", when, tc.from, tc.to, body, err)
			}
		}
		// a1 -> b2's port at 10.88.0.5 finds a2 (its own network), where
		// nothing listens on that port; b3's address is not on network A.
		for _, tc := range []struct{ from, to string }{{"a1", "b2"}, {"a1", "b3"}, {"b1", "a2"}} {
			if body, err := reach(tc.from, tc.to); err == nil {
				t.Errorf("%s: %s reached %s across networks: %q", when, tc.from, tc.to, body)
			}
		}
	}
	check("created")

	// A crash: vmssd dies, and a1's link is gone meanwhile (as if vmssd had
	// died between starting the container and attaching it); a stray veth
	// of an unknown instance is left.
	d.Close()
	if l, err := netlink.LinkByName(names.Veth("a1")); err != nil {
		t.Fatal(err)
	} else if err := netlink.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	ghost := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: names.Veth("ghost")}, PeerName: "vmssdtestghost"}
	if err := netlink.LinkAdd(ghost); err != nil {
		t.Fatal(err)
	}
	d2 := newTestDriver(t, root, inSandbox)
	if _, err := d2.Recover(t.Context()); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	for _, in := range insts {
		cleanupDelete(t, d2, in.id)
		st, err := d2.Inspect(t.Context(), in.id)
		if err != nil || st.PID != in.st.PID {
			t.Errorf("%s not re-adopted: %+v %v", in.id, st, err)
		}
		if in.ip != "" && !names.Attached(in.id, in.n, false) {
			t.Errorf("%s not attached after Recover", in.id)
		}
	}
	if _, err := netlink.LinkByName(names.Veth("ghost")); err == nil {
		t.Error("Recover did not sweep an orphan veth")
	}
	check("recovered")

	// A restart of the guest gets a new namespace, attached again.
	if _, err := d2.Restart(t.Context(), "a2"); err != nil {
		t.Fatal(err)
	}
	byID["a2"].st = waitHealthy(t, d2, "a2", func(st driver.Status) bool { return st.PID != byID["a2"].st.PID })
	check("restarted")

	for _, in := range insts {
		if err := d2.Delete(t.Context(), in.id); err != nil {
			t.Fatalf("delete %s: %v", in.id, err)
		}
	}
	if links, err := names.Links(); err != nil || len(links) != 0 {
		t.Errorf("left after deletes: %v %v", links, err)
	}
}

// TestCreateRejectsBadNetwork: a network attachment that cannot be made is
// refused before anything is created, on any host.
func TestCreateRejectsBadNetwork(t *testing.T) {
	root := t.TempDir()
	d := newTestDriver(t, root)
	spec := testSpec("bad-net", drivertest.ProcessImage(t, "1.0.0"))
	spec.Network = driver.Network{NetworkID: "n", PrivateIP: "10.0.0.300", PrefixLen: 24}
	if _, err := d.Create(t.Context(), spec); !errors.Is(err, driver.ErrNetworkInvalid) {
		t.Fatalf("Create with a bad private IP: %v", err)
	}
	if _, err := d.Inspect(t.Context(), "bad-net"); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("the instance exists: %v", err)
	}
}

// capEff returns the effective capabilities of process pid.
func capEff(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no CapEff in /proc/%d/status", pid)
	return 0
}
