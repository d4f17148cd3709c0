// Package boltstore is the durable backend of the store contract (package
// store), on top of a single bbolt file.
//
// The file holds three buckets:
//
//	kv    key -> record: format byte, create revision, mod revision
//	      (big-endian uint64 each) and the value
//	meta  "rev" (the store revision) and "compact" (the newest revision that
//	      Watch can no longer replay), big-endian uint64
//	log   revision (big-endian uint64) -> the events of that revision
//
// Every Txn that changes something is one bbolt write transaction: the keys,
// the new revision and the revision's events are committed (and fsynced)
// together, and log entries older than Options.History revisions are
// trimmed in the same transaction. Watch replays past revisions from the log,
// so a watcher can resume from a revision seen before a restart; live events
// are fanned out in memory after each commit, in revision order.
//
// Only one process can open the file at a time: a second Open waits at most
// Options.Timeout for bbolt's file lock and then fails.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/internal/watchhub"
)

// Defaults for Options.
const (
	DefaultHistory = 10000
	DefaultTimeout = time.Second
)

// replayChunk is how many revisions a replaying watcher reads per bbolt read
// transaction, so that a slow watcher never holds a long read transaction.
const replayChunk = 256

// Options tunes a Store. The zero value selects the defaults.
type Options struct {
	// History is how many of the most recent revisions are kept in the
	// event log for Watch replay (default DefaultHistory).
	History int
	// WatchBuffer is how many undelivered events a watcher may have queued
	// before it is cancelled (default watchhub.DefaultMaxPending, 10,000).
	WatchBuffer int
	// Timeout is how long Open waits for the file lock held by another
	// process or Store (default DefaultTimeout).
	Timeout time.Duration
}

// Store is a store.Store backed by a bbolt file. It is safe for concurrent
// use.
type Store struct {
	db      *bolt.DB
	path    string
	history int64
	hub     *watchhub.Hub
	rev     atomic.Int64 // latest committed revision, for Revision

	// closeMu is held shared by every operation and exclusively by Close,
	// so that Close waits for operations in flight before closing db.
	closeMu sync.RWMutex
	closed  bool

	// wmu serializes writers, and Watch registration against the fan-out
	// of new revisions.
	wmu        sync.Mutex
	compactRev int64 // newest revision no longer in the log; guarded by wmu

	poison poison // set when bbolt panicked on damaged data
}

var _ store.Store = (*Store)(nil)

var (
	bucketKV   = []byte("kv")
	bucketMeta = []byte("meta")
	bucketLog  = []byte("log")
	keyRev     = []byte("rev")
	keyCompact = []byte("compact")
	keyFormat  = []byte("format")
)

const (
	formatVersion = "boltstore/1"
	recordVersion = 1
	headerLen     = 1 + 8 + 8
)

// errNoChange rolls back a write transaction that changed nothing.
var errNoChange = errors.New("no change")

// Open opens (creating if needed) the store file at path.
func Open(path string, opts Options) (*Store, error) {
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	existed, err := preflight(path)
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	var db *bolt.DB
	err, _ = guard(func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path, history: int64(opts.History), hub: watchhub.New(opts.WatchBuffer)}
	if err := s.verifyIf(existed); err != nil {
		if !s.poison.isWedged() {
			_ = db.Close()
		}
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	err = s.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKV, bucketMeta, bucketLog} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch f := meta.Get(keyFormat); {
		case f == nil:
			if err := meta.Put(keyFormat, []byte(formatVersion)); err != nil {
				return err
			}
		case string(f) != formatVersion:
			return corrupt("unsupported format %q", f)
		}
		rev, err := getUint(meta, keyRev)
		if err != nil {
			return err
		}
		s.compactRev, err = getUint(meta, keyCompact)
		if err != nil {
			return err
		}
		s.rev.Store(rev)
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	return s, nil
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := ctx.Err(); err != nil {
		return store.KV{}, fmt.Errorf("boltstore: get %q: %w", key, err)
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return store.KV{}, fmt.Errorf("boltstore: get %q: %w", key, store.ErrClosed)
	}
	var kv store.KV
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return store.ErrNotFound
		}
		var err error
		kv, err = decodeKV([]byte(key), v)
		return err
	})
	if err != nil {
		return store.KV{}, fmt.Errorf("boltstore: get %q: %w", key, err)
	}
	return kv, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("boltstore: list %q: %w", prefix, err)
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, 0, fmt.Errorf("boltstore: list %q: %w", prefix, store.ErrClosed)
	}
	var (
		kvs []store.KV
		rev int64
	)
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		if rev, err = getUint(tx.Bucket(bucketMeta), keyRev); err != nil {
			return err
		}
		p := []byte(prefix)
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			kv, err := decodeKV(bytes.Clone(k), v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("boltstore: list %q: %w", prefix, err)
	}
	if kvs == nil {
		kvs = []store.KV{}
	}
	return kvs, rev, nil
}

// Txn implements store.Store.
func (s *Store) Txn(ctx context.Context, conds []store.Cond, ops ...store.Op) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("boltstore: txn: %w", err)
	}
	if err := validate(ops); err != nil {
		return 0, err
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("boltstore: txn: %w", store.ErrClosed)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()

	cur := s.rev.Load()
	newRev := cur + 1
	compact := s.compactRev
	var events []store.Event
	err := s.update(func(tx *bolt.Tx) error {
		kvb := tx.Bucket(bucketKV)
		for _, c := range conds {
			if err := check(kvb, c); err != nil {
				return err
			}
		}
		var err error
		for _, op := range ops {
			if events, err = apply(kvb, op, newRev, events); err != nil {
				return err
			}
		}
		if len(events) == 0 {
			return errNoChange
		}
		meta := tx.Bucket(bucketMeta)
		if err := putUint(meta, keyRev, newRev); err != nil {
			return err
		}
		logb := tx.Bucket(bucketLog)
		if err := logb.Put(revKey(newRev), encodeEvents(events)); err != nil {
			return err
		}
		if cutoff := newRev - s.history; cutoff > compact {
			if err := trimLog(logb, cutoff); err != nil {
				return err
			}
			compact = cutoff
			return putUint(meta, keyCompact, compact)
		}
		return nil
	})
	switch {
	case errors.Is(err, errNoChange):
		return cur, nil // nothing changed: no new revision
	case err != nil:
		return 0, fmt.Errorf("boltstore: txn: %w", err)
	}
	s.rev.Store(newRev)
	s.compactRev = compact
	s.hub.Publish(events)
	return newRev, nil
}

// Watch implements store.Store. A watch from a revision that has been
// trimmed from the event log fails with store.ErrCompacted.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("boltstore: watch %q: %w", prefix, err)
	}
	if fromRev < 0 {
		return nil, fmt.Errorf("boltstore: watch %q: negative revision %d", prefix, fromRev)
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("boltstore: watch %q: %w", prefix, store.ErrClosed)
	}
	// Holding wmu keeps Txn (and so Publish) out while the watcher
	// registers: it replays up to the current revision and receives
	// everything after.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if fromRev > 0 && fromRev <= s.compactRev {
		return nil, fmt.Errorf("boltstore: watch %q from revision %d (oldest replayable %d): %w",
			prefix, fromRev, s.compactRev+1, store.ErrCompacted)
	}
	return s.hub.Watch(ctx, []byte(prefix), fromRev, s.rev.Load(), s.replay)
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("boltstore: revision: %w", err)
	}
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("boltstore: revision: %w", store.ErrClosed)
	}
	return s.rev.Load(), nil
}

// Close implements store.Store: it waits for operations in flight, closes
// every watch channel and releases the file. Closing an already closed store
// returns nil.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	// Outside closeMu: watcher goroutines may be waiting for it in replay.
	s.hub.Close()
	if s.poison.isWedged() {
		// bbolt may hold its writer lock forever: db.Close would block.
		return fmt.Errorf("boltstore: close %s: left open: %w", s.path, s.poison.get())
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close %s: %w", s.path, err)
	}
	return nil
}

// replay is the watchhub.ReplayFunc of the store.
func (s *Store) replay(from, to int64) ([]store.Event, int64, error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, 0, store.ErrClosed
	}
	to = min(to, from+replayChunk-1)
	var events []store.Event
	err := s.view(func(tx *bolt.Tx) error {
		compact, err := getUint(tx.Bucket(bucketMeta), keyCompact)
		if err != nil {
			return err
		}
		if from <= compact {
			return store.ErrCompacted
		}
		c := tx.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(revKey(from)); k != nil; k, v = c.Next() {
			rev := int64(binary.BigEndian.Uint64(k))
			if rev > to {
				break
			}
			if events, err = decodeEvents(rev, v, events); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return events, to + 1, nil
}

func check(kvb *bolt.Bucket, c store.Cond) error {
	v := kvb.Get(c.Key)
	switch c.Kind {
	case store.CondModRevision:
		var mod int64
		if v != nil {
			if len(v) < headerLen {
				return corrupt("record for key %q", c.Key)
			}
			mod = int64(binary.BigEndian.Uint64(v[9:17]))
		}
		if mod != c.Rev {
			return fmt.Errorf("key %q has mod revision %d, want %d: %w", c.Key, mod, c.Rev, store.ErrConflict)
		}
	case store.CondExists:
		if v == nil {
			return fmt.Errorf("key %q does not exist: %w", c.Key, store.ErrConflict)
		}
	default:
		return fmt.Errorf("unknown condition kind %d", c.Kind)
	}
	return nil
}

// apply performs op at revision rev and appends its events.
func apply(kvb *bolt.Bucket, op store.Op, rev int64, events []store.Event) ([]store.Event, error) {
	switch op.Kind {
	case store.OpPut:
		create := rev
		if old := kvb.Get(op.Key); old != nil {
			if len(old) < headerLen {
				return nil, corrupt("record for key %q", op.Key)
			}
			create = int64(binary.BigEndian.Uint64(old[1:9]))
		}
		kv := store.KV{Key: bytes.Clone(op.Key), Value: cloneValue(op.Value), CreateRevision: create, ModRevision: rev}
		if err := kvb.Put(kv.Key, encodeKV(kv)); err != nil {
			return nil, fmt.Errorf("put %q: %w", op.Key, err)
		}
		return append(events, store.Event{Type: store.EventPut, KV: kv}), nil
	case store.OpDelete:
		if kvb.Get(op.Key) == nil {
			return events, nil
		}
		if err := kvb.Delete(op.Key); err != nil {
			return nil, fmt.Errorf("delete %q: %w", op.Key, err)
		}
		return append(events, deleteEvent(bytes.Clone(op.Key), rev)), nil
	case store.OpDeletePrefix:
		// Collect first: deleting under a live cursor can skip keys.
		var keys [][]byte
		c := kvb.Cursor()
		for k, _ := c.Seek(op.Key); k != nil && bytes.HasPrefix(k, op.Key); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		for _, k := range keys {
			if err := kvb.Delete(k); err != nil {
				return nil, fmt.Errorf("delete %q: %w", k, err)
			}
			events = append(events, deleteEvent(k, rev))
		}
		return events, nil
	}
	return nil, fmt.Errorf("unknown op kind %d", op.Kind)
}

// trimLog deletes the log entries of revisions <= cutoff.
func trimLog(logb *bolt.Bucket, cutoff int64) error {
	var keys [][]byte
	c := logb.Cursor()
	for k, _ := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) <= cutoff; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := logb.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func validate(ops []store.Op) error {
	for i, op := range ops {
		switch op.Kind {
		case store.OpPut, store.OpDelete:
			if len(op.Key) == 0 {
				return fmt.Errorf("boltstore: txn: op %d: empty key", i)
			}
		case store.OpDeletePrefix:
		default:
			return fmt.Errorf("boltstore: txn: op %d: unknown op kind %d", i, op.Kind)
		}
	}
	return nil
}

func deleteEvent(key []byte, rev int64) store.Event {
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, ModRevision: rev}}
}

// cloneValue copies v, returning a non-nil slice even for an empty value.
func cloneValue(v []byte) []byte {
	return append(make([]byte, 0, len(v)), v...)
}

func revKey(rev int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(rev))
}

func getUint(b *bolt.Bucket, key []byte) (int64, error) {
	v := b.Get(key)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return int64(binary.BigEndian.Uint64(v)), nil
	}
	return 0, corrupt("meta %q", key)
}

func putUint(b *bolt.Bucket, key []byte, v int64) error {
	return b.Put(key, binary.BigEndian.AppendUint64(nil, uint64(v)))
}

// encodeKV encodes the record stored under a key.
func encodeKV(kv store.KV) []byte {
	buf := make([]byte, 0, headerLen+len(kv.Value))
	buf = append(buf, recordVersion)
	buf = binary.BigEndian.AppendUint64(buf, uint64(kv.CreateRevision))
	buf = binary.BigEndian.AppendUint64(buf, uint64(kv.ModRevision))
	return append(buf, kv.Value...)
}

// decodeKV decodes a record; it copies v, which bbolt owns.
func decodeKV(key, v []byte) (store.KV, error) {
	if len(v) < headerLen || v[0] != recordVersion {
		return store.KV{}, corrupt("record for key %q", key)
	}
	return store.KV{
		Key:            key,
		Value:          cloneValue(v[headerLen:]),
		CreateRevision: int64(binary.BigEndian.Uint64(v[1:9])),
		ModRevision:    int64(binary.BigEndian.Uint64(v[9:17])),
	}, nil
}

// encodeEvents encodes the events of one revision for the log:
// a count, then per event its type, key and, for puts, create revision and
// value (uvarint lengths and numbers).
func encodeEvents(events []store.Event) []byte {
	var buf []byte
	buf = binary.AppendUvarint(buf, uint64(len(events)))
	for _, ev := range events {
		buf = append(buf, byte(ev.Type))
		buf = binary.AppendUvarint(buf, uint64(len(ev.KV.Key)))
		buf = append(buf, ev.KV.Key...)
		if ev.Type == store.EventPut {
			buf = binary.AppendUvarint(buf, uint64(ev.KV.CreateRevision))
			buf = binary.AppendUvarint(buf, uint64(len(ev.KV.Value)))
			buf = append(buf, ev.KV.Value...)
		}
	}
	return buf
}

// decodeEvents appends the events of revision rev encoded in v; it copies
// what it keeps, as bbolt owns v.
func decodeEvents(rev int64, v []byte, events []store.Event) ([]store.Event, error) {
	bad := corrupt("log entry for revision %d", rev)
	d := decoder{buf: v, ok: true}
	n := d.uvarint()
	for i := uint64(0); i < n && d.ok; i++ {
		ev := store.Event{Type: store.EventType(d.byte())}
		ev.KV.Key = bytes.Clone(d.bytes())
		ev.KV.ModRevision = rev
		switch ev.Type {
		case store.EventPut:
			ev.KV.CreateRevision = int64(d.uvarint())
			ev.KV.Value = cloneValue(d.bytes())
		case store.EventDelete:
		default:
			return nil, bad
		}
		events = append(events, ev)
	}
	if !d.ok || len(d.buf) != 0 {
		return nil, bad
	}
	return events, nil
}

// decoder reads the log encoding; ok turns false on malformed input.
type decoder struct {
	buf []byte
	ok  bool
}

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.ok = false
		return 0
	}
	d.buf = d.buf[n:]
	return x
}

func (d *decoder) byte() byte {
	if len(d.buf) == 0 {
		d.ok = false
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if !d.ok || n > uint64(len(d.buf)) {
		d.ok = false
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}
