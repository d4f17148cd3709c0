package vmimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
)

// epoch is the script's default SOURCE_DATE_EPOCH (2024-01-01T00:00:00Z).
const epoch = 1704067200

// wantManifest is the manifest the script writes.
func wantManifest(version string, unhealthy bool) artifact.Manifest {
	name := "vmssd-guest"
	if unhealthy {
		name += "-unhealthy"
	}
	return artifact.Manifest{
		Format:      artifact.FormatQEMUV1,
		OSType:      artifact.OSTypeLinux,
		Name:        name,
		Version:     version,
		HealthProbe: artifact.HealthProbe{Protocol: "http", Path: "/health"},
		QEMU: &artifact.QEMUImage{
			Kernel:      "vmlinuz",
			Initrd:      "initrd.img",
			Cmdline:     "console=ttyS0 quiet panic=-1 nokaslr",
			MinMemoryMB: 96,
			GuestPort:   80,
		},
	}
}

// requireBuild skips slow builds in -short mode and on hosts that cannot
// build (failing instead when VMSSD_E2E=1).
func requireBuild(t *testing.T) {
	t.Helper()
	if testing.Short() && os.Getenv(EnvE2E) != "1" {
		t.Skip("builds the guest twice; skipped in -short mode")
	}
	if err := Prerequisites(); err != nil {
		SkipOrFail(t, err)
	}
}

// TestBuildReproducible is the reproducibility test: two builds into two
// directories give byte-identical artifacts, which a Store accepts.
func TestBuildReproducible(t *testing.T) {
	requireBuild(t)
	ctx := t.Context()
	const version = "1.2.3"
	var paths []string
	var sums []string
	for range 2 {
		p, err := Run(ctx, t.TempDir(), version, false)
		if errors.Is(err, ErrPrerequisite) {
			SkipOrFail(t, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		paths, sums = append(paths, p), append(sums, hex.EncodeToString(sum[:]))
		t.Logf("%s: %d bytes, sha256:%s", p, len(data), sums[len(sums)-1])
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds differ: sha256 %s and %s", sums[0], sums[1])
	}
	// Nothing but the artifact is left in the output directory.
	ents, err := os.ReadDir(filepath.Dir(paths[0]))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != ArtifactName(version) {
		t.Fatalf("output directory holds %v", ents)
	}

	checkTar(t, paths[0])
	dir := importArtifact(t, paths[0], wantManifest(version, false))
	files := readInitrd(t, filepath.Join(dir, artifact.RootfsDir, "initrd.img"))
	checkInitrd(t, files, version, false)
}

// TestBuildHelper checks Build: the unhealthy variant, cached per binary.
func TestBuildHelper(t *testing.T) {
	requireBuild(t)
	const version = "0.9.0-unhealthy.test"
	p := Build(t, version, true)
	if again := Build(t, version, true); again != p {
		t.Fatalf("second Build = %s, want %s", again, p)
	}
	if filepath.Base(p) != ArtifactName(version) || !filepath.IsAbs(p) {
		t.Fatalf("Build = %s", p)
	}
	dir := importArtifact(t, p, wantManifest(version, true))
	files := readInitrd(t, filepath.Join(dir, artifact.RootfsDir, "initrd.img"))
	checkInitrd(t, files, version, true)
}

// TestScriptUsage runs the script with bad arguments: it must refuse them
// before touching anything (exit status 2).
func TestScriptUsage(t *testing.T) {
	script, err := Script()
	if err != nil {
		SkipOrFail(t, err)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		SkipOrFail(t, fmt.Errorf("%w: no bash", ErrPrerequisite))
	}
	out := t.TempDir()
	for _, args := range [][]string{
		{},
		{out},
		{out, "1.0.0", "extra"},
		{out, "1.0.0", "--healthy"},
		{out, "../1.0.0"},
		{out, "1.0.0 x"},
		{out, "1.0.0\"}"},
		{out, ""},
		{out, strings.Repeat("1", 65)},
	} {
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), EnvCache+"="+t.TempDir())
		msg, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("build-guest.sh %q: %v, want exit status 2\n%s", args, err, msg)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Fatalf("refused builds wrote %v", ents)
	}
}

// TestShellcheck lints the script when shellcheck is installed.
func TestShellcheck(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		SkipOrFail(t, fmt.Errorf("shellcheck is not installed: %w", err))
	}
	script, err := Script()
	if err != nil {
		SkipOrFail(t, err)
	}
	if out, err := exec.Command(shellcheck, script).CombinedOutput(); err != nil {
		t.Fatalf("shellcheck %s: %v\n%s", script, err, out)
	}
}

func TestTail(t *testing.T) {
	if got := tail([]byte("a\nb\n")); got != "a\nb" {
		t.Fatalf("tail = %q", got)
	}
	long := strings.Repeat("line\n", 2000) + "last\n"
	got := tail([]byte(long))
	if len(got) > 4<<10 || !strings.HasSuffix(got, "line\nlast") || !strings.HasPrefix(got, "line\n") {
		t.Fatalf("tail of long output = %d bytes: %q...", len(got), got[:20])
	}
}

// checkTar checks the artifact's tar stream: sorted entries, owner 0:0,
// fixed mtimes, only manifest.json and rootfs/{vmlinuz,initrd.img}.
func checkTar(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q, time %v (want gzip -n)", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0 numeric", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		if hdr.ModTime.Unix() != epoch {
			t.Errorf("%s: mtime %v, want %v", hdr.Name, hdr.ModTime, time.Unix(epoch, 0).UTC())
		}
	}
	want := []string{"manifest.json", "rootfs/", "rootfs/initrd.img", "rootfs/vmlinuz"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("tar entries %q, want %q", names, want)
	}
}

// importArtifact imports path into a fresh Store, checks its manifest and
// returns the unpacked image directory.
func importArtifact(t *testing.T, path string, want artifact.Manifest) string {
	t.Helper()
	ctx := t.Context()
	s, err := artifact.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := s.ImportFile(ctx, path)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	m, err := s.Manifest(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("manifest %+v (qemu %+v), want %+v (qemu %+v)", m, m.QEMU, want, want.QEMU)
	}
	dir, err := s.Unpack(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, artifact.RootfsDir, m.QEMU.Kernel))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 1<<20 {
		t.Fatalf("kernel is %d bytes", fi.Size())
	}
	return dir
}

// cpioFile is one entry of a newc cpio archive.
type cpioFile struct {
	name     string
	mode     uint32
	uid, gid uint32
	mtime    int64
	data     []byte
}

// readInitrd reads a gzip'd newc cpio archive.
func readInitrd(t *testing.T, path string) []cpioFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("initrd gzip header has name %q, time %v (want gzip -n)", zr.Name, zr.ModTime)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	files, err := parseNewc(raw)
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func parseNewc(raw []byte) ([]cpioFile, error) {
	const hdrLen = 110
	align := func(n int) int { return (n + 3) &^ 3 }
	var out []cpioFile
	for off := 0; ; {
		if off+hdrLen > len(raw) {
			return nil, errors.New("cpio: truncated header")
		}
		h := raw[off : off+hdrLen]
		if string(h[:6]) != "070701" {
			return nil, fmt.Errorf("cpio: bad magic %q at %d", h[:6], off)
		}
		field := func(i int) (uint32, error) {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			return uint32(v), err
		}
		var v [13]uint32
		for i := range v {
			var err error
			if v[i], err = field(i); err != nil {
				return nil, fmt.Errorf("cpio: header field %d at %d: %w", i, off, err)
			}
		}
		size, nameLen := int(v[6]), int(v[11])
		nameEnd := off + hdrLen + nameLen
		dataOff := align(nameEnd)
		if nameLen < 1 || dataOff+size > len(raw) {
			return nil, errors.New("cpio: truncated entry")
		}
		name := string(raw[off+hdrLen : nameEnd-1])
		if name == "TRAILER!!!" {
			return out, nil
		}
		out = append(out, cpioFile{name: name, mode: v[1], uid: v[2], gid: v[3], mtime: int64(v[5]),
			data: raw[dataOff : dataOff+size]})
		off = align(dataOff + size)
	}
}

// checkInitrd checks the initramfs: sorted, owner 0:0, fixed mtimes, and
// the files the guest needs.
func checkInitrd(t *testing.T, files []cpioFile, version string, unhealthy bool) {
	t.Helper()
	byName := map[string]cpioFile{}
	var names []string
	for _, f := range files {
		names = append(names, f.name)
		byName[f.name] = f
		if f.uid != 0 || f.gid != 0 || f.mtime != epoch {
			t.Errorf("initrd %s: owner %d:%d, mtime %d; want 0:0, %d", f.name, f.uid, f.gid, f.mtime, epoch)
		}
		if strings.HasPrefix(f.name, "/") || strings.HasPrefix(f.name, "./") || strings.Contains(f.name, "..") {
			t.Errorf("initrd entry name %q", f.name)
		}
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("initrd entries are not sorted")
	}
	const regular, symlink = 0o100000, 0o120000
	health := "healthy\n"
	if unhealthy {
		health = "unhealthy\n"
	}
	for name, want := range map[string]struct {
		typ, perm uint32
		data      string // "" = any
	}{
		"init":                      {regular, 0o755, ""},
		"bin/busybox":               {regular, 0o755, ""},
		"bin/sh":                    {symlink, 0o777, "busybox"},
		"usr/sbin/httpd":            {symlink, 0o777, "../../bin/busybox"},
		"sbin/acpid":                {symlink, 0o777, "../bin/busybox"},
		"etc/acpi/power":            {regular, 0o755, ""},
		"etc/vmssd/version":         {regular, 0o644, version + "\n"},
		"etc/vmssd/health":          {regular, 0o644, health},
		"lib/modules/virtio_net.ko": {regular, 0o644, ""},
		"lib/modules/button.ko":     {regular, 0o644, ""},
	} {
		f, ok := byName[name]
		switch {
		case !ok:
			t.Errorf("initrd has no %s", name)
		case f.mode&0o170000 != want.typ || f.mode&0o7777 != want.perm:
			t.Errorf("initrd %s: mode %o, want type %o perm %o", name, f.mode, want.typ, want.perm)
		case want.data != "" && string(f.data) != want.data:
			t.Errorf("initrd %s = %q, want %q", name, f.data, want.data)
		}
	}
	init := string(byName["init"].data)
	for _, s := range []string{"GUEST-READY version=$VERSION", "vmssd.hostname=*", "httpd -p 80", "acpid ", "/metadata/instance"} {
		if !strings.Contains(init, s) {
			t.Errorf("/init lacks %q", s)
		}
	}
	// Every module the guest loads is there, each after its dependencies
	// (virtio_ring before virtio_net, failover before net_failover, ...).
	mods := strings.Fields(string(byName["etc/vmssd/modules"].data))
	pos := map[string]int{}
	for i, m := range mods {
		pos[m] = i
		if _, ok := byName["lib/modules/"+m+".ko"]; !ok {
			t.Errorf("module %s is listed but not in the initrd", m)
		}
	}
	for _, order := range [][2]string{{"virtio_ring", "virtio_net"}, {"virtio", "virtio_pci"}, {"failover", "net_failover"},
		{"net_failover", "virtio_net"}, {"virtio", "virtio_balloon"}} {
		a, okA := pos[order[0]]
		b, okB := pos[order[1]]
		if !okA || !okB || a > b {
			t.Errorf("modules %q: want %s before %s", mods, order[0], order[1])
		}
	}
	if _, ok := pos["evdev"]; !ok {
		t.Errorf("modules %q lack evdev (acpid reads the power button from /dev/input)", mods)
	}
	// The generated /init passes shellcheck as a POSIX sh script.
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		cmd := exec.Command(sc, "-s", "sh", "-")
		cmd.Stdin = bytes.NewReader(byName["init"].data)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("shellcheck /init: %v\n%s", err, out)
		}
	}
}

// recordingTB records Skipf and Fatalf instead of stopping the test.
type recordingTB struct {
	testing.TB
	skipped, failed bool
}

func (r *recordingTB) Helper()                 {}
func (r *recordingTB) Skipf(string, ...any)    { r.skipped = true }
func (r *recordingTB) Fatalf(string, ...any)   { r.failed = true }
func (r *recordingTB) Logf(f string, a ...any) { r.TB.Logf(f, a...) }

func TestSkipOrFail(t *testing.T) {
	err := fmt.Errorf("%w: test", ErrPrerequisite)
	t.Setenv(EnvE2E, "")
	r := &recordingTB{TB: t}
	SkipOrFail(r, err)
	if !r.skipped || r.failed {
		t.Fatalf("without %s: skipped %v, failed %v", EnvE2E, r.skipped, r.failed)
	}
	t.Setenv(EnvE2E, "1")
	r = &recordingTB{TB: t}
	SkipOrFail(r, err)
	if r.skipped || !r.failed {
		t.Fatalf("with %s=1: skipped %v, failed %v", EnvE2E, r.skipped, r.failed)
	}
}
