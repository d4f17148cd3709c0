package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/vmssd/vmssd/internal/store"
)

// The model keys overlap in prefixes on purpose.
var (
	modelKeys     = []string{"a", "a/1", "a/2", "a/2/x", "ab", "b", "b/1"}
	modelPrefixes = []string{"", "a", "a/", "a/2", "b", "c"}
)

type modelKV struct {
	value       []byte
	create, mod int64
}

// model is the reference implementation the backend is compared with.
type model struct {
	rev int64
	kvs map[string]modelKV
}

func (m *model) mod(key string) int64 { return m.kvs[key].mod }

func (m *model) holds(conds []store.Cond) bool {
	for _, c := range conds {
		kv, ok := m.kvs[string(c.Key)]
		switch c.Kind {
		case store.CondModRevision:
			if kv.mod != c.Rev {
				return false
			}
		case store.CondExists:
			if !ok {
				return false
			}
		}
	}
	return true
}

// changes reports whether ops would change anything.
func (m *model) changes(ops []store.Op) bool {
	for _, op := range ops {
		switch op.Kind {
		case store.OpPut:
			return true
		case store.OpDelete:
			if _, ok := m.kvs[string(op.Key)]; ok {
				return true
			}
		case store.OpDeletePrefix:
			for k := range m.kvs {
				if strings.HasPrefix(k, string(op.Key)) {
					return true
				}
			}
		}
	}
	return false
}

// apply performs ops at revision rev and returns their events.
func (m *model) apply(ops []store.Op, rev int64) []store.Event {
	var events []store.Event
	for _, op := range ops {
		key := string(op.Key)
		switch op.Kind {
		case store.OpPut:
			kv := modelKV{value: slices.Clone(op.Value), create: rev, mod: rev}
			if old, ok := m.kvs[key]; ok {
				kv.create = old.create
			}
			m.kvs[key] = kv
			events = append(events, store.Event{Type: store.EventPut, KV: store.KV{
				Key: []byte(key), Value: kv.value, CreateRevision: kv.create, ModRevision: rev,
			}})
		case store.OpDelete:
			if _, ok := m.kvs[key]; ok {
				delete(m.kvs, key)
				events = append(events, deleteEvent(key, rev))
			}
		case store.OpDeletePrefix:
			for k := range m.kvs {
				if strings.HasPrefix(k, key) {
					delete(m.kvs, k)
					events = append(events, deleteEvent(k, rev))
				}
			}
		}
	}
	m.rev = rev
	return events
}

func (m *model) list(prefix string) []store.KV {
	kvs := []store.KV{}
	for k, kv := range m.kvs {
		if strings.HasPrefix(k, prefix) {
			kvs = append(kvs, store.KV{Key: []byte(k), Value: kv.value, CreateRevision: kv.create, ModRevision: kv.mod})
		}
	}
	slices.SortFunc(kvs, func(a, b store.KV) int { return strings.Compare(string(a.Key), string(b.Key)) })
	return kvs
}

func drawConds(rt *rapid.T, m *model) []store.Cond {
	n := rapid.IntRange(0, 2).Draw(rt, "conds")
	conds := make([]store.Cond, 0, n)
	for range n {
		key := rapid.SampledFrom(modelKeys).Draw(rt, "cond key")
		switch rapid.IntRange(0, 2).Draw(rt, "cond kind") {
		case 0:
			conds = append(conds, store.ModRevisionIs(key, m.mod(key)))
		case 1:
			conds = append(conds, store.ModRevisionIs(key, m.mod(key)+1))
		default:
			conds = append(conds, store.Exists(key))
		}
	}
	return conds
}

// drawOps draws up to four ops that touch disjoint keys: the contract does
// not say how a transaction that writes one key twice behaves.
func drawOps(rt *rapid.T) []store.Op {
	n := rapid.IntRange(0, 4).Draw(rt, "ops")
	var ops []store.Op
	overlaps := func(op store.Op) bool {
		for _, o := range ops {
			a, b := string(o.Key), string(op.Key)
			switch {
			case o.Kind == store.OpDeletePrefix && op.Kind == store.OpDeletePrefix:
				if strings.HasPrefix(a, b) || strings.HasPrefix(b, a) {
					return true
				}
			case o.Kind == store.OpDeletePrefix:
				if strings.HasPrefix(b, a) {
					return true
				}
			case op.Kind == store.OpDeletePrefix:
				if strings.HasPrefix(a, b) {
					return true
				}
			case a == b:
				return true
			}
		}
		return false
	}
	for range n {
		var op store.Op
		switch rapid.IntRange(0, 5).Draw(rt, "op kind") {
		case 0, 1, 2:
			key := rapid.SampledFrom(modelKeys).Draw(rt, "put key")
			op = store.Put(key, rapid.SliceOfN(rapid.Byte(), 0, 4).Draw(rt, "value"))
		case 3, 4:
			op = store.Delete(rapid.SampledFrom(modelKeys).Draw(rt, "delete key"))
		default:
			op = store.DeletePrefix(rapid.SampledFrom(modelPrefixes).Draw(rt, "prefix"))
		}
		if !overlaps(op) {
			ops = append(ops, op)
		}
	}
	return ops
}

// testModel compares the backend with the model over random transactions,
// including the events a watcher sees.
func testModel(t *testing.T, open func(t *testing.T) store.Store) {
	rapid.Check(t, func(rt *rapid.T) {
		s := open(t)
		defer func() {
			if err := s.Close(); err != nil {
				rt.Errorf("Close: %v", err)
			}
		}()
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		rev0, err := s.Revision(ctx)
		if err != nil {
			rt.Fatalf("Revision: %v", err)
		}
		m := &model{rev: rev0, kvs: map[string]modelKV{}}
		ch, err := s.Watch(ctx, "", 0)
		if err != nil {
			rt.Fatalf("Watch: %v", err)
		}
		var want []store.Event

		steps := rapid.IntRange(1, 30).Draw(rt, "steps")
		for range steps {
			conds := drawConds(rt, m)
			ops := drawOps(rt)
			rev, err := s.Txn(ctx, conds, ops...)
			switch {
			case !m.holds(conds):
				if !errors.Is(err, store.ErrConflict) {
					rt.Fatalf("Txn(%v, %v) = %d, %v; want ErrConflict", conds, ops, rev, err)
				}
			case err != nil:
				rt.Fatalf("Txn(%v, %v): %v", conds, ops, err)
			case !m.changes(ops):
				if rev != m.rev {
					rt.Fatalf("Txn(%v, %v) changed nothing but returned %d, want %d", conds, ops, rev, m.rev)
				}
			default:
				if rev <= m.rev {
					rt.Fatalf("Txn(%v, %v) returned %d, not after %d", conds, ops, rev, m.rev)
				}
				want = append(want, m.apply(ops, rev)...)
			}

			prefix := rapid.SampledFrom(modelPrefixes).Draw(rt, "list prefix")
			kvs, lrev, err := s.List(ctx, prefix)
			if err != nil {
				rt.Fatalf("List: %v", err)
			}
			if lrev != m.rev {
				rt.Fatalf("List revision %d, want %d", lrev, m.rev)
			}
			if diff := cmp.Diff(m.list(prefix), kvs, kvOpts); diff != "" {
				rt.Fatalf("List(%q) (-model +store):\n%s", prefix, diff)
			}
			key := rapid.SampledFrom(modelKeys).Draw(rt, "get key")
			kv, err := s.Get(ctx, key)
			if mkv, ok := m.kvs[key]; ok {
				wantKV := store.KV{Key: []byte(key), Value: mkv.value, CreateRevision: mkv.create, ModRevision: mkv.mod}
				if err != nil {
					rt.Fatalf("Get(%q): %v", key, err)
				}
				if diff := cmp.Diff(wantKV, kv, kvOpts); diff != "" {
					rt.Fatalf("Get(%q) (-model +store):\n%s", key, diff)
				}
			} else if !errors.Is(err, store.ErrNotFound) {
				rt.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, kv, err)
			}
		}

		got := recv(rt, ch, len(want))
		assertOrdered(rt, got)
		if diff := diffEvents(want, got); diff != "" {
			rt.Fatalf("watch events (-model +store):\n%s", diff)
		}
	})
}
