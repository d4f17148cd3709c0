package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestBootDiagnosticsAndSizes: the console of an instance is readable
// through retrieveBootDiagnosticsData, and VM sizes come from the
// operator's size table.
func TestBootDiagnosticsAndSizes(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "diag")
	waitOp(t, e, e.Do(http.MethodPut, path, testenv.VMSSBody(1, "1.0.0", "Manual")))
	waitHealthy(t, e, "rg", "diag", 1, 30*time.Second)

	r := e.Do(http.MethodPost, path+"/virtualMachines/0/retrieveBootDiagnosticsData", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("retrieveBootDiagnosticsData: %d %s", r.Status, r.Body)
	}
	u, _ := r.Map()["serialConsoleLogBlobUri"].(string)
	if u == "" {
		t.Fatalf("no serial console URI: %s", r.Body)
	}
	testenv.Eventually(t, 10*time.Second, "the guest's boot line in its console", func() bool {
		c := e.Do(http.MethodGet, u, nil)
		return c.Status == http.StatusOK && strings.Contains(string(c.Body), "GUEST-READY version=1.0.0")
	})
	if c := e.DoAs("", http.MethodGet, u, nil); c.Status != http.StatusUnauthorized {
		t.Errorf("console without a token: %d", c.Status)
	}

	sizes := e.Do(http.MethodGet, "/subscriptions/"+e.Sub+"/providers/Microsoft.Compute/locations/local/vmSizes", nil)
	if sizes.Status != http.StatusOK || !strings.Contains(string(sizes.Body), `"Standard_A1"`) {
		t.Fatalf("vmSizes: %d %s", sizes.Status, sizes.Body)
	}
	// The operator adds a size; tenants can use it; an unknown size is refused.
	r = e.Do(http.MethodPut, "/providers/vmssd.Admin/vmSizes/Custom_Tiny?api-version=2015-12-01-preview", map[string]any{"numberOfCores": 1, "memoryInMB": 96})
	if r.Status != http.StatusCreated {
		t.Fatalf("add size: %d %s", r.Status, r.Body)
	}
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"sku": map[string]any{"name": "Custom_Tiny"}}))
	r = e.Do(http.MethodPatch, path, map[string]any{"sku": map[string]any{"name": "Standard_Huge"}})
	if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidParameter" {
		t.Fatalf("unknown size: %d %s", r.Status, r.Body)
	}
}
