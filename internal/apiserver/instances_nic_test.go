package apiserver

import (
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/internal/model"
)

func TestInstanceNICsNamedAfterConfigurations(t *testing.T) {
	const base = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/ss/virtualMachines/3"
	withNICs := func(names ...string) *model.ScaleSet {
		var ncs []*armcompute.VirtualMachineScaleSetNetworkConfiguration
		for i, n := range names {
			ncs = append(ncs, &armcompute.VirtualMachineScaleSetNetworkConfiguration{
				Name:       ptr(n),
				Properties: &armcompute.VirtualMachineScaleSetNetworkConfigurationProperties{Primary: ptr(i == 0)},
			})
		}
		return &model.ScaleSet{Model: &armcompute.VirtualMachineScaleSet{Properties: &armcompute.VirtualMachineScaleSetProperties{
			VirtualMachineProfile: &armcompute.VirtualMachineScaleSetVMProfile{
				NetworkProfile: &armcompute.VirtualMachineScaleSetNetworkProfile{NetworkInterfaceConfigurations: ncs},
			},
		}}}
	}
	tests := []struct {
		name string
		set  *model.ScaleSet
		want []string
	}{
		{"no network profile", &model.ScaleSet{Model: &armcompute.VirtualMachineScaleSet{}}, []string{"nic0"}},
		{"one named config", withNICs("web-nic"), []string{"web-nic"}},
		{"two configs", withNICs("front", "back"), []string{"front", "back"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := instanceNICs(tt.set, base)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d NICs, want %d", len(got), len(tt.want))
			}
			for i, w := range tt.want {
				if id := *got[i].ID; id != base+"/networkInterfaces/"+w {
					t.Errorf("NIC %d id = %s, want .../networkInterfaces/%s", i, id, w)
				}
			}
		})
	}
}
