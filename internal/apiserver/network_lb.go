package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

const typeLB = "Microsoft.Network/loadBalancers"

func (s *Server) lbKind() *netKind {
	return &netKind{
		typ:   model.NetLoadBalancers,
		model: reflect.TypeFor[armnetwork.LoadBalancer](),
		prepare: func(ctx context.Context, rc *reqCtx, ref model.NetRef, cur *model.NetResource, body []byte) (*netWrite, error) {
			lb, old, err := decodeNetPut(s, body, cur, model.NetLoadBalancers, func(v *armnetwork.LoadBalancer) *string { return v.Location })
			if err != nil {
				return nil, err
			}
			clearLB(lb)
			dropGeneratedNATRules(lb)
			if err := network.ValidateLB(ref, lb); err != nil {
				return nil, err
			}
			return s.prepareLB(ctx, rc, ref, old, lb)
		},
		render: func(ctx context.Context, rec *model.NetResource, rev int64) (any, error) {
			return s.renderLB(ctx, rec, rev)
		},
		deleteCheck: func(ctx context.Context, rec *model.NetResource) (*netWrite, error) {
			users, err := s.loadNetUsers(ctx)
			if err != nil {
				return nil, err
			}
			for _, set := range users.sets {
				if network.RefersTo(set.Model, rec.Ref().Key()) {
					return nil, errs.New(errs.Invalid, "LoadBalancerInUseByVirtualMachineScaleSet", "Cannot delete load balancer %s since its child resources are in use by virtual machine scale set %s.", rec.Ref().ID(), arm.ScaleSetID(set.Sub, set.RG, set.Name))
				}
			}
			lb := &armnetwork.LoadBalancer{}
			if err := json.Unmarshal(rec.Model, lb); err != nil {
				return nil, err
			}
			return &netWrite{ops: frontendReleaseOps(rec.Ref(), lb, nil)}, nil
		},
	}
}

func clearLB(lb *armnetwork.LoadBalancer) {
	lb.ID, lb.Name, lb.Type, lb.Etag = nil, nil, nil, nil
	p := lb.Properties
	if p == nil {
		return
	}
	p.ProvisioningState, p.ResourceGUID = nil, nil
	for _, f := range p.FrontendIPConfigurations {
		if f == nil {
			continue
		}
		f.ID, f.Etag, f.Type = nil, nil, nil
		if fp := f.Properties; fp != nil {
			fp.ProvisioningState, fp.LoadBalancingRules, fp.InboundNatPools, fp.InboundNatRules, fp.OutboundRules = nil, nil, nil, nil, nil
			if fp.PublicIPAddress != nil {
				fp.PublicIPAddress = &armnetwork.PublicIPAddress{ID: fp.PublicIPAddress.ID}
			}
			if fp.Subnet != nil {
				fp.Subnet = &armnetwork.Subnet{ID: fp.Subnet.ID}
			}
		}
	}
	for _, b := range p.BackendAddressPools {
		if b == nil {
			continue
		}
		b.ID, b.Etag, b.Type = nil, nil, nil
		if bp := b.Properties; bp != nil {
			bp.ProvisioningState, bp.BackendIPConfigurations, bp.LoadBalancingRules, bp.OutboundRule, bp.OutboundRules, bp.InboundNatRules = nil, nil, nil, nil, nil, nil
		}
	}
	for _, pr := range p.Probes {
		if pr == nil {
			continue
		}
		pr.ID, pr.Etag, pr.Type = nil, nil, nil
		if pp := pr.Properties; pp != nil {
			pp.ProvisioningState, pp.LoadBalancingRules = nil, nil
		}
	}
	for _, r := range p.LoadBalancingRules {
		if r == nil {
			continue
		}
		r.ID, r.Etag, r.Type = nil, nil, nil
		if r.Properties != nil {
			r.Properties.ProvisioningState = nil
		}
	}
	for _, n := range p.InboundNatPools {
		if n == nil {
			continue
		}
		n.ID, n.Etag, n.Type = nil, nil, nil
		if n.Properties != nil {
			n.Properties.ProvisioningState = nil
		}
	}
	for _, n := range p.InboundNatRules {
		if n == nil {
			continue
		}
		n.ID, n.Etag, n.Type = nil, nil, nil
		if n.Properties != nil {
			n.Properties.ProvisioningState, n.Properties.BackendIPConfiguration = nil, nil
		}
	}
}

// frontendOwner is the owner recorded for a private frontend's address.
func frontendOwner(lb model.NetRef, fe string) string { return lb.Key() + "#" + strings.ToLower(fe) }

// frontendReleaseOps frees the private addresses of old's frontends that
// keep is not keeping (all when keep is nil).
func frontendReleaseOps(ref model.NetRef, old *armnetwork.LoadBalancer, keep map[string]bool) []store.Op {
	var ops []store.Op
	if old == nil || old.Properties == nil {
		return nil
	}
	for _, f := range old.Properties.FrontendIPConfigurations {
		if f == nil || f.Properties == nil || f.Properties.Subnet == nil || strVal(f.Properties.PrivateIPAddress) == "" {
			continue
		}
		p, ok := network.ParseRef(strVal(f.Properties.Subnet.ID), network.RefSubnet)
		if !ok {
			continue
		}
		key := model.SubnetAddrKey(p.Resource(), p.Child(), strVal(f.Properties.PrivateIPAddress))
		if !keep[key] {
			ops = append(ops, store.Delete(key))
		}
	}
	return ops
}

// prepareLB resolves a load balancer's links (public IPs not used by
// another load balancer, subnets) and gives private frontends their
// address; parts scale sets use must stay.
func (s *Server) prepareLB(ctx context.Context, rc *reqCtx, ref model.NetRef, old, lb *armnetwork.LoadBalancer) (*netWrite, error) {
	nw := &netWrite{model: lb, location: strVal(lb.Location), tags: lb.Tags}
	scope := ref.ID()
	const action = "Microsoft.Network/loadBalancers/write"
	keep := map[string]bool{}
	if lb.Properties != nil {
		for i, f := range lb.Properties.FrontendIPConfigurations {
			fid := network.ChildID(ref, network.RefFrontend, strVal(f.Name))
			target := "properties.frontendIPConfigurations[" + strconv.Itoa(i) + "].properties"
			if f.Properties.PublicIPAddress != nil {
				r := network.Reference{ID: strVal(f.Properties.PublicIPAddress.ID), Kind: network.RefPublicIP, Target: target + ".publicIPAddress.id"}
				pip, pipRev, err := s.linked(ctx, rc.caller, r, action, scope, fid)
				if err != nil {
					return nil, err
				}
				user, err := s.publicIPUser(ctx, pip.Ref())
				if err != nil {
					return nil, err
				}
				if user != "" && !strings.HasPrefix(strings.ToLower(user), strings.ToLower(ref.ID()+"/")) {
					return nil, errs.New(errs.Invalid, "PublicIPAddressInUse", "Resource %s is referencing public IP address %s that is already allocated to resource %s.", fid, pip.Ref().ID(), user).WithTarget(r.Target)
				}
				// The public IP must not go away under the write.
				nw.conds = append(nw.conds, store.ModRevisionIs(pip.Ref().Key(), pipRev))
				if g := network.GuardKey(pip.Ref()); !keep[g] {
					keep[g] = true
					nw.ops = append(nw.ops, s.touchGuard(pip.Ref()))
				}
				continue
			}
			r := network.Reference{ID: strVal(f.Properties.Subnet.ID), Kind: network.RefSubnet, Target: target + ".subnet.id"}
			vrec, vrev, err := s.linked(ctx, rc.caller, r, action, scope, fid)
			if err != nil {
				return nil, err
			}
			vn, err := decodeVNet(vrec)
			if err != nil {
				return nil, err
			}
			p, _ := network.ParseRef(r.ID, network.RefSubnet)
			sn := network.FindSubnet(vn, p.Child())
			if sn == nil {
				return nil, network.InvalidRef(r.ID, fid, r.Target)
			}
			vref := vrec.Ref()
			nw.conds = append(nw.conds, store.ModRevisionIs(vref.Key(), vrev))
			if g := network.GuardKey(vref); !keep[g] {
				keep[g] = true
				nw.ops = append(nw.ops, s.touchGuard(vref))
			}
			addr, err := s.frontendAddress(ctx, ref, vref, strVal(sn.Name), f, old, fid, target)
			if err != nil {
				return nil, err
			}
			f.Properties.Subnet.ID = ptr(network.SubnetID(vref, strVal(sn.Name)))
			f.Properties.PrivateIPAddress = ptr(addr.String())
			if f.Properties.PrivateIPAllocationMethod == nil {
				f.Properties.PrivateIPAllocationMethod = ptr(armnetwork.IPAllocationMethodDynamic)
			}
			key := model.SubnetAddrKey(vref, strVal(sn.Name), addr.String())
			if !keep[key] {
				keep[key] = true
				if !heldBy(old, vref, strVal(sn.Name), addr) {
					nw.conds = append(nw.conds, store.ModRevisionIs(key, 0))
					nw.ops = append(nw.ops, state.PutOp(key, &model.IPAllocation{Address: addr.String(), Owner: frontendOwner(ref, strVal(f.Name)), Subnet: network.SubnetID(vref, strVal(sn.Name)), Created: s.opts.Now()}))
				}
			}
		}
	}
	nw.ops = append(nw.ops, frontendReleaseOps(ref, old, keep)...)
	if old == nil {
		return nw, nil
	}
	// Parts that scale sets use must stay; a scale set that starts to use
	// one meanwhile bumps the guard.
	guard := network.GuardKey(ref)
	guardRev, err := s.keyRev(ctx, guard)
	if err != nil {
		return nil, err
	}
	nw.conds = append(nw.conds, store.ModRevisionIs(guard, guardRev))
	users, err := s.loadNetUsers(ctx)
	if err != nil {
		return nil, err
	}
	has := func(kind, name string) bool {
		for _, id := range lbPartNames(lb, kind) {
			if strings.EqualFold(id, name) {
				return true
			}
		}
		return false
	}
	for _, set := range users.sets {
		for _, r := range network.ScaleSetRefs(set.Model) {
			p, ok := network.ParseRef(r.ID, r.Kind)
			if !ok || p.Resource().Key() != ref.Key() || has(r.Kind, p.Child()) {
				continue
			}
			return nil, errs.New(errs.Invalid, "LoadBalancerInUseByVirtualMachineScaleSet", "Cannot remove %s of load balancer %s since it is in use by virtual machine scale set %s.", r.ID, ref.ID(), arm.ScaleSetID(set.Sub, set.RG, set.Name))
		}
	}
	return nw, nil
}

func lbPartNames(lb *armnetwork.LoadBalancer, kind string) []string {
	var out []string
	if lb.Properties == nil {
		return nil
	}
	switch kind {
	case network.RefBackendPool:
		for _, b := range lb.Properties.BackendAddressPools {
			out = append(out, strVal(b.Name))
		}
	case network.RefNATPool:
		for _, b := range lb.Properties.InboundNatPools {
			out = append(out, strVal(b.Name))
		}
	case network.RefProbe:
		for _, b := range lb.Properties.Probes {
			out = append(out, strVal(b.Name))
		}
	}
	return out
}

// heldBy reports whether old's frontends already hold addr in the subnet.
func heldBy(old *armnetwork.LoadBalancer, vnet model.NetRef, subnet string, addr netip.Addr) bool {
	if old == nil || old.Properties == nil {
		return false
	}
	for _, f := range old.Properties.FrontendIPConfigurations {
		if f == nil || f.Properties == nil || f.Properties.Subnet == nil {
			continue
		}
		p, ok := network.ParseRef(strVal(f.Properties.Subnet.ID), network.RefSubnet)
		if ok && p.Resource().Key() == vnet.Key() && strings.EqualFold(p.Child(), subnet) && strVal(f.Properties.PrivateIPAddress) == addr.String() {
			return true
		}
	}
	return false
}

// frontendAddress is a private frontend's address: the one asked for
// (Static), the one it holds, or the subnet's lowest free address.
func (s *Server) frontendAddress(ctx context.Context, lbRef, vnet model.NetRef, subnet string, f *armnetwork.FrontendIPConfiguration, old *armnetwork.LoadBalancer, fid, target string) (netip.Addr, error) {
	_, vn, _, err := network.LoadVNet(ctx, s.opts.Store, vnet)
	if err != nil {
		return netip.Addr{}, err
	}
	ranges := network.SubnetRanges(network.FindSubnet(vn, subnet))
	kvs, _, err := s.opts.Store.List(ctx, model.SubnetAddrPrefix(vnet, subnet))
	if err != nil {
		return netip.Addr{}, err
	}
	owners := map[netip.Addr]string{}
	for _, kv := range kvs {
		a := &model.IPAllocation{}
		if err := json.Unmarshal(kv.Value, a); err == nil {
			if addr, err := netip.ParseAddr(a.Address); err == nil {
				owners[addr] = a.Owner
			}
		}
	}
	mine := func(a netip.Addr) bool { o, ok := owners[a]; return !ok || strings.HasPrefix(o, lbRef.Key()+"#") }
	if want := strVal(f.Properties.PrivateIPAddress); want != "" {
		a, err := netip.ParseAddr(want)
		in := false
		for _, r := range ranges {
			in = in || err == nil && r.Contains(a)
		}
		if !in {
			return netip.Addr{}, errs.New(errs.Invalid, "PrivateIPAddressNotInSubnet", "Private static IP address %s does not belong to the range of subnet prefix %s.", want, strings.Join(network.SubnetPrefixes(network.FindSubnet(vn, subnet)), ", ")).WithTarget(target + ".privateIPAddress")
		}
		if !mine(a) {
			return netip.Addr{}, errs.New(errs.Invalid, "PrivateIPAddressInUse", "IP configuration %s is using the private IP address %s which is already allocated to resource %s.", fid, want, owners[a]).WithTarget(target + ".privateIPAddress")
		}
		return a, nil
	}
	if old != nil && old.Properties != nil {
		for _, of := range old.Properties.FrontendIPConfigurations {
			if of != nil && strings.EqualFold(strVal(of.Name), strVal(f.Name)) && of.Properties != nil && of.Properties.Subnet != nil {
				if a, err := netip.ParseAddr(strVal(of.Properties.PrivateIPAddress)); err == nil && heldBy(old, vnet, subnet, a) {
					return a, nil
				}
			}
		}
	}
	a, ok := network.Allocate(ranges, func(a netip.Addr) bool { _, used := owners[a]; return used })
	if !ok {
		return netip.Addr{}, errs.New(errs.Conflict, "SubnetIsFull", "Subnet %s has no free address for %s.", network.SubnetID(vnet, subnet), fid)
	}
	return a, nil
}

func (s *Server) renderLB(ctx context.Context, rec *model.NetResource, rev int64) (*armnetwork.LoadBalancer, error) {
	lb := &armnetwork.LoadBalancer{}
	if err := json.Unmarshal(rec.Model, lb); err != nil {
		return nil, err
	}
	ref := rec.Ref()
	lb.ID, lb.Name, lb.Type, lb.Etag = ptr(ref.ID()), ptr(rec.Name), ptr(typeLB), ptr(etag(rev))
	if lb.SKU == nil {
		lb.SKU = &armnetwork.LoadBalancerSKU{Name: ptr(armnetwork.LoadBalancerSKUNameBasic), Tier: ptr(armnetwork.LoadBalancerSKUTierRegional)}
	}
	if lb.Properties == nil {
		lb.Properties = &armnetwork.LoadBalancerPropertiesFormat{}
	}
	p := lb.Properties
	p.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
	p.ResourceGUID = ptr(rec.ResourceGUID)
	ok := ptr(armnetwork.ProvisioningStateSucceeded)
	tag := ptr(etag(rev))
	sub := func(kind, name string) *armnetwork.SubResource {
		return &armnetwork.SubResource{ID: ptr(network.ChildID(ref, kind, name))}
	}
	fes := map[string]*armnetwork.FrontendIPConfiguration{}
	for _, f := range p.FrontendIPConfigurations {
		f.ID, f.Etag, f.Type = ptr(network.ChildID(ref, network.RefFrontend, strVal(f.Name))), tag, ptr(typeLB+"/frontendIPConfigurations")
		f.Properties.ProvisioningState = ok
		if f.Properties.Subnet == nil && f.Properties.PrivateIPAllocationMethod == nil {
			f.Properties.PrivateIPAllocationMethod = ptr(armnetwork.IPAllocationMethodDynamic)
		}
		fes[strings.ToLower(strVal(f.Name))] = f
	}
	pools := map[string]*armnetwork.BackendAddressPool{}
	for _, b := range p.BackendAddressPools {
		b.ID, b.Etag, b.Type = ptr(network.ChildID(ref, network.RefBackendPool, strVal(b.Name))), tag, ptr(typeLB+"/backendAddressPools")
		if b.Properties == nil {
			b.Properties = &armnetwork.BackendAddressPoolPropertiesFormat{}
		}
		b.Properties.ProvisioningState = ok
		pools[strings.ToLower(strVal(b.Name))] = b
	}
	probes := map[string]*armnetwork.Probe{}
	for _, pr := range p.Probes {
		pr.ID, pr.Etag, pr.Type = ptr(network.ChildID(ref, network.RefProbe, strVal(pr.Name))), tag, ptr(typeLB+"/probes")
		pr.Properties.ProvisioningState = ok
		if pr.Properties.IntervalInSeconds == nil {
			pr.Properties.IntervalInSeconds = ptr(int32(15))
		}
		if pr.Properties.NumberOfProbes == nil {
			pr.Properties.NumberOfProbes = ptr(int32(2))
		}
		probes[strings.ToLower(strVal(pr.Name))] = pr
	}
	childName := func(sr *armnetwork.SubResource) string {
		if sr == nil {
			return ""
		}
		if id, ok := network.ParseID(strVal(sr.ID)); ok {
			return strings.ToLower(id.Child())
		}
		return ""
	}
	for _, r := range p.LoadBalancingRules {
		r.ID, r.Etag, r.Type = ptr(network.ChildID(ref, "loadBalancingRules", strVal(r.Name))), tag, ptr(typeLB+"/loadBalancingRules")
		rp := r.Properties
		rp.ProvisioningState = ok
		if rp.IdleTimeoutInMinutes == nil {
			rp.IdleTimeoutInMinutes = ptr(int32(4))
		}
		if rp.LoadDistribution == nil {
			rp.LoadDistribution = ptr(armnetwork.LoadDistributionDefault)
		}
		if rp.EnableFloatingIP == nil {
			rp.EnableFloatingIP = ptr(false)
		}
		if rp.BackendPort == nil {
			rp.BackendPort = rp.FrontendPort
		}
		self := sub("loadBalancingRules", strVal(r.Name))
		if f := fes[childName(rp.FrontendIPConfiguration)]; f != nil {
			f.Properties.LoadBalancingRules = append(f.Properties.LoadBalancingRules, self)
		}
		if b := pools[childName(rp.BackendAddressPool)]; b != nil {
			b.Properties.LoadBalancingRules = append(b.Properties.LoadBalancingRules, self)
		}
		if pr := probes[childName(rp.Probe)]; pr != nil {
			pr.Properties.LoadBalancingRules = append(pr.Properties.LoadBalancingRules, self)
		}
	}
	for _, n := range p.InboundNatPools {
		n.ID, n.Etag, n.Type = ptr(network.ChildID(ref, network.RefNATPool, strVal(n.Name))), tag, ptr(typeLB+"/inboundNatPools")
		n.Properties.ProvisioningState = ok
		if n.Properties.IdleTimeoutInMinutes == nil {
			n.Properties.IdleTimeoutInMinutes = ptr(int32(4))
		}
		if f := fes[childName(n.Properties.FrontendIPConfiguration)]; f != nil {
			f.Properties.InboundNatPools = append(f.Properties.InboundNatPools, sub(network.RefNATPool, strVal(n.Name)))
		}
	}
	for _, n := range p.InboundNatRules {
		n.ID, n.Etag, n.Type = ptr(network.ChildID(ref, "inboundNatRules", strVal(n.Name))), tag, ptr(typeLB+"/inboundNatRules")
		n.Properties.ProvisioningState = ok
		if f := fes[childName(n.Properties.FrontendIPConfiguration)]; f != nil {
			f.Properties.InboundNatRules = append(f.Properties.InboundNatRules, sub("inboundNatRules", strVal(n.Name)))
		}
	}
	// Backend IP configurations: the NICs of scale set instances in a pool.
	sets, _, err := state.List[model.ScaleSet](ctx, s.opts.Store, model.PrefixScaleSets)
	if err != nil {
		return nil, err
	}
	for _, set := range sets {
		if !network.RefersTo(set.Model, ref.Key()) {
			continue
		}
		insts, _, err := state.List[model.Instance](ctx, s.opts.Store, model.InstancePrefix(set.Ref()))
		if err != nil {
			return nil, err
		}
		for _, n := range network.ScaleSetNICs(set.Model) {
			for _, c := range n.IPConfigs {
				for _, id := range c.BackendPools {
					bp, ok := network.ParseRef(id, network.RefBackendPool)
					if !ok || bp.Resource().Key() != ref.Key() {
						continue
					}
					b := pools[strings.ToLower(bp.Child())]
					if b == nil {
						continue
					}
					for _, inst := range insts {
						b.Properties.BackendIPConfigurations = append(b.Properties.BackendIPConfigurations, &armnetwork.InterfaceIPConfiguration{
							ID: ptr(arm.InstanceID(set.Sub, set.RG, set.Name, strconv.FormatInt(inst.ID, 10)) + "/networkInterfaces/" + n.Name + "/ipConfigurations/" + c.Name),
						})
					}
				}
				// Inbound NAT pools show, as Azure's do, one inbound NAT
				// rule per member: "{pool}.{instance id}", frontend port
				// start + instance id (az vmss list-instance-connection-info
				// reads them).
				for _, id := range c.NATPools {
					np, ok := network.ParseRef(id, network.RefNATPool)
					if !ok || np.Resource().Key() != ref.Key() {
						continue
					}
					pool := natPoolByName(p, np.Child())
					if pool == nil || pool.Properties == nil {
						continue
					}
					pp := pool.Properties
					for _, inst := range insts {
						port := int64(i32val(pp.FrontendPortRangeStart)) + inst.ID
						if port > int64(i32val(pp.FrontendPortRangeEnd)) {
							continue
						}
						name := strVal(pool.Name) + "." + strconv.FormatInt(inst.ID, 10)
						p.InboundNatRules = append(p.InboundNatRules, &armnetwork.InboundNatRule{
							ID: ptr(network.ChildID(ref, "inboundNatRules", name)), Name: ptr(name), Etag: tag, Type: ptr(typeLB + "/inboundNatRules"),
							Properties: &armnetwork.InboundNatRulePropertiesFormat{
								FrontendIPConfiguration: pp.FrontendIPConfiguration, FrontendPort: ptr(int32(port)), BackendPort: pp.BackendPort,
								Protocol: pp.Protocol, IdleTimeoutInMinutes: pp.IdleTimeoutInMinutes, EnableFloatingIP: ptr(false), ProvisioningState: ptr(armnetwork.ProvisioningStateSucceeded),
								BackendIPConfiguration: &armnetwork.InterfaceIPConfiguration{
									ID: ptr(arm.InstanceID(set.Sub, set.RG, set.Name, strconv.FormatInt(inst.ID, 10)) + "/networkInterfaces/" + n.Name + "/ipConfigurations/" + c.Name),
								},
							},
						})
					}
				}
			}
		}
	}
	if p.InboundNatRules == nil {
		p.InboundNatRules = []*armnetwork.InboundNatRule{}
	}
	return lb, nil
}

func i32val(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func natPoolByName(p *armnetwork.LoadBalancerPropertiesFormat, name string) *armnetwork.InboundNatPool {
	for _, n := range p.InboundNatPools {
		if n != nil && strings.EqualFold(strVal(n.Name), name) {
			return n
		}
	}
	return nil
}

// dropGeneratedNATRules removes from a PUT body the inbound NAT rules GET
// shows for NAT pool members ("{pool}.{n}" on the pool's frontend, within
// its range): a client that writes back what it read (az network lb
// probe create) does not turn them into rules of its own.
func dropGeneratedNATRules(lb *armnetwork.LoadBalancer) {
	p := lb.Properties
	if p == nil || len(p.InboundNatRules) == 0 {
		return
	}
	kept := p.InboundNatRules[:0]
	for _, r := range p.InboundNatRules {
		if r != nil && generatedNATRule(p, r) {
			continue
		}
		kept = append(kept, r)
	}
	p.InboundNatRules = kept
}

func generatedNATRule(p *armnetwork.LoadBalancerPropertiesFormat, r *armnetwork.InboundNatRule) bool {
	poolName, k, ok := strings.Cut(strVal(r.Name), ".")
	if !ok || r.Properties == nil || r.Properties.FrontendPort == nil {
		return false
	}
	id, err := strconv.ParseInt(k, 10, 64)
	pool := natPoolByName(p, poolName)
	if err != nil || pool == nil || pool.Properties == nil {
		return false
	}
	port := int64(*r.Properties.FrontendPort)
	return port == int64(i32val(pool.Properties.FrontendPortRangeStart))+id && port <= int64(i32val(pool.Properties.FrontendPortRangeEnd))
}

// lbPartJSON names the properties list of each part type.
var lbPartJSON = map[string]string{
	"frontendipconfigurations": "frontendIPConfigurations",
	"backendaddresspools":      "backendAddressPools",
	"probes":                   "probes",
	"loadbalancingrules":       "loadBalancingRules",
	"inboundnatrules":          "inboundNatRules",
}

// lbParts reads the rendered parts of one type of a load balancer.
func (s *Server) lbParts(r *http.Request, rc *reqCtx, part string) ([]json.RawMessage, error) {
	rec, rev, err := s.loadNet(r.Context(), s.netRef(rc, model.NetLoadBalancers))
	if err != nil {
		return nil, err
	}
	lb, err := s.renderLB(r.Context(), rec, rev)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(lb.Properties)
	if err != nil {
		return nil, err
	}
	var props map[string]json.RawMessage
	if err := json.Unmarshal(b, &props); err != nil {
		return nil, err
	}
	var out []json.RawMessage
	if raw, ok := props[lbPartJSON[strings.ToLower(part)]]; ok {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Server) listLBParts(part string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
		parts, err := s.lbParts(r, rc, part)
		if err != nil {
			return err
		}
		if parts == nil {
			parts = []json.RawMessage{}
		}
		writeJSON(w, http.StatusOK, arm.Page[json.RawMessage]{Value: parts})
		return nil
	}
}

func (s *Server) getLBPart(part string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
		parts, err := s.lbParts(r, rc, part)
		if err != nil {
			return err
		}
		for _, p := range parts {
			var named struct {
				Name string `json:"name"`
			}
			if json.Unmarshal(p, &named) == nil && strings.EqualFold(named.Name, rc.v("part")) {
				writeJSON(w, http.StatusOK, p)
				return nil
			}
		}
		return errs.New(errs.NotFound, "NotFound", "Resource %s not found.", network.ChildID(s.netRef(rc, model.NetLoadBalancers), part, rc.v("part")))
	}
}
