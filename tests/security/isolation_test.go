package security

import (
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

const (
	subA = "aaaaaaaa-0000-4000-8000-00000000000a"
	subB = "bbbbbbbb-0000-4000-8000-00000000000b"
)

// tokenFromEndpoint gets a token the way a client does: a client_credentials
// grant at the server's token endpoint.
func tokenFromEndpoint(t *testing.T, e *testenv.Env, clientID, secret string) string {
	t.Helper()
	form := url.Values{
		"grant_type":    {"client_credentials"},
		"client_id":     {clientID},
		"client_secret": {secret},
		"scope":         {strings.TrimSuffix(auth.DefaultAudience, "/") + "/.default"},
	}
	resp, err := e.HTTP.PostForm(e.Server.URL+"/"+auth.DefaultTenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
		t.Fatalf("token endpoint: %d %v %+v", resp.StatusCode, err, tr)
	}
	return tr.AccessToken
}

// tenant is a principal with its own subscription, resource group "rg1" and
// scale set "web" (the same names in both subscriptions on purpose).
type tenant struct {
	id, sub, token string
	secret         string
	opID           string // the operation of its scale set create
}

func (tn *tenant) rg() string { return "/subscriptions/" + tn.sub + "/resourceGroups/rg1" }
func (tn *tenant) vmss() string {
	return tn.rg() + "/providers/Microsoft.Compute/virtualMachineScaleSets/web"
}

func setupTenant(t *testing.T, e *testenv.Env, id, sub string) *tenant {
	t.Helper()
	r := send(t, e, e.Token, call{method: http.MethodPut, path: "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + sub + "?api-version=" + adminAPI,
		body: map[string]any{"displayName": id + "'s subscription"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create subscription %s: %d %s", sub, r.Status, r.Body)
	}
	r = send(t, e, e.Token, call{method: http.MethodPut, path: "/providers/vmssd.Admin/principals/" + id + "?api-version=" + adminAPI,
		body: map[string]any{"role": "tenant", "subscriptions": []string{sub}}})
	if r.Status != http.StatusCreated {
		t.Fatalf("create principal %s: %d %s", id, r.Status, r.Body)
	}
	var p struct {
		Secret string `json:"clientSecret"`
	}
	if err := r.JSON(&p); err != nil || p.Secret == "" {
		t.Fatalf("principal %s: no secret returned: %s", id, r.Body)
	}
	return &tenant{id: id, sub: sub, secret: p.Secret}
}

func (tn *tenant) createSet(t *testing.T, e *testenv.Env) {
	t.Helper()
	r := send(t, e, tn.token, call{method: http.MethodPut, path: tn.rg(), body: map[string]any{"location": "local"}})
	if r.Status != http.StatusCreated {
		t.Fatalf("%s: create rg: %d %s", tn.id, r.Status, r.Body)
	}
	r = send(t, e, tn.token, call{method: http.MethodPut, path: tn.vmss(), body: testenv.VMSSBody(1, "latest", "Manual")})
	if r.Status != http.StatusCreated {
		t.Fatalf("%s: create set: %d %s", tn.id, r.Status, r.Body)
	}
	u, err := url.Parse(r.Header.Get("Azure-AsyncOperation"))
	if err != nil || u.Path == "" {
		t.Fatalf("%s: Azure-AsyncOperation %q", tn.id, r.Header.Get("Azure-AsyncOperation"))
	}
	tn.opID = path.Base(u.Path)
	waitOp(t, e, r)
}

// TestTenantIsolation (S4): what tenant A owns, tenant B and an anonymous
// caller can neither see nor touch, through any endpoint.
func TestTenantIsolation(t *testing.T) {
	e := start(t, testenv.Options{})
	a := setupTenant(t, e, "tenantA", subA)
	b := setupTenant(t, e, "tenantB", subB)
	a.token = e.IssueToken(a.id, auth.RoleTenant)
	b.token = tokenFromEndpoint(t, e, b.id, b.secret)
	a.createSet(t, e)
	deleteAtEnd(t, e, a.token, a.vmss())
	b.createSet(t, e)
	deleteAtEnd(t, e, b.token, b.vmss())
	var idA []string
	testenv.Eventually(t, 60*time.Second, "A's instance", func() bool {
		idA = instanceIDs(t, e, a.token, a.vmss())
		return len(idA) == 1
	})
	before := snapshot(t, e, a.token, a.vmss())
	beforeB := snapshot(t, e, b.token, b.vmss())

	sA := "/subscriptions/" + subA
	rg, set, inst := a.rg(), a.vmss(), a.vmss()+"/virtualMachines/"+idA[0]
	loc := sA + "/providers/Microsoft.Compute/locations/local"
	img := loc + "/publishers/" + server.DemoPublisher + "/artifacttypes/vmimage/offers/" + server.DemoOffer + "/skus/" + server.DemoSKU
	adminImg := sA + "/providers/Microsoft.Compute.Admin/locations/local/artifactTypes/platformImage"
	adminImgV := adminImg + "/publishers/" + server.DemoPublisher + "/offers/" + server.DemoOffer + "/skus/" + server.DemoSKU + "/versions/1.0.0"
	q := "?api-version=" + adminAPI
	ids := map[string]any{"instanceIds": idA}
	all := map[string]any{"instanceIds": []string{"*"}}

	const subNF, nf = "SubscriptionNotFound", "NotFound"
	rows := []struct {
		c call
		// code is tenant B's expected 404 code.
		code string
	}{
		{call{method: http.MethodGet, path: sA}, subNF},
		{call{method: http.MethodGet, path: sA + "/resourcegroups"}, subNF},
		{call{method: http.MethodGet, path: rg}, subNF},
		{call{method: http.MethodHead, path: rg}, ""},
		{call{method: http.MethodPut, path: rg, body: map[string]any{"location": "local", "tags": map[string]string{"owner": "B"}}}, subNF},
		{call{method: http.MethodPut, path: sA + "/resourceGroups/rg-by-b", body: map[string]any{"location": "local"}}, subNF},
		{call{method: http.MethodDelete, path: rg}, subNF},
		{call{method: http.MethodGet, path: sA + "/providers/Microsoft.Compute/virtualMachineScaleSets"}, subNF},
		{call{method: http.MethodGet, path: loc + "/virtualMachineScaleSets"}, subNF},
		{call{method: http.MethodGet, path: rg + "/providers/Microsoft.Compute/virtualMachineScaleSets"}, subNF},
		{call{method: http.MethodGet, path: set}, subNF},
		{call{method: http.MethodGet, path: set + "?$expand=userData"}, subNF},
		{call{method: http.MethodPut, path: set, body: testenv.VMSSBody(3, "1.0.0", "Automatic")}, subNF},
		{call{method: http.MethodPut, path: set, body: map[string]any{"location": "local", "sku": map[string]any{"capacity": 2}}, header: map[string]string{"If-Match": before.ETag}}, subNF},
		{call{method: http.MethodPatch, path: set, body: map[string]any{"sku": map[string]any{"capacity": 0}}}, subNF},
		{call{method: http.MethodDelete, path: set}, subNF},
		{call{method: http.MethodGet, path: set + "/instanceView"}, subNF},
		{call{method: http.MethodGet, path: set + "/skus"}, subNF},
		{call{method: http.MethodPost, path: set + "/start"}, subNF},
		{call{method: http.MethodPost, path: set + "/poweroff", body: all}, subNF},
		{call{method: http.MethodPost, path: set + "/poweroff?skipShutdown=true"}, subNF},
		{call{method: http.MethodPost, path: set + "/restart", body: ids}, subNF},
		{call{method: http.MethodPost, path: set + "/deallocate", body: ids}, subNF},
		{call{method: http.MethodPost, path: set + "/reimage", body: ids}, subNF},
		{call{method: http.MethodPost, path: set + "/reimageall"}, subNF},
		{call{method: http.MethodPost, path: set + "/redeploy"}, subNF},
		{call{method: http.MethodPost, path: set + "/delete", body: ids}, subNF},
		{call{method: http.MethodPost, path: set + "/manualupgrade", body: ids}, subNF},
		{call{method: http.MethodPost, path: set + "/osRollingUpgrade"}, subNF},
		{call{method: http.MethodGet, path: set + "/virtualMachines"}, subNF},
		{call{method: http.MethodGet, path: set + "/virtualMachines?$expand=instanceView"}, subNF},
		{call{method: http.MethodGet, path: inst}, subNF},
		{call{method: http.MethodGet, path: inst + "?$expand=instanceView"}, subNF},
		{call{method: http.MethodGet, path: inst + "/instanceView"}, subNF},
		{call{method: http.MethodPut, path: inst, body: map[string]any{"properties": map[string]any{"protectionPolicy": map[string]any{"protectFromScaleIn": true}}}}, subNF},
		{call{method: http.MethodDelete, path: inst}, subNF},
		{call{method: http.MethodPost, path: inst + "/start"}, subNF},
		{call{method: http.MethodPost, path: inst + "/poweroff"}, subNF},
		{call{method: http.MethodPost, path: inst + "/restart"}, subNF},
		{call{method: http.MethodPost, path: inst + "/deallocate"}, subNF},
		{call{method: http.MethodPost, path: inst + "/reimage"}, subNF},
		{call{method: http.MethodPost, path: inst + "/reimageall"}, subNF},
		{call{method: http.MethodPost, path: inst + "/redeploy"}, subNF},
		{call{method: http.MethodGet, path: loc + "/operations/" + a.opID}, subNF},
		{call{method: http.MethodGet, path: loc + "/operations/" + a.opID + "?monitor=true"}, subNF},
		// A's operation through B's own subscription.
		{call{method: http.MethodGet, path: "/subscriptions/" + subB + "/providers/Microsoft.Compute/locations/local/operations/" + a.opID}, nf},
		{call{method: http.MethodGet, path: "/subscriptions/" + subB + "/providers/Microsoft.Compute/locations/local/operations/" + a.opID + "?monitor=true"}, nf},
		{call{method: http.MethodGet, path: loc + "/publishers"}, subNF},
		{call{method: http.MethodGet, path: loc + "/publishers/" + server.DemoPublisher + "/artifacttypes/vmimage/offers"}, subNF},
		{call{method: http.MethodGet, path: loc + "/publishers/" + server.DemoPublisher + "/artifacttypes/vmimage/offers/" + server.DemoOffer + "/skus"}, subNF},
		{call{method: http.MethodGet, path: img + "/versions"}, subNF},
		{call{method: http.MethodGet, path: img + "/versions?$orderby=name%20desc&$top=1"}, subNF},
		{call{method: http.MethodGet, path: img + "/versions/1.0.0"}, subNF},
		// Operator APIs do not exist for tenants.
		{call{method: http.MethodGet, path: adminImg + q}, nf},
		{call{method: http.MethodGet, path: adminImgV + q}, nf},
		{call{method: http.MethodPut, path: adminImgV + q, body: map[string]any{"properties": map[string]any{"osDisk": map[string]any{"osType": "Linux", "uri": "/etc/passwd"}}}}, nf},
		{call{method: http.MethodDelete, path: adminImgV + q}, nf},
		{call{method: http.MethodPost, path: "/providers/vmssd.Admin/artifacts" + q, body: []byte("not an image")}, nf},
		{call{method: http.MethodGet, path: "/providers/Microsoft.Subscriptions.Admin/subscriptions" + q}, nf},
		{call{method: http.MethodGet, path: "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + subA + q}, nf},
		{call{method: http.MethodPut, path: "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + subA + q, body: map[string]any{"displayName": "mine now"}}, nf},
		{call{method: http.MethodDelete, path: "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + subA + q}, nf},
		{call{method: http.MethodGet, path: "/providers/vmssd.Admin/principals" + q}, nf},
		{call{method: http.MethodGet, path: "/providers/vmssd.Admin/principals/tenantA" + q}, nf},
		{call{method: http.MethodPut, path: "/providers/vmssd.Admin/principals/tenantA" + q + "&rotateSecret=true", body: map[string]any{"role": "tenant", "subscriptions": []string{subA}}}, nf},
		{call{method: http.MethodDelete, path: "/providers/vmssd.Admin/principals/tenantA" + q}, nf},
		// Privilege escalation: B grants itself A's subscription or the operator role.
		{call{method: http.MethodPut, path: "/providers/vmssd.Admin/principals/tenantB" + q, body: map[string]any{"role": "operator", "subscriptions": []string{subA, subB}}}, nf},
		{call{method: http.MethodPut, path: "/providers/vmssd.Admin/principals/evil" + q, body: map[string]any{"role": "operator"}}, nf},
	}
	for _, row := range rows {
		t.Run("S4/tenantB/"+row.c.String(), func(t *testing.T) {
			r := send(t, e, b.token, row.c)
			if row.c.method == http.MethodHead {
				if r.Status != http.StatusNotFound {
					t.Errorf("HEAD: %d, want 404", r.Status)
				}
				return
			}
			wantError(t, "tenant B", r, http.StatusNotFound, row.code, "")
			if strings.Contains(string(r.Body), "rg1/providers") || strings.Contains(string(r.Body), `"instanceId"`) {
				t.Errorf("error body leaks A's resources: %s", r.Body)
			}
		})
		t.Run("S4/anonymous/"+row.c.String(), func(t *testing.T) {
			r := send(t, e, "", row.c)
			if row.c.method == http.MethodHead {
				if r.Status != http.StatusUnauthorized {
					t.Errorf("HEAD: %d, want 401", r.Status)
				}
				return
			}
			wantError(t, "anonymous", r, http.StatusUnauthorized, "AuthenticationFailed", "")
			if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") {
				t.Errorf("WWW-Authenticate %q", h)
			}
		})
	}

	t.Run("S4/A-unchanged", func(t *testing.T) {
		if diff := cmp.Diff(before, snapshot(t, e, a.token, a.vmss())); diff != "" {
			t.Errorf("A's scale set changed (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(beforeB, snapshot(t, e, b.token, b.vmss())); diff != "" {
			t.Errorf("B's own scale set changed (-before +after):\n%s", diff)
		}
		r := send(t, e, a.token, call{method: http.MethodGet, path: sA + "/resourcegroups"})
		var rgs struct {
			Value []struct {
				Name string            `json:"name"`
				Tags map[string]string `json:"tags"`
			} `json:"value"`
		}
		if err := r.JSON(&rgs); err != nil || r.Status != http.StatusOK || len(rgs.Value) != 1 || rgs.Value[0].Name != "rg1" || rgs.Value[0].Tags["owner"] != "" {
			t.Errorf("A's resource groups: %d %s", r.Status, r.Body)
		}
		for _, p := range []struct{ id, sub string }{{"tenantA", subA}, {"tenantB", subB}} {
			r := send(t, e, e.Token, call{method: http.MethodGet, path: "/providers/vmssd.Admin/principals/" + p.id + "?api-version=" + adminAPI})
			var pr struct {
				Role          string   `json:"role"`
				Subscriptions []string `json:"subscriptions"`
			}
			if err := r.JSON(&pr); err != nil || r.Status != http.StatusOK || pr.Role != "tenant" || !cmp.Equal(pr.Subscriptions, []string{p.sub}) {
				t.Errorf("principal %s changed: %d %s", p.id, r.Status, r.Body)
			}
		}
		if r := send(t, e, e.Token, call{method: http.MethodGet, path: "/providers/vmssd.Admin/principals/evil?api-version=" + adminAPI}); r.Status != http.StatusNotFound {
			t.Errorf("principal created by tenant B: %d %s", r.Status, r.Body)
		}
		if r := send(t, e, e.Token, call{method: http.MethodGet, path: adminImgV + q}); r.Status != http.StatusOK {
			t.Errorf("platform image after tenant B's DELETE: %d %s", r.Status, r.Body)
		}
		// A's secret was not rotated by B: it still gets a token.
		tokenFromEndpoint(t, e, a.id, a.secret)
	})

	t.Run("S4/list-subscriptions", func(t *testing.T) {
		list := func(token string) []string {
			r := send(t, e, token, call{method: http.MethodGet, path: "/subscriptions"})
			var page struct {
				Value []struct {
					SubscriptionID string `json:"subscriptionId"`
				} `json:"value"`
			}
			if err := r.JSON(&page); err != nil || r.Status != http.StatusOK {
				t.Fatalf("list subscriptions: %d %s", r.Status, r.Body)
			}
			var out []string
			for _, s := range page.Value {
				out = append(out, s.SubscriptionID)
			}
			slices.Sort(out)
			return out
		}
		if got := list(b.token); !cmp.Equal(got, []string{subB}) {
			t.Errorf("tenant B sees %v, want only %s", got, subB)
		}
		if got := list(a.token); !cmp.Equal(got, []string{subA}) {
			t.Errorf("tenant A sees %v, want only %s", got, subA)
		}
		if got := list(e.Token); !cmp.Equal(got, []string{server.DefaultSubscriptionID, subA, subB}) {
			t.Errorf("operator sees %v", got)
		}
		wantError(t, "anonymous list", send(t, e, "", call{method: http.MethodGet, path: "/subscriptions"}), http.StatusUnauthorized, "AuthenticationFailed", "")
	})
}
