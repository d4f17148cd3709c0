package compat

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

// Timeouts: guests are real processes on a small shared machine.
const (
	opTimeout    = 90 * time.Second
	stateTimeout = 60 * time.Second
)

// staticCred is a fixed-token azcore.TokenCredential (arm-api.md §9.3).
type staticCred string

func (s staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// apiRecorder remembers the api-version of every request to its provider
// (path, lower case; default Microsoft.Compute) the pipeline sends (it runs
// after the APIVersion override policy).
type apiRecorder struct {
	provider string
	mu       sync.Mutex
	versions map[string]int
}

func (r *apiRecorder) Do(req *policy.Request) (*http.Response, error) {
	u := req.Raw().URL
	provider := r.provider
	if provider == "" {
		provider = "/providers/microsoft.compute/"
	}
	if strings.Contains(strings.ToLower(u.Path), provider) {
		r.mu.Lock()
		if r.versions == nil {
			r.versions = map[string]int{}
		}
		r.versions[u.Query().Get("api-version")]++
		r.mu.Unlock()
	}
	return req.Next()
}

func (r *apiRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for v := range r.versions {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// httpClient trusts only the server's CA.
func httpClient(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// coreOptions is the azcore configuration for vmssd: our ARM endpoint and
// audience, a transport trusting our CA, no retries.
func coreOptions(e *testenv.Env) azcore.ClientOptions {
	return azcore.ClientOptions{
		Cloud: cloud.Configuration{
			ActiveDirectoryAuthorityHost: e.Server.URL + "/",
			Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
				cloud.ResourceManager: {Endpoint: e.Server.URL, Audience: auth.DefaultAudience},
			},
		},
		Transport: httpClient(e.Server.CAPEM),
		Retry:     policy.RetryOptions{MaxRetries: -1},
	}
}

// pinnedOptions are the ARM client options for vmssd with requests pinned to
// apiVersion (unless "") and recorded by rec.
func pinnedOptions(e *testenv.Env, apiVersion string, rec policy.Policy) *arm.ClientOptions {
	co := coreOptions(e)
	co.APIVersion = apiVersion
	co.PerCallPolicies = []policy.Policy{rec}
	return &arm.ClientOptions{ClientOptions: co, DisableRPRegistration: true}
}

// clients are the SDK clients a scenario uses.
type clients struct {
	sets   *armcompute.VirtualMachineScaleSetsClient
	vms    *armcompute.VirtualMachineScaleSetVMsClient
	images *armcompute.VirtualMachineImagesClient
	rgs    *armresources.ResourceGroupsClient
	rec    *apiRecorder
}

// newClients builds the compute clients (pinned to apiVersion unless "")
// and a resource-group client at armresources' own version.
func newClients(t *testing.T, e *testenv.Env, cred azcore.TokenCredential, apiVersion string) *clients {
	t.Helper()
	rec := &apiRecorder{}
	f, err := armcompute.NewClientFactory(server.DefaultSubscriptionID, cred, pinnedOptions(e, apiVersion, rec))
	if err != nil {
		t.Fatalf("armcompute client factory: %v", err)
	}
	rgs, err := armresources.NewResourceGroupsClient(server.DefaultSubscriptionID, cred, &arm.ClientOptions{ClientOptions: coreOptions(e), DisableRPRegistration: true})
	if err != nil {
		t.Fatalf("resource group client: %v", err)
	}
	return &clients{
		sets: f.NewVirtualMachineScaleSetsClient(), vms: f.NewVirtualMachineScaleSetVMsClient(),
		images: f.NewVirtualMachineImagesClient(), rgs: rgs, rec: rec,
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

var pollOpts = &runtime.PollUntilDoneOptions{Frequency: 100 * time.Millisecond}

// done waits for a poller started by a Begin* call.
func done[T any](t *testing.T, what string, p *runtime.Poller[T], err error) T {
	t.Helper()
	var zero T
	if err != nil {
		t.Fatalf("%s: begin: %v", what, err)
		return zero
	}
	res, err := p.PollUntilDone(ctxT(t, opTimeout), pollOpts)
	if err != nil {
		t.Fatalf("%s: poll: %v", what, err)
	}
	return res
}

// responseError asserts err is an *azcore.ResponseError with the status and
// code.
func responseError(t *testing.T, what string, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("%s: want *azcore.ResponseError %d %s, got %T %v", what, status, code, err, err)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("%s: got %d %q, want %d %q (%v)", what, re.StatusCode, re.ErrorCode, status, code, err)
	}
}

// scaleSet is a Uniform scale set model of the demo image.
func scaleSet(capacity int64, version string) armcompute.VirtualMachineScaleSet {
	return armcompute.VirtualMachineScaleSet{
		Location: to.Ptr("local"),
		SKU:      &armcompute.SKU{Name: to.Ptr("Standard_A1"), Tier: to.Ptr("Standard"), Capacity: to.Ptr(capacity)},
		Properties: &armcompute.VirtualMachineScaleSetProperties{
			UpgradePolicy: &armcompute.UpgradePolicy{Mode: to.Ptr(armcompute.UpgradeModeManual)},
			VirtualMachineProfile: &armcompute.VirtualMachineScaleSetVMProfile{
				OSProfile: &armcompute.VirtualMachineScaleSetOSProfile{
					ComputerNamePrefix: to.Ptr("web"), AdminUsername: to.Ptr("azureuser"), AdminPassword: to.Ptr("S3cret!pass"),
				},
				StorageProfile: &armcompute.VirtualMachineScaleSetStorageProfile{
					ImageReference: &armcompute.ImageReference{
						Publisher: to.Ptr(server.DemoPublisher), Offer: to.Ptr(server.DemoOffer), SKU: to.Ptr(server.DemoSKU), Version: to.Ptr(version),
					},
				},
			},
		},
	}
}

// listVMs lists a set's instances with the SDK pager and counts pages.
func listVMs(t *testing.T, c *clients, rg, name string, expand bool) ([]*armcompute.VirtualMachineScaleSetVM, int) {
	t.Helper()
	var opts *armcompute.VirtualMachineScaleSetVMsClientListOptions
	if expand {
		opts = &armcompute.VirtualMachineScaleSetVMsClientListOptions{Expand: to.Ptr("instanceView")}
	}
	var out []*armcompute.VirtualMachineScaleSetVM
	pages := 0
	pg := c.vms.NewListPager(rg, name, opts)
	for pg.More() {
		p, err := pg.NextPage(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatalf("list vms: %v", err)
		}
		pages++
		out = append(out, p.Value...)
	}
	return out, pages
}

// waitVMs waits until the set has n instances, all provisioned, and
// returns their ids in order.
func waitVMs(t *testing.T, c *clients, rg, name string, n int) []string {
	t.Helper()
	var ids []string
	testenv.Eventually(t, stateTimeout, "instance count", func() bool {
		vms, _ := listVMs(t, c, rg, name, false)
		ids = ids[:0]
		for _, v := range vms {
			if v.Properties == nil || val(v.Properties.ProvisioningState) != "Succeeded" {
				return false
			}
			ids = append(ids, val(v.InstanceID))
		}
		return len(ids) == n
	})
	return ids
}

// powerState is the PowerState/* code of an instance's view.
func powerState(t *testing.T, c *clients, rg, name, id string) string {
	t.Helper()
	iv, err := c.vms.GetInstanceView(ctxT(t, 30*time.Second), rg, name, id, nil)
	if err != nil {
		t.Fatalf("instance view %s: %v", id, err)
	}
	for _, s := range iv.Statuses {
		if code := val(s.Code); strings.HasPrefix(code, "PowerState/") {
			return code
		}
	}
	return ""
}

func waitPower(t *testing.T, c *clients, rg, name, id, want string) {
	t.Helper()
	testenv.Eventually(t, stateTimeout, "instance "+id+" "+want, func() bool {
		return powerState(t, c, rg, name, id) == want
	})
}

func ids(v ...string) *armcompute.VirtualMachineScaleSetVMInstanceIDs {
	return &armcompute.VirtualMachineScaleSetVMInstanceIDs{InstanceIDs: to.SliceOfPtrs(v...)}
}

// val dereferences p, or returns T's zero value.
func val[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
