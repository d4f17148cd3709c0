package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestFailedHostActionFailsItsOperation: when a host action cannot be done
// (here: the image artifact vanished from disk before a reimage), the
// operation ends Failed with the reason instead of staying InProgress, the
// instance is marked Failed, and the controller backs off rather than spin.
func TestFailedHostActionFailsItsOperation(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	uri := uploadDemo(t, e, "5.0.0", true)
	body := testenv.VMSSBody(1, "", "Manual")
	sp := body["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)["storageProfile"].(map[string]any)
	delete(sp, "imageReference")
	sp["osDisk"] = map[string]any{"createOption": "FromImage", "osType": "Linux", "image": map[string]any{"uri": uri}}
	path := e.VMSSPath("rg", "f")
	waitOp(t, e, e.Do(http.MethodPut, path, body))
	waitHealthy(t, e, "rg", "f", 1, 30*time.Second)

	hex := strings.TrimPrefix(uri, "artifact:sha256:")
	for _, p := range []string{
		filepath.Join(e.Config.DataDir, "artifacts", "blobs", "sha256", hex),
		filepath.Join(e.Config.DataDir, "artifacts", "images", "sha256", hex),
	} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	r := e.Do(http.MethodPost, path+"/reimage", nil)
	mustAccepted(t, r)
	st, m := e.Wait(r, 20*time.Second)
	errBody, _ := m["error"].(map[string]any)
	if st != "Failed" || errBody["code"] != "ImageNotFound" {
		t.Fatalf("reimage without its image: %s %v, want Failed with ImageNotFound", st, m)
	}
	vms := listVMs(t, e, "rg", "f")
	if len(vms) != 1 || vms[0].Properties.ProvisioningState != "Failed" {
		t.Fatalf("instance after the failed reimage: %+v", vms)
	}
	// The scale set's instance view counts it.
	iv := e.Do(http.MethodGet, path+"/instanceView", nil)
	if !strings.Contains(string(iv.Body), `"code":"ProvisioningState/failed","count":1`) {
		t.Errorf("scale set instance view after a failed action: %s", iv.Body)
	}
	// The failed reimage is not retried on its own: the instance stays
	// Failed (it is not flapping through Updating).
	time.Sleep(2 * time.Second)
	if vms := listVMs(t, e, "rg", "f"); vms[0].Properties.ProvisioningState != "Failed" {
		t.Errorf("instance %s after 2 s, want it to stay Failed", vms[0].Properties.ProvisioningState)
	}
}
