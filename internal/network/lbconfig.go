package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// LBFrontend is a frontend IP configuration with its address (invalid when
// its public IP or private address is not known).
type LBFrontend struct {
	Name    string
	Address netip.Addr
	// PublicIP is the ARM id of its public IP address, "" for a private
	// frontend.
	PublicIP string
}

// LBRule is a load-balancing rule. Protocol is "tcp", "udp" or "all".
type LBRule struct {
	Name, Frontend, Protocol  string
	FrontendPort, BackendPort int
	BackendPools              []string
	Probe                     string // "" when none
	IdleTimeoutMinutes        int
	// LoadDistribution is "Default" (5-tuple), "SourceIP" or
	// "SourceIPProtocol".
	LoadDistribution string
	EnableFloatingIP bool
	EnableTCPReset   bool
}

// LBProbe is a health probe. Protocol is "tcp", "http" or "https".
type LBProbe struct {
	Name, Protocol, Path  string
	Port, IntervalSeconds int
	// NumberOfProbes is the consecutive failures that take a backend out;
	// ProbeThreshold, when set, the successes that bring it back (Azure's
	// newer field; 1 otherwise).
	NumberOfProbes, ProbeThreshold int
}

// LBNATPool maps frontend port FrontendPortStart+k to BackendPort of the
// member whose instance id is k (as the API's generated inbound NAT rules
// "{pool}.{k}" show it).
type LBNATPool struct {
	Name, Frontend, Protocol           string
	FrontendPortStart, FrontendPortEnd int
	BackendPort, IdleTimeoutMinutes    int
}

// LBNATRule forwards one frontend port to one backend port.
type LBNATRule struct {
	Name, Frontend, Protocol  string
	FrontendPort, BackendPort int
	IdleTimeoutMinutes        int
}

// LBMember is a scale set instance NIC in the load balancer's pools.
type LBMember struct {
	Set        model.SetRef
	InstanceID int64
	NIC        string
	// Address is the NIC's private address; invalid while it has none
	// (the data plane then uses the instance's loopback port).
	Address      netip.Addr
	BackendPools []string
	NATPools     []string
	// Deleting is set when the instance is being deleted (drain it).
	Deleting bool
}

// LBConfig is what a load balancer data plane serves.
type LBConfig struct {
	Ref       model.NetRef
	Frontends []LBFrontend
	Rules     []LBRule
	Probes    []LBProbe
	NATPools  []LBNATPool
	NATRules  []LBNATRule
	Members   []LBMember
	// HealthProbes maps a scale set (SetRef.String()) to the probe its
	// networkProfile.healthProbe names on this load balancer.
	HealthProbes map[string]string
}

func child(id string) string {
	if p, ok := ParseID(id); ok {
		return p.Child()
	}
	return ""
}

func ival(p *int32, def int) int {
	if p == nil {
		return def
	}
	return int(*p)
}

// LBConfigFromModel extracts the pure part of a load balancer's
// configuration; publicAddr resolves a public IP id to its address.
func LBConfigFromModel(ref model.NetRef, lb *armnetwork.LoadBalancer, publicAddr func(id string) netip.Addr) *LBConfig {
	cfg := &LBConfig{Ref: ref, HealthProbes: map[string]string{}}
	p := lb.Properties
	if p == nil {
		return cfg
	}
	for _, f := range p.FrontendIPConfigurations {
		fe := LBFrontend{Name: s(f.Name)}
		if f.Properties != nil {
			if f.Properties.PublicIPAddress != nil {
				fe.PublicIP = s(f.Properties.PublicIPAddress.ID)
				fe.Address = publicAddr(fe.PublicIP)
			} else if a, err := netip.ParseAddr(s(f.Properties.PrivateIPAddress)); err == nil {
				fe.Address = a
			}
		}
		cfg.Frontends = append(cfg.Frontends, fe)
	}
	for _, r := range p.LoadBalancingRules {
		rp := r.Properties
		if rp == nil {
			continue
		}
		rule := LBRule{
			Name: s(r.Name), Protocol: strings.ToLower(string(*rp.Protocol)),
			FrontendPort: ival(rp.FrontendPort, 0), BackendPort: ival(rp.BackendPort, ival(rp.FrontendPort, 0)),
			IdleTimeoutMinutes: ival(rp.IdleTimeoutInMinutes, 4), LoadDistribution: "Default",
			EnableFloatingIP: rp.EnableFloatingIP != nil && *rp.EnableFloatingIP,
			EnableTCPReset:   rp.EnableTCPReset != nil && *rp.EnableTCPReset,
		}
		if rp.FrontendIPConfiguration != nil {
			rule.Frontend = child(s(rp.FrontendIPConfiguration.ID))
		}
		if rp.BackendAddressPool != nil {
			rule.BackendPools = append(rule.BackendPools, child(s(rp.BackendAddressPool.ID)))
		}
		for _, bp := range rp.BackendAddressPools {
			if bp != nil && !containsFold(rule.BackendPools, child(s(bp.ID))) {
				rule.BackendPools = append(rule.BackendPools, child(s(bp.ID)))
			}
		}
		if rp.Probe != nil {
			rule.Probe = child(s(rp.Probe.ID))
		}
		if rp.LoadDistribution != nil {
			rule.LoadDistribution = string(*rp.LoadDistribution)
		}
		cfg.Rules = append(cfg.Rules, rule)
	}
	for _, pr := range p.Probes {
		pp := pr.Properties
		if pp == nil {
			continue
		}
		cfg.Probes = append(cfg.Probes, LBProbe{
			Name: s(pr.Name), Protocol: strings.ToLower(string(*pp.Protocol)), Path: s(pp.RequestPath),
			Port: ival(pp.Port, 0), IntervalSeconds: ival(pp.IntervalInSeconds, 15),
			NumberOfProbes: ival(pp.NumberOfProbes, 2), ProbeThreshold: ival(pp.ProbeThreshold, 1),
		})
	}
	for _, np := range p.InboundNatPools {
		pp := np.Properties
		if pp == nil {
			continue
		}
		pool := LBNATPool{
			Name: s(np.Name), Protocol: strings.ToLower(string(*pp.Protocol)),
			FrontendPortStart: ival(pp.FrontendPortRangeStart, 0), FrontendPortEnd: ival(pp.FrontendPortRangeEnd, 0),
			BackendPort: ival(pp.BackendPort, 0), IdleTimeoutMinutes: ival(pp.IdleTimeoutInMinutes, 4),
		}
		if pp.FrontendIPConfiguration != nil {
			pool.Frontend = child(s(pp.FrontendIPConfiguration.ID))
		}
		cfg.NATPools = append(cfg.NATPools, pool)
	}
	for _, nr := range p.InboundNatRules {
		rp := nr.Properties
		if rp == nil || rp.FrontendPort == nil {
			continue
		}
		rule := LBNATRule{
			Name: s(nr.Name), Protocol: strings.ToLower(string(*rp.Protocol)),
			FrontendPort: ival(rp.FrontendPort, 0), BackendPort: ival(rp.BackendPort, 0), IdleTimeoutMinutes: ival(rp.IdleTimeoutInMinutes, 4),
		}
		if rp.FrontendIPConfiguration != nil {
			rule.Frontend = child(s(rp.FrontendIPConfiguration.ID))
		}
		cfg.NATRules = append(cfg.NATRules, rule)
	}
	return cfg
}

func containsFold(vs []string, v string) bool {
	for _, x := range vs {
		if strings.EqualFold(x, v) {
			return true
		}
	}
	return false
}

// LoadBalancerConfig reads a load balancer's configuration from the store:
// its frontends with their addresses, rules, probes, NAT pools and rules,
// and the scale set instance NICs in its pools with their private
// addresses (scale sets of every subscription are considered: a set may
// only name a pool its tenant can see, which the API checks).
func LoadBalancerConfig(ctx context.Context, st store.Store, ref model.NetRef) (*LBConfig, error) {
	ref.Type = model.NetLoadBalancers
	rec, _, err := state.Get[model.NetResource](ctx, st, ref.Key())
	if err != nil {
		return nil, err
	}
	ref = rec.Ref()
	lb := &armnetwork.LoadBalancer{}
	if err := json.Unmarshal(rec.Model, lb); err != nil {
		return nil, fmt.Errorf("decode %s: %w", ref.Key(), err)
	}
	var lookupErr error
	cfg := LBConfigFromModel(ref, lb, func(id string) netip.Addr {
		p, ok := ParseRef(id, RefPublicIP)
		if !ok {
			return netip.Addr{}
		}
		pip, _, err := state.Get[model.NetResource](ctx, st, p.Resource().Key())
		if err != nil {
			if !isNotFound(err) {
				lookupErr = err
			}
			return netip.Addr{}
		}
		a, _ := netip.ParseAddr(pip.Address)
		return a
	})
	if lookupErr != nil {
		return nil, lookupErr
	}
	sets, _, err := state.List[model.ScaleSet](ctx, st, model.PrefixScaleSets)
	if err != nil {
		return nil, err
	}
	for _, set := range sets {
		if !RefersTo(set.Model, ref.Key()) {
			continue
		}
		if hp := HealthProbe(set.Model); hp != "" {
			if p, ok := ParseRef(hp, RefProbe); ok && p.Resource().Key() == ref.Key() {
				cfg.HealthProbes[set.Ref().String()] = p.Child()
			}
		}
		var nics []struct {
			name        string
			pools, nats []string
		}
		for _, n := range ScaleSetNICs(set.Model) {
			var pools, nats []string
			for _, c := range n.IPConfigs {
				for _, id := range c.BackendPools {
					if p, ok := ParseRef(id, RefBackendPool); ok && p.Resource().Key() == ref.Key() {
						pools = append(pools, p.Child())
					}
				}
				for _, id := range c.NATPools {
					if p, ok := ParseRef(id, RefNATPool); ok && p.Resource().Key() == ref.Key() {
						nats = append(nats, p.Child())
					}
				}
			}
			if len(pools)+len(nats) > 0 {
				nics = append(nics, struct {
					name        string
					pools, nats []string
				}{n.Name, pools, nats})
			}
		}
		if len(nics) == 0 {
			continue
		}
		insts, _, err := state.List[model.Instance](ctx, st, model.InstancePrefix(set.Ref()))
		if err != nil {
			return nil, err
		}
		for _, inst := range insts {
			addrs, err := InstanceAddresses(ctx, st, set.Ref(), inst.ID)
			if err != nil {
				return nil, err
			}
			for _, n := range nics {
				m := LBMember{Set: set.Ref(), InstanceID: inst.ID, NIC: n.name, BackendPools: n.pools, NATPools: n.nats, Deleting: inst.Deleting || set.Deleting}
				for _, a := range addrs {
					if strings.EqualFold(a.NIC, n.name) {
						m.Address = a.Address
					}
				}
				cfg.Members = append(cfg.Members, m)
			}
		}
	}
	return cfg, nil
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
