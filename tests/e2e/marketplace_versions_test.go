package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/marketplace"
	"github.com/vmssd/vmssd/internal/testenv"
)

// TestMarketplaceVersionsUnderRunningSets: images arrive by download from
// an upstream vmssd, under running scale sets:
//   - V2b/V3: version 1.1.0 is re-published upstream with other bytes; the
//     operator deletes the local 1.1.0 (a download of the same number with
//     other bytes is refused until then); in between, the set pinned to
//     1.1.0 cannot scale out (ImageNotFound naming the version), its running
//     instance untouched; after the download it scales out again, no restart;
//   - V2a: a newer version (3.0.0) is downloaded and 1.1.0 deleted: the
//     "latest" set scales out onto 3.0.0, its old instance keeps 1.1.0;
//   - the download triggers the automatic OS upgrade of the set that has it.
func TestMarketplaceVersionsUnderRunningSets(t *testing.T) {
	up := testenv.Start(t, testenv.Options{ServeMarketplace: true, MarketplaceKey: mpKey, HealthGrace: time.Second})
	if r := up.Do(http.MethodDelete, adminImagePath(up, "vmssd", "demo", "guest", "1.1.0"), nil); r.Status != http.StatusOK {
		t.Fatalf("upstream delete: %d %s", r.Status, r.Body)
	}
	publish(t, up, "vmssd", "demo", "guest", "1.1.0", uploadBytes(t, up, paddedDemo(t, "1.1.0", 4096)))
	publish(t, up, "vmssd", "demo", "guest", "3.0.0", uploadBytes(t, up, paddedDemo(t, "3.0.0", 0)))

	down := testenv.Start(t, testenv.Options{HealthGrace: time.Second})
	if r := register(t, down, up.Server.URL+marketplace.CatalogPrefix, mpKey, up.Server.CAPEM); r.Status != http.StatusOK {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	down.CreateRG("rg")
	waitOp(t, down, down.Do(http.MethodPut, down.VMSSPath("rg", "pin"), testenv.VMSSBody(1, "1.1.0", "Manual")))
	waitOp(t, down, down.Do(http.MethodPut, down.VMSSPath("rg", "latest"), testenv.VMSSBody(1, "latest", "Manual")))
	auto := rollingBody(2, "latest", nil)
	auto["properties"].(map[string]any)["upgradePolicy"].(map[string]any)["automaticOSUpgradePolicy"] = map[string]any{"enableAutomaticOSUpgrade": true}
	waitOp(t, down, down.Do(http.MethodPut, down.VMSSPath("rg", "auto"), auto))
	pinBefore := waitHealthy(t, down, "rg", "pin", 1, 60*time.Second)
	latestBefore := versions(t, waitHealthy(t, down, "rg", "latest", 1, 60*time.Second))
	waitHealthy(t, down, "rg", "auto", 2, 60*time.Second)

	// V2b: same number, other bytes: refused while the old one exists.
	if m, _ := download(t, down, "vmssd:demo:guest:1.1.0"); m["status"] != marketplace.JobFailed || errCode(m) != "Conflict" || !strings.Contains(m["error"].(map[string]any)["message"].(string), "delete it first") {
		t.Fatalf("re-published version over the old one: %v", m)
	}
	if r := down.Do(http.MethodDelete, adminImagePath(down, "vmssd", "demo", "guest", "1.1.0"), nil); r.Status != http.StatusOK {
		t.Fatalf("delete 1.1.0: %d %s", r.Status, r.Body)
	}
	r := scale(t, down, "rg", "pin", 2)
	if r.Status != http.StatusNotFound || r.ErrorCode() != "ImageNotFound" || !strings.Contains(string(r.Body), "vmssd:demo:guest:1.1.0") {
		t.Fatalf("pinned scale-out between delete and download: %d %s", r.Status, r.Body)
	}
	if after := waitHealthy(t, down, "rg", "pin", 1, 10*time.Second); after[0].Properties.VMID != pinBefore[0].Properties.VMID {
		t.Fatal("the pinned set's instance was replaced")
	}
	if m, _ := download(t, down, "vmssd:demo:guest:1.1.0"); m["status"] != marketplace.JobSucceeded {
		t.Fatalf("re-download: %v", m)
	}
	waitOp(t, down, scale(t, down, "rg", "pin", 2))
	for id, v := range versions(t, waitHealthy(t, down, "rg", "pin", 2, 60*time.Second)) {
		if v != "1.1.0" {
			t.Errorf("pinned instance %s on %s", id, v)
		}
	}

	// V2a: newer version downloaded, the old one deleted; the automatic
	// OS upgrade starts by itself.
	if m, _ := download(t, down, "vmssd:demo:guest:3.0.0"); m["status"] != marketplace.JobSucceeded {
		t.Fatalf("download 3.0.0: %v", m)
	}
	if r := down.Do(http.MethodDelete, adminImagePath(down, "vmssd", "demo", "guest", "1.1.0"), nil); r.Status != http.StatusOK {
		t.Fatalf("delete 1.1.0: %d %s", r.Status, r.Body)
	}
	waitOp(t, down, scale(t, down, "rg", "latest", 2))
	after := versions(t, waitHealthy(t, down, "rg", "latest", 2, 60*time.Second))
	for id, v := range after {
		if old, ok := latestBefore[id]; ok && v != old || !ok && v != "3.0.0" {
			t.Errorf("latest set: instance %s on %s (before: %v)", id, v, latestBefore)
		}
	}
	st := waitRolling(t, down, down.VMSSPath("rg", "auto"), "Completed", 90*time.Second)
	if st.Properties.Vmssd.StartedBy != "Platform" || st.Properties.Vmssd.Kind != "AutomaticOS" {
		t.Errorf("automatic upgrade: %+v", st.Properties.Vmssd)
	}
	if c := countVersions(waitHealthy(t, down, "rg", "auto", 2, 30*time.Second)); c["3.0.0"] != 2 {
		t.Errorf("auto set versions: %v", c)
	}
}
