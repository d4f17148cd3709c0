package template

import (
	"context"
	"fmt"
	"strings"
	"time"
)

const (
	testSub = "00000000-0000-0000-0000-000000000001"
	testRG  = "rg1"
)

var testNow = time.Date(2026, 12, 7, 4, 5, 6, 0, time.UTC)

// testEnv is a resource group deployment with deterministic callbacks: a
// real Env as an executor would build it, answering from fixed data.
func testEnv() Env {
	return Env{
		Subscription:  Subscription{SubscriptionID: testSub, TenantID: "tenant-1", DisplayName: "sub one"},
		ResourceGroup: &ResourceGroup{Name: testRG, Location: "local", Tags: map[string]string{"env": "test"}},
		Tenant:        Tenant{TenantID: "tenant-1", DisplayName: "Contoso", CountryCode: "US"},
		Deployment:    DeploymentInfo{Name: "dep1"},
		Deployer:      Deployer{ObjectID: "obj-1", TenantID: "tenant-1", UserPrincipalName: "a@b.c"},
		Environment:   map[string]any{"name": "vmssd", "suffixes": map[string]any{"storage": "local.vmssd"}},
		Now:           func() time.Time { return testNow },
		NewGUID:       func() string { return "11111111-2222-4333-8444-555555555555" },
		Reference: func(_ context.Context, req ReferenceRequest) (any, error) {
			props := map[string]any{"provisioningState": "Succeeded", "id": req.ResourceID, "apiVersionSeen": req.APIVersion}
			if strings.Contains(strings.ToLower(req.ResourceID), "/publicipaddresses/") {
				props["dnsSettings"] = map[string]any{"fqdn": "web.local.cloudapp.vmssd"}
			}
			if strings.Contains(strings.ToLower(req.ResourceID), "/storageaccounts/") {
				props["primaryEndpoints"] = map[string]any{"blob": "https://sa.blob.local.vmssd/"}
			}
			if strings.Contains(req.ResourceID, "missing") {
				return nil, fmt.Errorf("resource %s not found", req.ResourceID)
			}
			if req.Full {
				return map[string]any{"id": req.ResourceID, "properties": props, "location": "local"}, nil
			}
			return props, nil
		},
		List: func(_ context.Context, req ListRequest) (any, error) {
			return map[string]any{"function": req.Function, "id": req.ResourceID, "keys": []any{map[string]any{"value": "key1"}}, "body": req.Body}, nil
		},
		Providers: func(_ context.Context, ns, typ string) (any, error) {
			return map[string]any{"namespace": ns, "resourceTypes": []any{map[string]any{"resourceType": typ, "apiVersions": []any{"2020-06-01"}}}}, nil
		},
		Zones: func(context.Context, string, string, string) ([]string, error) {
			return []string{"1", "2", "3"}, nil
		},
	}
}
