package lb

import (
	"net/netip"
)

// flowHash hashes the parts of a flow that the distribution mode looks at:
// 5-tuple (Default), source and destination IP (SourceIP), plus the protocol
// (SourceIPProtocol).
func flowHash(d Distribution, proto Protocol, src, dst netip.AddrPort) uint64 {
	h := fnvOffset
	h = fnvBytes(h, src.Addr().AsSlice())
	h = fnvBytes(h, dst.Addr().AsSlice())
	switch d {
	case SourceIP:
	case SourceIPProtocol:
		h = fnvBytes(h, []byte(proto))
	default:
		h = fnvBytes(h, []byte(proto))
		h = fnvBytes(h, []byte{byte(src.Port() >> 8), byte(src.Port()), byte(dst.Port() >> 8), byte(dst.Port())})
	}
	return h
}

const (
	fnvOffset uint64 = 14695981039346656037
	fnvPrime  uint64 = 1099511628211
)

func fnvBytes(h uint64, b []byte) uint64 {
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

func stringHash(s string) uint64 { return fnvBytes(fnvOffset, []byte(s)) }

// mix is splitmix64's finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// pick returns the index of the candidate a flow goes to, by rendezvous
// (highest random weight) hashing, skipping those tried already; -1 when
// none is left. Adding or removing a member only moves the flows that pick
// it, so affinity survives membership changes. memberHash[i] is stringHash
// of candidate i.
func pick(flow uint64, memberHash []uint64, tried func(int) bool) int {
	best, bestScore := -1, uint64(0)
	for i, mh := range memberHash {
		if tried(i) {
			continue
		}
		if s := mix(flow ^ mh); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return best
}
