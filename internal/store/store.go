// Package store defines vmssd's state store contract: a key-value store with
// etcd's semantics (a global revision, compare-and-swap transactions and an
// ordered watch). Every backend (memstore, boltstore, later etcdstore) passes
// the conformance suite in storetest.
package store

import (
	"context"
	"errors"
)

// Sentinel errors. Backends wrap them with %w; callers test with errors.Is.
var (
	// ErrNotFound is returned by Get for a missing key.
	ErrNotFound = errors.New("store: key not found")
	// ErrConflict is returned by Txn when a condition does not hold.
	ErrConflict = errors.New("store: condition failed")
	// ErrCompacted is returned by Watch when fromRev is older than the oldest
	// revision the backend can still replay.
	ErrCompacted = errors.New("store: revision compacted")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store: closed")
	// ErrCorrupt is returned by a durable backend whose data is damaged
	// (a truncated file, a corrupt page or record). The data must be
	// restored from a backup; retrying does not help.
	ErrCorrupt = errors.New("store: data is corrupt")
)

// KV is one stored value.
type KV struct {
	Key []byte
	// Value is owned by the caller: backends return copies.
	Value []byte
	// CreateRevision is the revision at which the key was (last) created.
	CreateRevision int64
	// ModRevision is the revision of the last write to the key. It doubles as
	// the ARM etag of the resource stored under the key.
	ModRevision int64
}

// CondKind says what a Cond compares.
type CondKind int

const (
	// CondModRevision holds when the key's ModRevision equals Rev. Rev 0 means
	// "the key does not exist".
	CondModRevision CondKind = iota
	// CondExists holds when the key exists.
	CondExists
)

// Cond is one precondition of a transaction.
type Cond struct {
	Key  []byte
	Kind CondKind
	Rev  int64
}

// OpKind is a transaction operation kind.
type OpKind int

const (
	// OpPut writes Value under Key.
	OpPut OpKind = iota
	// OpDelete removes Key (no error when it is absent).
	OpDelete
	// OpDeletePrefix removes every key that starts with Key.
	OpDeletePrefix
)

// Op is one write of a transaction.
type Op struct {
	Kind  OpKind
	Key   []byte
	Value []byte
}

// Put builds a put operation.
func Put(key string, value []byte) Op { return Op{Kind: OpPut, Key: []byte(key), Value: value} }

// Delete builds a delete operation.
func Delete(key string) Op { return Op{Kind: OpDelete, Key: []byte(key)} }

// DeletePrefix builds a delete-by-prefix operation.
func DeletePrefix(prefix string) Op { return Op{Kind: OpDeletePrefix, Key: []byte(prefix)} }

// ModRevisionIs builds a condition that holds when key's ModRevision is rev
// (0: the key must not exist).
func ModRevisionIs(key string, rev int64) Cond {
	return Cond{Key: []byte(key), Kind: CondModRevision, Rev: rev}
}

// Exists builds a condition that holds when key exists.
func Exists(key string) Cond { return Cond{Key: []byte(key), Kind: CondExists} }

// EventType says what happened to a key.
type EventType int

const (
	// EventPut is a create or an update.
	EventPut EventType = iota
	// EventDelete is a deletion; KV.Value is nil, KV.CreateRevision is 0
	// and KV.ModRevision is the revision of the deletion.
	EventDelete
)

// Event is one change delivered by Watch.
type Event struct {
	Type EventType
	KV   KV
}

// Store is the state store. All methods are safe for concurrent use.
type Store interface {
	// Get returns the value of key or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key with the given prefix in ascending key order,
	// and the store revision the listing was taken at.
	List(ctx context.Context, prefix string) ([]KV, int64, error)
	// Txn applies ops atomically if every cond holds, and returns the new
	// store revision. If a cond fails nothing is written and the error
	// wraps ErrConflict. A transaction with no ops still checks conds and
	// returns the current revision without creating a new one; so does a
	// transaction whose ops change nothing (only deletes of absent keys),
	// as in etcd. All ops of one Txn share one revision; the events of one
	// revision have no defined order among themselves. The ops of one Txn
	// must not touch the same key twice, directly or through a
	// DeletePrefix (etcd rejects that; memstore and boltstore apply ops in
	// order). Revisions only grow; the revision of an empty store is
	// backend-defined (0 for memstore and boltstore, 1 for etcd).
	Txn(ctx context.Context, conds []Cond, ops ...Op) (int64, error)
	// Watch delivers, in revision order, every change to keys with the
	// given prefix made at revision fromRev or later (fromRev 0: from now
	// on; a fromRev after the current revision skips the revisions before
	// it). The channel is closed when ctx ends or the store closes. A
	// watcher that falls too far behind is cancelled (channel closed) rather
	// than allowed to block writers; callers re-list and re-watch.
	Watch(ctx context.Context, prefix string, fromRev int64) (<-chan Event, error)
	// Revision returns the current store revision.
	Revision(ctx context.Context) (int64, error)
	// Close releases the store.
	Close() error
}
