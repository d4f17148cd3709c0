package compat

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

// usages lists the subscription's compute usages with armcompute's
// UsageClient, as az vm list-usage does, by usage name.
func usages(t *testing.T, c *armcompute.UsageClient) map[string]*armcompute.Usage {
	t.Helper()
	out := map[string]*armcompute.Usage{}
	pg := c.NewListPager("local", nil)
	for pg.More() {
		p, err := pg.NextPage(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatalf("list usages: %v", err)
		}
		for _, u := range p.Value {
			if u.Name == nil || u.Name.Value == nil || u.Name.LocalizedValue == nil || u.CurrentValue == nil || u.Limit == nil || val(u.Unit) != "Count" {
				t.Fatalf("usage missing required fields: %+v", u)
			}
			out[*u.Name.Value] = u
		}
	}
	return out
}

// TestUsagesAndQuota: the SDK's UsageClient reads the quota and what the
// subscription uses of it, and a create beyond the quota fails as Azure's
// does (409 OperationNotAllowed) through the SDK.
func TestUsagesAndQuota(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	cred := staticCred(e.Token)
	opts := &arm.ClientOptions{ClientOptions: coreOptions(e), DisableRPRegistration: true}
	uc, err := armcompute.NewUsageClient(server.DefaultSubscriptionID, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := newClients(t, e, cred, "")
	if _, err := c.rgs.CreateOrUpdate(ctxT(t, 30*time.Second), "rg-usage", armresources.ResourceGroup{Location: to.Ptr("local")}, nil); err != nil {
		t.Fatalf("create rg: %v", err)
	}
	if r := e.Do(http.MethodPut, "/providers/vmssd.Admin/quotas/"+server.DefaultSubscriptionID+"?api-version=2015-12-01-preview",
		map[string]any{"vcpus": 3, "instances": 10, "scaleSets": 5}); r.Status != http.StatusOK {
		t.Fatalf("set quota: %d %s", r.Status, r.Body)
	}
	before := usages(t, uc)
	for _, name := range []string{"cores", "virtualMachines", "virtualMachineScaleSets"} {
		if before[name] == nil {
			t.Fatalf("no %s usage in %v", name, before)
		}
	}
	if u := before["cores"]; *u.CurrentValue != 0 || *u.Limit != 3 || !strings.Contains(*u.Name.LocalizedValue, "vCPUs") {
		t.Errorf("cores before: %d of %d (%s)", *u.CurrentValue, *u.Limit, *u.Name.LocalizedValue)
	}
	p, err := c.sets.BeginCreateOrUpdate(ctxT(t, 30*time.Second), "rg-usage", "web", scaleSet(2, "latest"), nil)
	done(t, "create", p, err)
	t.Cleanup(func() {
		p, err := c.sets.BeginDelete(ctxT(t, opTimeout), "rg-usage", "web", nil)
		if err == nil {
			_, _ = p.PollUntilDone(ctxT(t, opTimeout), pollOpts)
		}
	})
	after := usages(t, uc)
	for name, want := range map[string][2]int64{"cores": {2, 3}, "virtualMachines": {2, 10}, "virtualMachineScaleSets": {1, 5}} {
		if u := after[name]; int64(*u.CurrentValue) != want[0] || *u.Limit != want[1] {
			t.Errorf("%s after: %d of %d, want %d of %d", name, *u.CurrentValue, *u.Limit, want[0], want[1])
		}
	}
	_, err = c.sets.BeginCreateOrUpdate(ctxT(t, 30*time.Second), "rg-usage", "web2", scaleSet(2, "latest"), nil)
	responseError(t, "create beyond the cores quota", err, http.StatusConflict, "OperationNotAllowed")
	if !strings.Contains(err.Error(), "Total Regional Cores quota") {
		t.Errorf("quota error: %v", err)
	}
}
