package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// printed resolves -o and --query as the root command does, then prints v.
func printed(t *testing.T, output, query string, v any, tbl func() table) (string, error) {
	t.Helper()
	var out bytes.Buffer
	r := &rootOptions{streams: IOStreams{Out: &out}, getenv: func(string) string { return "" }}
	r.configPath = filepath.Join(t.TempDir(), "none.json")
	r.output, r.queryText = output, query
	if err := r.resolveOutput(); err != nil {
		t.Fatalf("-o %q --query %q: %v", output, query, err)
	}
	err := r.print(v, tbl)
	return out.String(), err
}

func TestOutputFormats(t *testing.T) {
	// Two instances as list-instances returns them (shape, not content).
	vms := []map[string]any{
		{"id": "/x/0", "instanceId": "0", "name": "web_0", "properties": map[string]any{"latestModelApplied": true, "memoryMB": 1000000, "zones": []string{"1", "2"}}},
		{"id": "/x/1", "instanceId": "1", "name": "web_1", "properties": map[string]any{"latestModelApplied": false, "memoryMB": 0.5, "zones": []string{}}},
	}
	tbl := func() table {
		return table{header: []string{"InstanceId", "Name"}, rows: [][]string{{"0", "web_0"}, {"1", "web_1"}}}
	}
	for _, tc := range []struct {
		output, query string
		want          string
	}{
		// az's default JSON: two-space indent, keys sorted.
		{"json", "[0]", "{\n  \"id\": \"/x/0\",\n  \"instanceId\": \"0\",\n  \"name\": \"web_0\",\n  \"properties\": {\n    \"latestModelApplied\": true,\n    \"memoryMB\": 1000000,\n    \"zones\": [\n      \"1\",\n      \"2\"\n    ]\n  }\n}\n"},
		{"json", "[].instanceId", "[\n  \"0\",\n  \"1\"\n]\n"},
		{"json", "length(@)", "2\n"},
		{"json", "[?properties.latestModelApplied].name | [0]", "\"web_0\"\n"},
		{"json", "[?name=='nope']", "[]\n"},
		// jsonc to a non-terminal is plain JSON.
		{"jsonc", "[1].instanceId", "\"1\"\n"},
		// tsv: one row per element; an object's values sorted by key,
		// nested objects empty, lists their length.
		{"tsv", "[].instanceId", "0\n1\n"},
		{"tsv", "", "/x/0\t0\tweb_0\t\n/x/1\t1\tweb_1\t\n"},
		{"tsv", "[].properties", "true\t1000000\t2\nfalse\t0.5\t0\n"},
		{"tsv", "[].[instanceId, properties.latestModelApplied, properties.memoryMB]", "0\ttrue\t1000000\n1\tfalse\t0.5\n"},
		{"tsv", "[0].{name: name, id: instanceId}", "web_0\t0\n"}, // a multi-select hash keeps the query's order
		{"tsv", "[0].nothing", "\n"},
		// table: the command's columns without a query ...
		{"table", "", "InstanceId  Name\n----------  ----\n0           web_0\n1           web_1\n"},
		// ... the query's result with one (az: scalars only, no id/type/etag).
		{"table", "[].{Name: name, Instance: instanceId}", "Name   Instance\n----   --------\nweb_0  0\nweb_1  1\n"},
		{"table", "[0]", "InstanceId  Name\n----------  ----\n0           web_0\n"},
		{"table", "[].instanceId", "Result\n------\n0\n1\n"},
		{"table", "[].[name, properties.latestModelApplied]", "Column1  Column2\n-------  -------\nweb_0    true\nweb_1    false\n"},
		{"table", "[?name=='nope']", ""},
		{"yaml", "[0]", "id: /x/0\ninstanceId: \"0\"\nname: web_0\nproperties:\n  latestModelApplied: true\n  memoryMB: 1000000\n  zones:\n    - \"1\"\n    - \"2\"\n"},
		{"yaml", "[].properties.memoryMB", "- 1000000\n- 0.5\n"},
		{"none", "[].instanceId", ""},
		{"JSON", "[0].name", "\"web_0\"\n"}, // -o is case-insensitive, as az's
	} {
		got, err := printed(t, tc.output, tc.query, vms, tbl)
		if err != nil || got != tc.want {
			t.Errorf("-o %s --query %q: %v\ngot:\n%s\nwant:\n%s", tc.output, tc.query, err, got, tc.want)
		}
	}

	// The default is JSON of the whole result, which decodes back.
	got, err := printed(t, "", "", vms, tbl)
	var back []map[string]any
	if err != nil || json.Unmarshal([]byte(got), &back) != nil || len(back) != 2 || back[1]["name"] != "web_1" {
		t.Errorf("default output: %v %q", err, got)
	}
	// yaml decodes back to the same data.
	got, _ = printed(t, "yaml", "", vms, tbl)
	if err := yaml.Unmarshal([]byte(got), &back); err != nil || len(back) != 2 || back[0]["instanceId"] != "0" {
		t.Errorf("yaml: %v %q", err, got)
	}

	// A result with no scalar field cannot be a table.
	if _, err := printed(t, "table", "[].{zones: properties.zones}", vms, tbl); err == nil || !strings.Contains(err.Error(), "table output unavailable") {
		t.Errorf("table of lists: %v", err)
	}
	// A query that fails on this data is an error, not empty output.
	if out, err := printed(t, "json", "abs(@)", vms, tbl); err == nil || out != "" || !strings.Contains(err.Error(), `--query "abs(@)"`) {
		t.Errorf("abs of a list: %q, %v", out, err)
	}
}

func TestResolveOutput(t *testing.T) {
	dir := t.TempDir()
	withOutput := filepath.Join(dir, "tsv.json")
	if err := os.WriteFile(withOutput, []byte(`{"endpoint":"https://127.0.0.1:1","output":"tsv"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	badOutput := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(badOutput, []byte(`{"output":"xml"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		flag   string
		env    map[string]string
		config string
		want   string // format, or "error: ..."
	}{
		{"az's default", "", nil, "", "json"},
		{"flag", "yaml", nil, "", "yaml"},
		{"VMSSCTL_OUTPUT", "", map[string]string{"VMSSCTL_OUTPUT": "table"}, "", "table"},
		{"AZURE_CORE_OUTPUT", "", map[string]string{"AZURE_CORE_OUTPUT": "tsv"}, "", "tsv"},
		{"vmssctl's variable first", "", map[string]string{"VMSSCTL_OUTPUT": "yaml", "AZURE_CORE_OUTPUT": "tsv"}, "", "yaml"},
		{"config file", "", nil, withOutput, "tsv"},
		{"environment over config", "", map[string]string{"AZURE_CORE_OUTPUT": "jsonc"}, withOutput, "jsonc"},
		{"flag over all", "none", map[string]string{"VMSSCTL_OUTPUT": "yaml"}, withOutput, "none"},
		{"bad flag", "xml", nil, "", "error: argument --output/-o: invalid choice: \"xml\""},
		{"bad variable", "", map[string]string{"VMSSCTL_OUTPUT": "csv"}, "", "error: $VMSSCTL_OUTPUT: invalid choice: \"csv\""},
		{"bad config", "", nil, badOutput, "error: " + badOutput + ": output: invalid choice"},
	} {
		r := &rootOptions{getenv: func(k string) string { return tc.env[k] }}
		r.output = tc.flag
		r.configPath = tc.config
		if r.configPath == "" {
			r.configPath = filepath.Join(dir, "missing.json")
		}
		err := r.resolveOutput()
		if want, isErr := strings.CutPrefix(tc.want, "error: "); isErr {
			var ue *usageError
			if err == nil || !strings.Contains(err.Error(), want) || !errors.As(err, &ue) {
				t.Errorf("%s: %v, want a usage error with %q", tc.name, err, want)
			}
			continue
		}
		if err != nil || r.output != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, r.output, err, tc.want)
		}
	}

	// A query that does not parse is a usage error that shows where.
	r := &rootOptions{getenv: func(string) string { return "" }}
	r.configPath = filepath.Join(dir, "missing.json")
	r.queryText = "[].{a: name"
	err := r.resolveOutput()
	var ue *usageError
	if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "argument --query: invalid JMESPath query") || !strings.Contains(err.Error(), "^") {
		t.Errorf("bad query: %v", err)
	}
}

func TestColorJSON(t *testing.T) {
	in := "{\n  \"a b\": \"x\\\"y\",\n  \"n\": -1.5e3,\n  \"ok\": [true, null],\n  \"s\" : \"k:\"\n}\n"
	want := "{\n  " + colorKey + `"a b"` + colorReset + ": " + colorString + `"x\"y"` + colorReset + ",\n  " +
		colorKey + `"n"` + colorReset + ": " + colorNumber + "-1.5e3" + colorReset + ",\n  " +
		colorKey + `"ok"` + colorReset + ": [" + colorLiteral + "true" + colorReset + ", " + colorLiteral + "null" + colorReset + "],\n  " +
		colorKey + `"s"` + colorReset + " : " + colorString + `"k:"` + colorReset + "\n}\n"
	if got := string(colorJSON([]byte(in))); got != want {
		t.Errorf("colorJSON:\n%q\nwant\n%q", got, want)
	}
}
