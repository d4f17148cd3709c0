package memstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/vmssd/vmssd/internal/store"
)

// ListRange returns at most limit keys with the prefix that are not less
// than start, in key order, and the store revision: one page of a list,
// read without copying the rest (state.Ranger).
func (s *Store) ListRange(ctx context.Context, prefix, start string, limit int) ([]store.KV, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("memstore: list range %q: %w", prefix, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, 0, fmt.Errorf("memstore: list range %q: %w", prefix, store.ErrClosed)
	}
	lo, hi := s.prefixRange(prefix)
	if start > prefix {
		i, _ := slices.BinarySearch(s.keys[lo:hi], start)
		lo += i
	}
	if limit > 0 && hi-lo > limit {
		hi = lo + limit
	}
	kvs := make([]store.KV, 0, hi-lo)
	for _, k := range s.keys[lo:hi] {
		kvs = append(kvs, s.data[k].kv(k))
	}
	return kvs, s.rev, nil
}
