package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/spf13/cobra"
)

// vmssNetFlags are az's networking defaults of `vmss create`: unless told
// otherwise the scale set gets a virtual network ({name}VNET, 10.0.0.0/16)
// with a subnet ({name}Subnet, 10.0.0.0/24), a public IP
// ({name}LBPublicIP) and a load balancer ({name}LB: frontend on the public
// IP, backend pool {name}LBBEPool, an Http probe of /health on the backend
// port, rule frontend port -> backend port, inbound NAT pool
// {name}LBNatPool 50000-50119 -> 22), and its NIC joins the subnet, the
// pool and the NAT pool; networkProfile.healthProbe names the probe.
// Existing resources of those names are used as they are.
type vmssNetFlags struct {
	vnet, subnet, lb, publicIP string
	vnetPrefix, subnetPrefix   string
	frontendPort, backendPort  int32
	natStart                   int32
	lbSet                      bool
}

func (n *vmssNetFlags) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&n.vnet, "vnet-name", "", "virtual network to put the instances in (default: {name}VNET, created when missing)")
	f.StringVar(&n.subnet, "subnet", "", "subnet name or id (default: {name}Subnet, created when missing)")
	f.StringVar(&n.lb, "lb", "", `load balancer (default: {name}LB, created when missing; "" for none)`)
	f.StringVar(&n.publicIP, "public-ip-address", "", "public IP of a new load balancer (default: {name}LBPublicIP)")
	f.StringVar(&n.vnetPrefix, "vnet-address-prefix", "10.0.0.0/16", "address prefix of a new virtual network")
	f.StringVar(&n.subnetPrefix, "subnet-address-prefix", "10.0.0.0/24", "address prefix of a new subnet")
	f.Int32Var(&n.frontendPort, "lb-frontend-port", 80, "frontend port of a new load balancer's rule")
	f.Int32Var(&n.backendPort, "backend-port", 80, "backend port of a new load balancer's rule and probe")
	f.Int32Var(&n.natStart, "nat-frontend-port-start", 50000, "first port of a new load balancer's inbound NAT pool (120 ports, to 22)")
}

func (n *vmssNetFlags) complete(cmd *cobra.Command, name string) {
	n.lbSet = cmd.Flags().Changed("lb")
	if n.vnet == "" {
		n.vnet = name + "VNET"
	}
	if n.subnet == "" {
		n.subnet = name + "Subnet"
	}
	if !n.lbSet {
		n.lb = name + "LB"
	}
	if n.publicIP == "" {
		n.publicIP = name + "LBPublicIP"
	}
}

func (n *vmssNetFlags) validate() error {
	for _, p := range []int32{n.frontendPort, n.backendPort} {
		if p < 1 || p > 65535 {
			return usageErrorf("--lb-frontend-port and --backend-port must be between 1 and 65535")
		}
	}
	if n.natStart < 1 || n.natStart > 65535-119 {
		return usageErrorf("--nat-frontend-port-start must be between 1 and 65416")
	}
	return nil
}

func isNotFoundErr(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// ensure creates the networking resources the scale set needs (what is
// missing) and returns its networkProfile.
func (n *vmssNetFlags) ensure(ctx context.Context, r *rootOptions, rg, setName, location string) (*armcompute.VirtualMachineScaleSetNetworkProfile, error) {
	f, c, err := r.networkClients()
	if err != nil {
		return nil, err
	}
	sub, err := c.sub()
	if err != nil {
		return nil, err
	}
	subnetID := n.subnet
	if !strings.HasPrefix(subnetID, "/") {
		if subnetID, err = n.ensureSubnet(ctx, r, f, sub, rg, location); err != nil {
			return nil, err
		}
	}
	ipc := &armcompute.VirtualMachineScaleSetIPConfigurationProperties{
		Subnet: &armcompute.APIEntityReference{ID: &subnetID}, Primary: ptr(true),
	}
	profile := &armcompute.VirtualMachineScaleSetNetworkProfile{}
	if n.lb != "" {
		lbID, err := n.ensureLB(ctx, r, f, sub, rg, location)
		if err != nil {
			return nil, err
		}
		lb, err := f.NewLoadBalancersClient().Get(ctx, rg, n.lb, nil)
		if err != nil {
			return nil, err
		}
		if p := lb.Properties; p != nil {
			for _, bp := range p.BackendAddressPools {
				ipc.LoadBalancerBackendAddressPools = append(ipc.LoadBalancerBackendAddressPools, &armcompute.SubResource{ID: bp.ID})
			}
			for _, np := range p.InboundNatPools {
				ipc.LoadBalancerInboundNatPools = append(ipc.LoadBalancerInboundNatPools, &armcompute.SubResource{ID: np.ID})
			}
			if len(p.Probes) > 0 {
				profile.HealthProbe = &armcompute.APIEntityReference{ID: ptr(lbID + "/probes/" + str(p.Probes[0].Name))}
			}
		}
	}
	prefix := computerNamePrefix(setName)
	profile.NetworkInterfaceConfigurations = []*armcompute.VirtualMachineScaleSetNetworkConfiguration{{
		Name: ptr(prefix + "Nic"),
		Properties: &armcompute.VirtualMachineScaleSetNetworkConfigurationProperties{
			Primary:          ptr(true),
			IPConfigurations: []*armcompute.VirtualMachineScaleSetIPConfiguration{{Name: ptr(prefix + "IPConfig"), Properties: ipc}},
		},
	}}
	return profile, nil
}

func (n *vmssNetFlags) ensureSubnet(ctx context.Context, r *rootOptions, f *armnetwork.ClientFactory, sub, rg, location string) (string, error) {
	vnID := netID(sub, rg, "virtualNetworks", n.vnet)
	subnetID := vnID + "/subnets/" + n.subnet
	vn, err := f.NewVirtualNetworksClient().Get(ctx, rg, n.vnet, nil)
	switch {
	case isNotFoundErr(err):
		fmt.Fprintf(r.streams.ErrOut, "Creating virtual network %s (%s) with subnet %s (%s).\n", n.vnet, n.vnetPrefix, n.subnet, n.subnetPrefix)
		body := armnetwork.VirtualNetwork{Location: &location, Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: []*string{&n.vnetPrefix}},
			Subnets:      []*armnetwork.Subnet{{Name: &n.subnet, Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: &n.subnetPrefix}}},
		}}
		p, err := f.NewVirtualNetworksClient().BeginCreateOrUpdate(ctx, rg, n.vnet, body, nil)
		if err != nil {
			return "", err
		}
		if _, err := p.PollUntilDone(ctx, nil); err != nil {
			return "", err
		}
		return subnetID, nil
	case err != nil:
		return "", err
	}
	if vn.Properties != nil {
		for _, s := range vn.Properties.Subnets {
			if strings.EqualFold(str(s.Name), n.subnet) {
				return subnetID, nil
			}
		}
	}
	fmt.Fprintf(r.streams.ErrOut, "Creating subnet %s (%s) in virtual network %s.\n", n.subnet, n.subnetPrefix, n.vnet)
	p, err := f.NewSubnetsClient().BeginCreateOrUpdate(ctx, rg, n.vnet, n.subnet,
		armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: &n.subnetPrefix}}, nil)
	if err != nil {
		return "", err
	}
	if _, err := p.PollUntilDone(ctx, nil); err != nil {
		return "", err
	}
	return subnetID, nil
}

func (n *vmssNetFlags) ensureLB(ctx context.Context, r *rootOptions, f *armnetwork.ClientFactory, sub, rg, location string) (string, error) {
	lbID := netID(sub, rg, "loadBalancers", n.lb)
	if _, err := f.NewLoadBalancersClient().Get(ctx, rg, n.lb, nil); err == nil {
		return lbID, nil
	} else if !isNotFoundErr(err) {
		return "", err
	}
	pipID := netID(sub, rg, "publicIPAddresses", n.publicIP)
	if _, err := f.NewPublicIPAddressesClient().Get(ctx, rg, n.publicIP, nil); isNotFoundErr(err) {
		fmt.Fprintf(r.streams.ErrOut, "Creating public IP address %s.\n", n.publicIP)
		p, err := f.NewPublicIPAddressesClient().BeginCreateOrUpdate(ctx, rg, n.publicIP, armnetwork.PublicIPAddress{
			Location:   &location,
			Properties: &armnetwork.PublicIPAddressPropertiesFormat{PublicIPAllocationMethod: ptr(armnetwork.IPAllocationMethodStatic)},
		}, nil)
		if err != nil {
			return "", err
		}
		if _, err := p.PollUntilDone(ctx, nil); err != nil {
			return "", err
		}
	} else if err != nil {
		return "", err
	}
	fe := &armnetwork.SubResource{ID: ptr(lbID + "/frontendIPConfigurations/loadBalancerFrontEnd")}
	pool := n.lb + "BEPool"
	body := armnetwork.LoadBalancer{Location: &location, Properties: &armnetwork.LoadBalancerPropertiesFormat{
		FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{Name: ptr("loadBalancerFrontEnd"),
			Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{PublicIPAddress: &armnetwork.PublicIPAddress{ID: &pipID}}}},
		BackendAddressPools: []*armnetwork.BackendAddressPool{{Name: &pool}},
		Probes: []*armnetwork.Probe{{Name: ptr("healthProbe"), Properties: &armnetwork.ProbePropertiesFormat{
			Protocol: ptr(armnetwork.ProbeProtocolHTTP), Port: &n.backendPort, RequestPath: ptr("/health"),
			IntervalInSeconds: ptr[int32](5), NumberOfProbes: ptr[int32](2)}}},
		LoadBalancingRules: []*armnetwork.LoadBalancingRule{{Name: ptr("LBRule"), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
			Protocol: ptr(armnetwork.TransportProtocolTCP), FrontendPort: &n.frontendPort, BackendPort: &n.backendPort,
			FrontendIPConfiguration: fe,
			BackendAddressPool:      &armnetwork.SubResource{ID: ptr(lbID + "/backendAddressPools/" + pool)},
			Probe:                   &armnetwork.SubResource{ID: ptr(lbID + "/probes/healthProbe")},
		}}},
		InboundNatPools: []*armnetwork.InboundNatPool{{Name: ptr(n.lb + "NatPool"), Properties: &armnetwork.InboundNatPoolPropertiesFormat{
			Protocol: ptr(armnetwork.TransportProtocolTCP), FrontendPortRangeStart: &n.natStart, FrontendPortRangeEnd: ptr(n.natStart + 119),
			BackendPort: ptr[int32](22), FrontendIPConfiguration: fe,
		}}},
	}}
	fmt.Fprintf(r.streams.ErrOut, "Creating load balancer %s (rule %d -> %d, NAT pool %d-%d -> 22).\n", n.lb, n.frontendPort, n.backendPort, n.natStart, n.natStart+119)
	p, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, rg, n.lb, body, nil)
	if err != nil {
		return "", err
	}
	if _, err := p.PollUntilDone(ctx, nil); err != nil {
		return "", err
	}
	return lbID, nil
}
