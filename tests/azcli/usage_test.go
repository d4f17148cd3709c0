package azcli

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestAzVMListUsage: az vm list-usage reads the subscription's quotas and
// usage (GET .../locations/{l}/usages) as it does from Azure.
func TestAzVMListUsage(t *testing.T) {
	e, _, a := startWithAZ(t)
	if r := e.Do(http.MethodPut, "/providers/vmssd.Admin/quotas/"+e.Sub+"?api-version=2015-12-01-preview", map[string]any{"vcpus": 12}); r.Status != http.StatusOK {
		t.Fatalf("set quota: %d %s", r.Status, r.Body)
	}
	e.CreateRG("rg1")
	r := e.Do(http.MethodPut, e.VMSSPath("rg1", "web"), testenv.VMSSBody(2, "latest", "Manual"))
	if st, _ := e.Wait(r, 90*time.Second); st != "Succeeded" {
		t.Fatalf("create: %s", st)
	}
	t.Cleanup(func() { e.Wait(e.Do(http.MethodDelete, e.VMSSPath("rg1", "web"), nil), 90*time.Second) })

	var usages []struct {
		CurrentValue string `json:"currentValue"`
		Limit        string `json:"limit"`
		LocalName    string `json:"localName"`
		Name         struct {
			Value          string `json:"value"`
			LocalizedValue string `json:"localizedValue"`
		} `json:"name"`
	}
	a.json(&usages, "vm", "list-usage", "-l", "local")
	got := map[string]string{}
	for _, u := range usages {
		got[u.Name.Value] = u.CurrentValue + "/" + u.Limit
	}
	if got["cores"] != "2/12" || got["virtualMachines"] != "2/100" || got["virtualMachineScaleSets"] != "1/50" {
		t.Errorf("az vm list-usage: %v", got)
	}
	if out := a.run("vm", "list-usage", "-l", "local", "-o", "table"); !strings.Contains(out, "Total Regional vCPUs") {
		t.Errorf("az vm list-usage -o table:\n%s", out)
	}
}
