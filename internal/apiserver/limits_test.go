package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

func TestValidateTags(t *testing.T) {
	many := map[string]string{}
	for i := range 51 {
		many[fmt.Sprintf("t%d", i)] = "v"
	}
	fifty := map[string]string{}
	for i := range 50 {
		fifty[fmt.Sprintf("t%d", i)] = strings.Repeat("v", 256)
	}
	for _, tc := range []struct {
		name string
		tags map[string]string
		code string
	}{
		{"none", nil, ""},
		{"fifty at the limits", fifty, ""},
		{"long name", map[string]string{strings.Repeat("n", 512): "v"}, ""},
		{"unicode value of 256 characters", map[string]string{"n": strings.Repeat("é", 256)}, ""},
		{"51 tags", many, "InvalidTag"},
		{"name of 513", map[string]string{strings.Repeat("n", 513): "v"}, "InvalidTag"},
		{"value of 257", map[string]string{"n": strings.Repeat("v", 257)}, "InvalidTag"},
		{"empty name", map[string]string{"": "v"}, "InvalidTag"},
		{"names equal but for case", map[string]string{"Env": "a", "env": "b"}, "InvalidTag"},
		{"slash", map[string]string{"a/b": "v"}, "InvalidTagNameCharacters"},
		{"percent", map[string]string{"100%": "v"}, "InvalidTagNameCharacters"},
		{"angle", map[string]string{"<x>": "v"}, "InvalidTagNameCharacters"},
		{"backslash", map[string]string{`a\b`: "v"}, "InvalidTagNameCharacters"},
		{"question", map[string]string{"a?": "v"}, "InvalidTagNameCharacters"},
		{"ampersand", map[string]string{"a&b": "v"}, "InvalidTagNameCharacters"},
		{"control", map[string]string{"a\nb": "v"}, "InvalidTagNameCharacters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateTags(tc.tags)
			if tc.code == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var e *errs.Error
			if !errors.As(err, &e) || e.ARMCode() != tc.code || e.Status() != http.StatusBadRequest || e.Target != "tags" {
				t.Fatalf("got %v, want 400 %s on tags", err, tc.code)
			}
		})
	}
}

// tokenTable authenticates the bearer tokens it was given.
type tokenTable map[string]*Caller

func (tt tokenTable) Authenticate(_ context.Context, token string) (*Caller, error) {
	if c, ok := tt[token]; ok {
		return c, nil
	}
	return nil, errors.New("unknown token")
}

// apiFixture is a Server over a real memstore, serving plain HTTP.
type apiFixture struct {
	t     *testing.T
	store store.Store
	url   string
}

func newAPIFixture(t *testing.T, opts Options) *apiFixture {
	t.Helper()
	st := memstore.New(memstore.Options{})
	ctx := context.Background()
	ops := []store.Op{
		state.PutOp(model.SubscriptionKey("sub1"), &model.Subscription{ID: "sub1", DisplayName: "sub1", State: subEnabled}),
		state.PutOp(model.ImageKey("vmssd", "demo", "guest", "1.0.0"), &model.ImageVersion{Publisher: "vmssd", Offer: "demo", SKU: "guest", Version: "1.0.0", Location: "local", OSType: "Linux", Digest: "sha256:00"}),
	}
	for _, sz := range model.DefaultSizes {
		ops = append(ops, state.PutOp(model.SizeKey(sz.Name), &sz))
	}
	if _, err := st.Txn(ctx, nil, ops...); err != nil {
		t.Fatal(err)
	}
	opts.Store = st
	opts.Auth = tokenTable{
		"op":     {ClientID: "op", Role: "operator"},
		"tenant": {ClientID: "tenant", Role: "tenant", Subscriptions: []string{"sub1"}},
	}
	srv := httptest.NewServer(New(opts))
	t.Cleanup(srv.Close)
	return &apiFixture{t: t, store: st, url: srv.URL}
}

type apiResponse struct {
	status int
	body   []byte
}

func (r apiResponse) code() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func (f *apiFixture) do(token, method, path string, body any) apiResponse {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			f.t.Error(err)
		}
		rd = bytes.NewReader(b)
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	api := "2024-11-01"
	if strings.Contains(path, "resourceGroups/") && !strings.Contains(path, "/providers/") || strings.HasSuffix(path, "/resourcegroups") {
		api = "2021-04-01"
	}
	if strings.HasPrefix(path, "/providers/") {
		api = "2015-12-01-preview"
	}
	req, err := http.NewRequest(method, f.url+path+sep+"api-version="+api, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Error(err)
		return apiResponse{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return apiResponse{status: resp.StatusCode, body: b}
}

func setBody(capacity int) map[string]any {
	return map[string]any{
		"location": "local",
		"sku":      map[string]any{"name": "Standard_A1", "capacity": capacity},
		"properties": map[string]any{"virtualMachineProfile": map[string]any{
			"storageProfile": map[string]any{"imageReference": map[string]any{"publisher": "vmssd", "offer": "demo", "sku": "guest", "version": "latest"}},
		}},
	}
}

const sub1 = "/subscriptions/sub1"

func setPath(rg, name string) string {
	return sub1 + "/resourceGroups/" + rg + "/providers/Microsoft.Compute/virtualMachineScaleSets/" + name
}

// TestResourceBounds: a subscription holds at most MaxResourceGroups groups
// and a group at most MaxScaleSetsPerGroup scale sets; updates of existing
// ones still pass.
func TestResourceBounds(t *testing.T) {
	f := newAPIFixture(t, Options{MaxResourceGroups: 3, MaxScaleSetsPerGroup: 2})
	rg := map[string]any{"location": "local"}
	for i := range 3 {
		if r := f.do("tenant", http.MethodPut, fmt.Sprintf("%s/resourceGroups/rg%d", sub1, i), rg); r.status != http.StatusCreated {
			t.Fatalf("rg%d: %d %s", i, r.status, r.body)
		}
	}
	if r := f.do("tenant", http.MethodPut, sub1+"/resourceGroups/rg3", rg); r.status != http.StatusConflict || r.code() != "ResourceGroupQuotaExceeded" {
		t.Fatalf("4th group: %d %s", r.status, r.body)
	}
	if r := f.do("tenant", http.MethodPut, sub1+"/resourceGroups/rg0", map[string]any{"location": "local", "tags": map[string]string{"a": "b"}}); r.status != http.StatusOK {
		t.Fatalf("update of a group at the bound: %d %s", r.status, r.body)
	}
	for i := range 2 {
		if r := f.do("tenant", http.MethodPut, setPath("rg0", fmt.Sprint("s", i)), setBody(0)); r.status != http.StatusCreated {
			t.Fatalf("set %d: %d %s", i, r.status, r.body)
		}
	}
	if r := f.do("tenant", http.MethodPut, setPath("rg0", "s2"), setBody(0)); r.status != http.StatusConflict || r.code() != "ResourceQuotaExceeded" {
		t.Fatalf("3rd set in a group: %d %s", r.status, r.body)
	}
	if r := f.do("tenant", http.MethodPut, setPath("rg1", "s2"), setBody(0)); r.status != http.StatusCreated {
		t.Fatalf("a set in another group: %d %s", r.status, r.body)
	}
	if r := f.do("tenant", http.MethodPatch, setPath("rg0", "s1"), map[string]any{"tags": map[string]string{"a": "b"}}); r.status != http.StatusOK {
		t.Fatalf("update of a set at the bound: %d %s", r.status, r.body)
	}
}

// TestQuotaConcurrentScaleOut: concurrent scale-outs of many sets, and of
// one set, never take the subscription past its quota.
func TestQuotaConcurrentScaleOut(t *testing.T) {
	f := newAPIFixture(t, Options{})
	if r := f.do("op", http.MethodPut, "/providers/vmssd.Admin/quotas/sub1", map[string]any{"instances": 5, "vcpus": 6}); r.status != http.StatusOK {
		t.Fatalf("set quota: %d %s", r.status, r.body)
	}
	if r := f.do("tenant", http.MethodPut, sub1+"/resourceGroups/rg", map[string]any{"location": "local"}); r.status != http.StatusCreated {
		t.Fatalf("rg: %d %s", r.status, r.body)
	}
	const n = 20
	var wg sync.WaitGroup
	res := make([]apiResponse, n)
	for i := range n {
		wg.Go(func() { res[i] = f.do("tenant", http.MethodPut, setPath("rg", fmt.Sprint("s", i)), setBody(1)) })
	}
	wg.Wait()
	created := 0
	for i, r := range res {
		switch {
		case r.status == http.StatusCreated:
			created++
		case r.status == http.StatusConflict && r.code() == "OperationNotAllowed" && bytes.Contains(r.body, []byte("QuotaExceeded")) &&
			bytes.Contains(r.body, []byte("Current Limit: 5, Current Usage: 5, Additional Required: 1")):
		default:
			t.Errorf("set %d: %d %s", i, r.status, r.body)
		}
	}
	if created != 5 {
		t.Errorf("%d sets of one instance created under a quota of 5 instances", created)
	}
	// One set at capacity 0, raced to 1..20 (and its usage counted at
	// every step): the final capacity stays within the quota.
	if r := f.do("op", http.MethodPut, "/providers/vmssd.Admin/quotas/sub1", map[string]any{"instances": 12, "vcpus": -1}); r.status != http.StatusOK {
		t.Fatalf("set quota: %d %s", r.status, r.body)
	}
	if r := f.do("tenant", http.MethodPut, setPath("rg", "big"), setBody(0)); r.status != http.StatusCreated {
		t.Fatalf("big: %d %s", r.status, r.body)
	}
	for i := range n {
		wg.Go(func() {
			f.do("tenant", http.MethodPatch, setPath("rg", "big"), map[string]any{"sku": map[string]any{"capacity": i + 1}})
		})
	}
	wg.Wait()
	set, _, err := state.Get[model.ScaleSet](context.Background(), f.store, model.ScaleSetKey(model.SetRef{Sub: "sub1", RG: "rg", Name: "big"}))
	if err != nil {
		t.Fatal(err)
	}
	if c := set.Capacity(); c > 7 || c < 1 {
		t.Errorf("capacity %d after racing scale-outs with 7 instances left", c)
	}
	var q quotaBody
	r := f.do("op", http.MethodGet, "/providers/vmssd.Admin/quotas/sub1", nil)
	if err := json.Unmarshal(r.body, &q); err != nil || r.status != http.StatusOK {
		t.Fatalf("get quota: %d %s", r.status, r.body)
	}
	if q.Usage.Instances != 5+set.Capacity() || q.Usage.Instances > q.Instances || q.Usage.ScaleSets != 6 || q.VCPUs != -1 {
		t.Errorf("quota %+v", q)
	}
}

// TestSubscriptionDeleteExclusive runs a subscription's deletion against a
// resource group's creation in it, 40 times: either the group exists in a
// subscription that still exists, or neither exists. Never an orphan.
func TestSubscriptionDeleteExclusive(t *testing.T) {
	f := newAPIFixture(t, Options{})
	ctx := context.Background()
	deleted := 0
	for i := range 40 {
		id := fmt.Sprint("race", i)
		if r := f.do("op", http.MethodPut, "/providers/Microsoft.Subscriptions.Admin/subscriptions/"+id, map[string]any{"displayName": id}); r.status != http.StatusCreated {
			t.Fatalf("create %s: %d %s", id, r.status, r.body)
		}
		var wg sync.WaitGroup
		var del, put apiResponse
		wg.Go(func() {
			del = f.do("op", http.MethodDelete, "/providers/Microsoft.Subscriptions.Admin/subscriptions/"+id, nil)
		})
		wg.Go(func() {
			put = f.do("op", http.MethodPut, "/subscriptions/"+id+"/resourceGroups/rg", map[string]any{"location": "local"})
		})
		wg.Wait()
		_, subErr := f.store.Get(ctx, model.SubscriptionKey(id))
		rgs, _, err := f.store.List(ctx, model.ResourceGroupPrefix(id))
		if err != nil {
			t.Fatal(err)
		}
		if errors.Is(subErr, store.ErrNotFound) {
			deleted++
			if len(rgs) != 0 {
				t.Errorf("try %d: orphaned group (delete %d %s, put %d %s)", i, del.status, del.body, put.status, put.body)
			}
			continue
		}
		if del.status == http.StatusOK || put.status == http.StatusCreated && len(rgs) == 0 {
			t.Errorf("try %d: delete %d, put %d, but the subscription exists with %d group(s)", i, del.status, put.status, len(rgs))
		}
		sub, _, err := state.Get[model.Subscription](ctx, f.store, model.SubscriptionKey(id))
		if err != nil || sub.State != subEnabled {
			t.Errorf("try %d: subscription left %v %v", i, sub, err)
		}
	}
	t.Logf("%d of 40 deletions won the race", deleted)
}
