package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestCrashDuringDeployment SIGKILLs vmssd at several points of a template
// deployment (before it starts, while the storage account or the scale set
// is applied, while instances are created) and restarts it on the same data
// dir: the deployment is resumed by its owner and ends Succeeded, never
// staying Running, with exactly the template's instances, each with one
// guest process.
func TestCrashDuringDeployment(t *testing.T) {
	for _, delay := range []time.Duration{0, 30 * time.Millisecond, 200 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			h, e := startCrashHost(t)
			r := e.Do(http.MethodPut, depPath(e, "rg", "d"), depBody(readTemplate(t, "vmss-no-network.json"), demoParams("web", 6, nil)))
			if r.Status != http.StatusCreated {
				t.Fatalf("deploy: %d %s", r.Status, r.Body)
			}
			time.Sleep(delay)
			e, _ = h.crash()
			st, res := waitDeployment(t, e, r, 2*time.Minute)
			if st != "Succeeded" {
				t.Fatalf("deployment after the crash ended %s: %v", st, res)
			}
			d := e.Do(http.MethodGet, depPath(e, "rg", "d"), nil).Map()
			id, _ := props(d)["outputs"].(map[string]any)["vmssId"].(map[string]any)["value"].(string)
			name := id[strings.LastIndex(id, "/")+1:]
			vms := waitHealthy(t, e, "rg", name, 6, 90*time.Second)
			if len(vms) != 6 {
				t.Fatalf("%d instances, want 6", len(vms))
			}
			testenv.Eventually(t, 15*time.Second, "one guest process per instance", func() bool {
				total := 0
				for _, c := range guestProcesses(t, h.dataDir) {
					total += c
				}
				return total == 6
			})
			for _, op := range depOperations(t, e, "rg", "d") {
				if s := props(op)["provisioningState"]; s != "Succeeded" {
					t.Errorf("operation %v: %v", props(op)["targetResource"], s)
				}
			}
		})
	}
}
