package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/memstore"
	"github.com/vmssd/vmssd/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memstore.New(memstore.Options{}) })
}

func TestCompacted(t *testing.T) {
	ctx := t.Context()
	s := memstore.New(memstore.Options{History: 5})
	defer s.Close()
	var last int64
	for i := range 10 {
		rev, err := s.Txn(ctx, nil, store.Put("k", []byte{byte(i)}))
		if err != nil {
			t.Fatal(err)
		}
		last = rev
	}
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
			if ev.KV.ModRevision != want {
				t.Fatalf("event revision %d, want %d", ev.KV.ModRevision, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event for revision %d", want)
		}
	}
}

func TestSlowWatcherCancelled(t *testing.T) {
	ctx := t.Context()
	s := memstore.New(memstore.Options{WatchBuffer: 10})
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

func TestNegativeRevision(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	if _, err := s.Watch(t.Context(), "", -1); err == nil {
		t.Fatal("Watch from -1 succeeded")
	}
}

func TestEmptyKey(t *testing.T) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	if _, err := s.Txn(t.Context(), nil, store.Put("", []byte("v"))); err == nil {
		t.Fatal("Put with an empty key succeeded")
	}
	if rev, _ := s.Revision(t.Context()); rev != 0 {
		t.Fatalf("revision %d after a rejected Txn", rev)
	}
}

func BenchmarkTxnPut(b *testing.B) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	benchTxnPut(b, s)
}

func BenchmarkList1000(b *testing.B) {
	s := memstore.New(memstore.Options{})
	defer s.Close()
	benchList1000(b, s)
}

func benchTxnPut(b *testing.B, s store.Store) {
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

func benchList1000(b *testing.B, s store.Store) {
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
