package artifact

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// zeroBomb is a gzip'd tar holding one file of n zero bytes: a few KiB that
// unpack to n bytes.
func zeroBomb(t testing.TB, n int64) []byte {
	t.Helper()
	var raw bytes.Buffer
	raw.Write(rawTar(t, []tarEntry{{name: ManifestFile, body: testManifest}, {name: "rootfs/", typ: '5'}}))
	raw.Truncate(raw.Len() - 1024) // drop the end marker, append a big entry
	tarHeader := rawTar(t, []tarEntry{{name: "rootfs/zeros", size: n}})
	raw.Write(tarHeader[:512])
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := io.Copy(zw, io.MultiReader(bytes.NewReader(raw.Bytes()), io.LimitReader(zeroReader{}, n+1024+512))); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestImportZipBomb(t *testing.T) {
	ctx := context.Background()
	bomb := zeroBomb(t, 64<<20) // 64 MiB of zeros
	if len(bomb) > 1<<20 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	t.Run("refused early", func(t *testing.T) {
		s, base := newStore(t, Limits{})
		start := time.Now()
		_, err := s.ImportWith(ctx, bytes.NewReader(bomb), ImportOptions{MaxUnpackedBytes: 16 << 20})
		if !errors.Is(err, ErrTooLarge) || !errors.Is(err, ErrInvalid) {
			t.Fatalf("ImportWith = %v, want ErrTooLarge", err)
		}
		if !strings.Contains(err.Error(), "16777216") {
			t.Errorf("error %q does not name the limit", err)
		}
		// The entry's header announces its size: nothing is decompressed.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("refusing took %s", d)
		}
		checkConfined(t, base)
		if ds, _ := s.List(ctx); len(ds) != 0 {
			t.Fatalf("store holds %v", ds)
		}
	})
	t.Run("counted when accepted", func(t *testing.T) {
		s, _ := newStore(t, Limits{})
		im, err := s.ImportWith(ctx, bytes.NewReader(bomb), ImportOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if im.UnpackedBytes != 64<<20 {
			t.Fatalf("UnpackedBytes = %d", im.UnpackedBytes)
		}
		// The same bytes again, under a lower bound: refused too.
		if _, err := s.ImportWith(ctx, bytes.NewReader(bomb), ImportOptions{MaxUnpackedBytes: 1 << 20}); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("re-import under a lower bound = %v, want ErrTooLarge", err)
		}
		// Stats survive a restart of the store (computed again).
		s2, err := OpenWithLimits(s.Dir(), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := s2.Stats(ctx, im.Digest)
		if err != nil || st.UnpackedBytes != 64<<20 {
			t.Fatalf("Stats = %+v, %v", st, err)
		}
	})
}

func TestCollect(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Limits{})
	imp := func(version string) Digest {
		d, _, err := s.Import(ctx, bytes.NewReader(demo(t, DemoOptions{Version: version, Healthy: true})))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Unpack(ctx, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	old, kept, fresh := imp("1.0.0"), imp("1.0.1"), imp("1.0.2")
	past := time.Now().Add(-2 * time.Hour)
	for _, d := range []Digest{old, kept} {
		if err := os.Chtimes(filepath.Join(s.Dir(), "blobs", "sha256", d.Hex()), past, past); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now().Add(-time.Hour)
	deleted, err := s.Collect(ctx, before, func(d Digest) bool { return d == kept })
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 1 || deleted[0] != old {
		t.Fatalf("Collect deleted %v, want only %s", deleted, old)
	}
	if s.Has(old) || isDir(filepath.Join(s.Dir(), "images", "sha256", old.Hex())) {
		t.Fatal("the unreferenced artifact is still there")
	}
	if !s.Has(kept) || !s.Has(fresh) {
		t.Fatal("a referenced or recently used artifact was deleted")
	}
	if err := s.Touch(ctx, old); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Touch of a collected artifact = %v, want ErrNotFound", err)
	}

	// A touch keeps an old, unreferenced artifact.
	if err := os.Chtimes(filepath.Join(s.Dir(), "blobs", "sha256", kept.Hex()), past, past); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(ctx, kept); err != nil {
		t.Fatal(err)
	}
	if deleted, err := s.Collect(ctx, before, func(Digest) bool { return false }); err != nil || len(deleted) != 0 {
		t.Fatalf("Collect after Touch = %v, %v; want nothing deleted", deleted, err)
	}
}
