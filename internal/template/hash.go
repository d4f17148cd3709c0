package template

import (
	"crypto/sha1"
	"encoding/hex"
	"math/bits"
	"strings"
)

// UniqueString is ARM's uniqueString(): the arguments joined with "-", UTF-8
// encoded, hashed to 64 bits, and written as 13 base32 characters.
//
// The hash is not MurmurHash64A (the 64-bit MurmurHash2): it is the 64-bit
// MurmurHash variant of Microsoft's ResourceStack library
// (Microsoft.WindowsAzure.ResourceStack.Common.Algorithms.ComputeHash, used by
// Azure.Deployments.Expression's UniqueStringFunction): two 32-bit lanes fed
// eight bytes per round with MurmurHash3 x86_128's first two constants
// (0x239b961b, 0xab0e9789), rotations 15/19 and 17/13, the x86 additive
// constants 0x561ccd1b and 0x0bcaa747, a tail mixed into both lanes, and
// MurmurHash3's fmix32 finalizer on each lane (Austin Appleby's MurmurHash3,
// public domain). The 64-bit result is h2<<32|h1; its bits are read five at a
// time from the top into the alphabet a-z2-7 (13 characters, the last one
// carrying four bits). Checked against outputs computed by Azure in
// hash_test.go.
func UniqueString(parts ...string) string {
	h := resourceStackHash64([]byte(strings.Join(parts, "-")))
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var out [13]byte
	for i := range out {
		out[i] = alphabet[h>>59]
		h <<= 5
	}
	return string(out[:])
}

func resourceStackHash64(data []byte) uint64 {
	const (
		c1 = 0x239b961b
		c2 = 0xab0e9789
	)
	var h1, h2 uint32
	n := len(data)
	i := 0
	for ; i+8 <= n; i += 8 {
		k1 := le32(data[i : i+4])
		k2 := le32(data[i+4 : i+8])

		k1 *= c1
		k1 = bits.RotateLeft32(k1, 15)
		k1 *= c2
		h1 ^= k1
		h1 = bits.RotateLeft32(h1, 19)
		h1 += h2
		h1 = h1*5 + 0x561ccd1b

		k2 *= c2
		k2 = bits.RotateLeft32(k2, 17)
		k2 *= c1
		h2 ^= k2
		h2 = bits.RotateLeft32(h2, 13)
		h2 += h1
		h2 = h2*5 + 0x0bcaa747
	}
	if tail := n - i; tail > 0 {
		k1 := le32(data[i:min(i+4, n)])
		k1 *= c1
		k1 = bits.RotateLeft32(k1, 15)
		k1 *= c2
		h1 ^= k1
		if tail > 4 {
			k2 := le32(data[i+4 : n])
			k2 *= c2
			k2 = bits.RotateLeft32(k2, 17)
			k2 *= c1
			h2 ^= k2
		}
	}
	h1 ^= uint32(n)
	h2 ^= uint32(n)
	h1 += h2
	h2 += h1
	h1 = fmix32(h1)
	h2 = fmix32(h2)
	h1 += h2
	h2 += h1
	return uint64(h2)<<32 | uint64(h1)
}

// le32 reads up to four bytes little-endian.
func le32(b []byte) uint32 {
	var v uint32
	for j := len(b) - 1; j >= 0; j-- {
		v = v<<8 | uint32(b[j])
	}
	return v
}

func fmix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// guidNamespace is the namespace ARM's guid() hashes under.
var guidNamespace = [16]byte{0x11, 0xfb, 0x06, 0xfb, 0x71, 0x2d, 0x4d, 0xdd, 0x98, 0xc7, 0xe7, 0x1b, 0xbd, 0x58, 0x88, 0x30}

// GUID is ARM's guid(): a name-based version 5 UUID (RFC 4122 §4.3, SHA-1)
// in the namespace 11fb06fb-712d-4ddd-98c7-e71bbd588830 over the arguments
// joined with "-" and encoded as UTF-8 (not UTF-16: the UTF-16LE construction
// gives different values from the ones Azure computes, see hash_test.go).
// The namespace is hashed in network byte order, as RFC 4122 requires and
// the GuidUtility ARM derives from does after its byte swap.
func GUID(parts ...string) string {
	h := sha1.New()
	h.Write(guidNamespace[:])
	h.Write([]byte(strings.Join(parts, "-")))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return formatUUID(u)
}

func formatUUID(u [16]byte) string {
	var buf [36]byte
	hex.Encode(buf[0:8], u[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], u[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], u[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], u[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], u[10:])
	return string(buf[:])
}
