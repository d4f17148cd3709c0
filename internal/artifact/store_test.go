package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStoreLifecycle(t *testing.T) {
	ctx := context.Background()
	s, base := newStore(t, Limits{})
	art := demo(t, DemoOptions{Version: "1.2.3", Healthy: true, StartupDelay: time.Second})
	sum := sha256.Sum256(art)
	wantDigest := Digest("sha256:" + hex.EncodeToString(sum[:]))

	d, n, err := s.Import(ctx, bytes.NewReader(art))
	if err != nil {
		t.Fatal(err)
	}
	if d != wantDigest || n != int64(len(art)) {
		t.Fatalf("Import = %s, %d; want %s, %d", d, n, wantDigest, len(art))
	}
	if !s.Has(d) {
		t.Fatal("Has = false after Import")
	}
	blob := filepath.Join(s.Dir(), "blobs", "sha256", d.Hex())
	before, err := os.Stat(blob)
	if err != nil {
		t.Fatal(err)
	}

	// Importing the same bytes again (here from a file) is a no-op.
	file := filepath.Join(t.TempDir(), "demo.tar.gz")
	if err := os.WriteFile(file, art, 0o600); err != nil {
		t.Fatal(err)
	}
	d2, n2, err := s.ImportFile(ctx, file)
	if err != nil || d2 != d || n2 != n {
		t.Fatalf("second import = %s, %d, %v; want %s, %d", d2, n2, err, d, n)
	}
	if after, err := os.Stat(blob); err != nil || !os.SameFile(before, after) {
		t.Fatalf("second import replaced the blob (err %v)", err)
	}

	if got, err := s.List(ctx); err != nil || len(got) != 1 || got[0] != d {
		t.Fatalf("List = %v, %v", got, err)
	}

	rc, err := s.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, art) {
		t.Fatalf("Open read %d bytes, err %v; want the artifact", len(got), err)
	}

	m, err := s.Manifest(ctx, d)
	if err != nil || m.Version != "1.2.3" || m.Format != FormatProcessV1 {
		t.Fatalf("Manifest = %+v, %v", m, err)
	}
	// A fresh Store (no cache, nothing unpacked) reads it from the blob.
	s2, err := Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if m2, err := s2.Manifest(ctx, d); err != nil || m2.Version != "1.2.3" {
		t.Fatalf("Manifest from the blob = %+v, %v", m2, err)
	}

	dir, err := s.Unpack(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(s.Dir(), "images", "sha256", d.Hex()); dir != want {
		t.Fatalf("Unpack dir = %s, want %s", dir, want)
	}
	wantTree := []string{"manifest.json", "rootfs", "rootfs/etc", "rootfs/etc/os-release", "rootfs/etc/vmssd-guest.json"}
	if got := tree(t, dir); strings.Join(got, " ") != strings.Join(wantTree, " ") {
		t.Fatalf("unpacked tree = %v, want %v", got, wantTree)
	}
	data, err := os.ReadFile(filepath.Join(dir, "rootfs", filepath.FromSlash(GuestConfigPath)))
	if err != nil || !strings.Contains(string(data), `"version": "1.2.3"`) || !strings.Contains(string(data), `"startupDelay": "1s"`) {
		t.Fatalf("guest config = %s, %v", data, err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, ManifestFile)); err != nil {
		t.Fatal(err)
	} else if m3, err := ParseManifest(data); err != nil || m3.Version != "1.2.3" {
		t.Fatalf("unpacked manifest = %+v, %v", m3, err)
	}
	if again, err := s2.Unpack(ctx, d); err != nil || again != dir {
		t.Fatalf("second Unpack = %s, %v", again, err)
	}
	checkConfined(t, base)
	if got := tree(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
		t.Fatalf("tmp not empty: %v", got)
	}

	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if s.Has(d) || isDir(dir) {
		t.Fatal("artifact still there after Delete")
	}
	if _, err := s.Open(d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Unpack(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Unpack after Delete: %v, want ErrNotFound", err)
	}
	if _, err := s2.Manifest(ctx, Digest("sha256:"+strings.Repeat("ab", 32))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Manifest of an unknown digest: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, d); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
	if got := tree(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
		t.Fatalf("tmp not empty: %v", got)
	}
}

// lyingHeader is an archive whose last header claims size bytes that the
// archive does not have.
func lyingHeader(t testing.TB, size int64) []byte {
	return tarGz(t, withManifest(tarEntry{name: "rootfs/big", body: "x", size: size}))
}

func hostileArchives(t testing.TB) map[string][]byte {
	zeros := make([]byte, 4<<20)
	return map[string][]byte{
		"empty":              nil,
		"not gzip":           []byte("hello, world"),
		"gzip of garbage":    gz(t, []byte(strings.Repeat("garbage", 200))),
		"truncated gzip":     tarGz(t, withManifest())[:40],
		"no manifest":        tarGz(t, []tarEntry{{name: "rootfs/", typ: tar.TypeDir}}),
		"bad manifest":       tarGz(t, []tarEntry{{name: "manifest.json", body: `{"format":"nope"}`}}),
		"manifest dir":       tarGz(t, []tarEntry{{name: "manifest.json/", typ: tar.TypeDir}}),
		"two manifests":      tarGz(t, withManifest(tarEntry{name: "manifest.json", body: testManifest})),
		"rootfs file":        tarGz(t, []tarEntry{{name: "manifest.json", body: testManifest}, {name: "rootfs", body: "x"}}),
		"rootfs symlink":     tarGz(t, []tarEntry{{name: "manifest.json", body: testManifest}, {name: "rootfs", typ: tar.TypeSymlink, link: "/"}}),
		"other top level":    tarGz(t, withManifest(tarEntry{name: "evil.sh", body: "x"})),
		"dotdot":             tarGz(t, withManifest(tarEntry{name: "../evil", body: "x"})),
		"dotdot in rootfs":   tarGz(t, withManifest(tarEntry{name: "rootfs/../../evil", body: "x"})),
		"dot dotdot":         tarGz(t, withManifest(tarEntry{name: "./../evil", body: "x"})),
		"absolute":           tarGz(t, withManifest(tarEntry{name: "/tmp/evil", body: "x"})),
		"double slash":       tarGz(t, withManifest(tarEntry{name: "rootfs//etc", body: "x"})),
		"dot component":      tarGz(t, withManifest(tarEntry{name: "rootfs/./etc", body: "x"})),
		"absolute symlink":   tarGz(t, withManifest(tarEntry{name: "rootfs/etc/passwd", typ: tar.TypeSymlink, link: "/etc/passwd"})),
		"escaping symlink":   tarGz(t, withManifest(tarEntry{name: "rootfs/etc/x", typ: tar.TypeSymlink, link: "../../../etc/passwd"})),
		"escape to manifest": tarGz(t, withManifest(tarEntry{name: "rootfs/m", typ: tar.TypeSymlink, link: "../manifest.json"})),
		// Lexically "x/y/../.." is ".", but x/y is a link to ".", so it
		// really is rootfs/.. .
		"symlink chain escape": tarGz(t, withManifest(
			tarEntry{name: "rootfs/x/y", typ: tar.TypeSymlink, link: "."},
			tarEntry{name: "rootfs/p", typ: tar.TypeSymlink, link: "x/y/../.."},
		)),
		"symlink via symlink": tarGz(t, withManifest(
			tarEntry{name: "rootfs/up", typ: tar.TypeSymlink, link: "a/.."},
			tarEntry{name: "rootfs/a", typ: tar.TypeSymlink, link: "b/c"},
			tarEntry{name: "rootfs/b/c", typ: tar.TypeSymlink, link: "../.."},
		)),
		"symlink loop": tarGz(t, withManifest(
			tarEntry{name: "rootfs/a", typ: tar.TypeSymlink, link: "b"},
			tarEntry{name: "rootfs/b", typ: tar.TypeSymlink, link: "a"},
		)),
		"write through symlink": tarGz(t, withManifest(
			tarEntry{name: "rootfs/l", typ: tar.TypeSymlink, link: "d"},
			tarEntry{name: "rootfs/l/f", body: "x"},
		)),
		"symlink over dir": tarGz(t, withManifest(
			tarEntry{name: "rootfs/d/f", body: "x"},
			tarEntry{name: "rootfs/d", typ: tar.TypeSymlink, link: "e"},
		)),
		"file below file": tarGz(t, withManifest(
			tarEntry{name: "rootfs/f", body: "x"},
			tarEntry{name: "rootfs/f/g", body: "y"},
		)),
		"duplicate file": tarGz(t, withManifest(
			tarEntry{name: "rootfs/f", body: "x"},
			tarEntry{name: "rootfs/f", body: "y"},
		)),
		"hardlink":           tarGz(t, withManifest(tarEntry{name: "rootfs/h", typ: tar.TypeLink, link: "rootfs/x"})),
		"char device":        tarGz(t, withManifest(tarEntry{name: "rootfs/null", typ: tar.TypeChar})),
		"fifo":               tarGz(t, withManifest(tarEntry{name: "rootfs/fifo", typ: tar.TypeFifo})),
		"huge header size":   lyingHeader(t, 1<<40),
		"short file":         lyingHeader(t, 1<<20),
		"garbage after tar":  gz(t, append(rawTar(t, withManifest()), []byte("trailing garbage")...)),
		"garbage after gzip": append(tarGz(t, withManifest()), "trailing garbage"...),
		"gzip bomb":          tarGz(t, withManifest(tarEntry{name: "rootfs/zeros", body: string(zeros)})),
	}
}

func TestImportRejectsHostileArchives(t *testing.T) {
	ctx := context.Background()
	// The bomb is 4 MiB uncompressed.
	s, base := newStore(t, Limits{MaxUnpackedBytes: 1 << 20})
	for name, art := range hostileArchives(t) {
		t.Run(name, func(t *testing.T) {
			d, _, err := s.Import(ctx, bytes.NewReader(art))
			if err == nil {
				t.Fatalf("Import = %s, want an error", d)
			}
			t.Log(err)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if got, _ := s.List(ctx); len(got) != 0 {
				t.Fatalf("store holds %v", got)
			}
			if got := tree(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
				t.Fatalf("tmp not empty: %v", got)
			}
			checkConfined(t, base)
		})
	}
}

func TestImportLimits(t *testing.T) {
	ctx := context.Background()
	valid := tarGz(t, withManifest(
		tarEntry{name: "rootfs/a", body: "a"},
		tarEntry{name: "rootfs/b", body: "b"},
	))
	tests := []struct {
		name string
		lim  Limits
		ok   bool
	}{
		{"defaults", Limits{}, true},
		{"artifact too large", Limits{MaxArtifactBytes: int64(len(valid)) - 1}, false},
		{"artifact just fits", Limits{MaxArtifactBytes: int64(len(valid))}, true},
		{"too many entries", Limits{MaxEntries: 3}, false},
		{"entries just fit", Limits{MaxEntries: 4}, true},
		{"tar stream too large", Limits{MaxUnpackedBytes: 2048}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t, tt.lim)
			_, _, err := s.Import(ctx, bytes.NewReader(valid))
			if tt.ok && err != nil {
				t.Fatal(err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Import error = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestUnpackKeepsSafeTree(t *testing.T) {
	ctx := context.Background()
	s, base := newStore(t, Limits{})
	art := tarGz(t, []tarEntry{
		// Entries may come in any order, with "./" and without explicit
		// parent directories.
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./rootfs/usr/bin/tool", body: "#!/bin/sh\necho hi\n", mode: 0o4755},
		{name: "./rootfs/bin", typ: tar.TypeSymlink, link: "usr/bin"},
		{name: "./rootfs/usr/lib/libx.so", typ: tar.TypeSymlink, link: "../../lib/libx.so.1"},
		{name: "./rootfs/lib/libx.so.1", body: "elf", mode: 0o644},
		{name: "./rootfs/ro/", typ: tar.TypeDir, mode: 0o555},
		{name: "./rootfs/ro/file", body: "read-only", mode: 0o444},
		{name: "./rootfs/usr/", typ: tar.TypeDir, mode: 0o750},
		{name: "./rootfs/dangling", typ: tar.TypeSymlink, link: "nowhere"},
		{name: "./rootfs/self", typ: tar.TypeSymlink, link: "."},
		{name: "./manifest.json", body: testManifest},
	})
	d, _, err := s.Import(ctx, bytes.NewReader(art))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := s.Unpack(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, RootfsDir)
	if got, err := os.ReadFile(filepath.Join(rootfs, "bin", "tool")); err != nil || string(got) != "#!/bin/sh\necho hi\n" {
		t.Fatalf("bin/tool = %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(rootfs, "usr", "lib", "libx.so")); err != nil || string(got) != "elf" {
		t.Fatalf("usr/lib/libx.so = %q, %v", got, err)
	}
	if runtime.GOOS != "windows" {
		modes := []struct {
			name string
			want fs.FileMode
		}{
			{"usr/bin/tool", 0o755}, // no setuid
			{"ro", fs.ModeDir | 0o755},
			{"ro/file", 0o644}, // owner can always write
			{"usr", fs.ModeDir | 0o750},
		}
		for _, m := range modes {
			fi, err := os.Lstat(filepath.Join(rootfs, filepath.FromSlash(m.name)))
			if err != nil {
				t.Fatal(err)
			}
			// The umask may remove group and other bits.
			if got := fi.Mode(); got&^0o077 != m.want&^0o077 || got&m.want != got {
				t.Errorf("%s mode = %v, want %v", m.name, got, m.want)
			}
		}
	}
	checkConfined(t, base)
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if isDir(dir) {
		t.Fatal("image dir left after Delete")
	}
}

func TestUnpackConcurrent(t *testing.T) {
	ctx := context.Background()
	s, base := newStore(t, Limits{})
	d, _, err := s.Import(ctx, bytes.NewReader(demo(t, DemoOptions{Version: "1", Healthy: true})))
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Two Stores on one directory race like two processes would.
			st := s
			if i%2 == 1 {
				var err error
				if st, err = Open(s.Dir()); err != nil {
					errs[i] = err
					return
				}
			}
			dirs[i], errs[i] = st.Unpack(ctx, d)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Unpack %d: %v", i, errs[i])
		}
		if dirs[i] != dirs[0] {
			t.Fatalf("Unpack %d = %s, want %s", i, dirs[i], dirs[0])
		}
	}
	if got := tree(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
		t.Fatalf("tmp not empty: %v", got)
	}
	if len(s.locks) != 0 {
		t.Fatalf("%d digest locks left", len(s.locks))
	}
	checkConfined(t, base)
}

func TestStoreDetectsCorruption(t *testing.T) {
	ctx := context.Background()
	s, _ := newStore(t, Limits{})
	d, _, err := s.Import(ctx, bytes.NewReader(demo(t, DemoOptions{Version: "1", Healthy: true})))
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(s.Dir(), "blobs", "sha256", d.Hex())
	data, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	// Append a second, valid gzip member of zeros: still a valid archive,
	// but not the imported bytes.
	if err := os.WriteFile(blob, append(data, gz(t, make([]byte, 1024))...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unpack(ctx, d); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Unpack of a changed blob: %v, want ErrCorrupt", err)
	}
	if isDir(filepath.Join(s.Dir(), "images", "sha256", d.Hex())) {
		t.Fatal("a corrupt blob was unpacked")
	}
	rc, err := s.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a changed blob: %v, want ErrCorrupt", err)
	}
	// Flipping a byte breaks the archive itself: still reported as corrupt.
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(blob, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Unpack(ctx, d); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Unpack of a damaged blob: %v, want ErrCorrupt", err)
	}
	if got := tree(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
		t.Fatalf("tmp not empty: %v", got)
	}
}

// A blob swapped for a hostile archive after its import is caught by the
// validation that runs while unpacking, and never writes outside the store.
func TestUnpackSwappedBlob(t *testing.T) {
	ctx := context.Background()
	s, base := newStore(t, Limits{MaxUnpackedBytes: 1 << 20})
	d, _, err := s.Import(ctx, bytes.NewReader(demo(t, DemoOptions{Version: "1", Healthy: true})))
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(s.Dir(), "blobs", "sha256", d.Hex())
	if err := os.Chmod(blob, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, art := range hostileArchives(t) {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(blob, art, 0o644); err != nil {
				t.Fatal(err)
			}
			if dir, err := s.Unpack(ctx, d); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Unpack = %s, %v; want ErrCorrupt", dir, err)
			}
			if got := tree(t, filepath.Join(s.Dir(), "images")); strings.Join(got, " ") != "sha256" {
				t.Fatalf("images = %v", got)
			}
			if got := tree(t, filepath.Join(s.Dir(), "tmp")); len(got) != 0 {
				t.Fatalf("tmp not empty: %v", got)
			}
			checkConfined(t, base)
		})
	}
}

func TestStoreRefusesBadDigests(t *testing.T) {
	ctx := context.Background()
	s, base := newStore(t, Limits{})
	// A file next to the store that path tricks would reach.
	victim := filepath.Join(base, strings.Repeat("a", 64))
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(victim)
	for _, d := range []Digest{
		"",
		"sha256:../../../" + Digest(strings.Repeat("a", 64)),
		"sha256:" + Digest(strings.Repeat("A", 64)),
		"../" + Digest(strings.Repeat("a", 64)),
		"sha256:" + Digest(strings.Repeat("a", 63)) + "/",
	} {
		if s.Has(d) {
			t.Errorf("Has(%q) = true", d)
		}
		if _, err := s.Open(d); err == nil {
			t.Errorf("Open(%q) succeeded", d)
		}
		if _, err := s.Manifest(ctx, d); err == nil {
			t.Errorf("Manifest(%q) succeeded", d)
		}
		if _, err := s.Unpack(ctx, d); err == nil {
			t.Errorf("Unpack(%q) succeeded", d)
		}
		if err := s.Delete(ctx, d); err == nil {
			t.Errorf("Delete(%q) succeeded", d)
		}
	}
	if data, err := os.ReadFile(victim); err != nil || string(data) != "keep" {
		t.Fatalf("victim = %q, %v", data, err)
	}
}

func TestStoreContextCanceled(t *testing.T) {
	s, _ := newStore(t, Limits{})
	art := demo(t, DemoOptions{Version: "1", Healthy: true})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Import(ctx, bytes.NewReader(art)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Import with a canceled context: %v", err)
	}
	d, _, err := s.Import(context.Background(), bytes.NewReader(art))
	if err != nil {
		t.Fatal(err)
	}
	// Hold the digest's lock: Unpack must give up when its context ends.
	unlock, err := s.lock(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer tcancel()
	if _, err := s.Unpack(tctx, d); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Unpack while locked: %v", err)
	}
	unlock()
	if _, err := s.Unpack(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRemovesStaleTemp(t *testing.T) {
	s, _ := newStore(t, Limits{})
	tmp := filepath.Join(s.Dir(), "tmp")
	stale, fresh := filepath.Join(tmp, "import-stale"), filepath.Join(tmp, "import-fresh")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * staleTemp)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, tmp); strings.Join(got, " ") != "import-fresh" {
		t.Fatalf("tmp = %v, want only the fresh file", got)
	}
}
