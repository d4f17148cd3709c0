package netctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/nsg"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// nicSecurity is the ruleset of NIC configuration nicName of set, whose
// primary ipConfiguration is in subnet subnetID: the subnet's NSG and the
// NIC configuration's, as Azure combines them (nil when neither names
// one). An NSG that no longer exists counts as one with the default rules
// only, so a dangling reference never opens an instance up.
func nicSecurity(ctx context.Context, st store.Store, set *model.ScaleSet, nicName, subnetID string) (*nsg.Ruleset, error) {
	sid, ok := network.ParseRef(subnetID, network.RefSubnet)
	if !ok {
		return nil, nil
	}
	_, vn, _, err := network.LoadVNet(ctx, st, sid.Resource())
	if err != nil {
		return nil, fmt.Errorf("nsg of %s: %w", subnetID, err)
	}
	var subnetNSG string
	if sn := network.FindSubnet(vn, sid.Child()); sn != nil && sn.Properties != nil && sn.Properties.NetworkSecurityGroup != nil && sn.Properties.NetworkSecurityGroup.ID != nil {
		subnetNSG = *sn.Properties.NetworkSecurityGroup.ID
	}
	nicNSG := nicConfigNSG(set, nicName)
	if subnetNSG == "" && nicNSG == "" {
		return nil, nil
	}
	env := nsg.Env{}
	if vn.Properties != nil && vn.Properties.AddressSpace != nil {
		for _, p := range vn.Properties.AddressSpace.AddressPrefixes {
			if p == nil {
				continue
			}
			if pf, err := netip.ParsePrefix(*p); err == nil && pf.Addr().Is4() {
				env.VNet = append(env.VNet, pf.Masked())
			}
		}
	}
	var groups [2]*nsg.Group
	for i, id := range []string{subnetNSG, nicNSG} {
		if id == "" {
			continue
		}
		if groups[i], err = loadGroup(ctx, st, id); err != nil {
			return nil, err
		}
	}
	return nsg.Translate(groups[0], groups[1], env)
}

// nicConfigNSG is the networkSecurityGroup id of the set's NIC
// configuration nicName ("" when none).
func nicConfigNSG(set *model.ScaleSet, nicName string) string {
	m := set.Model
	if m == nil || m.Properties == nil || m.Properties.VirtualMachineProfile == nil || m.Properties.VirtualMachineProfile.NetworkProfile == nil {
		return ""
	}
	for _, nc := range m.Properties.VirtualMachineProfile.NetworkProfile.NetworkInterfaceConfigurations {
		if nc == nil || nc.Name == nil || !strings.EqualFold(*nc.Name, nicName) || nc.Properties == nil {
			continue
		}
		if g := nc.Properties.NetworkSecurityGroup; g != nil && g.ID != nil {
			return *g.ID
		}
	}
	return ""
}

func loadGroup(ctx context.Context, st store.Store, id string) (*nsg.Group, error) {
	ref, ok := network.ParseRef(id, network.RefNSG)
	if !ok {
		return &nsg.Group{ID: id}, nil
	}
	rec, _, err := state.Get[model.NetResource](ctx, st, ref.Resource().Key())
	if errors.Is(err, store.ErrNotFound) {
		return &nsg.Group{ID: id}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("nsg %s: %w", id, err)
	}
	var g armnetwork.SecurityGroup
	if err := json.Unmarshal(rec.Model, &g); err != nil {
		return nil, fmt.Errorf("decode nsg %s: %w", id, err)
	}
	out := nsg.FromARM(id, &g)
	return &out, nil
}

// want hands NIC k's ruleset to the enforcer and remembers k as this
// manager's.
func (m *Manager) want(k nsg.Key, rs *nsg.Ruleset) error {
	m.nsgMu.Lock()
	if m.nsgKeys == nil {
		m.nsgKeys = map[nsg.Key]bool{}
	}
	m.nsgKeys[k] = true
	m.nsgMu.Unlock()
	return nsg.Default.Want(k, rs)
}

// syncSecurity recomputes the ruleset of every instance's primary NIC and
// hands it to the enforcer (which re-applies what changed), forgetting the
// NICs that are gone. Failures are logged: the last rules stay.
func (m *Manager) syncSecurity(ctx context.Context, insts []*model.Instance) {
	sets, _, err := state.List[model.ScaleSet](ctx, m.opts.Store, model.PrefixScaleSets)
	if err != nil {
		m.log.Warn("network security sync", "err", err)
		return
	}
	bySet := map[string]*model.ScaleSet{}
	for _, s := range sets {
		bySet[s.Ref().String()] = s
	}
	type nicKey struct{ set, nic string }
	rulesets := map[nicKey]*nsg.Ruleset{}
	failed := map[nicKey]bool{}
	seen := map[nsg.Key]bool{}
	for _, inst := range insts {
		set := bySet[inst.Ref().String()]
		if set == nil {
			continue
		}
		nic, ok := primaryNIC(set)
		if !ok {
			continue
		}
		ipc, _ := nic.PrimaryIPConfig()
		alloc, _, err := state.Get[model.IPAllocation](ctx, m.opts.Store, model.NICAllocKey(set.Ref(), inst.ID, nic.Name))
		if err != nil {
			continue // no address (yet)
		}
		sid, _ := network.ParseRef(ipc.Subnet, network.RefSubnet)
		k := nsg.Key{NetworkID: strings.ToLower(sid.Resource().ID()), IP: alloc.Address}
		seen[k] = true
		nk := nicKey{set.Ref().String(), strings.ToLower(nic.Name)}
		rs, done := rulesets[nk]
		if !done && !failed[nk] {
			if rs, err = nicSecurity(ctx, m.opts.Store, set, nic.Name, ipc.Subnet); err != nil {
				failed[nk] = true
				m.log.Warn("network security rules", "set", nk.set, "nic", nic.Name, "err", err)
			} else {
				rulesets[nk] = rs
			}
		}
		if failed[nk] {
			continue
		}
		if err := m.want(k, rs); err != nil {
			m.log.Warn("network security rules not applied", "set", nk.set, "instance", inst.ID, "err", err)
		}
	}
	m.nsgMu.Lock()
	var stale []nsg.Key
	for k := range m.nsgKeys {
		if !seen[k] {
			stale = append(stale, k)
			delete(m.nsgKeys, k)
		}
	}
	m.nsgMu.Unlock()
	for _, k := range stale {
		_ = nsg.Default.Want(k, nil)
	}
}

// primaryNIC is the set's NIC configuration whose primary ipConfiguration
// gets the driver's network (as Attach picks it).
func primaryNIC(set *model.ScaleSet) (network.NICSpec, bool) {
	nics := network.ScaleSetNICs(set.Model)
	for i, n := range nics {
		ipc, ok := n.PrimaryIPConfig()
		if !ok || ipc.Subnet == "" {
			continue
		}
		if n.Primary || i == 0 && !anyPrimary(nics) {
			return n, true
		}
	}
	return network.NICSpec{}, false
}
