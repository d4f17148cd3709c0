package qemu

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
)

// Timing of the VM tests: TCG boots take 5-8 s on two busy cores.
const (
	vmWait     = 120 * time.Second
	vmPoll     = 100 * time.Millisecond
	testBootDL = 100 * time.Second
)

// newTestDriver returns a TCG driver on root. At the end of the test,
// unless the test closed it, it deletes the driver's instances and closes
// it; then any QEMU still running in root is killed and reported.
func newTestDriver(t *testing.T, root string, mods ...func(*Options)) *Driver {
	t.Helper()
	opts := Options{
		Root:               root,
		Accel:              AccelTCG,
		BootDeadline:       testBootDL,
		MaxConcurrentBoots: 2,
		StopTimeout:        20 * time.Second,
		RestartBackoff:     100 * time.Millisecond,
		MaxRestartBackoff:  time.Second,
		Logger:             slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, mod := range mods {
		mod(&opts)
	}
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { killLeftovers(t, d.opts.Root) })
	t.Cleanup(func() {
		sts, err := d.List(context.Background())
		if err == nil { // not closed by the test
			for _, st := range sts {
				if err := d.Delete(context.Background(), st.ID); err != nil {
					t.Errorf("cleanup: delete %s: %v", st.ID, err)
				}
			}
		}
		d.Close()
	})
	return d
}

// killLeftovers kills the QEMU processes running in an instance directory
// under root, and fails the test if there were any.
func killLeftovers(t *testing.T, root string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil || !strings.HasPrefix(cwd, root+"/") {
			continue
		}
		if _, ok := isInstanceQEMU(pid, cwd); ok {
			t.Errorf("QEMU %d still runs in %s after the test", pid, cwd)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func testSpec(id, imageDir string) driver.Spec {
	sum := sha256.Sum256([]byte(imageDir))
	return driver.Spec{
		ID:          id,
		ImageDir:    imageDir,
		ImageDigest: "sha256:" + hex.EncodeToString(sum[:]),
		Size:        "Standard_A1",
		Metadata: driver.Metadata{
			SubscriptionID: "00000000-0000-0000-0000-000000000000", ResourceGroupName: "rg",
			VMScaleSetName: "web", Name: "web_3", InstanceID: "3", VMID: id, ComputerName: "web000003",
			Location: "local", VMSize: "Standard_A1", FaultDomain: 1, UpdateDomain: 4, OSType: "Linux",
			ImageVersion: "1.0.0", ModelVersion: 1,
		},
	}
}

// waitFor polls Inspect until cond holds.
func waitFor(t *testing.T, d *Driver, id, what string, cond func(driver.Status) bool) driver.Status {
	t.Helper()
	var last driver.Status
	var lastErr error
	deadline := time.Now().Add(vmWait)
	for time.Now().Before(deadline) {
		st, err := d.Inspect(t.Context(), id)
		last, lastErr = st, err
		if err == nil && cond(st) {
			return st
		}
		time.Sleep(vmPoll)
	}
	t.Fatalf("%s: not %s after %s: last status %+v, err %v", id, what, vmWait, last, lastErr)
	return driver.Status{}
}

// waitRunning waits until id is running and its health URL answers 200.
func waitRunning(t *testing.T, d *Driver, id string, cond func(driver.Status) bool) driver.Status {
	t.Helper()
	return waitFor(t, d, id, "running and healthy", func(st driver.Status) bool {
		if st.Power != driver.PowerRunning || st.HealthURL == "" || (cond != nil && !cond(st)) {
			return false
		}
		code, _, err := httpGet(st.HealthURL)
		return err == nil && code == http.StatusOK
	})
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpGet(u string) (int, string, error) {
	resp, err := httpClient.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func httpPost(u, body string) (int, string, error) {
	resp, err := httpClient.Post(u, "text/plain", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// guestURL returns the URL of path on the guest's health port.
func guestURL(st driver.Status, path string) string {
	return "http://" + st.Ports["health"] + path
}

// guestGet GETs path from the guest and fails the test unless it is a 200.
func guestGet(t *testing.T, st driver.Status, path string) string {
	t.Helper()
	code, body, err := httpGet(guestURL(st, path))
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %q %v", path, code, body, err)
	}
	return body
}

// healthVersion returns the image version the guest's /health reports.
func healthVersion(t *testing.T, st driver.Status) string {
	t.Helper()
	code, body, err := httpGet(st.HealthURL)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d %q %v", st.HealthURL, code, body, err)
	}
	var h struct {
		Status       string `json:"status"`
		ImageVersion string `json:"imageVersion"`
	}
	if err := json.Unmarshal([]byte(body), &h); err != nil || h.Status != "Healthy" {
		t.Fatalf("health body %q: %v", body, err)
	}
	return h.ImageVersion
}

// writeDisk writes a marker to the first sector of the guest's disk.
func writeDisk(t *testing.T, st driver.Status, marker string) {
	t.Helper()
	code, body, err := httpPost(guestURL(st, "/cgi-bin/disk"), marker)
	if err != nil || code != http.StatusOK || !strings.Contains(body, "ok") {
		t.Fatalf("write disk marker: %d %q %v", code, body, err)
	}
}

func readDisk(t *testing.T, st driver.Status) string {
	t.Helper()
	return strings.TrimSpace(guestGet(t, st, "/cgi-bin/disk"))
}

// pidAlive reports whether pid is a live, non-zombie process.
func pidAlive(pid int) bool { return hostproc.Alive(pid, 0) }

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recovered returns a new driver on root after Recover.
func recovered(t *testing.T, root string, mods ...func(*Options)) (*Driver, []driver.Status) {
	t.Helper()
	d := newTestDriver(t, root, mods...)
	sts, err := d.Recover(t.Context())
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return d, sts
}

func checkOff(t *testing.T, op string, st driver.Status, want driver.Power) {
	t.Helper()
	if st.Power != want || st.PID != 0 || st.HealthURL != "" {
		t.Errorf("%s: power %q pid %d health URL %q, want %q, 0, none", op, st.Power, st.PID, st.HealthURL, want)
	}
}

// TestLifecycle takes one VM with a disk and a cloud-init seed through
// every operation against a real QEMU.
func TestLifecycle(t *testing.T) {
	requireQEMU(t)
	t.Parallel()
	img1 := testImage(t, imageOpts{version: "1.0.0", disk: true, cloudInit: true})
	img2 := testImage(t, imageOpts{version: "2.0.0", disk: true, cloudInit: true})
	root := t.TempDir()
	d, sts := recovered(t, root)
	if len(sts) != 0 {
		t.Fatalf("Recover of an empty root: %+v", sts)
	}
	spec := testSpec("life-0001", img1)
	ctx := t.Context()

	// Create returns once QEMU runs; the driver reports running once the
	// guest has booted.
	begin := time.Now()
	st, err := d.Create(ctx, spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Logf("Create returned in %s: %s", time.Since(begin).Round(time.Millisecond), st.Message)
	if st.Power != driver.PowerStarting || st.PID <= 0 || st.HealthURL != "" || st.Accel != AccelTCG {
		t.Errorf("Create: %+v, want starting with a pid, no health URL yet, accel tcg", st)
	}
	st = waitRunning(t, d, spec.ID, nil)
	t.Logf("boot 1 (create): running after %s: %s", time.Since(begin).Round(time.Millisecond), st.Message)
	if st.Ports["health"] == "" || st.Ports["ssh"] == "" || st.Ports["health"] == st.Ports["ssh"] {
		t.Errorf("ports %v, want distinct health and ssh", st.Ports)
	}
	if !strings.HasSuffix(st.HealthURL, "/health") || !strings.Contains(st.Message, "booted in") {
		t.Errorf("health URL %q message %q", st.HealthURL, st.Message)
	}
	if v := healthVersion(t, st); v != "1.0.0" {
		t.Errorf("health reports version %q, want 1.0.0", v)
	}

	checkConfined(t, d, spec.ID, st.PID)

	// The guest got its identity: kernel parameters, fw_cfg metadata and
	// the NoCloud seed.
	cmdline := guestGet(t, st, "/cmdline")
	for _, p := range []string{"vmssd.hostname=web000003", "vmssd.instance=3", "vmssd.vmid=life-0001",
		"vmssd.fd=1", "vmssd.ud=4", "vmssd.vmss=web", "vmssd.version=1.0.0", "nokaslr"} {
		if !strings.Contains(cmdline, p) {
			t.Errorf("kernel command line %q lacks %s", cmdline, p)
		}
	}
	var md driver.Metadata
	if err := json.Unmarshal([]byte(guestGet(t, st, "/metadata")), &md); err != nil || md != spec.Metadata {
		t.Errorf("fw_cfg metadata = %+v (%v), want %+v", md, err, spec.Metadata)
	}
	if meta := guestGet(t, st, "/meta-data"); !strings.Contains(meta, `instance-id: "life-0001"`) ||
		!strings.Contains(meta, `local-hostname: "web000003"`) {
		t.Errorf("cloud-init meta-data = %q", meta)
	}

	// Create is idempotent; another image is a conflict.
	again, err := d.Create(ctx, spec)
	if err != nil || again.PID != st.PID || again.Power != driver.PowerRunning {
		t.Errorf("second Create: %+v %v", again, err)
	}
	other := spec
	other.ImageDir, other.ImageDigest = img2, "sha256:other"
	if _, err := d.Create(ctx, other); !errors.Is(err, ErrConflict) {
		t.Errorf("Create with another image: %v, want ErrConflict", err)
	}

	// Graceful stop: the ACPI power button powers the guest off.
	writeDisk(t, st, "marker-1")
	begin = time.Now()
	stopped, err := d.Stop(ctx, spec.ID, true)
	if err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("graceful stop took %s: %s", time.Since(begin).Round(time.Millisecond), stopped.Message)
	checkOff(t, "Stop", stopped, driver.PowerStopped)
	if !strings.Contains(stopped.Message, "ACPI") {
		t.Errorf("Stop message %q, want the guest powered off by ACPI", stopped.Message)
	}
	if stopped.Ports["health"] != st.Ports["health"] {
		t.Errorf("Stop changed ports: %v -> %v", st.Ports, stopped.Ports)
	}
	waitGone(t, st.PID)
	con, err := d.Console(ctx, spec.ID)
	if err != nil || !strings.Contains(string(con), "ACPI power button, powering off") {
		t.Errorf("console after a graceful stop lacks the guest's power-off (%v):\n%s", err, con)
	}
	time.Sleep(300 * time.Millisecond)
	if cur, _ := d.Inspect(ctx, spec.ID); cur.Power != driver.PowerStopped {
		t.Errorf("stopped instance: power %q", cur.Power)
	}

	// Start boots the same overlay.
	begin = time.Now()
	if _, err := d.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start: %v", err)
	}
	st = waitRunning(t, d, spec.ID, nil)
	t.Logf("boot 2 (start): running after %s", time.Since(begin).Round(time.Millisecond))
	if got := readDisk(t, st); got != "marker-1" {
		t.Errorf("after stop and start the disk holds %q, want marker-1", got)
	}

	// Close leaves the VM running; a new driver re-adopts the same QEMU.
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if v := healthVersion(t, st); v != "1.0.0" {
		t.Fatalf("guest after Close reports %q", v)
	}
	d, sts = recovered(t, root)
	if len(sts) != 1 || sts[0].PID != st.PID || sts[0].Power != driver.PowerRunning || sts[0].Restarts != 0 {
		t.Fatalf("Recover: %+v, want pid %d running (re-adopted)", sts, st.PID)
	}
	time.Sleep(300 * time.Millisecond)
	if cur, _ := d.Inspect(ctx, spec.ID); cur.PID != st.PID || cur.HealthURL != st.HealthURL {
		t.Errorf("after Recover: %+v, want pid %d", cur, st.PID)
	}

	// The new driver supervises it: a killed QEMU is restarted.
	begin = time.Now()
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st2 := waitRunning(t, d, spec.ID, func(s driver.Status) bool { return s.PID != st.PID })
	t.Logf("boot 3 (crash restart): running after %s", time.Since(begin).Round(time.Millisecond))
	if st2.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", st2.Restarts)
	}
	if got := readDisk(t, st2); got != "marker-1" {
		t.Errorf("after a crash restart the disk holds %q, want marker-1", got)
	}
	st = st2

	// Reimage to the new image: a fresh disk, the new version.
	spec2 := spec
	spec2.ImageDir = img2
	spec2.ImageDigest = testSpec("", img2).ImageDigest
	spec2.Metadata.ImageVersion, spec2.Metadata.ModelVersion = "2.0.0", 2
	begin = time.Now()
	got, err := d.Reimage(ctx, spec2)
	if err != nil {
		t.Fatalf("Reimage: %v", err)
	}
	if got.ImageDigest != spec2.ImageDigest {
		t.Errorf("Reimage: image %q", got.ImageDigest)
	}
	st = waitRunning(t, d, spec.ID, nil)
	t.Logf("boot 4 (reimage): running after %s", time.Since(begin).Round(time.Millisecond))
	if st.PID == st2.PID {
		t.Error("Reimage kept the QEMU process")
	}
	waitGone(t, st2.PID)
	if v := healthVersion(t, st); v != "2.0.0" {
		t.Errorf("after Reimage the guest reports %q, want 2.0.0", v)
	}
	if got := readDisk(t, st); got != "" {
		t.Errorf("after Reimage the disk holds %q, want a fresh disk", got)
	}
	if c := guestGet(t, st, "/cmdline"); !strings.Contains(c, "vmssd.version=2.0.0") {
		t.Errorf("command line after Reimage: %q", c)
	}
	if _, err := d.Create(ctx, spec2); err != nil {
		t.Errorf("Create with the new image after Reimage: %v", err)
	}

	// Deallocate frees the process and the ports, keeps the disk.
	writeDisk(t, st, "marker-2")
	dealloc, err := d.Deallocate(ctx, spec.ID)
	if err != nil {
		t.Fatalf("Deallocate: %v", err)
	}
	checkOff(t, "Deallocate", dealloc, driver.PowerDeallocated)
	if len(dealloc.Ports) != 0 {
		t.Errorf("deallocated instance has ports %v", dealloc.Ports)
	}
	waitGone(t, st.PID)
	if again, err := d.Stop(ctx, spec.ID, true); err != nil || again.Power != driver.PowerDeallocated {
		t.Errorf("Stop of a deallocated instance: %q %v", again.Power, err)
	}
	begin = time.Now()
	if _, err := d.Start(ctx, spec.ID); err != nil {
		t.Fatalf("Start after Deallocate: %v", err)
	}
	st = waitRunning(t, d, spec.ID, nil)
	t.Logf("boot 5 (start after deallocate): running after %s", time.Since(begin).Round(time.Millisecond))
	if got := readDisk(t, st); got != "marker-2" {
		t.Errorf("after deallocate and start the disk holds %q, want marker-2", got)
	}

	// Delete leaves nothing.
	if err := d.Delete(ctx, spec.ID); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	waitGone(t, st.PID)
	if _, err := d.Inspect(ctx, spec.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Inspect after Delete: %v", err)
	}
	if err := d.Delete(ctx, spec.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Errorf("Delete left %v in the root", entries)
	}
}

// TestVMs runs the shorter VM tests, one after the other, in parallel with
// TestLifecycle.
func TestVMs(t *testing.T) {
	requireQEMU(t)
	t.Parallel()
	t.Run("RecoverRestartsDeadVM", testRecoverDeadVM)
	t.Run("BootDeadline", testBootDeadline)
	t.Run("RestartAndGuestPowerOff", testGuestPowerOff)
	t.Run("BootAdmission", testBootAdmission)
	t.Run("MemoryAdmission", testMemoryAdmission)
}

// helperEnv makes the test binary act as a vmssd that creates one VM
// (root, image directory and id, separated by newlines), prints QEMU's pid
// and waits to be killed.
const helperEnv = "VMSSD_QEMU_TEST_HELPER"

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(runHelper(v))
	}
	os.Exit(m.Run())
}

func runHelper(arg string) int {
	f := strings.Split(arg, "\n")
	if len(f) != 3 {
		fmt.Fprintln(os.Stderr, "helper: bad argument")
		return 2
	}
	d, err := New(Options{Root: f[0], Accel: AccelTCG, BootDeadline: testBootDL})
	if err == nil {
		_, err = d.Recover(context.Background())
	}
	var st driver.Status
	if err == nil {
		st, err = d.Create(context.Background(), testSpec(f[2], f[1]))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	fmt.Println(st.PID)
	select {} // until SIGKILL
}

func testRecoverDeadVM(t *testing.T) {
	img := testImage(t, imageOpts{version: "1.0.0"})
	root := t.TempDir()
	const id = "dead-0001"

	// A vmssd creates the VM and is SIGKILLed while the guest boots: the
	// QEMU survives, and Recover re-adopts it and watches the rest of its
	// boot.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+root+"\n"+img+"\n"+id)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscan(out, &pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if !pidAlive(pid) {
		t.Fatalf("QEMU %d died with the vmssd that started it", pid)
	}
	d, sts := recovered(t, root)
	if len(sts) != 1 || sts[0].PID != pid || sts[0].Restarts != 0 {
		t.Fatalf("Recover after a SIGKILL of vmssd: %+v, want QEMU %d re-adopted", sts, pid)
	}
	t.Logf("re-adopted QEMU %d: %s %s", pid, sts[0].Power, sts[0].Message)
	st := waitRunning(t, d, id, nil)
	if st.PID != pid || st.Restarts != 0 {
		t.Errorf("after the boot: pid %d restarts %d, want %d 0", st.PID, st.Restarts, pid)
	}

	// A QEMU that died while vmssd was down is started again.
	d.Close()
	syscall.Kill(st.PID, syscall.SIGKILL)
	waitGone(t, st.PID)
	// Leftovers of interrupted operations.
	for _, p := range []string{".create-x-123/disk", "half-done/disk"} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	d, sts = recovered(t, root)
	if len(sts) != 1 || sts[0].Power != driver.PowerStarting {
		t.Errorf("Recover: %+v, want one instance starting", sts)
	}
	st2 := waitRunning(t, d, id, nil)
	if st2.PID == st.PID || st2.Restarts != 1 {
		t.Errorf("after Recover: pid %d restarts %d, want a new QEMU and 1 restart", st2.PID, st2.Restarts)
	}
	for _, p := range []string{".create-x-123", "half-done"} {
		if exists(filepath.Join(root, p)) {
			t.Errorf("Recover left %s", p)
		}
	}
}

func testBootDeadline(t *testing.T) {
	// A guest that boots but never answers, and a disk with nothing
	// bootable on it.
	silent := testImage(t, imageOpts{version: "1.0.0", cmdline: "test.nohttp"})
	noboot := testImage(t, imageOpts{version: "1.0.0", noKernel: true})
	d, _ := recovered(t, t.TempDir(), func(o *Options) { o.BootDeadline = 3 * time.Second })
	var pids []int
	for i, img := range []string{silent, noboot} {
		spec := testSpec(fmt.Sprintf("deadline-%d", i), img)
		st, err := d.Create(t.Context(), spec)
		if err != nil {
			t.Fatalf("Create %s: %v", spec.ID, err)
		}
		pids = append(pids, st.PID)
	}
	for i, pid := range pids {
		id := fmt.Sprintf("deadline-%d", i)
		st := waitFor(t, d, id, "stopped", func(s driver.Status) bool { return s.Power == driver.PowerStopped })
		if !strings.Contains(st.Message, "boot deadline exceeded") || st.PID != 0 {
			t.Errorf("%s: %+v, want stopped by the boot deadline", id, st)
		}
		t.Logf("%s: %s", id, st.Message)
		waitGone(t, pid)
	}
	time.Sleep(500 * time.Millisecond)
	for i := range pids {
		if st, _ := d.Inspect(t.Context(), fmt.Sprintf("deadline-%d", i)); st.Power != driver.PowerStopped || st.Restarts != 0 {
			t.Errorf("after the deadline: %+v, want it to stay stopped", st)
		}
	}
}

func testGuestPowerOff(t *testing.T) {
	img := testImage(t, imageOpts{version: "1.0.0"})
	d, _ := recovered(t, t.TempDir())
	spec := testSpec("poweroff-1", img)
	if _, err := d.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	st0 := waitRunning(t, d, spec.ID, nil)
	// Restart: a new QEMU (after an ACPI shutdown), not counted as a crash.
	if _, err := d.Restart(t.Context(), spec.ID); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	st := waitRunning(t, d, spec.ID, func(s driver.Status) bool { return s.PID != st0.PID })
	waitGone(t, st0.PID)
	if st.Restarts != 0 {
		t.Errorf("Restart counted as a crash restart: %d", st.Restarts)
	}
	// The guest powers itself off: stopped, not restarted.
	guestGet(t, st, "/cgi-bin/poweroff")
	off := waitFor(t, d, spec.ID, "stopped", func(s driver.Status) bool { return s.Power == driver.PowerStopped })
	if off.Message != "the guest powered itself off" || off.Restarts != 0 {
		t.Errorf("after a guest power-off: %+v", off)
	}
	waitGone(t, st.PID)
}

func testBootAdmission(t *testing.T) {
	img := testImage(t, imageOpts{version: "1.0.0"})
	d, _ := recovered(t, t.TempDir(), func(o *Options) { o.MaxConcurrentBoots = 1 })
	ids := []string{"slot-a", "slot-b"}
	// Watch that at most one QEMU boots at a time.
	stop := make(chan struct{})
	watched := make(chan error, 1)
	go func() {
		waited := false
		var bad error
		for {
			select {
			case <-stop:
				if !waited {
					bad = errors.Join(bad, errors.New("no instance waited for a boot slot"))
				}
				watched <- bad
				return
			case <-time.After(20 * time.Millisecond):
			}
			booting := 0
			for _, id := range ids {
				st, err := d.Inspect(context.Background(), id)
				if err != nil {
					continue
				}
				if st.Power == driver.PowerStarting && st.PID != 0 {
					booting++
				}
				if strings.Contains(st.Message, "waiting for a boot slot") {
					waited = true
				}
			}
			if booting > 1 && bad == nil {
				bad = errors.New("two VMs booting at once")
			}
		}
	}()
	errs := make(chan error, len(ids))
	for _, id := range ids {
		go func() {
			_, err := d.Create(t.Context(), testSpec(id, img))
			errs <- err
		}()
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Fatalf("Create: %v", err)
		}
	}
	for _, id := range ids {
		waitRunning(t, d, id, nil)
	}
	close(stop)
	if err := <-watched; err != nil {
		t.Error(err)
	}
}

func testMemoryAdmission(t *testing.T) {
	// Nothing bootable: the VMs sit in the firmware, cheaply.
	img := testImage(t, imageOpts{version: "1.0.0", noKernel: true})
	d, _ := recovered(t, t.TempDir(), func(o *Options) {
		o.HostMemoryMB, o.MemoryOvercommit, o.VMOverheadMB = 150, 2, -1 // 300 MB allowed
	})
	ctx := t.Context()
	small, big := testSpec("mem-small", img), testSpec("mem-big", img)
	big.Size = "Standard_D1_v2" // 256 MB

	if _, err := d.Create(ctx, small); err != nil {
		t.Fatalf("Create small: %v", err)
	}
	_, err := d.Create(ctx, big)
	var me *InsufficientMemoryError
	if !errors.Is(err, ErrInsufficientMemory) || !errors.As(err, &me) ||
		me.RequestedMB != 256 || me.UsedMB != 128 || me.AllowedMB != 300 {
		t.Fatalf("Create beyond the allowance: %v, want requested 256, used 128, allowed 300", err)
	}
	t.Logf("refused: %v", err)
	if _, err := d.Inspect(ctx, big.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("a refused Create left an instance: %v", err)
	}
	// A stopped VM holds no memory.
	if _, err := d.Stop(ctx, small.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Create(ctx, big); err != nil {
		t.Fatalf("Create after stopping the other VM: %v", err)
	}
	if _, err := d.Start(ctx, small.ID); !errors.Is(err, ErrInsufficientMemory) {
		t.Errorf("Start beyond the allowance: %v", err)
	}
	if st, _ := d.Inspect(ctx, small.ID); st.Power != driver.PowerStopped {
		t.Errorf("refused Start changed the power to %q", st.Power)
	}
	if _, err := d.Deallocate(ctx, big.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Start(ctx, small.ID); err != nil {
		t.Errorf("Start after deallocating the other VM: %v", err)
	}

	// Sizes.
	bad := testSpec("mem-bad", img)
	bad.Size = "Standard_Nope"
	if _, err := d.Create(ctx, bad); !errors.Is(err, ErrUnknownSize) {
		t.Errorf("unknown size: %v", err)
	}
	bad.Size, bad.MemoryMB = "custom", 64
	minImg := testImage(t, imageOpts{version: "1.0.0", noKernel: true})
	bad.ImageDir = minImg
	if _, err := d.Create(ctx, bad); !errors.Is(err, ErrSizeTooSmall) {
		t.Errorf("size below the image's minimum: %v", err)
	}
}

// checkConfined checks what confines the running VM id (QEMU pid): QEMU
// runs under seccomp, as its own user when the test runs as root, reads
// its image through links in its own directory, and its guest cannot
// reach the host through QEMU's user networking, while the host still
// reaches the guest through the loopback forwards.
func checkConfined(t *testing.T, d *Driver, id string, pid int) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for line := range strings.SplitSeq(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	if fields["Seccomp"] != "2" {
		t.Errorf("QEMU Seccomp = %q, want 2 (filter)", fields["Seccomp"])
	}
	if fields["NoNewPrivs"] != "1" {
		t.Errorf("QEMU NoNewPrivs = %q, want 1", fields["NoNewPrivs"])
	}
	if os.Geteuid() == 0 {
		uid := strings.Fields(fields["Uid"])
		if len(uid) != 4 || uid[0] == "0" || uid[1] == "0" || uid[2] == "0" {
			t.Errorf("QEMU runs as uid %q, want its own unprivileged user", fields["Uid"])
		}
		if fields["CapEff"] != "0000000000000000" {
			t.Errorf("QEMU CapEff = %s, want none", fields["CapEff"])
		}
	}
	dir := filepath.Join(d.opts.Root, id)
	for _, f := range []string{kernelLink, initrdLink, baseLink} {
		if fi, err := os.Lstat(filepath.Join(dir, diskDir, f)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("image file %s in the instance: %v, %v", f, fi, err)
		}
	}

	// A host service on loopback, which an unrestricted guest reaches as
	// 10.0.2.2.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "host-secret")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	st, err := d.Inspect(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	got := guestGet(t, st, fmt.Sprintf("/cgi-bin/reach?%d", port))
	if !strings.HasPrefix(got, "unreachable") {
		t.Errorf("the guest fetched http://10.0.2.2:%d/ from the host: %q", port, got)
	}
	t.Logf("guest -> host: %s", strings.TrimSpace(got))
}
