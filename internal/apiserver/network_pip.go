package apiserver

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

const typePublicIP = "Microsoft.Network/publicIPAddresses"

// maxPublicIPsPerSubscription bounds a subscription's public IP addresses
// (the pool is shared by every tenant).
const maxPublicIPsPerSubscription = 50

// Public IP addresses take their address from the operator's pool when
// they are created, Static and Dynamic alike (a Dynamic address of Azure
// is only given while attached; here it stays until the resource is
// deleted), and keep it across updates.
func (s *Server) publicIPKind() *netKind {
	return &netKind{
		typ:   model.NetPublicIPs,
		model: reflect.TypeFor[armnetwork.PublicIPAddress](),
		prepare: func(ctx context.Context, rc *reqCtx, ref model.NetRef, cur *model.NetResource, body []byte) (*netWrite, error) {
			ip, _, err := decodeNetPut(s, body, cur, model.NetPublicIPs, func(v *armnetwork.PublicIPAddress) *string { return v.Location })
			if err != nil {
				return nil, err
			}
			ip.ID, ip.Name, ip.Type, ip.Etag = nil, nil, nil, nil
			if p := ip.Properties; p != nil {
				p.ProvisioningState, p.ResourceGUID, p.IPConfiguration, p.IPAddress = nil, nil, nil, nil
				if p.DNSSettings != nil {
					p.DNSSettings.Fqdn = nil
				}
			}
			if err := network.ValidatePublicIP(ref, ip); err != nil {
				return nil, err
			}
			nw := &netWrite{model: ip, location: strVal(ip.Location), tags: ip.Tags}
			if cur != nil && cur.Address != "" {
				nw.address = cur.Address
				return nw, nil
			}
			// A new address counts against the subscription's bound
			// (creations are serialised by the subscription's lock).
			n, err := s.countKeys(ctx, model.NetPrefix(model.NetPublicIPs, ref.Sub, ""), maxPublicIPsPerSubscription)
			if err != nil {
				return nil, err
			}
			if n >= maxPublicIPsPerSubscription {
				return nil, errs.New(errs.Conflict, "PublicIPCountLimitReached", "Cannot create more than %d public IP addresses for this subscription in this region.", maxPublicIPsPerSubscription)
			}
			addr, err := network.FreePublicAddr(ctx, s.opts.Store, s.publicPool())
			if err != nil {
				return nil, err
			}
			nw.address = addr.String()
			key := model.PublicAddrKey(nw.address)
			nw.conds = append(nw.conds, store.ModRevisionIs(key, 0))
			nw.ops = append(nw.ops, state.PutOp(key, &model.IPAllocation{Address: nw.address, Owner: ref.Key(), Created: s.opts.Now()}))
			return nw, nil
		},
		render: func(ctx context.Context, rec *model.NetResource, rev int64) (any, error) {
			return s.renderPublicIP(ctx, rec, rev)
		},
		deleteCheck: func(ctx context.Context, rec *model.NetResource) (*netWrite, error) {
			if fe, err := s.publicIPUser(ctx, rec.Ref()); err != nil {
				return nil, err
			} else if fe != "" {
				return nil, errs.New(errs.Invalid, "PublicIPAddressInUse", "Public IP address %s can not be deleted since it is still allocated to resource %s. In order to delete the public IP, disassociate/detach the Public IP address from the resource.", rec.Ref().ID(), fe)
			}
			nw := &netWrite{}
			if rec.Address != "" {
				nw.ops = append(nw.ops, store.Delete(model.PublicAddrKey(rec.Address)))
			}
			return nw, nil
		},
	}
}

// publicIPUser is the id of the load balancer frontend using a public IP,
// "" when none does.
func (s *Server) publicIPUser(ctx context.Context, ref model.NetRef) (string, error) {
	lbs, _, err := state.List[model.NetResource](ctx, s.opts.Store, model.PrefixNetwork+strings.ToLower(model.NetLoadBalancers)+"/")
	if err != nil {
		return "", err
	}
	for _, lb := range lbs {
		m := &armnetwork.LoadBalancer{}
		if err := json.Unmarshal(lb.Model, m); err != nil {
			return "", err
		}
		if m.Properties == nil {
			continue
		}
		for _, f := range m.Properties.FrontendIPConfigurations {
			if f == nil || f.Properties == nil || f.Properties.PublicIPAddress == nil {
				continue
			}
			if p, ok := network.ParseRef(strVal(f.Properties.PublicIPAddress.ID), network.RefPublicIP); ok && p.Resource().Key() == ref.Key() {
				return network.ChildID(lb.Ref(), network.RefFrontend, strVal(f.Name)), nil
			}
		}
	}
	return "", nil
}

func (s *Server) renderPublicIP(ctx context.Context, rec *model.NetResource, rev int64) (*armnetwork.PublicIPAddress, error) {
	ip := &armnetwork.PublicIPAddress{}
	if err := json.Unmarshal(rec.Model, ip); err != nil {
		return nil, err
	}
	ip.ID, ip.Name, ip.Type, ip.Etag = ptr(rec.Ref().ID()), ptr(rec.Name), ptr(typePublicIP), ptr(etag(rev))
	if ip.Properties == nil {
		ip.Properties = &armnetwork.PublicIPAddressPropertiesFormat{}
	}
	p := ip.Properties
	p.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
	p.ResourceGUID = ptr(rec.ResourceGUID)
	if rec.Address != "" {
		p.IPAddress = ptr(rec.Address)
	}
	if p.PublicIPAllocationMethod == nil {
		p.PublicIPAllocationMethod = ptr(armnetwork.IPAllocationMethodDynamic)
	}
	if p.PublicIPAddressVersion == nil {
		p.PublicIPAddressVersion = ptr(armnetwork.IPVersionIPv4)
	}
	if p.IdleTimeoutInMinutes == nil {
		p.IdleTimeoutInMinutes = ptr(int32(4))
	}
	if ip.SKU == nil {
		ip.SKU = &armnetwork.PublicIPAddressSKU{Name: ptr(armnetwork.PublicIPAddressSKUNameBasic), Tier: ptr(armnetwork.PublicIPAddressSKUTierRegional)}
	}
	if d := p.DNSSettings; d != nil && strVal(d.DomainNameLabel) != "" {
		d.Fqdn = ptr(strVal(d.DomainNameLabel) + "." + strings.ToLower(s.opts.Location) + ".cloudapp.vmssd.internal")
	}
	fe, err := s.publicIPUser(ctx, rec.Ref())
	if err != nil {
		return nil, err
	}
	if fe != "" {
		p.IPConfiguration = &armnetwork.IPConfiguration{ID: ptr(fe)}
	}
	return ip, nil
}
