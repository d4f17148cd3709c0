package cli

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/spf13/cobra"
)

var lbKind = &netKind[*armnetwork.LoadBalancer]{
	noun: "load balancer",
	get: func(ctx context.Context, f *armnetwork.ClientFactory, rg, name string) (*armnetwork.LoadBalancer, error) {
		res, err := f.NewLoadBalancersClient().Get(ctx, rg, name, nil)
		return &res.LoadBalancer, err
	},
	list: func(ctx context.Context, f *armnetwork.ClientFactory, rg string) ([]*armnetwork.LoadBalancer, error) {
		c := f.NewLoadBalancersClient()
		if rg == "" {
			return pages(ctx, c.NewListAllPager(nil), func(p armnetwork.LoadBalancersClientListAllResponse) []*armnetwork.LoadBalancer { return p.Value })
		}
		return pages(ctx, c.NewListPager(rg, nil), func(p armnetwork.LoadBalancersClientListResponse) []*armnetwork.LoadBalancer { return p.Value })
	},
	del: func(ctx context.Context, r *rootOptions, f *armnetwork.ClientFactory, rg, name string) (func() error, error) {
		p, err := f.NewLoadBalancersClient().BeginDelete(ctx, rg, name, nil)
		return waitFn(ctx, r, p, err)
	},
	header: []string{"Name", "ResourceGroup", "Location", "Frontends", "Rules", "ProvisioningState"},
	row: func(v *armnetwork.LoadBalancer) []string {
		if p := v.Properties; p != nil {
			return []string{str(v.Name), rgOf(v.ID), str(v.Location), strconv.Itoa(len(p.FrontendIPConfigurations)), strconv.Itoa(len(p.LoadBalancingRules)), provState(p.ProvisioningState)}
		}
		return []string{str(v.Name), rgOf(v.ID), str(v.Location), "0", "0", ""}
	},
}

func newLBCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("lb", "Manage load balancers (az network lb)")
	var o struct {
		netName
		location, publicIP, frontend, pool, vnet, subnet, privateIP, sku string
	}
	create := &cobra.Command{
		Use:   "create -g RG -n NAME [--public-ip-address NAME|ID | --vnet-name VNET --subnet NAME]",
		Short: "Create (or replace) a load balancer with one frontend and one backend pool",
		Long: `Create (or replace) a load balancer with one frontend and one backend pool.
The frontend is on --public-ip-address, or on --subnet (a private frontend);
with neither, a public IP named PublicIP<name> is created for it, as az does.`,
		Args: noArgs,
	}
	o.addFlags(create, "load balancer", true)
	fl := create.Flags()
	fl.StringVarP(&o.location, "location", "l", "", "location (default: the configured one)")
	fl.StringVar(&o.publicIP, "public-ip-address", "", "public IP (name or id) of the frontend")
	fl.StringVar(&o.frontend, "frontend-ip-name", "LoadBalancerFrontEnd", "frontend IP configuration name")
	fl.StringVar(&o.pool, "backend-pool-name", "", "backend address pool name (default: <name>bepool)")
	fl.StringVar(&o.vnet, "vnet-name", "", "virtual network of a private frontend's subnet")
	fl.StringVar(&o.subnet, "subnet", "", "subnet (name with --vnet-name, or id) of a private frontend")
	fl.StringVar(&o.privateIP, "private-ip-address", "", "static private address of a private frontend")
	fl.StringVar(&o.sku, "sku", "", "Basic or Standard")
	bind(root, create, &funcRunner{validate: func() error {
		if err := o.validate(true); err != nil {
			return err
		}
		if o.publicIP != "" && o.subnet != "" {
			return usageErrorf("--public-ip-address and --subnet are exclusive")
		}
		if o.subnet != "" && !strings.HasPrefix(o.subnet, "/") && o.vnet == "" {
			return usageErrorf("--subnet NAME needs --vnet-name")
		}
		var err error
		if o.sku != "" {
			o.sku, err = canonical("--sku", o.sku, "Basic", "Standard")
		}
		return err
	}, run: func(ctx context.Context) error {
		f, c, err := root.networkClients()
		if err != nil {
			return err
		}
		sub := c.cfg.Subscription
		loc := c.location(o.location)
		fe := &armnetwork.FrontendIPConfiguration{Name: &o.frontend, Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{}}
		switch {
		case o.subnet != "":
			id := o.subnet
			if !strings.HasPrefix(id, "/") {
				id = netID(sub, o.rg, "virtualNetworks", o.vnet) + "/subnets/" + o.subnet
			}
			fe.Properties.Subnet = &armnetwork.Subnet{ID: &id}
			if o.privateIP != "" {
				fe.Properties.PrivateIPAddress = &o.privateIP
				fe.Properties.PrivateIPAllocationMethod = ptrTo(armnetwork.IPAllocationMethodStatic)
			}
		default:
			pip := o.publicIP
			if pip == "" {
				pip = "PublicIP" + o.name
				ip := armnetwork.PublicIPAddress{Location: &loc}
				if o.sku == "Standard" {
					ip.SKU = &armnetwork.PublicIPAddressSKU{Name: ptrTo(armnetwork.PublicIPAddressSKUNameStandard)}
					ip.Properties = &armnetwork.PublicIPAddressPropertiesFormat{PublicIPAllocationMethod: ptrTo(armnetwork.IPAllocationMethodStatic)}
				}
				p, err := f.NewPublicIPAddressesClient().BeginCreateOrUpdate(ctx, o.rg, pip, ip, nil)
				if err != nil {
					return err
				}
				if _, _, err := await(ctx, root, p); err != nil {
					return err
				}
			}
			id := idOrName(sub, o.rg, "publicIPAddresses", pip)
			fe.Properties.PublicIPAddress = &armnetwork.PublicIPAddress{ID: &id}
		}
		pool := o.pool
		if pool == "" {
			pool = o.name + "bepool"
		}
		lb := armnetwork.LoadBalancer{Location: &loc, Properties: &armnetwork.LoadBalancerPropertiesFormat{
			FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{fe},
			BackendAddressPools:      []*armnetwork.BackendAddressPool{{Name: &pool}},
		}}
		if o.sku != "" {
			lb.SKU = &armnetwork.LoadBalancerSKU{Name: ptrTo(armnetwork.LoadBalancerSKUName(o.sku))}
		}
		p, err := f.NewLoadBalancersClient().BeginCreateOrUpdate(ctx, o.rg, o.name, lb, nil)
		if err != nil {
			return err
		}
		res, done, err := await(ctx, root, p)
		if err != nil || !done {
			return err
		}
		return lbKind.print(root, false, &res.LoadBalancer)
	}})
	cmd.AddCommand(append([]*cobra.Command{create}, lbKind.commands(root)...)...)
	cmd.AddCommand(newLBPartCommand(root, probePart), newLBPartCommand(root, rulePart), newLBPartCommand(root, natPoolPart))
	return cmd
}

func ptrTo[T any](v T) *T { return &v }

// lbPart is a kind of load balancer part the probe, rule and
// inbound-nat-pool commands edit in the load balancer.
type lbPart struct {
	use, noun, short string
	// addFlags adds the create flags; build makes the part from them.
	addFlags func(cmd *cobra.Command) func(lb *armnetwork.LoadBalancer, lbID, name string) (any, error)
	partList
	header []string
	row    func(part any) []string
}

type lbProps = armnetwork.LoadBalancerPropertiesFormat

// partList works on the load balancer's list of one kind of part.
type partList struct {
	names  func(lb *armnetwork.LoadBalancer) []string
	remove func(lb *armnetwork.LoadBalancer, i int)
	// put adds or replaces the part (built by build) at i (-1: append).
	put func(lb *armnetwork.LoadBalancer, i int, part any)
	get func(lb *armnetwork.LoadBalancer, i int) any
}

// lbParts is the partList of the parts in the slice list returns, named by name.
func lbParts[T any](list func(p *lbProps) *[]T, name func(T) *string) partList {
	return partList{
		names: func(lb *armnetwork.LoadBalancer) []string {
			var out []string
			for _, v := range *list(lb.Properties) {
				out = append(out, str(name(v)))
			}
			return out
		},
		remove: func(lb *armnetwork.LoadBalancer, i int) {
			l := list(lb.Properties)
			*l = append((*l)[:i], (*l)[i+1:]...)
		},
		put: func(lb *armnetwork.LoadBalancer, i int, part any) {
			l := list(lb.Properties)
			if i < 0 {
				*l = append(*l, part.(T))
				return
			}
			(*l)[i] = part.(T)
		},
		get: func(lb *armnetwork.LoadBalancer, i int) any { return (*list(lb.Properties))[i] },
	}
}

func findName(names []string, name string) int {
	for i, n := range names {
		if strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// lbEdit reads a load balancer, applies edit and writes it back with
// If-Match, so a concurrent change is not lost.
func lbEdit(ctx context.Context, root *rootOptions, rg, name string, edit func(lb *armnetwork.LoadBalancer) error) (*armnetwork.LoadBalancer, error) {
	f, _, err := root.networkClients()
	if err != nil {
		return nil, err
	}
	c := f.NewLoadBalancersClient()
	cur, err := c.Get(ctx, rg, name, nil)
	if err != nil {
		return nil, err
	}
	lb := cur.LoadBalancer
	if lb.Properties == nil {
		lb.Properties = &armnetwork.LoadBalancerPropertiesFormat{}
	}
	if err := edit(&lb); err != nil {
		return nil, err
	}
	wctx := ctx
	if lb.Etag != nil {
		wctx = runtime.WithHTTPHeader(ctx, http.Header{"If-Match": []string{*lb.Etag}})
	}
	p, err := c.BeginCreateOrUpdate(wctx, rg, name, lb, nil)
	if err != nil {
		return nil, err
	}
	res, done, err := await(ctx, root, p)
	if err != nil || !done {
		return nil, err
	}
	return &res.LoadBalancer, nil
}

func newLBPartCommand(root *rootOptions, k *lbPart) *cobra.Command {
	cmd := groupCommand(k.use, k.short)
	type partOpts struct {
		netName
		lb string
	}
	mk := func(use, short string, name bool) (*cobra.Command, *partOpts) {
		o := &partOpts{}
		c := &cobra.Command{Use: use, Short: short, Args: noArgs}
		o.addFlags(c, k.noun, name)
		c.Flags().StringVar(&o.lb, "lb-name", "", "load balancer name")
		_ = c.MarkFlagRequired("lb-name")
		return c, o
	}
	valid := func(o *partOpts, name bool) func() error {
		return func() error {
			if err := o.validate(name); err != nil {
				return err
			}
			if strings.TrimSpace(o.lb) == "" {
				return usageErrorf("--lb-name must not be empty")
			}
			return nil
		}
	}
	printParts := func(list bool, parts ...any) error {
		return printRows(root, k.header, k.row, list, parts...)
	}
	create, co := mk("create -g RG --lb-name LB -n NAME ...", "Create (or replace) a "+k.noun, true)
	build := k.addFlags(create)
	bind(root, create, &funcRunner{validate: valid(co, true), run: func(ctx context.Context) error {
		lb, err := lbEdit(ctx, root, co.rg, co.lb, func(lb *armnetwork.LoadBalancer) error {
			part, err := build(lb, str(lb.ID), co.name)
			if err != nil {
				return err
			}
			k.put(lb, findName(k.names(lb), co.name), part)
			return nil
		})
		if err != nil || lb == nil {
			return err
		}
		if i := findName(k.names(lb), co.name); i >= 0 {
			return printParts(false, k.get(lb, i))
		}
		return nil
	}})
	show, so := mk("show -g RG --lb-name LB -n NAME", "Show a "+k.noun, true)
	bind(root, show, &funcRunner{validate: valid(so, true), run: func(ctx context.Context) error {
		f, _, err := root.networkClients()
		if err != nil {
			return err
		}
		lb, err := lbKind.get(ctx, f, so.rg, so.lb)
		if err != nil {
			return err
		}
		i := findName(k.names(lb), so.name)
		if i < 0 {
			return &exitError{code: ExitNotFound, err: fmt.Errorf("%s %q not found in load balancer %q", k.noun, so.name, so.lb)}
		}
		return printParts(false, k.get(lb, i))
	}})
	list, lo := mk("list -g RG --lb-name LB", "List the "+k.noun+"s of a load balancer", false)
	bind(root, list, &funcRunner{validate: valid(lo, false), run: func(ctx context.Context) error {
		f, _, err := root.networkClients()
		if err != nil {
			return err
		}
		lb, err := lbKind.get(ctx, f, lo.rg, lo.lb)
		if err != nil {
			return err
		}
		parts := []any{}
		for i := range k.names(lb) {
			parts = append(parts, k.get(lb, i))
		}
		return printParts(true, parts...)
	}})
	del, do := mk("delete -g RG --lb-name LB -n NAME", "Delete a "+k.noun, true)
	bind(root, del, &funcRunner{validate: valid(do, true), run: func(ctx context.Context) error {
		_, err := lbEdit(ctx, root, do.rg, do.lb, func(lb *armnetwork.LoadBalancer) error {
			if i := findName(k.names(lb), do.name); i >= 0 {
				k.remove(lb, i)
			}
			return nil
		})
		return err
	}})
	cmd.AddCommand(create, show, list, del)
	return cmd
}

// partRef is the id of a part of the load balancer: the one named, else
// the only one there is (az's default for a frontend or pool).
func partRef(lbID, kind, name string, names []string, flag string) (*armnetwork.SubResource, error) {
	if name == "" {
		if len(names) != 1 {
			return nil, usageErrorf("%s is required: the load balancer has %d %s", flag, len(names), kind)
		}
		name = names[0]
	} else if findName(names, name) < 0 {
		return nil, usageErrorf("%s: the load balancer has no %s named %q", flag, kind, name)
	}
	id := lbID + "/" + kind + "/" + name
	return &armnetwork.SubResource{ID: &id}, nil
}

func frontendNames(lb *armnetwork.LoadBalancer) []string {
	var out []string
	for _, f := range lb.Properties.FrontendIPConfigurations {
		out = append(out, str(f.Name))
	}
	return out
}

func poolNames(lb *armnetwork.LoadBalancer) []string {
	var out []string
	for _, p := range lb.Properties.BackendAddressPools {
		out = append(out, str(p.Name))
	}
	return out
}

func childName(sr *armnetwork.SubResource) string {
	if sr == nil {
		return ""
	}
	id := str(sr.ID)
	return id[strings.LastIndex(id, "/")+1:]
}

func i32str(p *int32) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(int(*p))
}

func transportFlag(v string) (armnetwork.TransportProtocol, error) {
	p, err := canonical("--protocol", v, "Tcp", "Udp", "All")
	return armnetwork.TransportProtocol(p), err
}

var probePart = &lbPart{
	use: "probe", noun: "probe", short: "Manage load balancer health probes (az network lb probe)",
	addFlags: func(cmd *cobra.Command) func(*armnetwork.LoadBalancer, string, string) (any, error) {
		var protocol, path string
		var port, interval, threshold int32
		f := cmd.Flags()
		f.StringVar(&protocol, "protocol", "", "Tcp, Http or Https")
		f.Int32Var(&port, "port", 0, "port to probe")
		f.StringVar(&path, "path", "", "request path of an Http(s) probe")
		f.Int32Var(&interval, "interval", 15, "seconds between probes")
		f.Int32Var(&threshold, "threshold", 2, "consecutive failures that take a backend out (numberOfProbes)")
		_ = cmd.MarkFlagRequired("protocol")
		_ = cmd.MarkFlagRequired("port")
		return func(_ *armnetwork.LoadBalancer, _, name string) (any, error) {
			proto, err := canonical("--protocol", protocol, "Tcp", "Http", "Https")
			if err != nil {
				return nil, err
			}
			p := &armnetwork.Probe{Name: &name, Properties: &armnetwork.ProbePropertiesFormat{
				Protocol: ptrTo(armnetwork.ProbeProtocol(proto)), Port: &port, IntervalInSeconds: &interval, NumberOfProbes: &threshold,
			}}
			if path != "" {
				p.Properties.RequestPath = &path
			}
			return p, nil
		}
	},
	partList: lbParts(func(p *lbProps) *[]*armnetwork.Probe { return &p.Probes },
		func(v *armnetwork.Probe) *string { return v.Name }),
	header: []string{"Name", "Protocol", "Port", "RequestPath", "IntervalInSeconds", "NumberOfProbes"},
	row: func(part any) []string {
		p := part.(*armnetwork.Probe)
		if pp := p.Properties; pp != nil {
			return []string{str(p.Name), str(pp.Protocol), i32str(pp.Port), str(pp.RequestPath), i32str(pp.IntervalInSeconds), i32str(pp.NumberOfProbes)}
		}
		return []string{str(p.Name), "", "", "", "", ""}
	},
}

var rulePart = &lbPart{
	use: "rule", noun: "load balancing rule", short: "Manage load balancing rules (az network lb rule)",
	addFlags: func(cmd *cobra.Command) func(*armnetwork.LoadBalancer, string, string) (any, error) {
		var protocol, frontend, pool, probe, dist string
		var fport, bport, idle int32
		var floating bool
		f := cmd.Flags()
		f.StringVar(&protocol, "protocol", "", "Tcp, Udp or All")
		f.Int32Var(&fport, "frontend-port", 0, "frontend port")
		f.Int32Var(&bport, "backend-port", 0, "backend port")
		f.StringVar(&frontend, "frontend-ip-name", "", "frontend IP configuration (default: the only one)")
		f.StringVar(&pool, "backend-pool-name", "", "backend address pool (default: the only one)")
		f.StringVar(&probe, "probe-name", "", "health probe")
		f.Int32Var(&idle, "idle-timeout", 4, "idle timeout in minutes")
		f.StringVar(&dist, "load-distribution", "Default", "Default, SourceIP or SourceIPProtocol")
		f.BoolVar(&floating, "floating-ip", false, "enable floating IP")
		_ = cmd.MarkFlagRequired("protocol")
		_ = cmd.MarkFlagRequired("frontend-port")
		_ = cmd.MarkFlagRequired("backend-port")
		return func(lb *armnetwork.LoadBalancer, lbID, name string) (any, error) {
			proto, err := transportFlag(protocol)
			if err != nil {
				return nil, err
			}
			d, err := canonical("--load-distribution", dist, "Default", "SourceIP", "SourceIPProtocol")
			if err != nil {
				return nil, err
			}
			fe, err := partRef(lbID, "frontendIPConfigurations", frontend, frontendNames(lb), "--frontend-ip-name")
			if err != nil {
				return nil, err
			}
			bp, err := partRef(lbID, "backendAddressPools", pool, poolNames(lb), "--backend-pool-name")
			if err != nil {
				return nil, err
			}
			r := &armnetwork.LoadBalancingRule{Name: &name, Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
				Protocol: &proto, FrontendPort: &fport, BackendPort: &bport, FrontendIPConfiguration: fe, BackendAddressPool: bp,
				IdleTimeoutInMinutes: &idle, LoadDistribution: ptrTo(armnetwork.LoadDistribution(d)), EnableFloatingIP: &floating,
			}}
			if probe != "" {
				pr, err := partRef(lbID, "probes", probe, probePart.names(lb), "--probe-name")
				if err != nil {
					return nil, err
				}
				r.Properties.Probe = pr
			}
			return r, nil
		}
	},
	partList: lbParts(func(p *lbProps) *[]*armnetwork.LoadBalancingRule { return &p.LoadBalancingRules },
		func(v *armnetwork.LoadBalancingRule) *string { return v.Name }),
	header: []string{"Name", "Protocol", "FrontendPort", "BackendPort", "BackendPool", "Probe", "LoadDistribution"},
	row: func(part any) []string {
		r := part.(*armnetwork.LoadBalancingRule)
		if p := r.Properties; p != nil {
			return []string{str(r.Name), str(p.Protocol), i32str(p.FrontendPort), i32str(p.BackendPort), childName(p.BackendAddressPool), childName(p.Probe), str(p.LoadDistribution)}
		}
		return []string{str(r.Name), "", "", "", "", "", ""}
	},
}

var natPoolPart = &lbPart{
	use: "inbound-nat-pool", noun: "inbound NAT pool", short: "Manage inbound NAT pools (az network lb inbound-nat-pool)",
	addFlags: func(cmd *cobra.Command) func(*armnetwork.LoadBalancer, string, string) (any, error) {
		var protocol, frontend string
		var start, end, bport int32
		f := cmd.Flags()
		f.StringVar(&protocol, "protocol", "", "Tcp, Udp or All")
		f.Int32Var(&start, "frontend-port-range-start", 0, "first frontend port (instance k gets start+k)")
		f.Int32Var(&end, "frontend-port-range-end", 0, "last frontend port")
		f.Int32Var(&bport, "backend-port", 0, "backend port")
		f.StringVar(&frontend, "frontend-ip-name", "", "frontend IP configuration (default: the only one)")
		for _, n := range []string{"protocol", "frontend-port-range-start", "frontend-port-range-end", "backend-port"} {
			_ = cmd.MarkFlagRequired(n)
		}
		return func(lb *armnetwork.LoadBalancer, lbID, name string) (any, error) {
			proto, err := transportFlag(protocol)
			if err != nil {
				return nil, err
			}
			fe, err := partRef(lbID, "frontendIPConfigurations", frontend, frontendNames(lb), "--frontend-ip-name")
			if err != nil {
				return nil, err
			}
			return &armnetwork.InboundNatPool{Name: &name, Properties: &armnetwork.InboundNatPoolPropertiesFormat{
				Protocol: &proto, FrontendPortRangeStart: &start, FrontendPortRangeEnd: &end, BackendPort: &bport, FrontendIPConfiguration: fe,
			}}, nil
		}
	},
	partList: lbParts(func(p *lbProps) *[]*armnetwork.InboundNatPool { return &p.InboundNatPools },
		func(v *armnetwork.InboundNatPool) *string { return v.Name }),
	header: []string{"Name", "Protocol", "FrontendPortRangeStart", "FrontendPortRangeEnd", "BackendPort"},
	row: func(part any) []string {
		n := part.(*armnetwork.InboundNatPool)
		if p := n.Properties; p != nil {
			return []string{str(n.Name), str(p.Protocol), i32str(p.FrontendPortRangeStart), i32str(p.FrontendPortRangeEnd), i32str(p.BackendPort)}
		}
		return []string{str(n.Name), "", "", "", ""}
	},
}
