package compat

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/vmssd/vmssd/api/client"
	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/testenv"
)

// TestProvidersAndSKUs: armresources' ProvidersClient reads the resource
// types and api-versions (what az resolves api-versions from), and
// armcompute's ResourceSKUsClient the VM sizes (az vm list-skus).
func TestProvidersAndSKUs(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	cred := staticCred(e.Token)
	opts := &arm.ClientOptions{ClientOptions: coreOptions(e), DisableRPRegistration: true}
	pc, err := armresources.NewProvidersClient(server.DefaultSubscriptionID, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pc.Get(ctxT(t, 30*time.Second), "Microsoft.Compute", nil)
	if err != nil {
		t.Fatalf("get Microsoft.Compute: %v", err)
	}
	if val(got.Namespace) != "Microsoft.Compute" || val(got.RegistrationState) != "Registered" {
		t.Errorf("Microsoft.Compute: namespace %q state %q", val(got.Namespace), val(got.RegistrationState))
	}
	var vmss *armresources.ProviderResourceType
	for _, rt := range got.ResourceTypes {
		if val(rt.ResourceType) == "virtualMachineScaleSets" {
			vmss = rt
		}
	}
	if vmss == nil {
		t.Fatalf("no virtualMachineScaleSets among %d resource types", len(got.ResourceTypes))
	}
	versions := values(vmss.APIVersions)
	if len(versions) == 0 || versions[0] != "2026-04-01" || !slices.Contains(versions, "2020-06-01") || !slices.Contains(versions, "2017-03-30") {
		t.Errorf("virtualMachineScaleSets api-versions (newest first): %v", versions)
	}
	if locs := values(vmss.Locations); !slices.Equal(locs, []string{"local"}) {
		t.Errorf("virtualMachineScaleSets locations: %v", locs)
	}

	var namespaces []string
	pg := pc.NewListPager(nil)
	for pg.More() {
		p, err := pg.NextPage(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatalf("list providers: %v", err)
		}
		for _, p := range p.Value {
			namespaces = append(namespaces, val(p.Namespace))
		}
	}
	for _, ns := range []string{"Microsoft.Compute", "Microsoft.Network", "Microsoft.Resources"} {
		if !slices.Contains(namespaces, ns) {
			t.Errorf("providers list lacks %s: %v", ns, namespaces)
		}
	}
	if slices.Contains(namespaces, "vmssd.Admin") {
		t.Errorf("providers list shows the admin namespace: %v", namespaces)
	}
	if reg, err := pc.Register(ctxT(t, 30*time.Second), "Microsoft.Network", nil); err != nil || val(reg.RegistrationState) != "Registered" {
		t.Errorf("register Microsoft.Network: %v %v", err, reg.RegistrationState)
	}
	_, err = pc.Get(ctxT(t, 30*time.Second), "Microsoft.Nope", nil)
	if re := (*azcore.ResponseError)(nil); !errors.As(err, &re) || re.StatusCode != http.StatusNotFound || re.ErrorCode != "InvalidResourceNamespace" {
		t.Errorf("get Microsoft.Nope: %v", err)
	}

	// The subscriptions API at the versions az's profiles use (2016-06-01
	// hybrid, 2019-11-01 latest), and the one location.
	for _, v := range []string{"2016-06-01", "2019-11-01"} {
		if r := e.Do(http.MethodGet, "/subscriptions?api-version="+v, nil); r.Status != http.StatusOK {
			t.Errorf("GET /subscriptions?api-version=%s: %d %s", v, r.Status, r.Body)
		}
		r := e.Do(http.MethodGet, "/subscriptions/"+e.Sub+"/locations?api-version="+v, nil)
		var locs struct {
			Value []struct{ ID, Name, DisplayName string }
		}
		if err := r.JSON(&locs); r.Status != http.StatusOK || err != nil || len(locs.Value) != 1 || locs.Value[0].Name != "local" ||
			locs.Value[0].ID != "/subscriptions/"+e.Sub+"/locations/local" {
			t.Errorf("GET locations?api-version=%s: %d %s", v, r.Status, r.Body)
		}
	}

	sc, err := armcompute.NewResourceSKUsClient(server.DefaultSubscriptionID, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	var skus []string
	spg := sc.NewListPager(nil)
	for spg.More() {
		p, err := spg.NextPage(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatalf("list resource SKUs: %v", err)
		}
		for _, s := range p.Value {
			if val(s.ResourceType) != "virtualMachines" || !slices.Equal(values(s.Locations), []string{"local"}) || len(s.Capabilities) == 0 {
				t.Errorf("SKU %+v", s)
			}
			skus = append(skus, val(s.Name))
		}
	}
	if !slices.Contains(skus, "Standard_A1") {
		t.Errorf("resource SKUs: %v", skus)
	}
}

// TestUnknownRoutes: what is not served (a namespace, a resource type, an
// action) is a 400 naming the type and api-version; a missing resource of a
// served type is a 404, as ARM answers them, through the generic
// resources client az resource uses.
func TestUnknownRoutes(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	rc, err := armresources.NewClient(server.DefaultSubscriptionID, staticCred(e.Token), &arm.ClientOptions{ClientOptions: coreOptions(e), DisableRPRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	rg := e.RGPath("rg")
	for _, tc := range []struct {
		id, api string
		status  int
		code    string
		says    string
	}{
		{rg + "/providers/Microsoft.Compute/fooBars/x", "2020-06-01", 400, "InvalidResourceType", "'fooBars' could not be found in the namespace 'Microsoft.Compute' for api version '2020-06-01'"},
		{rg + "/providers/Microsoft.Compute/virtualMachineScaleSets/web/gizmos/1", "2020-06-01", 400, "InvalidResourceType", "'virtualMachineScaleSets/gizmos'"},
		{rg + "/providers/Microsoft.Nope/things/x", "2020-06-01", 400, "InvalidResourceNamespace", "'Microsoft.Nope'"},
		{rg + "/providers/Microsoft.Compute/virtualMachineScaleSets/web", "2020-06-01", 404, "ResourceNotFound", "web"},
		{rg + "/providers/Microsoft.Compute/virtualMachineScaleSets/web", "2099-01-01", 400, "NoRegisteredProviderFound", "virtualMachineScaleSets"},
	} {
		_, err := rc.GetByID(ctxT(t, 30*time.Second), tc.id, tc.api, nil)
		var re *azcore.ResponseError
		if !errors.As(err, &re) || re.StatusCode != tc.status || re.ErrorCode != tc.code || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("GET %s (api %s): %v; want %d %s saying %q", tc.id, tc.api, err, tc.status, tc.code, tc.says)
		}
	}
	// An unknown action on a scale set.
	r := e.Do(http.MethodPost, e.VMSSPath("rg", "web")+"/frobnicate?api-version=2020-06-01", nil)
	if r.Status != http.StatusBadRequest || r.ErrorCode() != "InvalidResourceType" || !strings.Contains(string(r.Body), "virtualMachineScaleSets/frobnicate") {
		t.Errorf("POST unknown action: %d %s", r.Status, r.Body)
	}
	// A tenant learns nothing of admin namespaces from unknown paths, nor of
	// subscriptions it may not use.
	if r := e.Do(http.MethodPut, "/providers/vmssd.Admin/principals/someone?api-version=2015-12-01-preview",
		map[string]any{"role": "tenant", "subscriptions": []string{e.Sub}}); r.Status != http.StatusCreated {
		t.Fatalf("create a tenant principal: %d %s", r.Status, r.Body)
	}
	tok := e.IssueToken("someone", auth.RoleTenant)
	for _, p := range []string{
		"/providers/vmssd.Admin/nothing?api-version=2015-12-01-preview",
		"/providers/vmssd.Admin/principals/x/y?api-version=2015-12-01-preview",
		"/subscriptions/00000000-0000-0000-0000-0000000000ff/providers/Microsoft.Compute/fooBars?api-version=2020-06-01",
	} {
		if r := e.DoAs(tok, http.MethodGet, p, nil); r.Status != http.StatusNotFound {
			t.Errorf("tenant, GET %s: %d %s", p, r.Status, r.Body)
		}
	}
	if r := e.DoAs(tok, http.MethodGet, rg+"/providers/Microsoft.Compute/fooBars?api-version=2020-06-01", nil); r.Status != http.StatusBadRequest {
		t.Errorf("tenant, unknown type in its subscription: %d %s", r.Status, r.Body)
	}
}

// TestPollingHeaders: every answer that leaves an operation running tells
// the client when to ask again (az waits 30 s otherwise).
func TestPollingHeaders(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg-ops")
	op, ops := state.NewOperation("test", e.Sub, "local", model.ResourceGroupKey(e.Sub, "rg-ops"), 0, time.Now())
	if _, err := e.Server.Store.Txn(context.Background(), nil, ops...); err != nil {
		t.Fatal(err)
	}
	path := "/subscriptions/" + e.Sub + "/providers/Microsoft.Compute/locations/local/operations/" + op.ID + "?api-version=2020-06-01"
	r := e.Do(http.MethodGet, path, nil)
	if r.Status != http.StatusOK || r.Map()["status"] != "InProgress" || r.Header.Get("Retry-After") != "1" {
		t.Errorf("operation status: %d Retry-After %q %s", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	r = e.Do(http.MethodGet, path+"&monitor=true", nil)
	if r.Status != http.StatusAccepted || r.Header.Get("Retry-After") != "1" || r.Header.Get("Location") == "" {
		t.Errorf("Location poll: %d Retry-After %q Location %q", r.Status, r.Header.Get("Retry-After"), r.Header.Get("Location"))
	}
	r = e.Do(http.MethodPut, e.VMSSPath("rg-ops", "web"), testenv.VMSSBody(1, "1.0.0", "Manual"))
	if r.Status != http.StatusCreated || r.Header.Get("Retry-After") != "1" || r.Header.Get("Azure-AsyncOperation") == "" {
		t.Errorf("PUT: %d Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
}

// TestLoginTenant: the tenant in the client config is the AD FS authority
// the metadata advertises; azidentity signs in with it without being told
// to skip instance discovery (MSAL asks no one else about AD FS).
func TestLoginTenant(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	if e.Server.Client.Tenant != client.LoginTenant {
		t.Fatalf("client config tenant %q, want %q", e.Server.Client.Tenant, client.LoginTenant)
	}
	r := e.DoAs("", http.MethodGet, "/metadata/endpoints?api-version=2015-01-01", nil)
	auth, _ := r.Map()["authentication"].(map[string]any)
	if want := e.Server.URL + "/adfs"; auth["loginEndpoint"] != want {
		t.Errorf("metadata loginEndpoint %v, want %s", auth["loginEndpoint"], want)
	}
	r = e.DoAs("", http.MethodGet, "/metadata/endpoints?api-version=2022-09-01", nil)
	auth, _ = r.Map()["authentication"].(map[string]any)
	if auth["tenant"] != client.LoginTenant || auth["identityProvider"] != "ADFS" {
		t.Errorf("metadata authentication %v", auth)
	}
	cred, err := azidentity.NewClientSecretCredential(e.Server.Client.Tenant, e.Server.Client.ClientID, e.Server.Client.ClientSecret,
		&azidentity.ClientSecretCredentialOptions{ClientOptions: coreOptions(e)})
	if err != nil {
		t.Fatal(err)
	}
	c := newClients(t, e, cred, "")
	if _, err := c.rgs.CreateOrUpdate(ctxT(t, 30*time.Second), "rg-login", armresources.ResourceGroup{Location: to.Ptr("local")}, nil); err != nil {
		t.Fatalf("create a resource group with the config's tenant: %v", err)
	}
	if _, err := cred.GetToken(ctxT(t, 30*time.Second), policy.TokenRequestOptions{Scopes: []string{e.Server.Client.Audience + "/.default"}}); err != nil {
		t.Fatal(err)
	}
}

func values(ps []*string) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, val(p))
	}
	return out
}
