package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestCrashWithLoadBalancerServing SIGKILLs vmssd while its load balancer
// serves traffic and a scale-out is in flight, at several points, and
// restarts it on the same data dir: the frontend serves every instance
// again, each instance has its own private address (none allocated twice)
// and the scale-out completes.
func TestCrashWithLoadBalancerServing(t *testing.T) {
	for _, delay := range []time.Duration{0, 300 * time.Millisecond, 1500 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			h, e := startCrashHost(t)
			s := createLB(t, e, "rg")
			path := e.VMSSPath("rg", "web")
			waitOp(t, e, e.Do(http.MethodPut, path, s.setBody(3, "1.0.0", "Manual")))
			waitHealthy(t, e, "rg", "web", 3, time.Minute)
			testenv.Eventually(t, 30*time.Second, "3 instances answering through the frontend", func() bool {
				return len(answering(t, s.frontend(), 30)) == 3
			})

			l := startLoad(s.frontend(), 50, time.Minute)
			r := e.Do(http.MethodPatch, path, map[string]any{"sku": map[string]any{"capacity": 6}})
			if r.Status != http.StatusOK && r.Status != http.StatusAccepted {
				t.Fatalf("scale-out: %d %s", r.Status, r.Body)
			}
			time.Sleep(delay)
			e, killed := h.crash()
			waitOp(t, e, r)
			vms := waitHealthy(t, e, "rg", "web", 6, 2*time.Minute)
			testenv.Eventually(t, 30*time.Second, "6 instances answering through the frontend after the restart", func() bool {
				return len(answering(t, s.frontend(), 60)) == 6
			})
			t.Logf("frontend serving all 6 instances %s after the SIGKILL", time.Since(killed).Round(time.Millisecond))
			l.stop(t, "lb across a crash") // failures are expected while no vmssd runs
			seen := map[string]string{}
			for _, v := range vms {
				a := nicAddress(t, e, path, v.InstanceID)
				if a == "" {
					t.Errorf("instance %s has no private address", v.InstanceID)
				}
				if other, dup := seen[a]; dup {
					t.Errorf("address %s allocated to instances %s and %s", a, other, v.InstanceID)
				}
				seen[a] = v.InstanceID
			}
		})
	}
}
