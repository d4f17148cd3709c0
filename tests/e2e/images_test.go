package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/testenv"
)

const adminAPI = "2015-12-01-preview"

// uploadDemo builds a demo artifact and uploads it through the admin API;
// it returns the artifact URI.
func uploadDemo(t *testing.T, e *testenv.Env, version string, healthy bool) string {
	t.Helper()
	var buf bytes.Buffer
	if err := artifact.BuildDemo(&buf, artifact.DemoOptions{Version: version, Healthy: healthy}); err != nil {
		t.Fatal(err)
	}
	r := e.Do(http.MethodPost, "/providers/vmssd.Admin/artifacts?api-version="+adminAPI, buf.Bytes())
	if r.Status != http.StatusCreated {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	uri, _ := r.Map()["uri"].(string)
	if !strings.HasPrefix(uri, "artifact:sha256:") {
		t.Fatalf("upload uri %q", uri)
	}
	return uri
}

func adminImagePath(e *testenv.Env, pub, offer, sku, ver string) string {
	return "/subscriptions/" + e.Sub + "/providers/Microsoft.Compute.Admin/locations/local/artifactTypes/platformImage/publishers/" +
		pub + "/offers/" + offer + "/skus/" + sku + "/versions/" + ver + "?api-version=" + adminAPI
}

func publish(t *testing.T, e *testenv.Env, pub, offer, sku, ver, uri string) {
	t.Helper()
	r := e.Do(http.MethodPut, adminImagePath(e, pub, offer, sku, ver), map[string]any{"properties": map[string]any{"osDisk": map[string]any{"osType": "Linux", "uri": uri}}})
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("publish %s: %d %s", ver, r.Status, r.Body)
	}
}

func scale(t *testing.T, e *testenv.Env, rg, name string, n int) *testenv.Response {
	t.Helper()
	return e.Do(http.MethodPatch, e.VMSSPath(rg, name), map[string]any{"sku": map[string]any{"capacity": n}})
}

// TestLatestFollowsNewDownloads: with version "latest", every scale-out
// uses the newest version available at that moment (V1).
func TestLatestFollowsNewDownloads(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "v1"), testenv.VMSSBody(2, "latest", "Manual")))
	vms := waitHealthy(t, e, "rg", "v1", 2, 30*time.Second)
	for id, v := range versions(t, vms) {
		if v != "1.1.0" {
			t.Errorf("instance %s: %s, want the newest 1.1.0", id, v)
		}
	}
	for _, v := range vms {
		if v.Properties.StorageProfile.ImageReference.ExactVersion != "1.1.0" || v.Properties.StorageProfile.ImageReference.Version != "latest" {
			t.Errorf("imageReference %+v", v.Properties.StorageProfile.ImageReference)
		}
	}
	// The operator downloads 1.2.0; the next scale-out uses it.
	publish(t, e, "vmssd", "demo", "guest", "1.2.0", uploadDemo(t, e, "1.2.0", true))
	waitOp(t, e, scale(t, e, "rg", "v1", 3))
	got := versions(t, waitHealthy(t, e, "rg", "v1", 3, 30*time.Second))
	if got["0"] != "1.1.0" || got["1"] != "1.1.0" || got["2"] != "1.2.0" {
		t.Errorf("after a new download: %v (old instances keep 1.1.0, the new one gets 1.2.0)", got)
	}
}

// TestPinnedVersionRemoved: when the pinned version is deleted, scale-out
// fails with ImageNotFound naming publisher:offer:sku:version, and running
// instances are untouched (V3).
func TestPinnedVersionRemoved(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "pin"), testenv.VMSSBody(2, "1.0.0", "Manual")))
	before := waitHealthy(t, e, "rg", "pin", 2, 30*time.Second)
	if r := e.Do(http.MethodDelete, adminImagePath(e, "vmssd", "demo", "guest", "1.0.0"), nil); r.Status != http.StatusOK {
		t.Fatalf("delete image: %d %s", r.Status, r.Body)
	}
	r := scale(t, e, "rg", "pin", 4)
	if r.Status != http.StatusNotFound || r.ErrorCode() != "ImageNotFound" || r.Header.Get("x-ms-error-code") != "ImageNotFound" {
		t.Fatalf("scale-out with a removed pinned version: %d %s", r.Status, r.Body)
	}
	var body struct {
		Error struct{ Message, Target string } `json:"error"`
	}
	_ = r.JSON(&body)
	if !strings.Contains(body.Error.Message, "vmssd:demo:guest:1.0.0") || body.Error.Target != "imageReference" {
		t.Errorf("error should name the image and target imageReference: %+v", body.Error)
	}
	after := waitHealthy(t, e, "rg", "pin", 2, 10*time.Second)
	for i := range after {
		if after[i].Properties.VMID != before[i].Properties.VMID {
			t.Errorf("instance %s was replaced", after[i].InstanceID)
		}
	}
	// Scale-in still works.
	waitOp(t, e, scale(t, e, "rg", "pin", 1))
	waitHealthy(t, e, "rg", "pin", 1, 10*time.Second)
}

// TestCustomImageURI: a custom image by osDisk.image.uri; changing the URI
// and upgrading moves instances to it (U1).
func TestCustomImageURI(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	u1, u2 := uploadDemo(t, e, "7.0.0", true), uploadDemo(t, e, "7.1.0", true)
	body := testenv.VMSSBody(2, "", "Manual")
	sp := body["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)["storageProfile"].(map[string]any)
	delete(sp, "imageReference")
	sp["osDisk"] = map[string]any{"createOption": "FromImage", "osType": "Linux", "image": map[string]any{"uri": u1}}
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "cust"), body))
	for id, v := range versions(t, waitHealthy(t, e, "rg", "cust", 2, 30*time.Second)) {
		if v != "7.0.0" {
			t.Errorf("instance %s: %s", id, v)
		}
	}
	waitOp(t, e, e.Do(http.MethodPatch, e.VMSSPath("rg", "cust"), map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"osDisk": map[string]any{"image": map[string]any{"uri": u2}}}}}}))
	waitOp(t, e, e.Do(http.MethodPost, e.VMSSPath("rg", "cust")+"/manualupgrade", map[string]any{"instanceIds": []string{"*"}}))
	for id, v := range versions(t, waitHealthy(t, e, "rg", "cust", 2, 30*time.Second)) {
		if v != "7.1.0" {
			t.Errorf("after the URI change instance %s: %s", id, v)
		}
	}
	// A URI that does not exist fails clearly.
	r := e.Do(http.MethodPatch, e.VMSSPath("rg", "cust"), map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"osDisk": map[string]any{"image": map[string]any{"uri": "/nonexistent/image.tar.gz"}}}}}})
	if r.Status != http.StatusNotFound || r.ErrorCode() != "ImageNotFound" {
		t.Errorf("missing custom image: %d %s", r.Status, r.Body)
	}
}

// TestAutomaticPolicy: with upgradePolicy Automatic every instance moves to
// the new model at once (U3).
func TestAutomaticPolicy(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "auto"), testenv.VMSSBody(3, "1.0.0", "Automatic")))
	waitHealthy(t, e, "rg", "auto", 3, 30*time.Second)
	waitOp(t, e, e.Do(http.MethodPatch, e.VMSSPath("rg", "auto"), map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"imageReference": map[string]any{"version": "1.1.0"}}}}}))
	vms := waitHealthy(t, e, "rg", "auto", 3, 30*time.Second)
	for id, v := range versions(t, vms) {
		if v != "1.1.0" {
			t.Errorf("instance %s: %s", id, v)
		}
	}
	for _, v := range vms {
		if !v.Properties.LatestModelApplied {
			t.Errorf("instance %s not on the latest model", v.InstanceID)
		}
	}
}

// TestUnhealthyImage: an image whose health probe fails gives instances that
// run but report HealthState/unhealthy after the grace period; this is what
// upgrade tests use.
func TestUnhealthyImage(t *testing.T) {
	e := testenv.Start(t, testenv.Options{HealthGrace: time.Second})
	e.CreateRG("rg")
	publish(t, e, "vmssd", "demo", "broken", "1.0.0", uploadDemo(t, e, "1.0.0", false))
	body := testenv.VMSSBody(1, "latest", "Manual")
	body["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)["storageProfile"].(map[string]any)["imageReference"].(map[string]any)["sku"] = "broken"
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "bad"), body))
	testenv.Eventually(t, 10*time.Second, "a running, not healthy instance", func() bool {
		vms := listVMs(t, e, "rg", "bad")
		if len(vms) != 1 || vms[0].power() != "PowerState/running" || vms[0].endpoint() == "" {
			return false
		}
		code, _, err := guestHealth(vms[0].endpoint())
		return err == nil && code == http.StatusServiceUnavailable
	})
	testenv.Eventually(t, 10*time.Second, "unhealthy after the grace period", func() bool {
		vms := listVMs(t, e, "rg", "bad")
		return len(vms) == 1 && vms[0].health() == "HealthState/unhealthy"
	})
}
