package network

import (
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// IPConfigSpec is one ipConfiguration of a scale set NIC configuration.
type IPConfigSpec struct {
	Name    string
	Primary bool
	// Subnet is the subnet's ARM id ("" when none is named).
	Subnet string
	// BackendPools and NATPools are load balancer part ids.
	BackendPools []string
	NATPools     []string
}

// NICSpec is one networkInterfaceConfiguration: each instance gets a NIC
// of that name.
type NICSpec struct {
	Name      string
	Primary   bool
	IPConfigs []IPConfigSpec
}

// PrimaryIPConfig is the ipConfiguration that gets the NIC's address: the
// one marked primary, else the first.
func (n NICSpec) PrimaryIPConfig() (IPConfigSpec, bool) {
	for _, c := range n.IPConfigs {
		if c.Primary {
			return c, true
		}
	}
	if len(n.IPConfigs) > 0 {
		return n.IPConfigs[0], true
	}
	return IPConfigSpec{}, false
}

// ScaleSetNICs reads a scale set model's networkProfile.
func ScaleSetNICs(m *armcompute.VirtualMachineScaleSet) []NICSpec {
	if m == nil || m.Properties == nil || m.Properties.VirtualMachineProfile == nil || m.Properties.VirtualMachineProfile.NetworkProfile == nil {
		return nil
	}
	var out []NICSpec
	for _, nc := range m.Properties.VirtualMachineProfile.NetworkProfile.NetworkInterfaceConfigurations {
		if nc == nil {
			continue
		}
		n := NICSpec{Name: s(nc.Name)}
		if nc.Properties == nil {
			out = append(out, n)
			continue
		}
		n.Primary = nc.Properties.Primary != nil && *nc.Properties.Primary
		for _, ic := range nc.Properties.IPConfigurations {
			if ic == nil {
				continue
			}
			c := IPConfigSpec{Name: s(ic.Name)}
			if p := ic.Properties; p != nil {
				c.Primary = p.Primary != nil && *p.Primary
				if p.Subnet != nil {
					c.Subnet = s(p.Subnet.ID)
				}
				for _, bp := range p.LoadBalancerBackendAddressPools {
					if bp != nil {
						c.BackendPools = append(c.BackendPools, s(bp.ID))
					}
				}
				for _, np := range p.LoadBalancerInboundNatPools {
					if np != nil {
						c.NATPools = append(c.NATPools, s(np.ID))
					}
				}
			}
			n.IPConfigs = append(n.IPConfigs, c)
		}
		out = append(out, n)
	}
	return out
}

// HealthProbe is the id of the scale set's networkProfile.healthProbe.
func HealthProbe(m *armcompute.VirtualMachineScaleSet) string {
	if m == nil || m.Properties == nil || m.Properties.VirtualMachineProfile == nil || m.Properties.VirtualMachineProfile.NetworkProfile == nil {
		return ""
	}
	if hp := m.Properties.VirtualMachineProfile.NetworkProfile.HealthProbe; hp != nil {
		return s(hp.ID)
	}
	return ""
}

// Reference is a reference a scale set model makes to a network resource.
type Reference struct {
	ID, Kind, Target string
}

// ScaleSetRefs lists the network references of a scale set model with
// their JSON targets.
func ScaleSetRefs(m *armcompute.VirtualMachineScaleSet) []Reference {
	const base = "properties.virtualMachineProfile.networkProfile"
	var out []Reference
	for i, id := range nicNSGs(m) {
		if id != "" {
			out = append(out, Reference{id, RefNSG, fmt.Sprintf("%s.networkInterfaceConfigurations[%d].properties.networkSecurityGroup.id", base, i)})
		}
	}
	for i, n := range ScaleSetNICs(m) {
		for j, c := range n.IPConfigs {
			t := fmt.Sprintf("%s.networkInterfaceConfigurations[%d].properties.ipConfigurations[%d].properties", base, i, j)
			if c.Subnet != "" {
				out = append(out, Reference{c.Subnet, RefSubnet, t + ".subnet.id"})
			}
			for k, id := range c.BackendPools {
				out = append(out, Reference{id, RefBackendPool, fmt.Sprintf("%s.loadBalancerBackendAddressPools[%d].id", t, k)})
			}
			for k, id := range c.NATPools {
				out = append(out, Reference{id, RefNATPool, fmt.Sprintf("%s.loadBalancerInboundNatPools[%d].id", t, k)})
			}
		}
	}
	if hp := HealthProbe(m); hp != "" {
		out = append(out, Reference{hp, RefProbe, base + ".healthProbe.id"})
	}
	return out
}

// nicNSGs lists the networkSecurityGroup id of each NIC configuration ("" for none),
// by the configurations' index.
func nicNSGs(m *armcompute.VirtualMachineScaleSet) []string {
	if m == nil || m.Properties == nil || m.Properties.VirtualMachineProfile == nil || m.Properties.VirtualMachineProfile.NetworkProfile == nil {
		return nil
	}
	var out []string
	for _, nc := range m.Properties.VirtualMachineProfile.NetworkProfile.NetworkInterfaceConfigurations {
		id := ""
		if nc != nil && nc.Properties != nil && nc.Properties.NetworkSecurityGroup != nil {
			id = s(nc.Properties.NetworkSecurityGroup.ID)
		}
		out = append(out, id)
	}
	return out
}

// RefersTo reports whether a scale set model references the resource
// whose record key is key (any part of it).
func RefersTo(m *armcompute.VirtualMachineScaleSet, key string) bool {
	for _, r := range ScaleSetRefs(m) {
		if p, ok := ParseID(r.ID); ok && strings.EqualFold(p.Resource().Key(), key) {
			return true
		}
	}
	return false
}

// RefersToPart reports whether a scale set model references the part
// (subnet, pool, probe) of kind and name of the resource with key.
func RefersToPart(m *armcompute.VirtualMachineScaleSet, key, kind, name string) bool {
	for _, r := range ScaleSetRefs(m) {
		if p, ok := ParseRef(r.ID, kind); ok && r.Kind == kind && strings.EqualFold(p.Resource().Key(), key) && strings.EqualFold(p.Child(), name) {
			return true
		}
	}
	return false
}
