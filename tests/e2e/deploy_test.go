package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/deploy"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/testenv"
)

// Template deployments end to end: the Azure Stack-style templates in
// testdata/templates deployed through Microsoft.Resources/deployments, the
// scale sets they create running healthy instances.

func readTemplate(t testing.TB, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "templates", name))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func depPath(e *testenv.Env, rg, name string) string {
	return e.RGPath(rg) + "/providers/Microsoft.Resources/deployments/" + name
}

// demoParams are the template parameters that pick the demo image.
func demoParams(vmssName string, count int, extra map[string]any) map[string]any {
	p := map[string]any{
		"vmssName":         map[string]any{"value": vmssName},
		"instanceCount":    map[string]any{"value": count},
		"osImagePublisher": map[string]any{"value": "vmssd"},
		"osImageOffer":     map[string]any{"value": "demo"},
		"osImageSku":       map[string]any{"value": "guest"},
		"adminPassword":    map[string]any{"value": "S3cret!pass"},
	}
	for k, v := range extra {
		p[k] = map[string]any{"value": v}
	}
	return p
}

func depBody(tmpl, params map[string]any) map[string]any {
	return map[string]any{"properties": map[string]any{"mode": "Incremental", "template": tmpl, "parameters": params}}
}

// waitDeployment polls the deployment's Azure-AsyncOperation until it ends.
func waitDeployment(t testing.TB, e *testenv.Env, r *testenv.Response, timeout time.Duration) (string, map[string]any) {
	t.Helper()
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("deployment PUT: %d %s", r.Status, r.Body)
	}
	u := r.Header.Get("Azure-AsyncOperation")
	if u == "" {
		t.Fatalf("no Azure-AsyncOperation header: %s", r.Body)
	}
	deadline := time.Now().Add(timeout)
	for {
		m := e.Do(http.MethodGet, u, nil).Map()
		switch s, _ := m["status"].(string); s {
		case "Succeeded", "Failed", "Canceled":
			return s, m
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment still running after %v", timeout)
		}
		time.Sleep(20 * time.Millisecond) // as testenv.Wait polls operations
	}
}

func depOperations(t testing.TB, e *testenv.Env, rg, name string) []map[string]any {
	t.Helper()
	r := e.Do(http.MethodGet, depPath(e, rg, name)+"/operations", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("operations: %d %s", r.Status, r.Body)
	}
	var page struct{ Value []map[string]any }
	if err := r.JSON(&page); err != nil {
		t.Fatal(err)
	}
	return page.Value
}

func props(m map[string]any) map[string]any { p, _ := m["properties"].(map[string]any); return p }

// TestDeployScaleSetTemplate deploys the storage-account + scale-set shape,
// checks its outputs, operations, what-if and idempotent redeploy, scales it
// out by redeploying with a larger instanceCount, and deletes the record
// without touching the scale set.
func TestDeployScaleSetTemplate(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	tmpl := readTemplate(t, "vmss-no-network.json")
	st, res := waitDeployment(t, e, e.Do(http.MethodPut, depPath(e, "rg", "d1"), depBody(tmpl, demoParams("web", 2, nil))), 2*time.Minute)
	if st != "Succeeded" {
		t.Fatalf("deployment %s: %v", st, res)
	}
	d := e.Do(http.MethodGet, depPath(e, "rg", "d1"), nil).Map()
	p := props(d)
	outs, _ := p["outputs"].(map[string]any)
	vmssID, _ := outs["vmssId"].(map[string]any)["value"].(string)
	blob, _ := outs["blobEndpoint"].(map[string]any)["value"].(string)
	if !strings.Contains(vmssID, "/virtualMachineScaleSets/") || !strings.HasPrefix(blob, "https://") || !strings.Contains(blob, ".blob.") {
		t.Fatalf("outputs = %v", outs)
	}
	if pw := p["parameters"].(map[string]any)["adminPassword"].(map[string]any); pw["value"] != nil {
		t.Fatalf("secure parameter returned: %v", pw)
	}
	name := vmssID[strings.LastIndex(vmssID, "/")+1:]
	waitHealthy(t, e, "rg", name, 2, 90*time.Second)

	ops := depOperations(t, e, "rg", "d1")
	if len(ops) != 2 {
		t.Fatalf("%d operations, want 2 (storage account, scale set)", len(ops))
	}
	for _, op := range ops {
		pp := props(op)
		tr := pp["targetResource"].(map[string]any)
		if pp["provisioningState"] != "Succeeded" || pp["statusCode"] == nil || tr["id"] == nil || pp["timestamp"] == nil {
			t.Errorf("operation %v", pp)
		}
	}

	// What-if of the same template: nothing changes; with 4 instances the
	// scale set's capacity is modified.
	wi := e.Do(http.MethodPost, depPath(e, "rg", "d2")+"/whatIf", depBody(tmpl, demoParams("web", 2, nil)))
	if wi.Status != http.StatusOK {
		t.Fatalf("what-if: %d %s", wi.Status, wi.Body)
	}
	for _, c := range props(wi.Map())["changes"].([]any) {
		c := c.(map[string]any)
		if c["changeType"] != "NoChange" {
			t.Errorf("what-if of the deployed template: %v %v (delta %v)", c["resourceId"], c["changeType"], c["delta"])
		}
	}
	wi = e.Do(http.MethodPost, depPath(e, "rg", "d2")+"/whatIf", depBody(tmpl, demoParams("web", 4, nil)))
	found := false
	for _, c := range props(wi.Map())["changes"].([]any) {
		c := c.(map[string]any)
		if strings.EqualFold(c["resourceId"].(string), vmssID) {
			found = c["changeType"] == "Modify" && strings.Contains(string(mustJSON(c["delta"])), `"sku.capacity"`)
		}
	}
	if !found {
		t.Fatalf("what-if with 4 instances: %s", wi.Body)
	}

	// Redeploying the same template changes nothing and succeeds.
	before := e.Do(http.MethodGet, e.VMSSPath("rg", name), nil).Map()
	st, res = waitDeployment(t, e, e.Do(http.MethodPut, depPath(e, "rg", "d1"), depBody(tmpl, demoParams("web", 2, nil))), time.Minute)
	if st != "Succeeded" {
		t.Fatalf("redeploy %s: %v", st, res)
	}
	after := e.Do(http.MethodGet, e.VMSSPath("rg", name), nil).Map()
	if props(before)["uniqueId"] != props(after)["uniqueId"] || len(listVMs(t, e, "rg", name)) != 2 {
		t.Fatalf("redeploy changed the scale set")
	}

	// Scale out by redeploying with a larger instanceCount (S3).
	st, res = waitDeployment(t, e, e.Do(http.MethodPut, depPath(e, "rg", "d3"), depBody(tmpl, demoParams("web", 4, nil))), 2*time.Minute)
	if st != "Succeeded" {
		t.Fatalf("scale-out deploy %s: %v", st, res)
	}
	waitHealthy(t, e, "rg", name, 4, 90*time.Second)

	// List newest first; delete removes the record only.
	var list struct{ Value []map[string]any }
	_ = e.Do(http.MethodGet, e.RGPath("rg")+"/providers/Microsoft.Resources/deployments", nil).JSON(&list)
	if len(list.Value) != 2 || list.Value[0]["name"] != "d3" {
		t.Fatalf("list: %v", list.Value)
	}
	if r := e.Do(http.MethodDelete, depPath(e, "rg", "d1"), nil); r.Status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := e.Do(http.MethodGet, depPath(e, "rg", "d1"), nil); r.Status != http.StatusNotFound || r.ErrorCode() != "DeploymentNotFound" {
		t.Fatalf("deleted deployment: %d %s", r.Status, r.Body)
	}
	if len(listVMs(t, e, "rg", name)) != 4 {
		t.Fatal("deleting the deployment touched the scale set")
	}
	if r := e.Do(http.MethodPost, depPath(e, "rg", "d3")+"/exportTemplate", nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), "apiProfile") {
		t.Fatalf("exportTemplate: %d %s", r.Status, r.Body)
	}
}

func mustJSON(v any) []byte { b, _ := json.Marshal(v); return b }

// TestDeployErrors: template errors with their path and line, unsupported
// types listing the supported ones, Complete mode, links, and a resource
// failure reported as DeploymentFailed with the resource's error while an
// independent resource still deploys.
func TestDeployErrors(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	// InvalidTemplate with the path and line of the bad expression.
	head := "{\n\"$schema\": \"https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#\",\n\"contentVersion\": \"1.0.0.0\",\n\"resources\": [],\n"
	for _, c := range []struct{ tail, want string }{
		{"\"variables\": {\"v\": \"[concat('a']\"}\n}", "line '5'"},
		{"\"outputs\": {\"x\": {\"type\": \"string\", \"value\": \"[concat('a']\"}}\n}", "outputs.x"},
	} {
		r := e.Do(http.MethodPut, depPath(e, "rg", "bad"), `{"properties":{"mode":"Incremental","template":`+head+c.tail+`}}`)
		if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidTemplate" || !strings.Contains(string(r.Body), c.want) {
			t.Errorf("bad expression: %d %s (want %q)", r.Status, r.Body, c.want)
		}
	}
	tmpl := map[string]any{
		"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
		"resources": []any{map[string]any{"type": "Microsoft.Web/sites", "apiVersion": "2020-01-01", "name": "site", "location": "local"}},
	}
	r := e.Do(http.MethodPut, depPath(e, "rg", "web"), depBody(tmpl, nil))
	if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidTemplateDeployment" || !strings.Contains(string(r.Body), "Microsoft.Compute/virtualMachineScaleSets") || !strings.Contains(string(r.Body), "Microsoft.Web/sites") {
		t.Fatalf("unsupported type: %d %s", r.Status, r.Body)
	}
	body := depBody(readTemplate(t, "vmss-no-network.json"), demoParams("web", 1, nil))
	body["properties"].(map[string]any)["mode"] = "Complete"
	if r := e.Do(http.MethodPut, depPath(e, "rg", "c"), body); r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidDeploymentMode" {
		t.Fatalf("complete mode: %d %s", r.Status, r.Body)
	}
	for _, uri := range []string{"http://example.com/t.json", "https://127.0.0.1:1/t.json", e.Server.URL + "/t.json"} {
		r := e.Do(http.MethodPut, depPath(e, "rg", "link"), map[string]any{"properties": map[string]any{"mode": "Incremental", "templateLink": map[string]any{"uri": uri}}})
		if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidContentLink" {
			t.Errorf("templateLink %s: %d %s", uri, r.Status, r.Body)
		}
	}
	if r := e.Do(http.MethodPost, depPath(e, "rg", "v")+"/validate", depBody(readTemplate(t, "vmss-no-network.json"), demoParams("web", 1, nil))); r.Status != http.StatusOK {
		t.Fatalf("validate: %d %s", r.Status, r.Body)
	}

	// A scale set whose image does not exist fails; the storage account,
	// independent of it, deploys; the deployment fails with details.
	p := demoParams("bad", 1, map[string]any{"osImageOffer": "nosuchoffer"})
	st, res := waitDeployment(t, e, e.Do(http.MethodPut, depPath(e, "rg", "fail"), depBody(readTemplate(t, "vmss-no-network.json"), p)), time.Minute)
	if st != "Failed" {
		t.Fatalf("deployment %s", st)
	}
	errm, _ := res["error"].(map[string]any)
	if errm["code"] != "DeploymentFailed" || !strings.Contains(string(mustJSON(errm["details"])), "virtualMachineScaleSets") {
		t.Fatalf("error = %v", errm)
	}
	states := map[string]string{}
	for _, op := range depOperations(t, e, "rg", "fail") {
		pp := props(op)
		states[pp["targetResource"].(map[string]any)["resourceType"].(string)] = pp["provisioningState"].(string)
		if pp["provisioningState"] == "Failed" && pp["statusMessage"].(map[string]any)["error"] == nil {
			t.Errorf("failed operation without its error: %v", pp)
		}
	}
	if states["Microsoft.Storage/storageAccounts"] != "Succeeded" || states["Microsoft.Compute/virtualMachineScaleSets"] != "Failed" {
		t.Fatalf("operation states %v", states)
	}
	if r := e.Do(http.MethodPost, depPath(e, "rg", "fail")+"/cancel", nil); r.Status != http.StatusConflict {
		t.Fatalf("cancel of a finished deployment: %d %s", r.Status, r.Body)
	}
}

// TestDeployNested deploys a nested inline deployment (outer scope) whose
// output feeds the outer template's output.
func TestDeployNested(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	tmpl := map[string]any{
		"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
		"parameters": map[string]any{"prefix": map[string]any{"type": "string", "defaultValue": "nest"}},
		"resources": []any{map[string]any{
			"type": "Microsoft.Resources/deployments", "apiVersion": "2019-10-01", "name": "inner",
			"properties": map[string]any{"mode": "Incremental", "template": map[string]any{
				"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
				"resources": []any{map[string]any{"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2016-01-01",
					"name": "[concat(parameters('prefix'), uniqueString(resourceGroup().id))]", "location": "[resourceGroup().location]",
					"sku": map[string]any{"name": "Standard_LRS"}, "kind": "Storage", "properties": map[string]any{}}},
				"outputs": map[string]any{"account": map[string]any{"type": "string", "value": "[concat(parameters('prefix'), uniqueString(resourceGroup().id))]"}},
			}},
		}},
		"outputs": map[string]any{
			"fromInner": map[string]any{"type": "string", "value": "[reference('inner').outputs.account.value]"},
			"key":       map[string]any{"type": "string", "value": "[listKeys(resourceId('Microsoft.Storage/storageAccounts', reference('inner').outputs.account.value), '2016-01-01').keys[0].value]"},
		},
	}
	st, res := waitDeployment(t, e, e.Do(http.MethodPut, depPath(e, "rg", "outer"), depBody(tmpl, nil)), time.Minute)
	if st != "Succeeded" {
		t.Fatalf("nested deployment %s: %v", st, res)
	}
	outs := props(e.Do(http.MethodGet, depPath(e, "rg", "outer"), nil).Map())["outputs"].(map[string]any)
	acct, _ := outs["fromInner"].(map[string]any)["value"].(string)
	if key, _ := outs["key"].(map[string]any)["value"].(string); !strings.HasPrefix(acct, "nest") || len(key) < 40 {
		t.Fatalf("outputs %v", outs)
	}
	if r := e.Do(http.MethodGet, e.RGPath("rg")+"/providers/Microsoft.Storage/storageAccounts/"+acct+"?api-version=2016-01-01", nil); r.Status != http.StatusOK {
		t.Fatalf("nested storage account: %d %s", r.Status, r.Body)
	}
	var types []string
	for _, op := range depOperations(t, e, "rg", "outer") {
		types = append(types, props(op)["targetResource"].(map[string]any)["resourceType"].(string))
	}
	if !slices.Contains(types, "Microsoft.Resources/deployments") || !slices.Contains(types, "Microsoft.Storage/storageAccounts") {
		t.Fatalf("operation types %v", types)
	}
}

// TestDeploySubscriptionScope: a subscription-level deployment creates a
// resource group and deploys into it with a nested deployment; providers()
// answers what this cloud serves.
func TestDeploySubscriptionScope(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	tmpl := map[string]any{
		"$schema":        "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
		"contentVersion": "1.0.0.0",
		"parameters":     map[string]any{"rgName": map[string]any{"type": "string"}},
		"resources": []any{
			map[string]any{"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2019-10-01", "name": "[parameters('rgName')]", "location": "local"},
			map[string]any{"type": "Microsoft.Resources/deployments", "apiVersion": "2019-10-01", "name": "intoNewGroup",
				"resourceGroup": "[parameters('rgName')]",
				"dependsOn":     []any{"[resourceId('Microsoft.Resources/resourceGroups', parameters('rgName'))]"},
				"properties": map[string]any{"mode": "Incremental", "expressionEvaluationOptions": map[string]any{"scope": "inner"}, "template": map[string]any{
					"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
					"resources": []any{map[string]any{"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2016-01-01",
						"name": "[concat('sa', uniqueString(resourceGroup().id))]", "location": "[resourceGroup().location]",
						"sku": map[string]any{"name": "Standard_LRS"}, "kind": "Storage", "properties": map[string]any{}}},
					"outputs": map[string]any{"rg": map[string]any{"type": "string", "value": "[resourceGroup().name]"}},
				}}},
		},
		"outputs": map[string]any{
			"computeVersion": map[string]any{"type": "string", "value": "[providers('Microsoft.Compute', 'virtualMachineScaleSets').apiVersions[0]]"},
			"innerGroup":     map[string]any{"type": "string", "value": "[reference('intoNewGroup').outputs.rg.value]"},
		},
	}
	path := "/subscriptions/" + e.Sub + "/providers/Microsoft.Resources/deployments/sub1"
	r := e.Do(http.MethodPut, path, map[string]any{"location": "local", "properties": map[string]any{"mode": "Incremental", "template": tmpl,
		"parameters": map[string]any{"rgName": map[string]any{"value": "fromtemplate"}}}})
	st, res := waitDeployment(t, e, r, time.Minute)
	if st != "Succeeded" {
		t.Fatalf("subscription deployment %s: %v", st, res)
	}
	outs := props(e.Do(http.MethodGet, path, nil).Map())["outputs"].(map[string]any)
	if v, _ := outs["innerGroup"].(map[string]any)["value"].(string); v != "fromtemplate" {
		t.Fatalf("outputs %v", outs)
	}
	if v, _ := outs["computeVersion"].(map[string]any)["value"].(string); len(v) != len("2026-04-01") {
		t.Fatalf("providers() output %v", outs)
	}
	if r := e.Do(http.MethodGet, e.RGPath("fromtemplate"), nil); r.Status != http.StatusOK {
		t.Fatalf("resource group: %d %s", r.Status, r.Body)
	}
	var list struct{ Value []map[string]any }
	_ = e.Do(http.MethodGet, e.RGPath("fromtemplate")+"/providers/Microsoft.Storage/storageAccounts?api-version=2016-01-01", nil).JSON(&list)
	if len(list.Value) != 1 {
		t.Fatalf("storage accounts in the new group: %v", list.Value)
	}
	// A resource group in a resource-group deployment is refused.
	e.CreateRG("rg")
	r = e.Do(http.MethodPut, depPath(e, "rg", "rgInRg"), depBody(map[string]any{
		"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0",
		"resources": []any{map[string]any{"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2019-10-01", "name": "x", "location": "local"}},
	}, nil))
	if r.Status != http.StatusBadRequest {
		t.Fatalf("resource group in a resource group deployment: %d %s", r.Status, r.Body)
	}
}

// TestDeployCancel: POST cancel while the scale set is being created: the
// resource in flight finishes, its dependent never starts, the deployment
// ends Canceled.
func TestDeployCancel(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	set := testenv.VMSSBody(3, "latest", "Manual")
	set["type"], set["apiVersion"], set["name"] = "Microsoft.Compute/virtualMachineScaleSets", "2017-03-30", "slow"
	after := map[string]any{"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2016-01-01", "name": "afterset", "location": "local",
		"sku": map[string]any{"name": "Standard_LRS"}, "dependsOn": []any{"slow"}}
	r := e.Do(http.MethodPut, depPath(e, "rg", "c"), depBody(tmplOf([]any{set, after}, nil), nil))
	if r.Status != http.StatusCreated {
		t.Fatalf("deploy: %d %s", r.Status, r.Body)
	}
	if c := e.Do(http.MethodPost, depPath(e, "rg", "c")+"/cancel", nil); c.Status != http.StatusNoContent {
		t.Fatalf("cancel: %d %s", c.Status, c.Body)
	}
	if st, res := waitDeployment(t, e, r, time.Minute); st != "Canceled" {
		t.Fatalf("deployment %s: %v", st, res)
	}
	if r := e.Do(http.MethodGet, e.RGPath("rg")+"/providers/Microsoft.Storage/storageAccounts/afterset?api-version=2016-01-01", nil); r.Status != http.StatusNotFound {
		t.Fatalf("the dependent of a canceled deployment was created: %d", r.Status)
	}
	// The record can be replaced now.
	if r := e.Do(http.MethodPut, depPath(e, "rg", "c"), depBody(tmplOf([]any{set}, nil), nil)); r.Status != http.StatusOK {
		t.Fatalf("redeploy after cancel: %d %s", r.Status, r.Body)
	}
}

// TestDeployHistoryBound: a resource group keeps at most deploy.MaxHistory
// deployments; a new one beyond removes the oldest finished one.
func TestDeployHistoryBound(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	ctx := context.Background()
	old := time.Now().Add(-time.Hour)
	var ops []store.Op
	for i := range deploy.MaxHistory {
		rec := &deploy.Record{Sub: e.Sub, RG: "rg", Name: fmt.Sprintf("old%03d", i), Template: json.RawMessage(`{}`), Mode: "Incremental",
			State: deploy.StateSucceeded, Created: old.Add(time.Duration(i) * time.Second), Timestamp: old}
		ops = append(ops, state.PutOp(deploy.Key(e.Sub, "rg", rec.Name), rec))
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := e.Server.Store.Txn(ctx, nil, ops[:n]...); err != nil {
			t.Fatal(err)
		}
		ops = ops[n:]
	}
	st, res := waitDeployment(t, e, e.Do(http.MethodPut, depPath(e, "rg", "new"), depBody(tmplOf([]any{}, nil), nil)), time.Minute)
	if st != "Succeeded" {
		t.Fatalf("deployment %s: %v", st, res)
	}
	var list struct{ Value []map[string]any }
	_ = e.Do(http.MethodGet, e.RGPath("rg")+"/providers/Microsoft.Resources/deployments", nil).JSON(&list)
	if len(list.Value) != deploy.MaxHistory || list.Value[0]["name"] != "new" {
		t.Fatalf("%d deployments kept (newest %v), want %d", len(list.Value), list.Value[0]["name"], deploy.MaxHistory)
	}
	if r := e.Do(http.MethodGet, depPath(e, "rg", "old000"), nil); r.Status != http.StatusNotFound {
		t.Fatalf("the oldest deployment was kept: %d", r.Status)
	}
	if r := e.Do(http.MethodGet, depPath(e, "rg", "old001"), nil); r.Status != http.StatusOK {
		t.Fatalf("the second oldest deployment is gone: %d", r.Status)
	}
}

// TestDeployScaleSetExtensionChild: an extension written as a child
// resource of the scale set lands in the set's extensionProfile; deploying
// it again replaces it by name instead of adding a second one.
func TestDeployScaleSetExtensionChild(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	set := testenv.VMSSBody(1, "latest", "Manual")
	set["type"], set["apiVersion"], set["name"] = "Microsoft.Compute/virtualMachineScaleSets", "2017-03-30", "web"
	set["resources"] = []any{map[string]any{
		"type": "extensions", "apiVersion": "2017-03-30", "name": "hello",
		"dependsOn": []any{"web"},
		"properties": map[string]any{"publisher": "Microsoft.Azure.Extensions", "type": "CustomScript", "typeHandlerVersion": "2.0",
			"settings": map[string]any{"commandToExecute": "[concat('echo ', parameters('msg'))]"}},
	}}
	tm := tmplOf([]any{set}, nil)
	tm["parameters"] = map[string]any{"msg": map[string]any{"type": "string"}}
	for _, msg := range []string{"one", "two"} {
		st, res := waitDeployment(t, e, e.Do(http.MethodPut, depPath(e, "rg", "ext-"+msg), depBody(tm, map[string]any{"msg": map[string]any{"value": msg}})), time.Minute)
		if st != "Succeeded" {
			t.Fatalf("deployment %s: %v", st, res)
		}
		var got struct {
			Properties struct {
				VirtualMachineProfile struct {
					ExtensionProfile struct {
						Extensions []struct {
							Name       string
							Properties struct{ Settings map[string]any }
						}
					}
				}
			}
		}
		if err := e.Do(http.MethodGet, e.VMSSPath("rg", "web"), nil).JSON(&got); err != nil {
			t.Fatal(err)
		}
		exts := got.Properties.VirtualMachineProfile.ExtensionProfile.Extensions
		if len(exts) != 1 || exts[0].Name != "hello" || exts[0].Properties.Settings["commandToExecute"] != "echo "+msg {
			t.Fatalf("extensions after deploying %q: %+v", msg, exts)
		}
	}
}
