package boltstore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/vmssd/vmssd/internal/store"
)

// ListRange returns at most limit keys with the prefix that are not less
// than start, in key order, and the store revision: one page of a list,
// read with a cursor that stops after it (state.Ranger).
func (s *Store) ListRange(ctx context.Context, prefix, start string, limit int) ([]store.KV, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("boltstore: list range %q: %w", prefix, err)
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, 0, fmt.Errorf("boltstore: list range %q: %w", prefix, store.ErrClosed)
	}
	if start < prefix {
		start = prefix
	}
	kvs := []store.KV{}
	var rev int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if rev, err = getUint(tx.Bucket(bucketMeta), keyRev); err != nil {
			return err
		}
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek([]byte(start)); k != nil && bytes.HasPrefix(k, p) && (limit <= 0 || len(kvs) < limit); k, v = c.Next() {
			kv, err := decodeKV(bytes.Clone(k), v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("boltstore: list range %q: %w", prefix, err)
	}
	return kvs, rev, nil
}
