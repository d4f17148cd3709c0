package boltstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/boltstore"
)

// populated writes a store file with enough records for a few dozen pages
// (branch, leaf and overflow pages, a freelist) and returns its path.
func populated(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path, boltstore.Options{History: 50})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		v := make([]byte, 200+rng.IntN(2000))
		for j := range v {
			v[j] = byte('a' + rng.IntN(26))
		}
		if _, err := s.Txn(t.Context(), nil, store.Put(fmt.Sprintf("/records/%04d", i), v)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 50 { // frees pages
		if _, err := s.Txn(t.Context(), nil, store.Delete(fmt.Sprintf("/records/%04d", i*3))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// pageInfo returns the page size, the size bbolt needs (high-water mark
// times page size) and the ids of the pages in use that are not meta pages.
func pageInfo(t *testing.T, path string) (pageSize, need int64, inUse []int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		pageSize, need = int64(db.Info().PageSize), tx.Size()
		for id := 2; int64(id)*pageSize < need; id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p != nil && p.Type != "free" {
				inUse = append(inUse, id)
				id += p.OverflowCount
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inUse) < 10 {
		t.Fatalf("test store has only %d pages in use", len(inUse))
	}
	return pageSize, need, inUse
}

// copyFile copies the store file at src to a new file and returns its path.
func copyFile(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// wantCorrupt checks that Open of path fails with store.ErrCorrupt (and does
// not panic, which would end the test binary).
func wantCorrupt(t *testing.T, path string) {
	t.Helper()
	s, err := boltstore.Open(path, boltstore.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a damaged store succeeded")
	}
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Open: %v, want store.ErrCorrupt", err)
	}
	if verr := boltstore.Verify(path); !errors.Is(verr, store.ErrCorrupt) {
		t.Errorf("Verify: %v, want store.ErrCorrupt", verr)
	}
	t.Logf("Open: %v", err)
}

func TestOpenTruncatedFile(t *testing.T) {
	pristine := populated(t)
	pageSize, need, _ := pageInfo(t, pristine)
	if err := boltstore.Verify(pristine); err != nil {
		t.Fatalf("Verify of an intact store: %v", err)
	}
	for _, size := range []int64{0, 100, pageSize + 10, 2*pageSize + 1, need / 2, need - pageSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			path := copyFile(t, pristine)
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			wantCorrupt(t, path)
		})
	}
}

// TestOpenCorruptPage overwrites each page in use in turn (random bytes, or
// only its header) and expects a clear error from Open, never a panic.
func TestOpenCorruptPage(t *testing.T) {
	pristine := populated(t)
	pageSize, _, inUse := pageInfo(t, pristine)
	data, err := os.ReadFile(pristine)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, id := range inUse {
		for _, mode := range []string{"page", "header"} {
			t.Run(fmt.Sprintf("%d/%s", id, mode), func(t *testing.T) {
				b := bytes.Clone(data)
				n := pageSize
				if mode == "header" {
					n = 16
				}
				for i := range n {
					b[int64(id)*pageSize+i] = byte(rng.Uint32())
				}
				path := filepath.Join(t.TempDir(), "state.db")
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				wantCorrupt(t, path)
			})
		}
	}
	t.Run("both meta pages", func(t *testing.T) {
		b := bytes.Clone(data)
		for i := range 2 * pageSize {
			b[i] = byte(rng.Uint32())
		}
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		wantCorrupt(t, path)
	})
}

// TestDamageWhileOpen damages the file under an open store (truncation,
// overwritten pages): every call fails with store.ErrCorrupt instead of
// crashing the process on a fault in the memory map or a panic in bbolt.
func TestDamageWhileOpen(t *testing.T) {
	for _, damage := range []string{"truncate", "overwrite"} {
		t.Run(damage, func(t *testing.T) {
			path := copyFile(t, populated(t))
			pageSize, _, inUse := pageInfo(t, path)
			s := open(t, path, boltstore.Options{})
			defer s.Close()
			ctx := t.Context()
			if _, err := s.Get(ctx, "/records/0001"); err != nil {
				t.Fatal(err)
			}
			switch damage {
			case "truncate":
				if err := os.Truncate(path, 2*pageSize); err != nil {
					t.Fatal(err)
				}
			case "overwrite":
				f, err := os.OpenFile(path, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				junk := bytes.Repeat([]byte{0xA5}, int(pageSize))
				for _, id := range inUse {
					if _, err := f.WriteAt(junk, int64(id)*pageSize); err != nil {
						t.Fatal(err)
					}
				}
				f.Close()
			}
			calls := map[string]func() error{
				"Get":  func() error { _, err := s.Get(ctx, "/records/0001"); return err },
				"List": func() error { _, _, err := s.List(ctx, "/records/"); return err },
				"Txn":  func() error { _, err := s.Txn(ctx, nil, store.Put("/records/0002", []byte("x"))); return err },
				"WriteTo": func() error {
					var buf bytes.Buffer
					_, err := s.WriteTo(&buf)
					if err == nil {
						// A copy of damaged pages is not an error of WriteTo
						// itself; what matters is that it did not crash.
						return store.ErrCorrupt
					}
					return err
				},
			}
			for name, call := range calls {
				if err := call(); !errors.Is(err, store.ErrCorrupt) {
					t.Errorf("%s after damage: %v, want store.ErrCorrupt", name, err)
				}
			}
		})
	}
}
