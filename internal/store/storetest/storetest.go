// Package storetest is the conformance suite of the store contract (package
// store). Every backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) })
//	}
//
// and durable backends also run RunDurable, which reopens a store from the
// same directory.
//
// The suite closes every store it opens; open must return a fresh, empty
// store each time and must not close it itself. The suite assumes that
// backends cancel a watcher with more than 20,000 undelivered events (the
// slow-watcher test leaves 25,600 unread), keep at least the last 1,000
// revisions replayable, and allow transactions of 256 operations. It makes no
// assumption on the revision of an empty store or on the step between
// revisions, only that revisions grow.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vmssd/vmssd/internal/store"
)

// wait bounds every wait for a watch event or a closed channel.
const wait = 10 * time.Second

// Run runs the conformance suite against the backend that open creates.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	fresh := func(t *testing.T) store.Store {
		t.Helper()
		s := open(t)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetMissing", testGetMissing},
		{"PutGet", testPutGet},
		{"List", testList},
		{"RevisionsGrow", testRevisionsGrow},
		{"TxnSharesRevision", testTxnSharesRevision},
		{"CreateVsModRevision", testCreateVsModRevision},
		{"ConflictWritesNothing", testConflictWritesNothing},
		{"DeletePrefix", testDeletePrefix},
		{"NoChangeNoRevision", testNoChangeNoRevision},
		{"ValuesAreCopies", testValuesAreCopies},
		{"CanceledContext", testCanceledContext},
		{"WatchFromNow", testWatchFromNow},
		{"WatchReplay", testWatchReplay},
		{"WatchReplayLong", testWatchReplayLong},
		{"WatchFutureRevision", testWatchFutureRevision},
		{"WatchPrefix", testWatchPrefix},
		{"WatchDeleteEvent", testWatchDeleteEvent},
		{"WatchCancel", testWatchCancel},
		{"WatchHandoff", testWatchHandoff},
		{"ConcurrentCAS", testConcurrentCAS},
		{"SlowWatcher", testSlowWatcher},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, fresh(t)) })
	}
	t.Run("Conditions", func(t *testing.T) { testConditions(t, fresh) })
	t.Run("Close", func(t *testing.T) { testClose(t, open) })
	t.Run("Model", func(t *testing.T) { testModel(t, open) })
}

// RunDurable checks what a durable backend keeps across Close and reopen.
// open must open the store kept in dir (creating it when dir is empty).
func RunDurable(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Helper()
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
	t.Run("RevisionSurvivesEmptyStore", func(t *testing.T) { testRevisionSurvivesEmptyStore(t, open) })
	t.Run("WatchAfterReopen", func(t *testing.T) { testWatchAfterReopen(t, open) })
}

// kvOpts compares KVs and events treating nil and empty slices alike.
var kvOpts = cmp.Options{
	cmp.Comparer(bytes.Equal),
	equateEmpty[store.KV](),
	equateEmpty[store.Event](),
	equateEmpty[string](),
}

// equateEmpty is cmpopts.EquateEmpty for one slice type; it cannot be used
// for all types at once alongside the []byte comparer.
func equateEmpty[T any]() cmp.Option {
	return cmp.FilterValues(func(a, b []T) bool { return len(a) == 0 && len(b) == 0 },
		cmp.Comparer(func(a, b []T) bool { return true }))
}

func mustTxn(t *testing.T, s store.Store, conds []store.Cond, ops ...store.Op) int64 {
	t.Helper()
	rev, err := s.Txn(t.Context(), conds, ops...)
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	return rev
}

func mustPut(t *testing.T, s store.Store, key, value string) int64 {
	t.Helper()
	return mustTxn(t, s, nil, store.Put(key, []byte(value)))
}

func mustGet(t *testing.T, s store.Store, key string) store.KV {
	t.Helper()
	kv, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return kv
}

func mustList(t *testing.T, s store.Store, prefix string) ([]store.KV, int64) {
	t.Helper()
	kvs, rev, err := s.List(t.Context(), prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return kvs, rev
}

func mustRevision(t *testing.T, s store.Store) int64 {
	t.Helper()
	rev, err := s.Revision(t.Context())
	if err != nil {
		t.Fatalf("Revision: %v", err)
	}
	return rev
}

func mustWatch(t *testing.T, s store.Store, ctx context.Context, prefix string, fromRev int64) <-chan store.Event {
	t.Helper()
	ch, err := s.Watch(ctx, prefix, fromRev)
	if err != nil {
		t.Fatalf("Watch(%q, %d): %v", prefix, fromRev, err)
	}
	return ch
}

func assertNotFound(t *testing.T, s store.Store, key string) {
	t.Helper()
	if kv, err := s.Get(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %+v, %v; want ErrNotFound", key, kv, err)
	}
}

// fataler is the part of testing.TB (and rapid.T) the helpers use.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// recv reads n events, failing the test if they do not come in time or the
// channel closes first.
func recv(t fataler, ch <-chan store.Event, n int) []store.Event {
	t.Helper()
	events := make([]store.Event, 0, n)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for len(events) < n {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("watch channel closed after %d of %d events: %+v", len(events), n, events)
			}
			events = append(events, ev)
		case <-timer.C:
			t.Fatalf("got %d of %d events in %v: %+v", len(events), n, wait, events)
		}
	}
	return events
}

// drainClosed reads until ch closes and returns what it read.
func drainClosed(t fataler, ch <-chan store.Event) []store.Event {
	t.Helper()
	var events []store.Event
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return events
			}
			events = append(events, ev)
		case <-timer.C:
			t.Fatalf("watch channel not closed after %v (%d events read)", wait, len(events))
		}
	}
}

// assertQuiet checks that no event arrives for a short while.
func assertQuiet(t *testing.T, ch <-chan store.Event) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("unexpected event %+v", ev)
		}
		t.Fatal("watch channel closed unexpectedly")
	case <-time.After(50 * time.Millisecond):
	}
}

func putEvent(key, value string, create, mod int64) store.Event {
	return store.Event{Type: store.EventPut, KV: store.KV{
		Key: []byte(key), Value: []byte(value), CreateRevision: create, ModRevision: mod,
	}}
}

func deleteEvent(key string, rev int64) store.Event {
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: []byte(key), ModRevision: rev}}
}

// diffEvents compares events, ignoring the order of events that share a
// revision (the contract only orders revisions) and the CreateRevision of
// delete events.
func diffEvents(want, got []store.Event) string {
	norm := func(evs []store.Event) []store.Event {
		evs = slices.Clone(evs)
		for i := range evs {
			if evs[i].Type == store.EventDelete {
				evs[i].KV.CreateRevision = 0
			}
		}
		slices.SortStableFunc(evs, func(a, b store.Event) int {
			switch {
			case a.KV.ModRevision < b.KV.ModRevision:
				return -1
			case a.KV.ModRevision > b.KV.ModRevision:
				return 1
			}
			return bytes.Compare(a.KV.Key, b.KV.Key)
		})
		return evs
	}
	return cmp.Diff(norm(want), norm(got), kvOpts)
}

// assertOrdered checks that revisions never go back in delivery order.
func assertOrdered(t fataler, events []store.Event) {
	t.Helper()
	for i := 1; i < len(events); i++ {
		if events[i].KV.ModRevision < events[i-1].KV.ModRevision {
			t.Fatalf("event %d has revision %d after %d: %+v", i, events[i].KV.ModRevision, events[i-1].KV.ModRevision, events)
		}
	}
}

func testGetMissing(t *testing.T, s store.Store) {
	assertNotFound(t, s, "missing")
	mustPut(t, s, "present", "v")
	assertNotFound(t, s, "pres")
	assertNotFound(t, s, "present/")
}

func testPutGet(t *testing.T, s store.Store) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	tests := []struct {
		name  string
		key   string
		value []byte
	}{
		{"plain", "k/plain", []byte("hello")},
		{"empty", "k/empty", []byte{}},
		{"nil", "k/nil", nil},
		{"binary", "k/binary", []byte{0, 1, 0xff, '\n', 0}},
		{"binary key", "k/\x00\xff", []byte("v")},
		{"64KiB", "k/big", big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rev := mustTxn(t, s, nil, store.Put(tc.key, tc.value))
			want := store.KV{Key: []byte(tc.key), Value: tc.value, CreateRevision: rev, ModRevision: rev}
			if diff := cmp.Diff(want, mustGet(t, s, tc.key), kvOpts); diff != "" {
				t.Errorf("Get(%q) (-want +got):\n%s", tc.key, diff)
			}
		})
	}
}

func testList(t *testing.T, s store.Store) {
	keys := []string{"b/1", "a/10", "ab", "a", "a/b/c", "\xff", "b", "a/2", "a/1", "\x00"}
	for _, k := range keys {
		mustPut(t, s, k, "v:"+k)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"\x00", "a", "a/1", "a/10", "a/2", "a/b/c", "ab", "b", "b/1", "\xff"}},
		{"a", []string{"a", "a/1", "a/10", "a/2", "a/b/c", "ab"}},
		{"a/", []string{"a/1", "a/10", "a/2", "a/b/c"}},
		{"a/1", []string{"a/1", "a/10"}},
		{"a/b", []string{"a/b/c"}},
		{"b/1", []string{"b/1"}},
		{"c", nil},
		{"a/b/c/", nil},
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.prefix), func(t *testing.T) {
			kvs, rev := mustList(t, s, tc.prefix)
			if cur := mustRevision(t, s); rev != cur {
				t.Errorf("List revision %d, Revision %d", rev, cur)
			}
			var got []string
			for _, kv := range kvs {
				got = append(got, string(kv.Key))
				if diff := cmp.Diff(mustGet(t, s, string(kv.Key)), kv, kvOpts); diff != "" {
					t.Errorf("List entry differs from Get (-get +list):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tc.want, got, kvOpts); diff != "" {
				t.Errorf("List(%q) keys (-want +got):\n%s", tc.prefix, diff)
			}
		})
	}
}

func testRevisionsGrow(t *testing.T, s store.Store) {
	prev := mustRevision(t, s)
	writes := []struct {
		name string
		ops  []store.Op
	}{
		{"create", []store.Op{store.Put("r/a", []byte("1"))}},
		{"update", []store.Op{store.Put("r/a", []byte("2"))}},
		{"same value", []store.Op{store.Put("r/a", []byte("2"))}},
		{"create two", []store.Op{store.Put("r/b", []byte("1")), store.Put("r/c", []byte("1"))}},
		{"delete", []store.Op{store.Delete("r/b")}},
		{"delete prefix", []store.Op{store.DeletePrefix("r/")}},
		{"recreate", []store.Op{store.Put("r/a", []byte("3"))}},
	}
	for _, w := range writes {
		rev := mustTxn(t, s, nil, w.ops...)
		if rev <= prev {
			t.Fatalf("%s: revision %d after %d", w.name, rev, prev)
		}
		if cur := mustRevision(t, s); cur != rev {
			t.Fatalf("%s: Txn returned %d, Revision %d", w.name, rev, cur)
		}
		if _, lrev := mustList(t, s, ""); lrev != rev {
			t.Fatalf("%s: Txn returned %d, List revision %d", w.name, rev, lrev)
		}
		prev = rev
	}
}

func testTxnSharesRevision(t *testing.T, s store.Store) {
	mustPut(t, s, "x/c", "old")
	ch := mustWatch(t, s, t.Context(), "x/", 0)
	rev := mustTxn(t, s, nil,
		store.Put("x/a", []byte("a")),
		store.Put("x/b", []byte("b")),
		store.Delete("x/c"),
	)
	for _, k := range []string{"x/a", "x/b"} {
		if kv := mustGet(t, s, k); kv.ModRevision != rev || kv.CreateRevision != rev {
			t.Errorf("Get(%q) revisions create=%d mod=%d, want %d", k, kv.CreateRevision, kv.ModRevision, rev)
		}
	}
	assertNotFound(t, s, "x/c")
	want := []store.Event{putEvent("x/a", "a", rev, rev), putEvent("x/b", "b", rev, rev), deleteEvent("x/c", rev)}
	if diff := diffEvents(want, recv(t, ch, 3)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func testCreateVsModRevision(t *testing.T, s store.Store) {
	r1 := mustPut(t, s, "k", "1")
	r2 := mustPut(t, s, "k", "2")
	if kv := mustGet(t, s, "k"); kv.CreateRevision != r1 || kv.ModRevision != r2 {
		t.Fatalf("after update: create=%d mod=%d, want %d %d", kv.CreateRevision, kv.ModRevision, r1, r2)
	}
	mustTxn(t, s, nil, store.Delete("k"))
	r4 := mustPut(t, s, "k", "3")
	if kv := mustGet(t, s, "k"); kv.CreateRevision != r4 || kv.ModRevision != r4 {
		t.Fatalf("after recreate: create=%d mod=%d, want %d %d", kv.CreateRevision, kv.ModRevision, r4, r4)
	}
	// A write to another key leaves k alone.
	mustPut(t, s, "other", "x")
	if kv := mustGet(t, s, "k"); kv.CreateRevision != r4 || kv.ModRevision != r4 {
		t.Fatalf("after unrelated write: create=%d mod=%d, want %d %d", kv.CreateRevision, kv.ModRevision, r4, r4)
	}
}

func testConditions(t *testing.T, fresh func(t *testing.T) store.Store) {
	// Each case starts from a store holding only "k" (at revision rk) and
	// writes "w" and deletes "k" if its conditions hold.
	tests := []struct {
		name  string
		conds func(rk int64) []store.Cond
		ok    bool
	}{
		{"no conds", func(int64) []store.Cond { return nil }, true},
		{"create-if-absent, absent", func(int64) []store.Cond { return []store.Cond{store.ModRevisionIs("w", 0)} }, true},
		{"create-if-absent, present", func(int64) []store.Cond { return []store.Cond{store.ModRevisionIs("k", 0)} }, false},
		{"mod revision matches", func(rk int64) []store.Cond { return []store.Cond{store.ModRevisionIs("k", rk)} }, true},
		{"mod revision newer", func(rk int64) []store.Cond { return []store.Cond{store.ModRevisionIs("k", rk+1)} }, false},
		{"mod revision of absent key", func(rk int64) []store.Cond { return []store.Cond{store.ModRevisionIs("w", rk)} }, false},
		{"exists, present", func(int64) []store.Cond { return []store.Cond{store.Exists("k")} }, true},
		{"exists, absent", func(int64) []store.Cond { return []store.Cond{store.Exists("w")} }, false},
		{"exists, prefix only", func(int64) []store.Cond { return []store.Cond{store.Exists("")} }, false},
		{"all hold", func(rk int64) []store.Cond {
			return []store.Cond{store.Exists("k"), store.ModRevisionIs("k", rk), store.ModRevisionIs("w", 0)}
		}, true},
		{"last fails", func(rk int64) []store.Cond {
			return []store.Cond{store.Exists("k"), store.ModRevisionIs("k", rk), store.Exists("w")}
		}, false},
		{"first fails", func(rk int64) []store.Cond {
			return []store.Cond{store.ModRevisionIs("k", 0), store.Exists("k")}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := fresh(t)
			rk := mustPut(t, s, "k", "v")
			before := mustRevision(t, s)
			rev, err := s.Txn(t.Context(), tc.conds(rk), store.Put("w", []byte("w")), store.Delete("k"))
			if !tc.ok {
				if !errors.Is(err, store.ErrConflict) {
					t.Fatalf("Txn = %d, %v; want ErrConflict", rev, err)
				}
				if cur := mustRevision(t, s); cur != before {
					t.Errorf("failed Txn moved revision %d -> %d", before, cur)
				}
				assertNotFound(t, s, "w")
				if kv := mustGet(t, s, "k"); string(kv.Value) != "v" || kv.ModRevision != rk {
					t.Errorf("failed Txn changed k: %+v", kv)
				}
				return
			}
			if err != nil {
				t.Fatalf("Txn: %v", err)
			}
			if rev <= before {
				t.Errorf("Txn revision %d, not after %d", rev, before)
			}
			if kv := mustGet(t, s, "w"); kv.ModRevision != rev {
				t.Errorf("w mod revision %d, want %d", kv.ModRevision, rev)
			}
			assertNotFound(t, s, "k")
		})
	}
}

func testConflictWritesNothing(t *testing.T, s store.Store) {
	rk := mustPut(t, s, "c/k", "v")
	ch := mustWatch(t, s, t.Context(), "", 0)
	before := mustRevision(t, s)
	_, err := s.Txn(t.Context(), []store.Cond{store.ModRevisionIs("c/k", rk+100)},
		store.Put("c/k", []byte("changed")), store.Put("c/new", []byte("x")), store.DeletePrefix("c/"))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("Txn error %v, want ErrConflict", err)
	}
	if cur := mustRevision(t, s); cur != before {
		t.Fatalf("revision moved %d -> %d", before, cur)
	}
	kvs, _ := mustList(t, s, "")
	want := []store.KV{{Key: []byte("c/k"), Value: []byte("v"), CreateRevision: rk, ModRevision: rk}}
	if diff := cmp.Diff(want, kvs, kvOpts); diff != "" {
		t.Fatalf("store changed (-want +got):\n%s", diff)
	}
	// The first event the watcher sees is a later write, not the failed one.
	rev := mustPut(t, s, "after", "x")
	if diff := diffEvents([]store.Event{putEvent("after", "x", rev, rev)}, recv(t, ch, 1)); diff != "" {
		t.Fatalf("event (-want +got):\n%s", diff)
	}
}

func testDeletePrefix(t *testing.T, s store.Store) {
	for _, k := range []string{"p/1", "p/2", "p/sub/3", "p2", "q", "o"} {
		mustPut(t, s, k, k)
	}
	ch := mustWatch(t, s, t.Context(), "", 0)
	rev := mustTxn(t, s, nil, store.DeletePrefix("p/"))
	kvs, _ := mustList(t, s, "")
	var got []string
	for _, kv := range kvs {
		got = append(got, string(kv.Key))
	}
	if diff := cmp.Diff([]string{"o", "p2", "q"}, got); diff != "" {
		t.Fatalf("keys left (-want +got):\n%s", diff)
	}
	want := []store.Event{deleteEvent("p/1", rev), deleteEvent("p/2", rev), deleteEvent("p/sub/3", rev)}
	if diff := diffEvents(want, recv(t, ch, 3)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	// The empty prefix deletes everything.
	rev = mustTxn(t, s, nil, store.DeletePrefix(""))
	if kvs, _ := mustList(t, s, ""); len(kvs) != 0 {
		t.Fatalf("after DeletePrefix(\"\"): %d keys left", len(kvs))
	}
	want = []store.Event{deleteEvent("o", rev), deleteEvent("p2", rev), deleteEvent("q", rev)}
	if diff := diffEvents(want, recv(t, ch, 3)); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
}

func testNoChangeNoRevision(t *testing.T, s store.Store) {
	mustPut(t, s, "k", "v")
	ch := mustWatch(t, s, t.Context(), "", 0)
	before := mustRevision(t, s)
	tests := []struct {
		name  string
		conds []store.Cond
		ops   []store.Op
		err   error
	}{
		{"empty", nil, nil, nil},
		{"conds hold, no ops", []store.Cond{store.Exists("k")}, nil, nil},
		{"conds fail, no ops", []store.Cond{store.Exists("absent")}, nil, store.ErrConflict},
		{"delete absent", nil, []store.Op{store.Delete("absent")}, nil},
		{"delete prefix without match", nil, []store.Op{store.DeletePrefix("nothing/")}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rev, err := s.Txn(t.Context(), tc.conds, tc.ops...)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Txn error %v, want %v", err, tc.err)
				}
			} else {
				if err != nil {
					t.Fatalf("Txn: %v", err)
				}
				if rev != before {
					t.Fatalf("Txn returned %d, want the current revision %d", rev, before)
				}
			}
			if cur := mustRevision(t, s); cur != before {
				t.Fatalf("revision moved %d -> %d", before, cur)
			}
		})
	}
	assertQuiet(t, ch)
}

func testValuesAreCopies(t *testing.T, s store.Store) {
	buf := []byte("hello")
	rev := mustTxn(t, s, nil, store.Put("k", buf))
	buf[0] = 'X'
	check := func(step string) {
		t.Helper()
		if kv := mustGet(t, s, "k"); string(kv.Value) != "hello" || string(kv.Key) != "k" {
			t.Fatalf("%s: Get = %q=%q, want k=hello", step, kv.Key, kv.Value)
		}
	}
	check("caller changed the Put value")

	kv := mustGet(t, s, "k")
	kv.Value[0], kv.Key[0] = 'Y', 'Y'
	check("caller changed a Get result")

	kvs, _ := mustList(t, s, "")
	kvs[0].Value[0], kvs[0].Key[0] = 'Z', 'Z'
	check("caller changed a List result")

	ch1 := mustWatch(t, s, t.Context(), "", rev)
	ch2 := mustWatch(t, s, t.Context(), "", rev)
	ev := recv(t, ch1, 1)[0]
	ev.KV.Value[0], ev.KV.Key[0] = 'W', 'W'
	if ev := recv(t, ch2, 1)[0]; string(ev.KV.Value) != "hello" || string(ev.KV.Key) != "k" {
		t.Fatalf("second watcher got %q=%q after the first changed its event", ev.KV.Key, ev.KV.Value)
	}
	check("caller changed a watch event")
	ch3 := mustWatch(t, s, t.Context(), "", rev)
	if ev := recv(t, ch3, 1)[0]; string(ev.KV.Value) != "hello" || string(ev.KV.Key) != "k" {
		t.Fatalf("replay got %q=%q after a watcher changed its event", ev.KV.Key, ev.KV.Value)
	}
}

func testCanceledContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get error %v, want context.Canceled", err)
	}
	if _, _, err := s.List(ctx, ""); !errors.Is(err, context.Canceled) {
		t.Errorf("List error %v, want context.Canceled", err)
	}
	if _, err := s.Txn(ctx, nil, store.Put("k", []byte("v"))); !errors.Is(err, context.Canceled) {
		t.Errorf("Txn error %v, want context.Canceled", err)
	}
	assertNotFound(t, s, "k")
	// Watch may fail or return a channel that closes.
	if ch, err := s.Watch(ctx, "", 0); err == nil {
		drainClosed(t, ch)
	}
}

func testWatchFromNow(t *testing.T, s store.Store) {
	mustPut(t, s, "before", "1")
	ch := mustWatch(t, s, t.Context(), "", 0)
	rev := mustPut(t, s, "after", "2")
	if diff := diffEvents([]store.Event{putEvent("after", "2", rev, rev)}, recv(t, ch, 1)); diff != "" {
		t.Fatalf("first event (-want +got):\n%s", diff)
	}
	// Watching from the revision after the current one is the same.
	ch = mustWatch(t, s, t.Context(), "", mustRevision(t, s)+1)
	rev = mustPut(t, s, "later", "3")
	if diff := diffEvents([]store.Event{putEvent("later", "3", rev, rev)}, recv(t, ch, 1)); diff != "" {
		t.Fatalf("first event (-want +got):\n%s", diff)
	}
}

func testWatchReplay(t *testing.T, s store.Store) {
	var all []store.Event
	r1 := mustPut(t, s, "k1", "a")
	all = append(all, putEvent("k1", "a", r1, r1))
	r2 := mustPut(t, s, "k2", "b")
	all = append(all, putEvent("k2", "b", r2, r2))
	r3 := mustPut(t, s, "k1", "c")
	all = append(all, putEvent("k1", "c", r1, r3))
	r4 := mustTxn(t, s, nil, store.Put("k3", []byte("d")), store.Delete("k2"))
	all = append(all, putEvent("k3", "d", r4, r4), deleteEvent("k2", r4))
	r5 := mustTxn(t, s, nil, store.DeletePrefix("k"))
	all = append(all, deleteEvent("k1", r5), deleteEvent("k3", r5))

	for i, from := range []int64{r1, r2, r3, r4, r5} {
		t.Run(fmt.Sprintf("from %d", from), func(t *testing.T) {
			ch := mustWatch(t, s, t.Context(), "", from)
			var want []store.Event
			for _, ev := range all {
				if ev.KV.ModRevision >= from {
					want = append(want, ev)
				}
			}
			got := recv(t, ch, len(want))
			assertOrdered(t, got)
			if diff := diffEvents(want, got); diff != "" {
				t.Fatalf("replay from #%d (-want +got):\n%s", i, diff)
			}
			assertQuiet(t, ch)
		})
	}

	// Replay then live: a watcher from r3 on prefix k1 sees the update,
	// the delete, and then a new write.
	ch := mustWatch(t, s, t.Context(), "k1", r3)
	r6 := mustPut(t, s, "k1", "e")
	want := []store.Event{putEvent("k1", "c", r1, r3), deleteEvent("k1", r5), putEvent("k1", "e", r6, r6)}
	got := recv(t, ch, 3)
	assertOrdered(t, got)
	if diff := diffEvents(want, got); diff != "" {
		t.Fatalf("replay then live (-want +got):\n%s", diff)
	}
}

// testWatchReplayLong replays more revisions than a backend is likely to
// read at once.
func testWatchReplayLong(t *testing.T, s store.Store) {
	const n = 600
	var want []store.Event
	first := int64(0)
	for i := range n {
		key := fmt.Sprintf("long/%d", i%7)
		rev := mustPut(t, s, key, strconv.Itoa(i))
		if first == 0 {
			first = rev
		}
		want = append(want, store.Event{Type: store.EventPut, KV: store.KV{Key: []byte(key), Value: []byte(strconv.Itoa(i)), ModRevision: rev}})
	}
	ch := mustWatch(t, s, t.Context(), "long/", first)
	got := recv(t, ch, n)
	assertOrdered(t, got)
	for i := range got {
		got[i].KV.CreateRevision = 0
	}
	if diff := diffEvents(want, got); diff != "" {
		t.Fatalf("replay (-want +got):\n%s", diff)
	}
}

func testWatchFutureRevision(t *testing.T, s store.Store) {
	cur := mustRevision(t, s)
	ch := mustWatch(t, s, t.Context(), "", cur+2)
	r1 := mustPut(t, s, "f", "1")
	if r1 != cur+1 {
		t.Skipf("backend revisions step by %d: future watch not checked", r1-cur)
	}
	r2 := mustPut(t, s, "f", "2")
	if diff := diffEvents([]store.Event{putEvent("f", "2", r1, r2)}, recv(t, ch, 1)); diff != "" {
		t.Fatalf("first event (-want +got):\n%s", diff)
	}
}

func testWatchPrefix(t *testing.T, s store.Store) {
	ch := mustWatch(t, s, t.Context(), "a/", 0)
	all := mustWatch(t, s, t.Context(), "", 0)
	var want, wantAll []store.Event
	for _, k := range []string{"a", "b/1", "a/1", "ab", "a/2/x"} {
		rev := mustPut(t, s, k, k)
		ev := putEvent(k, k, rev, rev)
		wantAll = append(wantAll, ev)
		if len(k) >= 2 && k[:2] == "a/" {
			want = append(want, ev)
		}
	}
	rev := mustTxn(t, s, nil, store.DeletePrefix("a"))
	for _, k := range []string{"a", "a/1", "a/2/x", "ab"} {
		wantAll = append(wantAll, deleteEvent(k, rev))
	}
	want = append(want, deleteEvent("a/1", rev), deleteEvent("a/2/x", rev))
	if diff := diffEvents(want, recv(t, ch, len(want))); diff != "" {
		t.Fatalf("prefix a/ (-want +got):\n%s", diff)
	}
	assertQuiet(t, ch)
	if diff := diffEvents(wantAll, recv(t, all, len(wantAll))); diff != "" {
		t.Fatalf("empty prefix (-want +got):\n%s", diff)
	}
}

func testWatchDeleteEvent(t *testing.T, s store.Store) {
	mustPut(t, s, "d", "value")
	ch := mustWatch(t, s, t.Context(), "d", 0)
	rev := mustTxn(t, s, nil, store.Delete("d"))
	ev := recv(t, ch, 1)[0]
	if ev.Type != store.EventDelete || string(ev.KV.Key) != "d" || ev.KV.ModRevision != rev || ev.KV.Value != nil {
		t.Fatalf("delete event %+v, want type delete, key d, revision %d, nil value", ev, rev)
	}
	// The same through replay.
	ch = mustWatch(t, s, t.Context(), "d", rev)
	ev = recv(t, ch, 1)[0]
	if ev.Type != store.EventDelete || string(ev.KV.Key) != "d" || ev.KV.ModRevision != rev || ev.KV.Value != nil {
		t.Fatalf("replayed delete event %+v, want type delete, key d, revision %d, nil value", ev, rev)
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	rev := mustPut(t, s, "w", "0")
	for _, from := range []int64{0, rev} {
		t.Run(fmt.Sprintf("from %d", from), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			ch := mustWatch(t, s, ctx, "", from)
			cancel()
			drainClosed(t, ch)
			// Writes go on after the watcher is gone.
			mustPut(t, s, "w", "1")
		})
	}
}

// testWatchHandoff starts a watcher from an old revision while a writer is
// running: replay and live delivery must join without a gap or a duplicate.
func testWatchHandoff(t *testing.T, s store.Store) {
	const n = 300
	first := mustPut(t, s, "h", "0")
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		var once sync.Once
		defer once.Do(func() { close(started) })
		for i := 1; i < n; i++ {
			if i == 20 {
				once.Do(func() { close(started) })
			}
			if _, err := s.Txn(context.Background(), nil, store.Put("h", []byte(strconv.Itoa(i)))); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	<-started
	ch := mustWatch(t, s, t.Context(), "h", first)
	got := recv(t, ch, n)
	if err := <-errc; err != nil {
		t.Fatalf("writer: %v", err)
	}
	for i, ev := range got {
		if string(ev.KV.Value) != strconv.Itoa(i) {
			t.Fatalf("event %d has value %q, want %d", i, ev.KV.Value, i)
		}
		if i > 0 && ev.KV.ModRevision <= got[i-1].KV.ModRevision {
			t.Fatalf("event %d revision %d after %d", i, ev.KV.ModRevision, got[i-1].KV.ModRevision)
		}
	}
	assertQuiet(t, ch)
}

func testConcurrentCAS(t *testing.T, s store.Store) {
	const (
		workers = 8
		each    = 50
		key     = "counter"
	)
	ch := mustWatch(t, s, t.Context(), key, 0)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for done := 0; done < each; {
				n, mod := 0, int64(0)
				kv, err := s.Get(context.Background(), key)
				switch {
				case errors.Is(err, store.ErrNotFound):
				case err != nil:
					errs <- err
					return
				default:
					if n, err = strconv.Atoi(string(kv.Value)); err != nil {
						errs <- err
						return
					}
					mod = kv.ModRevision
				}
				_, err = s.Txn(context.Background(), []store.Cond{store.ModRevisionIs(key, mod)},
					store.Put(key, []byte(strconv.Itoa(n+1))))
				switch {
				case errors.Is(err, store.ErrConflict):
				case err != nil:
					errs <- err
					return
				default:
					done++
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if kv := mustGet(t, s, key); string(kv.Value) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s, want %d", kv.Value, workers*each)
	}
	// Every increment was seen once, in order.
	for i, ev := range recv(t, ch, workers*each) {
		if string(ev.KV.Value) != strconv.Itoa(i+1) {
			t.Fatalf("event %d has value %s, want %d", i, ev.KV.Value, i+1)
		}
	}
}

func testSlowWatcher(t *testing.T, s store.Store) {
	const (
		txns  = 100
		ops   = 256
		total = txns * ops
	)
	ch := mustWatch(t, s, t.Context(), "", 0) // never read while writing
	value := bytes.Repeat([]byte("v"), 100)
	done := make(chan error, 1)
	go func() {
		for i := range txns {
			batch := make([]store.Op, 0, ops)
			for j := range ops {
				batch = append(batch, store.Put(fmt.Sprintf("slow/%03d/%03d", i, j), value))
			}
			if _, err := s.Txn(context.Background(), nil, batch...); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("writer: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("writers blocked by a watcher that does not read")
	}
	got := drainClosed(t, ch)
	if len(got) >= total {
		t.Fatalf("slow watcher got all %d events: it was never cancelled", len(got))
	}
	assertOrdered(t, got)
	// The store still works, and a fresh watcher gets new events.
	ch = mustWatch(t, s, t.Context(), "", 0)
	rev := mustPut(t, s, "after", "x")
	if diff := diffEvents([]store.Event{putEvent("after", "x", rev, rev)}, recv(t, ch, 1)); diff != "" {
		t.Fatalf("event (-want +got):\n%s", diff)
	}
}

func testClose(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	rev := mustPut(t, s, "k", "v")
	mustPut(t, s, "k", "w")
	live := mustWatch(t, s, t.Context(), "", 0)
	// A replaying watcher whose events are not read.
	replaying := mustWatch(t, s, t.Context(), "", rev)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	drainClosed(t, live)
	if got := drainClosed(t, replaying); len(got) > 2 {
		t.Fatalf("replaying watcher got %d events, at most 2 exist", len(got))
	}
	ctx := t.Context()
	checks := map[string]error{}
	_, checks["Get"] = s.Get(ctx, "k")
	_, _, checks["List"] = s.List(ctx, "")
	_, checks["Txn"] = s.Txn(ctx, nil, store.Put("k", []byte("x")))
	_, checks["Watch"] = s.Watch(ctx, "", 0)
	_, checks["Revision"] = s.Revision(ctx)
	for name, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func testReopen(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	ra := mustPut(t, s, "a", "1")
	mustPut(t, s, "b", "2")
	mustPut(t, s, "a", "3")
	mustTxn(t, s, nil, store.Delete("b"), store.Put("c/1", []byte("x")), store.Put("c/2", nil))
	wantKVs, wantRev := mustList(t, s, "")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	defer closeStore(t, s)
	kvs, rev := mustList(t, s, "")
	if diff := cmp.Diff(wantKVs, kvs, kvOpts); diff != "" {
		t.Fatalf("data after reopen (-want +got):\n%s", diff)
	}
	if rev != wantRev || mustRevision(t, s) != wantRev {
		t.Fatalf("revision after reopen: List %d, Revision %d, want %d", rev, mustRevision(t, s), wantRev)
	}
	// Conditions see the old revisions, and the counter goes on.
	a := mustGet(t, s, "a")
	r := mustTxn(t, s, []store.Cond{store.ModRevisionIs("a", a.ModRevision), store.ModRevisionIs("b", 0)},
		store.Put("a", []byte("4")))
	if r <= wantRev {
		t.Fatalf("first write after reopen got revision %d, not after %d", r, wantRev)
	}
	if kv := mustGet(t, s, "a"); kv.CreateRevision != ra || kv.ModRevision != r {
		t.Fatalf("a after reopen: create=%d mod=%d, want %d %d", kv.CreateRevision, kv.ModRevision, ra, r)
	}
}

func testRevisionSurvivesEmptyStore(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	mustPut(t, s, "a", "1")
	rev := mustTxn(t, s, nil, store.DeletePrefix(""))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, dir)
	defer closeStore(t, s)
	if got := mustRevision(t, s); got != rev {
		t.Fatalf("revision of an emptied store after reopen = %d, want %d", got, rev)
	}
	if r := mustPut(t, s, "a", "2"); r <= rev {
		t.Fatalf("revision %d reused after reopen (last was %d)", r, rev)
	}
}

func testWatchAfterReopen(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	var want []store.Event
	r1 := mustPut(t, s, "w/a", "1")
	want = append(want, putEvent("w/a", "1", r1, r1))
	r2 := mustTxn(t, s, nil, store.Put("w/b", []byte("2")), store.Put("w/a", []byte("3")))
	want = append(want, putEvent("w/b", "2", r2, r2), putEvent("w/a", "3", r1, r2))
	r3 := mustTxn(t, s, nil, store.Delete("w/b"))
	want = append(want, deleteEvent("w/b", r3))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	defer closeStore(t, s)
	ch, err := s.Watch(t.Context(), "w/", r1)
	if errors.Is(err, store.ErrCompacted) {
		t.Logf("backend does not replay across reopen: %v", err)
	} else {
		if err != nil {
			t.Fatalf("Watch from %d after reopen: %v", r1, err)
		}
		r4 := mustPut(t, s, "w/c", "4")
		want = append(want, putEvent("w/c", "4", r4, r4))
		got := recv(t, ch, len(want))
		assertOrdered(t, got)
		if diff := diffEvents(want, got); diff != "" {
			t.Fatalf("replay after reopen (-want +got):\n%s", diff)
		}
	}
	// Watching from now works after reopen.
	ch = mustWatch(t, s, t.Context(), "w/", 0)
	r := mustPut(t, s, "w/d", "5")
	if diff := diffEvents([]store.Event{putEvent("w/d", "5", r, r)}, recv(t, ch, 1)); diff != "" {
		t.Fatalf("live event after reopen (-want +got):\n%s", diff)
	}
}

func closeStore(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
