package cli

import (
	"context"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/spf13/cobra"
)

// --- virtual networks ---

var vnetKind = &netKind[*armnetwork.VirtualNetwork]{
	noun: "virtual network",
	get: func(ctx context.Context, f *armnetwork.ClientFactory, rg, name string) (*armnetwork.VirtualNetwork, error) {
		res, err := f.NewVirtualNetworksClient().Get(ctx, rg, name, nil)
		return &res.VirtualNetwork, err
	},
	list: func(ctx context.Context, f *armnetwork.ClientFactory, rg string) ([]*armnetwork.VirtualNetwork, error) {
		c := f.NewVirtualNetworksClient()
		if rg == "" {
			return pages(ctx, c.NewListAllPager(nil), func(p armnetwork.VirtualNetworksClientListAllResponse) []*armnetwork.VirtualNetwork { return p.Value })
		}
		return pages(ctx, c.NewListPager(rg, nil), func(p armnetwork.VirtualNetworksClientListResponse) []*armnetwork.VirtualNetwork { return p.Value })
	},
	del: func(ctx context.Context, r *rootOptions, f *armnetwork.ClientFactory, rg, name string) (func() error, error) {
		p, err := f.NewVirtualNetworksClient().BeginDelete(ctx, rg, name, nil)
		return waitFn(ctx, r, p, err)
	},
	header: []string{"Name", "ResourceGroup", "Location", "AddressPrefixes", "Subnets", "ProvisioningState"},
	row: func(v *armnetwork.VirtualNetwork) []string {
		prefixes, subnets := "", ""
		if p := v.Properties; p != nil {
			if p.AddressSpace != nil {
				prefixes = joinPtrs(p.AddressSpace.AddressPrefixes)
			}
			var names []string
			for _, s := range p.Subnets {
				names = append(names, str(s.Name))
			}
			subnets = strings.Join(names, ",")
			return []string{str(v.Name), rgOf(v.ID), str(v.Location), prefixes, subnets, provState(p.ProvisioningState)}
		}
		return []string{str(v.Name), rgOf(v.ID), str(v.Location), prefixes, subnets, ""}
	},
}

func newVNetCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("vnet", "Manage virtual networks (az network vnet)")
	var o struct {
		netName
		location, subnetName, nsg string
		prefixes, subnetPrefixes  []string
	}
	create := &cobra.Command{Use: "create -g RG -n NAME [--address-prefixes CIDR...] [--subnet-name NAME --subnet-prefixes CIDR]", Short: "Create (or replace) a virtual network", Args: noArgs}
	o.addFlags(create, "virtual network", true)
	create.Flags().StringVarP(&o.location, "location", "l", "", "location (default: the configured one)")
	create.Flags().StringSliceVar(&o.prefixes, "address-prefixes", []string{"10.0.0.0/16"}, "address prefixes of the network (CIDR)")
	create.Flags().StringVar(&o.subnetName, "subnet-name", "", "create a subnet of this name")
	create.Flags().StringSliceVar(&o.subnetPrefixes, "subnet-prefixes", []string{"10.0.0.0/24"}, "address prefixes of the subnet (with --subnet-name)")
	create.Flags().StringVar(&o.nsg, "network-security-group", "", "NSG (name or id) of the subnet")
	bind(root, create, &funcRunner{validate: func() error { return o.validate(true) }, run: func(ctx context.Context) error {
		f, c, err := root.networkClients()
		if err != nil {
			return err
		}
		loc := c.location(o.location)
		vn := armnetwork.VirtualNetwork{Location: &loc, Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: ptrs(o.prefixes)},
		}}
		if o.subnetName != "" {
			sn := subnetModel(c.cfg.Subscription, o.rg, o.subnetPrefixes, o.nsg)
			sn.Name = &o.subnetName
			vn.Properties.Subnets = []*armnetwork.Subnet{sn}
		}
		p, err := f.NewVirtualNetworksClient().BeginCreateOrUpdate(ctx, o.rg, o.name, vn, nil)
		if err != nil {
			return err
		}
		res, done, err := await(ctx, root, p)
		if err != nil || !done {
			return err
		}
		return vnetKind.print(root, false, &res.VirtualNetwork)
	}})
	cmd.AddCommand(append([]*cobra.Command{create}, vnetKind.commands(root)...)...)
	return cmd
}

func ptrs(vs []string) []*string {
	out := make([]*string, 0, len(vs))
	for _, v := range vs {
		out = append(out, &v)
	}
	return out
}

func subnetModel(sub, rg string, prefixes []string, nsg string) *armnetwork.Subnet {
	sn := &armnetwork.Subnet{Properties: &armnetwork.SubnetPropertiesFormat{}}
	if len(prefixes) == 1 {
		sn.Properties.AddressPrefix = &prefixes[0]
	} else {
		sn.Properties.AddressPrefixes = ptrs(prefixes)
	}
	if nsg != "" {
		id := idOrName(sub, rg, "networkSecurityGroups", nsg)
		sn.Properties.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: &id}
	}
	return sn
}

// --- subnets ---

func printSubnets(r *rootOptions, list bool, vs ...*armnetwork.Subnet) error {
	return printRows(r, []string{"Name", "ResourceGroup", "AddressPrefix", "ProvisioningState"}, func(s *armnetwork.Subnet) []string {
		prefix, state := "", ""
		if p := s.Properties; p != nil {
			prefix, state = str(p.AddressPrefix), provState(p.ProvisioningState)
			if prefix == "" {
				prefix = joinPtrs(p.AddressPrefixes)
			}
		}
		return []string{str(s.Name), rgOf(s.ID), prefix, state}
	}, list, vs...)
}

func newSubnetCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("subnet", "Manage subnets of a virtual network (az network vnet subnet)")
	type subnetOpts struct {
		netName
		vnet, nsg string
		prefixes  []string
	}
	mk := func(use, short string, name bool) (*cobra.Command, *subnetOpts) {
		o := &subnetOpts{}
		c := &cobra.Command{Use: use, Short: short, Args: noArgs}
		o.addFlags(c, "subnet", name)
		c.Flags().StringVar(&o.vnet, "vnet-name", "", "virtual network name")
		_ = c.MarkFlagRequired("vnet-name")
		return c, o
	}
	valid := func(o *subnetOpts, name bool) func() error {
		return func() error {
			if err := o.validate(name); err != nil {
				return err
			}
			if strings.TrimSpace(o.vnet) == "" {
				return usageErrorf("--vnet-name must not be empty")
			}
			return nil
		}
	}
	create, co := mk("create -g RG --vnet-name VNET -n NAME --address-prefixes CIDR", "Create (or replace) a subnet", true)
	create.Flags().StringSliceVar(&co.prefixes, "address-prefixes", nil, "address prefixes of the subnet (CIDR)")
	_ = create.MarkFlagRequired("address-prefixes")
	create.Flags().StringVar(&co.nsg, "network-security-group", "", "NSG (name or id)")
	bind(root, create, &funcRunner{validate: valid(co, true), run: func(ctx context.Context) error {
		f, c, err := root.networkClients()
		if err != nil {
			return err
		}
		p, err := f.NewSubnetsClient().BeginCreateOrUpdate(ctx, co.rg, co.vnet, co.name, *subnetModel(c.cfg.Subscription, co.rg, co.prefixes, co.nsg), nil)
		if err != nil {
			return err
		}
		res, done, err := await(ctx, root, p)
		if err != nil || !done {
			return err
		}
		return printSubnets(root, false, &res.Subnet)
	}})
	show, so := mk("show -g RG --vnet-name VNET -n NAME", "Show a subnet", true)
	bind(root, show, &funcRunner{validate: valid(so, true), run: func(ctx context.Context) error {
		f, _, err := root.networkClients()
		if err != nil {
			return err
		}
		res, err := f.NewSubnetsClient().Get(ctx, so.rg, so.vnet, so.name, nil)
		if err != nil {
			return err
		}
		return printSubnets(root, false, &res.Subnet)
	}})
	list, lo := mk("list -g RG --vnet-name VNET", "List the subnets of a virtual network", false)
	bind(root, list, &funcRunner{validate: valid(lo, false), run: func(ctx context.Context) error {
		f, _, err := root.networkClients()
		if err != nil {
			return err
		}
		vs, err := pages(ctx, f.NewSubnetsClient().NewListPager(lo.rg, lo.vnet, nil), func(p armnetwork.SubnetsClientListResponse) []*armnetwork.Subnet { return p.Value })
		if err != nil {
			return err
		}
		return printSubnets(root, true, vs...)
	}})
	del, do := mk("delete -g RG --vnet-name VNET -n NAME", "Delete a subnet", true)
	bind(root, del, &funcRunner{validate: valid(do, true), run: func(ctx context.Context) error {
		f, _, err := root.networkClients()
		if err != nil {
			return err
		}
		p, err := f.NewSubnetsClient().BeginDelete(ctx, do.rg, do.vnet, do.name, nil)
		wait, err := waitFn(ctx, root, p, err)
		if err != nil {
			return err
		}
		return wait()
	}})
	cmd.AddCommand(create, show, list, del)
	return cmd
}

// --- public IPs ---

var publicIPKind = &netKind[*armnetwork.PublicIPAddress]{
	noun: "public IP address",
	get: func(ctx context.Context, f *armnetwork.ClientFactory, rg, name string) (*armnetwork.PublicIPAddress, error) {
		res, err := f.NewPublicIPAddressesClient().Get(ctx, rg, name, nil)
		return &res.PublicIPAddress, err
	},
	list: func(ctx context.Context, f *armnetwork.ClientFactory, rg string) ([]*armnetwork.PublicIPAddress, error) {
		c := f.NewPublicIPAddressesClient()
		if rg == "" {
			return pages(ctx, c.NewListAllPager(nil), func(p armnetwork.PublicIPAddressesClientListAllResponse) []*armnetwork.PublicIPAddress {
				return p.Value
			})
		}
		return pages(ctx, c.NewListPager(rg, nil), func(p armnetwork.PublicIPAddressesClientListResponse) []*armnetwork.PublicIPAddress { return p.Value })
	},
	del: func(ctx context.Context, r *rootOptions, f *armnetwork.ClientFactory, rg, name string) (func() error, error) {
		p, err := f.NewPublicIPAddressesClient().BeginDelete(ctx, rg, name, nil)
		return waitFn(ctx, r, p, err)
	},
	header: []string{"Name", "ResourceGroup", "Location", "IpAddress", "AllocationMethod", "ProvisioningState"},
	row: func(v *armnetwork.PublicIPAddress) []string {
		if p := v.Properties; p != nil {
			return []string{str(v.Name), rgOf(v.ID), str(v.Location), str(p.IPAddress), str(p.PublicIPAllocationMethod), provState(p.ProvisioningState)}
		}
		return []string{str(v.Name), rgOf(v.ID), str(v.Location), "", "", ""}
	},
}

func newPublicIPCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("public-ip", "Manage public IP addresses (az network public-ip)")
	var o struct {
		netName
		location, method, sku, dns string
	}
	create := &cobra.Command{Use: "create -g RG -n NAME [--allocation-method Static|Dynamic] [--sku Basic|Standard] [--dns-name LABEL]", Short: "Create (or update) a public IP address", Args: noArgs}
	o.addFlags(create, "public IP address", true)
	create.Flags().StringVarP(&o.location, "location", "l", "", "location (default: the configured one)")
	create.Flags().StringVar(&o.method, "allocation-method", "", "Static or Dynamic (default: Static for Standard, else Dynamic)")
	create.Flags().StringVar(&o.sku, "sku", "", "Basic or Standard")
	create.Flags().StringVar(&o.dns, "dns-name", "", "DNS label (dnsSettings.domainNameLabel)")
	bind(root, create, &funcRunner{validate: func() error {
		if err := o.validate(true); err != nil {
			return err
		}
		var err error
		if o.method != "" {
			if o.method, err = canonical("--allocation-method", o.method, "Static", "Dynamic"); err != nil {
				return err
			}
		}
		if o.sku != "" {
			o.sku, err = canonical("--sku", o.sku, "Basic", "Standard")
		}
		return err
	}, run: func(ctx context.Context) error {
		f, c, err := root.networkClients()
		if err != nil {
			return err
		}
		loc := c.location(o.location)
		ip := armnetwork.PublicIPAddress{Location: &loc, Properties: &armnetwork.PublicIPAddressPropertiesFormat{}}
		method := o.method
		if o.sku != "" {
			sku := armnetwork.PublicIPAddressSKUName(o.sku)
			ip.SKU = &armnetwork.PublicIPAddressSKU{Name: &sku}
			if method == "" && sku == armnetwork.PublicIPAddressSKUNameStandard {
				method = "Static"
			}
		}
		if method != "" {
			m := armnetwork.IPAllocationMethod(method)
			ip.Properties.PublicIPAllocationMethod = &m
		}
		if o.dns != "" {
			ip.Properties.DNSSettings = &armnetwork.PublicIPAddressDNSSettings{DomainNameLabel: &o.dns}
		}
		p, err := f.NewPublicIPAddressesClient().BeginCreateOrUpdate(ctx, o.rg, o.name, ip, nil)
		if err != nil {
			return err
		}
		res, done, err := await(ctx, root, p)
		if err != nil || !done {
			return err
		}
		return publicIPKind.print(root, false, &res.PublicIPAddress)
	}})
	cmd.AddCommand(append([]*cobra.Command{create}, publicIPKind.commands(root)...)...)
	return cmd
}

// --- network security groups ---

var nsgKind = &netKind[*armnetwork.SecurityGroup]{
	noun: "network security group",
	get: func(ctx context.Context, f *armnetwork.ClientFactory, rg, name string) (*armnetwork.SecurityGroup, error) {
		res, err := f.NewSecurityGroupsClient().Get(ctx, rg, name, nil)
		return &res.SecurityGroup, err
	},
	list: func(ctx context.Context, f *armnetwork.ClientFactory, rg string) ([]*armnetwork.SecurityGroup, error) {
		c := f.NewSecurityGroupsClient()
		if rg == "" {
			return pages(ctx, c.NewListAllPager(nil), func(p armnetwork.SecurityGroupsClientListAllResponse) []*armnetwork.SecurityGroup { return p.Value })
		}
		return pages(ctx, c.NewListPager(rg, nil), func(p armnetwork.SecurityGroupsClientListResponse) []*armnetwork.SecurityGroup { return p.Value })
	},
	del: func(ctx context.Context, r *rootOptions, f *armnetwork.ClientFactory, rg, name string) (func() error, error) {
		p, err := f.NewSecurityGroupsClient().BeginDelete(ctx, rg, name, nil)
		return waitFn(ctx, r, p, err)
	},
	header: []string{"Name", "ResourceGroup", "Location", "Rules", "ProvisioningState"},
	row: func(v *armnetwork.SecurityGroup) []string {
		if p := v.Properties; p != nil {
			return []string{str(v.Name), rgOf(v.ID), str(v.Location), strconv.Itoa(len(p.SecurityRules)), provState(p.ProvisioningState)}
		}
		return []string{str(v.Name), rgOf(v.ID), str(v.Location), "0", ""}
	},
}

func newNSGCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("nsg", "Manage network security groups (az network nsg)")
	var o struct {
		netName
		location string
	}
	create := &cobra.Command{Use: "create -g RG -n NAME", Short: "Create (or replace) a network security group", Args: noArgs}
	o.addFlags(create, "network security group", true)
	create.Flags().StringVarP(&o.location, "location", "l", "", "location (default: the configured one)")
	bind(root, create, &funcRunner{validate: func() error { return o.validate(true) }, run: func(ctx context.Context) error {
		f, c, err := root.networkClients()
		if err != nil {
			return err
		}
		loc := c.location(o.location)
		p, err := f.NewSecurityGroupsClient().BeginCreateOrUpdate(ctx, o.rg, o.name, armnetwork.SecurityGroup{Location: &loc}, nil)
		if err != nil {
			return err
		}
		res, done, err := await(ctx, root, p)
		if err != nil || !done {
			return err
		}
		return nsgKind.print(root, false, &res.SecurityGroup)
	}})
	cmd.AddCommand(append([]*cobra.Command{create}, nsgKind.commands(root)...)...)
	return cmd
}
