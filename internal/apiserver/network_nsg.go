package apiserver

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/state"
)

const typeNSG = "Microsoft.Network/networkSecurityGroups"

// Network security groups are stored and validated; subnets reference
// them. They are not enforced yet.
func (s *Server) nsgKind() *netKind {
	return &netKind{
		typ: model.NetSecurityGroups,
		prepare: func(ctx context.Context, rc *reqCtx, ref model.NetRef, cur *model.NetResource, body []byte) (*netWrite, error) {
			g := &armnetwork.SecurityGroup{}
			if err := decode(body, g); err != nil {
				return nil, err
			}
			curLoc := ""
			if cur != nil {
				old := &armnetwork.SecurityGroup{}
				if err := json.Unmarshal(cur.Model, old); err != nil {
					return nil, err
				}
				curLoc = strVal(old.Location)
			}
			if err := s.checkLocation(strVal(g.Location), cur, curLoc, model.NetSecurityGroups); err != nil {
				return nil, err
			}
			g.ID, g.Name, g.Type, g.Etag = nil, nil, nil, nil
			if p := g.Properties; p != nil {
				p.ProvisioningState, p.ResourceGUID, p.DefaultSecurityRules, p.NetworkInterfaces, p.Subnets, p.FlowLogs = nil, nil, nil, nil, nil, nil
				for _, r := range p.SecurityRules {
					if r != nil {
						r.ID, r.Etag, r.Type = nil, nil, nil
						if r.Properties != nil {
							r.Properties.ProvisioningState = nil
						}
					}
				}
			}
			if err := network.ValidateNSG(ref, g); err != nil {
				return nil, err
			}
			return &netWrite{model: g, location: strVal(g.Location), tags: g.Tags}, nil
		},
		render: func(ctx context.Context, rec *model.NetResource, rev int64) (any, error) {
			g := &armnetwork.SecurityGroup{}
			if err := json.Unmarshal(rec.Model, g); err != nil {
				return nil, err
			}
			ref := rec.Ref()
			g.ID, g.Name, g.Type, g.Etag = ptr(ref.ID()), ptr(rec.Name), ptr(typeNSG), ptr(etag(rev))
			if g.Properties == nil {
				g.Properties = &armnetwork.SecurityGroupPropertiesFormat{}
			}
			g.Properties.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
			g.Properties.ResourceGUID = ptr(rec.ResourceGUID)
			if g.Properties.SecurityRules == nil {
				g.Properties.SecurityRules = []*armnetwork.SecurityRule{}
			}
			for _, r := range g.Properties.SecurityRules {
				r.ID, r.Etag, r.Type = ptr(network.ChildID(ref, "securityRules", strVal(r.Name))), ptr(etag(rev)), ptr(typeNSG+"/securityRules")
				r.Properties.ProvisioningState = ptr(armnetwork.ProvisioningStateSucceeded)
			}
			subnets, err := s.nsgSubnets(ctx, ref)
			if err != nil {
				return nil, err
			}
			for _, id := range subnets {
				g.Properties.Subnets = append(g.Properties.Subnets, &armnetwork.Subnet{ID: ptr(id)})
			}
			return g, nil
		},
		deleteCheck: func(ctx context.Context, rec *model.NetResource) (*netWrite, error) {
			subnets, err := s.nsgSubnets(ctx, rec.Ref())
			if err != nil {
				return nil, err
			}
			if len(subnets) > 0 {
				return nil, errs.New(errs.Invalid, "InUseNetworkSecurityGroupCannotBeDeleted", "Network security group %s cannot be deleted because it is in use by the following resources: %s. In order to delete the Network security group, remove the association with the resource(s).", rec.Ref().ID(), strings.Join(subnets, ", "))
			}
			return &netWrite{}, nil
		},
	}
}

// nsgSubnets are the ids of the subnets (of any subscription) that name a
// network security group.
func (s *Server) nsgSubnets(ctx context.Context, ref model.NetRef) ([]string, error) {
	vnets, _, err := state.List[model.NetResource](ctx, s.opts.Store, model.PrefixNetwork+strings.ToLower(model.NetVirtualNetworks)+"/")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rec := range vnets {
		vn, err := decodeVNet(rec)
		if err != nil {
			return nil, err
		}
		if vn.Properties == nil {
			continue
		}
		for _, sn := range vn.Properties.Subnets {
			if sn == nil || sn.Properties == nil || sn.Properties.NetworkSecurityGroup == nil {
				continue
			}
			if p, ok := network.ParseRef(strVal(sn.Properties.NetworkSecurityGroup.ID), network.RefNSG); ok && p.Resource().Key() == ref.Key() {
				out = append(out, network.SubnetID(rec.Ref(), strVal(sn.Name)))
			}
		}
	}
	return out, nil
}
