package vm

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
	"github.com/vmssd/vmssd/internal/vmimage"
)

// TestVMRollingUpgrade: a Rolling scale set of 2 QEMU VMs moves to a new
// guest image version one VM at a time (maxBatchInstancePercent 50): one
// VM always serves, and both end on the new version.
func TestVMRollingUpgrade(t *testing.T) {
	requireQEMU(t)
	a1 := vmimage.Build(t, "1.0.0", false)
	a2 := vmimage.Build(t, "2.0.0", false)
	e := testenv.Start(t, testenv.Options{HealthGrace: 3 * time.Minute})
	publish(t, e, a1, "1.0.0")
	publish(t, e, a2, "2.0.0")
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "vms")
	body := vmBody(2)
	body["properties"].(map[string]any)["upgradePolicy"] = map[string]any{"mode": "Rolling",
		"rollingUpgradePolicy": map[string]any{"maxBatchInstancePercent": 50}}
	waitOp(t, e, e.Do(http.MethodPut, path, body))
	waitHealthy(t, e, path, 2)

	// A sampler: at least one VM healthy throughout.
	var mu sync.Mutex
	minHealthy, samples, worst := 2, 0, ""
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			r := e.Do(http.MethodGet, path+"/virtualMachines?$expand=instanceView", nil)
			var page struct {
				Value []vm `json:"value"`
			}
			if r.Status != http.StatusOK || r.JSON(&page) != nil {
				continue
			}
			n := 0
			desc := ""
			for _, v := range page.Value {
				if v.status("PowerState/").Code == "PowerState/running" && v.Properties.InstanceView.VMHealth.Status.Code == "HealthState/healthy" {
					n++
				}
				desc += fmt.Sprintf("[%s %s %s %q] ", v.InstanceID, v.status("PowerState/").Code, v.Properties.InstanceView.VMHealth.Status.Code, v.Properties.InstanceView.VMHealth.Status.DisplayStatus)
			}
			mu.Lock()
			if n < minHealthy {
				worst = desc
			}
			minHealthy, samples = min(minHealthy, n), samples+1
			mu.Unlock()
		}
	}()

	start := time.Now()
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"imageReference": map[string]any{"version": "2.0.0"}}}}}))
	var latest struct {
		Properties struct {
			RunningStatus struct{ Code string } `json:"runningStatus"`
			Progress      struct {
				Successful int `json:"successfulInstanceCount"`
			} `json:"progress"`
			Vmssd struct{ Batches int } `json:"vmssd"`
		} `json:"properties"`
	}
	testenv.Eventually(t, 10*time.Minute, "the rolling upgrade done", func() bool {
		r := e.Do(http.MethodGet, path+"/rollingUpgrades/latest", nil)
		return r.Status == http.StatusOK && r.JSON(&latest) == nil && latest.Properties.RunningStatus.Code != "RollingForward"
	})
	close(stop)
	<-done
	t.Logf("rolling upgrade of 2 VMs: %v, %d samples, at least %d healthy", time.Since(start), samples, minHealthy)
	if p := latest.Properties; p.RunningStatus.Code != "Completed" || p.Progress.Successful != 2 || p.Vmssd.Batches != 2 {
		t.Fatalf("rollout: %+v", p)
	}
	if minHealthy < 1 {
		t.Errorf("both VMs were down at once: %s", worst)
	}
	for _, v := range waitHealthy(t, e, path, 2) {
		if got := version(t, v); got != "2.0.0" {
			t.Errorf("VM %s runs %q after the rollout, want 2.0.0", v.InstanceID, got)
		}
	}
}
