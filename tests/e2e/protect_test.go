package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestProtectFromScaleIn: a protected instance survives scale-in; the
// scale-in policy picks the others.
func TestProtectFromScaleIn(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "p")
	body := testenv.VMSSBody(4, "1.0.0", "Manual")
	body["properties"].(map[string]any)["scaleInPolicy"] = map[string]any{"rules": []string{"NewestVM"}}
	waitOp(t, e, e.Do(http.MethodPut, path, body))
	waitHealthy(t, e, "rg", "p", 4, 30*time.Second)

	r := e.Do(http.MethodPut, path+"/virtualMachines/3", map[string]any{"properties": map[string]any{"protectionPolicy": map[string]any{"protectFromScaleIn": true}}})
	if r.Status != http.StatusOK {
		t.Fatalf("protect: %d %s", r.Status, r.Body)
	}
	waitOp(t, e, r)
	waitOp(t, e, scale(t, e, "rg", "p", 2))
	vms := waitHealthy(t, e, "rg", "p", 2, 30*time.Second)
	got := map[string]bool{}
	for _, v := range vms {
		got[v.InstanceID] = true
	}
	// NewestVM would take 3 and 2; 3 is protected, so 2 and 1 go.
	if !got["0"] || !got["3"] {
		t.Errorf("after scale-in to 2 with instance 3 protected and NewestVM: %v, want 0 and 3", got)
	}
}
