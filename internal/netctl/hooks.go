package netctl

import (
	"context"
	"errors"
	"net/netip"
	"strings"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/lb"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/nsg"
	"github.com/vmssd/vmssd/internal/store"
)

// Attach gives each NIC of the instance whose primary ipConfiguration names
// a subnet its private address (the one it already holds, so restarts and
// reimages keep it) and returns the driver's view of the primary NIC (zero
// when the model names no subnet).
func (m *Manager) Attach(ctx context.Context, set *model.ScaleSet, inst *model.Instance) (driver.Network, error) {
	var out driver.Network
	nics := network.ScaleSetNICs(set.Model)
	for i, n := range nics {
		ipc, ok := n.PrimaryIPConfig()
		if !ok || ipc.Subnet == "" {
			continue
		}
		addr, err := network.AllocateInstanceIP(ctx, m.opts.Store, ipc.Subnet, set.Ref(), inst.ID, n.Name, m.opts.Now())
		if errors.Is(err, network.ErrNoSubnet) {
			return driver.Network{}, errs.New(errs.Invalid, "InvalidResourceReference",
				"Subnet %s referenced by the network interface configuration %s does not exist.", ipc.Subnet, n.Name).
				WithTarget("virtualMachineProfile.networkProfile").Wrap(err)
		}
		if err != nil {
			return driver.Network{}, err
		}
		if !(n.Primary || i == 0 && !anyPrimary(nics)) {
			continue
		}
		sid, _ := network.ParseRef(ipc.Subnet, network.RefSubnet)
		out = driver.Network{NetworkID: strings.ToLower(sid.Resource().ID()), PrivateIP: addr.String(), PrefixLen: prefixLen(ctx, m.opts.Store, sid, addr)}
		// The NIC's security rules, wanted before the driver attaches it.
		rs, err := nicSecurity(ctx, m.opts.Store, set, n.Name, ipc.Subnet)
		if err != nil {
			return driver.Network{}, err
		}
		_ = m.want(nsg.Key{NetworkID: out.NetworkID, IP: out.PrivateIP}, rs) // a namespace that holds it already reports at its next sync
	}
	return out, nil
}

func anyPrimary(nics []network.NICSpec) bool {
	for _, n := range nics {
		if n.Primary {
			return true
		}
	}
	return false
}

// prefixLen is the length of the subnet prefix that holds addr (24 when
// the subnet cannot be read).
func prefixLen(ctx context.Context, st store.Store, sid network.ID, addr netip.Addr) int {
	_, vn, _, err := network.LoadVNet(ctx, st, sid.Resource())
	if err != nil {
		return 24
	}
	if sn := network.FindSubnet(vn, sid.Child()); sn != nil {
		for _, p := range network.SubnetPrefixes(sn) {
			if pf, err := netip.ParsePrefix(p); err == nil && pf.Contains(addr) {
				return pf.Bits()
			}
		}
	}
	return 24
}

// ReleaseOps are the store operations that free the private addresses of
// one instance (id >= 0) or of every instance of the set (id < 0), for the
// transaction that deletes their records.
func (m *Manager) ReleaseOps(ctx context.Context, set model.SetRef, id int64) ([]store.Op, error) {
	prefix := model.NICAllocSetPrefix(set)
	if id >= 0 {
		prefix = model.NICAllocPrefix(set, id)
	}
	return network.ReleaseOps(ctx, m.opts.Store, prefix)
}

// Leave takes the instance out of rotation in every load balancer it is a
// member of and returns when its open connections are gone or their drain
// period is over (or ctx ends). An instance in no load balancer returns at
// once.
func (m *Manager) Leave(ctx context.Context, inst *model.Instance) error {
	var waits []<-chan struct{}
	for _, ms := range m.memberships(inst.Ref(), inst.ID) {
		for _, id := range ms.ids {
			ch, err := ms.lb.Drain(id, ms.period)
			if err != nil {
				if errs.From(err).Kind == errs.NotFound {
					continue
				}
				return err
			}
			waits = append(waits, ch)
		}
	}
	if len(waits) > 0 {
		m.log.Debug("draining", "set", inst.Ref().String(), "instance", inst.ID, "members", len(waits))
	}
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Rejoin ends the instance's drain after a host action: its forwards are
// re-read first (a reimaged instance may listen elsewhere), then the load
// balancer probes it again and sends it new flows once the probe passes.
func (m *Manager) Rejoin(ctx context.Context, inst *model.Instance) {
	if err := m.Sync(ctx); err != nil {
		m.log.Debug("sync before rejoin", "err", err)
	}
	for _, ms := range m.memberships(inst.Ref(), inst.ID) {
		for _, id := range ms.ids {
			if err := ms.lb.Undrain(id); err != nil && errs.From(err).Kind != errs.NotFound {
				m.log.Warn("undrain failed", "member", id, "err", err)
			}
		}
	}
}

// Health is the load balancer probe's verdict on the instance when its
// scale set's networkProfile.healthProbe names one (ok false otherwise:
// the host's own probe decides). observed is the host's verdict: an
// instance the host does not see running keeps it, and one without a load
// balancer verdict yet is Initializing.
func (m *Manager) Health(inst *model.Instance, observed host.Health) (host.Health, uint64, bool) {
	m.mu.Lock()
	key, ok := m.healthLB[inst.Ref().String()]
	var b *balancer
	if ok {
		b = m.lbs[key]
	}
	m.mu.Unlock()
	if !ok || b == nil {
		return "", 0, false
	}
	if observed == host.HealthUnknown || observed == "" {
		return observed, 0, true
	}
	prefix := instancePrefix(inst.Ref(), inst.ID)
	verdict := host.Health("")
	var gen uint64 = 1
	for id, h := range b.lb.Health() {
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		gen = gen*31 + uint64(h.Since.UnixNano()) + uint64(len(h.Health))
		switch {
		case h.Health == lb.Unhealthy:
			verdict = host.HealthUnhealthy
		case h.Health == lb.Unknown && verdict != host.HealthUnhealthy:
			verdict = host.HealthInitializing
		case h.Health == lb.Healthy && verdict == "":
			verdict = host.HealthHealthy
		}
	}
	if verdict == "" {
		verdict = host.HealthInitializing
	}
	return verdict, gen, true
}
