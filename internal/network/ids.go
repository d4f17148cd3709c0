// Package network is vmssd's Microsoft.Network core: ARM resource ids of
// virtual networks, subnets, public IP addresses, load balancers and their
// parts; pure validation of the armnetwork models (address prefixes, subnets
// within their network and not overlapping, probe and rule ports, NAT pool
// ranges, internal references); pure address allocation (IPAM: the lowest
// free address of a subnet or of the operator's public pool); and the store
// side of it: an instance NIC's private address (allocated once, kept across
// restarts and reimages, released on delete), public addresses, and the
// configuration a load balancer data plane serves (frontends, rules, probes,
// NAT pools and backend members).
package network

import (
	"strings"

	"github.com/vmssd/vmssd/internal/model"
)

// ID is a parsed Microsoft.Network (or scale set) resource id.
type ID struct {
	Sub, RG, Namespace string
	// Types and Names alternate after the namespace:
	// loadBalancers/lb/probes/p is Types [loadBalancers probes], Names [lb p].
	Types, Names []string
}

// ParseID parses "/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}[/{type}/{name}...]".
func ParseID(id string) (ID, bool) {
	segs := strings.Split(strings.Trim(id, "/"), "/")
	if len(segs) < 8 || len(segs)%2 != 0 ||
		!strings.EqualFold(segs[0], "subscriptions") || !strings.EqualFold(segs[2], "resourceGroups") || !strings.EqualFold(segs[4], "providers") {
		return ID{}, false
	}
	out := ID{Sub: segs[1], RG: segs[3], Namespace: segs[5]}
	for i := 6; i < len(segs); i += 2 {
		if segs[i] == "" || segs[i+1] == "" {
			return ID{}, false
		}
		out.Types = append(out.Types, segs[i])
		out.Names = append(out.Names, segs[i+1])
	}
	if out.Sub == "" || out.RG == "" {
		return ID{}, false
	}
	return out, true
}

// Is reports whether the id is of the namespace and type chain given
// ("loadBalancers", "probes"), case-insensitively.
func (id ID) Is(ns string, types ...string) bool {
	if !strings.EqualFold(id.Namespace, ns) || len(types) != len(id.Types) {
		return false
	}
	for i, t := range types {
		if !strings.EqualFold(t, id.Types[i]) {
			return false
		}
	}
	return true
}

// Resource is the top-level Microsoft.Network resource the id names or is
// part of.
func (id ID) Resource() model.NetRef {
	return model.NetRef{Sub: id.Sub, RG: id.RG, Type: canonicalType(id.Types[0]), Name: id.Names[0]}
}

// Child is the name of the id's last part (a subnet, a pool, a probe), ""
// for a top-level resource.
func (id ID) Child() string {
	if len(id.Names) < 2 {
		return ""
	}
	return id.Names[len(id.Names)-1]
}

// canonicalType spells a known type as ARM does.
func canonicalType(t string) string {
	for _, k := range []string{model.NetVirtualNetworks, model.NetPublicIPs, model.NetLoadBalancers, model.NetSecurityGroups} {
		if strings.EqualFold(k, t) {
			return k
		}
	}
	return t
}

// ChildID formats the id of a part of a resource (subnet, pool, probe).
func ChildID(r model.NetRef, childType, name string) string {
	return r.ID() + "/" + childType + "/" + name
}

// SubnetID formats the id of a subnet.
func SubnetID(vnet model.NetRef, subnet string) string { return ChildID(vnet, "subnets", subnet) }

// Kinds of references a scale set or a load balancer makes.
const (
	RefSubnet      = "subnets"
	RefBackendPool = "backendAddressPools"
	RefNATPool     = "inboundNatPools"
	RefProbe       = "probes"
	RefFrontend    = "frontendIPConfigurations"
	RefPublicIP    = "publicIPAddresses"
	RefNSG         = "networkSecurityGroups"
)

// ParseRef parses id as a reference of the kind given: a subnet of a
// virtual network, a part of a load balancer, or a top-level resource.
func ParseRef(id, kind string) (ID, bool) {
	p, ok := ParseID(id)
	if !ok {
		return ID{}, false
	}
	switch kind {
	case RefSubnet:
		ok = p.Is("Microsoft.Network", model.NetVirtualNetworks, "subnets")
	case RefBackendPool, RefNATPool, RefProbe, RefFrontend:
		ok = p.Is("Microsoft.Network", model.NetLoadBalancers, kind)
	case RefPublicIP:
		ok = p.Is("Microsoft.Network", model.NetPublicIPs)
	case RefNSG:
		ok = p.Is("Microsoft.Network", model.NetSecurityGroups)
	default:
		ok = false
	}
	return p, ok
}
