package dashboard

import (
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

func TestBuildGrid(t *testing.T) {
	cells := []Cell{
		{ID: "10", UD: 0, FD: 1, Version: "1.1.0"},
		{ID: "2", UD: 0, FD: 1, Version: "1.0.0"},
		{ID: "1", UD: 1, FD: 0, Version: "1.0.0"},
		{ID: "0", UD: 0, FD: 0},
	}
	g := BuildGrid(cells)
	if !reflect.DeepEqual(g.FDs, []int{0, 1}) {
		t.Fatalf("FDs %v", g.FDs)
	}
	if len(g.Rows) != 2 || g.Rows[0].UD != 0 || g.Rows[1].UD != 1 {
		t.Fatalf("rows %+v", g.Rows)
	}
	ids := func(cs []Cell) (out []string) {
		for _, c := range cs {
			out = append(out, c.ID)
		}
		return out
	}
	if got := ids(g.Rows[0].Cells[1]); !reflect.DeepEqual(got, []string{"2", "10"}) {
		t.Errorf("UD0/FD1 = %v, want numeric order [2 10]", got)
	}
	if got := g.Rows[0].IDs; !reflect.DeepEqual(got, []string{"0", "2", "10"}) {
		t.Errorf("UD0 ids %v", got)
	}
	if len(g.Rows[1].Cells[1]) != 0 || ids(g.Rows[1].Cells[0])[0] != "1" {
		t.Errorf("UD1 %+v", g.Rows[1])
	}
	if want := map[string]int{"1.0.0": 2, "1.1.0": 1, "unknown": 1}; !reflect.DeepEqual(g.Versions, want) {
		t.Errorf("versions %v, want %v", g.Versions, want)
	}
	if g := BuildGrid(nil); g.Count != 0 || len(g.Rows) != 0 {
		t.Errorf("empty grid %+v", g)
	}
}

func TestCellGlyphsAreDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, p := range []string{"running", "starting", "stopping", "stopped", "deallocating", "deallocated", "failed", "unknown"} {
		g := Cell{Power: p}.Glyph()
		if other, ok := seen[g]; ok {
			t.Errorf("%s and %s share the shape %q", p, other, g)
		}
		seen[g] = p
	}
}

func ptr[T any](v T) *T { return &v }

func TestCellOf(t *testing.T) {
	id := "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web/virtualMachines/3"
	vm := &armcompute.VirtualMachineScaleSetVM{
		ID: ptr(id), InstanceID: ptr("3"),
		Properties: &armcompute.VirtualMachineScaleSetVMProperties{
			LatestModelApplied: ptr(false), ProvisioningState: ptr("Succeeded"),
			StorageProfile: &armcompute.StorageProfile{ImageReference: &armcompute.ImageReference{Version: ptr("latest"), ExactVersion: ptr("1.1.0")}},
			InstanceView: &armcompute.VirtualMachineScaleSetVMInstanceView{
				PlatformUpdateDomain: ptr[int32](2), PlatformFaultDomain: ptr[int32](1),
				Statuses: []*armcompute.InstanceViewStatus{{Code: ptr("ProvisioningState/succeeded")}, {Code: ptr("PowerState/deallocating")}},
				VMHealth: &armcompute.VirtualMachineHealthStatus{Status: &armcompute.InstanceViewStatus{Code: ptr("HealthState/unhealthy")}},
			},
		},
	}
	got := cellOf(vm, map[string]string{strings.ToLower(id): "10.0.0.7"})
	want := Cell{ID: "3", UD: 2, FD: 1, Power: "deallocating", Health: "unhealthy", Latest: false, Version: "1.1.0", IP: "10.0.0.7", Prov: "Succeeded"}
	if got != want {
		t.Fatalf("cellOf = %+v, want %+v", got, want)
	}
	for _, s := range []string{"Instance 3", "deallocating", "unhealthy", "1.1.0", "10.0.0.7", "not on the latest model"} {
		if !strings.Contains(got.Label(), s) {
			t.Errorf("label %q lacks %q", got.Label(), s)
		}
	}
	vm.Properties.ProvisioningState = ptr("Failed")
	if c := cellOf(vm, nil); c.Power != "failed" || c.IP != "" {
		t.Errorf("failed instance: %+v", c)
	}
}

func TestModelPatch(t *testing.T) {
	orig := url.Values{
		"orig_size": {"Standard_A1"}, "orig_version": {"1.0.0"}, "orig_uri": {""}, "orig_mode": {"Manual"},
		"orig_batch": {"20"}, "orig_unhealthy": {""}, "orig_unhealthyUpgraded": {""}, "orig_pause": {""},
		"orig_approval": {"none"}, "tags": {`{"team":"a"}`},
	}
	form := func(kv ...string) url.Values {
		f := url.Values{}
		for k, v := range orig {
			f[k] = v
			if o, ok := strings.CutPrefix(k, "orig_"); ok {
				f.Set(o, v[0])
			}
		}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	tests := []struct {
		name string
		form url.Values
		want string
	}{
		{"unchanged", form(), `{}`},
		{"version", form("version", "1.1.0"), `{"properties":{"virtualMachineProfile":{"storageProfile":{"imageReference":{"version":"1.1.0"}}}}}`},
		{"custom uri wins over version", form("version", "1.1.0", "uri", "artifact:sha256:ab"), `{"properties":{"virtualMachineProfile":{"storageProfile":{"osDisk":{"image":{"uri":"artifact:sha256:ab"}}}}}}`},
		{"size", form("size", "Standard_A2"), `{"sku":{"name":"Standard_A2"}}`},
		{"rolling", form("mode", "Rolling", "batch", "50", "pause", "PT2S"), `{"properties":{"upgradePolicy":{"mode":"Rolling","rollingUpgradePolicy":{"maxBatchInstancePercent":50,"pauseTimeBetweenBatches":"PT2S"}}}}`},
		{"bad number goes to the API as given", form("batch", "lots"), `{"properties":{"upgradePolicy":{"rollingUpgradePolicy":{"maxBatchInstancePercent":"lots"}}}}`},
		{"approval keeps other tags", form("approval", "eachBatch"), `{"tags":{"team":"a","vmssd.rolling.approval":"eachBatch"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, what := modelPatch(tt.form)
			got := mustJSON(t, body)
			if got != tt.want {
				t.Fatalf("patch %s, want %s", got, tt.want)
			}
			if (tt.want == `{}`) != (len(what) == 0) {
				t.Fatalf("changes %v for %s", what, got)
			}
		})
	}
}

func TestBuildChart(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := BuildChart([]Sample{
		{T: t0, Counts: map[string]int{"1.0.0": 4}},
		{T: t0.Add(10 * time.Second), Counts: map[string]int{"1.0.0": 2, "1.1.0": 2}},
		{T: t0.Add(20 * time.Second), Counts: map[string]int{"1.1.0": 4}},
	}, 200, 50)
	if c.Max != 4 || len(c.Series) != 2 || c.Series[0].Version != "1.0.0" || c.Series[1].Version != "1.1.0" {
		t.Fatalf("chart %+v", c)
	}
	if c.Series[0].Last != 0 || c.Series[1].Last != 4 {
		t.Errorf("last counts %d %d", c.Series[0].Last, c.Series[1].Last)
	}
	if c.Series[0].Dash == c.Series[1].Dash {
		t.Error("two series share a dash pattern: told apart by colour alone")
	}
	// 1.0.0: 4 at x=0, steps to 2 at x=100, steps to 0 at x=200.
	if want := "0.0,2.0 100.0,2.0 100.0,25.0 200.0,25.0 200.0,48.0"; c.Series[0].Points != want {
		t.Errorf("points %q, want %q", c.Series[0].Points, want)
	}
	if c := BuildChart(nil, 10, 10); len(c.Series) != 0 {
		t.Errorf("empty chart %+v", c)
	}
}

func TestSessionsAndCSRF(t *testing.T) {
	var ss sessions
	now := time.Now()
	s := ss.create(identity("a"), 1, now)
	if s.id == s.csrf || len(s.csrf) < 40 {
		t.Fatalf("weak tokens %q %q", s.id, s.csrf)
	}
	if !s.csrfOK(s.csrf) || s.csrfOK("") || s.csrfOK(s.id) || s.csrfOK(s.csrf+"x") {
		t.Fatal("csrf check")
	}
	c := sessionCookie(s.id, 60)
	if !c.HttpOnly || !c.Secure || c.SameSite != 3 /* Strict */ {
		t.Fatalf("cookie %+v", c)
	}
	other := ss.create(identity("b"), 1, now.Add(sessionTTL+time.Second))
	ss.mu.Lock()
	_, kept := ss.m[s.id]
	ss.mu.Unlock()
	if kept || other == nil {
		t.Fatal("an expired session survived")
	}
}

func TestActivityBounded(t *testing.T) {
	a := activity{max: 3}
	for i := range 5 {
		a.add(Entry{Action: string(rune('a' + i)), Who: []string{"x", "y"}[i%2]})
	}
	all := a.list(func(Entry) bool { return true })
	if len(all) != 3 || all[0].Action != "e" || all[2].Action != "c" {
		t.Fatalf("entries %+v", all)
	}
	if mine := a.list(func(e Entry) bool { return e.Who == "y" }); len(mine) != 1 || mine[0].Action != "d" {
		t.Fatalf("filtered %+v", mine)
	}
}
