package netctl

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/nsg"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/store/memstore"
)

// TestSecurityRulesFollowTheStore: Attach wants the NIC's rules (the
// subnet's NSG and the NIC configuration's, combined), a changed NSG is
// wanted anew at the next Sync, and a NIC whose instance is gone is
// forgotten.
func TestSecurityRulesFollowTheStore(t *testing.T) {
	ctx := t.Context()
	st := memstore.New(memstore.Options{})
	const sub, rg = "nsgsub", "rg"
	vnet := model.NetRef{Sub: sub, RG: rg, Type: model.NetVirtualNetworks, Name: "vn"}
	subnetNSG := model.NetRef{Sub: sub, RG: rg, Type: model.NetSecurityGroups, Name: "subnet-nsg"}
	nicNSG := model.NetRef{Sub: sub, RG: rg, Type: model.NetSecurityGroups, Name: "nic-nsg"}
	putNet := func(ref model.NetRef, m any) {
		t.Helper()
		raw, _ := json.Marshal(m)
		if _, err := st.Txn(ctx, nil, state.PutOp(ref.Key(), &model.NetResource{Sub: ref.Sub, RG: ref.RG, Type: ref.Type, Name: ref.Name, Model: raw})); err != nil {
			t.Fatal(err)
		}
	}
	rule := func(name string, prio int, access, port string) map[string]any {
		return map[string]any{"name": name, "properties": map[string]any{
			"priority": prio, "access": access, "direction": "Inbound", "protocol": "Tcp",
			"sourceAddressPrefix": "VirtualNetwork", "destinationAddressPrefix": "*", "sourcePortRange": "*", "destinationPortRange": port}}
	}
	nsgModel := func(rules ...any) map[string]any {
		return map[string]any{"location": "local", "properties": map[string]any{"securityRules": rules}}
	}
	putNet(subnetNSG, nsgModel(rule("allow-web", 100, "Allow", "80"), rule("deny-vnet", 200, "Deny", "*")))
	putNet(nicNSG, nsgModel(rule("deny-8080", 100, "Deny", "8080")))
	putNet(vnet, map[string]any{"location": "local", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{"10.5.0.0/16"}},
		"subnets": []any{map[string]any{"name": "default", "properties": map[string]any{
			"addressPrefix": "10.5.0.0/24", "networkSecurityGroup": map[string]any{"id": subnetNSG.ID()}}}},
	}})
	var vmss armcompute.VirtualMachineScaleSet
	body := map[string]any{"location": "local", "properties": map[string]any{"virtualMachineProfile": map[string]any{
		"networkProfile": map[string]any{"networkInterfaceConfigurations": []any{map[string]any{
			"name": "web-nic", "properties": map[string]any{"primary": true,
				"networkSecurityGroup": map[string]any{"id": nicNSG.ID()},
				"ipConfigurations":     []any{map[string]any{"name": "ipc", "properties": map[string]any{"subnet": map[string]any{"id": vnet.ID() + "/subnets/default"}}}}}}}}}}}
	raw, _ := json.Marshal(body)
	if err := json.Unmarshal(raw, &vmss); err != nil {
		t.Fatal(err)
	}
	set := &model.ScaleSet{Sub: sub, RG: rg, Name: "web", Model: &vmss}
	inst := &model.Instance{Sub: sub, RG: rg, ScaleSet: "web", ID: 0}
	if _, err := st.Txn(ctx, nil, state.PutOp(model.ScaleSetKey(set.Ref()), set), state.PutOp(model.InstanceKey(set.Ref(), 0), inst)); err != nil {
		t.Fatal(err)
	}
	m := New(Options{Store: st})
	n, err := m.Attach(ctx, set, inst)
	if err != nil {
		t.Fatal(err)
	}
	k := nsg.Key{NetworkID: n.NetworkID, IP: n.PrivateIP}
	t.Cleanup(func() { nsg.Default.Want(k, nil) })
	from := netip.MustParseAddr("10.5.0.9")
	verdict := func(port uint16) bool {
		rs := nsg.Default.Wanted(k)
		if rs == nil {
			t.Fatal("no rules wanted")
		}
		return rs.Evaluate(nsg.Inbound, nsg.Packet{Proto: nsg.ProtoTCP, Src: from, Dst: netip.MustParseAddr(n.PrivateIP), SrcPort: 40000, DstPort: port})
	}
	for _, c := range []struct {
		port uint16
		want bool
	}{{80, true}, {8080, false}, {22, false}} {
		if got := verdict(c.port); got != c.want {
			t.Errorf("after attach: port %d allowed %v, want %v", c.port, got, c.want)
		}
	}
	// The subnet's NSG now allows 8080 too: the NIC's still denies it; 22 opens.
	putNet(subnetNSG, nsgModel(rule("allow-web", 100, "Allow", "80"), rule("allow-ssh", 150, "Allow", "22")))
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !verdict(22) || verdict(8080) {
		t.Errorf("after the change: 22 %v (want true), 8080 %v (want false)", verdict(22), verdict(8080))
	}
	// The instance goes: its NIC's rules are forgotten.
	if _, err := st.Txn(ctx, nil, store.Delete(model.InstanceKey(set.Ref(), 0))); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if nsg.Default.Wanted(k) != nil {
		t.Error("rules still wanted for a gone instance")
	}
}
