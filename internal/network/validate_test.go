package network

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
)

var (
	vnetRef = model.NetRef{Sub: "s1", RG: "rg", Type: model.NetVirtualNetworks, Name: "vn"}
	lbRef   = model.NetRef{Sub: "s1", RG: "rg", Type: model.NetLoadBalancers, Name: "lb"}
	lbID    = lbRef.ID()
)

func mustJSON[T any](t *testing.T, s string) *T {
	t.Helper()
	v := new(T)
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

func wantCode(t *testing.T, name string, err error, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Errorf("%s: unexpected error %v", name, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s: no error, want %s", name, code)
		return
	}
	if got := errs.From(err).ARMCode(); got != code {
		t.Errorf("%s: code %s, want %s (%v)", name, got, code, err)
	}
}

func TestValidateVNet(t *testing.T) {
	for _, tc := range []struct{ name, body, code string }{
		{"ok", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefix":"10.0.0.0/24"}},{"name":"b","properties":{"addressPrefix":"10.0.1.0/24"}}]}}`, ""},
		{"no subnets", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16","10.1.0.0/16"]}}}`, ""},
		{"no address space", `{"properties":{}}`, "InvalidRequestFormat"},
		{"bad cidr", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/33"]}}}`, "InvalidAddressPrefixFormat"},
		{"not network address", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.1/16"]}}}`, "InvalidCIDRNotation"},
		{"ipv6", `{"properties":{"addressSpace":{"addressPrefixes":["fd00::/48"]}}}`, "InvalidAddressPrefixFormat"},
		{"space overlap", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16","10.0.5.0/24"]}}}`, "VnetAddressSpacesOverlap"},
		{"outside", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefix":"10.1.0.0/24"}}]}}`, "NetcfgSubnetRangeOutsideVnet"},
		{"larger than vnet", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefix":"10.0.0.0/8"}}]}}`, "NetcfgSubnetRangeOutsideVnet"},
		{"overlap", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefix":"10.0.0.0/23"}},{"name":"b","properties":{"addressPrefix":"10.0.1.0/24"}}]}}`, "NetcfgSubnetRangesOverlap"},
		{"duplicate", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefix":"10.0.0.0/24"}},{"name":"A","properties":{"addressPrefix":"10.0.1.0/24"}}]}}`, "DuplicateResourceName"},
		{"too small", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefix":"10.0.0.0/30"}}]}}`, "InvalidAddressPrefix"},
		{"no prefix", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{}}]}}`, "NetcfgInvalidSubnet"},
		{"bad name", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"-a","properties":{"addressPrefix":"10.0.0.0/24"}}]}}`, "InvalidResourceName"},
		{"bad nsg ref", `{"properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"a","properties":{"addressPrefix":"10.0.0.0/24","networkSecurityGroup":{"id":"/nope"}}}]}}`, "InvalidResourceReference"},
	} {
		wantCode(t, tc.name, ValidateVNet(vnetRef, mustJSON[armnetwork.VirtualNetwork](t, tc.body)), tc.code)
	}
}

func TestValidatePublicIP(t *testing.T) {
	ref := model.NetRef{Sub: "s1", RG: "rg", Type: model.NetPublicIPs, Name: "ip"}
	for _, tc := range []struct{ name, body, code string }{
		{"static", `{"properties":{"publicIPAllocationMethod":"Static","dnsSettings":{"domainNameLabel":"web-1"}}}`, ""},
		{"dynamic basic", `{"sku":{"name":"Basic"},"properties":{"publicIPAllocationMethod":"Dynamic"}}`, ""},
		{"empty", `{}`, ""},
		{"bad method", `{"properties":{"publicIPAllocationMethod":"Sometimes"}}`, "InvalidParameter"},
		{"ipv6", `{"properties":{"publicIPAddressVersion":"IPv6"}}`, "InvalidParameter"},
		{"standard dynamic", `{"sku":{"name":"Standard"},"properties":{"publicIPAllocationMethod":"Dynamic"}}`, "StandardSkuPublicIPAddressesMustBeStatic"},
		{"idle", `{"properties":{"idleTimeoutInMinutes":31}}`, "InvalidParameter"},
		{"dns label", `{"properties":{"dnsSettings":{"domainNameLabel":"Web_1"}}}`, "InvalidDomainNameLabel"},
	} {
		wantCode(t, tc.name, ValidatePublicIP(ref, mustJSON[armnetwork.PublicIPAddress](t, tc.body)), tc.code)
	}
}

func TestValidateNSG(t *testing.T) {
	ref := model.NetRef{Sub: "s1", RG: "rg", Type: model.NetSecurityGroups, Name: "g"}
	rule := func(name, dir, prio, port, src string) string {
		return `{"name":"` + name + `","properties":{"direction":"` + dir + `","access":"Allow","protocol":"Tcp","priority":` + prio +
			`,"destinationPortRange":"` + port + `","sourcePortRange":"*","sourceAddressPrefix":"` + src + `","destinationAddressPrefix":"*"}}`
	}
	for _, tc := range []struct{ name, rules, code string }{
		{"ok", rule("ssh", "Inbound", "100", "22", "Internet") + "," + rule("web", "Inbound", "110", "80-81", "10.0.0.0/8"), ""},
		{"same prio other direction", rule("a", "Inbound", "100", "22", "*") + "," + rule("b", "Outbound", "100", "22", "*"), ""},
		{"prio conflict", rule("a", "Inbound", "100", "22", "*") + "," + rule("b", "Inbound", "100", "23", "*"), "SecurityRuleConflict"},
		{"prio range", rule("a", "Inbound", "99", "22", "*"), "SecurityRuleInvalidPriority"},
		{"direction", rule("a", "Sideways", "100", "22", "*"), "SecurityRuleInvalidDirection"},
		{"port", rule("a", "Inbound", "100", "70000", "*"), "SecurityRuleInvalidPortRange"},
		{"port range", rule("a", "Inbound", "100", "90-80", "*"), "SecurityRuleInvalidPortRange"},
		{"address", rule("a", "Inbound", "100", "22", "10.0.0.0/40"), "SecurityRuleInvalidAddressPrefix"},
		{"ipv6 not enforceable", rule("a", "Inbound", "100", "22", "2001:db8::/32"), "SecurityRuleNotSupported"},
		{"dup name", rule("a", "Inbound", "100", "22", "*") + "," + rule("a", "Inbound", "101", "22", "*"), "DuplicateResourceName"},
	} {
		wantCode(t, tc.name, ValidateNSG(ref, mustJSON[armnetwork.SecurityGroup](t, `{"properties":{"securityRules":[`+tc.rules+`]}}`)), tc.code)
	}
}

// lbBody is a load balancer with a public frontend, a pool, a probe, a
// rule and a NAT pool; edit replaces parts of its properties.
func lbBody(parts map[string]string) string {
	def := map[string]string{
		"frontendIPConfigurations": `[{"name":"fe","properties":{"publicIPAddress":{"id":"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/ip"}}}]`,
		"backendAddressPools":      `[{"name":"pool"}]`,
		"probes":                   `[{"name":"http","properties":{"protocol":"Http","port":80,"requestPath":"/health","intervalInSeconds":5,"numberOfProbes":2}}]`,
		"loadBalancingRules":       `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":80,"backendPort":80,"frontendIPConfiguration":{"id":"` + lbID + `/frontendIPConfigurations/fe"},"backendAddressPool":{"id":"` + lbID + `/backendAddressPools/pool"},"probe":{"id":"` + lbID + `/probes/http"}}}]`,
		"inboundNatPools":          `[{"name":"ssh","properties":{"protocol":"Tcp","frontendPortRangeStart":50000,"frontendPortRangeEnd":50119,"backendPort":22,"frontendIPConfiguration":{"id":"` + lbID + `/frontendIPConfigurations/fe"}}}]`,
	}
	for k, v := range parts {
		def[k] = v
	}
	out := `{"properties":{`
	first := true
	for _, k := range []string{"frontendIPConfigurations", "backendAddressPools", "probes", "loadBalancingRules", "inboundNatPools", "inboundNatRules"} {
		v, ok := def[k]
		if !ok {
			continue
		}
		if !first {
			out += ","
		}
		first = false
		out += `"` + k + `":` + v
	}
	return out + "}}"
}

func TestValidateLB(t *testing.T) {
	fe := `{"id":"` + lbID + `/frontendIPConfigurations/fe"}`
	for _, tc := range []struct {
		name  string
		parts map[string]string
		code  string
	}{
		{"ok", nil, ""},
		{"private frontend", map[string]string{"frontendIPConfigurations": `[{"name":"fe","properties":{"subnet":{"id":"` + vnetRef.ID() + `/subnets/a"}}}]`}, ""},
		{"udp rule and nat rule", map[string]string{
			"loadBalancingRules": `[{"name":"dns","properties":{"protocol":"Udp","frontendPort":53,"frontendIPConfiguration":` + fe + `}}]`,
			"inboundNatRules":    `[{"name":"one","properties":{"protocol":"Tcp","frontendPort":2222,"backendPort":22,"frontendIPConfiguration":` + fe + `}}]`,
		}, ""},
		{"frontend both", map[string]string{"frontendIPConfigurations": `[{"name":"fe","properties":{"publicIPAddress":{"id":"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/ip"},"subnet":{"id":"` + vnetRef.ID() + `/subnets/a"}}}]`}, "LoadBalancerFrontendIPConfigurationInvalid"},
		{"frontend none", map[string]string{"frontendIPConfigurations": `[{"name":"fe","properties":{}}]`}, "LoadBalancerFrontendIPConfigurationInvalid"},
		{"frontend bad public id", map[string]string{"frontendIPConfigurations": `[{"name":"fe","properties":{"publicIPAddress":{"id":"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/ip"}}}]`}, "InvalidResourceReference"},
		{"probe protocol", map[string]string{"probes": `[{"name":"http","properties":{"protocol":"Icmp","port":80}}]`}, "InvalidProbeProtocol"},
		{"probe port", map[string]string{"probes": `[{"name":"http","properties":{"protocol":"Tcp","port":0}}]`}, "InvalidProbePort"},
		{"probe http path", map[string]string{"probes": `[{"name":"http","properties":{"protocol":"Http","port":80}}]`}, "ProbeRequestPathMissing"},
		{"probe tcp path", map[string]string{"probes": `[{"name":"http","properties":{"protocol":"Tcp","port":80,"requestPath":"/"}}]`}, "ProbeRequestPathNotAllowedForTcp"},
		{"probe interval", map[string]string{"probes": `[{"name":"http","properties":{"protocol":"Tcp","port":80,"intervalInSeconds":4}}]`}, "InvalidProbeInterval"},
		{"probe count", map[string]string{"probes": `[{"name":"http","properties":{"protocol":"Tcp","port":80,"numberOfProbes":0}}]`}, "InvalidProbeNumberOfProbes"},
		{"dup probe", map[string]string{"probes": `[{"name":"http","properties":{"protocol":"Tcp","port":80}},{"name":"HTTP","properties":{"protocol":"Tcp","port":81}}]`}, "DuplicateResourceName"},
		{"rule port", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":65535,"frontendIPConfiguration":` + fe + `}}]`}, "InvalidLoadBalancingRuleFrontendPort"},
		{"rule port 0 tcp", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":0,"backendPort":0,"frontendIPConfiguration":` + fe + `}}]`}, "InvalidLoadBalancingRuleFrontendPort"},
		{"rule backend port", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":80,"backendPort":70000,"frontendIPConfiguration":` + fe + `}}]`}, "InvalidLoadBalancingRuleBackendPort"},
		{"rule protocol", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Sctp","frontendPort":80,"frontendIPConfiguration":` + fe + `}}]`}, "InvalidTransportProtocol"},
		{"rule unknown frontend", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":80,"frontendIPConfiguration":{"id":"` + lbID + `/frontendIPConfigurations/nope"}}}]`}, "InvalidResourceReference"},
		{"rule other lb frontend", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":80,"frontendIPConfiguration":{"id":"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/other/frontendIPConfigurations/fe"}}}]`}, "InvalidResourceReference"},
		{"rule unknown pool", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":80,"frontendIPConfiguration":` + fe + `,"backendAddressPool":{"id":"` + lbID + `/backendAddressPools/x"}}}]`}, "InvalidResourceReference"},
		{"rule unknown probe", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":80,"frontendIPConfiguration":` + fe + `,"probe":{"id":"` + lbID + `/probes/x"}}}]`}, "InvalidResourceReference"},
		{"rule distribution", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":80,"frontendIPConfiguration":` + fe + `,"loadDistribution":"Random"}}]`}, "InvalidParameter"},
		{"rule idle", map[string]string{"loadBalancingRules": `[{"name":"web","properties":{"protocol":"Tcp","frontendPort":80,"frontendIPConfiguration":` + fe + `,"idleTimeoutInMinutes":2}}]`}, "InvalidParameter"},
		{"two rules one port", map[string]string{"loadBalancingRules": `[{"name":"a","properties":{"protocol":"Tcp","frontendPort":80,"frontendIPConfiguration":` + fe + `}},{"name":"b","properties":{"protocol":"All","frontendPort":80,"frontendIPConfiguration":` + fe + `}}]`}, "LoadBalancerFrontendPortConflict"},
		{"tcp and udp share port", map[string]string{"loadBalancingRules": `[{"name":"a","properties":{"protocol":"Tcp","frontendPort":80,"frontendIPConfiguration":` + fe + `}},{"name":"b","properties":{"protocol":"Udp","frontendPort":80,"frontendIPConfiguration":` + fe + `}}]`}, ""},
		{"nat range reversed", map[string]string{"inboundNatPools": `[{"name":"ssh","properties":{"protocol":"Tcp","frontendPortRangeStart":50100,"frontendPortRangeEnd":50000,"backendPort":22,"frontendIPConfiguration":` + fe + `}}]`}, "InvalidInboundNatPoolFrontendPortRange"},
		{"nat backend port", map[string]string{"inboundNatPools": `[{"name":"ssh","properties":{"protocol":"Tcp","frontendPortRangeStart":50000,"frontendPortRangeEnd":50100,"backendPort":0,"frontendIPConfiguration":` + fe + `}}]`}, "InvalidInboundNatPoolBackendPort"},
		{"nat overlaps rule", map[string]string{"inboundNatPools": `[{"name":"ssh","properties":{"protocol":"Tcp","frontendPortRangeStart":1,"frontendPortRangeEnd":100,"backendPort":22,"frontendIPConfiguration":` + fe + `}}]`}, "LoadBalancerFrontendPortConflict"},
		{"nat rule port", map[string]string{"inboundNatRules": `[{"name":"one","properties":{"protocol":"Tcp","frontendPort":0,"backendPort":22,"frontendIPConfiguration":` + fe + `}}]`}, "InvalidInboundNatRuleFrontendPort"},
		{"nat rule in pool range", map[string]string{"inboundNatRules": `[{"name":"one","properties":{"protocol":"Tcp","frontendPort":50001,"backendPort":22,"frontendIPConfiguration":` + fe + `}}]`}, "LoadBalancerFrontendPortConflict"},
	} {
		wantCode(t, tc.name, ValidateLB(lbRef, mustJSON[armnetwork.LoadBalancer](t, lbBody(tc.parts))), tc.code)
	}
}

func TestLBConfigFromModel(t *testing.T) {
	lb := mustJSON[armnetwork.LoadBalancer](t, lbBody(nil))
	cfg := LBConfigFromModel(lbRef, lb, func(string) netip.Addr {
		return mustAddr("127.0.1.1")
	})
	if len(cfg.Frontends) != 1 || cfg.Frontends[0].Address.String() != "127.0.1.1" {
		t.Fatalf("frontends %+v", cfg.Frontends)
	}
	r := cfg.Rules[0]
	if r.Frontend != "fe" || r.Protocol != "tcp" || r.FrontendPort != 80 || r.BackendPort != 80 || r.Probe != "http" || len(r.BackendPools) != 1 || r.LoadDistribution != "Default" || r.IdleTimeoutMinutes != 4 {
		t.Fatalf("rule %+v", r)
	}
	p := cfg.Probes[0]
	if p.Protocol != "http" || p.Path != "/health" || p.Port != 80 || p.IntervalSeconds != 5 || p.NumberOfProbes != 2 {
		t.Fatalf("probe %+v", p)
	}
	n := cfg.NATPools[0]
	if n.Frontend != "fe" || n.FrontendPortStart != 50000 || n.FrontendPortEnd != 50119 || n.BackendPort != 22 {
		t.Fatalf("nat pool %+v", n)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
