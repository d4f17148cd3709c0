package deploy

import (
	"slices"
	"testing"

	"github.com/vmssd/vmssd/internal/template"
)

func res(id string, deps ...string) *template.Resource {
	return &template.Resource{ID: id, Name: id, Condition: true, DependsOn: deps}
}

func TestGraphOrderAndFailure(t *testing.T) {
	rs := []*template.Resource{res("vnet"), res("pip"), res("lb", "pip"), res("vmss", "vnet", "lb"), res("other")}
	skipped := res("off")
	skipped.Condition = false
	rs = append(rs, skipped, res("needsOff", "off"))
	g := newGraph(rs)
	if got := g.ready(); !slices.Equal(got, []int{0, 1, 4, 5}) {
		t.Fatalf("first ready = %v", got)
	}
	for _, i := range []int{0, 1, 4, 5} {
		g.state[i] = nodeRunning
	}
	g.state[0], g.state[4], g.state[5] = nodeDone, nodeDone, nodeDone
	g.state[1] = nodeFailed // pip fails: lb and vmss never start
	if got := g.ready(); len(got) != 0 {
		t.Fatalf("ready after failure = %v", got)
	}
	if g.state[2] != nodeBlocked || g.state[3] != nodeBlocked {
		t.Fatalf("dependents not blocked: %v", g.state)
	}
	if g.cycle() != nil {
		t.Fatal("cycle reported in a DAG")
	}
}

func TestGraphCycle(t *testing.T) {
	g := newGraph([]*template.Resource{res("a", "c"), res("b", "a"), res("c", "b")})
	if c := g.cycle(); len(c) != 3 {
		t.Fatalf("cycle = %v", c)
	}
}

func TestDiff(t *testing.T) {
	before := map[string]any{
		"location": "local", "sku": map[string]any{"name": "Standard_A1", "capacity": float64(2)},
		"properties": map[string]any{"overprovision": true, "provisioningState": "Succeeded",
			"virtualMachineProfile": map[string]any{"osProfile": map[string]any{"adminUsername": "u"}}},
	}
	tests := []struct {
		name  string
		after map[string]any
		want  []string
	}{
		{"same", map[string]any{"location": "Local", "sku": map[string]any{"capacity": "2"}, "properties": map[string]any{"overprovision": true}}, nil},
		{"write-only secret", map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{"osProfile": map[string]any{"adminUsername": "u", "adminPassword": "x"}}}}, nil},
		{"capacity", map[string]any{"sku": map[string]any{"capacity": int64(5)}}, []string{"Modify sku.capacity"}},
		{"new property", map[string]any{"properties": map[string]any{"singlePlacementGroup": false}}, []string{"Create properties.singlePlacementGroup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range Diff(before, tt.after) {
				got = append(got, c.PropertyChangeType+" "+c.Path)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Diff = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPublicParametersHideSecrets(t *testing.T) {
	r := &Record{Parameters: map[string]any{"adminPassword": map[string]any{"value": "s3cret"}, "n": map[string]any{"value": 2}}, SecureParameters: []string{"adminPassword"}}
	p := r.PublicParameters()
	if m := p["adminPassword"].(map[string]any); m["value"] != nil {
		t.Fatalf("secure parameter shown: %v", m)
	}
	if p["n"].(map[string]any)["value"] != 2 {
		t.Fatalf("plain parameter = %v", p["n"])
	}
}

func TestOutputValuesHideSecureOutputs(t *testing.T) {
	got := outputValues(map[string]template.Output{
		"pw": {Type: "SecureString", Value: "s3cret"}, "n": {Type: "Int", Value: int64(3)},
	})
	if v, ok := got["pw"].(map[string]any)["value"]; ok {
		t.Fatalf("secure output returned: %v", v)
	}
	if got["n"].(map[string]any)["value"] != int64(3) {
		t.Fatalf("plain output = %v", got["n"])
	}
}
