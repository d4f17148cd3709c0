package process

import (
	"context"
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
