package nsg

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireRoot skips without root, unless VMSSD_E2E=1 (then it fails).
func requireRoot(t *testing.T) {
	t.Helper()
	var err error
	if os.Geteuid() != 0 {
		err = errors.New("not root")
	} else if _, err = netlink.LinkList(); err == nil {
		err = Apply(-1, nil) // nftables reachable (removes nothing here)
	}
	if err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: %v", err)
		}
		t.Skipf("nftables in namespaces needs root: %v", err)
	}
}

// inNS runs f on a thread inside ns; the thread is retired afterwards.
func inNS(ns netns.NsHandle, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(ns); err != nil {
			ch <- err
			return
		}
		ch <- f()
	}()
	return <-ch
}

// pair makes two network namespaces joined by a veth, 10.77.0.1 and
// 10.77.0.2 (/24), and returns them.
func pair(t *testing.T) (a, b netns.NsHandle) {
	t.Helper()
	newNS := func() netns.NsHandle {
		var h netns.NsHandle
		ch := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // the thread moved: it dies with the goroutine
			var err error
			h, err = netns.New()
			ch <- err
		}()
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}
	a, b = newNS(), newNS()
	suffix := strconv.Itoa(os.Getpid() % 100000)
	va, vb := "nsgta"+suffix, "nsgtb"+suffix
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: va}, PeerName: vb}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		name string
		ns   netns.NsHandle
		addr string
	}{{va, a, "10.77.0.1/24"}, {vb, b, "10.77.0.2/24"}} {
		l, err := netlink.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetNsFd(l, int(x.ns)); err != nil {
			t.Fatal(err)
		}
		h, err := netlink.NewHandleAt(x.ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		l, err = h.LinkByName(x.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(x.addr)
		if err := h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		lo, err := h.LinkByName("lo")
		if err == nil {
			h.LinkSetUp(lo)
		}
	}
	return a, b
}

func listen(t *testing.T, ns netns.NsHandle, addr string) {
	t.Helper()
	var ln net.Listener
	if err := inNS(ns, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("ok"))
			c.Close()
		}
	}()
}

func dial(ns netns.NsHandle, addr string) error {
	return inNS(ns, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		buf := make([]byte, 2)
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err = c.Read(buf)
		return err
	})
}

// TestEnforcedInNamespace: an NSG denying TCP 7001 inbound from the
// virtual network blocks it between two real namespaces while 7002 works
// (and the loopback path stays open); allowing it again lets it through.
func TestEnforcedInNamespace(t *testing.T) {
	requireRoot(t)
	a, b := pair(t)
	for _, addr := range []string{"10.77.0.2:7001", "10.77.0.2:7002", "127.0.0.1:7001"} {
		listen(t, b, addr)
	}
	env := Env{VNet: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/16")}}
	nsgWith := func(allow bool) *Group {
		return &Group{ID: "nsg", Rules: []Rule{{Name: "p", Priority: 100, Allow: allow, Direction: Inbound, Protocol: "Tcp",
			Src: []string{"VirtualNetwork"}, Dst: []string{"*"}, SrcPorts: []string{"*"}, DstPorts: []string{"7001"}}}}
	}
	e := NewEnforcer(nil)
	k := Key{NetworkID: "vnet", IP: "10.77.0.2"}
	rs, err := Translate(nil, nsgWith(false), env)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Want(k, rs); err != nil {
		t.Fatal(err)
	}
	// Attach by a process in b: this test's own thread parked there.
	pid := parkIn(t, b)
	if err := e.Attach("inst", k, pid, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Detach("inst") })
	if err := dial(a, "10.77.0.2:7001"); err == nil {
		t.Fatal("port 7001 reachable although the NSG denies it")
	}
	if err := dial(a, "10.77.0.2:7002"); err != nil {
		t.Fatalf("port 7002: %v", err)
	}
	if err := dial(b, "127.0.0.1:7001"); err != nil {
		t.Fatalf("loopback 7001 (the load balancer's path): %v", err)
	}
	// Outbound default rules: b may open a connection to a (vnet).
	listen(t, a, "10.77.0.1:7003")
	if err := dial(b, "10.77.0.1:7003"); err != nil {
		t.Fatalf("outbound to the vnet: %v", err)
	}
	rs, _ = Translate(nil, nsgWith(true), env)
	if err := e.Want(k, rs); err != nil {
		t.Fatal(err)
	}
	if err := dial(a, "10.77.0.2:7001"); err != nil {
		t.Fatalf("port 7001 after allowing it: %v", err)
	}
	// No NSG: the table goes.
	if err := e.Want(k, nil); err != nil {
		t.Fatal(err)
	}
	if err := dial(a, "10.77.0.2:7001"); err != nil {
		t.Fatalf("port 7001 without NSG: %v", err)
	}
}

// parkIn parks a thread in ns until the test ends and returns its id
// (/proc/<tid>/ns/net names ns).
func parkIn(t *testing.T, ns netns.NsHandle) int {
	t.Helper()
	tid, done := make(chan int, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			tid <- -1
			return
		}
		tid <- unix.Gettid()
		<-done
	}()
	id := <-tid
	if id < 0 {
		t.Fatal("cannot enter the namespace")
	}
	t.Cleanup(func() { close(done) })
	return id
}
