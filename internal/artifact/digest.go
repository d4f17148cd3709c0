package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// digestPrefix is the only algorithm vmssd uses for artifact digests.
const digestPrefix = "sha256:"

// Digest identifies an artifact by the sha256 of its bytes:
// "sha256:" followed by 64 lowercase hex digits. A Digest obtained from
// ParseDigest, Import or List is always valid; Store methods re-validate
// the digests they are given, so a hand-made Digest can never name a path
// outside the store.
type Digest string

// ParseDigest parses s as a Digest. It accepts exactly "sha256:" followed by
// 64 lowercase hex digits, and nothing else (no upper case, no whitespace, no
// other algorithm), which makes a parsed Digest safe to use in file names.
func ParseDigest(s string) (Digest, error) {
	h, ok := strings.CutPrefix(s, digestPrefix)
	if !ok {
		return "", fmt.Errorf("artifact: digest %q: want %q prefix", truncate(s), digestPrefix)
	}
	if len(h) != 2*sha256.Size {
		return "", fmt.Errorf("artifact: digest %q: want %d hex digits, got %d", truncate(s), 2*sha256.Size, len(h))
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", fmt.Errorf("artifact: digest %q: invalid character %q (want lowercase hex)", truncate(s), c)
		}
	}
	return Digest(s), nil
}

// String returns the digest as "sha256:<hex>".
func (d Digest) String() string { return string(d) }

// Hex returns the hex part of the digest (without "sha256:").
func (d Digest) Hex() string { return strings.TrimPrefix(string(d), digestPrefix) }

// Validate reports whether d is well formed (see ParseDigest).
func (d Digest) Validate() error {
	_, err := ParseDigest(string(d))
	return err
}

// digestFromHash returns the Digest of what h has hashed so far.
func digestFromHash(h hash.Hash) Digest {
	return Digest(digestPrefix + hex.EncodeToString(h.Sum(nil)))
}

// truncate shortens s for error messages.
func truncate(s string) string {
	const limit = 80
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}
