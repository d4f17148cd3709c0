package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestCrashDuringRollingUpgrade kills vmssd with SIGKILL in the middle of a
// rolling upgrade (good image, bad image, bad image with rollback, and
// right after a cancel) and restarts it on the same data dir: the rollout
// resumes from the batch it was in and ends where it would have without
// the crash; no instance is counted (or batched) twice and
// rollingUpgrades/latest tells the truth.
func TestCrashDuringRollingUpgrade(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bad      bool
		policy   map[string]any
		delay    time.Duration
		cancel   bool
		code     string
		versions map[string]int
	}{
		{name: "good", policy: map[string]any{"maxBatchInstancePercent": 20}, delay: 1500 * time.Millisecond,
			code: "Completed", versions: map[string]int{"1.1.0": 10}},
		{name: "bad", bad: true, policy: map[string]any{"maxBatchInstancePercent": 20}, delay: 500 * time.Millisecond,
			code: "Faulted", versions: map[string]int{"1.0.0": 8, "2.0.0": 2}},
		{name: "rollback", bad: true, policy: map[string]any{"maxBatchInstancePercent": 20, "rollbackFailedInstancesOnPolicyBreach": true}, delay: 500 * time.Millisecond,
			code: "Faulted", versions: map[string]int{"1.0.0": 10}},
		{name: "cancel", policy: map[string]any{"maxBatchInstancePercent": 20, "pauseTimeBetweenBatches": "PT5S"}, cancel: true,
			code: "Cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "1.1.0"
			var done int
			e, _ := crashDuring(t, tc.delay, func(e *testenv.Env) *testenv.Response {
				if tc.bad {
					target = "2.0.0"
					badImage(t, e, target)
				}
				path := e.VMSSPath("rg", "ss")
				waitOp(t, e, e.Do(http.MethodPut, path, rollingBody(10, "1.0.0", tc.policy)))
				waitHealthy(t, e, "rg", "ss", 10, 60*time.Second)
				r := e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
					"storageProfile": map[string]any{"imageReference": map[string]any{"version": target}}}}})
				if !tc.cancel {
					return r
				}
				testenv.Eventually(t, 30*time.Second, "the first batch done", func() bool {
					st, _ := latestRolling(t, e, path)
					done = st.Properties.Progress.Successful
					return done >= 2
				})
				c := e.Do(http.MethodPost, path+"/rollingUpgrades/cancel", nil)
				mustAccepted(t, c)
				return c // killed right after the cancel was accepted
			})
			path := e.VMSSPath("rg", "ss")
			st := waitRolling(t, e, path, tc.code, 90*time.Second)
			p := st.Properties.Progress
			if p.InProgress != 0 || p.Pending != 0 {
				t.Errorf("progress after the end: %+v", p)
			}
			switch tc.name {
			case "good":
				if p.Successful != 10 || p.Failed != 0 || st.Properties.Vmssd.Batches != 5 {
					t.Errorf("progress %+v in %d batches, want 10 in 5", p, st.Properties.Vmssd.Batches)
				}
			case "bad", "rollback":
				if p.Failed != 2 || st.Properties.Vmssd.Batches != 1 || st.Properties.Error == nil || st.Properties.Error.Code != "MaxUnhealthyUpgradedInstancePercentExceededInRollingUpgrade" {
					t.Errorf("progress %+v in %d batches, error %+v", p, st.Properties.Vmssd.Batches, st.Properties.Error)
				}
				if tc.name == "rollback" {
					testenv.Eventually(t, 60*time.Second, "rolled back", func() bool {
						st, _ = latestRolling(t, e, path)
						return len(st.Properties.Vmssd.RolledBack) == 2
					})
				}
			case "cancel":
				time.Sleep(6 * time.Second) // past the pause: nothing more starts
				tc.versions = map[string]int{"1.1.0": done, "1.0.0": 10 - done}
				if st.Properties.RunningStatus.LastAction != "Cancel" {
					t.Errorf("lastAction %q", st.Properties.RunningStatus.LastAction)
				}
			}
			var vms []vm
			testenv.Eventually(t, 60*time.Second, "final versions", func() bool {
				vms = listVMs(t, e, "rg", "ss")
				c := countVersions(vms)
				for v, n := range tc.versions {
					if c[v] != n {
						return false
					}
				}
				return len(vms) == 10
			})
			if tc.name != "bad" {
				waitHealthy(t, e, "rg", "ss", 10, 60*time.Second)
			}
		})
	}
}
