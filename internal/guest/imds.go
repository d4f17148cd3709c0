package guest

import (
	"fmt"
	"strconv"

	"github.com/vmssd/vmssd/internal/driver"
)

// InstanceDocument is the body of GET /metadata/instance: the subset of
// Azure's Instance Metadata Service document that vmssd knows. As in IMDS,
// every scalar is a string (fault and update domains included).
type InstanceDocument struct {
	Compute Compute `json:"compute"`
}

// Compute is IMDS's "compute" section.
type Compute struct {
	AzEnvironment          string                 `json:"azEnvironment"`
	ComputerName           string                 `json:"computerName"`
	Location               string                 `json:"location"`
	Name                   string                 `json:"name"`
	Offer                  string                 `json:"offer"`
	OSProfile              OSProfile              `json:"osProfile"`
	OSType                 string                 `json:"osType"`
	PlatformFaultDomain    string                 `json:"platformFaultDomain"`
	PlatformUpdateDomain   string                 `json:"platformUpdateDomain"`
	Provider               string                 `json:"provider"`
	Publisher              string                 `json:"publisher"`
	ResourceGroupName      string                 `json:"resourceGroupName"`
	ResourceID             string                 `json:"resourceId"`
	SKU                    string                 `json:"sku"`
	StorageProfile         StorageProfile         `json:"storageProfile"`
	SubscriptionID         string                 `json:"subscriptionId"`
	Tags                   string                 `json:"tags"`
	Version                string                 `json:"version"`
	VirtualMachineScaleSet VirtualMachineScaleSet `json:"virtualMachineScaleSet"`
	VMID                   string                 `json:"vmId"`
	VMScaleSetName         string                 `json:"vmScaleSetName"`
	VMSize                 string                 `json:"vmSize"`
	Zone                   string                 `json:"zone"`
}

// OSProfile is IMDS's compute.osProfile.
type OSProfile struct {
	ComputerName string `json:"computerName"`
}

// StorageProfile is IMDS's compute.storageProfile (image reference only).
type StorageProfile struct {
	ImageReference ImageReference `json:"imageReference"`
}

// ImageReference is IMDS's compute.storageProfile.imageReference.
type ImageReference struct {
	ID        string `json:"id"`
	Offer     string `json:"offer"`
	Publisher string `json:"publisher"`
	SKU       string `json:"sku"`
	Version   string `json:"version"`
}

// VirtualMachineScaleSet is IMDS's compute.virtualMachineScaleSet.
type VirtualMachineScaleSet struct {
	ID string `json:"id"`
}

func newCompute(md driver.Metadata) Compute {
	vmss := fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachineScaleSets/%s",
		md.SubscriptionID, md.ResourceGroupName, md.VMScaleSetName)
	return Compute{
		AzEnvironment:        "AzurePublicCloud",
		ComputerName:         md.ComputerName,
		Location:             md.Location,
		Name:                 md.Name,
		Offer:                md.Offer,
		OSProfile:            OSProfile{ComputerName: md.ComputerName},
		OSType:               md.OSType,
		PlatformFaultDomain:  strconv.Itoa(md.FaultDomain),
		PlatformUpdateDomain: strconv.Itoa(md.UpdateDomain),
		Provider:             "Microsoft.Compute",
		Publisher:            md.Publisher,
		ResourceGroupName:    md.ResourceGroupName,
		ResourceID:           vmss + "/virtualMachines/" + md.InstanceID,
		SKU:                  md.SKU,
		StorageProfile: StorageProfile{ImageReference: ImageReference{
			ID:        md.ImageURI,
			Offer:     md.Offer,
			Publisher: md.Publisher,
			SKU:       md.SKU,
			Version:   md.ImageVersion,
		}},
		SubscriptionID:         md.SubscriptionID,
		Version:                md.ImageVersion,
		VirtualMachineScaleSet: VirtualMachineScaleSet{ID: vmss},
		VMID:                   md.VMID,
		VMScaleSetName:         md.VMScaleSetName,
		VMSize:                 md.VMSize,
	}
}
