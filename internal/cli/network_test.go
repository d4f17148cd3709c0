package cli

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestNetworkCommands drives vmssctl network against a server: a virtual
// network with subnets, a public IP, a load balancer with a probe, a rule
// and an inbound NAT pool, an NSG, and the errors a user sees.
func TestNetworkCommands(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)
	c.ok("group", "create", "-n", "net")

	// Virtual network and subnets.
	var vn armnetwork.VirtualNetwork
	c.json(&vn, "network", "vnet", "create", "-g", "net", "-n", "vn", "--subnet-name", "default")
	if p := vn.Properties; p == nil || joinPtrs(p.AddressSpace.AddressPrefixes) != "10.0.0.0/16" || len(p.Subnets) != 1 || str(p.Subnets[0].Properties.AddressPrefix) != "10.0.0.0/24" {
		t.Fatalf("vnet: %+v", vn.Properties)
	}
	c.ok("network", "vnet", "subnet", "create", "-g", "net", "--vnet-name", "vn", "-n", "back", "--address-prefixes", "10.0.1.0/24")
	rows := c.tsvRows("network", "subnet", "list", "-g", "net", "--vnet-name", "vn", "--query", "[].[name, addressPrefix || properties.addressPrefix]")
	if len(rows) != 2 || rows[0][0] != "default" || rows[1][0] != "back" || rows[1][1] != "10.0.1.0/24" {
		t.Fatalf("subnets: %v", rows)
	}
	out, errOut, code := c.run("network", "vnet", "subnet", "create", "-g", "net", "--vnet-name", "vn", "-n", "bad", "--address-prefixes", "10.0.1.128/25")
	if code != ExitError || !strings.Contains(errOut, "NetcfgSubnetRangesOverlap") {
		t.Fatalf("overlapping subnet: exit %d\n%s%s", code, out, errOut)
	}
	table := c.ok("network", "vnet", "list", "-o", "table")
	if !strings.Contains(table, "AddressPrefixes") || !strings.Contains(table, "default,back") {
		t.Fatalf("vnet table:\n%s", table)
	}

	// Public IP and load balancer with a probe, a rule and a NAT pool.
	var ip armnetwork.PublicIPAddress
	c.json(&ip, "network", "public-ip", "create", "-g", "net", "-n", "ip", "--allocation-method", "static", "--dns-name", "web-cli")
	if a, err := netip.ParseAddr(str(ip.Properties.IPAddress)); err != nil || !a.IsLoopback() || str(ip.Properties.PublicIPAllocationMethod) != "Static" {
		t.Fatalf("public ip: %+v", ip.Properties)
	}
	c.ok("network", "lb", "create", "-g", "net", "-n", "lb", "--public-ip-address", "ip")
	c.ok("network", "lb", "probe", "create", "-g", "net", "--lb-name", "lb", "-n", "http", "--protocol", "http", "--port", "80", "--path", "/health", "--interval", "5")
	var rule armnetwork.LoadBalancingRule
	c.json(&rule, "network", "lb", "rule", "create", "-g", "net", "--lb-name", "lb", "-n", "web", "--protocol", "tcp", "--frontend-port", "80", "--backend-port", "8080", "--probe-name", "http")
	if p := rule.Properties; p == nil || childName(p.BackendAddressPool) != "lbbepool" || childName(p.Probe) != "http" || childName(p.FrontendIPConfiguration) != "LoadBalancerFrontEnd" || *p.BackendPort != 8080 {
		t.Fatalf("rule: %+v", rule.Properties)
	}
	c.ok("network", "lb", "inbound-nat-pool", "create", "-g", "net", "--lb-name", "lb", "-n", "ssh", "--protocol", "tcp",
		"--frontend-port-range-start", "50000", "--frontend-port-range-end", "50119", "--backend-port", "22")
	rows = c.tsvRows("network", "lb", "show", "-g", "net", "-n", "lb", "--query", "[length(properties.probes), length(properties.loadBalancingRules), length(properties.inboundNatPools)]")
	if len(rows) != 3 || rows[0][0] != "1" || rows[1][0] != "1" || rows[2][0] != "1" {
		t.Fatalf("lb parts: %v", rows)
	}
	table = c.ok("network", "lb", "probe", "list", "-g", "net", "--lb-name", "lb", "-o", "table")
	if !strings.Contains(table, "http") || !strings.Contains(table, "/health") {
		t.Fatalf("probe table:\n%s", table)
	}
	// Replacing a probe keeps one; a rule naming a missing probe is a
	// usage error; a NAT pool overlapping the rule's port is the server's.
	c.ok("network", "lb", "probe", "create", "-g", "net", "--lb-name", "lb", "-n", "http", "--protocol", "Tcp", "--port", "8080")
	if rows := c.tsvRows("network", "lb", "probe", "list", "-g", "net", "--lb-name", "lb", "--query", "[].properties.protocol"); len(rows) != 1 || rows[0][0] != "Tcp" {
		t.Fatalf("replaced probe: %v", rows)
	}
	if _, errOut, code := c.run("network", "lb", "rule", "create", "-g", "net", "--lb-name", "lb", "-n", "x", "--protocol", "tcp", "--frontend-port", "81", "--backend-port", "81", "--probe-name", "nope"); code != ExitUsage || !strings.Contains(errOut, "nope") {
		t.Fatalf("unknown probe: exit %d %s", code, errOut)
	}
	if _, errOut, code := c.run("network", "lb", "inbound-nat-pool", "create", "-g", "net", "--lb-name", "lb", "-n", "bad", "--protocol", "tcp",
		"--frontend-port-range-start", "70", "--frontend-port-range-end", "90", "--backend-port", "22"); code != ExitError || !strings.Contains(errOut, "LoadBalancerFrontendPortConflict") {
		t.Fatalf("conflicting NAT pool: exit %d %s", code, errOut)
	}
	if _, errOut, code := c.run("network", "public-ip", "delete", "-g", "net", "-n", "ip"); code != ExitError || !strings.Contains(errOut, "PublicIPAddressInUse") {
		t.Fatalf("delete public ip in use: exit %d %s", code, errOut)
	}
	// A load balancer without a public IP gets one, as az does.
	c.ok("network", "lb", "create", "-g", "net", "-n", "lb2")
	if rows := c.tsvRows("network", "public-ip", "list", "-g", "net", "--query", "[].name"); !slices.Equal(flat(rows), []string{"ip", "PublicIPlb2"}) {
		t.Fatalf("public ips: %v", rows)
	}
	// A private load balancer on the subnet.
	var priv armnetwork.LoadBalancer
	c.json(&priv, "network", "lb", "create", "-g", "net", "-n", "ilb", "--vnet-name", "vn", "--subnet", "back")
	if fe := priv.Properties.FrontendIPConfigurations[0].Properties; str(fe.PrivateIPAddress) != "10.0.1.4" {
		t.Fatalf("private frontend: %+v", fe)
	}

	// NSG on a subnet.
	c.ok("network", "nsg", "create", "-g", "net", "-n", "nsg")
	c.ok("network", "vnet", "subnet", "create", "-g", "net", "--vnet-name", "vn", "-n", "guarded", "--address-prefixes", "10.0.2.0/24", "--network-security-group", "nsg")
	if _, errOut, code := c.run("network", "nsg", "delete", "-g", "net", "-n", "nsg"); code != ExitError || !strings.Contains(errOut, "InUseNetworkSecurityGroupCannotBeDeleted") {
		t.Fatalf("delete nsg in use: exit %d %s", code, errOut)
	}
	c.ok("network", "vnet", "subnet", "delete", "-g", "net", "--vnet-name", "vn", "-n", "guarded")
	c.ok("network", "nsg", "delete", "-g", "net", "-n", "nsg")

	// Rules and pools go, then everything.
	c.ok("network", "lb", "rule", "delete", "-g", "net", "--lb-name", "lb", "-n", "web")
	if rows := c.tsvRows("network", "lb", "rule", "list", "-g", "net", "--lb-name", "lb", "--query", "length(@)"); rows[0][0] != "0" {
		t.Fatalf("rules after delete: %v", rows)
	}
	for _, lb := range []string{"lb", "lb2", "ilb"} {
		c.ok("network", "lb", "delete", "-g", "net", "-n", lb)
	}
	c.ok("network", "public-ip", "delete", "-g", "net", "-n", "ip")
	c.ok("network", "vnet", "delete", "-g", "net", "-n", "vn")
	if _, _, code := c.run("network", "vnet", "show", "-g", "net", "-n", "vn"); code != ExitNotFound {
		t.Fatalf("show deleted vnet: exit %d", code)
	}
	if rows := c.tsvRows("network", "nsg", "list", "--query", "length(@)"); rows[0][0] != "0" {
		t.Fatalf("nsgs left: %v", rows)
	}
	// Usage errors need no server.
	if _, _, code := c.run("network", "lb", "create", "-g", "net", "-n", "x", "--public-ip-address", "ip", "--subnet", "s"); code != ExitUsage {
		t.Fatalf("exclusive flags: exit %d", code)
	}
	if _, _, code := c.run("network", "public-ip", "create", "-g", "net", "-n", "x", "--sku", "Premium"); code != ExitUsage {
		t.Fatalf("bad sku: exit %d", code)
	}
}

func flat(rows [][]string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}
