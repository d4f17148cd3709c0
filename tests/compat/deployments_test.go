package compat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

// TestDeploymentsSDK drives template deployments with armresources'
// DeploymentsClient: what-if before (everything is created), create with
// its long-running operation, get with outputs, the per-resource
// operations, what-if after (nothing changes), a failing deployment's
// error, and delete (the record only).
func TestDeploymentsSDK(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	cred := staticCred(e.Token)
	c := newClients(t, e, cred, "")
	dc, err := armresources.NewDeploymentsClient(server.DefaultSubscriptionID, cred, &arm.ClientOptions{ClientOptions: coreOptions(e), DisableRPRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, opTimeout)
	if _, err := c.rgs.CreateOrUpdate(ctx, "rg", armresources.ResourceGroup{Location: to.Ptr("local")}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "templates", "vmss-no-network.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	if err := json.Unmarshal(b, &tmpl); err != nil {
		t.Fatal(err)
	}
	params := map[string]any{
		"vmssName": map[string]any{"value": "sdk"}, "instanceCount": map[string]any{"value": 2},
		"osImagePublisher": map[string]any{"value": "vmssd"}, "osImageOffer": map[string]any{"value": "demo"},
		"osImageSku": map[string]any{"value": "guest"}, "adminPassword": map[string]any{"value": "S3cret!pass"},
	}
	props := &armresources.DeploymentProperties{Mode: to.Ptr(armresources.DeploymentModeIncremental), Template: tmpl, Parameters: params}

	wp, err := dc.BeginWhatIf(ctx, "rg", "sdk", armresources.DeploymentWhatIf{Properties: &armresources.DeploymentWhatIfProperties{
		Mode: props.Mode, Template: tmpl, Parameters: params}}, nil)
	wi := done(t, "what-if before", wp, err)
	if len(wi.Properties.Changes) != 2 {
		t.Fatalf("what-if before: %d changes", len(wi.Properties.Changes))
	}
	for _, ch := range wi.Properties.Changes {
		if *ch.ChangeType != armresources.ChangeTypeCreate && *ch.ChangeType != armresources.ChangeTypeDeploy {
			t.Errorf("what-if before: %s %s", *ch.ResourceID, *ch.ChangeType)
		}
	}

	p, err := dc.BeginCreateOrUpdate(ctx, "rg", "sdk", armresources.Deployment{Properties: props}, nil)
	res := done(t, "create", p, err)
	if *res.Properties.ProvisioningState != armresources.ProvisioningStateSucceeded {
		t.Fatalf("create: %s", *res.Properties.ProvisioningState)
	}
	got, err := dc.Get(ctx, "rg", "sdk", nil)
	if err != nil {
		t.Fatal(err)
	}
	outs, _ := got.Properties.Outputs.(map[string]any)
	id, _ := outs["vmssId"].(map[string]any)["value"].(string)
	if !strings.Contains(id, "/virtualMachineScaleSets/") || got.Properties.Duration == nil || got.Properties.CorrelationID == nil {
		t.Fatalf("get: outputs %v", outs)
	}
	waitVMs(t, c, "rg", id[strings.LastIndex(id, "/")+1:], 2)

	pager := dc.NewListByResourceGroupPager("rg", nil)
	n := 0
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n += len(page.Value)
	}
	if n != 1 {
		t.Fatalf("list: %d deployments", n)
	}

	ops := armresources.NewDeploymentOperationsClient
	oc, err := ops(server.DefaultSubscriptionID, cred, &arm.ClientOptions{ClientOptions: coreOptions(e), DisableRPRegistration: true})
	if err != nil {
		t.Fatal(err)
	}
	opPager := oc.NewListPager("rg", "sdk", nil)
	types := map[string]string{}
	for opPager.More() {
		page, err := opPager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, op := range page.Value {
			pr := op.Properties
			if pr.TargetResource == nil || pr.Timestamp == nil || pr.StatusCode == nil {
				t.Fatalf("operation %+v", pr)
			}
			types[*pr.TargetResource.ResourceType] = *pr.ProvisioningState
		}
	}
	if types["Microsoft.Storage/storageAccounts"] != "Succeeded" || types["Microsoft.Compute/virtualMachineScaleSets"] != "Succeeded" {
		t.Fatalf("operations: %v", types)
	}

	wp, err = dc.BeginWhatIf(ctx, "rg", "sdk2", armresources.DeploymentWhatIf{Properties: &armresources.DeploymentWhatIfProperties{
		Mode: props.Mode, Template: tmpl, Parameters: params}}, nil)
	wi = done(t, "what-if after", wp, err)
	for _, ch := range wi.Properties.Changes {
		if *ch.ChangeType != armresources.ChangeTypeNoChange {
			t.Errorf("what-if after deploying: %s %s %v", *ch.ResourceID, *ch.ChangeType, ch.Delta)
		}
	}

	// A deployment whose scale set cannot be created fails with details.
	bad := map[string]any{}
	for k, v := range params {
		bad[k] = v
	}
	bad["osImageOffer"] = map[string]any{"value": "nosuchoffer"}
	bad["vmssName"] = map[string]any{"value": "bad"}
	p, err = dc.BeginCreateOrUpdate(ctx, "rg", "bad", armresources.Deployment{Properties: &armresources.DeploymentProperties{
		Mode: props.Mode, Template: tmpl, Parameters: bad}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(ctx, pollOpts); err == nil || !strings.Contains(err.Error(), "DeploymentFailed") {
		t.Fatalf("failing deployment: %v", err)
	}

	dp, err := dc.BeginDelete(ctx, "rg", "sdk", nil)
	done(t, "delete", dp, err)
	if _, err := dc.Get(ctx, "rg", "sdk", nil); err == nil {
		t.Fatal("deployment still there after delete")
	}
	if _, err := c.sets.Get(ctx, "rg", id[strings.LastIndex(id, "/")+1:], nil); err != nil {
		t.Fatalf("delete took the scale set with it: %v", err)
	}
}
