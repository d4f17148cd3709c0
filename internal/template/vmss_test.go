package template

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func loadVMSS(t *testing.T) *Template {
	t.Helper()
	src, err := os.ReadFile("testdata/vmss-azurestack.json")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// topoOrder orders resources the way an executor would: dependencies first.
func topoOrder(t *testing.T, rs []*Resource) []string {
	t.Helper()
	done := map[string]bool{}
	var order []string
	for len(order) < len(rs) {
		progressed := false
		for _, r := range rs {
			if done[r.ID] {
				continue
			}
			ready := true
			for _, d := range r.DependsOn {
				if !done[d] {
					ready = false
				}
			}
			if ready {
				done[r.ID] = true
				order = append(order, r.Type)
				progressed = true
			}
		}
		if !progressed {
			t.Fatalf("dependency cycle among %v", order)
		}
	}
	return order
}

func TestAzureStackScaleSetTemplate(t *testing.T) {
	ctx := t.Context()
	tmpl := loadVMSS(t)
	env := testEnv()
	d, err := Prepare(ctx, tmpl, map[string]any{
		"vmssName":      "Web",
		"instanceCount": "3", // a string for an int parameter, coerced as ARM does
		"adminPassword": "P@ssw0rd!",
		"osImageSku":    "18.04-lts", // allowed values match case-insensitively
	}, env)
	if err != nil {
		t.Fatal(err)
	}
	rgID := "/subscriptions/" + testSub + "/resourceGroups/" + testRG
	hash := UniqueString(rgID)
	infix := strings.ToLower(("Web" + hash)[:9])

	if d.Parameters["instanceCount"] != int64(3) {
		t.Fatalf("instanceCount = %#v", d.Parameters["instanceCount"])
	}
	if !d.SecureParameters["adminPassword"] || d.SecureParameters["vmssName"] {
		t.Fatalf("secure parameters = %v", d.SecureParameters)
	}
	if d.Variables["storageAccountName"] != hash+"sa" || d.Variables["namingInfix"] != infix {
		t.Fatalf("variables: %v", d.Variables)
	}

	want := []struct{ typ, name, api string }{
		{"Microsoft.Storage/storageAccounts", hash + "sa", "2016-01-01"},
		{"Microsoft.Network/virtualNetworks", infix + "vnet", "2017-10-01"},
		{"Microsoft.Network/publicIPAddresses", infix + "pip", "2017-10-01"},
		{"Microsoft.Network/loadBalancers", infix + "lb", "2017-10-01"},
		{"Microsoft.Compute/virtualMachineScaleSets", infix, "2017-03-30"},
	}
	if len(d.Resources) != len(want) {
		t.Fatalf("%d resources", len(d.Resources))
	}
	byType := map[string]*Resource{}
	for i, w := range want {
		r := d.Resources[i]
		byType[r.Type] = r
		if r.Type != w.typ || r.Name != w.name || r.APIVersion != w.api || !r.Condition {
			t.Errorf("resource %d = %s %s @%s", i, r.Type, r.Name, r.APIVersion)
		}
		if r.ID != rgID+"/providers/"+w.typ+"/"+w.name {
			t.Errorf("resource %d id = %s", i, r.ID)
		}
	}
	vmss := byType["Microsoft.Compute/virtualMachineScaleSets"]
	lb := byType["Microsoft.Network/loadBalancers"]
	for _, dep := range []string{"Microsoft.Storage/storageAccounts", "Microsoft.Network/loadBalancers", "Microsoft.Network/virtualNetworks"} {
		if !slices.Contains(vmss.DependsOn, byType[dep].ID) {
			t.Errorf("the scale set does not depend on %s: %v", dep, vmss.DependsOn)
		}
	}
	if len(lb.DependsOn) != 1 || lb.DependsOn[0] != byType["Microsoft.Network/publicIPAddresses"].ID {
		t.Errorf("load balancer depends on %v", lb.DependsOn)
	}
	order := topoOrder(t, d.Resources)
	if order[len(order)-1] != "Microsoft.Compute/virtualMachineScaleSets" || slices.Index(order, "Microsoft.Network/loadBalancers") < slices.Index(order, "Microsoft.Network/publicIPAddresses") {
		t.Errorf("execution order %v", order)
	}

	// Static bodies are ready at Prepare time, with ARM's types.
	pip := byType["Microsoft.Network/publicIPAddresses"].Body
	if got, _ := property(pip["properties"].(map[string]any)["dnsSettings"], "domainNameLabel"); got != "web" {
		t.Errorf("public IP DNS label = %v", got)
	}
	nat := lb.Body["properties"].(map[string]any)["inboundNatPools"].([]any)[0].(map[string]any)["properties"].(map[string]any)
	if nat["frontendPortRangeStart"] != int64(50000) || nat["backendPort"] != int64(22) {
		t.Errorf("NAT pool = %v", nat)
	}
	if lb.Body["apiVersion"] != "2017-10-01" || lb.Body["location"] != "local" {
		t.Errorf("load balancer body = %v", lb.Body)
	}

	// The scale set reads the storage account's blob endpoint: its body is
	// evaluated at execution time.
	if !vmss.NeedsRuntime || vmss.Body != nil {
		t.Fatalf("the scale set should need runtime evaluation")
	}
	body, err := d.EvaluateBody(ctx, vmss)
	if err != nil {
		t.Fatal(err)
	}
	sku := body["sku"].(map[string]any)
	if sku["capacity"] != int64(3) || sku["name"] != "Standard_A1" {
		t.Errorf("sku = %v", sku)
	}
	vmp := body["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)
	sp := vmp["storageProfile"].(map[string]any)
	if vc := sp["osDisk"].(map[string]any)["vhdContainers"].([]any); vc[0] != "https://sa.blob.local.vmssd/"+infix+"vhd" {
		t.Errorf("vhdContainers = %v", vc)
	}
	img := sp["imageReference"].(map[string]any)
	if img["version"] != "latest" || img["sku"] != "18.04-lts" || img["publisher"] != "Canonical" {
		t.Errorf("imageReference = %v", img)
	}
	if vmp["osProfile"].(map[string]any)["adminPassword"] != "P@ssw0rd!" {
		t.Errorf("osProfile = %v", vmp["osProfile"])
	}
	ipc := vmp["networkProfile"].(map[string]any)["networkInterfaceConfigurations"].([]any)[0].(map[string]any)["properties"].(map[string]any)["ipConfigurations"].([]any)[0].(map[string]any)["properties"].(map[string]any)
	if ipc["subnet"].(map[string]any)["id"] != byType["Microsoft.Network/virtualNetworks"].ID+"/subnets/"+infix+"subnet" {
		t.Errorf("subnet = %v", ipc["subnet"])
	}
	if ipc["loadBalancerInboundNatPools"].([]any)[0].(map[string]any)["id"] != lb.ID+"/inboundNatPools/"+infix+"natpool" {
		t.Errorf("NAT pools = %v", ipc["loadBalancerInboundNatPools"])
	}

	outs, err := d.Outputs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if outs["fqdn"].Value != "web.local.cloudapp.vmssd" || outs["vmssId"].Value != vmss.ID {
		t.Errorf("outputs = %v", outs)
	}
	if !deepEqual(outs["sshPorts"].Value, js(`[50000,50001,50002]`)) {
		t.Errorf("sshPorts = %v", outs["sshPorts"].Value)
	}

	// Redeploying with a larger instanceCount changes only the capacity.
	d2, err := Prepare(ctx, tmpl, map[string]any{"vmssName": "Web", "instanceCount": 5, "adminPassword": "P@ssw0rd!", "osImageSku": "18.04-lts"}, env)
	if err != nil {
		t.Fatal(err)
	}
	body2, err := d2.EvaluateBody(ctx, d2.Resources[4])
	if err != nil {
		t.Fatal(err)
	}
	if body2["sku"].(map[string]any)["capacity"] != int64(5) || body2["name"] != body["name"] {
		t.Errorf("redeploy body = %v", body2["sku"])
	}
}

func TestAzureStackScaleSetTemplateBadParameters(t *testing.T) {
	ctx := t.Context()
	tmpl := loadVMSS(t)
	for _, tc := range []struct {
		name   string
		params map[string]any
		code   string
		path   string
		msg    string
	}{
		{"not an int", map[string]any{"vmssName": "web", "adminPassword": "x", "instanceCount": "three"}, CodeInvalidTemplateDeployment, "parameters.instanceCount", "expected a value of type 'Integer'"},
		{"too many", map[string]any{"vmssName": "web", "adminPassword": "x", "instanceCount": 101}, CodeInvalidTemplateDeployment, "parameters.instanceCount", "less than or equal to '100'"},
		{"too short", map[string]any{"vmssName": "w", "adminPassword": "x"}, CodeInvalidTemplateDeployment, "parameters.vmssName", "greater than or equal to '3'"},
		{"not allowed", map[string]any{"vmssName": "web", "adminPassword": "x", "osImageSku": "20.04"}, CodeInvalidTemplateDeployment, "parameters.osImageSku", "not part of the allowed value(s)"},
		{"missing", map[string]any{"vmssName": "web"}, CodeInvalidTemplate, "parameters.adminPassword", "is not provided"},
		{"unknown", map[string]any{"vmssName": "web", "adminPassword": "x", "extra": 1}, CodeInvalidTemplate, "parameters", "'extra'"},
	} {
		_, err := Prepare(ctx, tmpl, tc.params, testEnv())
		var te *Error
		if !errors.As(err, &te) {
			t.Errorf("%s: error %v is not a template error", tc.name, err)
			continue
		}
		if te.Code != tc.code || te.Path != tc.path || !strings.Contains(te.Error(), tc.msg) {
			t.Errorf("%s: got %s %s %q", tc.name, te.Code, te.Path, te.Error())
		}
		if tc.path != "parameters" && te.Line == 0 {
			t.Errorf("%s: no line number in %q", tc.name, te.Error())
		}
		arm := te.ARM()
		if arm.Status() != 400 || arm.ARMCode() != tc.code || arm.Target != tc.path {
			t.Errorf("%s: ARM error %v", tc.name, arm)
		}
	}
}
