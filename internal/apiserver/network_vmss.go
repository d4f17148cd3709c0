package apiserver

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/store"
)

// checkNetworkProfile validates a scale set model's networkProfile: NIC
// configuration names, one primary NIC, and every reference (subnet,
// backend pools, inbound NAT pools, health probe) visible to the caller
// (403 LinkedAuthorizationFailed) and existing (400
// InvalidResourceReference). Called on PUT and PATCH of a scale set; the
// conditions and writes returned go into the scale set's transaction: the
// referenced records must be unchanged, and their guards
// are bumped so that a concurrent deletion (or removal of a part) fails
// and looks again.
func (s *Server) checkNetworkProfile(ctx context.Context, c *Caller, ref model.SetRef, m *armcompute.VirtualMachineScaleSet) ([]store.Cond, []store.Op, error) {
	nics := network.ScaleSetNICs(m)
	const base = "properties.virtualMachineProfile.networkProfile.networkInterfaceConfigurations"
	primaries := 0
	seen := map[string]bool{}
	for _, n := range nics {
		if err := network.ValidName(n.Name, base+".name"); err != nil {
			return nil, nil, err
		}
		if seen[strings.ToLower(n.Name)] {
			return nil, nil, errs.New(errs.Invalid, "DuplicateResourceName", "The scale set has two network interface configurations named %s.", n.Name).WithTarget(base + ".name")
		}
		seen[strings.ToLower(n.Name)] = true
		if n.Primary {
			primaries++
		}
		if len(n.IPConfigs) == 0 {
			return nil, nil, errs.InvalidParameter(base+".properties.ipConfigurations", "Network interface configuration %s has no IP configuration.", n.Name)
		}
		for _, ipc := range n.IPConfigs {
			if err := network.ValidName(ipc.Name, base+".properties.ipConfigurations.name"); err != nil {
				return nil, nil, err
			}
		}
	}
	if len(nics) > 1 && primaries != 1 {
		return nil, nil, errs.New(errs.Invalid, "VMScaleSetMustHaveOnePrimaryNetworkInterfaceConfiguration", "Virtual machine scale set %s with more than one network interface configuration must have exactly one primary.", ref.Name).WithTarget(base)
	}
	scope := arm.ScaleSetID(ref.Sub, ref.RG, ref.Name)
	const action = "Microsoft.Compute/virtualMachineScaleSets/write"
	var conds []store.Cond
	var ops []store.Op
	seen = map[string]bool{}
	for _, r := range network.ScaleSetRefs(m) {
		rec, rev, err := s.linked(ctx, c, r, action, scope, scope)
		if err != nil {
			return nil, nil, err
		}
		p, _ := network.ParseRef(r.ID, r.Kind)
		found := false
		switch r.Kind {
		case network.RefSubnet:
			vn := &armnetwork.VirtualNetwork{}
			if err := json.Unmarshal(rec.Model, vn); err != nil {
				return nil, nil, err
			}
			found = network.FindSubnet(vn, p.Child()) != nil
		case network.RefNSG:
			found = true // the group exists (linked read it)
		default:
			lb := &armnetwork.LoadBalancer{}
			if err := json.Unmarshal(rec.Model, lb); err != nil {
				return nil, nil, err
			}
			for _, name := range lbPartNames(lb, r.Kind) {
				found = found || strings.EqualFold(name, p.Child())
			}
		}
		if !found {
			return nil, nil, network.InvalidRef(r.ID, scope, r.Target)
		}
		if k := rec.Ref().Key(); !seen[k] {
			seen[k] = true
			conds = append(conds, store.ModRevisionIs(k, rev))
			ops = append(ops, s.touchGuard(rec.Ref()))
		}
	}
	return conds, ops, nil
}
