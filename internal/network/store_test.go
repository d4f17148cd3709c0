package network

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"pgregory.net/rapid"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// putVNet writes a virtual network record with one subnet.
func putVNet(t interface {
	Helper()
	Fatal(...any)
}, st store.Store, ref model.NetRef, subnet, prefix string) {
	t.Helper()
	body := `{"location":"local","properties":{"addressSpace":{"addressPrefixes":["10.0.0.0/16"]},"subnets":[{"name":"` + subnet + `","properties":{"addressPrefix":"` + prefix + `"}}]}}`
	rec := &model.NetResource{Sub: ref.Sub, RG: ref.RG, Type: model.NetVirtualNetworks, Name: ref.Name, Model: json.RawMessage(body)}
	if _, err := st.Txn(context.Background(), nil, state.PutOp(ref.Key(), rec)); err != nil {
		t.Fatal(err)
	}
}

func TestAllocateInstanceIP(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	putVNet(t, st, vnetRef, "a", "10.0.0.0/29")
	sid := SubnetID(vnetRef, "a")
	set := model.SetRef{Sub: "s1", RG: "rg", Name: "web"}

	a0, err := AllocateInstanceIP(ctx, st, sid, set, 0, "nic0", t0)
	if err != nil || a0.String() != "10.0.0.4" {
		t.Fatalf("first: %v %v", a0, err)
	}
	// Stable: asking again (a restart, a reimage) gives the same address.
	if again, err := AllocateInstanceIP(ctx, st, sid, set, 0, "NIC0", t0); err != nil || again != a0 {
		t.Fatalf("again: %v %v", again, err)
	}
	a1, _ := AllocateInstanceIP(ctx, st, sid, set, 1, "nic0", t0)
	a2, _ := AllocateInstanceIP(ctx, st, sid, set, 2, "nic0", t0)
	if a1.String() != "10.0.0.5" || a2.String() != "10.0.0.6" {
		t.Fatalf("next: %v %v", a1, a2)
	}
	// A /29 gives three addresses.
	if _, err := AllocateInstanceIP(ctx, st, sid, set, 3, "nic0", t0); err == nil {
		t.Fatal("a full subnet gave an address")
	}
	addrs, err := InstanceAddresses(ctx, st, set, 1)
	if err != nil || len(addrs) != 1 || addrs[0].Address != a1 || addrs[0].NIC != "nic0" || addrs[0].Subnet != sid {
		t.Fatalf("InstanceAddresses: %+v %v", addrs, err)
	}
	// Released on delete, then reused.
	if err := ReleaseInstanceIPs(ctx, st, set, 1); err != nil {
		t.Fatal(err)
	}
	if addrs, _ := InstanceAddresses(ctx, st, set, 1); len(addrs) != 0 {
		t.Fatalf("after release: %+v", addrs)
	}
	if a3, err := AllocateInstanceIP(ctx, st, sid, set, 3, "nic0", t0); err != nil || a3 != a1 {
		t.Fatalf("reuse: %v %v", a3, err)
	}
	// Unknown subnets are refused.
	if _, err := AllocateInstanceIP(ctx, st, SubnetID(vnetRef, "nope"), set, 4, "nic0", t0); !errors.Is(err, ErrNoSubnet) {
		t.Fatalf("unknown subnet: %v", err)
	}
	if err := ReleaseScaleSetIPs(ctx, st, set); err != nil {
		t.Fatal(err)
	}
	if kvs, _, _ := st.List(ctx, model.PrefixIPAM+"addr/"); len(kvs) != 0 {
		t.Fatalf("addresses left after releasing the set: %d", len(kvs))
	}
}

// TestAllocateConcurrent: instances allocating at once never share an
// address.
func TestAllocateConcurrent(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	putVNet(t, st, vnetRef, "a", "10.0.0.0/26")
	sid := SubnetID(vnetRef, "a")
	var wg sync.WaitGroup
	got := make([]netip.Addr, 40)
	errs := make([]error, 40)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			set := model.SetRef{Sub: "s1", RG: "rg", Name: []string{"a", "b"}[i%2]}
			got[i], errs[i] = AllocateInstanceIP(ctx, st, sid, set, int64(i), "nic0", t0)
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, a := range got {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		if j, dup := seen[a]; dup {
			t.Fatalf("instances %d and %d both got %s", j, i, a)
		}
		seen[a] = i
	}
}

// TestAllocateStoreProperty: any sequence of allocations and releases of
// instance NICs over the store keeps one owner per address, keeps each
// instance's address while it lives, and frees it on release.
func TestAllocateStoreProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ctx := context.Background()
		st := memstore.New(memstore.Options{})
		putVNet(t, st, vnetRef, "a", "10.0.0.0/28") // 11 addresses
		sid := SubnetID(vnetRef, "a")
		set := model.SetRef{Sub: "s1", RG: "rg", Name: "web"}
		held := map[int64]netip.Addr{}
		for range rapid.IntRange(1, 60).Draw(t, "steps") {
			id := int64(rapid.IntRange(0, 14).Draw(t, "instance"))
			if rapid.Bool().Draw(t, "release") {
				if err := ReleaseInstanceIPs(ctx, st, set, id); err != nil {
					t.Fatal(err)
				}
				delete(held, id)
				continue
			}
			a, err := AllocateInstanceIP(ctx, st, sid, set, id, "nic0", t0)
			if err != nil {
				if _, had := held[id]; had || len(held) < 11 {
					t.Fatalf("instance %d: %v with %d held", id, err, len(held))
				}
				continue
			}
			if prev, had := held[id]; had && prev != a {
				t.Fatalf("instance %d moved from %s to %s", id, prev, a)
			}
			for other, b := range held {
				if other != id && b == a {
					t.Fatalf("instances %d and %d share %s", id, other, a)
				}
			}
			held[id] = a
		}
		kvs, _, _ := st.List(ctx, model.SubnetAddrPrefix(vnetRef, "a"))
		if len(kvs) != len(held) {
			t.Fatalf("%d address records for %d holders", len(kvs), len(held))
		}
	})
}

func TestLoadBalancerConfig(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	putVNet(t, st, vnetRef, "a", "10.0.0.0/24")
	pip := &model.NetResource{Sub: "s1", RG: "rg", Type: model.NetPublicIPs, Name: "ip", Model: json.RawMessage(`{}`), Address: "127.0.1.1"}
	lb := &model.NetResource{Sub: "s1", RG: "rg", Type: model.NetLoadBalancers, Name: "lb", Model: json.RawMessage(lbBody(nil))}
	vmss := &armcompute.VirtualMachineScaleSet{}
	if err := json.Unmarshal([]byte(`{"properties":{"virtualMachineProfile":{"networkProfile":{
		"healthProbe":{"id":"`+lbID+`/probes/http"},
		"networkInterfaceConfigurations":[{"name":"nic0","properties":{"primary":true,"ipConfigurations":[{"name":"ipc","properties":{
		"subnet":{"id":"`+SubnetID(vnetRef, "a")+`"},
		"loadBalancerBackendAddressPools":[{"id":"`+lbID+`/backendAddressPools/pool"}],
		"loadBalancerInboundNatPools":[{"id":"`+lbID+`/inboundNatPools/ssh"}]}}]}}]}}}}`), vmss); err != nil {
		t.Fatal(err)
	}
	set := &model.ScaleSet{Sub: "s1", RG: "rg", Name: "web", Model: vmss}
	other := &model.ScaleSet{Sub: "s1", RG: "rg", Name: "other", Model: &armcompute.VirtualMachineScaleSet{}}
	ops := []store.Op{state.PutOp(pip.Ref().Key(), pip), state.PutOp(lb.Ref().Key(), lb), state.PutOp(model.ScaleSetKey(set.Ref()), set), state.PutOp(model.ScaleSetKey(other.Ref()), other)}
	for _, id := range []int64{0, 1} {
		ops = append(ops, state.PutOp(model.InstanceKey(set.Ref(), id), &model.Instance{Sub: "s1", RG: "rg", ScaleSet: "web", ID: id, Deleting: id == 1}))
		ops = append(ops, state.PutOp(model.InstanceKey(other.Ref(), id), &model.Instance{Sub: "s1", RG: "rg", ScaleSet: "other", ID: id}))
	}
	if _, err := st.Txn(ctx, nil, ops...); err != nil {
		t.Fatal(err)
	}
	if _, err := AllocateInstanceIP(ctx, st, SubnetID(vnetRef, "a"), set.Ref(), 0, "nic0", t0); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadBalancerConfig(ctx, st, model.NetRef{Sub: "S1", RG: "RG", Name: "LB"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ref.Name != "lb" || len(cfg.Frontends) != 1 || cfg.Frontends[0].Address.String() != "127.0.1.1" {
		t.Fatalf("frontends %+v", cfg.Frontends)
	}
	if len(cfg.Members) != 2 {
		t.Fatalf("members %+v", cfg.Members)
	}
	m0, m1 := cfg.Members[0], cfg.Members[1]
	if m0.InstanceID != 0 || m0.Address.String() != "10.0.0.4" || m0.Deleting || len(m0.BackendPools) != 1 || m0.BackendPools[0] != "pool" || len(m0.NATPools) != 1 || m0.NATPools[0] != "ssh" {
		t.Fatalf("member 0 %+v", m0)
	}
	if m1.InstanceID != 1 || m1.Address.IsValid() || !m1.Deleting {
		t.Fatalf("member 1 %+v", m1)
	}
	if cfg.HealthProbes[set.Ref().String()] != "http" {
		t.Fatalf("health probes %+v", cfg.HealthProbes)
	}
	if _, err := LoadBalancerConfig(ctx, st, model.NetRef{Sub: "s1", RG: "rg", Name: "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing lb: %v", err)
	}
}

func TestAllocationLive(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	putVNet(t, st, vnetRef, "a", "10.0.0.0/24")
	set := model.SetRef{Sub: "s1", RG: "rg", Name: "web"}
	if _, err := AllocateInstanceIP(ctx, st, SubnetID(vnetRef, "a"), set, 7, "nic0", t0); err != nil {
		t.Fatal(err)
	}
	allocs, _, err := state.List[model.IPAllocation](ctx, st, model.SubnetAddrPrefix(vnetRef, "a"))
	if err != nil || len(allocs) != 1 {
		t.Fatalf("allocations: %v %v", allocs, err)
	}
	if live, err := AllocationLive(ctx, st, allocs[0]); err != nil || live {
		t.Fatalf("allocation of a missing instance: live %v %v", live, err)
	}
	if _, err := st.Txn(ctx, nil, state.PutOp(model.InstanceKey(set, 7), &model.Instance{ID: 7})); err != nil {
		t.Fatal(err)
	}
	if live, err := AllocationLive(ctx, st, allocs[0]); err != nil || !live {
		t.Fatalf("allocation of an instance: live %v %v", live, err)
	}
	lbAlloc := &model.IPAllocation{Owner: lbRef.Key() + "#fe"}
	if live, _ := AllocationLive(ctx, st, lbAlloc); live {
		t.Fatal("frontend of a missing load balancer is live")
	}
	if live, _ := AllocationLive(ctx, st, &model.IPAllocation{Owner: "something else"}); !live {
		t.Fatal("unknown owners are kept")
	}
}

// TestAllocateAfterNetworkRecreated: a NIC allocation whose address
// record is gone (its network was deleted) does not hand out that address
// again without recording it.
func TestAllocateAfterNetworkRecreated(t *testing.T) {
	ctx := context.Background()
	st := memstore.New(memstore.Options{})
	putVNet(t, st, vnetRef, "a", "10.0.0.0/24")
	sid := SubnetID(vnetRef, "a")
	set := model.SetRef{Sub: "s1", RG: "rg", Name: "web"}
	if _, err := AllocateInstanceIP(ctx, st, sid, set, 0, "nic0", t0); err != nil {
		t.Fatal(err)
	}
	// The network goes (with its address records), a new one comes.
	if _, err := st.Txn(ctx, nil, store.DeletePrefix(model.VNetAddrPrefix(vnetRef))); err != nil {
		t.Fatal(err)
	}
	other := model.SetRef{Sub: "s1", RG: "rg", Name: "other"}
	a, err := AllocateInstanceIP(ctx, st, sid, other, 0, "nic0", t0)
	if err != nil || a.String() != "10.0.0.4" {
		t.Fatalf("other: %v %v", a, err)
	}
	b, err := AllocateInstanceIP(ctx, st, sid, set, 0, "nic0", t0)
	if err != nil || b == a {
		t.Fatalf("stale allocation reused %v (other has %v): %v", b, a, err)
	}
	kvs, _, _ := st.List(ctx, model.SubnetAddrPrefix(vnetRef, "a"))
	if len(kvs) != 2 {
		t.Fatalf("%d address records, want 2", len(kvs))
	}
}
