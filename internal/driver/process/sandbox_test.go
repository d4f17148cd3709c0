package process

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/drivertest"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmssd/vmssd/internal/driver/sandbox"
)

// requireSandbox skips the test on a host that cannot run containers (no
// runc, not root), unless VMSSD_E2E=1 (then it fails).
func requireSandbox(t testing.TB) {
	t.Helper()
	if _, err := sandbox.Check(""); err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: %v", err)
		}
		t.Skip(err)
	}
}

// inSandbox makes a test driver run its guests in runc containers, with its
// own run directory and cgroups, removed at the end of the test.
func inSandbox(o *Options) {
	o.Isolation = IsolationRunc
	o.RunDir = filepath.Join("/run/vmssd-test", filepath.Base(filepath.Dir(o.Root))+"-"+filepath.Base(o.Root))
}

// cleanupSandbox removes what sandboxed drivers on root leave once their
// instances are deleted (registered before the driver, it runs after the
// driver's own cleanups).
func cleanupSandbox(t testing.TB, root string) {
	t.Cleanup(func() {
		o := Options{Root: root}
		inSandbox(&o)
		if err := RemoveContainers(context.Background(), root, o.RunDir); err != nil {
			t.Errorf("remove containers: %v", err)
		}
	})
}

// TestRepairVanishedDirectory (issue 6): an instance whose directory is
// removed while vmssd runs is rebuilt from its image and runs again,
// without a restart of vmssd, plain or sandboxed, running or crashed.
func TestRepairVanishedDirectory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sandbox bool
		crash   bool
	}{
		{"plain-running", false, false},
		{"plain-crashed", false, true},
		{"sandboxed-running", true, false},
		{"sandboxed-crashed", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			mods := []func(*Options){func(o *Options) { o.ConsoleCheckInterval = 100 * time.Millisecond }}
			if tc.sandbox {
				requireSandbox(t)
				cleanupSandbox(t, root)
				mods = append(mods, inSandbox)
			}
			d := newTestDriver(t, root, mods...)
			spec := testSpec("v1", drivertest.ProcessImage(t, "1.0.0"))
			if _, err := d.Create(t.Context(), spec); err != nil {
				t.Fatal(err)
			}
			cleanupDelete(t, d, spec.ID)
			st := waitHealthy(t, d, spec.ID, nil)
			put(t, guestURL(st, "/files/marker"), "old")
			if err := os.RemoveAll(filepath.Join(root, spec.ID)); err != nil {
				t.Fatal(err)
			}
			if tc.crash {
				syscall.Kill(st.PID, syscall.SIGKILL)
			}
			st2 := waitHealthy(t, d, spec.ID, func(s driver.Status) bool { return s.PID != st.PID })
			if !exists(filepath.Join(root, spec.ID, specFile)) {
				t.Error("the instance directory was not rebuilt")
			}
			if code, _ := get(guestURL(st2, "/files/marker")); code != http.StatusNotFound {
				t.Errorf("the rebuilt disk has the old marker (%d)", code)
			}
		})
	}
}

// TestUnsandboxedPolicy: where the host cannot sandbox, nothing runs
// unless the operator allows plain processes, and then only operator
// images do; tenant images are refused with driver.ErrSandboxUnavailable.
func TestUnsandboxedPolicy(t *testing.T) {
	img := drivertest.ProcessImage(t, "1.0.0")
	noRunc := func(allow bool) func(*Options) {
		return func(o *Options) {
			o.Isolation, o.Runc, o.AllowUnsandboxed = IsolationRunc, "/nonexistent/runc", allow
		}
	}
	for _, tc := range []struct {
		name     string
		mod      func(*Options)
		operator bool
		wantErr  bool
	}{
		{"no-runc-operator-image", noRunc(false), true, true},
		{"no-runc-tenant-image", noRunc(false), false, true},
		{"allowed-operator-image", noRunc(true), true, false},
		{"allowed-tenant-image", noRunc(true), false, true},
		{"none-tenant-image", func(o *Options) { o.Isolation = IsolationNone }, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newTestDriver(t, t.TempDir(), tc.mod)
			spec := testSpec("p1", img)
			spec.OperatorImage = tc.operator
			st, err := d.Create(t.Context(), spec)
			if tc.wantErr {
				if !errors.Is(err, driver.ErrSandboxUnavailable) {
					t.Fatalf("Create: %v, want ErrSandboxUnavailable", err)
				}
				if _, err := d.Inspect(t.Context(), spec.ID); !errors.Is(err, driver.ErrNotFound) {
					t.Errorf("a refused instance exists: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			cleanupDelete(t, d, spec.ID)
			if st.Isolation != string(IsolationNone) {
				t.Errorf("Isolation %q, want none", st.Isolation)
			}
			// A reimage onto a tenant image is refused too.
			spec.OperatorImage = false
			if _, err := d.Reimage(t.Context(), spec); !errors.Is(err, driver.ErrSandboxUnavailable) {
				t.Errorf("Reimage onto a tenant image: %v, want ErrSandboxUnavailable", err)
			}
		})
	}
}

// TestReimageAfterKilledRunc: a runc killed with vmssd while it wrote the
// pid file leaves runc's temporary ".init.pid" in the bundle; the reimage
// a restarted vmssd runs next (a rollback after a crash) must start the
// new container anyway, not fail with ".init.pid: file exists".
func TestReimageAfterKilledRunc(t *testing.T) {
	requireSandbox(t)
	root := t.TempDir()
	cleanupSandbox(t, root)
	d1 := newTestDriver(t, root, inSandbox)
	spec := testSpec("rb", drivertest.ProcessImage(t, "v1"))
	if _, err := d1.Create(t.Context(), spec); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, d1, spec.ID, nil)
	bundle := d1.sb.bundleDir(spec.ID)
	d1.Close() // the container outlives it, as it outlives a killed vmssd
	for _, f := range []string{".init.pid", "init.pid"} {
		if err := os.WriteFile(filepath.Join(bundle, f), []byte("4194304"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	d2 := newTestDriver(t, root, inSandbox)
	if _, err := d2.Recover(t.Context()); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	cleanupDelete(t, d2, spec.ID)
	waitHealthy(t, d2, spec.ID, nil)
	spec2 := testSpec("rb", drivertest.ProcessImage(t, "v2"))
	spec2.ImageDigest = "sha256:v2"
	if _, err := d2.Reimage(t.Context(), spec2); err != nil {
		t.Fatalf("Reimage over a killed runc's leftovers: %v", err)
	}
	st := waitHealthy(t, d2, spec.ID, func(st driver.Status) bool { return st.ImageDigest == "sha256:v2" })
	if code, body := get(st.HealthURL); code != http.StatusOK || body != "v2" {
		t.Errorf("health after reimage: %d %q, want v2", code, body)
	}
}
