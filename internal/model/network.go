package model

import (
	"encoding/json"
	"fmt"
	"time"
)

// Microsoft.Network resource types, as their ARM type's last segment.
const (
	NetVirtualNetworks = "virtualNetworks"
	NetPublicIPs       = "publicIPAddresses"
	NetLoadBalancers   = "loadBalancers"
	NetSecurityGroups  = "networkSecurityGroups"
)

// Network key prefixes: resources, then address allocations (IPAM).
const (
	PrefixNetwork = "/net/"
	PrefixIPAM    = "/ipam/"
)

// NetRef names a Microsoft.Network resource.
type NetRef struct {
	Sub, RG, Type, Name string
}

// Key is the resource's record key: "/net/{type}/{sub}/{rg}/{name}", so
// that a type's resources list by subscription and by resource group.
func (r NetRef) Key() string {
	return PrefixNetwork + lower(r.Type) + "/" + lower(r.Sub) + "/" + lower(r.RG) + "/" + lower(r.Name)
}

// ID is the resource's ARM id.
func (r NetRef) ID() string {
	return "/subscriptions/" + r.Sub + "/resourceGroups/" + r.RG + "/providers/Microsoft.Network/" + r.Type + "/" + r.Name
}

// NetPrefix lists a network resource type in a subscription, or in a
// resource group when rg is not empty.
func NetPrefix(typ, sub, rg string) string {
	p := PrefixNetwork + lower(typ) + "/" + lower(sub) + "/"
	if rg != "" {
		p += lower(rg) + "/"
	}
	return p
}

// NetResource is a Microsoft.Network resource as the user defined it:
// Model is the SDK model's JSON (armnetwork's VirtualNetwork,
// PublicIPAddress, LoadBalancer or SecurityGroup) without read-only fields.
type NetResource struct {
	Sub          string          `json:"sub"`
	RG           string          `json:"rg"`
	Type         string          `json:"type"`
	Name         string          `json:"name"`
	Model        json.RawMessage `json:"model"`
	ResourceGUID string          `json:"resourceGuid"`
	Created      time.Time       `json:"created"`
	// Address is a public IP address's address from the operator's pool.
	Address string `json:"address,omitempty"`
}

// Ref returns the resource's reference.
func (n *NetResource) Ref() NetRef {
	return NetRef{Sub: n.Sub, RG: n.RG, Type: n.Type, Name: n.Name}
}

// SubnetAddrPrefix lists the private addresses allocated in a subnet of a
// virtual network.
func SubnetAddrPrefix(vnet NetRef, subnet string) string {
	return PrefixIPAM + "addr/" + lower(vnet.Sub) + "/" + lower(vnet.RG) + "/" + lower(vnet.Name) + "/" + lower(subnet) + "/"
}

// VNetAddrPrefix lists the private addresses allocated in a virtual network.
func VNetAddrPrefix(vnet NetRef) string {
	return PrefixIPAM + "addr/" + lower(vnet.Sub) + "/" + lower(vnet.RG) + "/" + lower(vnet.Name) + "/"
}

// SubnetAddrKey is the key of one allocated private address (its value is
// an IPAllocation): at most one owner per address and subnet.
func SubnetAddrKey(vnet NetRef, subnet, addr string) string {
	return SubnetAddrPrefix(vnet, subnet) + addr
}

// NICAllocSetPrefix lists the NIC allocations of a scale set's instances.
func NICAllocSetPrefix(set SetRef) string { return PrefixIPAM + "nic/" + set.String() + "/" }

// NICAllocPrefix lists the NIC allocations of one instance.
func NICAllocPrefix(set SetRef, id int64) string {
	return fmt.Sprintf("%s%012d/", NICAllocSetPrefix(set), id)
}

// NICAllocKey is the key of an instance NIC's allocation (an IPAllocation):
// the instance keeps its address across restarts and reimages.
func NICAllocKey(set SetRef, id int64, nic string) string {
	return NICAllocPrefix(set, id) + lower(nic)
}

// PrefixPublicAddrs lists the public addresses taken from the pool.
const PrefixPublicAddrs = PrefixIPAM + "public/"

// PublicAddrKey is the key of a public address taken from the operator's
// pool (an IPAllocation whose owner is a publicIPAddresses record key).
func PublicAddrKey(addr string) string { return PrefixPublicAddrs + addr }

// IPAllocation is one allocated address.
type IPAllocation struct {
	Address string `json:"address"`
	// Owner is the key of what holds the address: a NIC allocation key, a
	// load balancer frontend ("{lb key}#{frontend}") or a public IP's
	// record key.
	Owner string `json:"owner"`
	// Subnet is the ARM id of the subnet a private address is from.
	Subnet string `json:"subnet,omitempty"`
	// AddrKey is the subnet address key a NIC allocation holds.
	AddrKey string    `json:"addrKey,omitempty"`
	Created time.Time `json:"created"`
}
