package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/deploy"
)

// API versions the dashboard speaks.
const (
	computeAPI = "2024-11-01"
	resAPI     = "2022-09-01"
	adminAPI   = "2024-01-01"
)

// Dispatcher runs an ARM request in process as a principal
// (apiserver.Server.DoAs): the dashboard has no other way to read or
// change anything, so its authorization is the API's.
type Dispatcher interface {
	DoAs(ctx context.Context, id deploy.Identity, method, path string, header http.Header, body []byte) (*deploy.Response, error)
}

// armError is an ARM error answer.
type armError struct {
	Status  int
	Code    string
	Message string
}

func (e *armError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// client calls the API as one principal.
type client struct {
	api Dispatcher
	id  deploy.Identity
}

// call sends a request and decodes a 2xx JSON answer into out (may be nil).
func (c client) call(ctx context.Context, method, path string, hdr http.Header, in, out any) (*deploy.Response, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("dashboard: encode request: %w", err)
		}
		body = b
	}
	resp, err := c.api.DoAs(ctx, c.id, method, path, hdr, body)
	if err != nil {
		return nil, &armError{Status: http.StatusUnauthorized, Code: "InvalidAuthenticationToken", Message: err.Error()}
	}
	if resp.Status >= 300 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(resp.Body, &e)
		if e.Error.Code == "" {
			e.Error.Code = http.StatusText(resp.Status)
		}
		return resp, &armError{Status: resp.Status, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out != nil && len(resp.Body) > 0 {
		if err := json.Unmarshal(resp.Body, out); err != nil {
			return resp, fmt.Errorf("dashboard: decode %s %s: %w", method, path, err)
		}
	}
	return resp, nil
}

func withAPI(path, v string) string {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "api-version=" + v
}

// SetRef names a scale set.
type SetRef struct{ Sub, RG, Name string }

func (r SetRef) path() string {
	return "/subscriptions/" + url.PathEscape(r.Sub) + "/resourceGroups/" + url.PathEscape(r.RG) +
		"/providers/Microsoft.Compute/virtualMachineScaleSets/" + url.PathEscape(r.Name)
}

// Query is the set's page query string.
func (r SetRef) Query() string {
	return url.Values{"sub": {r.Sub}, "rg": {r.RG}, "name": {r.Name}}.Encode()
}

func (r SetRef) valid() bool {
	for _, v := range []string{r.Sub, r.RG, r.Name} {
		if v == "" || strings.ContainsAny(v, "/?#") {
			return false
		}
	}
	return true
}

func (r SetRef) String() string { return r.Sub + "/" + r.RG + "/" + r.Name }

// refFromID parses a scale set's ARM id.
func refFromID(id string) (SetRef, bool) {
	p := strings.Split(strings.Trim(id, "/"), "/")
	if len(p) != 8 || !strings.EqualFold(p[0], "subscriptions") || !strings.EqualFold(p[2], "resourceGroups") {
		return SetRef{}, false
	}
	return SetRef{Sub: p[1], RG: p[3], Name: p[7]}, true
}

// listSets lists every scale set the principal can see, by subscription.
func (c client) listSets(ctx context.Context) ([]SetRef, error) {
	var subs struct {
		Value []struct {
			SubscriptionID string `json:"subscriptionId"`
		} `json:"value"`
	}
	if _, err := c.call(ctx, http.MethodGet, withAPI("/subscriptions", resAPI), nil, nil, &subs); err != nil {
		return nil, err
	}
	var out []SetRef
	for _, s := range subs.Value {
		next := withAPI("/subscriptions/"+url.PathEscape(s.SubscriptionID)+"/providers/Microsoft.Compute/virtualMachineScaleSets", computeAPI)
		for next != "" {
			var page armcompute.VirtualMachineScaleSetListWithLinkResult
			if _, err := c.call(ctx, http.MethodGet, next, nil, nil, &page); err != nil {
				return nil, err
			}
			for _, v := range page.Value {
				if v.ID == nil {
					continue
				}
				if r, ok := refFromID(*v.ID); ok {
					out = append(out, r)
				}
			}
			next = localLink(page.NextLink)
		}
	}
	return out, nil
}

// localLink turns a nextLink into a path for DoAs.
func localLink(link *string) string {
	if link == nil || *link == "" {
		return ""
	}
	u, err := url.Parse(*link)
	if err != nil {
		return ""
	}
	return u.RequestURI()
}

// getSet reads the scale set and its ETag.
func (c client) getSet(ctx context.Context, r SetRef) (*armcompute.VirtualMachineScaleSet, string, error) {
	var v armcompute.VirtualMachineScaleSet
	resp, err := c.call(ctx, http.MethodGet, withAPI(r.path(), computeAPI), nil, nil, &v)
	if err != nil {
		return nil, "", err
	}
	return &v, resp.Header.Get("ETag"), nil
}

// cells reads the set's instances with their views and addresses.
func (c client) cells(ctx context.Context, r SetRef) ([]Cell, error) {
	ips := map[string]string{}
	var nics armnetwork.InterfaceListResult
	next := withAPI(r.path()+"/networkInterfaces", computeAPI)
	for next != "" {
		if _, err := c.call(ctx, http.MethodGet, next, nil, nil, &nics); err != nil {
			break // addresses are a nicety
		}
		for _, n := range nics.Value {
			if n.Properties == nil || n.Properties.VirtualMachine == nil || n.Properties.VirtualMachine.ID == nil {
				continue
			}
			for _, ipc := range n.Properties.IPConfigurations {
				if ipc.Properties != nil && ipc.Properties.PrivateIPAddress != nil && *ipc.Properties.PrivateIPAddress != "" {
					ips[strings.ToLower(*n.Properties.VirtualMachine.ID)] = *ipc.Properties.PrivateIPAddress
					break
				}
			}
		}
		next = localLink(nics.NextLink)
		nics = armnetwork.InterfaceListResult{}
	}
	var out []Cell
	next = withAPI(r.path()+"/virtualMachines?$expand=instanceView", computeAPI)
	for next != "" {
		var page armcompute.VirtualMachineScaleSetVMListResult
		if _, err := c.call(ctx, http.MethodGet, next, nil, nil, &page); err != nil {
			return nil, err
		}
		for _, vm := range page.Value {
			out = append(out, cellOf(vm, ips))
		}
		next = localLink(page.NextLink)
	}
	return out, nil
}

// cellOf maps a wire instance to a cell. Pure.
func cellOf(vm *armcompute.VirtualMachineScaleSetVM, ips map[string]string) Cell {
	c := Cell{ID: deref(vm.InstanceID), Power: "unknown", Health: "unknown"}
	if vm.ID != nil {
		c.IP = ips[strings.ToLower(*vm.ID)]
	}
	p := vm.Properties
	if p == nil {
		return c
	}
	c.Latest = p.LatestModelApplied == nil || *p.LatestModelApplied
	c.Prov = deref(p.ProvisioningState)
	if pp := p.ProtectionPolicy; pp != nil {
		c.Protected = pp.ProtectFromScaleIn != nil && *pp.ProtectFromScaleIn || pp.ProtectFromScaleSetActions != nil && *pp.ProtectFromScaleSetActions
	}
	if p.StorageProfile != nil && p.StorageProfile.ImageReference != nil {
		c.Version = cmp.Or(deref(p.StorageProfile.ImageReference.ExactVersion), deref(p.StorageProfile.ImageReference.Version))
	}
	if iv := p.InstanceView; iv != nil {
		if iv.PlatformUpdateDomain != nil {
			c.UD = int(*iv.PlatformUpdateDomain)
		}
		if iv.PlatformFaultDomain != nil {
			c.FD = int(*iv.PlatformFaultDomain)
		}
		if c.Version == "" {
			c.Version = deref(iv.OSVersion)
		}
		for _, s := range iv.Statuses {
			if code := deref(s.Code); strings.HasPrefix(code, "PowerState/") {
				c.Power = strings.ToLower(strings.TrimPrefix(code, "PowerState/"))
			}
		}
		if iv.VMHealth != nil && iv.VMHealth.Status != nil {
			c.Health = strings.ToLower(strings.TrimPrefix(deref(iv.VMHealth.Status.Code), "HealthState/"))
		}
	}
	if strings.EqualFold(c.Prov, "Failed") {
		c.Power = "failed"
	}
	return c
}

func deref[T ~string](p *T) string {
	if p == nil {
		return ""
	}
	return string(*p)
}
