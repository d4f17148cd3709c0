package template

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func prepareJSON(t *testing.T, src string, params map[string]any) (*Deployment, error) {
	t.Helper()
	tmpl, err := Parse([]byte(src))
	if err != nil {
		return nil, err
	}
	return Prepare(t.Context(), tmpl, params, testEnv())
}

func mustPrepare(t *testing.T, src string, params map[string]any) *Deployment {
	t.Helper()
	d, err := prepareJSON(t, src, params)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ids(rs []*Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func TestParameters(t *testing.T) {
	src := `{
  "parameters": {
    "s": {"type": "STRING", "defaultValue": "[concat(parameters('prefix'), '-x')]"},
    "prefix": {"type": "string", "defaultValue": "[toUpper('p')]"},
    "i": {"type": "int", "defaultValue": 1, "minValue": 1, "maxValue": 5},
    "b": {"type": "Bool", "defaultValue": false},
    "o": {"type": "secureObject", "defaultValue": {"k": "[parameters('prefix')]"}},
    "a": {"type": "array", "defaultValue": ["x"], "allowedValues": ["x", "y", "z"], "maxLength": 2},
    "ss": {"type": "SecureString", "defaultValue": ""}
  },
  "resources": []
}`
	d := mustPrepare(t, src, map[string]any{"I": "4", "b": "True", "a": []any{"y", "z"}})
	want := map[string]any{"s": "P-x", "prefix": "P", "i": int64(4), "b": true, "o": js(`{"k":"P"}`), "a": js(`["y","z"]`), "ss": ""}
	for k, v := range want {
		if !deepEqual(d.Parameters[k], v) {
			t.Errorf("parameter %s = %#v, want %#v", k, d.Parameters[k], v)
		}
	}
	if !d.SecureParameters["o"] || !d.SecureParameters["ss"] || d.SecureParameters["s"] {
		t.Errorf("secure = %v", d.SecureParameters)
	}
	for _, tc := range []struct {
		params map[string]any
		msg    string
	}{
		{map[string]any{"i": 9}, "less than or equal to '5'"},
		{map[string]any{"i": 0}, "greater than or equal to '1'"},
		{map[string]any{"i": 1.5}, "type 'Integer'"},
		{map[string]any{"b": "yes"}, "type 'Boolean'"},
		{map[string]any{"s": 5}, "type 'String'"},
		{map[string]any{"o": "x"}, "type 'Object'"},
		{map[string]any{"a": []any{"x", "q"}}, "'q' is not part of the allowed value(s)"},
		{map[string]any{"a": []any{"x", "y", "z"}}, "less than or equal to '2'"},
	} {
		_, err := prepareJSON(t, src, tc.params)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: error %v, want %q", tc.params, err, tc.msg)
		}
	}
	_, err := prepareJSON(t, `{"parameters": {"x": {"type": "float"}}, "resources": []}`, nil)
	if err == nil || !strings.Contains(err.Error(), "'float'") {
		t.Errorf("bad type: %v", err)
	}
	_, err = prepareJSON(t, `{"parameters": {"x": {"type": "string", "defaultValue": "[parameters('x')]"}}, "resources": []}`, nil)
	if err == nil || !strings.Contains(err.Error(), "refers to itself") {
		t.Errorf("self reference: %v", err)
	}
}

func TestParameterValues(t *testing.T) {
	got, err := ParameterValues(map[string]any{"a": map[string]any{"value": 5.0}, "b": map[string]any{"value": "x"}})
	if err != nil || got["a"] != int64(5) || got["b"] != "x" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParameterValues(map[string]any{"a": map[string]any{"reference": map[string]any{}}}); err == nil || !strings.Contains(err.Error(), "Key Vault") {
		t.Fatalf("key vault reference: %v", err)
	}
	if _, err := ParameterValues(map[string]any{"a": 1}); err == nil {
		t.Fatal("a bare value must be refused")
	}
}

func TestVariablesAndFunctions(t *testing.T) {
	d := mustPrepare(t, `{
  "functions": [{
    "namespace": "contoso",
    "members": {
      "uniqueName": {
        "parameters": [{"name": "namePrefix", "type": "string"}],
        "output": {"type": "string", "value": "[concat(toLower(parameters('namePrefix')), uniqueString(resourceGroup().id))]"}
      }
    }
  }],
  "variables": {
    "b": "[concat(variables('A'), '-b')]",
    "a": "base",
    "disks": {
      "copy": [{"name": "dataDisks", "count": 2, "input": {"lun": "[copyIndex('dataDisks')]", "size": "[mul(10, add(1, copyIndex('dataDisks')))]"}}]
    },
    "copy": [
      {"name": "names", "count": 3, "input": "[concat('vm', copyIndex('names', 1))]"}
    ],
    "fn": "[contoso.UNIQUENAME('Web')]",
    "escaped": "[[literal]"
  },
  "resources": []
}`, nil)
	want := map[string]any{
		"a":       "base",
		"b":       "base-b",
		"disks":   js(`{"dataDisks":[{"lun":0,"size":10},{"lun":1,"size":20}]}`),
		"names":   js(`["vm1","vm2","vm3"]`),
		"fn":      "web" + UniqueString("/subscriptions/"+testSub+"/resourceGroups/"+testRG),
		"escaped": "[literal]",
	}
	for k, v := range want {
		if !deepEqual(d.Variables[k], v) {
			t.Errorf("variable %s = %#v, want %#v", k, d.Variables[k], v)
		}
	}
	for _, tc := range []struct{ src, msg string }{
		{`{"variables": {"a": "[variables('b')]", "b": "[variables('a')]"}, "resources": []}`, "refers to itself"},
		{`{"variables": {"a": "[reference('x')]"}, "resources": []}`, "not expected at this location"},
		{`{"functions": [{"namespace": "n", "members": {"f": {"output": {"type": "string", "value": "[variables('a')]"}}}}], "variables": {"a": "[n.f()]"}, "resources": []}`, "not expected in a user-defined function"},
		{`{"variables": {"a": "[n.g()]"}, "resources": []}`, "'n.g' is not defined"},
	} {
		_, err := prepareJSON(t, tc.src, nil)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.src, err, tc.msg)
		}
	}
}

func TestNestedChildResources(t *testing.T) {
	d := mustPrepare(t, `{
  "apiProfile": "2019-03-01-hybrid",
  "resources": [
    {
      "type": "Microsoft.Network/virtualNetworks",
      "name": "vnet",
      "location": "local",
      "resources": [
        {"type": "subnets", "name": "front", "properties": {"addressPrefix": "10.0.1.0/24"}},
        {"type": "Microsoft.Network/virtualNetworks/subnets", "name": "vnet/back", "dependsOn": ["front"], "properties": {}}
      ]
    },
    {"type": "Microsoft.Network/virtualNetworks/subnets", "name": "vnet/top", "apiVersion": "2020-11-01", "dependsOn": ["[resourceId('Microsoft.Network/virtualNetworks', 'vnet')]"]}
  ]
}`, nil)
	if got := ids(d.Resources); !slices.Equal(got, []string{"vnet", "vnet/front", "vnet/back", "vnet/top"}) {
		t.Fatalf("resources %v", got)
	}
	vnet, front, back, top := d.Resources[0], d.Resources[1], d.Resources[2], d.Resources[3]
	if front.Type != "Microsoft.Network/virtualNetworks/subnets" || front.APIVersion != "2017-10-01" {
		t.Errorf("child = %s @%s", front.Type, front.APIVersion)
	}
	if front.ID != vnet.ID+"/subnets/front" {
		t.Errorf("child id = %s", front.ID)
	}
	if !slices.Equal(front.DependsOn, []string{vnet.ID}) {
		t.Errorf("child depends on %v, want its parent", front.DependsOn)
	}
	if !slices.Equal(back.DependsOn, []string{front.ID, vnet.ID}) {
		t.Errorf("back depends on %v", back.DependsOn)
	}
	if top.APIVersion != "2020-11-01" || !slices.Equal(top.DependsOn, []string{vnet.ID}) {
		t.Errorf("top = @%s %v", top.APIVersion, top.DependsOn)
	}
	if front.Body["name"] != "vnet/front" || front.Body["type"] != "Microsoft.Network/virtualNetworks/subnets" {
		t.Errorf("child body = %v", front.Body)
	}
	if _, ok := vnet.Body["resources"]; ok {
		t.Errorf("the parent body keeps its nested resources: %v", vnet.Body)
	}
}

func TestCopyLoopsConditionsAndDependencies(t *testing.T) {
	d := mustPrepare(t, `{
  "parameters": {"count": {"type": "int", "defaultValue": 5}, "withLog": {"type": "bool", "defaultValue": false}},
  "resources": [
    {
      "type": "Microsoft.Storage/storageAccounts", "apiVersion": "2019-06-01",
      "name": "[concat('sa', copyIndex())]",
      "copy": {"name": "storeLoop", "count": "[parameters('count')]", "mode": "serial", "batchSize": 2},
      "properties": {"index": "[copyIndex('storeLoop', 10)]"}
    },
    {
      "type": "Microsoft.Insights/components", "apiVersion": "2015-05-01", "name": "log",
      "condition": "[parameters('withLog')]"
    },
    {
      "type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2018-11-01",
      "name": "[concat('pip', copyIndex(1))]",
      "copy": {"name": "pips", "count": 2},
      "dependsOn": ["storeLoop", "log"]
    },
    {
      "type": "Microsoft.Network/networkInterfaces", "apiVersion": "2018-11-01", "name": "none",
      "copy": {"name": "empty", "count": 0}
    }
  ]
}`, nil)
	if got := ids(d.Resources); !slices.Equal(got, []string{"sa0", "sa1", "sa2", "sa3", "sa4", "log", "pip1", "pip2"}) {
		t.Fatalf("resources %v", got)
	}
	id := func(i int) string { return d.Resources[i].ID }
	// Serial batches of 2: {0,1} then {2,3} then {4}.
	for i, want := range [][]string{nil, nil, {id(0), id(1)}, {id(0), id(1)}, {id(2), id(3)}} {
		if !slices.Equal(d.Resources[i].DependsOn, want) {
			t.Errorf("sa%d depends on %v, want %v", i, d.Resources[i].DependsOn, want)
		}
		c := d.Resources[i].Copy
		if c == nil || c.Name != "storeLoop" || c.Index != i || c.Count != 5 || c.Mode != "Serial" || c.BatchSize != 2 {
			t.Errorf("copy info %+v", c)
		}
		if got := d.Resources[i].Body["properties"].(map[string]any)["index"]; got != int64(10+i) {
			t.Errorf("sa%d index = %v", i, got)
		}
	}
	if d.Resources[5].Condition {
		t.Error("the log resource's condition is false")
	}
	// pips wait for the whole loop, and not for the resource that is not deployed.
	if got := d.Resources[6].DependsOn; !slices.Equal(got, []string{id(0), id(1), id(2), id(3), id(4)}) {
		t.Errorf("pip depends on %v", got)
	}
}

func TestResourceErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, path, msg string
		line                 int
	}{
		{"unknown dependency", `{"resources": [
  {"type": "A.B/c", "apiVersion": "1", "name": "x",
   "dependsOn": ["nope"]}
]}`, "resources[0].dependsOn[0]", "'nope' is not defined in the template", 3},
		{"cycle", `{"resources": [
  {"type": "A.B/c", "apiVersion": "1", "name": "x", "dependsOn": ["y"]},
  {"type": "A.B/c", "apiVersion": "1", "name": "y", "dependsOn": ["x"]}
]}`, "resources[0]", "circular dependency", 2},
		{"self", `{"resources": [{"type": "A.B/c", "apiVersion": "1", "name": "x", "dependsOn": ["x"]}]}`, "resources[0].dependsOn[0]", "depends on itself", 1},
		{"duplicate", `{"resources": [
  {"type": "A.B/c", "apiVersion": "1", "name": "x"},
  {"type": "A.B/c", "apiVersion": "1", "name": "X"}
]}`, "resources[1]", "defined multiple times", 3},
		{"segments", `{"resources": [{"type": "A.B/c/d", "apiVersion": "1", "name": "x"}]}`, "resources[0].name", "incorrect segment lengths", 1},
		{"no api version", `{"resources": [{"type": "A.B/c", "name": "x"}]}`, "resources[0]", "must have an 'apiVersion'", 1},
		{"profile gap", `{"apiProfile": "2018-03-01-hybrid", "resources": [{"type": "Microsoft.Web/sites", "name": "x"}]}`, "resources[0]", "does not cover it", 1},
		{"bad profile", `{"apiProfile": "2031-01-01-hybrid", "resources": []}`, "apiProfile", "is not supported", 1},
		{"bad expression", `{"resources": [
  {"type": "A.B/c", "apiVersion": "1", "name": "x",
   "properties": {"p": "[concat('a',]"}}
]}`, "resources[0]", "language expression is not valid", 2},
		{"bad function arg", `{"resources": [
  {"type": "A.B/c", "apiVersion": "1",
   "name": "[add('a', 1)]"}
]}`, "resources[0].name", "the template function 'add' is not valid", 3},
		{"copy count", `{"resources": [{"type": "A.B/c", "apiVersion": "1", "name": "x", "copy": {"name": "l", "count": 801}}]}`, "resources[0].copy", "out of range", 1},
		{"reference in name", `{"resources": [{"type": "A.B/c", "apiVersion": "1", "name": "[reference('y').x]"}, {"type": "A.B/c", "apiVersion": "1", "name": "y"}]}`, "resources[0].name", "not expected at this location", 1},
		{"no resources", `{"parameters": {}}`, "", "must have a 'resources' array", 0},
		{"symbolic names", `{"languageVersion": "2.0", "resources": {}}`, "languageVersion", "not supported", 1},
	} {
		_, err := prepareJSON(t, tc.src, nil)
		var te *Error
		if !errors.As(err, &te) {
			t.Errorf("%s: %v is not a template error", tc.name, err)
			continue
		}
		if te.Path != tc.path || !strings.Contains(te.Error(), tc.msg) || te.Code != CodeInvalidTemplate {
			t.Errorf("%s: got path %q code %s: %s", tc.name, te.Path, te.Code, te.Error())
		}
		if tc.line > 0 && te.Line != tc.line {
			t.Errorf("%s: line %d, want %d (%s)", tc.name, te.Line, tc.line, te.Error())
		}
	}
}

func TestJSONSyntaxErrorsAndComments(t *testing.T) {
	_, err := Parse([]byte("{\n  \"resources\": [\n    {,}\n  ]\n}"))
	var te *Error
	if !errors.As(err, &te) || te.Line != 3 || te.Code != CodeInvalidTemplate {
		t.Fatalf("syntax error = %#v", err)
	}
	if _, err := Parse([]byte(`{"resources": []} x`)); err == nil {
		t.Fatal("trailing data accepted")
	}
	tmpl, err := Parse([]byte("{\n  // a comment\n  \"resources\": [], /* block\n comment */ \"variables\": {\"a\": \"http://x//y\"}\n}"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Prepare(t.Context(), tmpl, nil, testEnv())
	if err != nil || d.Variables["a"] != "http://x//y" {
		t.Fatalf("%v %v", d, err)
	}
}

func TestRuntimeReferencesAndOutputs(t *testing.T) {
	d := mustPrepare(t, `{
  "resources": [
    {"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2017-10-01", "name": "pip", "properties": {}},
    {"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2016-01-01", "name": "sa", "properties": {}},
    {"type": "Microsoft.Web/sites", "apiVersion": "2020-01-01", "name": "app",
     "properties": {
       "host": "[reference('pip').dnsSettings.fqdn]",
       "key": "[listKeys(resourceId('Microsoft.Storage/storageAccounts', 'sa'), '2016-01-01').keys[0].value]",
       "api": "[reference('Microsoft.Network/publicIPAddresses/pip').apiVersionSeen]",
       "lazy": "[if(false(), reference('pip'), 'static')]"
     }}
  ],
  "outputs": {
    "host": {"type": "string", "value": "[reference('pip').dnsSettings.fqdn]"},
    "skipped": {"type": "string", "condition": "[false()]", "value": "[reference('missing-resource')]"},
    "count": {"type": "int", "value": "[length(createArray(1, 2))]"},
    "names": {"type": "array", "copy": {"count": 2, "input": "[concat('n', copyIndex())]"}},
    "bad": {"type": "int", "value": "text"}
  }
}`, nil)
	app := d.Resources[2]
	if !app.NeedsRuntime || app.Body != nil {
		t.Fatal("the app needs runtime evaluation")
	}
	if !slices.Equal(app.DependsOn, []string{d.Resources[0].ID, d.Resources[1].ID}) &&
		!slices.Equal(app.DependsOn, []string{d.Resources[1].ID, d.Resources[0].ID}) {
		t.Errorf("implicit dependencies from reference/list: %v", app.DependsOn)
	}
	body, err := d.EvaluateBody(t.Context(), app)
	if err != nil {
		t.Fatal(err)
	}
	props := body["properties"].(map[string]any)
	if props["host"] != "web.local.cloudapp.vmssd" || props["key"] != "key1" || props["api"] != "2017-10-01" || props["lazy"] != "static" {
		t.Errorf("props = %v", props)
	}
	_, err = d.Outputs(t.Context())
	if err == nil || !strings.Contains(err.Error(), "'bad'") {
		t.Fatalf("a string for an int output must fail: %v", err)
	}
	tmpl := d.st.tmpl
	delete(tmpl.raw["outputs"].(map[string]any), "bad")
	outs, err := d.Outputs(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if outs["host"].Value != "web.local.cloudapp.vmssd" || outs["count"].Value != int64(2) || !deepEqual(outs["names"].Value, js(`["n0","n1"]`)) {
		t.Errorf("outputs = %v", outs)
	}
	if _, ok := outs["skipped"]; ok {
		t.Error("an output whose condition is false is returned")
	}
}

func TestToARM(t *testing.T) {
	_, err := prepareJSON(t, `{"resources": [{"type": "A.B/c", "apiVersion": "1", "name": "[div(1, 0)]"}]}`, nil)
	arm := ToARM(err)
	if arm.Status() != 400 || arm.ARMCode() != "InvalidTemplate" || arm.Target != "resources[0].name" || !strings.Contains(arm.Message, "divide by zero") {
		t.Fatalf("ARM error = %+v", arm)
	}
	if ToARM(nil) != nil {
		t.Fatal("nil error")
	}
}

func TestSubscriptionScope(t *testing.T) {
	env := testEnv()
	env.ResourceGroup = nil
	env.Deployment.Location = "local"
	tmpl, err := Parse([]byte(`{"resources": [
  {"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2019-10-01", "name": "newRg", "location": "[deployment().location]"},
  {"type": "Microsoft.Resources/deployments", "apiVersion": "2019-10-01", "name": "inner", "resourceGroup": "newRg",
   "dependsOn": ["[subscriptionResourceId('Microsoft.Resources/resourceGroups', 'newRg')]"],
   "properties": {"mode": "Incremental", "template": {"resources": []}}}
]}`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Prepare(t.Context(), tmpl, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	rg, inner := d.Resources[0], d.Resources[1]
	if rg.ID != "/subscriptions/"+testSub+"/resourceGroups/newRg" || rg.Body["location"] != "local" {
		t.Errorf("rg = %s %v", rg.ID, rg.Body)
	}
	if inner.ID != "/subscriptions/"+testSub+"/resourceGroups/newRg/providers/Microsoft.Resources/deployments/inner" || inner.ResourceGroup != "newRg" {
		t.Errorf("inner = %s", inner.ID)
	}
	// resourceGroup() is not available at subscription scope.
	if _, err := EvaluateString(t.Context(), env, "[resourceGroup()]"); err == nil {
		t.Error("resourceGroup() at subscription scope must fail")
	}
}

func TestProfileAPIVersion(t *testing.T) {
	for _, tc := range []struct{ profile, typ, want string }{
		{"2018-03-01-hybrid", "Microsoft.Compute/virtualMachineScaleSets", "2017-03-30"},
		{"2018-03-01-hybrid", "Microsoft.Network/loadBalancers", "2017-10-01"},
		{"2018-03-01-hybrid", "Microsoft.Storage/storageAccounts", "2016-01-01"},
		{"2018-03-01-hybrid", "Microsoft.Resources/deployments", "2018-02-01"},
		{"2019-03-01-hybrid", "Microsoft.Compute/virtualMachineScaleSets", "2017-12-01"},
		{"2019-03-01-hybrid", "Microsoft.Compute/disks", "2017-03-30"},
		{"2019-03-01-hybrid", "Microsoft.Network/publicIPAddresses", "2017-10-01"},
		{"2019-03-01-hybrid", "Microsoft.Storage/storageAccounts", "2017-10-01"},
		{"2019-03-01-hybrid", "Microsoft.Resources/deployments", "2018-05-01"},
		{"2020-09-01-HYBRID", "microsoft.compute/virtualmachinescalesets", "2020-06-01"},
		{"2020-09-01-hybrid", "Microsoft.Compute/disks", "2019-07-01"},
		{"2020-09-01-hybrid", "Microsoft.Network/virtualNetworks/subnets", "2018-11-01"},
		{"2020-09-01-hybrid", "Microsoft.Storage/storageAccounts", "2019-06-01"},
		{"2020-09-01-hybrid", "Microsoft.Resources/deployments", "2019-10-01"},
		{"2020-09-01-hybrid", "Microsoft.Web/sites", ""},
		{"latest", "Microsoft.Compute/virtualMachineScaleSets", ""},
	} {
		if got := ProfileAPIVersion(tc.profile, tc.typ); got != tc.want {
			t.Errorf("%s %s = %q, want %q", tc.profile, tc.typ, got, tc.want)
		}
	}
}

func TestNestedDeployments(t *testing.T) {
	d := mustPrepare(t, `{
  "parameters": {"prefix": {"type": "string", "defaultValue": "outer"}},
  "variables": {"suffix": "-v"},
  "resources": [
    {
      "type": "Microsoft.Resources/deployments", "apiVersion": "2019-10-01", "name": "innerScope",
      "properties": {
        "mode": "Incremental",
        "expressionEvaluationOptions": {"scope": "inner"},
        "parameters": {"name": {"value": "[concat(parameters('prefix'), '-inner')]"}},
        "template": {
          "parameters": {"name": {"type": "string"}},
          "resources": [
            {"type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2018-11-01",
             "name": "[concat(parameters('name'), copyIndex())]", "copy": {"name": "ips", "count": 2}}
          ],
          "outputs": {"first": {"type": "string", "value": "[reference(concat(parameters('name'), '0')).dnsSettings.fqdn]"}}
        }
      }
    },
    {
      "type": "Microsoft.Resources/deployments", "apiVersion": "2019-10-01", "name": "outerScope",
      "properties": {
        "mode": "Incremental",
        "template": {
          "resources": [
            {"type": "Microsoft.Network/virtualNetworks", "apiVersion": "2018-11-01",
             "name": "[concat(parameters('prefix'), variables('suffix'))]"}
          ]
        }
      }
    }
  ]
}`, nil)
	inner, outer := d.Resources[0], d.Resources[1]
	tmpl := inner.Body["properties"].(map[string]any)["template"].(map[string]any)
	if name := tmpl["resources"].([]any)[0].(map[string]any)["name"]; name != "[concat(parameters('name'), copyIndex())]" {
		t.Fatalf("the inline template was evaluated by the outer deployment: %v", name)
	}
	if p := inner.Body["properties"].(map[string]any)["parameters"]; !deepEqual(p, js(`{"name":{"value":"outer-inner"}}`)) {
		t.Fatalf("nested parameters = %v", p)
	}
	nd, err := d.PrepareNested(t.Context(), inner.Body, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(nd.Resources); !slices.Equal(got, []string{"outer-inner0", "outer-inner1"}) {
		t.Fatalf("inner resources %v", got)
	}
	outs, err := nd.Outputs(t.Context())
	if err != nil || outs["first"].Value != "web.local.cloudapp.vmssd" {
		t.Fatalf("inner outputs %v %v", outs, err)
	}
	od, err := d.PrepareNested(t.Context(), outer.Body, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(od.Resources); !slices.Equal(got, []string{"outer-v"}) {
		t.Fatalf("outer-scope resources %v", got)
	}
	bad := deepCopy(outer.Body).(map[string]any)
	bad["properties"].(map[string]any)["parameters"] = map[string]any{"x": map[string]any{"value": 1}}
	if _, err := d.PrepareNested(t.Context(), bad, testEnv()); err == nil || !strings.Contains(err.Error(), "'outer' expression evaluation scope") {
		t.Fatalf("outer scope with parameters: %v", err)
	}
}

// EvaluateBody may run for many resources at once (the executor deploys
// independent resources in parallel).
func TestEvaluateBodyConcurrently(t *testing.T) {
	tmpl := loadVMSS(t)
	d, err := Prepare(t.Context(), tmpl, map[string]any{"vmssName": "web", "adminPassword": "x"}, testEnv())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 8)
	for i := 0; i < 8; i++ {
		go func() {
			for _, r := range d.Resources {
				if _, err := d.EvaluateBody(t.Context(), r); err != nil {
					errc <- err
					return
				}
			}
			_, err := d.Outputs(t.Context())
			errc <- err
		}()
	}
	for i := 0; i < 8; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func TestPropertyCopyInsideResourceCopy(t *testing.T) {
	d := mustPrepare(t, `{"resources": [{
  "type": "Microsoft.Compute/virtualMachines", "apiVersion": "2020-06-01",
  "name": "[concat('vm', copyIndex())]",
  "copy": {"name": "vms", "count": 2},
  "properties": {"storageProfile": {"copy": [{
    "name": "dataDisks", "count": 2,
    "input": {"lun": "[copyIndex('dataDisks')]", "name": "[concat('vm', copyIndex(), '-disk', copyIndex('dataDisks'))]", "vm": "[copyIndex('vms')]"}
  }]}}
}]}`, nil)
	disks := d.Resources[1].Body["properties"].(map[string]any)["storageProfile"].(map[string]any)["dataDisks"]
	want := js(`[{"lun":0,"name":"vm1-disk0","vm":1},{"lun":1,"name":"vm1-disk1","vm":1}]`)
	if !deepEqual(disks, want) {
		t.Fatalf("dataDisks = %v", disks)
	}
}

// A resource that is not deployed may hold expressions that only work when
// it is (new-or-existing): Prepare does not fail on them.
func TestConditionFalseBodyNotEvaluated(t *testing.T) {
	d := mustPrepare(t, `{
  "parameters": {"newOrExisting": {"type": "string", "defaultValue": "existing"}, "existing": {"type": "object", "defaultValue": {}}},
  "resources": [{
    "condition": "[equals(parameters('newOrExisting'), 'new')]",
    "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2018-11-01", "name": "vnet",
    "properties": {"addressSpace": "[parameters('existing').addressSpace]"}
  }]}`, nil)
	r := d.Resources[0]
	if r.Condition || r.Body != nil {
		t.Fatalf("condition %v body %v", r.Condition, r.Body)
	}
	if _, err := d.EvaluateBody(t.Context(), r); err == nil || !strings.Contains(err.Error(), "'addressSpace' doesn't exist") {
		t.Fatalf("evaluating it anyway: %v", err)
	}
}
