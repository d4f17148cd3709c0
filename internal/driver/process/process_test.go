package process

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/drivertest"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/fsutil"
)

func TestMain(m *testing.M) {
	drivertest.MaybeGuest()
	os.Exit(m.Run())
}

// newTestDriver returns a driver on root whose guest program is this test
// binary, closed at the end of the test. Its guests are plain processes
// unless a mod asks for another isolation (see inSandbox).
func newTestDriver(t *testing.T, root string, mods ...func(*Options)) *Driver {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Root:              root,
		GuestBinary:       exe,
		Logger:            slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		RestartBackoff:    50 * time.Millisecond,
		MaxRestartBackoff: time.Second,
		StopTimeout:       5 * time.Second,
		Isolation:         IsolationNone,
	}
	for _, mod := range mods {
		mod(&opts)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	drivertest.Run(t,
		func(t *testing.T, root string) driver.Driver { return newTestDriver(t, root) },
		func(t *testing.T) string { return drivertest.ProcessImage(t, "1.0.0") },
	)
}

func TestConformanceSandboxed(t *testing.T) {
	requireSandbox(t)
	drivertest.Run(t,
		func(t *testing.T, root string) driver.Driver {
			cleanupSandbox(t, root)
			return newTestDriver(t, root, inSandbox)
		},
		func(t *testing.T) string { return drivertest.ProcessImage(t, "1.0.0") },
	)
}

// testSpec returns a spec for imageDir.
func testSpec(id, imageDir string) driver.Spec {
	return driver.Spec{
		ID:          id,
		ImageDir:    imageDir,
		ImageDigest: "sha256:" + strings.Repeat("0", 63) + strconv.Itoa(len(imageDir)%10),
		// Operator images may run unsandboxed (the default of these tests).
		OperatorImage: true,
		Metadata:      driver.Metadata{VMID: id, InstanceID: "0", Name: "ss_0", ModelVersion: 1},
	}
}

// cleanupDelete deletes id at the end of the test.
func cleanupDelete(t *testing.T, d *Driver, id string) {
	t.Cleanup(func() {
		if err := d.Delete(context.Background(), id); err != nil && !errors.Is(err, driver.ErrNotFound) && !errors.Is(err, ErrClosed) {
			t.Errorf("cleanup: delete %s: %v", id, err)
		}
	})
}

// eventually polls cond until it holds or fails the test after 30s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// waitHealthy waits until id runs and answers its health probe with 200
// and cond holds.
func waitHealthy(t *testing.T, d *Driver, id string, cond func(driver.Status) bool) driver.Status {
	t.Helper()
	var st driver.Status
	eventually(t, id+" to be healthy", func() bool {
		var err error
		st, err = d.Inspect(t.Context(), id)
		if err != nil || st.Power != driver.PowerRunning || (cond != nil && !cond(st)) {
			return false
		}
		code, _ := get(st.HealthURL)
		return code == http.StatusOK
	})
	return st
}

func get(u string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func guestURL(st driver.Status, path string) string {
	return "http://" + st.Ports["health"] + path
}

func put(t *testing.T, u, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", u, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s", u, resp.Status)
	}
}

func readState(t *testing.T, dir string) state {
	t.Helper()
	var st state
	if err := readJSON(filepath.Join(dir, stateFile), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCreateLayout(t *testing.T) {
	root := t.TempDir()
	d := newTestDriver(t, root)
	img := drivertest.ProcessImage(t, "1.2.3")
	spec := testSpec("layout", img)
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	cleanupDelete(t, d, spec.ID)
	st := waitHealthy(t, d, spec.ID, nil)
	dir := filepath.Join(root, spec.ID)

	if code, body := get(st.HealthURL); code != 200 || body != "1.2.3" {
		t.Errorf("health: %d %q, want 200 1.2.3", code, body)
	}
	if want := "http://" + st.Ports["health"] + "/health"; st.HealthURL != want {
		t.Errorf("HealthURL = %q, want %q", st.HealthURL, want)
	}

	// The disk is a copy of rootfs with its modes.
	modes := []struct {
		path string
		mode os.FileMode
	}{
		{"disk", 0o755 | os.ModeDir},
		{"disk/version", 0o644},
		{"disk/bin/hello", 0o755},
		{"disk/etc/secret", 0o600},
		{"disk/var/empty", 0o700 | os.ModeDir},
		{"disk/etc/link", os.ModeSymlink},
	}
	for _, m := range modes {
		fi, err := os.Lstat(filepath.Join(dir, m.path))
		if err != nil {
			t.Errorf("%s: %v", m.path, err)
			continue
		}
		got := fi.Mode()
		if m.mode == os.ModeSymlink {
			got &= os.ModeType
		}
		if got != m.mode {
			t.Errorf("%s: mode %v, want %v", m.path, got, m.mode)
		}
	}
	if link, err := os.Readlink(filepath.Join(dir, "disk/etc/link")); err != nil || link != "../version" {
		t.Errorf("disk/etc/link -> %q (%v), want ../version", link, err)
	}

	var gotSpec driver.Spec
	if err := readJSON(filepath.Join(dir, specFile), &gotSpec); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotSpec, spec) {
		t.Errorf("spec.json = %+v, want %+v", gotSpec, spec)
	}
	var md driver.Metadata
	if err := readJSON(filepath.Join(dir, metadataFile), &md); err != nil || md != spec.Metadata {
		t.Errorf("metadata.json = %+v (%v), want %+v", md, err, spec.Metadata)
	}
	ps := readState(t, dir)
	pst, err := hostproc.ReadStat(st.PID)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Desired != driver.PowerRunning || ps.PID != st.PID || ps.StartTime != pst.Start || ps.Port == 0 {
		t.Errorf("state.json = %+v, want desired running, pid %d, start time %d, a port", ps, st.PID, pst.Start)
	}
	if pst.Session != st.PID {
		t.Errorf("guest session %d, want its own (%d)", pst.Session, st.PID)
	}

	// Environment and working directory.
	code, body := get(guestURL(st, "/env"))
	var env map[string]string
	if code != 200 || json.Unmarshal([]byte(body), &env) != nil {
		t.Fatalf("GET /env: %d %q", code, body)
	}
	wantEnv := map[string]string{
		envPort:     strconv.Itoa(ps.Port),
		envDisk:     filepath.Join(dir, diskDir),
		envMetadata: filepath.Join(dir, metadataFile),
	}
	if !reflect.DeepEqual(env, wantEnv) {
		t.Errorf("guest VMSSD_ environment = %v, want %v", env, wantEnv)
	}
	if cwd, err := os.Readlink("/proc/" + strconv.Itoa(st.PID) + "/cwd"); err != nil || cwd != filepath.Join(dir, diskDir) {
		t.Errorf("guest cwd = %q (%v), want the disk", cwd, err)
	}
	eventually(t, "console output", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, consoleFile))
		return strings.Contains(string(b), "listening on")
	})
}

// writeImage writes an image with the given manifest and a rootfs holding
// a version file.
// writeImage writes an image whose manifest is the given JSON with the
// fields every valid manifest needs (osType, a health probe) filled in.
func writeImage(t *testing.T, manifest string) string {
	t.Helper()
	dir := t.TempDir()
	var m map[string]any
	if err := json.Unmarshal([]byte(manifest), &m); err != nil {
		// Not JSON: written as is (for the tests of broken manifests).
		m = nil
	}
	if m == nil {
		return writeRawImage(t, dir, []byte(manifest))
	}
	if _, ok := m["osType"]; !ok {
		m["osType"] = "Linux"
	}
	hp, _ := m["healthProbe"].(map[string]any)
	if hp == nil {
		hp = map[string]any{"path": "/"}
		m["healthProbe"] = hp
	}
	if _, ok := hp["protocol"]; !ok {
		hp["protocol"] = "http"
	}
	full, _ := json.Marshal(m)
	return writeRawImage(t, dir, full)
}

func writeRawImage(t *testing.T, dir string, manifest []byte) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, manifestFile), manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, rootfsDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, rootfsDir, "version"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCreateRejects(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	good := drivertest.ProcessImage(t, "1")
	noRootfs := t.TempDir()
	os.WriteFile(filepath.Join(noRootfs, manifestFile), []byte(`{"format":"vmssd.process/v1","entrypoint":["x"]}`), 0o644)
	rootfsFile := writeImage(t, `{"format":"vmssd.process/v1","entrypoint":["x"]}`)
	os.RemoveAll(filepath.Join(rootfsFile, rootfsDir))
	os.WriteFile(filepath.Join(rootfsFile, rootfsDir), nil, 0o644)

	tests := []struct {
		name string
		spec driver.Spec
		want error // nil: any error
	}{
		{"no manifest", testSpec("a", t.TempDir()), driver.ErrImageInvalid},
		{"no image dir", testSpec("a", ""), driver.ErrImageInvalid},
		{"bad json", testSpec("a", writeImage(t, `{`)), driver.ErrImageInvalid},
		{"other format", testSpec("a", writeImage(t, `{"format":"vmssd.qemu/v1","entrypoint":["x"]}`)), driver.ErrImageInvalid},
		{"no entrypoint", testSpec("a", writeImage(t, `{"format":"vmssd.process/v1"}`)), driver.ErrImageInvalid},
		{"reserved env", testSpec("a", writeImage(t, `{"format":"vmssd.process/v1","entrypoint":["x"],"env":{"VMSSD_PORT":"1"}}`)), driver.ErrImageInvalid},
		{"relative probe path", testSpec("a", writeImage(t, `{"format":"vmssd.process/v1","entrypoint":["x"],"healthProbe":{"path":"health"}}`)), driver.ErrImageInvalid},
		{"no rootfs", testSpec("a", noRootfs), driver.ErrImageInvalid},
		{"rootfs is a file", testSpec("a", rootfsFile), driver.ErrImageInvalid},
		{"empty id", testSpec("", good), nil},
		{"dot id", testSpec(".hidden", good), nil},
		{"dotdot id", testSpec("..", good), nil},
		{"slash id", testSpec("a/b", good), nil},
		{"long id", testSpec(strings.Repeat("a", 129), good), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := d.Create(t.Context(), tc.spec)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("Create: %v, want %v", err, tc.want)
			}
		})
	}
	entries, _ := os.ReadDir(d.opts.Root)
	if len(entries) != 0 {
		t.Errorf("failed creates left %d entries in the root", len(entries))
	}
	if list, _ := d.List(t.Context()); len(list) != 0 {
		t.Errorf("failed creates left instances: %+v", list)
	}
}

func TestCreateConflict(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	spec := testSpec("conflict", drivertest.ProcessImage(t, "1"))
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	cleanupDelete(t, d, spec.ID)
	other := spec
	other.ImageDigest = "sha256:other"
	if _, err := d.Create(t.Context(), other); !errors.Is(err, ErrConflict) {
		t.Errorf("Create with another image: %v, want ErrConflict", err)
	}
}

func TestStopTimeoutKills(t *testing.T) {
	d := newTestDriver(t, t.TempDir(), func(o *Options) { o.StopTimeout = 500 * time.Millisecond })
	spec := testSpec("stubborn", drivertest.ProcessImage(t, "1"))
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	cleanupDelete(t, d, spec.ID)
	st := waitHealthy(t, d, spec.ID, nil)
	put(t, guestURL(st, "/files/"+drivertest.IgnoreTermFile), "")

	start := time.Now()
	got, err := d.Stop(t.Context(), spec.ID, true)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if el := time.Since(start); el < 500*time.Millisecond {
		t.Errorf("Stop took %s, want at least the stop timeout", el)
	}
	if got.Power != driver.PowerStopped || hostproc.Alive(st.PID, 0) {
		t.Errorf("after Stop: power %q, guest alive %v", got.Power, hostproc.Alive(st.PID, 0))
	}
}

func TestPorts(t *testing.T) {
	root := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	first := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := PortRange{First: first, Last: first + 20}
	d := newTestDriver(t, root, func(o *Options) { o.Ports = r })
	img := drivertest.ProcessImage(t, "1")
	var ports []int
	for _, id := range []string{"p1", "p2"} {
		if _, err := d.Create(t.Context(), testSpec(id, img)); err != nil {
			t.Fatal(err)
		}
		cleanupDelete(t, d, id)
		waitHealthy(t, d, id, nil)
		p := readState(t, filepath.Join(root, id)).Port
		if p < r.First || p > r.Last {
			t.Errorf("%s: port %d outside %v", id, p, r)
		}
		ports = append(ports, p)
	}
	if ports[0] == ports[1] {
		t.Fatalf("both instances got port %d", ports[0])
	}

	// Stop keeps the port reserved, deallocate releases it.
	st, err := d.Stop(t.Context(), "p1", true)
	if err != nil {
		t.Fatal(err)
	}
	if st.Ports["health"] == "" || readState(t, filepath.Join(root, "p1")).Port != ports[0] {
		t.Errorf("stopped instance lost its port: %v", st.Ports)
	}
	if _, err := d.Start(t.Context(), "p1"); err != nil {
		t.Fatal(err)
	}
	if st := waitHealthy(t, d, "p1", nil); !strings.HasSuffix(st.Ports["health"], ":"+strconv.Itoa(ports[0])) {
		t.Errorf("restarted on %s, want port %d", st.Ports["health"], ports[0])
	}
	if _, err := d.Deallocate(t.Context(), "p1"); err != nil {
		t.Fatal(err)
	}
	if p := readState(t, filepath.Join(root, "p1")).Port; p != 0 {
		t.Errorf("deallocated instance keeps port %d", p)
	}
	d.mu.Lock()
	owner := d.ports.Owner(ports[0])
	d.mu.Unlock()
	if owner != "" {
		t.Errorf("port %d still reserved after deallocation", ports[0])
	}
	if _, err := d.Start(t.Context(), "p1"); err != nil {
		t.Fatal(err)
	}
	if st := waitHealthy(t, d, "p1", nil); st.Ports["health"] == "" {
		t.Error("no port after starting a deallocated instance")
	}
}

func TestCrashLoopAndSpawnFailure(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	crash := writeImage(t, `{"format":"vmssd.process/v1","entrypoint":["/bin/sh","-c","exit 3"]}`)
	spec := testSpec("crashy", crash)
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	var st driver.Status
	eventually(t, "restarts", func() bool {
		st, _ = d.Inspect(t.Context(), spec.ID)
		return st.Restarts >= 2
	})
	if !strings.Contains(st.Message, "exit") || !strings.Contains(st.Message, "3") {
		t.Errorf("Message = %q, want the exit status", st.Message)
	}
	if err := d.Delete(t.Context(), spec.ID); err != nil {
		t.Fatalf("Delete during a crash loop: %v", err)
	}

	missing := writeImage(t, `{"format":"vmssd.process/v1","entrypoint":["/nonexistent/guest"]}`)
	spec = testSpec("missing", missing)
	st, err := d.Create(t.Context(), spec)
	if err == nil {
		t.Fatal("Create with a missing entrypoint program succeeded")
	}
	if st.ID != spec.ID || !strings.Contains(st.Message, "start failed") {
		t.Errorf("status after a failed start: %+v", st)
	}
	if st, err := d.Stop(t.Context(), spec.ID, true); err != nil || st.Power != driver.PowerStopped {
		t.Errorf("Stop of a failing instance: %q %v", st.Power, err)
	}
	if err := d.Delete(t.Context(), spec.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
}

func TestRecoverCleansUp(t *testing.T) {
	root := t.TempDir()
	d := newTestDriver(t, root)
	spec := testSpec("keep", drivertest.ProcessImage(t, "1"))
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stop(t.Context(), spec.ID, false); err != nil {
		t.Fatal(err)
	}
	d.Close()

	junk := []string{
		".create-x-123/disk/file", // an interrupted Create
		".delete-y-1/disk/file",   // an interrupted Delete
		"half/disk/file",          // no spec.json
		"keep/.tmp-state.json-99", // an interrupted atomic write
		"keep/.reimage/disk/file", // an uncommitted reimage
		"keep/disk.old/file",      // a reimage's old disk
	}
	for _, p := range junk {
		p = filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d2 := newTestDriver(t, root)
	sts, err := d2.Recover(t.Context())
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if len(sts) != 1 || sts[0].ID != spec.ID || sts[0].Power != driver.PowerStopped {
		t.Errorf("Recover = %+v, want only the stopped instance", sts)
	}
	for _, p := range []string{".create-x-123", ".delete-y-1", "half", "keep/.tmp-state.json-99", "keep/.reimage", "keep/disk.old"} {
		if exists(filepath.Join(root, p)) {
			t.Errorf("Recover left %s", p)
		}
	}
	if !exists(filepath.Join(root, "keep", diskDir, "version")) {
		t.Error("Recover damaged the instance's disk")
	}
}

// crashedDriver creates an instance, closes the driver (as if vmssd was
// killed) and returns the instance directory and its guest's status.
func crashedDriver(t *testing.T, root, id, version string) (string, driver.Status) {
	t.Helper()
	d := newTestDriver(t, root)
	if _, err := d.Create(t.Context(), testSpec(id, drivertest.ProcessImage(t, version))); err != nil {
		t.Fatal(err)
	}
	st := waitHealthy(t, d, id, nil)
	d.Close()
	return filepath.Join(root, id), st
}

// recovered returns a new recovered driver on root.
func recovered(t *testing.T, root string) *Driver {
	t.Helper()
	d := newTestDriver(t, root)
	if _, err := d.Recover(t.Context()); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return d
}

func TestRecoverCompletesCommittedReimage(t *testing.T) {
	root := t.TempDir()
	dir, st := crashedDriver(t, root, "reimg", "v1")
	// Reimage had stopped the guest, committed and started applying when
	// vmssd died: the old disk is already aside.
	syscall.Kill(st.PID, syscall.SIGKILL)
	eventually(t, "guest exit", func() bool { return !hostproc.Alive(st.PID, 0) })
	img2 := drivertest.ProcessImage(t, "v2")
	spec2 := testSpec("reimg", img2)
	spec2.ImageDigest = "sha256:v2"
	ready := filepath.Join(dir, instdir.ReimageReady)
	if err := os.Mkdir(ready, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := fsutil.CopyTree(t.Context(), filepath.Join(img2, rootfsDir), filepath.Join(ready, diskDir)); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(img2, manifestFile))
	writeFileAtomic(filepath.Join(ready, manifestFile), raw, 0o644)
	writeJSONAtomic(filepath.Join(ready, specFile), spec2)
	writeJSONAtomic(filepath.Join(ready, metadataFile), spec2.Metadata)
	if err := os.Rename(filepath.Join(dir, diskDir), filepath.Join(dir, instdir.OldDiskDir)); err != nil {
		t.Fatal(err)
	}

	d := recovered(t, root)
	cleanupDelete(t, d, "reimg")
	st2 := waitHealthy(t, d, "reimg", nil)
	if code, body := get(st2.HealthURL); code != 200 || body != "v2" {
		t.Errorf("health after recovery: %d %q, want v2", code, body)
	}
	if st2.ImageDigest != "sha256:v2" {
		t.Errorf("image %q, want sha256:v2", st2.ImageDigest)
	}
	for _, p := range []string{instdir.ReimageReady, instdir.OldDiskDir} {
		if exists(filepath.Join(dir, p)) {
			t.Errorf("Recover left %s", p)
		}
	}
}

func TestRecoverAdoptsUnrecordedGuest(t *testing.T) {
	root := t.TempDir()
	dir, st := crashedDriver(t, root, "orphan", "1")
	// vmssd died after spawning the guest, before recording it.
	ps := readState(t, dir)
	ps.PID, ps.StartTime = 0, 0
	if err := writeJSONAtomic(filepath.Join(dir, stateFile), ps); err != nil {
		t.Fatal(err)
	}
	d := recovered(t, root)
	cleanupDelete(t, d, "orphan")
	got, err := d.Inspect(t.Context(), "orphan")
	if err != nil || got.PID != st.PID || got.Power != driver.PowerRunning {
		t.Errorf("after Recover: pid %d power %q (%v), want the unrecorded guest %d", got.PID, got.Power, err, st.PID)
	}
	guests, err := scanGuests()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(guests[filepath.Join(dir, diskDir)]); n != 1 {
		t.Errorf("%d guests run on the disk, want 1", n)
	}
}

func TestRecoverStopsUnwantedGuest(t *testing.T) {
	root := t.TempDir()
	dir, st := crashedDriver(t, root, "unwanted", "1")
	// vmssd died in the middle of a Stop.
	ps := readState(t, dir)
	ps.Desired, ps.Power = driver.PowerStopped, driver.PowerStopping
	if err := writeJSONAtomic(filepath.Join(dir, stateFile), ps); err != nil {
		t.Fatal(err)
	}
	d := recovered(t, root)
	cleanupDelete(t, d, "unwanted")
	got, err := d.Inspect(t.Context(), "unwanted")
	if err != nil || got.Power != driver.PowerStopped || got.PID != 0 {
		t.Errorf("after Recover: %+v (%v), want stopped", got, err)
	}
	if hostproc.Alive(st.PID, 0) {
		t.Error("the guest still runs")
	}
}

func TestRecoverRestartsDeadGuest(t *testing.T) {
	root := t.TempDir()
	_, st := crashedDriver(t, root, "dead", "1")
	syscall.Kill(st.PID, syscall.SIGKILL)
	eventually(t, "guest exit", func() bool { return !hostproc.Alive(st.PID, 0) })
	d := recovered(t, root)
	cleanupDelete(t, d, "dead")
	got := waitHealthy(t, d, "dead", nil)
	if got.PID == st.PID || got.Restarts != st.Restarts+1 || got.Message == "" {
		t.Errorf("after Recover: pid %d restarts %d message %q; want a new guest, %d restarts, a message",
			got.PID, got.Restarts, got.Message, st.Restarts+1)
	}
}

func TestConsoleRotation(t *testing.T) {
	const limit = 4096
	root := t.TempDir()
	d := newTestDriver(t, root, func(o *Options) {
		o.ConsoleMaxBytes = limit
		o.ConsoleCheckInterval = 20 * time.Millisecond
	})
	spec := testSpec("chatty", drivertest.ProcessImage(t, "1"))
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	cleanupDelete(t, d, spec.ID)
	st := waitHealthy(t, d, spec.ID, nil)
	resp, err := http.Post(guestURL(st, "/console?n=100000"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	console := filepath.Join(root, spec.ID, consoleFile)
	eventually(t, "console rotation", func() bool {
		fi, err := os.Stat(console)
		fi1, err1 := os.Stat(console + ".1")
		return err == nil && err1 == nil && fi.Size() <= limit && fi1.Size() <= limit
	})
}

// TestManyInstancesAreCheap checks that idle supervision costs goroutines,
// not threads.
func TestManyInstancesAreCheap(t *testing.T) {
	if _, err := os.Stat("/bin/sleep"); err != nil {
		t.Skip("no /bin/sleep")
	}
	d := newTestDriver(t, t.TempDir())
	img := writeImage(t, `{"format":"vmssd.process/v1","entrypoint":["/bin/sleep","600"]}`)
	const n = 40
	threadsBefore := threads(t)
	for i := range n {
		id := "many-" + strconv.Itoa(i)
		if _, err := d.Create(t.Context(), testSpec(id, img)); err != nil {
			t.Fatal(err)
		}
		cleanupDelete(t, d, id)
	}
	time.Sleep(200 * time.Millisecond)
	if grew := threads(t) - threadsBefore; grew > n/2 {
		t.Errorf("threads grew by %d for %d supervised instances", grew, n)
	}
	t.Logf("%d instances: %d goroutines, %d threads", n, runtime.NumGoroutine(), threads(t))
}

func threads(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}

func TestCloseRejectsCalls(t *testing.T) {
	d := newTestDriver(t, t.TempDir())
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := d.Create(t.Context(), testSpec("x", drivertest.ProcessImage(t, "1"))); !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close: %v, want ErrClosed", err)
	}
	if _, err := d.List(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v, want ErrClosed", err)
	}
}
