// Package state is typed access to the store: JSON records read with their
// revision, compare-and-swap updates with retry, and long-running operation
// records (created in the same transaction as the change they track, and
// completed by the controller).
package state

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/store"
)

// Get reads and decodes a record; it returns store.ErrNotFound (wrapped)
// when the key is absent.
func Get[T any](ctx context.Context, s store.Store, key string) (*T, int64, error) {
	kv, err := s.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	v := new(T)
	if err := json.Unmarshal(kv.Value, v); err != nil {
		return nil, 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, kv.ModRevision, nil
}

// List reads and decodes every record under prefix.
func List[T any](ctx context.Context, s store.Store, prefix string) ([]*T, []int64, error) {
	kvs, _, err := s.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	out := make([]*T, 0, len(kvs))
	revs := make([]int64, 0, len(kvs))
	for _, kv := range kvs {
		v := new(T)
		if err := json.Unmarshal(kv.Value, v); err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, v)
		revs = append(revs, kv.ModRevision)
	}
	return out, revs, nil
}

// PutOp encodes v into a put operation.
func PutOp(key string, v any) store.Op {
	b, err := json.Marshal(v)
	if err != nil {
		// Records are plain data; failing to encode one is a programming error.
		panic(fmt.Sprintf("encode %s: %v", key, err))
	}
	return store.Put(key, b)
}

// ErrSkip, returned by an Update function, leaves the record unchanged.
var ErrSkip = errors.New("state: no change")

// Update applies fn to the record under key with compare-and-swap, retrying
// on conflicts. fn may return ErrSkip to write nothing.
func Update[T any](ctx context.Context, s store.Store, key string, fn func(*T) error) (*T, error) {
	for attempt := 0; ; attempt++ {
		v, rev, err := Get[T](ctx, s, key)
		if err != nil {
			return nil, err
		}
		if err := fn(v); err != nil {
			if errors.Is(err, ErrSkip) {
				return v, nil
			}
			return nil, err
		}
		_, err = s.Txn(ctx, []store.Cond{store.ModRevisionIs(key, rev)}, PutOp(key, v))
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt > 50 {
			return nil, err
		}
	}
}

// NewID returns a random operation/VM id in GUID form.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func pendingKey(target, id string) string {
	return "/ops-pending/" + target + "/" + strings.ToLower(id)
}

// NewOperation builds an InProgress operation and the store ops that record
// it; put them in the same transaction as the change it tracks.
func NewOperation(kind, sub, location, target string, generation int64, now time.Time) (*model.Operation, []store.Op) {
	op := &model.Operation{
		ID: NewID(), Sub: sub, Location: location, Kind: kind, Target: target,
		Generation: generation, Status: arm.StatusInProgress, Start: now,
	}
	return op, []store.Op{PutOp(model.OperationKey(op.ID), op), store.Put(pendingKey(target, op.ID), []byte(op.ID))}
}

// PendingOp is an InProgress operation with what is needed to complete it
// in a transaction.
type PendingOp struct {
	Op       *model.Operation
	Rev      int64
	IndexKey string
}

// Pending lists the InProgress operations of target.
func Pending(ctx context.Context, s store.Store, target string) ([]PendingOp, error) {
	kvs, _, err := s.List(ctx, "/ops-pending/"+target+"/")
	if err != nil {
		return nil, err
	}
	return pendingFrom(ctx, s, kvs)
}

func pendingFrom(ctx context.Context, s store.Store, kvs []store.KV) ([]PendingOp, error) {
	var out []PendingOp
	for _, kv := range kvs {
		op, rev, err := Get[model.Operation](ctx, s, model.OperationKey(string(kv.Value)))
		if errors.Is(err, store.ErrNotFound) {
			_, _ = s.Txn(ctx, nil, store.Delete(string(kv.Key)))
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, PendingOp{Op: op, Rev: rev, IndexKey: string(kv.Key)})
	}
	return out, nil
}

// Complete returns the conditions and writes that end p with status.
func (p PendingOp) Complete(status string, e *arm.ErrorDetail, now time.Time) ([]store.Cond, []store.Op) {
	op := *p.Op
	op.Status, op.Error = status, e
	t := now
	op.End = &t
	key := model.OperationKey(op.ID)
	return []store.Cond{store.ModRevisionIs(key, p.Rev)}, []store.Op{PutOp(key, &op), store.Delete(p.IndexKey)}
}

// CompletePending finishes the InProgress operations of target whose
// generation is at most observed (all of them when observed < 0): Failed
// with failErr when it is set, Succeeded otherwise.
func CompletePending(ctx context.Context, s store.Store, target string, observed int64, failErr *arm.ErrorDetail, now time.Time) error {
	ps, err := Pending(ctx, s, target)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if observed >= 0 && p.Op.Generation > observed {
			continue
		}
		status := arm.StatusSucceeded
		if failErr != nil {
			status = arm.StatusFailed
		}
		conds, ops := p.Complete(status, failErr, now)
		if _, err := s.Txn(ctx, conds, ops...); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return nil
}

// SweepOrphans ends the InProgress operations whose target no longer exists
// (a crash between a deletion and its operation's completion): deletions
// succeeded, anything else was canceled by the deletion.
func SweepOrphans(ctx context.Context, s store.Store, exists func(ctx context.Context, target string) (bool, error), now time.Time) error {
	kvs, _, err := s.List(ctx, "/ops-pending/")
	if err != nil {
		return err
	}
	ps, err := pendingFrom(ctx, s, kvs)
	if err != nil {
		return err
	}
	for _, p := range ps {
		ok, err := exists(ctx, p.Op.Target)
		if err != nil || ok {
			continue
		}
		status, e := arm.StatusSucceeded, (*arm.ErrorDetail)(nil)
		if !strings.Contains(strings.ToLower(p.Op.Kind), "delete") {
			status, e = arm.StatusCanceled, &arm.ErrorDetail{Code: "OperationCanceled", Message: "The operation was canceled: its resource was deleted."}
		}
		conds, ops := p.Complete(status, e, now)
		if _, err := s.Txn(ctx, conds, ops...); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return nil
}

// GCOperations deletes finished operations that ended before cutoff.
func GCOperations(ctx context.Context, s store.Store, cutoff time.Time) error {
	ops, revs, err := List[model.Operation](ctx, s, model.PrefixOperations)
	if err != nil {
		return err
	}
	for i, op := range ops {
		if op.Status == arm.StatusInProgress || op.End == nil || !op.End.Before(cutoff) {
			continue
		}
		key := model.OperationKey(op.ID)
		if _, err := s.Txn(ctx, []store.Cond{store.ModRevisionIs(key, revs[i])}, store.Delete(key)); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return nil
}

// ErrorDetail converts an error to its wire form.
func ErrorDetail(err error) *arm.ErrorDetail {
	if err == nil {
		return nil
	}
	e := errs.From(err)
	d := &arm.ErrorDetail{Code: e.ARMCode(), Message: e.Message, Target: e.Target}
	for _, x := range e.Details {
		d.Details = append(d.Details, *ErrorDetail(x))
	}
	return d
}

// Ranger is implemented by stores that can read a bounded range of keys
// (memstore and boltstore do); ListPage falls back to List for others.
type Ranger interface {
	// ListRange returns, in key order, at most limit keys that start with
	// prefix and are not less than start, and the store revision.
	ListRange(ctx context.Context, prefix, start string, limit int) ([]store.KV, int64, error)
}

// ListPage returns at most limit keys under prefix from start (inclusive;
// "" is the beginning), and the key the next page starts at ("" when none
// follows). Only that page is read when the store is a Ranger.
func ListPage(ctx context.Context, s store.Store, prefix, start string, limit int) (kvs []store.KV, next string, err error) {
	if limit <= 0 {
		return nil, "", fmt.Errorf("state: list page of %d keys", limit)
	}
	if start < prefix {
		start = prefix
	}
	if r, ok := s.(Ranger); ok {
		kvs, _, err = r.ListRange(ctx, prefix, start, limit+1)
	} else {
		kvs, _, err = s.List(ctx, prefix)
		if err == nil {
			i, _ := slices.BinarySearchFunc(kvs, start, func(kv store.KV, k string) int { return strings.Compare(string(kv.Key), k) })
			kvs = kvs[i:]
		}
	}
	if err != nil {
		return nil, "", err
	}
	if len(kvs) > limit {
		return kvs[:limit], string(kvs[limit].Key), nil
	}
	return kvs, "", nil
}
