package dashboard

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
)

const networkAPI = "2024-05-01"

// LBView is a load balancer in front of the set, as its model and the
// instances' states show it.
type LBView struct {
	Name      string
	Frontends []string
	Rules     []string
	Probes    []string
	// InRotation are the members running and healthy (the health is the
	// load balancer probe's verdict when the set's healthProbe names it);
	// Out the others.
	InRotation, Out []string
	Err             string
}

// lbIDs are the load balancers the set's NIC configurations reference
// (backend pools and NAT pools), in order. Pure.
func lbIDs(set *armcompute.VirtualMachineScaleSet) []string {
	var out []string
	add := func(id *string) {
		if id == nil {
			return
		}
		lid := *id
		for _, part := range []string{"/backendAddressPools/", "/inboundNatPools/"} {
			if i := strings.Index(strings.ToLower(lid), strings.ToLower(part)); i >= 0 {
				lid = lid[:i]
			}
		}
		if !slices.ContainsFunc(out, func(s string) bool { return strings.EqualFold(s, lid) }) {
			out = append(out, lid)
		}
	}
	p := set.Properties
	if p == nil || p.VirtualMachineProfile == nil || p.VirtualMachineProfile.NetworkProfile == nil {
		return nil
	}
	for _, nic := range p.VirtualMachineProfile.NetworkProfile.NetworkInterfaceConfigurations {
		if nic.Properties == nil {
			continue
		}
		for _, ipc := range nic.Properties.IPConfigurations {
			if ipc.Properties == nil {
				continue
			}
			for _, r := range ipc.Properties.LoadBalancerBackendAddressPools {
				add(r.ID)
			}
			for _, r := range ipc.Properties.LoadBalancerInboundNatPools {
				add(r.ID)
			}
		}
	}
	return out
}

func (d *Dashboard) lbViews(ctx context.Context, c client, set *armcompute.VirtualMachineScaleSet, cells []Cell) []LBView {
	var out []LBView
	for _, id := range lbIDs(set) {
		v := LBView{Name: id[strings.LastIndex(id, "/")+1:]}
		var lb armnetwork.LoadBalancer
		if _, err := c.call(ctx, http.MethodGet, withAPI(id, networkAPI), nil, nil, &lb); err != nil {
			v.Err = err.Error()
			out = append(out, v)
			continue
		}
		if p := lb.Properties; p != nil {
			for _, fe := range p.FrontendIPConfigurations {
				addr := ""
				if fe.Properties != nil {
					addr = deref(fe.Properties.PrivateIPAddress)
					if pip := fe.Properties.PublicIPAddress; pip != nil && pip.ID != nil {
						var ip armnetwork.PublicIPAddress
						if _, err := c.call(ctx, http.MethodGet, withAPI(*pip.ID, networkAPI), nil, nil, &ip); err == nil && ip.Properties != nil {
							addr = deref(ip.Properties.IPAddress) + " (public)"
						}
					}
				}
				v.Frontends = append(v.Frontends, deref(fe.Name)+": "+cmp.Or(addr, "no address yet"))
			}
			for _, r := range p.LoadBalancingRules {
				if r.Properties == nil {
					continue
				}
				probe := ""
				if r.Properties.Probe != nil && r.Properties.Probe.ID != nil {
					probe = ", probe " + (*r.Properties.Probe.ID)[strings.LastIndex(*r.Properties.Probe.ID, "/")+1:]
				}
				v.Rules = append(v.Rules, fmt.Sprintf("%s: %s %d → %d%s", deref(r.Name), deref(r.Properties.Protocol),
					val(r.Properties.FrontendPort), val(r.Properties.BackendPort), probe))
			}
			for _, pr := range p.Probes {
				if pr.Properties == nil {
					continue
				}
				s := fmt.Sprintf("%s: %s port %d", deref(pr.Name), deref(pr.Properties.Protocol), val(pr.Properties.Port))
				if path := deref(pr.Properties.RequestPath); path != "" {
					s += " " + path
				}
				v.Probes = append(v.Probes, s)
			}
		}
		for _, c := range cells {
			if c.Power == "running" && c.Health == "healthy" {
				v.InRotation = append(v.InRotation, c.ID)
			} else {
				v.Out = append(v.Out, c.ID+" ("+c.Power+", "+c.Health+")")
			}
		}
		out = append(out, v)
	}
	return out
}

func val[T ~int32 | ~int64](p *T) int64 {
	if p == nil {
		return 0
	}
	return int64(*p)
}
