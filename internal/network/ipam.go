package network

import (
	"fmt"
	"net/netip"
	"strings"
)

// Range is an inclusive range of addresses.
type Range struct {
	First, Last netip.Addr
}

// Contains reports whether a is within r.
func (r Range) Contains(a netip.Addr) bool {
	return r.First.IsValid() && a.Compare(r.First) >= 0 && a.Compare(r.Last) <= 0
}

// lastAddr is the last address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	a := p.Addr().As16()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	out := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		out = out.Unmap()
	}
	return out
}

// SubnetRange is what a subnet gives its NICs: as in Azure, the network
// address, the next three (gateway and DNS) and the broadcast address are
// reserved. ok is false for a subnet too small to give any (smaller than
// a /29).
func SubnetRange(p netip.Prefix) (Range, bool) {
	p = p.Masked()
	if !p.Addr().Is4() || p.Bits() > 29 {
		return Range{}, false
	}
	first := p.Addr()
	for range 4 {
		first = first.Next()
	}
	return Range{First: first, Last: lastAddr(p).Prev()}, true
}

// PoolRange is what a public pool prefix gives: every address but the
// network and broadcast addresses of prefixes larger than a /31.
func PoolRange(p netip.Prefix) Range {
	p = p.Masked()
	first, last := p.Addr(), lastAddr(p)
	if p.Addr().Is4() && p.Bits() < 31 {
		first, last = first.Next(), last.Prev()
	}
	return Range{First: first, Last: last}
}

// Allocate returns the lowest address of ranges (in order) that used does
// not hold; ok is false when all are taken.
func Allocate(ranges []Range, used func(netip.Addr) bool) (netip.Addr, bool) {
	for _, r := range ranges {
		if !r.First.IsValid() {
			continue
		}
		for a := r.First; a.IsValid() && a.Compare(r.Last) <= 0; a = a.Next() {
			if !used(a) {
				return a, true
			}
		}
	}
	return netip.Addr{}, false
}

// DefaultPublicPool is where public IP addresses come from when the
// operator sets no pool: host loopback addresses, so the embedded default
// needs no setup (Linux routes all of 127.0.0.0/8 to the loopback device).
var DefaultPublicPool = []netip.Prefix{netip.MustParsePrefix("127.0.1.0/24"), netip.MustParsePrefix("127.0.2.0/23")}

// ParsePool parses a comma-separated list of IPv4 prefixes (an operator
// flag).
func ParsePool(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("public IP pool %q: %w", f, err)
		}
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("public IP pool %q: only IPv4 prefixes", f)
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("public IP pool %q: no prefix", s)
	}
	return out, nil
}

// PoolRanges are the ranges of a pool's prefixes.
func PoolRanges(pool []netip.Prefix) []Range {
	out := make([]Range, 0, len(pool))
	for _, p := range pool {
		out = append(out, PoolRange(p))
	}
	return out
}
