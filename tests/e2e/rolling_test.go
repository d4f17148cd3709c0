package e2e

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestRollingUpgradeOverFiveDomains: a model change on a Rolling set of 10
// instances over 5 update domains rolls out by itself in batches of 2 (20%),
// walking the domains in order, never with more than 2 instances down, and
// every instance ends on the new version.
func TestRollingUpgradeOverFiveDomains(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "web")
	waitOp(t, e, e.Do(http.MethodPut, path, rollingBody(10, "1.0.0", map[string]any{"maxBatchInstancePercent": 20})))
	waitHealthy(t, e, "rg", "web", 10, 60*time.Second)
	if _, st := latestRolling(t, e, path); st != http.StatusNotFound {
		t.Errorf("rollingUpgrades/latest before any upgrade: %d, want 404", st)
	}

	s := startSampler(t, e, "rg", "web", 2)
	setVersion(t, e, path, "1.1.0")
	st := waitRolling(t, e, path, "Completed", 90*time.Second)
	s.Stop(t)
	if p := st.Properties.Progress; p.Successful != 10 || p.Failed != 0 || p.Pending != 0 || p.InProgress != 0 {
		t.Errorf("progress %+v, want 10 successful", p)
	}
	if st.Properties.Vmssd.Batches != 5 || st.Properties.Vmssd.Kind != "Model" || st.Properties.Vmssd.StartedBy != "User" {
		t.Errorf("rollout detail %+v, want 5 batches of a model change started by the user", st.Properties.Vmssd)
	}
	vms := waitHealthy(t, e, "rg", "web", 10, 30*time.Second)
	for id, v := range versions(t, vms) {
		if v != "1.1.0" {
			t.Errorf("instance %s runs %s after the rollout", id, v)
		}
	}
	for _, v := range vms {
		if !v.Properties.LatestModelApplied {
			t.Errorf("instance %s: latestModelApplied false after the rollout", v.InstanceID)
		}
	}
	if order := s.upgradeOrder(); !slices.IsSorted(order) {
		t.Errorf("update domains in upgrade order %v: not walked in order", order)
	}
}
