package state

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/store"
)

// ArtifactGrant is the record at model.ArtifactGrantKey: an artifact
// uploaded into a subscription, which its scale sets may then name, and
// which counts against the subscription's storage quota.
type ArtifactGrant struct {
	Digest string `json:"digest"`
	// UnpackedBytes is what the artifact costs unpacked (the sum of its
	// files' sizes): the storage usage it counts for.
	UnpackedBytes int64     `json:"unpackedBytes"`
	Created       time.Time `json:"created"`
}

// ArtifactGrantPrefix lists the grants of a subscription.
func ArtifactGrantPrefix(sub string) string { return model.ArtifactGrantKey(sub, "") }

// ArtifactGrantsPrefix lists every grant of every subscription.
const ArtifactGrantsPrefix = "/artifact-grants/"

// ParseArtifactGrant decodes a grant record. Grants written before sizes
// were recorded (a bare "1") decode with only the digest, taken from key.
func ParseArtifactGrant(key string, value []byte) ArtifactGrant {
	var g ArtifactGrant
	if json.Unmarshal(value, &g) != nil || g.Digest == "" {
		g = ArtifactGrant{Digest: key[strings.LastIndexByte(key, '/')+1:]}
	}
	return g
}

// StorageUsage returns the storage usage of subscription sub: the unpacked
// bytes of the artifacts uploaded into it (model.Quota.StorageBytes bounds
// it), and the store revision it was counted at.
func StorageUsage(ctx context.Context, s store.Store, sub string) (int64, int64, error) {
	kvs, rev, err := s.List(ctx, ArtifactGrantPrefix(sub))
	if err != nil {
		return 0, 0, fmt.Errorf("state: storage usage of %s: %w", sub, err)
	}
	var n int64
	for _, kv := range kvs {
		n += max(ParseArtifactGrant(string(kv.Key), kv.Value).UnpackedBytes, 0)
	}
	return n, rev, nil
}
