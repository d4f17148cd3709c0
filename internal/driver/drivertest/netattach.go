package drivertest

import (
	"os"
	"testing"

	"github.com/vmssd/vmssd/internal/driver/netattach"
)

// RequireNetattach skips the test on a host that cannot attach instances
// to virtual networks (not root, no netlink), unless VMSSD_E2E=1 (then it
// fails).
func RequireNetattach(t testing.TB) {
	t.Helper()
	if err := netattach.Available(); err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: %v", err)
		}
		t.Skip(err)
	}
}
