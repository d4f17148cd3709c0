package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// tarEntry describes one entry of a hand-made test archive.
type tarEntry struct {
	name string
	typ  byte // tar.TypeReg when zero
	body string
	link string
	mode int64
	// size, when not zero, is written in the header instead of len(body)
	// and the body is left short (a lying header).
	size int64
}

const testManifest = `{"format":"vmssd.process/v1","osType":"Linux","entrypoint":["${VMSSD_GUEST}","guest"],"healthProbe":{"protocol":"http","path":"/health"}}`

// rawTar writes entries as an uncompressed tar stream. Entries with a lying
// size are written as a bare header followed by their short body.
func rawTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Name: e.name, Typeflag: typ, Linkname: e.link, Mode: mode,
			ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if e.size != 0 {
			hdr.Size = e.size
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			buf.WriteString(e.body)
			buf.Write(make([]byte, 1024))
			return buf.Bytes() // the writer cannot go on after a lie
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t testing.TB, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarGz(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	return gz(t, rawTar(t, entries))
}

// withManifest prepends a valid manifest and rootfs/ to entries.
func withManifest(entries ...tarEntry) []tarEntry {
	return append([]tarEntry{
		{name: "manifest.json", body: testManifest},
		{name: "rootfs/", typ: tar.TypeDir, mode: 0o755},
	}, entries...)
}

func demo(t testing.TB, opts DemoOptions) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := BuildDemo(&buf, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newStore opens a store in base/store and returns it with base.
func newStore(t testing.TB, lim Limits) (*Store, string) {
	t.Helper()
	base := t.TempDir()
	s, err := OpenWithLimits(filepath.Join(base, "store"), lim)
	if err != nil {
		t.Fatal(err)
	}
	return s, base
}

// tree lists every path under dir (relative, slash-separated, sorted).
func tree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel != "." {
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// checkConfined fails unless base holds only the store and the store holds
// only its own layout: nothing was written next to it.
func checkConfined(t testing.TB, base string) {
	t.Helper()
	ents, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != "store" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s holds %v, want only the store", base, names)
	}
	for _, p := range tree(t, filepath.Join(base, "store")) {
		switch {
		case p == "blobs", p == "blobs/sha256", p == "images", p == "images/sha256", p == "tmp":
		case len(p) > len("blobs/sha256/") && p[:len("blobs/sha256/")] == "blobs/sha256/":
		case len(p) > len("images/sha256/") && p[:len("images/sha256/")] == "images/sha256/":
		default:
			t.Fatalf("unexpected path %s in the store", p)
		}
	}
}
