package state

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/boltstore"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

// Both backends read one page only.
var (
	_ Ranger = (*memstore.Store)(nil)
	_ Ranger = (*boltstore.Store)(nil)
)

// listOnly hides a store's ListRange, so that ListPage takes its fallback.
type listOnly struct{ store.Store }

// TestListPage pages through a prefix on both backends and through the
// fallback: every key exactly once, in order, never a key of a neighbouring
// prefix, pages of the asked size.
func TestListPage(t *testing.T) {
	ctx := context.Background()
	bolt, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bolt.Close() })
	mem := memstore.New(memstore.Options{})
	backends := map[string]store.Store{"memstore": mem, "boltstore": bolt, "fallback": listOnly{memstore.New(memstore.Options{})}}
	for name, s := range backends {
		t.Run(name, func(t *testing.T) {
			var ops []store.Op
			for i := range 23 {
				ops = append(ops, store.Put(fmt.Sprintf("/p/%03d", i), []byte("v")))
			}
			ops = append(ops, store.Put("/o/1", []byte("x")), store.Put("/p0", []byte("x")), store.Put("/q/1", []byte("x")))
			if _, err := s.Txn(ctx, nil, ops...); err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{1, 5, 23, 100} {
				var got []string
				start, pages := "", 0
				for {
					kvs, next, err := ListPage(ctx, s, "/p/", start, size)
					if err != nil {
						t.Fatal(err)
					}
					pages++
					if len(kvs) > size || next != "" && len(kvs) != size {
						t.Fatalf("size %d: page of %d keys, next %q", size, len(kvs), next)
					}
					for _, kv := range kvs {
						got = append(got, string(kv.Key))
					}
					if next == "" {
						break
					}
					start = next
				}
				if len(got) != 23 || pages != (23+size-1)/size {
					t.Fatalf("size %d: %d keys in %d pages: %v", size, len(got), pages, got)
				}
				for i, k := range got {
					if want := fmt.Sprintf("/p/%03d", i); k != want {
						t.Fatalf("size %d: key %d is %s, want %s", size, i, k, want)
					}
				}
			}
			if kvs, next, err := ListPage(ctx, s, "/p/", "/p/010", 3); err != nil || len(kvs) != 3 || string(kvs[0].Key) != "/p/010" || next != "/p/013" {
				t.Fatalf("from /p/010: %d keys, next %q, err %v", len(kvs), next, err)
			}
			if kvs, next, err := ListPage(ctx, s, "/p/", "/p/999", 3); err != nil || len(kvs) != 0 || next != "" {
				t.Fatalf("past the end: %d keys, next %q, err %v", len(kvs), next, err)
			}
			if _, _, err := ListPage(ctx, s, "/p/", "", 0); err == nil {
				t.Fatal("a page of 0 keys was accepted")
			}
		})
	}
}
