package security

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/testenv"
)

const netAPI = "?api-version=2025-05-01"

func (tn *tenant) net(typ, name string) string {
	return tn.rg() + "/providers/Microsoft.Network/" + typ + "/" + name
}

// netPut writes a network resource and wants status.
func netPut(t *testing.T, e *testenv.Env, token, path string, body any, status int) *testenv.Response {
	t.Helper()
	r := send(t, e, token, call{method: http.MethodPut, path: path + netAPI, body: body})
	if r.Status != status {
		t.Fatalf("PUT %s: %d %s, want %d", path, r.Status, r.Body, status)
	}
	return r
}

func vnetBody(prefix string, nsg string) map[string]any {
	sn := map[string]any{"addressPrefix": strings.Replace(prefix, "/16", "/24", 1)}
	if nsg != "" {
		sn["networkSecurityGroup"] = map[string]any{"id": nsg}
	}
	return map[string]any{"location": "local", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{prefix}},
		"subnets":      []any{map[string]any{"name": "default", "properties": sn}},
	}}
}

func lbBody(pip, lbID string) map[string]any {
	fe := map[string]any{"id": lbID + "/frontendIPConfigurations/fe"}
	return map[string]any{"location": "local", "properties": map[string]any{
		"frontendIPConfigurations": []any{map[string]any{"name": "fe", "properties": map[string]any{"publicIPAddress": map[string]any{"id": pip}}}},
		"backendAddressPools":      []any{map[string]any{"name": "pool"}},
		"probes":                   []any{map[string]any{"name": "tcp", "properties": map[string]any{"protocol": "Tcp", "port": 80}}},
		"inboundNatPools": []any{map[string]any{"name": "ssh", "properties": map[string]any{
			"protocol": "Tcp", "frontendPortRangeStart": 50000, "frontendPortRangeEnd": 50099, "backendPort": 22, "frontendIPConfiguration": fe}}},
	}}
}

// setWithNIC is a scale set (no instances) whose NIC names a subnet and,
// when given, a backend pool.
func setWithNIC(subnet, pool string) map[string]any {
	b := testenv.VMSSBody(0, "latest", "Manual")
	ipc := map[string]any{}
	if subnet != "" {
		ipc["subnet"] = map[string]any{"id": subnet}
	}
	if pool != "" {
		ipc["loadBalancerBackendAddressPools"] = []any{map[string]any{"id": pool}}
	}
	vp := b["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)
	vp["networkProfile"] = map[string]any{"networkInterfaceConfigurations": []any{map[string]any{
		"name": "nic", "properties": map[string]any{"primary": true, "ipConfigurations": []any{map[string]any{"name": "ipc", "properties": ipc}}},
	}}}
	return b
}

// TestNetworkIsolation: tenant B cannot link tenant A's subnet, pool,
// public IP or NSG (403 LinkedAuthorizationFailed, the same answer whether
// the resource exists or not), cannot read them, and A's resources are
// unchanged; both tenants can use the same address range.
func TestNetworkIsolation(t *testing.T) {
	e := start(t, testenv.Options{})
	a := setupTenant(t, e, "tenantA", subA)
	b := setupTenant(t, e, "tenantB", subB)
	a.token = e.IssueToken(a.id, auth.RoleTenant)
	b.token = e.IssueToken(b.id, auth.RoleTenant)
	for _, tn := range []*tenant{a, b} {
		if r := send(t, e, tn.token, call{method: http.MethodPut, path: tn.rg(), body: map[string]any{"location": "local"}}); r.Status != http.StatusCreated {
			t.Fatalf("%s rg: %d %s", tn.id, r.Status, r.Body)
		}
	}
	// A: NSG, vnet, public IP, load balancer, a scale set in the subnet.
	netPut(t, e, a.token, a.net("networkSecurityGroups", "nsg"), map[string]any{"location": "local"}, http.StatusCreated)
	netPut(t, e, a.token, a.net("virtualNetworks", "vn"), vnetBody("10.0.0.0/16", a.net("networkSecurityGroups", "nsg")), http.StatusCreated)
	pipA := netPut(t, e, a.token, a.net("publicIPAddresses", "ip"), map[string]any{"location": "local"}, http.StatusCreated)
	netPut(t, e, a.token, a.net("loadBalancers", "lb"), lbBody(a.net("publicIPAddresses", "ip"), a.net("loadBalancers", "lb")), http.StatusCreated)
	var pip struct {
		Properties struct {
			IPAddress string `json:"ipAddress"`
		} `json:"properties"`
	}
	if err := pipA.JSON(&pip); err != nil || !strings.HasPrefix(pip.Properties.IPAddress, "127.") {
		t.Fatalf("A's public IP: %s", pipA.Body)
	}
	addrA := pip.Properties.IPAddress
	subnetA, poolA := a.net("virtualNetworks", "vn")+"/subnets/default", a.net("loadBalancers", "lb")+"/backendAddressPools/pool"
	if r := send(t, e, a.token, call{method: http.MethodPut, path: a.vmss(), body: setWithNIC(subnetA, poolA)}); r.Status != http.StatusCreated {
		t.Fatalf("A's scale set: %d %s", r.Status, r.Body)
	}
	deleteAtEnd(t, e, a.token, a.vmss())
	before := map[string]string{}
	for _, p := range []string{a.net("virtualNetworks", "vn"), a.net("publicIPAddresses", "ip"), a.net("loadBalancers", "lb"), a.net("networkSecurityGroups", "nsg")} {
		r := send(t, e, a.token, call{method: http.MethodGet, path: p + netAPI})
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: %d", p, r.Status)
		}
		before[p] = r.Header.Get("ETag")
	}

	// B: the same address range works in its own network.
	netPut(t, e, b.token, b.net("virtualNetworks", "vn"), vnetBody("10.0.0.0/16", ""), http.StatusCreated)
	netPut(t, e, b.token, b.net("publicIPAddresses", "ip"), map[string]any{"location": "local"}, http.StatusCreated)
	subnetB := b.net("virtualNetworks", "vn") + "/subnets/default"
	const linked = "LinkedAuthorizationFailed"
	nicTarget := "properties.virtualMachineProfile.networkProfile.networkInterfaceConfigurations[0].properties.ipConfigurations[0].properties"
	for _, tc := range []struct {
		name   string
		c      call
		status int
		code   string
		target string
	}{
		{"set-with-A-subnet", call{method: http.MethodPut, path: b.vmss(), body: setWithNIC(subnetA, "")}, 403, linked, nicTarget + ".subnet.id"},
		{"set-with-A-missing-subnet", call{method: http.MethodPut, path: b.vmss(), body: setWithNIC(a.net("virtualNetworks", "nope")+"/subnets/x", "")}, 403, linked, nicTarget + ".subnet.id"},
		{"set-with-A-pool", call{method: http.MethodPut, path: b.vmss(), body: setWithNIC(subnetB, poolA)}, 403, linked, nicTarget + ".loadBalancerBackendAddressPools[0].id"},
		{"set-with-unknown-subscription", call{method: http.MethodPut, path: b.vmss(), body: setWithNIC("/subscriptions/cccccccc-0000-4000-8000-00000000000c/resourceGroups/rg1/providers/Microsoft.Network/virtualNetworks/vn/subnets/default", "")}, 403, linked, nicTarget + ".subnet.id"},
		{"set-with-own-missing-subnet", call{method: http.MethodPut, path: b.vmss(), body: setWithNIC(b.net("virtualNetworks", "vn")+"/subnets/nope", "")}, 400, "InvalidResourceReference", nicTarget + ".subnet.id"},
		{"lb-on-A-public-ip", call{method: http.MethodPut, path: b.net("loadBalancers", "lb") + netAPI, body: lbBody(a.net("publicIPAddresses", "ip"), b.net("loadBalancers", "lb"))}, 403, linked, "properties.frontendIPConfigurations[0].properties.publicIPAddress.id"},
		{"subnet-with-A-nsg", call{method: http.MethodPut, path: b.net("virtualNetworks", "vn2") + netAPI, body: vnetBody("10.1.0.0/16", a.net("networkSecurityGroups", "nsg"))}, 403, linked, "properties.subnets[0].properties.networkSecurityGroup.id"},
		{"get-A-vnet", call{method: http.MethodGet, path: a.net("virtualNetworks", "vn") + netAPI}, 404, "SubscriptionNotFound", ""},
		{"delete-A-lb", call{method: http.MethodDelete, path: a.net("loadBalancers", "lb") + netAPI}, 404, "SubscriptionNotFound", ""},
		{"list-A-public-ips", call{method: http.MethodGet, path: "/subscriptions/" + subA + "/providers/Microsoft.Network/publicIPAddresses" + netAPI}, 404, "SubscriptionNotFound", ""},
		{"A-scale-set-nics", call{method: http.MethodGet, path: a.vmss() + "/networkInterfaces?api-version=2018-10-01"}, 404, "SubscriptionNotFound", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, e, b.token, tc.c)
			wantError(t, tc.name, r, tc.status, tc.code, tc.target)
			if strings.Contains(string(r.Body), "10.0.0.") || strings.Contains(string(r.Body), `"`+addrA+`"`) || strings.Contains(string(r.Body), addrA+" ") {
				t.Errorf("%s: answer leaks an address: %s", tc.name, r.Body)
			}
		})
	}
	// B's scale set in its own subnet works.
	if r := send(t, e, b.token, call{method: http.MethodPut, path: b.vmss(), body: setWithNIC(subnetB, "")}); r.Status != http.StatusCreated {
		t.Fatalf("B's scale set: %d %s", r.Status, r.Body)
	}
	deleteAtEnd(t, e, b.token, b.vmss())
	// PATCH to A's subnet is refused too.
	patch := map[string]any{"properties": map[string]any{"virtualMachineProfile": setWithNIC(subnetA, "")["properties"].(map[string]any)["virtualMachineProfile"]}}
	wantError(t, "patch-to-A-subnet", send(t, e, b.token, call{method: http.MethodPatch, path: b.vmss(), body: patch}), 403, linked, nicTarget+".subnet.id")
	// B sees only its own resources; A's are unchanged.
	r := send(t, e, b.token, call{method: http.MethodGet, path: "/subscriptions/" + subB + "/providers/Microsoft.Network/publicIPAddresses" + netAPI})
	var list struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	if err := r.JSON(&list); err != nil || len(list.Value) != 1 || !strings.HasPrefix(list.Value[0].ID, "/subscriptions/"+subB+"/") {
		t.Fatalf("B's public IPs: %s", r.Body)
	}
	for p, tag := range before {
		if got := send(t, e, a.token, call{method: http.MethodGet, path: p + netAPI}).Header.Get("ETag"); got != tag {
			t.Errorf("%s changed: etag %s -> %s", p, tag, got)
		}
	}
	// A's subnet is in use by A's scale set.
	wantError(t, "delete-subnet-in-use", send(t, e, a.token, call{method: http.MethodDelete, path: subnetA + netAPI}), 400, "InUseSubnetCannotBeDeleted", "")
	wantError(t, "delete-lb-in-use", send(t, e, a.token, call{method: http.MethodDelete, path: a.net("loadBalancers", "lb") + netAPI}), 400, "LoadBalancerInUseByVirtualMachineScaleSet", "")
}

// TestNetworkBadInput: malformed network requests get ARM errors.
func TestNetworkBadInput(t *testing.T) {
	e := start(t, testenv.Options{})
	rg := e.RGPath("rg-bad")
	e.CreateRG("rg-bad")
	vn := rg + "/providers/Microsoft.Network/virtualNetworks/vn"
	netPut(t, e, e.Token, vn, vnetBody("10.0.0.0/16", ""), http.StatusCreated)
	r := send(t, e, e.Token, call{method: http.MethodGet, path: vn + netAPI})
	tag := r.Header.Get("ETag")
	for _, tc := range []struct {
		name   string
		c      call
		status int
		code   string
	}{
		{"no-body", call{method: http.MethodPut, path: vn + netAPI}, 400, "InvalidRequestContent"},
		{"not-json", call{method: http.MethodPut, path: vn + netAPI, body: "{"}, 400, "InvalidRequestContent"},
		{"wrong-type", call{method: http.MethodPut, path: vn + netAPI, body: `{"location":"local","properties":{"addressSpace":{"addressPrefixes":"10.0.0.0/16"}}}`}, 400, "InvalidRequestContent"},
		{"no-location", call{method: http.MethodPut, path: vn + netAPI, body: map[string]any{"properties": vnetBody("10.0.0.0/16", "")["properties"]}}, 400, "LocationRequired"},
		{"other-location", call{method: http.MethodPut, path: vn + netAPI, body: map[string]any{"location": "mars", "properties": vnetBody("10.0.0.0/16", "")["properties"]}}, 400, "LocationNotAvailableForResourceType"},
		{"bad-cidr", call{method: http.MethodPut, path: vn + netAPI, body: vnetBody("10.0.0.0/99", "")}, 400, "InvalidAddressPrefixFormat"},
		{"bad-name", call{method: http.MethodPut, path: rg + "/providers/Microsoft.Network/virtualNetworks/-x" + netAPI, body: vnetBody("10.0.0.0/16", "")}, 400, "InvalidResourceName"},
		{"stale-if-match", call{method: http.MethodPut, path: vn + netAPI, body: vnetBody("10.0.0.0/16", ""), header: map[string]string{"If-Match": `"1"`}}, 412, "PreconditionFailed"},
		{"if-none-match-star", call{method: http.MethodPut, path: vn + netAPI, body: vnetBody("10.0.0.0/16", ""), header: map[string]string{"If-None-Match": "*"}}, 412, "PreconditionFailed"},
		{"unknown-api-version", call{method: http.MethodGet, path: vn + "?api-version=2099-01-01"}, 400, "NoRegisteredProviderFound"},
		{"missing-rg", call{method: http.MethodPut, path: e.RGPath("nope") + "/providers/Microsoft.Network/publicIPAddresses/ip" + netAPI, body: map[string]any{"location": "local"}}, 404, "ResourceGroupNotFound"},
		{"missing-vnet", call{method: http.MethodGet, path: rg + "/providers/Microsoft.Network/virtualNetworks/nope" + netAPI}, 404, "ResourceNotFound"},
		{"lb-bad-probe", call{method: http.MethodPut, path: rg + "/providers/Microsoft.Network/loadBalancers/lb" + netAPI, body: map[string]any{"location": "local", "properties": map[string]any{
			"probes": []any{map[string]any{"name": "p", "properties": map[string]any{"protocol": "Http", "port": 80}}}}}}, 400, "ProbeRequestPathMissing"},
		{"pip-bad-label", call{method: http.MethodPut, path: rg + "/providers/Microsoft.Network/publicIPAddresses/ip" + netAPI, body: map[string]any{"location": "local", "properties": map[string]any{"dnsSettings": map[string]any{"domainNameLabel": "UPPER"}}}}, 400, "InvalidDomainNameLabel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.name, send(t, e, e.Token, tc.c), tc.status, tc.code, "")
		})
	}
	if got := send(t, e, e.Token, call{method: http.MethodGet, path: vn + netAPI}).Header.Get("ETag"); got != tag {
		t.Errorf("vnet changed by refused requests: %s -> %s", tag, got)
	}
	// Numbers and booleans as strings are read as ARM reads them (az's
	// templates send port numbers so); a string that is no number is not.
	lbPath := rg + "/providers/Microsoft.Network/loadBalancers/strings"
	lbStr := func(end string) map[string]any {
		fe := map[string]any{"id": lbPath + "/frontendIPConfigurations/fe"}
		return map[string]any{"location": "local", "properties": map[string]any{
			"frontendIPConfigurations": []any{map[string]any{"name": "fe", "properties": map[string]any{"subnet": map[string]any{"id": vn + "/subnets/default"}}}},
			"inboundNatPools": []any{map[string]any{"name": "ssh", "properties": map[string]any{
				"protocol": "Tcp", "frontendPortRangeStart": "50000", "frontendPortRangeEnd": end, "backendPort": 22, "enableFloatingIP": "false", "frontendIPConfiguration": fe}}},
		}}
	}
	netPut(t, e, e.Token, lbPath, lbStr("50119"), http.StatusCreated)
	wantError(t, "port-not-a-number", send(t, e, e.Token, call{method: http.MethodPut, path: lbPath + netAPI, body: lbStr("many")}), 400, "InvalidRequestContent", "")

	// A subscription's public IPs are bounded (50); a refused one takes no
	// address.
	pips := rg + "/providers/Microsoft.Network/publicIPAddresses/"
	for i := range 50 {
		netPut(t, e, e.Token, pips+"ip"+strconv.Itoa(i), map[string]any{"location": "local"}, http.StatusCreated)
	}
	wantError(t, "public-ip-limit", send(t, e, e.Token, call{method: http.MethodPut, path: pips + "one-too-many" + netAPI, body: map[string]any{"location": "local"}}), 409, "PublicIPCountLimitReached", "")
	netPut(t, e, e.Token, pips+"ip0", map[string]any{"location": "local", "tags": map[string]string{"a": "b"}}, http.StatusOK)
	if r := send(t, e, e.Token, call{method: http.MethodDelete, path: pips + "ip0" + netAPI}); r.Status != http.StatusAccepted {
		t.Fatalf("delete ip0: %d %s", r.Status, r.Body)
	}
	netPut(t, e, e.Token, pips+"one-more", map[string]any{"location": "local"}, http.StatusCreated)

	// The right If-Match succeeds.
	netPut(t, e, e.Token, vn, vnetBody("10.0.0.0/16", ""), http.StatusOK)
	r = send(t, e, e.Token, call{method: http.MethodPut, path: vn + netAPI, body: vnetBody("10.0.0.0/16", ""), header: map[string]string{"If-Match": tag}})
	wantError(t, "old-if-match", r, 412, "PreconditionFailed", "")
}

// TestNetworkSubnetRace: a scale set naming a subnet (or a load
// balancer's pool) and the subnet's (load balancer's) deletion, at once,
// never both succeed. The scale set is in another
// subscription than the network, so the two writes do not share a
// subscription's lock: the transactions alone must keep them apart.
func TestNetworkSubnetRace(t *testing.T) {
	e := start(t, testenv.Options{})
	e.CreateRG("rg-race")
	vn := e.RGPath("rg-race") + "/providers/Microsoft.Network/virtualNetworks/vn"
	netPut(t, e, e.Token, vn, vnetBody("10.0.0.0/16", ""), http.StatusCreated)
	if r := send(t, e, e.Token, call{method: http.MethodPut, path: "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + subB + "?api-version=" + adminAPI, body: map[string]any{"displayName": "sets"}}); r.Status != http.StatusCreated {
		t.Fatalf("subscription: %d %s", r.Status, r.Body)
	}
	setsRG := "/subscriptions/" + subB + "/resourceGroups/rg-race"
	if r := send(t, e, e.Token, call{method: http.MethodPut, path: setsRG, body: map[string]any{"location": "local"}}); r.Status != http.StatusCreated {
		t.Fatalf("rg: %d %s", r.Status, r.Body)
	}
	for i := range 40 {
		name := "s" + strconv.Itoa(i)
		netPut(t, e, e.Token, vn+"/subnets/"+name, map[string]any{"properties": map[string]any{"addressPrefix": "10.0." + strconv.Itoa(i+1) + ".0/24"}}, http.StatusCreated)
		set := setsRG + "/providers/Microsoft.Compute/virtualMachineScaleSets/" + name
		var setStatus, delStatus int
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			setStatus = send(t, e, e.Token, call{method: http.MethodPut, path: set, body: setWithNIC(vn+"/subnets/"+name, "")}).Status
		}()
		go func() {
			defer wg.Done()
			delStatus = send(t, e, e.Token, call{method: http.MethodDelete, path: vn + "/subnets/" + name + netAPI}).Status
		}()
		wg.Wait()
		if setStatus == http.StatusCreated && delStatus == http.StatusAccepted {
			t.Fatalf("round %d: the scale set was created and its subnet deleted", i)
		}
		if setStatus == http.StatusCreated {
			deleteAtEnd(t, e, e.Token, set)
		}
	}
	// The same with a load balancer's pool and the load balancer's
	// deletion.
	netPut(t, e, e.Token, vn+"/subnets/lbs", map[string]any{"properties": map[string]any{"addressPrefix": "10.0.200.0/24"}}, http.StatusCreated)
	for i := range 30 {
		name := "lb" + strconv.Itoa(i)
		lb := e.RGPath("rg-race") + "/providers/Microsoft.Network/loadBalancers/" + name
		netPut(t, e, e.Token, lb, map[string]any{"location": "local", "properties": map[string]any{
			"frontendIPConfigurations": []any{map[string]any{"name": "fe", "properties": map[string]any{"subnet": map[string]any{"id": vn + "/subnets/lbs"}}}},
			"backendAddressPools":      []any{map[string]any{"name": "pool"}},
		}}, http.StatusCreated)
		set := setsRG + "/providers/Microsoft.Compute/virtualMachineScaleSets/" + name
		var setStatus, delStatus int
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			setStatus = send(t, e, e.Token, call{method: http.MethodPut, path: set, body: setWithNIC("", lb+"/backendAddressPools/pool")}).Status
		}()
		go func() {
			defer wg.Done()
			delStatus = send(t, e, e.Token, call{method: http.MethodDelete, path: lb + netAPI}).Status
		}()
		wg.Wait()
		if setStatus == http.StatusCreated && delStatus == http.StatusAccepted {
			t.Fatalf("round %d: the scale set was created and its load balancer deleted", i)
		}
		if setStatus == http.StatusCreated {
			deleteAtEnd(t, e, e.Token, set)
		}
	}
}

// TestNetworkGroupDelete: deleting a resource group removes its network
// resources and frees their addresses.
func TestNetworkGroupDelete(t *testing.T) {
	e := start(t, testenv.Options{})
	e.CreateRG("rg-gone")
	rg := e.RGPath("rg-gone") + "/providers/Microsoft.Network/"
	netPut(t, e, e.Token, rg+"virtualNetworks/vn", vnetBody("10.0.0.0/16", ""), http.StatusCreated)
	netPut(t, e, e.Token, rg+"publicIPAddresses/ip", map[string]any{"location": "local"}, http.StatusCreated)
	netPut(t, e, e.Token, rg+"loadBalancers/lb", map[string]any{"location": "local", "properties": map[string]any{
		"frontendIPConfigurations": []any{
			map[string]any{"name": "pub", "properties": map[string]any{"publicIPAddress": map[string]any{"id": e.RGPath("rg-gone") + "/providers/Microsoft.Network/publicIPAddresses/ip"}}},
			map[string]any{"name": "priv", "properties": map[string]any{"subnet": map[string]any{"id": e.RGPath("rg-gone") + "/providers/Microsoft.Network/virtualNetworks/vn/subnets/default"}}},
		}}}, http.StatusCreated)
	kvs, _, err := e.Server.Store.List(context.Background(), model.PrefixIPAM)
	if err != nil || len(kvs) == 0 {
		t.Fatalf("no address records before the delete: %v", err)
	}
	r := send(t, e, e.Token, call{method: http.MethodDelete, path: e.RGPath("rg-gone")})
	if r.Status != http.StatusAccepted {
		t.Fatalf("delete rg: %d %s", r.Status, r.Body)
	}
	waitOp(t, e, r)
	for _, p := range []string{"virtualNetworks/vn", "publicIPAddresses/ip", "loadBalancers/lb"} {
		if r := send(t, e, e.Token, call{method: http.MethodGet, path: rg + p + netAPI}); r.Status != http.StatusNotFound {
			t.Errorf("%s after the group's deletion: %d", p, r.Status)
		}
	}
	for _, prefix := range []string{model.PrefixNetwork, model.PrefixIPAM} {
		if kvs, _, err := e.Server.Store.List(context.Background(), prefix); err != nil || len(kvs) != 0 {
			t.Errorf("%d records left under %s (%v)", len(kvs), prefix, err)
		}
	}
}
