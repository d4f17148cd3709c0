package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/testenv"
)

const (
	depSubA = "00000000-0000-0000-0000-00000000000a"
	depSubB = "00000000-0000-0000-0000-00000000000b"
)

func depTenant(t *testing.T, e *testenv.Env, id, sub string) string {
	t.Helper()
	r := e.Do(http.MethodPut, "/providers/Microsoft.Subscriptions.Admin/subscriptions/"+sub+"?api-version=2015-11-01", map[string]any{"displayName": id})
	if r.Status != http.StatusCreated {
		t.Fatalf("subscription: %d %s", r.Status, r.Body)
	}
	r = e.Do(http.MethodPut, "/providers/vmssd.Admin/principals/"+id+"?api-version=2015-11-01", map[string]any{"role": "tenant", "subscriptions": []string{sub}})
	if r.Status != http.StatusCreated {
		t.Fatalf("principal: %d %s", r.Status, r.Body)
	}
	tok := e.IssueToken(id, auth.RoleTenant)
	if r := e.DoAs(tok, http.MethodPut, "/subscriptions/"+sub+"/resourceGroups/rg", map[string]any{"location": "local"}); r.Status != http.StatusCreated {
		t.Fatalf("rg: %d %s", r.Status, r.Body)
	}
	return tok
}

func tmplOf(resources []any, outputs map[string]any) map[string]any {
	m := map[string]any{
		"$schema":        "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
		"contentVersion": "1.0.0.0", "resources": resources,
	}
	if outputs != nil {
		m["outputs"] = outputs
	}
	return m
}

// TestDeployTenantIsolation: a tenant's template cannot reach another
// tenant's resources, neither by reference() nor by deploying into its
// subscription, and cannot deploy operator-only types.
func TestDeployTenantIsolation(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	a := depTenant(t, e, "depA", depSubA)
	b := depTenant(t, e, "depB", depSubB)
	acct := "/subscriptions/" + depSubA + "/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/secretacct"
	if r := e.DoAs(a, http.MethodPut, acct+"?api-version=2016-01-01", map[string]any{"location": "local", "sku": map[string]any{"name": "Standard_LRS"}}); r.Status != http.StatusCreated {
		t.Fatalf("A's account: %d %s", r.Status, r.Body)
	}
	bDep := "/subscriptions/" + depSubB + "/resourceGroups/rg/providers/Microsoft.Resources/deployments/"

	// reference() to A's account from B's template: not found, nothing leaks.
	tm := tmplOf([]any{}, map[string]any{"stolen": map[string]any{"type": "object", "value": "[reference('" + acct + "', '2016-01-01')]"}})
	r := e.DoAs(b, http.MethodPut, bDep+"ref", depBody(tm, nil))
	st, res := waitDeployment(t, e, withToken(e, b, r), time.Minute)
	if st != "Failed" || strings.Contains(string(mustJSON(res)), "primaryEndpoints") || strings.Contains(string(mustJSON(res)), "blob.") {
		t.Fatalf("reference() across tenants: %s %v", st, res)
	}
	if !strings.Contains(string(mustJSON(res)), "NotFound") {
		t.Fatalf("reference() across tenants: want a not-found error, got %v", res)
	}

	// A nested deployment into A's subscription is refused at validation.
	nested := map[string]any{"type": "Microsoft.Resources/deployments", "apiVersion": "2019-10-01", "name": "into-a",
		"subscriptionId": depSubA, "resourceGroup": "rg",
		"properties": map[string]any{"mode": "Incremental", "expressionEvaluationOptions": map[string]any{"scope": "inner"}, "template": tmplOf([]any{
			map[string]any{"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2016-01-01", "name": "planted", "location": "local", "sku": map[string]any{"name": "Standard_LRS"}},
		}, nil)}}
	r = e.DoAs(b, http.MethodPut, bDep+"cross", depBody(tmplOf([]any{nested}, nil), nil))
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "InvalidCrossSubscriptionDeployment") {
		t.Fatalf("nested deployment into another subscription: %d %s", r.Status, r.Body)
	}
	if r := e.DoAs(a, http.MethodGet, "/subscriptions/"+depSubA+"/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/planted?api-version=2016-01-01", nil); r.Status != http.StatusNotFound {
		t.Fatalf("B planted a resource in A's subscription: %d", r.Status)
	}

	// An operator-only type (platform images) in a tenant's template fails.
	img := map[string]any{"type": "Microsoft.Compute.Admin/locations/artifactTypes/publishers/offers/skus/versions", "apiVersion": "2015-12-01-preview",
		"name": "local/platformImage/evil/offer/sku/1.0.0", "properties": map[string]any{}}
	r = e.DoAs(b, http.MethodPut, "/subscriptions/"+depSubB+"/providers/Microsoft.Resources/deployments/admin", map[string]any{"location": "local", "properties": map[string]any{"mode": "Incremental", "template": tmplOf([]any{img}, nil)}})
	if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidTemplateDeployment" || !strings.Contains(string(r.Body), "operator-only") {
		t.Fatalf("operator-only type: %d %s", r.Status, r.Body)
	}
	// A's deployments are invisible to B.
	if r := e.DoAs(b, http.MethodGet, "/subscriptions/"+depSubA+"/resourceGroups/rg/providers/Microsoft.Resources/deployments", nil); r.Status != http.StatusNotFound {
		t.Fatalf("B lists A's deployments: %d %s", r.Status, r.Body)
	}
}

// withToken makes waitDeployment poll as the tenant that started it.
func withToken(e *testenv.Env, tok string, r *testenv.Response) *testenv.Response {
	e.Token = tok
	return r
}
