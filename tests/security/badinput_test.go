package security

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vmssd/vmssd/internal/testenv"
)

// withProps is a valid one-instance body with properties changed by fn.
func withProps(fn func(body, props map[string]any)) map[string]any {
	b := testenv.VMSSBody(1, "latest", "Manual")
	fn(b, b["properties"].(map[string]any))
	return b
}

// TestBadInput: malformed or hostile requests get the ARM error a client
// expects, never a 5xx, and change nothing.
func TestBadInput(t *testing.T) {
	e := start(t, testenv.Options{})
	e.CreateRG("rg1")
	set := e.VMSSPath("rg1", "web")
	waitOp(t, e, send(t, e, e.Token, call{method: http.MethodPut, path: set, body: testenv.VMSSBody(1, "latest", "Manual")}))
	deleteAtEnd(t, e, e.Token, set)
	var ids []string
	testenv.Eventually(t, 60*time.Second, "one instance", func() bool {
		ids = instanceIDs(t, e, e.Token, set)
		return len(ids) == 1
	})
	before := snapshot(t, e, e.Token, set)
	newSet := e.VMSSPath("rg1", "new")
	huge := `{"location":"local","tags":{"x":"` + strings.Repeat("A", 5<<20) + `"}}`

	rows := []struct {
		name   string
		token  string // "op" (operator), "none" or a literal token
		c      call
		status int
		code   string
		target string
	}{
		{"malformed-json", "op", call{method: http.MethodPut, path: set, body: `{"location":"local",`}, 400, "InvalidRequestContent", ""},
		{"malformed-json-new", "op", call{method: http.MethodPut, path: newSet, body: `{"location":`}, 400, "InvalidRequestContent", ""},
		{"json-array-body", "op", call{method: http.MethodPut, path: newSet, body: `[1,2]`}, 400, "InvalidRequestContent", ""},
		{"json-null-body", "op", call{method: http.MethodPut, path: newSet, body: `null`}, 400, "InvalidRequestContent", ""},
		{"empty-body-put", "op", call{method: http.MethodPut, path: newSet}, 400, "InvalidRequestContent", ""},
		{"malformed-json-patch", "op", call{method: http.MethodPatch, path: set, body: `{"sku":`}, 400, "InvalidRequestContent", ""},
		{"malformed-json-action", "op", call{method: http.MethodPost, path: set + "/restart", body: `{"instanceIds":`}, 400, "InvalidRequestContent", ""},
		{"wrong-type-capacity", "op", call{method: http.MethodPut, path: set, body: `{"location":"local","sku":{"capacity":"lots"}}`}, 400, "", ""},
		{"wrong-type-capacity-patch", "op", call{method: http.MethodPatch, path: set, body: `{"sku":{"capacity":"lots"}}`}, 400, "", ""},
		{"wrong-type-instanceIds", "op", call{method: http.MethodPost, path: set + "/manualupgrade", body: `{"instanceIds":"0"}`}, 400, "", ""},
		{"S3/capacity-negative", "op", call{method: http.MethodPut, path: set, body: map[string]any{"location": "local", "sku": map[string]any{"capacity": -1}}}, 400, "InvalidParameter", "sku.capacity"},
		{"S3/capacity-1000000", "op", call{method: http.MethodPut, path: set, body: map[string]any{"location": "local", "sku": map[string]any{"capacity": 1000000}}}, 400, "InvalidParameter", "sku.capacity"},
		{"S3/capacity-1000000-patch", "op", call{method: http.MethodPatch, path: set, body: map[string]any{"sku": map[string]any{"capacity": 1000000}}}, 400, "InvalidParameter", "sku.capacity"},
		{"S3/capacity-1000000-new", "op", call{method: http.MethodPut, path: newSet, body: testenv.VMSSBody(1000000, "latest", "Manual")}, 400, "InvalidParameter", "sku.capacity"},
		{"capacity-overflow", "op", call{method: http.MethodPut, path: set, body: `{"location":"local","sku":{"capacity":1e400}}`}, 400, "", ""},
		{"missing-api-version", "op", call{method: http.MethodGet, path: set, noAPI: true}, 400, "MissingApiVersionParameter", ""},
		{"missing-api-version-put", "op", call{method: http.MethodPut, path: newSet, noAPI: true, body: testenv.VMSSBody(0, "latest", "Manual")}, 400, "MissingApiVersionParameter", ""},
		{"unknown-api-version", "op", call{method: http.MethodGet, path: set + "?api-version=2099-01-01"}, 400, "NoRegisteredProviderFound", ""},
		{"garbage-api-version", "op", call{method: http.MethodGet, path: set + "?api-version=garbage"}, 400, "InvalidApiVersionParameter", ""},
		{"unknown-scale-set", "op", call{method: http.MethodGet, path: e.VMSSPath("rg1", "nope")}, 404, "ResourceNotFound", ""},
		{"unknown-scale-set-patch", "op", call{method: http.MethodPatch, path: e.VMSSPath("rg1", "nope"), body: map[string]any{"sku": map[string]any{"capacity": 1}}}, 404, "ResourceNotFound", ""},
		{"unknown-scale-set-action", "op", call{method: http.MethodPost, path: e.VMSSPath("rg1", "nope") + "/restart"}, 404, "ResourceNotFound", ""},
		{"unknown-scale-set-instances", "op", call{method: http.MethodGet, path: e.VMSSPath("rg1", "nope") + "/virtualMachines"}, 404, "ResourceNotFound", ""},
		{"unknown-rg-put", "op", call{method: http.MethodPut, path: e.VMSSPath("nope", "web"), body: testenv.VMSSBody(0, "latest", "Manual")}, 404, "ResourceGroupNotFound", ""},
		{"unknown-rg-list", "op", call{method: http.MethodGet, path: e.RGPath("nope") + "/providers/Microsoft.Compute/virtualMachineScaleSets"}, 404, "ResourceGroupNotFound", ""},
		{"unknown-subscription", "op", call{method: http.MethodGet, path: "/subscriptions/ffffffff-0000-0000-0000-000000000000/resourceGroups/rg1"}, 404, "SubscriptionNotFound", ""},
		{"bad-scale-set-name", "op", call{method: http.MethodPut, path: e.VMSSPath("rg1", "bad%20name!"), body: testenv.VMSSBody(0, "latest", "Manual")}, 400, "InvalidParameter", ""},
		{"instance-999-get", "op", call{method: http.MethodGet, path: set + "/virtualMachines/999"}, 404, "ResourceNotFound", ""},
		{"instance-abc-get", "op", call{method: http.MethodGet, path: set + "/virtualMachines/abc"}, 404, "ResourceNotFound", ""},
		{"instance--1-get", "op", call{method: http.MethodGet, path: set + "/virtualMachines/-1"}, 404, "ResourceNotFound", ""},
		{"instance-leading-zero-get", "op", call{method: http.MethodGet, path: set + "/virtualMachines/0" + ids[0]}, 404, "ResourceNotFound", ""},
		{"instance-999-instanceView", "op", call{method: http.MethodGet, path: set + "/virtualMachines/999/instanceView"}, 404, "ResourceNotFound", ""},
		{"instance-999-action", "op", call{method: http.MethodPost, path: set + "/virtualMachines/999/restart"}, 404, "ResourceNotFound", ""},
		{"instance-999-delete", "op", call{method: http.MethodDelete, path: set + "/virtualMachines/999"}, 404, "ResourceNotFound", ""},
		{"instance-abc-put", "op", call{method: http.MethodPut, path: set + "/virtualMachines/abc", body: map[string]any{"properties": map[string]any{}}}, 404, "ResourceNotFound", ""},
		{"U4/manualupgrade-id-999", "op", call{method: http.MethodPost, path: set + "/manualupgrade", body: map[string]any{"instanceIds": []string{"999"}}}, 400, "InvalidParameter", "instanceIds"},
		{"U4/manualupgrade-id-abc", "op", call{method: http.MethodPost, path: set + "/manualupgrade", body: map[string]any{"instanceIds": []string{"abc"}}}, 400, "InvalidParameter", "instanceIds"},
		{"U4/manualupgrade-id--1", "op", call{method: http.MethodPost, path: set + "/manualupgrade", body: map[string]any{"instanceIds": []string{"-1"}}}, 400, "InvalidParameter", "instanceIds"},
		{"U4/manualupgrade-valid-and-bad-id", "op", call{method: http.MethodPost, path: set + "/manualupgrade", body: map[string]any{"instanceIds": []string{ids[0], "999"}}}, 400, "InvalidParameter", "instanceIds"},
		{"U4/manualupgrade-no-body", "op", call{method: http.MethodPost, path: set + "/manualupgrade"}, 400, "InvalidParameter", "instanceIds"},
		{"U4/manualupgrade-empty-ids", "op", call{method: http.MethodPost, path: set + "/manualupgrade", body: map[string]any{"instanceIds": []string{}}}, 400, "InvalidParameter", "instanceIds"},
		{"delete-instances-no-body", "op", call{method: http.MethodPost, path: set + "/delete"}, 400, "InvalidParameter", "instanceIds"},
		{"delete-instances-id-abc", "op", call{method: http.MethodPost, path: set + "/delete", body: map[string]any{"instanceIds": []string{"abc"}}}, 400, "InvalidParameter", "instanceIds"},
		{"unknown-action", "op", call{method: http.MethodPost, path: set + "/selfdestruct"}, 400, "InvalidResourceType", ""},
		{"unknown-resource-type", "op", call{method: http.MethodGet, path: e.RGPath("rg1") + "/providers/Microsoft.Compute/fooBars/x"}, 400, "InvalidResourceType", ""},
		{"missing-token", "none", call{method: http.MethodGet, path: set}, 401, "AuthenticationFailed", ""},
		{"missing-token-put", "none", call{method: http.MethodPut, path: set, body: testenv.VMSSBody(3, "latest", "Manual")}, 401, "AuthenticationFailed", ""},
		{"basic-auth", "none", call{method: http.MethodGet, path: set, header: map[string]string{"Authorization": "Basic b3BlcmF0b3I6eA=="}}, 401, "AuthenticationFailed", ""},
		{"garbage-token", "garbage.token.value", call{method: http.MethodGet, path: set}, 401, "InvalidAuthenticationToken", ""},
		{"garbage-token-not-jwt", "x", call{method: http.MethodDelete, path: set}, 401, "InvalidAuthenticationToken", ""},
		{"bad-location", "op", call{method: http.MethodPut, path: newSet, body: withProps(func(b, _ map[string]any) { b["location"] = "mars" })}, 400, "", "location"},
		{"location-change", "op", call{method: http.MethodPut, path: set, body: map[string]any{"location": "westus"}}, 400, "", "location"},
		{"missing-location", "op", call{method: http.MethodPut, path: newSet, body: withProps(func(b, _ map[string]any) { delete(b, "location") })}, 400, "", "location"},
		{"platformFaultDomainCount-9", "op", call{method: http.MethodPut, path: newSet, body: withProps(func(_, p map[string]any) { p["platformFaultDomainCount"] = 9 })}, 400, "InvalidParameter", "properties.platformFaultDomainCount"},
		{"platformFaultDomainCount-0-patch", "op", call{method: http.MethodPatch, path: set, body: map[string]any{"properties": map[string]any{"platformFaultDomainCount": 0}}}, 400, "InvalidParameter", ""},
		{"U3/upgradePolicy-Sometimes", "op", call{method: http.MethodPut, path: newSet, body: withProps(func(_, p map[string]any) { p["upgradePolicy"] = map[string]any{"mode": "Sometimes"} })}, 400, "InvalidParameter", "properties.upgradePolicy.mode"},
		{"U3/upgradePolicy-Sometimes-patch", "op", call{method: http.MethodPatch, path: set, body: map[string]any{"properties": map[string]any{"upgradePolicy": map[string]any{"mode": "Sometimes"}}}}, 400, "InvalidParameter", "properties.upgradePolicy.mode"},
		{"U2/maxBatchInstancePercent-0", "op", call{method: http.MethodPut, path: newSet, body: withProps(func(_, p map[string]any) {
			p["upgradePolicy"] = map[string]any{"mode": "Rolling", "rollingUpgradePolicy": map[string]any{"maxBatchInstancePercent": 0}}
		})}, 400, "InvalidParameter", "properties.upgradePolicy.rollingUpgradePolicy.maxBatchInstancePercent"},
		{"orchestrationMode-Flexible", "op", call{method: http.MethodPut, path: newSet, body: withProps(func(_, p map[string]any) { p["orchestrationMode"] = "Flexible" })}, 400, "InvalidParameter", ""},
		{"computerNamePrefix-invalid", "op", call{method: http.MethodPut, path: newSet, body: withProps(func(_, p map[string]any) {
			p["virtualMachineProfile"].(map[string]any)["osProfile"].(map[string]any)["computerNamePrefix"] = "-" + strings.Repeat("x", 20)
		})}, 400, "InvalidParameter", ""},
		{"M4/image-version-malformed", "op", call{method: http.MethodPut, path: newSet, body: testenv.VMSSBody(1, "1.0", "Manual")}, 400, "InvalidParameter", ""},
		{"V3/image-version-missing", "op", call{method: http.MethodPut, path: newSet, body: testenv.VMSSBody(1, "9.9.9", "Manual")}, 404, "ImageNotFound", ""},
		{"V3/image-version-missing-model-update", "op", call{method: http.MethodPatch, path: set, body: map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
			"storageProfile": map[string]any{"imageReference": map[string]any{"version": "9.9.9"}}}}}}, 404, "ImageNotFound", ""},
		{"managed-image-id", "op", call{method: http.MethodPut, path: newSet, body: withProps(func(_, p map[string]any) {
			p["virtualMachineProfile"].(map[string]any)["storageProfile"] = map[string]any{"imageReference": map[string]any{"id": "/subscriptions/x/providers/Microsoft.Compute/images/i"}}
		})}, 400, "InvalidParameter", ""},
		{"body-too-large", "op", call{method: http.MethodPut, path: set, body: huge}, 413, "", ""},
		{"body-too-large-action", "op", call{method: http.MethodPost, path: set + "/restart", body: huge}, 413, "", ""},
		{"stale-if-match", "op", call{method: http.MethodPut, path: set, body: map[string]any{"location": "local"}, header: map[string]string{"If-Match": `"1"`}}, 412, "PreconditionFailed", ""},
		{"if-none-match-star-existing", "op", call{method: http.MethodPut, path: set, body: map[string]any{"location": "local"}, header: map[string]string{"If-None-Match": "*"}}, 412, "PreconditionFailed", ""},
		{"if-match-on-missing", "op", call{method: http.MethodPut, path: newSet, body: testenv.VMSSBody(0, "latest", "Manual"), header: map[string]string{"If-Match": "*"}}, 412, "PreconditionFailed", ""},
		{"method-not-allowed", "op", call{method: http.MethodPatch, path: set + "/instanceView", body: `{}`}, 405, "", ""},
		{"unknown-path", "op", call{method: http.MethodGet, path: "/subscriptions/" + e.Sub + "/providers/Microsoft.Nope/things"}, 400, "InvalidResourceNamespace", ""},
		{"bad-skiptoken", "op", call{method: http.MethodGet, path: set + "/virtualMachines?$skiptoken=-5"}, 400, "InvalidParameter", ""},
		{"bad-orderby", "op", call{method: http.MethodGet, path: "/subscriptions/" + e.Sub + "/providers/Microsoft.Compute/locations/local/publishers/vmssd/artifacttypes/vmimage/offers/demo/skus/guest/versions?$orderby=drop%20table"}, 400, "InvalidParameter", ""},
		{"bad-rg-name", "op", call{method: http.MethodPut, path: e.RGPath("bad*name"), body: map[string]any{"location": "local"}}, 400, "InvalidResourceGroup", ""},
		{"tenant-admin-role-invalid", "op", call{method: http.MethodPut, path: "/providers/vmssd.Admin/principals/x?api-version=" + adminAPI, body: map[string]any{"role": "root"}}, 400, "InvalidParameter", "role"},
		{"principal-unknown-subscription", "op", call{method: http.MethodPut, path: "/providers/vmssd.Admin/principals/x?api-version=" + adminAPI, body: map[string]any{"subscriptions": []string{"nope"}}}, 404, "SubscriptionNotFound", ""},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			token := row.token
			switch token {
			case "op":
				token = e.Token
			case "none":
				token = ""
			}
			r := send(t, e, token, row.c)
			wantError(t, row.c.String(), r, row.status, row.code, row.target)
			if row.status == http.StatusUnauthorized {
				if h := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") {
					t.Errorf("WWW-Authenticate %q", h)
				}
			}
		})
	}

	t.Run("nothing-changed", func(t *testing.T) {
		if diff := cmp.Diff(before, snapshot(t, e, e.Token, set)); diff != "" {
			t.Errorf("refused requests changed the set (-before +after):\n%s", diff)
		}
		r := send(t, e, e.Token, call{method: http.MethodGet, path: newSet})
		wantError(t, "set created by a refused request", r, http.StatusNotFound, "ResourceNotFound", "")
		r = send(t, e, e.Token, call{method: http.MethodGet, path: "/providers/vmssd.Admin/principals/x?api-version=" + adminAPI})
		wantError(t, "principal created by a refused request", r, http.StatusNotFound, "", "")
	})
}
