package boltstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/boltstore"
	"github.com/vmssd/vmssd/internal/store/storetest"
)

func open(t testing.TB, path string, opts boltstore.Options) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "store.db"), boltstore.Options{})
	})
}

func TestDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
		return open(t, filepath.Join(dir, "store.db"), boltstore.Options{})
	})
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.db")
	s := open(t, path, boltstore.Options{})
	defer s.Close()
	start := time.Now()
	s2, err := boltstore.Open(path, boltstore.Options{Timeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("second Open took %v", d)
	}
}

// TestCompactedAcrossReopen checks that the event log is trimmed to
// Options.History revisions and that the bound survives a restart.
func TestCompactedAcrossReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s := open(t, path, boltstore.Options{History: 5})
	var last int64
	for i := range 10 {
		rev, err := s.Txn(ctx, nil, store.Put("k", []byte{byte(i)}))
		if err != nil {
			t.Fatal(err)
		}
		last = rev
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, boltstore.Options{History: 5})
	defer s.Close()
	for _, from := range []int64{1, last - 5} {
		if _, err := s.Watch(ctx, "", from); !errors.Is(err, store.ErrCompacted) {
			t.Errorf("Watch from %d: %v, want ErrCompacted", from, err)
		}
	}
	ch, err := s.Watch(ctx, "", last-4)
	if err != nil {
		t.Fatalf("Watch from %d: %v", last-4, err)
	}
	for want := last - 4; want <= last; want++ {
		select {
		case ev := <-ch:
			if ev.KV.ModRevision != want || ev.KV.Value[0] != byte(want-1) {
				t.Fatalf("event %+v, want revision %d", ev, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for revision %d", want)
		}
	}
}

// TestHistoryShrinks checks that reopening with a smaller History trims the
// log at the next write.
func TestHistoryShrinks(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	s := open(t, path, boltstore.Options{History: 100})
	for i := range 20 {
		if _, err := s.Txn(ctx, nil, store.Put("k", []byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, boltstore.Options{History: 3})
	defer s.Close()
	if _, err := s.Watch(ctx, "", 1); err != nil {
		t.Fatalf("Watch from 1 before any write: %v", err)
	}
	rev, err := s.Txn(ctx, nil, store.Put("k", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Watch(ctx, "", rev-3); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("Watch from %d: %v, want ErrCompacted", rev-3, err)
	}
	if _, err := s.Watch(ctx, "", rev-2); err != nil {
		t.Fatalf("Watch from %d: %v", rev-2, err)
	}
}

func TestSlowWatcherCancelled(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "store.db"), boltstore.Options{WatchBuffer: 10})
	defer s.Close()
	ch, err := s.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := s.Txn(ctx, nil, store.Put(fmt.Sprint(i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				if n > 12 {
					t.Fatalf("cancelled watcher delivered %d events, bound is 10", n)
				}
				return
			}
			n++
		case <-timeout:
			t.Fatal("slow watcher not cancelled")
		}
	}
}

func BenchmarkTxnPut(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "store.db"), boltstore.Options{})
	defer s.Close()
	ctx := context.Background()
	value := make([]byte, 256)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench/%04d", i)
	}
	i := 0
	for b.Loop() {
		if _, err := s.Txn(ctx, nil, store.Put(keys[i%len(keys)], value)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkList1000(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "store.db"), boltstore.Options{})
	defer s.Close()
	ctx := context.Background()
	value := make([]byte, 256)
	for _, prefix := range []string{"a/", "list/", "z/"} {
		ops := make([]store.Op, 0, 1000)
		for i := range 1000 {
			ops = append(ops, store.Put(fmt.Sprintf("%s%04d", prefix, i), value))
		}
		if _, err := s.Txn(ctx, nil, ops...); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		kvs, _, err := s.List(ctx, "list/")
		if err != nil || len(kvs) != 1000 {
			b.Fatalf("List: %d keys, %v", len(kvs), err)
		}
	}
}
