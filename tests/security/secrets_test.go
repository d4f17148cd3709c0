package security

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestSecretsNeverEchoed (S4): write-only model fields (adminPassword,
// customData, extension protectedSettings) are never returned, by any read.
func TestSecretsNeverEchoed(t *testing.T) {
	e := start(t, testenv.Options{PageSize: 1})
	e.CreateRG("rg1")
	set := e.VMSSPath("rg1", "web")
	secrets := []string{"S3cret!pass", "c2VjcmV0LWN1c3RvbQ", "Pr0tected!"}
	body := testenv.VMSSBody(1, "latest", "Manual")
	vp := body["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)
	vp["osProfile"].(map[string]any)["customData"] = "c2VjcmV0LWN1c3RvbQ=="
	vp["extensionProfile"] = map[string]any{"extensions": []any{map[string]any{
		"name": "ext",
		"properties": map[string]any{
			"publisher": "vmssd", "type": "noop", "typeHandlerVersion": "1.0",
			"settings": map[string]any{"public": "ok"}, "protectedSettings": map[string]any{"password": "Pr0tected!"},
		},
	}}}

	check := func(what string, r *testenv.Response) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(string(r.Body), s) {
				t.Errorf("%s (%d) echoes secret %q: %s", what, r.Status, s, r.Body)
			}
		}
	}
	put := send(t, e, e.Token, call{method: http.MethodPut, path: set, body: body})
	check("PUT", put)
	waitOp(t, e, put)
	deleteAtEnd(t, e, e.Token, set)
	var ids []string
	testenv.Eventually(t, 60*time.Second, "one instance", func() bool {
		ids = instanceIDs(t, e, e.Token, set)
		return len(ids) == 1
	})
	if !strings.Contains(string(send(t, e, e.Token, call{method: http.MethodGet, path: set}).Body), `"public":"ok"`) {
		t.Errorf("public extension settings not returned")
	}
	inst := set + "/virtualMachines/" + ids[0]
	for _, c := range []call{
		{method: http.MethodGet, path: set},
		{method: http.MethodGet, path: set + "?$expand=userData"},
		{method: http.MethodGet, path: e.RGPath("rg1") + "/providers/Microsoft.Compute/virtualMachineScaleSets"},
		{method: http.MethodGet, path: "/subscriptions/" + e.Sub + "/providers/Microsoft.Compute/virtualMachineScaleSets"},
		{method: http.MethodGet, path: "/subscriptions/" + e.Sub + "/providers/Microsoft.Compute/locations/local/virtualMachineScaleSets"},
		{method: http.MethodGet, path: set + "/instanceView"},
		{method: http.MethodGet, path: set + "/virtualMachines?$expand=instanceView"},
		{method: http.MethodGet, path: inst + "?$expand=instanceView"},
		{method: http.MethodGet, path: inst + "/instanceView"},
		{method: http.MethodPatch, path: set, body: map[string]any{"tags": map[string]string{"a": "b"}}},
		{method: http.MethodPut, path: set, body: map[string]any{"location": "local", "tags": map[string]string{"a": "c"}}},
	} {
		r := send(t, e, e.Token, c)
		if r.Status != http.StatusOK {
			t.Errorf("%s: %d %s", c, r.Status, r.Body)
		}
		check(c.String(), r)
		if op := r.Header.Get("Azure-AsyncOperation"); op != "" {
			check("operation of "+c.String(), send(t, e, e.Token, call{method: http.MethodGet, path: strings.TrimPrefix(op, e.Server.URL)}))
			waitOp(t, e, r)
		}
	}
}
