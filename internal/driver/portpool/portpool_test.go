package portpool

import (
	"errors"
	"net"
	"strconv"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, r := range []Range{{}, {1, 1}, {1024, 2048}, {65535, 65535}} {
		if err := r.Validate(); err != nil {
			t.Errorf("%v: %v", r, err)
		}
	}
	for _, r := range []Range{{0, 10}, {10, 9}, {1, 65536}, {-1, 5}} {
		if err := r.Validate(); err == nil {
			t.Errorf("%v: valid", r)
		}
	}
}

func TestReserve(t *testing.T) {
	p := New(Range{})
	if !p.Reserve(5000, "a") || !p.Reserve(5000, "a") {
		t.Fatal("reserving a free port (again) failed")
	}
	if p.Reserve(5000, "b") {
		t.Error("a held port was reserved for another instance")
	}
	if p.Owner(5000) != "a" || p.Owner(5001) != "" {
		t.Errorf("owners: %q %q", p.Owner(5000), p.Owner(5001))
	}
	p.Release(5000, "b") // not b's
	if p.Owner(5000) != "a" {
		t.Error("released by another instance")
	}
	p.Release(0, "a")
	p.Release(5000, "a")
	if p.Owner(5000) != "" || !p.Reserve(5000, "b") {
		t.Error("release did not free the port")
	}
}

// freeRange returns a range of n ports starting at one the kernel picked.
func freeRange(t *testing.T, n int) Range {
	t.Helper()
	port, err := kernelPort()
	if err != nil {
		t.Fatal(err)
	}
	first := min(port, 65535-n+1)
	return Range{first, first + n - 1}
}

func TestAllocateRange(t *testing.T) {
	r := freeRange(t, 3)
	p := New(r)
	// A port something listens on is skipped.
	var busy net.Listener
	for port := r.First; port <= r.Last && busy == nil; port++ {
		busy, _ = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	if busy == nil {
		t.Skip("no port of the range can be bound")
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	if Free(busyPort) {
		t.Errorf("Free(%d) for a port in use", busyPort)
	}
	got := map[int]bool{}
	for _, id := range []string{"a", "b"} {
		port, err := p.Allocate(id)
		if err != nil {
			t.Skipf("allocate: %v (ports of the range in use)", err)
		}
		if port < r.First || port > r.Last || port == busyPort || got[port] || p.Owner(port) != id {
			t.Fatalf("%s got port %d (range %v, busy %d, allocated %v)", id, port, r, busyPort, got)
		}
		got[port] = true
	}
	if _, err := p.Allocate("c"); !errors.Is(err, errNoPort) {
		t.Errorf("allocating from an exhausted range: %v", err)
	}
	for port := range got {
		p.Release(port, p.Owner(port))
	}
	if _, err := p.Allocate("c"); err != nil {
		t.Errorf("allocate after release: %v", err)
	}
}

func TestAllocateKernel(t *testing.T) {
	p := New(Range{})
	a, err := p.Allocate("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Allocate("b")
	if err != nil {
		t.Fatal(err)
	}
	if a == b || a == 0 || p.Owner(a) != "a" || p.Owner(b) != "b" {
		t.Errorf("ports %d (%s) and %d (%s)", a, p.Owner(a), b, p.Owner(b))
	}
	if !Free(a) {
		t.Errorf("a reserved port that nothing listens on is not free")
	}
}
