package network

import (
	"net/netip"
	"testing"

	"pgregory.net/rapid"
)

func TestSubnetRange(t *testing.T) {
	for _, tc := range []struct {
		prefix, first, last string
		ok                  bool
	}{
		{"10.0.0.0/24", "10.0.0.4", "10.0.0.254", true},
		{"10.0.1.0/29", "10.0.1.4", "10.0.1.6", true},
		{"10.0.0.0/16", "10.0.0.4", "10.0.255.254", true},
		{"10.0.0.0/30", "", "", false},
		{"fd00::/64", "", "", false},
	} {
		r, ok := SubnetRange(netip.MustParsePrefix(tc.prefix))
		if ok != tc.ok {
			t.Errorf("%s: ok %v, want %v", tc.prefix, ok, tc.ok)
			continue
		}
		if ok && (r.First.String() != tc.first || r.Last.String() != tc.last) {
			t.Errorf("%s: %s-%s, want %s-%s", tc.prefix, r.First, r.Last, tc.first, tc.last)
		}
	}
}

func TestPoolRange(t *testing.T) {
	for _, tc := range []struct{ prefix, first, last string }{
		{"127.0.1.0/24", "127.0.1.1", "127.0.1.254"},
		{"192.0.2.8/31", "192.0.2.8", "192.0.2.9"},
		{"192.0.2.7/32", "192.0.2.7", "192.0.2.7"},
	} {
		r := PoolRange(netip.MustParsePrefix(tc.prefix))
		if r.First.String() != tc.first || r.Last.String() != tc.last {
			t.Errorf("%s: %s-%s, want %s-%s", tc.prefix, r.First, r.Last, tc.first, tc.last)
		}
	}
}

func TestParsePool(t *testing.T) {
	if p, err := ParsePool(" 127.0.1.0/24, 10.9.0.0/16 "); err != nil || len(p) != 2 || p[1].String() != "10.9.0.0/16" {
		t.Fatalf("ParsePool: %v %v", p, err)
	}
	for _, bad := range []string{"", "x", "fd00::/64", "10.0.0.0/33"} {
		if _, err := ParsePool(bad); err == nil {
			t.Errorf("ParsePool(%q): no error", bad)
		}
	}
}

func TestAllocateLowestFree(t *testing.T) {
	r, _ := SubnetRange(netip.MustParsePrefix("10.0.0.0/29"))
	used := map[netip.Addr]bool{netip.MustParseAddr("10.0.0.4"): true, netip.MustParseAddr("10.0.0.6"): true}
	a, ok := Allocate([]Range{r}, func(a netip.Addr) bool { return used[a] })
	if !ok || a.String() != "10.0.0.5" {
		t.Fatalf("got %v %v, want 10.0.0.5", a, ok)
	}
	used[a] = true
	if a, ok := Allocate([]Range{r}, func(a netip.Addr) bool { return used[a] }); ok {
		t.Fatalf("full /29 gave %v", a)
	}
	// The next range is used when the first is full.
	r2 := PoolRange(netip.MustParsePrefix("127.0.2.0/30"))
	if a, ok := Allocate([]Range{r, r2}, func(a netip.Addr) bool { return used[a] }); !ok || a.String() != "127.0.2.1" {
		t.Fatalf("second range: %v %v", a, ok)
	}
}

// TestAllocateProperty: under any sequence of allocations and releases,
// no address is given twice, every address is within the ranges, the
// lowest free one is chosen, and allocation fails exactly when all are
// taken.
func TestAllocateProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		bits := rapid.IntRange(26, 29).Draw(t, "bits")
		p := netip.PrefixFrom(netip.MustParseAddr("10.1.0.0"), bits)
		r, _ := SubnetRange(p)
		ranges := []Range{r}
		if rapid.Bool().Draw(t, "two ranges") {
			ranges = append(ranges, PoolRange(netip.MustParsePrefix("127.0.1.0/30")))
		}
		size := 0
		for _, rg := range ranges {
			for a := rg.First; a.Compare(rg.Last) <= 0; a = a.Next() {
				size++
			}
		}
		held := map[netip.Addr]bool{}
		var order []netip.Addr
		steps := rapid.IntRange(1, 200).Draw(t, "steps")
		for range steps {
			if len(order) > 0 && rapid.IntRange(0, 2).Draw(t, "op") == 0 {
				i := rapid.IntRange(0, len(order)-1).Draw(t, "release")
				delete(held, order[i])
				order = append(order[:i], order[i+1:]...)
				continue
			}
			a, ok := Allocate(ranges, func(a netip.Addr) bool { return held[a] })
			if !ok {
				if len(held) != size {
					t.Fatalf("allocation failed with %d of %d held", len(held), size)
				}
				continue
			}
			if held[a] {
				t.Fatalf("%s given twice", a)
			}
			in := false
			for _, rg := range ranges {
				in = in || rg.Contains(a)
			}
			if !in {
				t.Fatalf("%s outside %v", a, ranges)
			}
			// Lowest free: nothing before it (in range order) is free.
		check:
			for _, rg := range ranges {
				for b := rg.First; b.Compare(rg.Last) <= 0; b = b.Next() {
					if b == a {
						break check
					}
					if !held[b] {
						t.Fatalf("%s given while %s is free", a, b)
					}
				}
			}
			held[a] = true
			order = append(order, a)
		}
	})
}
