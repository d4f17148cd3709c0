package e2e

import (
	"net/http"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestCloudMetadataEndpoints: clients register the cloud from
// /metadata/endpoints, anonymously, in the legacy Azure Stack shape and in
// the single-object shape newer az CLI reads.
func TestCloudMetadataEndpoints(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	legacy := e.DoAs("", http.MethodGet, "/metadata/endpoints?api-version=2015-01-01", nil)
	m := legacy.Map()
	auth, _ := m["authentication"].(map[string]any)
	if legacy.Status != http.StatusOK || m["galleryEndpoint"] == nil || auth["loginEndpoint"] == nil || len(auth["audiences"].([]any)) != 1 {
		t.Fatalf("legacy shape: %d %s", legacy.Status, legacy.Body)
	}
	modern := e.DoAs("", http.MethodGet, "/metadata/endpoints?api-version=2022-09-01", nil)
	m = modern.Map()
	auth, _ = m["authentication"].(map[string]any)
	if modern.Status != http.StatusOK || m["name"] == nil || m["resourceManager"] == nil || m["suffixes"] == nil ||
		auth["loginEndpoint"] == nil || auth["tenant"] == nil || len(auth["audiences"].([]any)) != 1 {
		t.Fatalf("single-object shape: %d %s", modern.Status, modern.Body)
	}
}

// TestAPIVersions: the hybrid profiles' and today's compute api-versions
// are served; others get ARM's errors.
func TestAPIVersions(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	base := e.VMSSPath("rg", "nope") + "?api-version="
	for _, v := range []string{"2017-03-30", "2017-12-01", "2020-06-01", "2024-11-01", "2026-04-01"} {
		if r := e.Do(http.MethodGet, base+v, nil); r.Status != http.StatusNotFound || r.ErrorCode() != "ResourceNotFound" {
			t.Errorf("api-version %s: %d %s", v, r.Status, r.Body)
		}
	}
	for v, code := range map[string]string{"2099-01-01": "NoRegisteredProviderFound", "yesterday": "InvalidApiVersionParameter"} {
		if r := e.Do(http.MethodGet, base+v, nil); r.Status != http.StatusBadRequest || r.ErrorCode() != code {
			t.Errorf("api-version %s: %d %s, want 400 %s", v, r.Status, r.Body, code)
		}
	}
	// Paths match case-insensitively, as ARM's do.
	if r := e.Do(http.MethodGet, "/SUBSCRIPTIONS/"+e.Sub+"/resourcegroups/RG/providers/microsoft.compute/VIRTUALMACHINESCALESETS?api-version=2020-06-01", nil); r.Status != http.StatusOK {
		t.Errorf("mixed-case path: %d %s", r.Status, r.Body)
	}
	// The caller's subscriptions.
	if r := e.Do(http.MethodGet, "/subscriptions?api-version=2020-01-01", nil); r.Status != http.StatusOK || len(r.Map()["value"].([]any)) != 1 {
		t.Errorf("GET /subscriptions: %d %s", r.Status, r.Body)
	}
}
