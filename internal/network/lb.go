package network

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
)

// lbParts are the names of a load balancer's parts, lower-cased, by kind.
type lbParts map[string]map[string]bool

func (p lbParts) has(kind, name string) bool { return p[kind][strings.ToLower(name)] }

// ownRef checks that id names a part of kind of the load balancer ref
// itself; by and target name the referencing part for the error.
func ownRef(ref model.NetRef, parts lbParts, sr *armnetwork.SubResource, kind, by, target string) (string, error) {
	id := ""
	if sr != nil {
		id = s(sr.ID)
	}
	p, ok := ParseRef(id, kind)
	if !ok || p.Resource().Key() != ref.Key() || !parts.has(kind, p.Child()) {
		return "", invalidRef(id, by, target)
	}
	return p.Child(), nil
}

// portUse is a frontend port taken by a rule, NAT pool or NAT rule.
type portUse struct {
	frontend, proto string
	lo, hi          int32
	by              string
}

func protoOverlap(a, b string) bool { return a == b || a == "all" || b == "all" }

// ValidateLB checks a load balancer: unique part names, each frontend on
// exactly one of a public IP or a subnet, probe protocols, ports, paths and
// intervals, rule and NAT ports and ranges, no frontend port used twice,
// and every reference among its own parts. References to other resources
// (public IPs, subnets) are the caller's to resolve (LBExternalRefs).
func ValidateLB(ref model.NetRef, lb *armnetwork.LoadBalancer) error {
	id := ref.ID()
	p := lb.Properties
	if lb.SKU != nil && lb.SKU.Name != nil && !oneOf(string(*lb.SKU.Name), "Basic", "Standard") {
		return errs.InvalidParameter("sku.name", "The SKU '%s' of load balancer %s is not supported. Allowed values are 'Basic', 'Standard'.", *lb.SKU.Name, id)
	}
	if p == nil {
		return nil
	}
	parts := lbParts{}
	names := func(kind string, n int, name func(i int) *string) error {
		parts[kind] = map[string]bool{}
		for i := range n {
			target := "properties." + kind + "[" + strconv.Itoa(i) + "].name"
			nm := s(name(i))
			if err := ValidName(nm, target); err != nil {
				return err
			}
			if parts[kind][strings.ToLower(nm)] {
				return errs.New(errs.Invalid, "DuplicateResourceName", "Resource %s has two %s named %s.", id, kind, nm).WithTarget(target)
			}
			parts[kind][strings.ToLower(nm)] = true
		}
		return nil
	}
	for _, c := range []struct {
		kind string
		n    int
		name func(int) *string
	}{
		{RefFrontend, len(p.FrontendIPConfigurations), func(i int) *string { return nameOf(p.FrontendIPConfigurations[i]) }},
		{RefBackendPool, len(p.BackendAddressPools), func(i int) *string { return nameOf(p.BackendAddressPools[i]) }},
		{RefProbe, len(p.Probes), func(i int) *string { return nameOf(p.Probes[i]) }},
		{"loadBalancingRules", len(p.LoadBalancingRules), func(i int) *string { return nameOf(p.LoadBalancingRules[i]) }},
		{RefNATPool, len(p.InboundNatPools), func(i int) *string { return nameOf(p.InboundNatPools[i]) }},
		{"inboundNatRules", len(p.InboundNatRules), func(i int) *string { return nameOf(p.InboundNatRules[i]) }},
	} {
		if err := names(c.kind, c.n, c.name); err != nil {
			return err
		}
	}
	for i, f := range p.FrontendIPConfigurations {
		target := "properties.frontendIPConfigurations[" + strconv.Itoa(i) + "]"
		fid := ChildID(ref, RefFrontend, s(f.Name))
		var pub, sub bool
		if f.Properties != nil {
			pub = f.Properties.PublicIPAddress != nil
			sub = f.Properties.Subnet != nil
		}
		if pub == sub {
			return errs.New(errs.Invalid, "LoadBalancerFrontendIPConfigurationInvalid", "Frontend IP configuration %s must reference either a public IP address or a subnet.", fid).WithTarget(target)
		}
		if pub {
			if _, ok := ParseRef(s(f.Properties.PublicIPAddress.ID), RefPublicIP); !ok {
				return invalidRef(s(f.Properties.PublicIPAddress.ID), fid, target+".properties.publicIPAddress.id")
			}
		}
		if sub {
			if _, ok := ParseRef(s(f.Properties.Subnet.ID), RefSubnet); !ok {
				return invalidRef(s(f.Properties.Subnet.ID), fid, target+".properties.subnet.id")
			}
		}
	}
	for i, pr := range p.Probes {
		target := "properties.probes[" + strconv.Itoa(i) + "]"
		pid := ChildID(ref, RefProbe, s(pr.Name))
		pp := pr.Properties
		if pp == nil || pp.Protocol == nil || !oneOf(string(*pp.Protocol), "Http", "Https", "Tcp") {
			v := ""
			if pp != nil && pp.Protocol != nil {
				v = string(*pp.Protocol)
			}
			return errs.New(errs.Invalid, "InvalidProbeProtocol", "Probe %s has protocol '%s'. Allowed values are 'Http', 'Https', 'Tcp'.", pid, v).WithTarget(target + ".properties.protocol")
		}
		if port := i32(pp.Port, 0); port < 1 || port > 65535 {
			return errs.New(errs.Invalid, "InvalidProbePort", "Probe %s has port %d. The port must be between 1 and 65535.", pid, port).WithTarget(target + ".properties.port")
		}
		path := s(pp.RequestPath)
		if strings.EqualFold(string(*pp.Protocol), "Tcp") && path != "" {
			return errs.New(errs.Invalid, "ProbeRequestPathNotAllowedForTcp", "Probe %s has protocol Tcp and a request path; a request path is allowed for Http and Https probes only.", pid).WithTarget(target + ".properties.requestPath")
		}
		if !strings.EqualFold(string(*pp.Protocol), "Tcp") && !strings.HasPrefix(path, "/") {
			return errs.New(errs.Invalid, "ProbeRequestPathMissing", "Probe %s has protocol %s and needs a request path starting with '/'.", pid, *pp.Protocol).WithTarget(target + ".properties.requestPath")
		}
		if iv := i32(pp.IntervalInSeconds, 15); iv < 5 || iv > 2147483646/2 {
			return errs.New(errs.Invalid, "InvalidProbeInterval", "Probe %s has interval %d seconds; it must be at least 5.", pid, iv).WithTarget(target + ".properties.intervalInSeconds")
		}
		if n := i32(pp.NumberOfProbes, 2); n < 1 {
			return errs.New(errs.Invalid, "InvalidProbeNumberOfProbes", "Probe %s has numberOfProbes %d; it must be at least 1.", pid, n).WithTarget(target + ".properties.numberOfProbes")
		}
		if n := pp.ProbeThreshold; n != nil && *n < 1 {
			return errs.New(errs.Invalid, "InvalidProbeThreshold", "Probe %s has probeThreshold %d; it must be at least 1.", pid, *n).WithTarget(target + ".properties.probeThreshold")
		}
	}
	var used []portUse
	take := func(u portUse, target string) error {
		for _, o := range used {
			if o.frontend == u.frontend && protoOverlap(o.proto, u.proto) && u.lo <= o.hi && o.lo <= u.hi {
				return errs.New(errs.Invalid, "LoadBalancerFrontendPortConflict", "%s and %s use the same frontend IP configuration %s, protocol and port(s) %d-%d.", u.by, o.by, u.frontend, max(u.lo, o.lo), min(u.hi, o.hi)).WithTarget(target)
			}
		}
		used = append(used, u)
		return nil
	}
	for i, r := range p.LoadBalancingRules {
		target := "properties.loadBalancingRules[" + strconv.Itoa(i) + "]"
		rid := ChildID(ref, "loadBalancingRules", s(r.Name))
		rp := r.Properties
		if rp == nil {
			return errs.InvalidParameter(target+".properties", "Load balancing rule %s has no properties.", rid)
		}
		proto, err := transport(rp.Protocol, rid, target)
		if err != nil {
			return err
		}
		fe, err := ownRef(ref, parts, rp.FrontendIPConfiguration, RefFrontend, rid, target+".properties.frontendIPConfiguration.id")
		if err != nil {
			return err
		}
		fp, bp := i32(rp.FrontendPort, -1), i32(rp.BackendPort, i32(rp.FrontendPort, -1))
		if fp < 0 || fp > 65534 || fp == 0 && proto != "all" {
			return errs.New(errs.Invalid, "InvalidLoadBalancingRuleFrontendPort", "Load balancing rule %s has frontend port %d; it must be between 1 and 65534 (0 only with protocol All).", rid, fp).WithTarget(target + ".properties.frontendPort")
		}
		if bp < 0 || bp > 65535 || bp == 0 && proto != "all" {
			return errs.New(errs.Invalid, "InvalidLoadBalancingRuleBackendPort", "Load balancing rule %s has backend port %d; it must be between 1 and 65535 (0 only with protocol All).", rid, bp).WithTarget(target + ".properties.backendPort")
		}
		if rp.BackendAddressPool != nil {
			if _, err := ownRef(ref, parts, rp.BackendAddressPool, RefBackendPool, rid, target+".properties.backendAddressPool.id"); err != nil {
				return err
			}
		}
		for j, bpool := range rp.BackendAddressPools {
			if _, err := ownRef(ref, parts, bpool, RefBackendPool, rid, target+".properties.backendAddressPools["+strconv.Itoa(j)+"].id"); err != nil {
				return err
			}
		}
		if rp.Probe != nil {
			if _, err := ownRef(ref, parts, rp.Probe, RefProbe, rid, target+".properties.probe.id"); err != nil {
				return err
			}
		}
		if ld := rp.LoadDistribution; ld != nil && !oneOf(string(*ld), "Default", "SourceIP", "SourceIPProtocol") {
			return errs.InvalidParameter(target+".properties.loadDistribution", "Load balancing rule %s has load distribution '%s'. Allowed values are 'Default', 'SourceIP', 'SourceIPProtocol'.", rid, *ld)
		}
		if err := idleTimeout(rp.IdleTimeoutInMinutes, rid, target); err != nil {
			return err
		}
		lo, hi := fp, fp
		if fp == 0 {
			hi = 65535
		}
		if err := take(portUse{fe, proto, lo, hi, rid}, target+".properties.frontendPort"); err != nil {
			return err
		}
	}
	for i, np := range p.InboundNatPools {
		target := "properties.inboundNatPools[" + strconv.Itoa(i) + "]"
		nid := ChildID(ref, RefNATPool, s(np.Name))
		pp := np.Properties
		if pp == nil {
			return errs.InvalidParameter(target+".properties", "Inbound NAT pool %s has no properties.", nid)
		}
		proto, err := transport(pp.Protocol, nid, target)
		if err != nil {
			return err
		}
		fe, err := ownRef(ref, parts, pp.FrontendIPConfiguration, RefFrontend, nid, target+".properties.frontendIPConfiguration.id")
		if err != nil {
			return err
		}
		lo, hi, bp := i32(pp.FrontendPortRangeStart, 0), i32(pp.FrontendPortRangeEnd, 0), i32(pp.BackendPort, 0)
		if lo < 1 || lo > 65534 || hi < 1 || hi > 65535 || hi < lo {
			return errs.New(errs.Invalid, "InvalidInboundNatPoolFrontendPortRange", "Inbound NAT pool %s has frontend port range %d-%d; the start must be between 1 and 65534, the end between the start and 65535.", nid, lo, hi).WithTarget(target + ".properties.frontendPortRangeStart")
		}
		if bp < 1 || bp > 65535 {
			return errs.New(errs.Invalid, "InvalidInboundNatPoolBackendPort", "Inbound NAT pool %s has backend port %d; it must be between 1 and 65535.", nid, bp).WithTarget(target + ".properties.backendPort")
		}
		if err := idleTimeout(pp.IdleTimeoutInMinutes, nid, target); err != nil {
			return err
		}
		if err := take(portUse{fe, proto, lo, hi, nid}, target+".properties.frontendPortRangeStart"); err != nil {
			return err
		}
	}
	for i, nr := range p.InboundNatRules {
		target := "properties.inboundNatRules[" + strconv.Itoa(i) + "]"
		nid := ChildID(ref, "inboundNatRules", s(nr.Name))
		rp := nr.Properties
		if rp == nil {
			return errs.InvalidParameter(target+".properties", "Inbound NAT rule %s has no properties.", nid)
		}
		proto, err := transport(rp.Protocol, nid, target)
		if err != nil {
			return err
		}
		fe, err := ownRef(ref, parts, rp.FrontendIPConfiguration, RefFrontend, nid, target+".properties.frontendIPConfiguration.id")
		if err != nil {
			return err
		}
		lo, hi := i32(rp.FrontendPort, 0), i32(rp.FrontendPort, 0)
		if rp.FrontendPortRangeStart != nil || rp.FrontendPortRangeEnd != nil {
			lo, hi = i32(rp.FrontendPortRangeStart, 0), i32(rp.FrontendPortRangeEnd, 0)
			if rp.BackendAddressPool != nil {
				if _, err := ownRef(ref, parts, rp.BackendAddressPool, RefBackendPool, nid, target+".properties.backendAddressPool.id"); err != nil {
					return err
				}
			}
		}
		if lo < 1 || lo > 65534 || hi < lo || hi > 65535 {
			return errs.New(errs.Invalid, "InvalidInboundNatRuleFrontendPort", "Inbound NAT rule %s has frontend port(s) %d-%d; they must be between 1 and 65534.", nid, lo, hi).WithTarget(target + ".properties.frontendPort")
		}
		if bp := i32(rp.BackendPort, 0); bp < 1 || bp > 65535 {
			return errs.New(errs.Invalid, "InvalidInboundNatRuleBackendPort", "Inbound NAT rule %s has backend port %d; it must be between 1 and 65535.", nid, bp).WithTarget(target + ".properties.backendPort")
		}
		if err := idleTimeout(rp.IdleTimeoutInMinutes, nid, target); err != nil {
			return err
		}
		if err := take(portUse{fe, proto, lo, hi, nid}, target+".properties.frontendPort"); err != nil {
			return err
		}
	}
	return nil
}

func nameOf[T interface {
	*armnetwork.FrontendIPConfiguration | *armnetwork.BackendAddressPool | *armnetwork.Probe |
		*armnetwork.LoadBalancingRule | *armnetwork.InboundNatPool | *armnetwork.InboundNatRule
}](v T) *string {
	switch x := any(v).(type) {
	case *armnetwork.FrontendIPConfiguration:
		if x != nil {
			return x.Name
		}
	case *armnetwork.BackendAddressPool:
		if x != nil {
			return x.Name
		}
	case *armnetwork.Probe:
		if x != nil {
			return x.Name
		}
	case *armnetwork.LoadBalancingRule:
		if x != nil {
			return x.Name
		}
	case *armnetwork.InboundNatPool:
		if x != nil {
			return x.Name
		}
	case *armnetwork.InboundNatRule:
		if x != nil {
			return x.Name
		}
	}
	return nil
}

func transport(p *armnetwork.TransportProtocol, id, target string) (string, error) {
	if p == nil || !oneOf(string(*p), "Tcp", "Udp", "All") {
		v := ""
		if p != nil {
			v = string(*p)
		}
		return "", errs.New(errs.Invalid, "InvalidTransportProtocol", "%s has protocol '%s'. Allowed values are 'Tcp', 'Udp', 'All'.", id, v).WithTarget(target + ".properties.protocol")
	}
	return strings.ToLower(string(*p)), nil
}

func idleTimeout(t *int32, id, target string) error {
	if t != nil && (*t < 4 || *t > 30) {
		return errs.InvalidParameter(target+".properties.idleTimeoutInMinutes", "%s has idle timeout %d minutes; it must be between 4 and 30.", id, *t)
	}
	return nil
}

// LBExternalRefs are the resources a load balancer's frontends name:
// public IP ids and subnet ids, with the JSON target of each.
func LBExternalRefs(lb *armnetwork.LoadBalancer) (publicIPs, subnets map[string]string) {
	publicIPs, subnets = map[string]string{}, map[string]string{}
	if lb.Properties == nil {
		return
	}
	for i, f := range lb.Properties.FrontendIPConfigurations {
		if f == nil || f.Properties == nil {
			continue
		}
		target := fmt.Sprintf("properties.frontendIPConfigurations[%d].properties", i)
		if f.Properties.PublicIPAddress != nil {
			publicIPs[s(f.Properties.PublicIPAddress.ID)] = target + ".publicIPAddress.id"
		}
		if f.Properties.Subnet != nil {
			subnets[s(f.Properties.Subnet.ID)] = target + ".subnet.id"
		}
	}
	return
}
