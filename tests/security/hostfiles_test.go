package security

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/testenv"
)

// customImageBody is a scale set whose model names an unmanaged custom
// image (U1: osDisk.image.uri).
func customImageBody(capacity int, uri string) map[string]any {
	b := testenv.VMSSBody(capacity, "", "Manual")
	vp := b["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)
	vp["storageProfile"] = map[string]any{"osDisk": map[string]any{
		"createOption": "FromImage", "osType": "Linux", "image": map[string]any{"uri": uri},
	}}
	return b
}

// TestTenantCannotUseHostFiles (S4, U1): a tenant's custom image URI is not
// a window on the server's file system. An absolute path or file:// URI
// would let a tenant boot any artifact file lying on the host (an
// operator's unpublished image), make the server (root) read any file into
// its artifact store (/dev/zero: 4 GiB per request) and probe which files
// exist (404 ImageNotFound vs 400 InvalidImageArtifact).
func TestTenantCannotUseHostFiles(t *testing.T) {

	e := start(t, testenv.Options{})
	tn := setupTenant(t, e, "tenantA", subA)
	tn.token = e.IssueToken(tn.id, auth.RoleTenant)
	if r := send(t, e, tn.token, call{method: http.MethodPut, path: tn.rg(), body: map[string]any{"location": "local"}}); r.Status != http.StatusCreated {
		t.Fatalf("create rg: %d %s", r.Status, r.Body)
	}

	// An operator's private, unpublished image on the host.
	private := filepath.Join(t.TempDir(), "private-image.tar.gz")
	f, err := os.Create(private)
	if err != nil {
		t.Fatal(err)
	}
	if err := artifact.BuildDemo(f, artifact.DemoOptions{Version: "6.6.6", Healthy: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	const target = "properties.virtualMachineProfile.storageProfile.osDisk.image.uri"
	for _, tc := range []struct{ name, uri string }{
		{"private-artifact-path", private},
		{"private-artifact-file-uri", "file://" + private},
		{"existing-non-artifact", "/etc/passwd"},
		{"server-secret", filepath.Join(e.Config.DataDir, "token-signing.key")},
		{"missing-file", "/nonexistent/vmssd/image.tar.gz"},
	} {
		t.Run("S4/U1/"+tc.name, func(t *testing.T) {
			set := tn.rg() + "/providers/Microsoft.Compute/virtualMachineScaleSets/custom"
			r := send(t, e, tn.token, call{method: http.MethodPut, path: set, body: customImageBody(1, tc.uri)})
			if r.Status/100 == 2 {
				deleteAtEnd(t, e, tn.token, set)
			}
			// Same answer whatever the file is: no oracle, nothing read.
			wantError(t, "tenant PUT with a host path", r, http.StatusBadRequest, "InvalidParameter", target)
		})
	}

	t.Run("U1/operator-may-use-host-paths", func(t *testing.T) {
		e.CreateRG("rg1")
		set := e.VMSSPath("rg1", "custom")
		r := send(t, e, e.Token, call{method: http.MethodPut, path: set, body: customImageBody(0, private)})
		if r.Status != http.StatusCreated {
			t.Fatalf("operator PUT with a host path: %d %s", r.Status, r.Body)
		}
		deleteAtEnd(t, e, e.Token, set)
	})
}

// TestPrincipalChangesTakeEffect (S4): re-scoping or deleting a principal
// applies to tokens it already holds.
func TestPrincipalChangesTakeEffect(t *testing.T) {
	e := start(t, testenv.Options{})
	tn := setupTenant(t, e, "tenantA", subA)
	tok := tokenFromEndpoint(t, e, tn.id, tn.secret)
	rg := call{method: http.MethodGet, path: "/subscriptions/" + subA + "/resourcegroups"}
	if r := send(t, e, tok, rg); r.Status != http.StatusOK {
		t.Fatalf("tenant lists its resource groups: %d %s", r.Status, r.Body)
	}
	principal := "/providers/vmssd.Admin/principals/" + tn.id + "?api-version=" + adminAPI

	t.Run("S4/re-scoped", func(t *testing.T) {
		r := send(t, e, e.Token, call{method: http.MethodPut, path: principal, body: map[string]any{"role": "tenant", "subscriptions": []string{}}})
		if r.Status != http.StatusOK {
			t.Fatalf("re-scope: %d %s", r.Status, r.Body)
		}
		if r.Header.Get("x-ms-error-code") != "" || len(r.Body) == 0 {
			t.Fatalf("re-scope: %s", r.Body)
		}
		wantError(t, "after re-scope", send(t, e, tok, rg), http.StatusNotFound, "SubscriptionNotFound", "")
	})
	t.Run("S4/deleted", func(t *testing.T) {
		if r := send(t, e, e.Token, call{method: http.MethodDelete, path: principal}); r.Status != http.StatusOK {
			t.Fatalf("delete principal: %d %s", r.Status, r.Body)
		}
		wantError(t, "after delete", send(t, e, tok, rg), http.StatusUnauthorized, "InvalidAuthenticationToken", "")
		// Its secret no longer gets a token.
		resp, err := e.HTTP.PostForm(e.Server.URL+"/"+auth.DefaultTenantID+"/oauth2/v2.0/token", map[string][]string{
			"grant_type": {"client_credentials"}, "client_id": {tn.id}, "client_secret": {tn.secret},
			"scope": {auth.DefaultAudience + ".default"},
		})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token for a deleted principal: %d", resp.StatusCode)
		}
	})
}
