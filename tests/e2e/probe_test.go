package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestUnhealthyViewShowsProbeError: an instance upgraded from a healthy
// image to one whose health probe fails shows, in its instance view, the
// probe's error, not the image version an earlier answer reported.
func TestUnhealthyViewShowsProbeError(t *testing.T) {
	e := testenv.Start(t, testenv.Options{HealthGrace: time.Second})
	e.CreateRG("rg")
	publish(t, e, "vmssd", "demo", "guest", "2.0.0", uploadDemo(t, e, "2.0.0", false))
	path := e.VMSSPath("rg", "web")
	waitOp(t, e, e.Do(http.MethodPut, path, testenv.VMSSBody(1, "1.0.0", "Manual")))
	vms := waitHealthy(t, e, "rg", "web", 1, 30*time.Second)
	if hs := vms[0].Properties.InstanceView.VMHealth.Status; hs.Message != "imageVersion=1.0.0" {
		t.Errorf("healthy instance's health status: %+v", hs)
	}

	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"imageReference": map[string]any{"version": "2.0.0"}}}}}))
	mustAccepted(t, e.Do(http.MethodPost, path+"/manualupgrade", map[string]any{"instanceIds": []string{"*"}}))
	var hs status
	testenv.Eventually(t, 30*time.Second, "the upgraded instance unhealthy", func() bool {
		vms = listVMs(t, e, "rg", "web")
		if len(vms) != 1 || vms[0].Properties.StorageProfile.ImageReference.ExactVersion != "2.0.0" {
			return false
		}
		hs = vms[0].Properties.InstanceView.VMHealth.Status
		return hs.Code == "HealthState/unhealthy"
	})
	if !strings.Contains(hs.Message, `health probe answered 503 Service Unavailable (status "Unhealthy")`) || strings.Contains(hs.Message, "imageVersion") {
		t.Errorf("unhealthy instance's health status message %q, want the probe's error", hs.Message)
	}
	// The single-instance view says the same.
	r := e.Do(http.MethodGet, path+"/virtualMachines/"+vms[0].InstanceID+"/instanceView", nil)
	var iv struct {
		VMHealth struct {
			Status status `json:"status"`
		} `json:"vmHealth"`
	}
	if err := r.JSON(&iv); r.Status != http.StatusOK || err != nil || iv.VMHealth.Status.Message != hs.Message {
		t.Errorf("instance view: %d %v %+v", r.Status, err, iv.VMHealth.Status)
	}
}
