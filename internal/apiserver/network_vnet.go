package apiserver

import (
	"context"
	"encoding/json"
	"errors"
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

const typeVNet = "Microsoft.Network/virtualNetworks"

func (s *Server) vnetKind() *netKind {
	return &netKind{
		typ:   model.NetVirtualNetworks,
		model: reflect.TypeFor[armnetwork.VirtualNetwork](),
		prepare: func(ctx context.Context, rc *reqCtx, ref model.NetRef, cur *model.NetResource, body []byte) (*netWrite, error) {
			vn, curVN, err := decodeNetPut(s, body, cur, model.NetVirtualNetworks, func(v *armnetwork.VirtualNetwork) *string { return v.Location })
			if err != nil {
				return nil, err
			}
			clearVNet(vn)
			return s.prepareVNet(ctx, rc, ref, curVN, vn)
		},
		render: func(_ context.Context, rec *model.NetResource, rev int64) (any, error) {
			return renderVNet(rec, rev)
		},
		deleteCheck: func(ctx context.Context, rec *model.NetResource) (*netWrite, error) {
			vn := &armnetwork.VirtualNetwork{}
			if err := json.Unmarshal(rec.Model, vn); err != nil {
				return nil, err
			}
			users, err := s.loadNetUsers(ctx)
			if err != nil {
				return nil, err
			}
			if vn.Properties != nil {
				for _, sn := range vn.Properties.Subnets {
					if by, err := s.subnetUser(ctx, rec.Ref(), strVal(sn.Name), users); err != nil {
						return nil, err
					} else if by != "" {
						return nil, inUseSubnet(rec.Ref(), strVal(sn.Name), by)
					}
				}
			}
			return &netWrite{ops: []store.Op{store.DeletePrefix(model.VNetAddrPrefix(rec.Ref()))}}, nil
		},
	}
}

func strVal(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func (s *Server) keyRev(ctx context.Context, key string) (int64, error) {
	kv, err := s.opts.Store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return kv.ModRevision, nil
}

func clearSubnet(sn *armnetwork.Subnet) {
	sn.ID, sn.Etag, sn.Type = nil, nil, nil
	if p := sn.Properties; p != nil {
		p.ProvisioningState, p.IPConfigurations, p.IPConfigurationProfiles, p.PrivateEndpoints = nil, nil, nil, nil
		p.Purpose, p.ResourceNavigationLinks, p.ServiceAssociationLinks = nil, nil, nil
		if p.NetworkSecurityGroup != nil {
			p.NetworkSecurityGroup = &armnetwork.SecurityGroup{ID: p.NetworkSecurityGroup.ID}
		}
	}
}

func clearVNet(vn *armnetwork.VirtualNetwork) {
	vn.ID, vn.Name, vn.Type, vn.Etag = nil, nil, nil, nil
	if p := vn.Properties; p != nil {
		p.ProvisioningState, p.ResourceGUID, p.FlowLogs = nil, nil, nil
		for _, sn := range p.Subnets {
			if sn != nil {
				clearSubnet(sn)
			}
		}
	}
}

func inUseSubnet(vnet model.NetRef, subnet, by string) *errs.Error {
	return errs.New(errs.Invalid, "InUseSubnetCannotBeDeleted", "Subnet %s is in use by %s and cannot be deleted. In order to delete the subnet, delete all the resources within the subnet.", network.SubnetID(vnet, subnet), by)
}

// subnetUser names what uses a subnet ("" when nothing): a scale set model,
// a load balancer frontend or an allocated address.
func (s *Server) subnetUser(ctx context.Context, vnet model.NetRef, subnet string, users *netUsers) (string, error) {
	for _, set := range users.sets {
		if network.RefersToPart(set.Model, vnet.Key(), network.RefSubnet, subnet) {
			return arm.ScaleSetID(set.Sub, set.RG, set.Name), nil
		}
	}
	for _, lb := range users.lbs {
		m := &armnetwork.LoadBalancer{}
		if err := json.Unmarshal(lb.Model, m); err != nil {
			return "", err
		}
		_, subnets := network.LBExternalRefs(m)
		for id := range subnets {
			if p, ok := network.ParseRef(id, network.RefSubnet); ok && p.Resource().Key() == vnet.Key() && strings.EqualFold(p.Child(), subnet) {
				return lb.Ref().ID(), nil
			}
		}
	}
	allocs, _, err := state.List[model.IPAllocation](ctx, s.opts.Store, model.SubnetAddrPrefix(vnet, subnet))
	if err != nil {
		return "", err
	}
	for _, a := range allocs {
		live, err := network.AllocationLive(ctx, s.opts.Store, a)
		if err != nil {
			return "", err
		}
		if live {
			return "the IP configuration holding " + a.Address, nil
		}
	}
	return "", nil
}

// prepareVNet validates a virtual network against its current version:
// subnets that go away or shrink must not be in use, NSGs must resolve.
func (s *Server) prepareVNet(ctx context.Context, rc *reqCtx, ref model.NetRef, cur, vn *armnetwork.VirtualNetwork) (*netWrite, error) {
	if err := network.ValidateVNet(ref, vn); err != nil {
		return nil, err
	}
	nw := &netWrite{model: vn, location: strVal(vn.Location), tags: vn.Tags}
	scope := ref.ID()
	touched := map[string]bool{}
	for i, sn := range vn.Properties.Subnets {
		if sn.Properties == nil || sn.Properties.NetworkSecurityGroup == nil {
			continue
		}
		r := network.Reference{ID: strVal(sn.Properties.NetworkSecurityGroup.ID), Kind: network.RefNSG, Target: "properties.subnets[" + strconv.Itoa(i) + "].properties.networkSecurityGroup.id"}
		nsg, nsgRev, err := s.linked(ctx, rc.caller, r, "Microsoft.Network/virtualNetworks/write", scope, network.SubnetID(ref, strVal(sn.Name)))
		if err != nil {
			return nil, err
		}
		if k := nsg.Ref().Key(); !touched[k] {
			touched[k] = true
			nw.conds = append(nw.conds, store.ModRevisionIs(k, nsgRev))
			nw.ops = append(nw.ops, s.touchGuard(nsg.Ref()))
		}
	}
	if cur == nil || cur.Properties == nil {
		return nw, nil
	}
	var users *netUsers
	guardRev, err := s.keyRev(ctx, network.GuardKey(ref))
	if err != nil {
		return nil, err
	}
	nw.conds = append(nw.conds, store.ModRevisionIs(network.GuardKey(ref), guardRev))
	for _, old := range cur.Properties.Subnets {
		name := strVal(old.Name)
		next := network.FindSubnet(vn, name)
		if next != nil && slicesEqualFold(network.SubnetPrefixes(old), network.SubnetPrefixes(next)) {
			continue
		}
		if next == nil {
			if users == nil {
				if users, err = s.loadNetUsers(ctx); err != nil {
					return nil, err
				}
			}
			by, err := s.subnetUser(ctx, ref, name, users)
			if err != nil {
				return nil, err
			}
			if by != "" {
				return nil, inUseSubnet(ref, name, by)
			}
			continue
		}
		// A changed prefix must keep every allocated address.
		allocs, _, err := state.List[model.IPAllocation](ctx, s.opts.Store, model.SubnetAddrPrefix(ref, name))
		if err != nil {
			return nil, err
		}
		ranges := network.SubnetRanges(next)
		for _, a := range allocs {
			addr, _ := netip.ParseAddr(a.Address)
			ok := false
			for _, r := range ranges {
				ok = ok || r.Contains(addr)
			}
			if !ok {
				return nil, errs.New(errs.Invalid, "InUseSubnetCannotBeUpdated", "Subnet %s has address %s in use, which its new address prefix does not contain.", network.SubnetID(ref, name), a.Address)
			}
		}
	}
	return nw, nil
}

func slicesEqualFold(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(a[i], b[i]) {
			return false
		}
	}
	return true
}

func renderSubnet(vnet model.NetRef, sn *armnetwork.Subnet, rev int64) {
	name := strVal(sn.Name)
	sn.ID = ptr(network.SubnetID(vnet, name))
	sn.Type = ptr(typeVNet + "/subnets")
	sn.Etag = ptr(etag(rev))
	if sn.Properties == nil {
		sn.Properties = &armnetwork.SubnetPropertiesFormat{}
	}
	sn.Properties.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
}

func decodeVNet(rec *model.NetResource) (*armnetwork.VirtualNetwork, error) {
	vn := &armnetwork.VirtualNetwork{}
	if err := json.Unmarshal(rec.Model, vn); err != nil {
		return nil, err
	}
	return vn, nil
}

func renderVNet(rec *model.NetResource, rev int64) (*armnetwork.VirtualNetwork, error) {
	vn, err := decodeVNet(rec)
	if err != nil {
		return nil, err
	}
	ref := rec.Ref()
	vn.ID, vn.Name, vn.Type, vn.Etag = ptr(ref.ID()), ptr(rec.Name), ptr(typeVNet), ptr(etag(rev))
	if vn.Properties == nil {
		vn.Properties = &armnetwork.VirtualNetworkPropertiesFormat{}
	}
	vn.Properties.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
	vn.Properties.ResourceGUID = ptr(rec.ResourceGUID)
	if vn.Properties.Subnets == nil {
		vn.Properties.Subnets = []*armnetwork.Subnet{}
	}
	for _, sn := range vn.Properties.Subnets {
		renderSubnet(ref, sn, rev)
	}
	return vn, nil
}

func (s *Server) vnetRef(rc *reqCtx) model.NetRef { return s.netRef(rc, model.NetVirtualNetworks) }

func subnetNotFound(vnet model.NetRef, name string) *errs.Error {
	return errs.New(errs.NotFound, "NotFound", "Resource %s not found.", network.SubnetID(vnet, name))
}

// loadVNet reads the request's virtual network, its record and its rendering.
func (s *Server) loadVNet(ctx context.Context, rc *reqCtx) (*model.NetResource, int64, *armnetwork.VirtualNetwork, error) {
	rec, rev, err := s.loadNet(ctx, s.vnetRef(rc))
	if err != nil {
		return nil, 0, nil, err
	}
	vn, err := renderVNet(rec, rev)
	if err != nil {
		return nil, 0, nil, err
	}
	return rec, rev, vn, nil
}

func (s *Server) getSubnet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	rec, rev, vn, err := s.loadVNet(r.Context(), rc)
	if err != nil {
		return err
	}
	sn := network.FindSubnet(vn, rc.v("subnet"))
	if sn == nil {
		return subnetNotFound(rec.Ref(), rc.v("subnet"))
	}
	w.Header().Set("ETag", etag(rev))
	writeJSON(w, http.StatusOK, sn)
	return nil
}

func (s *Server) listSubnets(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	_, _, vn, err := s.loadVNet(r.Context(), rc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, arm.Page[*armnetwork.Subnet]{Value: vn.Properties.Subnets})
	return nil
}

// putSubnet creates or replaces one subnet of a virtual network.
func (s *Server) putSubnet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	name := rc.v("subnet")
	body, err := readNetPut(r, name, "subnetName")
	if err != nil {
		return err
	}
	sn := &armnetwork.Subnet{}
	if err := decode(lenient(body, reflect.TypeFor[armnetwork.Subnet]()), sn); err != nil {
		return err
	}
	clearSubnet(sn)
	sn.Name = ptr(name)
	return s.editSubnet(w, r, rc, name, func(vn *armnetwork.VirtualNetwork) (int, error) {
		for i, old := range vn.Properties.Subnets {
			if strings.EqualFold(strVal(old.Name), name) {
				sn.Name = old.Name
				vn.Properties.Subnets[i] = sn
				return http.StatusOK, nil
			}
		}
		vn.Properties.Subnets = append(vn.Properties.Subnets, sn)
		return http.StatusCreated, nil
	})
}

// deleteSubnet removes a subnet that nothing uses.
func (s *Server) deleteSubnet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	name := rc.v("subnet")
	return s.editSubnet(w, r, rc, name, func(vn *armnetwork.VirtualNetwork) (int, error) {
		for i, old := range vn.Properties.Subnets {
			if strings.EqualFold(strVal(old.Name), name) {
				vn.Properties.Subnets = append(vn.Properties.Subnets[:i], vn.Properties.Subnets[i+1:]...)
				return http.StatusAccepted, nil
			}
		}
		return http.StatusNoContent, nil
	})
}

// editSubnet applies edit to the virtual network and writes it as a PUT of
// the network would (same validation and in-use checks).
func (s *Server) editSubnet(w http.ResponseWriter, r *http.Request, rc *reqCtx, name string, edit func(*armnetwork.VirtualNetwork) (int, error)) error {
	ctx := r.Context()
	ref := s.vnetRef(rc)
	unlock := s.subLocks.lock(ref.Sub)
	defer unlock()
	for attempt := 0; attempt < 20; attempt++ {
		rec, rev, err := s.loadNet(ctx, ref)
		if err != nil {
			return err
		}
		ref = rec.Ref()
		if err := checkPreconditions(r, rev); err != nil {
			return err
		}
		cur, err := decodeVNet(rec)
		if err != nil {
			return err
		}
		vn, _ := decodeVNet(rec)
		if vn.Properties == nil {
			vn.Properties = &armnetwork.VirtualNetworkPropertiesFormat{}
		}
		status, err := edit(vn)
		if err != nil {
			return err
		}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return nil
		}
		nw, err := s.prepareVNet(ctx, rc, ref, cur, vn)
		if err != nil {
			return err
		}
		b, err := json.Marshal(vn)
		if err != nil {
			return err
		}
		next := *rec
		next.Model = b
		kind := "network.subnet.put"
		if r.Method == http.MethodDelete {
			kind = "network.subnet.delete"
		}
		op, opPut := s.completedOp(kind, ref)
		newRev, err := s.opts.Store.Txn(ctx, append([]store.Cond{store.ModRevisionIs(ref.Key(), rev)}, nw.conds...), state.PutOp(ref.Key(), &next), opPut)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		s.lroHeaders(w, r, op, rc.api)
		if r.Method == http.MethodDelete {
			w.WriteHeader(status)
			return nil
		}
		out, err := renderVNet(&next, newRev)
		if err != nil {
			return err
		}
		w.Header().Set("ETag", etag(newRev))
		writeJSON(w, status, network.FindSubnet(out, name))
		return nil
	}
	return errs.New(errs.Conflict, "Conflict", "The virtual network is being modified concurrently; retry the request.")
}
