package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// GuardKey is bumped by every private address allocation in a virtual
// network; whoever deletes a subnet or the network conditions on it, so an
// allocation cannot slip in between its in-use check and its deletion.
func GuardKey(vnet model.NetRef) string {
	return model.PrefixIPAM + "guard/" + strings.TrimPrefix(vnet.Key(), model.PrefixNetwork)
}

// LoadVNet reads a virtual network record and its model.
func LoadVNet(ctx context.Context, st store.Store, ref model.NetRef) (*model.NetResource, *armnetwork.VirtualNetwork, int64, error) {
	ref.Type = model.NetVirtualNetworks
	rec, rev, err := state.Get[model.NetResource](ctx, st, ref.Key())
	if err != nil {
		return nil, nil, 0, err
	}
	vn := &armnetwork.VirtualNetwork{}
	if err := json.Unmarshal(rec.Model, vn); err != nil {
		return nil, nil, 0, fmt.Errorf("decode %s: %w", ref.Key(), err)
	}
	return rec, vn, rev, nil
}

// NICAddress is an instance NIC's private address.
type NICAddress struct {
	NIC     string
	Address netip.Addr
	// Subnet is the ARM id of the subnet it is from.
	Subnet string
}

// ErrNoSubnet means the subnet an allocation asks for does not exist.
var ErrNoSubnet = errors.New("network: subnet not found")

// AllocateInstanceIP gives an instance's NIC a private address from the
// subnet with ARM id subnetID: the one it already holds there, or the
// lowest free one (never one another owner holds). An instance that moved
// to another subnet gets a new address and the old one is released.
func AllocateInstanceIP(ctx context.Context, st store.Store, subnetID string, set model.SetRef, instanceID int64, nic string, now time.Time) (netip.Addr, error) {
	sid, ok := ParseRef(subnetID, RefSubnet)
	if !ok {
		return netip.Addr{}, fmt.Errorf("allocate %s: %w (bad id %q)", set, ErrNoSubnet, subnetID)
	}
	vref, subnet := sid.Resource(), sid.Child()
	nicKey := model.NICAllocKey(set, instanceID, nic)
	for attempt := 0; attempt < 50; attempt++ {
		cur, curRev, err := state.Get[model.IPAllocation](ctx, st, nicKey)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return netip.Addr{}, err
		}
		// What the NIC holds counts only while its address record says so
		// (a network deleted and created again forgets its addresses).
		held := false
		if err == nil && cur.AddrKey != "" {
			a, _, err := state.Get[model.IPAllocation](ctx, st, cur.AddrKey)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return netip.Addr{}, err
			}
			held = err == nil && a.Owner == nicKey
		}
		if held && strings.EqualFold(cur.Subnet, SubnetID(vref, subnet)) {
			return netip.ParseAddr(cur.Address)
		}
		_, vn, vrev, err := LoadVNet(ctx, st, vref)
		if errors.Is(err, store.ErrNotFound) {
			return netip.Addr{}, fmt.Errorf("allocate %s: %w: %s", set, ErrNoSubnet, subnetID)
		}
		if err != nil {
			return netip.Addr{}, err
		}
		sn := FindSubnet(vn, subnet)
		if sn == nil {
			return netip.Addr{}, fmt.Errorf("allocate %s: %w: %s", set, ErrNoSubnet, subnetID)
		}
		kvs, _, err := st.List(ctx, model.SubnetAddrPrefix(vref, subnet))
		if err != nil {
			return netip.Addr{}, err
		}
		used := map[netip.Addr]bool{}
		for _, kv := range kvs {
			if a, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), model.SubnetAddrPrefix(vref, subnet))); err == nil {
				used[a] = true
			}
		}
		addr, ok := Allocate(SubnetRanges(sn), func(a netip.Addr) bool { return used[a] })
		if !ok {
			return netip.Addr{}, errs.New(errs.Conflict, "SubnetIsFull", "Subnet %s has no free address for the network interface %s of instance %d of %s.", subnetID, nic, instanceID, set)
		}
		addrKey := model.SubnetAddrKey(vref, subnet, addr.String())
		alloc := &model.IPAllocation{Address: addr.String(), Owner: nicKey, Subnet: SubnetID(vref, subnet), AddrKey: addrKey, Created: now}
		guard := GuardKey(vref)
		conds := []store.Cond{store.ModRevisionIs(nicKey, curRev), store.ModRevisionIs(addrKey, 0), store.ModRevisionIs(vref.Key(), vrev)}
		ops := []store.Op{state.PutOp(nicKey, alloc), state.PutOp(addrKey, alloc), store.Put(guard, []byte(now.UTC().Format(time.RFC3339Nano)))}
		if held {
			ops = append(ops, store.Delete(cur.AddrKey))
		}
		_, err = st.Txn(ctx, conds, ops...)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		return addr, nil
	}
	return netip.Addr{}, fmt.Errorf("allocate %s instance %d: %w", set, instanceID, store.ErrConflict)
}

// InstanceAddresses are the private addresses an instance's NICs hold.
func InstanceAddresses(ctx context.Context, st store.Store, set model.SetRef, instanceID int64) ([]NICAddress, error) {
	allocs, _, err := state.List[model.IPAllocation](ctx, st, model.NICAllocPrefix(set, instanceID))
	if err != nil {
		return nil, err
	}
	out := make([]NICAddress, 0, len(allocs))
	for _, a := range allocs {
		addr, err := netip.ParseAddr(a.Address)
		if err != nil {
			continue
		}
		nic := a.Owner[strings.LastIndex(a.Owner, "/")+1:]
		out = append(out, NICAddress{NIC: nic, Address: addr, Subnet: a.Subnet})
	}
	return out, nil
}

// ReleaseInstanceIPs frees every address an instance's NICs hold (call it
// when the instance is deleted; a reimage or restart keeps them).
func ReleaseInstanceIPs(ctx context.Context, st store.Store, set model.SetRef, instanceID int64) error {
	return releasePrefix(ctx, st, model.NICAllocPrefix(set, instanceID))
}

// ReleaseScaleSetIPs frees every address of a scale set's instances.
func ReleaseScaleSetIPs(ctx context.Context, st store.Store, set model.SetRef) error {
	return releasePrefix(ctx, st, model.NICAllocSetPrefix(set))
}

// ReleaseOps are the store operations that free the addresses under a NIC
// allocation prefix, to put in the transaction that deletes their owner.
func ReleaseOps(ctx context.Context, st store.Store, prefix string) ([]store.Op, error) {
	allocs, _, err := state.List[model.IPAllocation](ctx, st, prefix)
	if err != nil {
		return nil, err
	}
	var ops []store.Op
	for _, a := range allocs {
		if a.AddrKey != "" {
			ops = append(ops, store.Delete(a.AddrKey))
		}
	}
	return append(ops, store.DeletePrefix(prefix)), nil
}

func releasePrefix(ctx context.Context, st store.Store, prefix string) error {
	kvs, _, err := st.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		a := &model.IPAllocation{}
		if err := json.Unmarshal(kv.Value, a); err != nil {
			return fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		ops := []store.Op{store.Delete(string(kv.Key))}
		if a.AddrKey != "" {
			ops = append(ops, store.Delete(a.AddrKey))
		}
		if _, err := st.Txn(ctx, []store.Cond{store.ModRevisionIs(string(kv.Key), kv.ModRevision)}, ops...); err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return nil
}

// FreePublicAddr picks the lowest address of pool no public IP holds; the
// caller writes model.PublicAddrKey(addr) in a transaction conditioned on
// its absence.
func FreePublicAddr(ctx context.Context, st store.Store, pool []netip.Prefix) (netip.Addr, error) {
	kvs, _, err := st.List(ctx, model.PrefixPublicAddrs)
	if err != nil {
		return netip.Addr{}, err
	}
	used := make(map[netip.Addr]bool, len(kvs))
	for _, kv := range kvs {
		if a, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), model.PrefixPublicAddrs)); err == nil {
			used[a] = true
		}
	}
	a, ok := Allocate(PoolRanges(pool), func(a netip.Addr) bool { return used[a] })
	if !ok {
		return netip.Addr{}, errs.New(errs.Conflict, "PublicIPCountLimitReached", "Cannot create more public IP addresses: the cloud's public address pool (%v) is exhausted.", pool)
	}
	return a, nil
}

// ownerInstance parses the instance a NIC allocation key belongs to.
func ownerInstance(owner string) (model.SetRef, int64, bool) {
	rest, ok := strings.CutPrefix(owner, model.PrefixIPAM+"nic/")
	if !ok {
		return model.SetRef{}, 0, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 5 {
		return model.SetRef{}, 0, false
	}
	var id int64
	if _, err := fmt.Sscanf(parts[3], "%d", &id); err != nil {
		return model.SetRef{}, 0, false
	}
	return model.SetRef{Sub: parts[0], RG: parts[1], Name: parts[2]}, id, true
}

// AllocationLive reports whether an address's owner still exists: the
// instance of a NIC allocation, the load balancer of a frontend's. An
// allocation whose owner is gone (its release was never run) does not
// keep a subnet in use.
func AllocationLive(ctx context.Context, st store.Store, a *model.IPAllocation) (bool, error) {
	key := ""
	if set, id, ok := ownerInstance(a.Owner); ok {
		key = model.InstanceKey(set, id)
	} else if lb, _, ok := strings.Cut(a.Owner, "#"); ok {
		key = lb
	} else {
		return true, nil
	}
	_, err := st.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
