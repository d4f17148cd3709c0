package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// qemuManifest encodes a qemu manifest naming q.
func qemuManifest(t testing.TB, q QEMUImage) tarEntry {
	t.Helper()
	m := validQEMU()
	m.QEMU = &q
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return tarEntry{name: ManifestFile, body: string(data)}
}

func TestImportQEMU(t *testing.T) {
	direct := QEMUImage{Kernel: "vmlinuz", Initrd: "boot/initrd.img", Cmdline: "console=ttyS0", MinMemoryMB: 96}
	rootfs := tarEntry{name: "rootfs/", typ: tar.TypeDir, mode: 0o755}
	kernel := tarEntry{name: "rootfs/vmlinuz", body: "kernel"}
	initrd := tarEntry{name: "rootfs/boot/initrd.img", body: "initrd"}
	tests := []struct {
		name    string
		entries []tarEntry
		ok      bool
	}{
		{"kernel and initrd", []tarEntry{qemuManifest(t, direct), rootfs, kernel, initrd}, true},
		{"dot-slash names", []tarEntry{qemuManifest(t, direct), {name: "./rootfs/", typ: tar.TypeDir},
			{name: "./rootfs/vmlinuz", body: "k"}, {name: "./rootfs/boot/initrd.img", body: "i"}}, true},
		{"kernel only", []tarEntry{qemuManifest(t, QEMUImage{Kernel: "vmlinuz"}), rootfs, kernel}, true},
		{"empty kernel file", []tarEntry{qemuManifest(t, QEMUImage{Kernel: "vmlinuz"}), rootfs, {name: "rootfs/vmlinuz"}}, true},
		{"manifest after the files", []tarEntry{rootfs, kernel, initrd, qemuManifest(t, direct)}, true},

		{"missing kernel", []tarEntry{qemuManifest(t, direct), rootfs, initrd}, false},
		{"missing initrd", []tarEntry{qemuManifest(t, direct), rootfs, kernel}, false},
		{"missing disk", []tarEntry{qemuManifest(t, QEMUImage{Disk: "disk.qcow2"}), rootfs, kernel}, false},
		{"no rootfs", []tarEntry{qemuManifest(t, QEMUImage{Kernel: "vmlinuz"})}, false},
		{"kernel outside rootfs", []tarEntry{qemuManifest(t, QEMUImage{Kernel: "vmlinuz"}), rootfs, {name: "vmlinuz", body: "k"}}, false},
		{"kernel is a directory", []tarEntry{qemuManifest(t, QEMUImage{Kernel: "vmlinuz"}), rootfs,
			{name: "rootfs/vmlinuz/", typ: tar.TypeDir}}, false},
		{"kernel is an implied directory", []tarEntry{qemuManifest(t, QEMUImage{Kernel: "boot"}), rootfs,
			{name: "rootfs/boot/vmlinuz", body: "k"}}, false},
		{"kernel is a symlink", []tarEntry{qemuManifest(t, QEMUImage{Kernel: "vmlinuz"}), rootfs,
			{name: "rootfs/vmlinuz-6.1", body: "k"}, {name: "rootfs/vmlinuz", typ: tar.TypeSymlink, link: "vmlinuz-6.1"}}, false},
		{"invalid qemu manifest", []tarEntry{qemuManifest(t, QEMUImage{Kernel: "../vmlinuz"}), rootfs, kernel}, false},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := newStore(t, Limits{})
			d, _, err := s.Import(ctx, bytes.NewReader(tarGz(t, tt.entries)))
			if !tt.ok {
				if err == nil {
					t.Fatal("Import accepted the artifact")
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("Import error %v does not wrap ErrInvalid", err)
				}
				checkConfined(t, base)
				if ds, _ := s.List(ctx); len(ds) != 0 {
					t.Fatalf("store holds %v after a refused import", ds)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dir, err := s.Unpack(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.Manifest(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			if m.Format != FormatQEMUV1 || m.QEMU == nil {
				t.Fatalf("Manifest = %+v", m)
			}
			for _, f := range m.QEMU.Files() {
				fi, err := os.Lstat(filepath.Join(dir, RootfsDir, filepath.FromSlash(f)))
				if err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("unpacked %s: %v, %v", f, fi, err)
				}
			}
		})
	}
}

func TestImportQEMUErrorNamesFile(t *testing.T) {
	s, _ := newStore(t, Limits{})
	art := tarGz(t, []tarEntry{qemuManifest(t, QEMUImage{Kernel: "boot/vmlinuz"}), {name: "rootfs/", typ: tar.TypeDir}})
	_, _, err := s.Import(context.Background(), bytes.NewReader(art))
	if err == nil || !strings.Contains(err.Error(), "rootfs/boot/vmlinuz") {
		t.Fatalf("Import error = %v, want one naming rootfs/boot/vmlinuz", err)
	}
}
