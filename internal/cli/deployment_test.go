package cli

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

func TestParseDeploymentParameters(t *testing.T) {
	tmpl := map[string]any{"parameters": map[string]any{
		"count": map[string]any{"type": "Int"}, "flag": map[string]any{"type": "bool"},
		"tags": map[string]any{"type": "object"}, "name": map[string]any{"type": "string"},
	}}
	files := map[string]string{
		"p.json":    `{"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentParameters.json#", "contentVersion": "1.0.0.0", "parameters": {"name": {"value": "fromfile"}, "count": {"value": 2}}}`,
		"bare.json": `{"name": {"value": "bare"}}`,
	}
	read := func(p string) ([]byte, error) {
		if s, ok := files[p]; ok {
			return []byte(s), nil
		}
		return nil, errors.New("no such file")
	}
	v := func(x any) map[string]any { return map[string]any{"value": x} }
	tests := []struct {
		name string
		args []string
		want map[string]any
		err  bool
	}{
		{"file then key=value overrides", []string{"@p.json", "count=5"}, map[string]any{"name": v("fromfile"), "count": v(int64(5))}, false},
		{"bare file", []string{"@bare.json"}, map[string]any{"name": v("bare")}, false},
		{"typed values", []string{"flag=true", `tags={"a":"b"}`, "name=7"}, map[string]any{"flag": v(true), "tags": v(map[string]any{"a": "b"}), "name": v("7")}, false},
		{"inline JSON", []string{`{"name": {"value": "j"}}`}, map[string]any{"name": v("j")}, false},
		{"bad int", []string{"count=many"}, nil, true},
		{"missing file", []string{"@nope.json"}, nil, true},
		{"no equals", []string{"count"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDeploymentParameters(tt.args, tmpl, read)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if !tt.err && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDeploymentCommands: create (with the live view of operations), show,
// list, what-if, validate, a refused Complete mode, delete.
func TestDeploymentCommands(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)
	c.ok("group", "create", "-n", "rg")
	tmpl := filepath.Join("..", "..", "testdata", "templates", "vmss-no-network.json")
	params := filepath.Join(t.TempDir(), "params.json")
	if err := os.WriteFile(params, []byte(`{"$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentParameters.json#", "contentVersion": "1.0.0.0", "parameters": {
		"osImagePublisher": {"value": "vmssd"}, "osImageOffer": {"value": "demo"}, "osImageSku": {"value": "guest"}, "adminPassword": {"value": "S3cret!pass"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"-g", "rg", "--template-file", tmpl, "-p", "@" + params, "-p", "vmssName=cli", "-p", "instanceCount=1"}
	out, errOut, code := c.run(append([]string{"deployment", "group", "create", "-n", "d1", "-o", "json"}, base...)...)
	if code != 0 {
		t.Fatalf("create: %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, "Succeeded  Microsoft.Storage/storageAccounts") || !strings.Contains(errOut, "Succeeded  Microsoft.Compute/virtualMachineScaleSets") {
		t.Fatalf("live view:\n%s", errOut)
	}
	var d struct {
		Name       string
		Properties struct {
			ProvisioningState string
			Outputs           map[string]struct{ Value any }
		}
	}
	c.json(&d, "deployment", "group", "show", "-g", "rg", "-n", "d1")
	if d.Properties.ProvisioningState != "Succeeded" || d.Properties.Outputs["vmssId"].Value == nil {
		t.Fatalf("show: %+v", d)
	}
	if rows := c.tsvRows("deployment", "group", "list", "-g", "rg", "--query", "[].name"); len(rows) != 1 || rows[0][0] != "d1" {
		t.Fatalf("list: %v", rows)
	}
	wi := c.ok(append([]string{"deployment", "group", "what-if", "-n", "d2", "-o", "table"}, append(slices.Clone(base[:len(base)-1]), "instanceCount=3")...)...)
	if !strings.Contains(wi, "Modify") || !strings.Contains(wi, "sku.capacity") || !strings.Contains(wi, "NoChange") {
		t.Fatalf("what-if:\n%s", wi)
	}
	c.ok(append([]string{"deployment", "group", "validate", "-n", "d3"}, base...)...)
	if _, errOut, code := c.run(append([]string{"deployment", "group", "create", "-n", "d4", "--mode", "Complete"}, base...)...); code == 0 || !strings.Contains(errOut, "InvalidDeploymentMode") {
		t.Fatalf("complete mode: %d %s", code, errOut)
	}
	c.ok("deployment", "group", "delete", "-g", "rg", "-n", "d1")
	if _, _, code := c.run("deployment", "group", "show", "-g", "rg", "-n", "d1"); code != ExitNotFound {
		t.Fatalf("show after delete: exit %d", code)
	}
	if _, errOut, code := c.run("deployment", "group", "cancel", "-g", "rg", "-n", "d4"); code == 0 {
		t.Fatalf("cancel of a missing deployment: %s", errOut)
	}
}
