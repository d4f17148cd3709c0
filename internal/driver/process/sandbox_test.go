package process

import (
	"context"
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
