// Package memstore is the in-memory backend of the store contract
// (package store). It keeps every key in a map plus a sorted key slice under
// one mutex, and a bounded history of the most recent revisions' events so
// that Watch can replay from a past revision; older revisions fail with
// store.ErrCompacted. Nothing survives Close: memstore is meant for tests and
// for single-process development setups.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/internal/watchhub"
)

// DefaultHistory is the default number of revisions Watch can replay.
const DefaultHistory = 10000

// replayChunk is how many revisions a replaying watcher reads per lock hold.
const replayChunk = 256

// Options tunes a Store. The zero value selects the defaults.
type Options struct {
	// History is how many of the most recent revisions Watch can replay
	// (default DefaultHistory).
	History int
	// WatchBuffer is how many undelivered events a watcher may have queued
	// before it is cancelled (default watchhub.DefaultMaxPending, 10,000).
	WatchBuffer int
}

// Store is an in-memory store.Store. It is safe for concurrent use.
type Store struct {
	maxHistory int
	hub        *watchhub.Hub

	mu         sync.RWMutex
	closed     bool
	rev        int64
	data       map[string]*entry
	keys       []string // sorted, same set as data
	history    []revision
	compactRev int64 // revisions <= compactRev are no longer in history
}

var _ store.Store = (*Store)(nil)

// entry is an immutable stored value: a write replaces the entry, so slices
// handed to the history can be shared safely.
type entry struct {
	value  []byte
	create int64
	mod    int64
}

// revision is the events of one committed revision.
type revision struct {
	rev    int64
	events []store.Event
}

// New returns an empty store. Its revision is 0; the first write creates
// revision 1.
func New(opts Options) *Store {
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	return &Store{
		maxHistory: opts.History,
		hub:        watchhub.New(opts.WatchBuffer),
		data:       make(map[string]*entry),
	}
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := ctx.Err(); err != nil {
		return store.KV{}, fmt.Errorf("memstore: get %q: %w", key, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return store.KV{}, fmt.Errorf("memstore: get %q: %w", key, store.ErrClosed)
	}
	e, ok := s.data[key]
	if !ok {
		return store.KV{}, fmt.Errorf("memstore: get %q: %w", key, store.ErrNotFound)
	}
	return e.kv(key), nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("memstore: list %q: %w", prefix, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, 0, fmt.Errorf("memstore: list %q: %w", prefix, store.ErrClosed)
	}
	lo, hi := s.prefixRange(prefix)
	kvs := make([]store.KV, 0, hi-lo)
	for _, k := range s.keys[lo:hi] {
		kvs = append(kvs, s.data[k].kv(k))
	}
	return kvs, s.rev, nil
}

// Txn implements store.Store.
func (s *Store) Txn(ctx context.Context, conds []store.Cond, ops ...store.Op) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memstore: txn: %w", err)
	}
	if err := validate(ops); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("memstore: txn: %w", store.ErrClosed)
	}
	for _, c := range conds {
		if err := s.check(c); err != nil {
			return 0, err
		}
	}
	newRev := s.rev + 1
	var events []store.Event
	for _, op := range ops {
		switch op.Kind {
		case store.OpPut:
			events = append(events, s.put(string(op.Key), op.Value, newRev))
		case store.OpDelete:
			if ev, ok := s.delete(string(op.Key), newRev); ok {
				events = append(events, ev)
			}
		case store.OpDeletePrefix:
			events = s.deletePrefix(string(op.Key), newRev, events)
		}
	}
	if len(events) == 0 {
		return s.rev, nil // nothing changed: no new revision
	}
	s.rev = newRev
	s.history = append(s.history, revision{rev: newRev, events: events})
	for len(s.history) > s.maxHistory {
		s.compactRev = s.history[0].rev
		s.history[0] = revision{}
		s.history = s.history[1:]
	}
	s.hub.Publish(events)
	return newRev, nil
}

// Watch implements store.Store. A watch from a revision older than the
// last Options.History revisions fails with store.ErrCompacted.
func (s *Store) Watch(ctx context.Context, prefix string, fromRev int64) (<-chan store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore: watch %q: %w", prefix, err)
	}
	if fromRev < 0 {
		return nil, fmt.Errorf("memstore: watch %q: negative revision %d", prefix, fromRev)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("memstore: watch %q: %w", prefix, store.ErrClosed)
	}
	if fromRev > 0 && fromRev <= s.compactRev {
		return nil, fmt.Errorf("memstore: watch %q from revision %d (oldest replayable %d): %w",
			prefix, fromRev, s.compactRev+1, store.ErrCompacted)
	}
	// Holding s.mu keeps Txn (and so Publish) out while the watcher
	// registers: it replays up to s.rev and receives everything after.
	return s.hub.Watch(ctx, []byte(prefix), fromRev, s.rev, s.replay)
}

// Revision implements store.Store.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("memstore: revision: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, fmt.Errorf("memstore: revision: %w", store.ErrClosed)
	}
	return s.rev, nil
}

// Close implements store.Store. It closes every watch channel and drops the
// data. Closing an already closed store returns nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.data, s.keys, s.history = nil, nil, nil
	s.mu.Unlock()
	// Outside s.mu: watcher goroutines may be waiting for it in replay.
	s.hub.Close()
	return nil
}

// replay is the watchhub.ReplayFunc of the store.
func (s *Store) replay(from, to int64) ([]store.Event, int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, 0, store.ErrClosed
	}
	if from <= s.compactRev {
		return nil, 0, store.ErrCompacted
	}
	to = min(to, s.rev, from+replayChunk-1)
	var events []store.Event
	// history holds revisions compactRev+1 ... rev, one entry each.
	for i := from - s.compactRev - 1; i <= to-s.compactRev-1; i++ {
		events = append(events, s.history[i].events...)
	}
	return events, to + 1, nil
}

func (s *Store) check(c store.Cond) error {
	e, ok := s.data[string(c.Key)]
	switch c.Kind {
	case store.CondModRevision:
		var mod int64
		if ok {
			mod = e.mod
		}
		if mod != c.Rev {
			return fmt.Errorf("memstore: txn: key %q has mod revision %d, want %d: %w",
				c.Key, mod, c.Rev, store.ErrConflict)
		}
	case store.CondExists:
		if !ok {
			return fmt.Errorf("memstore: txn: key %q does not exist: %w", c.Key, store.ErrConflict)
		}
	default:
		return fmt.Errorf("memstore: txn: unknown condition kind %d", c.Kind)
	}
	return nil
}

func (s *Store) put(key string, value []byte, rev int64) store.Event {
	e := &entry{value: bytes.Clone(value), create: rev, mod: rev}
	if e.value == nil {
		e.value = []byte{}
	}
	if old, ok := s.data[key]; ok {
		e.create = old.create
	} else {
		i, _ := slices.BinarySearch(s.keys, key)
		s.keys = slices.Insert(s.keys, i, key)
	}
	s.data[key] = e
	return store.Event{Type: store.EventPut, KV: store.KV{
		Key: []byte(key), Value: e.value, CreateRevision: e.create, ModRevision: rev,
	}}
}

func (s *Store) delete(key string, rev int64) (store.Event, bool) {
	if _, ok := s.data[key]; !ok {
		return store.Event{}, false
	}
	delete(s.data, key)
	i, _ := slices.BinarySearch(s.keys, key)
	s.keys = slices.Delete(s.keys, i, i+1)
	return deleteEvent(key, rev), true
}

func (s *Store) deletePrefix(prefix string, rev int64, events []store.Event) []store.Event {
	lo, hi := s.prefixRange(prefix)
	for _, k := range s.keys[lo:hi] {
		delete(s.data, k)
		events = append(events, deleteEvent(k, rev))
	}
	s.keys = slices.Delete(s.keys, lo, hi)
	return events
}

// prefixRange returns the index range of s.keys that starts with prefix.
func (s *Store) prefixRange(prefix string) (lo, hi int) {
	lo, _ = slices.BinarySearch(s.keys, prefix)
	hi = lo + sort.Search(len(s.keys)-lo, func(i int) bool {
		return !strings.HasPrefix(s.keys[lo+i], prefix)
	})
	return lo, hi
}

func (e *entry) kv(key string) store.KV {
	return store.KV{
		Key:            []byte(key),
		Value:          bytes.Clone(e.value),
		CreateRevision: e.create,
		ModRevision:    e.mod,
	}
}

func deleteEvent(key string, rev int64) store.Event {
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: []byte(key), ModRevision: rev}}
}

// validate rejects malformed ops before anything is written.
func validate(ops []store.Op) error {
	for i, op := range ops {
		switch op.Kind {
		case store.OpPut, store.OpDelete:
			if len(op.Key) == 0 {
				return fmt.Errorf("memstore: txn: op %d: %w", i, errEmptyKey)
			}
		case store.OpDeletePrefix:
		default:
			return fmt.Errorf("memstore: txn: op %d: unknown op kind %d", i, op.Kind)
		}
	}
	return nil
}

var errEmptyKey = errors.New("empty key")
