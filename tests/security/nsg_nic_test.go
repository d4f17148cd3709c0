package security

import (
	"net/http"
	"testing"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/testenv"
)

// setWithNICNSG is setWithNIC whose NIC configuration names nsg.
func setWithNICNSG(subnet, nsg string) map[string]any {
	b := setWithNIC(subnet, "")
	vp := b["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)
	nc := vp["networkProfile"].(map[string]any)["networkInterfaceConfigurations"].([]any)[0].(map[string]any)
	nc["properties"].(map[string]any)["networkSecurityGroup"] = map[string]any{"id": nsg}
	return b
}

// TestNICSecurityGroupLinks: a scale set's NIC configuration may name its
// own tenant's NSG only (403 LinkedAuthorizationFailed for another
// tenant's, 400 InvalidResourceReference for a missing one): the NSG's
// rules are enforced on the instances (internal/nsg), so naming one is a
// link like a subnet.
func TestNICSecurityGroupLinks(t *testing.T) {
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
	netPut(t, e, a.token, a.net("networkSecurityGroups", "nsg"), map[string]any{"location": "local"}, http.StatusCreated)
	netPut(t, e, b.token, b.net("networkSecurityGroups", "nsg"), map[string]any{"location": "local"}, http.StatusCreated)
	netPut(t, e, b.token, b.net("virtualNetworks", "vn"), vnetBody("10.0.0.0/16", ""), http.StatusCreated)
	subnetB := b.net("virtualNetworks", "vn") + "/subnets/default"
	target := "properties.virtualMachineProfile.networkProfile.networkInterfaceConfigurations[0].properties.networkSecurityGroup.id"
	wantError(t, "A's nsg", send(t, e, b.token, call{method: http.MethodPut, path: b.vmss(), body: setWithNICNSG(subnetB, a.net("networkSecurityGroups", "nsg"))}), 403, "LinkedAuthorizationFailed", target)
	wantError(t, "missing nsg", send(t, e, b.token, call{method: http.MethodPut, path: b.vmss(), body: setWithNICNSG(subnetB, b.net("networkSecurityGroups", "nope"))}), 400, "InvalidResourceReference", target)
	if r := send(t, e, b.token, call{method: http.MethodPut, path: b.vmss(), body: setWithNICNSG(subnetB, b.net("networkSecurityGroups", "nsg"))}); r.Status != http.StatusCreated {
		t.Fatalf("own nsg: %d %s", r.Status, r.Body)
	}
	deleteAtEnd(t, e, b.token, b.vmss())
}
