package apiserver

import (
	"encoding/json"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// What Azure shows of a scale set's VM profile that a model may leave out.
// Clients read these without checking for null (az vmss
// list-instance-connection-info walks networkProfile's NIC configurations),
// so GET fills them in the way Azure does.

// defaultOSDiskSizeGB is the OS disk size shown when the model names none:
// the size of Azure's marketplace Linux images.
const defaultOSDiskSizeGB = 30

// defaultNIC is the name of the default NIC configuration; instances show
// it as their network interface (.../virtualMachines/{id}/networkInterfaces/nic0).
const defaultNIC = "nic0"

// withProfileDefaults fills the OS disk's createOption (FromImage), caching
// (ReadWrite), osType (Windows when the OS profile is a Windows one, else
// Linux), diskSizeGB and managedDisk.storageAccountType (Standard_LRS), and,
// when the model has no NIC configuration, one primary NIC with one
// primary IPv4 configuration. Values the model has are kept.
func withProfileDefaults(p *armcompute.VirtualMachineScaleSetProperties) {
	if p.VirtualMachineProfile == nil {
		p.VirtualMachineProfile = &armcompute.VirtualMachineScaleSetVMProfile{}
	}
	vp := p.VirtualMachineProfile
	if vp.StorageProfile == nil {
		vp.StorageProfile = &armcompute.VirtualMachineScaleSetStorageProfile{}
	}
	if vp.StorageProfile.OSDisk == nil {
		vp.StorageProfile.OSDisk = &armcompute.VirtualMachineScaleSetOSDisk{}
	}
	d := vp.StorageProfile.OSDisk
	if d.CreateOption == nil {
		d.CreateOption = ptr(armcompute.DiskCreateOptionTypesFromImage)
	}
	if d.Caching == nil {
		d.Caching = ptr(armcompute.CachingTypesReadWrite)
	}
	if d.OSType == nil {
		os := armcompute.OperatingSystemTypesLinux
		if vp.OSProfile != nil && vp.OSProfile.WindowsConfiguration != nil {
			os = armcompute.OperatingSystemTypesWindows
		}
		d.OSType = &os
	}
	if d.DiskSizeGB == nil {
		d.DiskSizeGB = ptr(int32(defaultOSDiskSizeGB))
	}
	if d.Image == nil && len(d.VhdContainers) == 0 {
		// A managed disk (unmanaged disks come from a VHD URI).
		if d.ManagedDisk == nil {
			d.ManagedDisk = &armcompute.VirtualMachineScaleSetManagedDiskParameters{}
		}
		if d.ManagedDisk.StorageAccountType == nil {
			d.ManagedDisk.StorageAccountType = ptr(armcompute.StorageAccountTypesStandardLRS)
		}
	}
	if vp.NetworkProfile == nil {
		vp.NetworkProfile = &armcompute.VirtualMachineScaleSetNetworkProfile{}
	}
	if len(vp.NetworkProfile.NetworkInterfaceConfigurations) == 0 {
		vp.NetworkProfile.NetworkInterfaceConfigurations = []*armcompute.VirtualMachineScaleSetNetworkConfiguration{{
			Name: ptr(defaultNIC),
			Properties: &armcompute.VirtualMachineScaleSetNetworkConfigurationProperties{
				Primary:                     ptr(true),
				EnableAcceleratedNetworking: ptr(false),
				EnableIPForwarding:          ptr(false),
				DNSSettings:                 &armcompute.VirtualMachineScaleSetNetworkConfigurationDNSSettings{DNSServers: []*string{}},
				IPConfigurations: []*armcompute.VirtualMachineScaleSetIPConfiguration{{
					Name: ptr("ipconfig0"),
					Properties: &armcompute.VirtualMachineScaleSetIPConfigurationProperties{
						Primary:                 ptr(true),
						PrivateIPAddressVersion: ptr(armcompute.IPVersionIPv4),
					},
				}},
			},
		}}
	}
}

// profileWithDefaults is a copy of m's VM profile with the defaults filled
// in: a client that echoes what GET showed (az vmss update) does not change
// the model by that.
func profileWithDefaults(m *armcompute.VirtualMachineScaleSet) *armcompute.VirtualMachineScaleSetVMProfile {
	p := &armcompute.VirtualMachineScaleSetProperties{}
	if m.Properties != nil && m.Properties.VirtualMachineProfile != nil {
		b, _ := json.Marshal(m.Properties.VirtualMachineProfile)
		_ = json.Unmarshal(b, &p.VirtualMachineProfile)
	}
	withProfileDefaults(p)
	return p.VirtualMachineProfile
}
