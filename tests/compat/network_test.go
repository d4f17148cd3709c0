package compat

import (
	"context"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"

	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

type netClients struct {
	vnets   *armnetwork.VirtualNetworksClient
	subnets *armnetwork.SubnetsClient
	pips    *armnetwork.PublicIPAddressesClient
	lbs     *armnetwork.LoadBalancersClient
	probes  *armnetwork.LoadBalancerProbesClient
	pools   *armnetwork.LoadBalancerBackendAddressPoolsClient
	nsgs    *armnetwork.SecurityGroupsClient
	rules   *armnetwork.SecurityRulesClient
	nics    *armnetwork.InterfacesClient
	rec     *apiRecorder
}

func newNetClients(t *testing.T, e *testenv.Env, cred azcore.TokenCredential, apiVersion string) *netClients {
	t.Helper()
	rec := &apiRecorder{provider: "/providers/microsoft.network/"}
	f, err := armnetwork.NewClientFactory(server.DefaultSubscriptionID, cred, pinnedOptions(e, apiVersion, rec))
	if err != nil {
		t.Fatalf("armnetwork client factory: %v", err)
	}
	return &netClients{
		vnets: f.NewVirtualNetworksClient(), subnets: f.NewSubnetsClient(), pips: f.NewPublicIPAddressesClient(),
		lbs: f.NewLoadBalancersClient(), probes: f.NewLoadBalancerProbesClient(), pools: f.NewLoadBalancerBackendAddressPoolsClient(),
		nsgs: f.NewSecurityGroupsClient(), rules: f.NewSecurityRulesClient(), nics: f.NewInterfacesClient(), rec: rec,
	}
}

// TestNetworkSDK drives virtual networks, subnets, public IPs, load
// balancers and NSGs with armnetwork v9 at its own api-version and pinned
// to 2018-11-01 and 2017-10-01 (the network versions of the Azure Stack
// 2020-09-01-hybrid and 2019-03-01-hybrid profiles), then a scale set
// whose networkProfile uses them, and the NIC views of its instance.
func TestNetworkSDK(t *testing.T) {
	for _, tc := range []struct{ name, pin, want string }{
		{name: "armnetwork-v9-default", pin: "", want: "2025-05-01"},
		{name: "hybrid-2020-09-01-profile", pin: "2018-11-01", want: "2018-11-01"},
		{name: "hybrid-2019-03-01-profile", pin: "2017-10-01", want: "2017-10-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := testenv.Start(t, testenv.Options{PageSize: 2})
			cred := staticCred(e.Token)
			nc := newNetClients(t, e, cred, tc.pin)
			cc := newClients(t, e, cred, "")
			runNetworkScenario(t, e, nc, cc)
			if got := nc.rec.seen(); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("Microsoft.Network api-versions sent: %v, want only %s", got, tc.want)
			}
		})
	}
}

func runNetworkScenario(t *testing.T, e *testenv.Env, nc *netClients, cc *clients) {
	const rg = "rg-net"
	sub := server.DefaultSubscriptionID
	base := "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Network"
	lbID := base + "/loadBalancers/lb"
	ctx := func() context.Context { return ctxT(t, 30*time.Second) }
	if _, err := cc.rgs.CreateOrUpdate(ctx(), rg, armresources.ResourceGroup{Location: to.Ptr("local")}, nil); err != nil {
		t.Fatalf("create rg: %v", err)
	}

	// NSG.
	nsg := poll(nc.nsgs.BeginCreateOrUpdate(ctx(), rg, "nsg", armnetwork.SecurityGroup{
		Location: to.Ptr("local"),
		Properties: &armnetwork.SecurityGroupPropertiesFormat{SecurityRules: []*armnetwork.SecurityRule{{
			Name: to.Ptr("ssh"),
			Properties: &armnetwork.SecurityRulePropertiesFormat{
				Direction: to.Ptr(armnetwork.SecurityRuleDirectionInbound), Access: to.Ptr(armnetwork.SecurityRuleAccessAllow),
				Protocol: to.Ptr(armnetwork.SecurityRuleProtocolTCP), Priority: to.Ptr(int32(100)),
				SourceAddressPrefix: to.Ptr("*"), SourcePortRange: to.Ptr("*"), DestinationAddressPrefix: to.Ptr("*"), DestinationPortRange: to.Ptr("22"),
			},
		}}},
	}, nil)).done(t, "nsg create")
	if val(nsg.ID) != base+"/networkSecurityGroups/nsg" || val(nsg.Properties.ProvisioningState) != armnetwork.ProvisioningStateSucceeded {
		t.Fatalf("nsg: %+v", nsg)
	}

	rules := nc.rules
	rule := poll(rules.BeginCreateOrUpdate(ctx(), rg, "nsg", "web", armnetwork.SecurityRule{Properties: &armnetwork.SecurityRulePropertiesFormat{
		Direction: to.Ptr(armnetwork.SecurityRuleDirectionInbound), Access: to.Ptr(armnetwork.SecurityRuleAccessAllow),
		Protocol: to.Ptr(armnetwork.SecurityRuleProtocolTCP), Priority: to.Ptr(int32(110)), DestinationPortRange: to.Ptr("80"),
	}}, nil)).done(t, "security rule create")
	if val(rule.ID) != base+"/networkSecurityGroups/nsg/securityRules/web" {
		t.Fatalf("security rule: %+v", rule)
	}
	_, err := rules.BeginCreateOrUpdate(ctx(), rg, "nsg", "clash", armnetwork.SecurityRule{Properties: &armnetwork.SecurityRulePropertiesFormat{
		Direction: to.Ptr(armnetwork.SecurityRuleDirectionInbound), Access: to.Ptr(armnetwork.SecurityRuleAccessDeny),
		Protocol: to.Ptr(armnetwork.SecurityRuleProtocolAsterisk), Priority: to.Ptr(int32(110)),
	}}, nil)
	responseError(t, "security rule with a taken priority", err, http.StatusBadRequest, "SecurityRuleConflict")
	poll(rules.BeginDelete(ctx(), rg, "nsg", "web", nil)).done(t, "security rule delete")
	if g, err := nc.nsgs.Get(ctx(), rg, "nsg", nil); err != nil || len(g.Properties.SecurityRules) != 1 {
		t.Fatalf("nsg after rule delete: %+v %v", g.Properties, err)
	}

	// Virtual network with a subnet in the NSG, then a second subnet as a
	// child resource.
	vn := poll(nc.vnets.BeginCreateOrUpdate(ctx(), rg, "vnet", armnetwork.VirtualNetwork{
		Location: to.Ptr("local"),
		Properties: &armnetwork.VirtualNetworkPropertiesFormat{
			AddressSpace: &armnetwork.AddressSpace{AddressPrefixes: to.SliceOfPtrs("10.0.0.0/16")},
			Subnets: []*armnetwork.Subnet{{Name: to.Ptr("default"), Properties: &armnetwork.SubnetPropertiesFormat{
				AddressPrefix: to.Ptr("10.0.0.0/24"), NetworkSecurityGroup: &armnetwork.SecurityGroup{ID: nsg.ID},
			}}},
		},
	}, nil)).done(t, "vnet create")
	subnetID := base + "/virtualNetworks/vnet/subnets/default"
	if len(vn.Properties.Subnets) != 1 || val(vn.Properties.Subnets[0].ID) != subnetID || vn.Etag == nil {
		t.Fatalf("vnet: %+v", vn.Properties)
	}
	sn := poll(nc.subnets.BeginCreateOrUpdate(ctx(), rg, "vnet", "second", armnetwork.Subnet{
		Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.1.0/24")},
	}, nil)).done(t, "subnet create")
	if val(sn.ID) != base+"/virtualNetworks/vnet/subnets/second" {
		t.Fatalf("subnet: %+v", sn)
	}
	_, err = nc.subnets.BeginCreateOrUpdate(ctx(), rg, "vnet", "overlap", armnetwork.Subnet{
		Properties: &armnetwork.SubnetPropertiesFormat{AddressPrefix: to.Ptr("10.0.1.128/25")},
	}, nil)
	responseError(t, "overlapping subnet", err, http.StatusBadRequest, "NetcfgSubnetRangesOverlap")
	var names []string
	for pg := nc.subnets.NewListPager(rg, "vnet", nil); pg.More(); {
		p, err := pg.NextPage(ctx())
		if err != nil {
			t.Fatalf("list subnets: %v", err)
		}
		for _, s := range p.Value {
			names = append(names, val(s.Name))
		}
	}
	if !slices.Equal(names, []string{"default", "second"}) {
		t.Fatalf("subnets: %v", names)
	}
	poll(nc.subnets.BeginDelete(ctx(), rg, "vnet", "second", nil)).done(t, "subnet delete")
	if _, err := nc.subnets.Get(ctx(), rg, "vnet", "second", nil); err == nil {
		t.Fatal("deleted subnet still there")
	}
	_, err = nc.nsgs.BeginDelete(ctx(), rg, "nsg", nil)
	responseError(t, "delete NSG in use", err, http.StatusBadRequest, "InUseNetworkSecurityGroupCannotBeDeleted")

	// Public IP from the loopback pool.
	pip := poll(nc.pips.BeginCreateOrUpdate(ctx(), rg, "pip", armnetwork.PublicIPAddress{
		Location: to.Ptr("local"),
		Properties: &armnetwork.PublicIPAddressPropertiesFormat{
			PublicIPAllocationMethod: to.Ptr(armnetwork.IPAllocationMethodStatic),
			DNSSettings:              &armnetwork.PublicIPAddressDNSSettings{DomainNameLabel: to.Ptr("web-demo")},
		},
	}, nil)).done(t, "public ip create")
	addr, err := netip.ParseAddr(val(pip.Properties.IPAddress))
	if err != nil || !addr.IsLoopback() {
		t.Fatalf("public ip address %q: %v", val(pip.Properties.IPAddress), err)
	}
	// An update keeps the address; If-Match with a stale etag fails.
	pip.Tags = map[string]*string{"env": to.Ptr("test")}
	pip2 := poll(nc.pips.BeginCreateOrUpdate(ctx(), rg, "pip", pip.PublicIPAddress, nil)).done(t, "public ip update")
	if val(pip2.Properties.IPAddress) != addr.String() || val(pip2.Tags["env"]) != "test" {
		t.Fatalf("updated public ip: %+v", pip2.Properties)
	}
	other := poll(nc.pips.BeginCreateOrUpdate(ctx(), rg, "pip2", armnetwork.PublicIPAddress{Location: to.Ptr("local")}, nil)).done(t, "second public ip")
	if val(other.Properties.IPAddress) == addr.String() || val(other.Properties.IPAddress) == "" {
		t.Fatalf("second public ip got %q", val(other.Properties.IPAddress))
	}

	// Load balancer: frontend on the public IP, pool, probe, rule, NAT pool.
	sr := func(kind, name string) *armnetwork.SubResource {
		return &armnetwork.SubResource{ID: to.Ptr(lbID + "/" + kind + "/" + name)}
	}
	lbModel := armnetwork.LoadBalancer{
		Location: to.Ptr("local"),
		Properties: &armnetwork.LoadBalancerPropertiesFormat{
			FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{Name: to.Ptr("fe"), Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{PublicIPAddress: &armnetwork.PublicIPAddress{ID: pip.ID}}}},
			BackendAddressPools:      []*armnetwork.BackendAddressPool{{Name: to.Ptr("pool")}},
			Probes: []*armnetwork.Probe{{Name: to.Ptr("http"), Properties: &armnetwork.ProbePropertiesFormat{
				Protocol: to.Ptr(armnetwork.ProbeProtocolHTTP), Port: to.Ptr(int32(80)), RequestPath: to.Ptr("/health"), IntervalInSeconds: to.Ptr(int32(5)), NumberOfProbes: to.Ptr(int32(2)),
			}}},
			LoadBalancingRules: []*armnetwork.LoadBalancingRule{{Name: to.Ptr("web"), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
				Protocol: to.Ptr(armnetwork.TransportProtocolTCP), FrontendPort: to.Ptr(int32(80)), BackendPort: to.Ptr(int32(80)),
				FrontendIPConfiguration: sr("frontendIPConfigurations", "fe"), BackendAddressPool: sr("backendAddressPools", "pool"), Probe: sr("probes", "http"),
			}}},
			InboundNatPools: []*armnetwork.InboundNatPool{{Name: to.Ptr("ssh"), Properties: &armnetwork.InboundNatPoolPropertiesFormat{
				Protocol: to.Ptr(armnetwork.TransportProtocolTCP), FrontendPortRangeStart: to.Ptr(int32(50000)), FrontendPortRangeEnd: to.Ptr(int32(50119)), BackendPort: to.Ptr(int32(22)),
				FrontendIPConfiguration: sr("frontendIPConfigurations", "fe"),
			}}},
		},
	}
	lb := poll(nc.lbs.BeginCreateOrUpdate(ctx(), rg, "lb", lbModel, nil)).done(t, "lb create")
	if val(lb.ID) != lbID || len(lb.Properties.Probes) != 1 || len(lb.Properties.Probes[0].Properties.LoadBalancingRules) != 1 ||
		len(lb.Properties.FrontendIPConfigurations[0].Properties.InboundNatPools) != 1 {
		t.Fatalf("lb: %+v", lb.Properties)
	}
	if p, err := nc.probes.Get(ctx(), rg, "lb", "http", nil); err != nil || val(p.Properties.RequestPath) != "/health" {
		t.Fatalf("get probe: %+v %v", p, err)
	}
	if got, err := nc.pips.Get(ctx(), rg, "pip", nil); err != nil || got.Properties.IPConfiguration == nil || val(got.Properties.IPConfiguration.ID) != lbID+"/frontendIPConfigurations/fe" {
		t.Fatalf("public ip's ip configuration: %+v %v", got.Properties, err)
	}
	// A rule naming a probe that does not exist.
	bad := lbModel
	bad.Properties = &armnetwork.LoadBalancerPropertiesFormat{}
	*bad.Properties = *lbModel.Properties
	bad.Properties.LoadBalancingRules = []*armnetwork.LoadBalancingRule{{Name: to.Ptr("web"), Properties: &armnetwork.LoadBalancingRulePropertiesFormat{
		Protocol: to.Ptr(armnetwork.TransportProtocolTCP), FrontendPort: to.Ptr(int32(80)), FrontendIPConfiguration: sr("frontendIPConfigurations", "fe"), Probe: sr("probes", "nope"),
	}}}
	_, err = nc.lbs.BeginCreateOrUpdate(ctx(), rg, "lb", bad, nil)
	responseError(t, "rule with unknown probe", err, http.StatusBadRequest, "InvalidResourceReference")
	// Another load balancer cannot take the same public IP.
	_, err = nc.lbs.BeginCreateOrUpdate(ctx(), rg, "lb2", armnetwork.LoadBalancer{Location: to.Ptr("local"), Properties: &armnetwork.LoadBalancerPropertiesFormat{
		FrontendIPConfigurations: []*armnetwork.FrontendIPConfiguration{{Name: to.Ptr("fe"), Properties: &armnetwork.FrontendIPConfigurationPropertiesFormat{PublicIPAddress: &armnetwork.PublicIPAddress{ID: pip.ID}}}},
	}}, nil)
	responseError(t, "public ip of another lb", err, http.StatusBadRequest, "PublicIPAddressInUse")
	_, err = nc.pips.BeginDelete(ctx(), rg, "pip", nil)
	responseError(t, "delete public ip in use", err, http.StatusBadRequest, "PublicIPAddressInUse")

	// A scale set whose NIC is in the subnet, the pool and the NAT pool.
	set := scaleSet(1, "latest")
	set.Properties.VirtualMachineProfile.NetworkProfile = &armcompute.VirtualMachineScaleSetNetworkProfile{
		HealthProbe: &armcompute.APIEntityReference{ID: to.Ptr(lbID + "/probes/http")},
		NetworkInterfaceConfigurations: []*armcompute.VirtualMachineScaleSetNetworkConfiguration{{
			Name: to.Ptr("nic"),
			Properties: &armcompute.VirtualMachineScaleSetNetworkConfigurationProperties{
				Primary: to.Ptr(true),
				IPConfigurations: []*armcompute.VirtualMachineScaleSetIPConfiguration{{
					Name: to.Ptr("ipc"),
					Properties: &armcompute.VirtualMachineScaleSetIPConfigurationProperties{
						Subnet:                          &armcompute.APIEntityReference{ID: to.Ptr(subnetID)},
						LoadBalancerBackendAddressPools: []*armcompute.SubResource{{ID: to.Ptr(lbID + "/backendAddressPools/pool")}},
						LoadBalancerInboundNatPools:     []*armcompute.SubResource{{ID: to.Ptr(lbID + "/inboundNatPools/ssh")}},
					},
				}},
			},
		}},
	}
	badSet := scaleSet(0, "latest")
	badSet.Properties.VirtualMachineProfile.NetworkProfile = &armcompute.VirtualMachineScaleSetNetworkProfile{
		NetworkInterfaceConfigurations: []*armcompute.VirtualMachineScaleSetNetworkConfiguration{{
			Name: to.Ptr("nic"),
			Properties: &armcompute.VirtualMachineScaleSetNetworkConfigurationProperties{Primary: to.Ptr(true), IPConfigurations: []*armcompute.VirtualMachineScaleSetIPConfiguration{{
				Name: to.Ptr("ipc"), Properties: &armcompute.VirtualMachineScaleSetIPConfigurationProperties{Subnet: &armcompute.APIEntityReference{ID: to.Ptr(base + "/virtualNetworks/vnet/subnets/nope")}},
			}}},
		}},
	}
	_, err = cc.sets.BeginCreateOrUpdate(ctx(), rg, "bad", badSet, nil)
	responseError(t, "scale set with unknown subnet", err, http.StatusBadRequest, "InvalidResourceReference")
	poll(cc.sets.BeginCreateOrUpdate(ctxT(t, opTimeout), rg, "web", set, nil)).done(t, "vmss create")
	ids := waitVMs(t, cc, rg, "web", 1)

	// In use: the subnet, the load balancer.
	_, err = nc.subnets.BeginDelete(ctx(), rg, "vnet", "default", nil)
	responseError(t, "delete subnet in use", err, http.StatusBadRequest, "InUseSubnetCannotBeDeleted")
	_, err = nc.vnets.BeginDelete(ctx(), rg, "vnet", nil)
	responseError(t, "delete vnet in use", err, http.StatusBadRequest, "InUseSubnetCannotBeDeleted")
	_, err = nc.lbs.BeginDelete(ctx(), rg, "lb", nil)
	responseError(t, "delete lb in use", err, http.StatusBadRequest, "LoadBalancerInUseByVirtualMachineScaleSet")
	noPool := lbModel
	noPool.Properties = &armnetwork.LoadBalancerPropertiesFormat{}
	*noPool.Properties = *lbModel.Properties
	noPool.Properties.LoadBalancingRules, noPool.Properties.BackendAddressPools = nil, nil
	_, err = nc.lbs.BeginCreateOrUpdate(ctx(), rg, "lb", noPool, nil)
	responseError(t, "remove a pool in use", err, http.StatusBadRequest, "LoadBalancerInUseByVirtualMachineScaleSet")

	// NIC views: the instance's NIC in the subnet and the pool.
	var nics []*armnetwork.Interface
	for pg := nc.nics.NewListVirtualMachineScaleSetNetworkInterfacesPager(rg, "web", nil); pg.More(); {
		p, err := pg.NextPage(ctx())
		if err != nil {
			t.Fatalf("list scale set NICs: %v", err)
		}
		nics = append(nics, p.Value...)
	}
	wantNIC := "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Compute/virtualMachineScaleSets/web/virtualMachines/" + ids[0] + "/networkInterfaces/nic"
	if len(nics) != 1 || val(nics[0].ID) != wantNIC || len(nics[0].Properties.IPConfigurations) != 1 ||
		val(nics[0].Properties.IPConfigurations[0].Properties.Subnet.ID) != subnetID {
		t.Fatalf("scale set NICs: %+v", nics)
	}
	nic, err := nc.nics.GetVirtualMachineScaleSetNetworkInterface(ctx(), rg, "web", ids[0], "nic", nil)
	if err != nil || len(nic.Properties.IPConfigurations[0].Properties.LoadBalancerBackendAddressPools) != 1 {
		t.Fatalf("instance NIC: %+v %v", nic, err)
	}
	var pips []*armnetwork.PublicIPAddress
	for pg := nc.pips.NewListVirtualMachineScaleSetPublicIPAddressesPager(rg, "web", nil); pg.More(); {
		p, err := pg.NextPage(ctx())
		if err != nil {
			t.Fatalf("list scale set public IPs: %v", err)
		}
		pips = append(pips, p.Value...)
	}
	if len(pips) != 0 {
		t.Fatalf("scale set public IPs: %+v", pips)
	}
	pool, err := nc.pools.Get(ctx(), rg, "lb", "pool", nil)
	if err != nil || len(pool.Properties.BackendIPConfigurations) != 1 || !strings.HasPrefix(val(pool.Properties.BackendIPConfigurations[0].ID), wantNIC+"/ipConfigurations/ipc") {
		t.Fatalf("pool backends: %+v %v", pool.Properties, err)
	}

	// The NAT pool shows one inbound NAT rule per instance, and writing
	// back what GET showed (as az network lb probe create does) keeps it
	// generated rather than the client's.
	got, err := nc.lbs.Get(ctx(), rg, "lb", nil)
	if err != nil {
		t.Fatalf("get lb: %v", err)
	}
	id0, _ := strconv.Atoi(ids[0])
	if rules := got.Properties.InboundNatRules; len(rules) != 1 || val(rules[0].Name) != "ssh."+ids[0] ||
		val(rules[0].Properties.FrontendPort) != int32(50000+id0) || val(rules[0].Properties.BackendPort) != 22 ||
		!strings.HasPrefix(val(rules[0].Properties.BackendIPConfiguration.ID), wantNIC+"/ipConfigurations/ipc") {
		t.Fatalf("generated NAT rules: %+v", got.Properties.InboundNatRules)
	}
	got.Properties.Probes = append(got.Properties.Probes, &armnetwork.Probe{Name: to.Ptr("tcp"), Properties: &armnetwork.ProbePropertiesFormat{Protocol: to.Ptr(armnetwork.ProbeProtocolTCP), Port: to.Ptr(int32(22))}})
	upd := poll(nc.lbs.BeginCreateOrUpdate(ctx(), rg, "lb", got.LoadBalancer, nil)).done(t, "lb write-back")
	if len(upd.Properties.Probes) != 2 || len(upd.Properties.InboundNatRules) != 1 {
		t.Fatalf("lb after write-back: %d probes, %d NAT rules", len(upd.Properties.Probes), len(upd.Properties.InboundNatRules))
	}

	// After the scale set, everything can go.
	poll(cc.sets.BeginDelete(ctxT(t, opTimeout), rg, "web", nil)).done(t, "vmss delete")
	testenv.Eventually(t, stateTimeout, "scale set gone", func() bool {
		_, err := cc.sets.Get(ctx(), rg, "web", nil)
		return err != nil
	})
	poll(nc.lbs.BeginDelete(ctx(), rg, "lb", nil)).done(t, "lb delete")
	poll(nc.pips.BeginDelete(ctx(), rg, "pip", nil)).done(t, "pip delete")
	poll(nc.vnets.BeginDelete(ctx(), rg, "vnet", nil)).done(t, "vnet delete")
	poll(nc.nsgs.BeginDelete(ctx(), rg, "nsg", nil)).done(t, "nsg delete")
	var left []string
	for pg := nc.pips.NewListPager(rg, nil); pg.More(); {
		p, err := pg.NextPage(ctx())
		if err != nil {
			t.Fatalf("list public IPs: %v", err)
		}
		for _, v := range p.Value {
			left = append(left, val(v.Name))
		}
	}
	if !slices.Equal(left, []string{"pip2"}) {
		t.Fatalf("public IPs left: %v", left)
	}
	if _, err := nc.vnets.Get(ctx(), rg, "vnet", nil); err == nil {
		t.Fatal("deleted vnet still there")
	} else {
		responseError(t, "get deleted vnet", err, http.StatusNotFound, "ResourceNotFound")
	}
}

// polled is a Begin* call's result.
type polled[T any] struct {
	p   *runtime.Poller[T]
	err error
}

func poll[T any](p *runtime.Poller[T], err error) polled[T] { return polled[T]{p, err} }

func (b polled[T]) done(t *testing.T, what string) T {
	t.Helper()
	return done(t, what, b.p, b.err)
}

// TestNetworkProviders: the providers API lists Microsoft.Network's
// resource types with the api-versions served (newest armnetwork's first,
// the hybrid profiles' among them).
func TestNetworkProviders(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	opts := &arm.ClientOptions{ClientOptions: coreOptions(e), DisableRPRegistration: true}
	pc, err := armresources.NewProvidersClient(server.DefaultSubscriptionID, staticCred(e.Token), opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pc.Get(ctxT(t, 30*time.Second), "Microsoft.Network", nil)
	if err != nil {
		t.Fatalf("get Microsoft.Network: %v", err)
	}
	types := map[string][]string{}
	for _, rt := range got.ResourceTypes {
		types[val(rt.ResourceType)] = values(rt.APIVersions)
	}
	for _, want := range []string{"virtualNetworks", "virtualNetworks/subnets", "publicIPAddresses", "loadBalancers", "loadBalancers/probes", "networkSecurityGroups"} {
		vs, ok := types[want]
		if !ok {
			t.Errorf("Microsoft.Network has no type %s (has %v)", want, slices.Collect(maps.Keys(types)))
			continue
		}
		if vs[0] != "2025-05-01" || !slices.Contains(vs, "2018-11-01") || !slices.Contains(vs, "2017-10-01") {
			t.Errorf("%s api-versions: %v", want, vs)
		}
	}
}
