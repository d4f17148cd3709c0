package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzImport feeds arbitrary archives to Import and, when they are accepted,
// to Unpack. Inputs that are not gzip are gzipped first, so that the fuzzer
// mostly explores tar and manifest validation rather than gzip checksums.
// Whatever the input: no panic, only ErrInvalid refusals, nothing written
// outside the store, and accepted archives unpack to a tree whose symlinks
// stay inside rootfs.
func FuzzImport(f *testing.F) {
	f.Add(demo(f, DemoOptions{Version: "1.0.0", Healthy: true}))
	f.Add(rawTar(f, withManifest(
		tarEntry{name: "rootfs/etc/os-release", body: "ID=x\n"},
		tarEntry{name: "rootfs/bin", typ: tar.TypeSymlink, link: "usr/bin"},
		tarEntry{name: "rootfs/usr/bin/sh", body: "#!", mode: 0o755},
	)))
	for _, entries := range [][]tarEntry{
		withManifest(tarEntry{name: "../evil", body: "x"}),
		withManifest(tarEntry{name: "rootfs/../../evil", body: "x"}),
		withManifest(tarEntry{name: "/abs", body: "x"}),
		withManifest(tarEntry{name: "rootfs/l", typ: tar.TypeSymlink, link: "../../../../tmp"}),
		withManifest(tarEntry{name: "rootfs/l", typ: tar.TypeSymlink, link: "/tmp"}),
		withManifest(
			tarEntry{name: "rootfs/x/y", typ: tar.TypeSymlink, link: "."},
			tarEntry{name: "rootfs/p", typ: tar.TypeSymlink, link: "x/y/../.."},
			tarEntry{name: "rootfs/p/evil", body: "x"},
		),
		withManifest(
			tarEntry{name: "rootfs/l", typ: tar.TypeSymlink, link: "d"},
			tarEntry{name: "rootfs/l/f", body: "x"},
		),
		withManifest(tarEntry{name: "rootfs/h", typ: tar.TypeLink, link: "manifest.json"}),
		withManifest(tarEntry{name: "rootfs/big", body: "x", size: 1 << 40}),
		{{name: "manifest.json", body: `{"format":"vmssd.process/v1"}`}},
		{
			qemuManifest(f, QEMUImage{Kernel: "vmlinuz", Initrd: "initrd.img"}),
			{name: "rootfs/", typ: tar.TypeDir},
			{name: "rootfs/vmlinuz", body: "k"},
			{name: "rootfs/initrd.img", body: "i"},
		},
		{qemuManifest(f, QEMUImage{Disk: "d.qcow2"}), {name: "rootfs/d.qcow2", typ: tar.TypeSymlink, link: "x"}},
	} {
		f.Add(rawTar(f, entries))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
			data = gz(t, data)
		}
		ctx := context.Background()
		s, base := newStore(t, Limits{MaxArtifactBytes: 1 << 20, MaxUnpackedBytes: 4 << 20, MaxEntries: 1000})
		d, _, err := s.Import(ctx, bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Import error %v does not wrap ErrInvalid", err)
			}
			checkConfined(t, base)
			return
		}
		dir, err := s.Unpack(ctx, d)
		if err != nil {
			// Import accepted it: the same validation must accept it
			// again, but the file system may refuse (names too long).
			if errors.Is(err, ErrInvalid) || errors.Is(err, ErrCorrupt) {
				t.Fatalf("Unpack after Import: %v", err)
			}
			checkConfined(t, base)
			return
		}
		checkConfined(t, base)
		m, err := s.Manifest(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if m.QEMU != nil {
			for _, name := range m.QEMU.Files() {
				fi, err := os.Lstat(filepath.Join(dir, RootfsDir, filepath.FromSlash(name)))
				if err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("accepted qemu image names %s: %v, %v", name, fi, err)
				}
			}
		}
		rootfs, err := filepath.EvalSymlinks(filepath.Join(dir, RootfsDir))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tree(t, dir) {
			full := filepath.Join(dir, filepath.FromSlash(p))
			fi, err := os.Lstat(full)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSymlink == 0 {
				continue
			}
			real, err := filepath.EvalSymlinks(full)
			if err != nil {
				continue // dangling, or a loop through a missing path
			}
			if real != rootfs && !strings.HasPrefix(real, rootfs+string(filepath.Separator)) {
				t.Fatalf("symlink %s resolves to %s, outside %s", p, real, rootfs)
			}
		}
		if err := s.Delete(ctx, d); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseManifest checks that manifest parsing never panics and that what
// it accepts survives a round trip.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(testManifest))
	f.Add([]byte(`{"format":"vmssd.process/v1","osType":"Windows","entrypoint":["a"],"env":{"A":"b"},"healthProbe":{"protocol":"http","path":"/"}}`))
	f.Add([]byte(`{"format":"vmssd.qemu/v1"}`))
	f.Add([]byte(`{"format":"vmssd.qemu/v1","osType":"Linux","healthProbe":{"protocol":"http","path":"/health"},` +
		`"qemu":{"kernel":"vmlinuz","initrd":"initrd.img","cmdline":"console=ttyS0","minMemoryMB":96,"guestPort":80}}`))
	f.Add([]byte(`{"format":"vmssd.qemu/v1","osType":"Linux","healthProbe":{"protocol":"http","path":"/"},"qemu":{"disk":"a/b.img","diskFormat":"raw"}}`))
	f.Add([]byte(`{}{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("error %v does not wrap ErrInvalidManifest", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted manifest fails Validate: %v", err)
		}
	})
}
