package security

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/testenv"
)

const subQ = "cccccccc-0000-4000-8000-00000000000c"

// usageOf reads GET .../usages and returns currentValue and limit by name.
func usageOf(t *testing.T, e *testenv.Env, token, sub string) map[string][2]int64 {
	t.Helper()
	r := send(t, e, token, call{method: http.MethodGet, path: "/subscriptions/" + sub + "/providers/Microsoft.Compute/locations/local/usages"})
	if r.Status != http.StatusOK {
		t.Fatalf("usages: %d %s", r.Status, r.Body)
	}
	var page struct {
		Value []struct {
			Unit         string `json:"unit"`
			CurrentValue int64  `json:"currentValue"`
			Limit        int64  `json:"limit"`
			Name         struct {
				Value string `json:"value"`
			} `json:"name"`
		} `json:"value"`
	}
	if err := r.JSON(&page); err != nil {
		t.Fatalf("usages: %v", err)
	}
	out := map[string][2]int64{}
	for _, u := range page.Value {
		if u.Unit != "Count" {
			t.Errorf("usage %s: unit %q", u.Name.Value, u.Unit)
		}
		out[u.Name.Value] = [2]int64{u.CurrentValue, u.Limit}
	}
	return out
}

// TestQuotaScaleOutsNeverOvershoot: a tenant's 20 concurrent scale set
// creations against a quota of 6 instances get exactly 6 instances; the
// others are refused as Azure refuses them, and the usages say so.
func TestQuotaScaleOutsNeverOvershoot(t *testing.T) {
	e := start(t, testenv.Options{})
	tn := setupTenant(t, e, "quota-tenant", subQ)
	tn.token = tokenFromEndpoint(t, e, tn.id, tn.secret)
	r := send(t, e, e.Token, call{method: http.MethodPut, path: "/providers/vmssd.Admin/quotas/" + subQ + "?api-version=" + adminAPI,
		body: map[string]any{"instances": 6, "vcpus": 6, "scaleSets": 30}})
	if r.Status != http.StatusOK {
		t.Fatalf("set quota: %d %s", r.Status, r.Body)
	}
	if r := send(t, e, tn.token, call{method: http.MethodPut, path: tn.rg(), body: map[string]any{"location": "local"}}); r.Status != http.StatusCreated {
		t.Fatalf("create group: %d %s", r.Status, r.Body)
	}
	const n = 20
	paths := make([]string, n)
	for i := range n {
		paths[i] = tn.rg() + fmt.Sprintf("/providers/Microsoft.Compute/virtualMachineScaleSets/s%d", i)
	}
	deleteAtEnd(t, e, tn.token, paths...)
	res := make([]*testenv.Response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res[i] = send(t, e, tn.token, call{method: http.MethodPut, path: paths[i], body: testenv.VMSSBody(1, "latest", "Manual")})
		})
	}
	wg.Wait()
	var created []int
	for i, r := range res {
		if r.Status == http.StatusCreated {
			created = append(created, i)
			continue
		}
		wantError(t, fmt.Sprintf("set %d", i), r, http.StatusConflict, "OperationNotAllowed", "")
		if e, err := wellFormedError(r); err == nil && (len(e.Error.Details) != 1 || e.Error.Details[0].Code != "QuotaExceeded" ||
			!strings.Contains(e.Error.Message, "Current Limit: 6, Current Usage: 6, Additional Required: 1")) {
			t.Errorf("set %d: %s", i, r.Body)
		}
	}
	if len(created) != 6 {
		t.Fatalf("%d sets of one instance created under a quota of 6 instances", len(created))
	}
	total := 0
	for _, i := range created {
		waitOp(t, e, res[i])
		total += len(instanceIDs(t, e, tn.token, paths[i]))
	}
	if total != 6 {
		t.Errorf("%d instances run under a quota of 6", total)
	}
	u := usageOf(t, e, tn.token, subQ)
	if u[model.UsageVMs] != [2]int64{6, 6} || u[model.UsageCores] != [2]int64{6, 6} || u[model.UsageScaleSets] != [2]int64{6, 30} {
		t.Errorf("usages %v", u)
	}
	// Scaling in is always allowed; then the freed instance can be used.
	waitOp(t, e, send(t, e, tn.token, call{method: http.MethodPatch, path: paths[created[0]], body: map[string]any{"sku": map[string]any{"capacity": 0}}}))
	r = send(t, e, tn.token, call{method: http.MethodPatch, path: paths[created[1]], body: map[string]any{"sku": map[string]any{"capacity": 3}}})
	wantError(t, "scale-out by 2 with 1 left", r, http.StatusConflict, "OperationNotAllowed", "")
	waitOp(t, e, send(t, e, tn.token, call{method: http.MethodPatch, path: paths[created[1]], body: map[string]any{"sku": map[string]any{"capacity": 2}}}))
	// The tenant cannot raise its own quota: the admin API does not exist
	// for it.
	r = send(t, e, tn.token, call{method: http.MethodPut, path: "/providers/vmssd.Admin/quotas/" + subQ + "?api-version=" + adminAPI, body: map[string]any{"instances": -1}})
	wantError(t, "tenant sets its quota", r, http.StatusNotFound, "", "")
}

// TestMetadataLimits (regression: 25 sets with 4 MB of tags made one list
// take 14 s): oversized tags and bodies are refused, and lists return
// bounded pages that together hold every resource once.
func TestMetadataLimits(t *testing.T) {
	e := start(t, testenv.Options{PageSize: 4})
	e.CreateRG("rg1")
	hugeTags := map[string]string{}
	for i := range 4 {
		hugeTags[fmt.Sprint("t", i)] = strings.Repeat("A", 1<<20/4)
	}
	for i := range 25 {
		body := testenv.VMSSBody(0, "latest", "Manual")
		body["tags"] = map[string]string{"x": strings.Repeat("A", 150<<10)}
		r := send(t, e, e.Token, call{method: http.MethodPut, path: e.VMSSPath("rg1", fmt.Sprint("huge", i)), body: body})
		wantError(t, "set with a 150 KiB tag", r, http.StatusBadRequest, "InvalidTag", "tags")
		body["tags"] = hugeTags
		r = send(t, e, e.Token, call{method: http.MethodPut, path: e.VMSSPath("rg1", fmt.Sprint("huge", i)), body: body})
		wantError(t, "set with 1 MiB of tags", r, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "")
	}
	many := map[string]string{}
	for i := range 51 {
		many[fmt.Sprint("t", i)] = "v"
	}
	for _, c := range []struct {
		name string
		tags map[string]string
		code string
	}{
		{"51 tags", many, "InvalidTag"},
		{"long name", map[string]string{strings.Repeat("n", 513): "v"}, "InvalidTag"},
		{"long value", map[string]string{"n": strings.Repeat("v", 257)}, "InvalidTag"},
		{"reserved characters", map[string]string{"a/b": "v"}, "InvalidTagNameCharacters"},
	} {
		wantError(t, "group: "+c.name, send(t, e, e.Token, call{method: http.MethodPut, path: e.RGPath("rg-" + fmt.Sprint(len(c.tags))), body: map[string]any{"location": "local", "tags": c.tags}}),
			http.StatusBadRequest, c.code, "tags")
		wantError(t, "group patch: "+c.name, send(t, e, e.Token, call{method: http.MethodPatch, path: e.RGPath("rg1"), body: map[string]any{"tags": c.tags}}),
			http.StatusBadRequest, c.code, "tags")
		wantError(t, "set patch: "+c.name, send(t, e, e.Token, call{method: http.MethodPut, path: e.VMSSPath("rg1", "tagged"), body: map[string]any{"location": "local", "tags": c.tags}}),
			http.StatusBadRequest, c.code, "tags")
	}
	wantError(t, "group name ending in a period", send(t, e, e.Token, call{method: http.MethodPut, path: e.RGPath("rg."), body: map[string]any{"location": "local"}}),
		http.StatusBadRequest, "InvalidResourceGroup", "")
	wantError(t, "group name of 91", send(t, e, e.Token, call{method: http.MethodPut, path: e.RGPath(strings.Repeat("g", 91)), body: map[string]any{"location": "local"}}),
		http.StatusBadRequest, "InvalidResourceGroup", "")
	wantError(t, "set name of 65", send(t, e, e.Token, call{method: http.MethodPut, path: e.VMSSPath("rg1", strings.Repeat("s", 65)), body: testenv.VMSSBody(0, "latest", "Manual")}),
		http.StatusBadRequest, "InvalidParameter", "")

	// The largest tags allowed, on 10 sets and 6 groups: every list page
	// holds at most 4 of them.
	maxTags := map[string]string{}
	for i := range 50 {
		maxTags[fmt.Sprintf("%03d%s", i, strings.Repeat("n", 509))] = strings.Repeat("v", 256)
	}
	var sets []string
	for i := range 10 {
		body := testenv.VMSSBody(0, "latest", "Manual")
		body["tags"] = maxTags
		name := fmt.Sprint("set", i)
		waitOp(t, e, send(t, e, e.Token, call{method: http.MethodPut, path: e.VMSSPath("rg1", name), body: body}))
		sets = append(sets, name)
	}
	for i := range 5 {
		if r := send(t, e, e.Token, call{method: http.MethodPut, path: e.RGPath(fmt.Sprint("group", i)), body: map[string]any{"location": "local", "tags": maxTags}}); r.Status != http.StatusCreated {
			t.Fatalf("group %d: %d %s", i, r.Status, r.Body)
		}
	}
	for _, l := range []struct {
		path string
		want int
	}{
		{e.RGPath("rg1") + "/providers/Microsoft.Compute/virtualMachineScaleSets", 10},
		{"/subscriptions/" + e.Sub + "/providers/Microsoft.Compute/virtualMachineScaleSets", 10},
		{"/subscriptions/" + e.Sub + "/resourcegroups?api-version=2021-04-01", 6},
	} {
		seen := map[string]int{}
		next, pages := l.path, 0
		for next != "" {
			r := send(t, e, e.Token, call{method: http.MethodGet, path: strings.TrimPrefix(next, e.Server.URL)})
			if r.Status != http.StatusOK {
				t.Fatalf("list %s: %d %s", next, r.Status, r.Body)
			}
			if len(r.Body) > 4*(60<<10) {
				t.Errorf("list %s: a page of %d bytes", next, len(r.Body))
			}
			var page struct {
				Value []struct {
					Name string `json:"name"`
				} `json:"value"`
				NextLink string `json:"nextLink"`
			}
			if err := r.JSON(&page); err != nil || len(page.Value) > 4 {
				t.Fatalf("list %s: %d items, %v", next, len(page.Value), err)
			}
			for _, v := range page.Value {
				seen[v.Name]++
			}
			next, pages = page.NextLink, pages+1
		}
		if len(seen) != l.want || pages != (l.want+3)/4 {
			t.Errorf("list %s: %d distinct in %d pages: %v", l.path, len(seen), pages, seen)
		}
		for name, n := range seen {
			if n != 1 {
				t.Errorf("list %s: %s listed %d times", l.path, name, n)
			}
		}
	}
	wantError(t, "forged skiptoken", send(t, e, e.Token, call{method: http.MethodGet, path: e.RGPath("rg1") + "/providers/Microsoft.Compute/virtualMachineScaleSets?$skiptoken=%25%25"}),
		http.StatusBadRequest, "InvalidParameter", "$skiptoken")
}

// TestSubscriptionDeleteRacesGroupCreate (regression: 27 of 40 tries left
// an orphaned group): a subscription's deletion and a group's creation in
// it are exclusive.
func TestSubscriptionDeleteRacesGroupCreate(t *testing.T) {
	e := start(t, testenv.Options{})
	orphans := 0
	for i := range 40 {
		sub := fmt.Sprintf("dddddddd-0000-4000-8000-%012d", i)
		adm := "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + sub + "?api-version=" + adminAPI
		if r := send(t, e, e.Token, call{method: http.MethodPut, path: adm, body: map[string]any{"displayName": "race"}}); r.Status != http.StatusCreated {
			t.Fatalf("create subscription: %d %s", r.Status, r.Body)
		}
		var wg sync.WaitGroup
		var del, put *testenv.Response
		wg.Go(func() { del = send(t, e, e.Token, call{method: http.MethodDelete, path: adm}) })
		wg.Go(func() {
			put = send(t, e, e.Token, call{method: http.MethodPut, path: "/subscriptions/" + sub + "/resourceGroups/rg", body: map[string]any{"location": "local"}})
		})
		wg.Wait()
		kvs, _, err := e.Server.Store.List(t.Context(), model.ResourceGroupPrefix(sub))
		if err != nil {
			t.Fatal(err)
		}
		get := send(t, e, e.Token, call{method: http.MethodGet, path: adm})
		switch {
		case get.Status == http.StatusNotFound && len(kvs) > 0:
			orphans++
			t.Errorf("try %d: orphaned group (delete %d, create %d %s)", i, del.Status, put.Status, put.Body)
		case get.Status == http.StatusOK && del.Status == http.StatusOK:
			t.Errorf("try %d: deletion succeeded but the subscription is there", i)
		case get.Status == http.StatusOK && !bytes.Contains(get.Body, []byte(`"state":"Enabled"`)):
			t.Errorf("try %d: subscription left %s", i, get.Body)
		}
		if put.Status == http.StatusCreated && len(kvs) == 0 {
			t.Errorf("try %d: group creation answered 201 but there is no group", i)
		}
	}
	if orphans > 0 {
		t.Errorf("%d orphaned groups in 40 tries", orphans)
	}
}
