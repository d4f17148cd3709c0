package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

const typeNSG = "Microsoft.Network/networkSecurityGroups"

// Network security groups are stored and validated; subnets reference
// them. They are not enforced yet.
func (s *Server) nsgKind() *netKind {
	return &netKind{
		typ:   model.NetSecurityGroups,
		model: reflect.TypeFor[armnetwork.SecurityGroup](),
		prepare: func(ctx context.Context, rc *reqCtx, ref model.NetRef, cur *model.NetResource, body []byte) (*netWrite, error) {
			g, _, err := decodeNetPut(s, body, cur, model.NetSecurityGroups, func(v *armnetwork.SecurityGroup) *string { return v.Location })
			if err != nil {
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

// Security rules are also child resources of their group
// (networkSecurityGroups/{nsg}/securityRules/{rule}, what az network nsg
// rule uses): a write edits the group as a PUT of it would.

func (s *Server) nsgRuleView(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ref := s.netRef(rc, model.NetSecurityGroups)
	rec, rev, err := s.loadNet(r.Context(), ref)
	if err != nil {
		return err
	}
	out, err := s.nsgKind().render(r.Context(), rec, rev)
	if err != nil {
		return err
	}
	rules := out.(*armnetwork.SecurityGroup).Properties.SecurityRules
	if rc.v("rule") == "" {
		writeJSON(w, http.StatusOK, arm.Page[*armnetwork.SecurityRule]{Value: rules})
		return nil
	}
	for _, rule := range rules {
		if strings.EqualFold(strVal(rule.Name), rc.v("rule")) {
			w.Header().Set("ETag", etag(rev))
			writeJSON(w, http.StatusOK, rule)
			return nil
		}
	}
	return errs.New(errs.NotFound, "NotFound", "Resource %s not found.", network.ChildID(rec.Ref(), "securityRules", rc.v("rule")))
}

func (s *Server) nsgRuleWrite(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	ref := s.netRef(rc, model.NetSecurityGroups)
	name := rc.v("rule")
	var in *armnetwork.SecurityRule
	if r.Method == http.MethodPut {
		body, err := readNetPut(r, name, "securityRuleName")
		if err != nil {
			return err
		}
		in = &armnetwork.SecurityRule{}
		if err := decode(lenient(body, reflect.TypeFor[armnetwork.SecurityRule]()), in); err != nil {
			return err
		}
		in.ID, in.Etag, in.Type, in.Name = nil, nil, nil, &name
		if in.Properties != nil {
			in.Properties.ProvisioningState = nil
		}
	}
	unlock := s.subLocks.lock(ref.Sub)
	defer unlock()
	for attempt := 0; attempt < 20; attempt++ {
		rec, rev, err := s.loadNet(ctx, ref)
		if err != nil {
			return err
		}
		if err := checkPreconditions(r, rev); err != nil {
			return err
		}
		g := &armnetwork.SecurityGroup{}
		if err := json.Unmarshal(rec.Model, g); err != nil {
			return err
		}
		if g.Properties == nil {
			g.Properties = &armnetwork.SecurityGroupPropertiesFormat{}
		}
		status, found := http.StatusCreated, false
		for i, old := range g.Properties.SecurityRules {
			if strings.EqualFold(strVal(old.Name), name) {
				found = true
				if in == nil {
					g.Properties.SecurityRules = append(g.Properties.SecurityRules[:i], g.Properties.SecurityRules[i+1:]...)
				} else {
					in.Name, status = old.Name, http.StatusOK
					g.Properties.SecurityRules[i] = in
				}
				break
			}
		}
		if in == nil && !found {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		if in != nil && !found {
			g.Properties.SecurityRules = append(g.Properties.SecurityRules, in)
		}
		if err := network.ValidateNSG(rec.Ref(), g); err != nil {
			return err
		}
		b, err := json.Marshal(g)
		if err != nil {
			return err
		}
		next := *rec
		next.Model = b
		op, opPut := s.completedOp("network.securityRule."+strings.ToLower(r.Method), rec.Ref())
		newRev, err := s.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(rec.Ref().Key(), rev)}, state.PutOp(rec.Ref().Key(), &next), opPut)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return err
		}
		s.lroHeaders(w, r, op, rc.api)
		if in == nil {
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
		out, err := s.nsgKind().render(ctx, &next, newRev)
		if err != nil {
			return err
		}
		for _, rule := range out.(*armnetwork.SecurityGroup).Properties.SecurityRules {
			if strings.EqualFold(strVal(rule.Name), name) {
				w.Header().Set("ETag", etag(newRev))
				writeJSON(w, status, rule)
			}
		}
		return nil
	}
	return errs.New(errs.Conflict, "Conflict", "The network security group is being modified concurrently; retry the request.")
}
