package artifact

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireQEMUImg skips without qemu-img, unless VMSSD_E2E=1 (then it fails).
func requireQEMUImg(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: qemu-img not installed: %v", err)
		}
		t.Skipf("qemu-img not installed: %v", err)
	}
}

// qemuImg runs qemu-img with args and returns the file it wrote at out.
func qemuImg(t testing.TB, out string, args ...string) string {
	t.Helper()
	if b, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %v: %v: %s", args, err, b)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func diskArtifact(t testing.TB, format, body string) []byte {
	t.Helper()
	return tarGz(t, []tarEntry{
		qemuManifest(t, QEMUImage{Disk: "disk.img", DiskFormat: format}),
		{name: "rootfs/", typ: tar.TypeDir, mode: 0o755},
		{name: "rootfs/disk.img", body: body},
	})
}

// TestImportInspectsDisks: a tenant's qcow2 may not name a host file (here
// a stand-in for the operator credential) as its backing file, nor an
// external data file; disks are raw or qcow2 as declared, within the
// virtual size bound.
func TestImportInspectsDisks(t *testing.T) {
	requireQEMUImg(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "operator.json")
	if err := os.WriteFile(secret, []byte(`{"clientSecret":"s3cret"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	plain := qemuImg(t, p("plain.qcow2"), "create", "-q", "-f", "qcow2", p("plain.qcow2"), "1M")
	backed := qemuImg(t, p("backed.qcow2"), "create", "-q", "-f", "qcow2", "-b", secret, "-F", "raw", p("backed.qcow2"))
	backedRel := qemuImg(t, p("rel.qcow2"), "create", "-q", "-f", "qcow2", "-b", "operator.json", "-F", "raw", p("rel.qcow2"))
	dataFile := qemuImg(t, p("df.qcow2"), "create", "-q", "-f", "qcow2", "-o", "data_file="+p("data.raw"), p("df.qcow2"), "1M")
	huge := qemuImg(t, p("huge.qcow2"), "create", "-q", "-f", "qcow2", p("huge.qcow2"), "4G")

	tests := []struct {
		name, format, body string
		ok                 bool
		tooLarge           bool
		want               string
	}{
		{name: "qcow2", format: "qcow2", body: plain, ok: true},
		{name: "raw", format: "raw", body: strings.Repeat("\x00", 4096), ok: true},
		// Declared raw, the header is never interpreted: QEMU opens it as
		// raw bytes.
		{name: "qcow2 bytes declared raw", format: "raw", body: backed, ok: true},
		{name: "backing file on the host", format: "qcow2", body: backed, want: "backing file"},
		{name: "relative backing file", format: "qcow2", body: backedRel, want: "backing"},
		{name: "external data file", format: "qcow2", body: dataFile, want: "data file"},
		{name: "not qcow2", format: "qcow2", body: "QFI\xfb", want: "cannot read it as qcow2"},
		{name: "virtual size beyond the bound", format: "qcow2", body: huge, tooLarge: true, want: "virtual size"},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := newStore(t, Limits{MaxDiskBytes: 1 << 30})
			im, err := s.ImportWith(ctx, bytes.NewReader(diskArtifact(t, tt.format, tt.body)), ImportOptions{})
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				if im.UnpackedBytes != int64(len(tt.body)) {
					t.Errorf("UnpackedBytes = %d, want %d", im.UnpackedBytes, len(tt.body))
				}
				dir, err := s.Unpack(ctx, im.Digest)
				if err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(filepath.Join(dir, RootfsDir, "disk.img"))
				if err != nil || fi.Mode().Perm() != 0o444 {
					t.Fatalf("unpacked disk: %v, %v; want mode 0444 (readable by QEMU's user)", fi, err)
				}
				return
			}
			if err == nil {
				t.Fatal("Import accepted the disk")
			}
			if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) != tt.tooLarge {
				t.Fatalf("error %v: want ErrInvalid, ErrTooLarge %v", err, tt.tooLarge)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q leaks the backing file's content", err)
			}
			checkConfined(t, base)
			if ds, _ := s.List(ctx); len(ds) != 0 {
				t.Fatalf("store holds %v after a refused import", ds)
			}
			if ents, _ := os.ReadDir(filepath.Join(base, "store", "tmp")); len(ents) != 0 {
				t.Fatalf("tmp/ holds %d entries after a refused import", len(ents))
			}
		})
	}
}

func TestParseDiskInfo(t *testing.T) {
	const qcow2 = `{"virtual-size": 1048576, "filename": "d", "format": "qcow2",
		"format-specific": {"type": "qcow2", "data": {"compat": "1.1", "corrupt": false}}}`
	tests := []struct {
		name, out, declared string
		max                 int64
		want                string // "" means accepted
	}{
		{"qcow2 object", qcow2, "qcow2", 0, ""},
		{"qcow2 chain of one", "[" + qcow2 + "]", "qcow2", 0, ""},
		{"raw", `[{"virtual-size": 512, "format": "raw"}]`, "raw", 0, ""},
		{"within bound", "[" + qcow2 + "]", "qcow2", 1 << 20, ""},
		{"beyond bound", "[" + qcow2 + "]", "qcow2", 1<<20 - 1, "virtual size"},
		{"backing file", `[{"format": "qcow2", "virtual-size": 1, "backing-filename": "/etc/shadow", "full-backing-filename": "/etc/shadow", "backing-filename-format": "raw"}, {"format": "raw", "filename": "/etc/shadow"}]`, "qcow2", 0, "backing file"},
		{"backing format only", `[{"format": "qcow2", "backing-filename-format": "raw"}]`, "qcow2", 0, "backing file"},
		{"chain without names", `[{"format": "qcow2"}, {"format": "raw"}]`, "qcow2", 0, "chain of 2"},
		{"data file", `[{"format": "qcow2", "format-specific": {"type": "qcow2", "data": {"data-file": "/etc/shadow"}}}]`, "qcow2", 0, "data file"},
		{"corrupt", `[{"format": "qcow2", "format-specific": {"type": "qcow2", "data": {"corrupt": true}}}]`, "qcow2", 0, "corrupt"},
		{"vmdk", `[{"format": "vmdk"}]`, "qcow2", 0, "only qcow2 and raw"},
		{"format mismatch", `[{"format": "raw"}]`, "qcow2", 0, "the manifest says qcow2"},
		{"declared vmdk", `[{"format": "vmdk"}]`, "vmdk", 0, "only qcow2 and raw"},
		{"negative size", `[{"format": "raw", "virtual-size": -1}]`, "raw", 0, "negative"},
		{"empty", ``, "raw", 0, "cannot read"},
		{"empty chain", `[]`, "raw", 0, "no image"},
		{"garbage", `[{"format": 1}]`, "raw", 0, "cannot read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDiskInfo([]byte(tt.out), tt.declared, tt.max)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v: want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

// FuzzParseDiskInfo: whatever qemu-img prints, an accepted description is
// one self-contained image of the declared format within the bound.
func FuzzParseDiskInfo(f *testing.F) {
	f.Add([]byte(`[{"virtual-size": 1048576, "format": "qcow2"}]`), "qcow2", int64(0))
	f.Add([]byte(`{"virtual-size": 512, "format": "raw"}`), "raw", int64(512))
	f.Add([]byte(`[{"format": "qcow2", "backing-filename": "x"}, {"format": "raw"}]`), "qcow2", int64(0))
	f.Add([]byte(`[{"format": "qcow2", "format-specific": {"data": {"data-file": "x"}}}]`), "qcow2", int64(0))
	f.Fuzz(func(t *testing.T, out []byte, declared string, max int64) {
		info, err := ParseDiskInfo(out, declared, max)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		switch {
		case info.Format != declared || (declared != "qcow2" && declared != "raw"):
			t.Fatalf("accepted format %q declared %q", info.Format, declared)
		case info.BackingFilename != "" || info.FullBackingFilename != "" || info.BackingFormat != "":
			t.Fatalf("accepted a backing file: %+v", info)
		case info.FormatSpecific != nil && (info.FormatSpecific.Data.DataFile != "" || info.FormatSpecific.Data.Corrupt):
			t.Fatalf("accepted a data file or a corrupt image: %+v", info)
		case info.VirtualSize < 0 || max > 0 && info.VirtualSize > max:
			t.Fatalf("accepted virtual size %d (max %d)", info.VirtualSize, max)
		}
	})
}
