package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// patternReader yields size logical bytes: zeros except the byte runs in
// data, keyed by offset.
type patternReader struct {
	off, size int64
	data      map[int64][]byte
	chunk     int // bytes per Read at most, to exercise unaligned writes
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if r.chunk > 0 && len(p) > r.chunk {
		p = p[:r.chunk]
	}
	if rest := r.size - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	clear(p)
	for at, b := range r.data {
		// Copy the part of b that falls into [off, off+len(p)).
		lo, hi := max(at, r.off), min(at+int64(len(b)), r.off+int64(len(p)))
		if lo < hi {
			copy(p[lo-r.off:hi-r.off], b[lo-at:hi-at])
		}
	}
	r.off += int64(len(p))
	return len(p), nil
}

func sumOf(t *testing.T, r io.Reader) ([]byte, int64) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return h.Sum(nil), n
}

func TestSparseWriter(t *testing.T) {
	const gib = 1 << 30
	nonzero := bytes.Repeat([]byte{0xA5}, 3*SparseBlock)
	cases := []struct {
		name    string
		prefix  []byte // already in the file (a resumed download)
		size    int64
		data    map[int64][]byte
		chunk   int
		maxDisk int64 // the on-disk size must not exceed this
		minDisk int64 // and must reach this (data is not dropped)
	}{
		{name: "1GiB mostly zero", size: gib, chunk: 32<<10 + 13,
			data:    map[int64][]byte{0: []byte("MBR"), 512 << 20: nonzero, gib - 5: []byte("tail!")},
			maxDisk: 1 << 20, minDisk: 3 * SparseBlock},
		{name: "all zero, unaligned size", size: 10*SparseBlock + 123, chunk: 1000, maxDisk: 0},
		{name: "dense", size: 5 * SparseBlock, data: map[int64][]byte{0: bytes.Repeat([]byte{1}, 5*SparseBlock)},
			maxDisk: 8 * SparseBlock, minDisk: 5 * SparseBlock},
		{name: "resumed at an unaligned offset", prefix: []byte("already here"), size: 64 * SparseBlock, chunk: 777,
			data: map[int64][]byte{40 * SparseBlock: []byte("x")}, maxDisk: 4 * SparseBlock, minDisk: 1},
		{name: "empty", size: 0, maxDisk: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "f")
			f, err := os.Create(name)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(tc.prefix); err != nil {
				t.Fatal(err)
			}
			sw, err := NewSparseWriter(f)
			if err != nil {
				t.Fatal(err)
			}
			src := &patternReader{size: tc.size, data: tc.data, chunk: tc.chunk}
			n, err := io.Copy(sw, src)
			if err != nil || n != tc.size {
				t.Fatalf("copy = %d, %v; want %d", n, err, tc.size)
			}
			if err := sw.Finish(); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			want := int64(len(tc.prefix)) + tc.size
			if got := sw.Size(); got != want {
				t.Fatalf("Size() = %d, want %d", got, want)
			}
			fi, err := os.Stat(name)
			if err != nil || fi.Size() != want {
				t.Fatalf("stat size = %v, %v; want %d", fi.Size(), err, want)
			}
			disk, err := OnDiskBytes(name)
			if err != nil {
				t.Fatal(err)
			}
			if disk > tc.maxDisk+int64(len(tc.prefix)) || disk < tc.minDisk {
				t.Fatalf("on disk %d bytes, want in [%d, %d] (logical %d)", disk, tc.minDisk, tc.maxDisk, want)
			}
			wantSum, _ := sumOf(t, io.MultiReader(bytes.NewReader(tc.prefix), &patternReader{size: tc.size, data: tc.data}))
			rf, err := os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			defer rf.Close()
			gotSum, gotN := sumOf(t, rf)
			if gotN != want || !bytes.Equal(gotSum, wantSum) {
				t.Fatalf("read back %d bytes sha256 %x, want %d bytes %x", gotN, gotSum, want, wantSum)
			}
		})
	}
}

// TestUnpackWritesHoles: a disk image inside an artifact is unpacked
// sparse (its zero blocks take no space) and reads back identical.
func TestUnpackWritesHoles(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Limits{})
	const size = 32 << 20
	img := make([]byte, size)
	copy(img, "bootsector")
	copy(img[size/2:], bytes.Repeat([]byte{7}, 2*SparseBlock))
	art := tarGz(t, []tarEntry{
		{name: "rootfs/", typ: '5', mode: 0o755},
		{name: "rootfs/disk.raw", body: string(img), mode: 0o644},
		{name: "manifest.json", body: testManifest},
	})
	d, _, err := s.Import(ctx, bytes.NewReader(art))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := s.Unpack(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(dir, RootfsDir, "disk.raw")
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatal("unpacked disk.raw differs from the archived one")
	}
	disk, err := OnDiskBytes(name)
	if err != nil {
		t.Fatal(err)
	}
	if disk > 1<<20 {
		t.Fatalf("disk.raw takes %d bytes on disk for %d logical: not sparse", disk, size)
	}
	if n, err := s.DiskUsage(d); err != nil || n <= 0 {
		t.Fatalf("DiskUsage = %d, %v", n, err)
	}
	if _, err := s.DiskUsage(Digest("sha256:" + string(bytes.Repeat([]byte("0"), 64)))); err == nil {
		t.Fatal("DiskUsage of a missing artifact: want an error")
	}
}

// BenchmarkTwoVersionsDiskUsage stores two versions of a 1 GiB disk image
// (64 MiB of data, the rest zeros; the second differs from the first in 8
// scattered 4 KiB blocks) with a SparseWriter and reports the disk they
// use together, next to their logical size.
func BenchmarkTwoVersionsDiskUsage(b *testing.B) {
	const size, used = 1 << 30, 64 << 20
	data := make([]byte, used)
	for i := range data {
		data[i] = byte(i*7 + i>>12 + 1)
	}
	v1 := map[int64][]byte{0: data}
	v2 := map[int64][]byte{0: data}
	for i := range int64(8) {
		v2[i*(used/8)+SparseBlock] = bytes.Repeat([]byte{0xEE}, SparseBlock)
	}
	for b.Loop() {
		dir := b.TempDir()
		var disk int64
		for i, v := range []map[int64][]byte{v1, v2} {
			name := filepath.Join(dir, string(rune('a'+i)))
			f, err := os.Create(name)
			if err != nil {
				b.Fatal(err)
			}
			sw, err := NewSparseWriter(f)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := io.Copy(sw, &patternReader{size: size, data: v, chunk: 1 << 20}); err != nil {
				b.Fatal(err)
			}
			if err := sw.Finish(); err != nil {
				b.Fatal(err)
			}
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
			n, err := OnDiskBytes(name)
			if err != nil {
				b.Fatal(err)
			}
			disk += n
		}
		b.ReportMetric(float64(2*size)/(1<<20), "logical-MiB")
		b.ReportMetric(float64(disk)/(1<<20), "ondisk-MiB")
	}
}
