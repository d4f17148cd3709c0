package azcli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestAzDeploymentGroup: az deployment group validate, what-if, create,
// show, list and delete with an Azure Stack-style scale-set template
// (apiProfile 2018-03-01-hybrid, storage account, virtual network, public
// IP, load balancer with a NAT pool, uniqueString names),
// parameters from a file and key=value, against vmssd as a registered
// cloud with the hybrid profile.
func TestAzDeploymentGroup(t *testing.T) {
	e, _, a := startWithAZ(t)
	e.CreateRG("rg")
	tmpl, err := filepath.Abs(filepath.Join("..", "..", "testdata", "templates", "vmss-new-network.json"))
	if err != nil {
		t.Fatal(err)
	}
	params := filepath.Join(t.TempDir(), "params.json")
	if err := os.WriteFile(params, []byte(`{"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentParameters.json#", "contentVersion": "1.0.0.0", "parameters": {
		"osImagePublisher": {"value": "vmssd"}, "osImageOffer": {"value": "demo"}, "osImageSku": {"value": "guest"}, "adminPassword": {"value": "S3cret!pass"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	args := func(verb, name string, count string) []string {
		return []string{"deployment", "group", verb, "-g", "rg", "-n", name, "--template-file", tmpl,
			"--parameters", "@" + params, "--parameters", "vmssName=azweb", "instanceCount=" + count}
	}
	a.run(args("validate", "d1", "2")...)
	if out := a.run(append(args("what-if", "d1", "2"), "--no-pretty-print", "-o", "json")...); !strings.Contains(out, `"Create"`) {
		t.Fatalf("what-if before deploying:\n%s", out)
	}
	var d struct {
		Name       string `json:"name"`
		Properties struct {
			ProvisioningState string                            `json:"provisioningState"`
			Outputs           map[string]map[string]interface{} `json:"outputs"`
		} `json:"properties"`
	}
	a.json(&d, args("create", "d1", "2")...)
	if d.Properties.ProvisioningState != "Succeeded" {
		t.Fatalf("az deployment group create: %+v", d)
	}
	id, _ := d.Properties.Outputs["vmssId"]["value"].(string)
	set := id[strings.LastIndex(id, "/")+1:]
	waitVMs(t, e, "rg", set, "2 running instances", func(m map[string]vm) bool { return len(m) == 2 })

	// what-if with a larger capacity shows the capacity change; the
	// redeploy scales the set out.
	if out := a.run(append(args("what-if", "d2", "3"), "--no-pretty-print", "-o", "json")...); !strings.Contains(out, "sku.capacity") || !strings.Contains(out, `"Modify"`) {
		t.Fatalf("what-if with 3 instances:\n%s", out)
	}
	a.run(args("create", "d2", "3")...)
	waitVMs(t, e, "rg", set, "3 instances", func(m map[string]vm) bool { return len(m) == 3 })

	if st := a.strs("[].properties.provisioningState", "deployment", "group", "list", "-g", "rg"); len(st) != 2 || st[0] != "Succeeded" {
		t.Fatalf("az deployment group list: %v", st)
	}
	a.json(&d, "deployment", "group", "show", "-g", "rg", "-n", "d1")
	if d.Name != "d1" {
		t.Fatalf("show: %+v", d)
	}
	if ops := a.strs("[].properties.provisioningState", "deployment", "operation", "group", "list", "-g", "rg", "-n", "d1"); len(ops) != 5 {
		t.Fatalf("az deployment operation group list: %v", ops)
	}
	a.run("deployment", "group", "delete", "-g", "rg", "-n", "d1")
	if _, errOut, err := a.try("deployment", "group", "show", "-g", "rg", "-n", "d1"); err == nil || !strings.Contains(errOut, "DeploymentNotFound") {
		t.Fatalf("show after delete: %v %s", err, errOut)
	}
	testenv.Eventually(t, 10*time.Second, "the scale set survives the record's deletion", func() bool {
		return len(vms(t, e, "rg", set)) == 3
	})
}
