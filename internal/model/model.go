// Package model holds the records vmssd keeps in its state store and the keys
// they live under. Names are compared case-insensitively, as ARM does: keys use
// lower-cased names, records keep the caller's original spelling.
//
// Ownership: a ScaleSet record is written by the API (the user's intent; its
// ModRevision is the ARM etag); a ScaleSetStatus is written by the controller
// only; Instance records carry both the user's desired state (power, upgrade
// and reimage requests, protection, deletion) and the controller's applied
// state, and every writer uses compare-and-swap on ModRevision.
package model

import (
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/api/arm"
)

// Key prefixes.
const (
	PrefixSubscriptions  = "/subs/"
	PrefixPrincipals     = "/principals/"
	PrefixResourceGroups = "/rgs/"
	PrefixScaleSets      = "/vmss/"
	PrefixScaleSetStatus = "/vmss-status/"
	PrefixInstances      = "/inst/"
	PrefixOperations     = "/ops/"
	PrefixImages         = "/images/"
	PrefixSizes          = "/sizes/"
)

// ArtifactGrantKey records that an artifact was uploaded into a
// subscription, which may then name it as a custom image.
func ArtifactGrantKey(sub, digest string) string {
	return "/artifact-grants/" + lower(sub) + "/" + lower(digest)
}

// SizeKey is the key of a VM size.
func SizeKey(name string) string { return PrefixSizes + lower(name) }

// VMSize is a row of the operator's VM size table: what sku.name means.
type VMSize struct {
	Name             string `json:"name"`
	VCPUs            int    `json:"numberOfCores"`
	MemoryMB         int    `json:"memoryInMB"`
	OSDiskSizeMB     int    `json:"osDiskSizeInMB"`
	MaxDataDiskCount int    `json:"maxDataDiskCount"`
}

// DefaultSizes seed the size table at first start. They are small on
// purpose: this host emulates its VMs.
var DefaultSizes = []VMSize{
	{Name: "Standard_A1", VCPUs: 1, MemoryMB: 128, OSDiskSizeMB: 1047552, MaxDataDiskCount: 2},
	{Name: "Standard_A2", VCPUs: 2, MemoryMB: 256, OSDiskSizeMB: 1047552, MaxDataDiskCount: 4},
	{Name: "Standard_D1_v2", VCPUs: 1, MemoryMB: 256, OSDiskSizeMB: 1047552, MaxDataDiskCount: 4},
	{Name: "Standard_D2_v2", VCPUs: 2, MemoryMB: 512, OSDiskSizeMB: 1047552, MaxDataDiskCount: 8},
	// az vm create and az vmss create default to Standard_DS1_v2.
	{Name: "Standard_DS1_v2", VCPUs: 1, MemoryMB: 256, OSDiskSizeMB: 1047552, MaxDataDiskCount: 4},
}

func lower(s string) string { return strings.ToLower(s) }

// SubscriptionKey is the key of a subscription.
func SubscriptionKey(sub string) string { return PrefixSubscriptions + lower(sub) }

// PrincipalKey is the key of a principal (client id).
func PrincipalKey(clientID string) string { return PrefixPrincipals + lower(clientID) }

// ResourceGroupKey is the key of a resource group.
func ResourceGroupKey(sub, rg string) string {
	return PrefixResourceGroups + lower(sub) + "/" + lower(rg)
}

// ResourceGroupPrefix lists the resource groups of a subscription.
func ResourceGroupPrefix(sub string) string { return PrefixResourceGroups + lower(sub) + "/" }

// SetRef names a scale set.
type SetRef struct {
	Sub, RG, Name string
}

// String is "sub/rg/name", lower-cased: the controller's queue key.
func (r SetRef) String() string { return lower(r.Sub) + "/" + lower(r.RG) + "/" + lower(r.Name) }

// ScaleSetKey is the key of a scale set's spec record.
func ScaleSetKey(r SetRef) string { return PrefixScaleSets + r.String() }

// ScaleSetStatusKey is the key of a scale set's status record.
func ScaleSetStatusKey(r SetRef) string { return PrefixScaleSetStatus + r.String() }

// ScaleSetPrefix lists scale sets of a subscription, or of a resource group
// when rg is not empty.
func ScaleSetPrefix(sub, rg string) string {
	if rg == "" {
		return PrefixScaleSets + lower(sub) + "/"
	}
	return PrefixScaleSets + lower(sub) + "/" + lower(rg) + "/"
}

// InstancePrefix lists the instances of a scale set.
func InstancePrefix(r SetRef) string { return PrefixInstances + r.String() + "/" }

// InstanceKey is the key of one instance; ids are zero-padded so that keys
// sort by id.
func InstanceKey(r SetRef, id int64) string { return fmt.Sprintf("%s%012d", InstancePrefix(r), id) }

// RefFromKey parses "sub/rg/name" (a queue key) back into a SetRef.
func RefFromKey(k string) (SetRef, bool) {
	parts := strings.Split(k, "/")
	if len(parts) != 3 {
		return SetRef{}, false
	}
	return SetRef{Sub: parts[0], RG: parts[1], Name: parts[2]}, true
}

// OperationKey is the key of an async operation.
func OperationKey(id string) string { return PrefixOperations + lower(id) }

// ImageKey is the key of a platform image version.
func ImageKey(publisher, offer, sku, version string) string {
	return PrefixImages + lower(publisher) + "/" + lower(offer) + "/" + lower(sku) + "/" + lower(version)
}

// Subscription is a tenant's subscription.
type Subscription struct {
	ID          string    `json:"id"`
	DisplayName string    `json:"displayName"`
	State       string    `json:"state"`
	Created     time.Time `json:"created"`
}

// Principal is a client credential: an operator or a tenant.
type Principal struct {
	ClientID      string    `json:"clientId"`
	DisplayName   string    `json:"displayName,omitempty"`
	Role          string    `json:"role"`
	Subscriptions []string  `json:"subscriptions,omitempty"`
	SecretHash    string    `json:"secretHash"`
	Created       time.Time `json:"created"`
	// UID identifies this principal record: a new random value each time a
	// principal is created, so that a token of a deleted principal never
	// names a later one with the same client id (auth.NewPrincipalUID).
	UID string `json:"uid,omitempty"`
	// SecretGeneration counts secret rotations; tokens carry it and die
	// with the secret they were issued for.
	SecretGeneration int64 `json:"secretGeneration,omitempty"`
}

// ResourceGroup is a resource group.
type ResourceGroup struct {
	Sub       string            `json:"sub"`
	Name      string            `json:"name"`
	Location  string            `json:"location"`
	Tags      map[string]string `json:"tags,omitempty"`
	Deleting  bool              `json:"deleting,omitempty"`
	Operation string            `json:"operation,omitempty"`
}

// ScaleSet is the user's scale set: the ARM model plus what the API tracks.
type ScaleSet struct {
	Sub  string `json:"sub"`
	RG   string `json:"rg"`
	Name string `json:"name"`
	// Model is the ARM resource as the user defined it, secrets included
	// (they are stripped on every read). Read-only fields are not kept.
	Model *armcompute.VirtualMachineScaleSet `json:"model"`
	// UniqueID is the scale set's immutable uniqueId.
	UniqueID string    `json:"uniqueId"`
	Created  time.Time `json:"created"`
	// Generation grows with every change the controller must act on.
	Generation int64 `json:"generation"`
	// ModelVersion grows with every change of the VM model
	// (virtualMachineProfile or sku name); instances record the one they run.
	ModelVersion int64 `json:"modelVersion"`
	// Deleting is set by DELETE; the controller removes instances, then the
	// records.
	Deleting bool `json:"deleting,omitempty"`
}

// Ref returns the scale set's reference.
func (s *ScaleSet) Ref() SetRef { return SetRef{Sub: s.Sub, RG: s.RG, Name: s.Name} }

// ScaleSetStatus is written by the controller.
type ScaleSetStatus struct {
	ObservedGeneration int64            `json:"observedGeneration"`
	ProvisioningState  string           `json:"provisioningState"`
	Error              *arm.ErrorDetail `json:"error,omitempty"`
	ErrorGeneration    int64            `json:"errorGeneration,omitempty"`
	NextInstanceID     int64            `json:"nextInstanceId"`
}

// Desired power states of an instance.
const (
	PowerRunning     = "running"
	PowerStopped     = "stopped"
	PowerDeallocated = "deallocated"
)

// Provisioning states.
const (
	StateCreating  = "Creating"
	StateUpdating  = "Updating"
	StateSucceeded = "Succeeded"
	StateFailed    = "Failed"
	StateDeleting  = "Deleting"
)

// ResolvedImage is the exact image an instance was built from.
type ResolvedImage struct {
	Publisher    string `json:"publisher,omitempty"`
	Offer        string `json:"offer,omitempty"`
	SKU          string `json:"sku,omitempty"`
	Version      string `json:"version,omitempty"`      // as the model asked ("latest" or exact)
	ExactVersion string `json:"exactVersion,omitempty"` // what it resolved to
	URI          string `json:"uri,omitempty"`          // custom image
	Digest       string `json:"digest"`
	OSType       string `json:"osType"`
}

// Instance is one scale set instance.
type Instance struct {
	Sub          string    `json:"sub"`
	RG           string    `json:"rg"`
	ScaleSet     string    `json:"scaleSet"`
	ID           int64     `json:"id"`
	VMID         string    `json:"vmId"`
	ComputerName string    `json:"computerName"`
	FaultDomain  int       `json:"faultDomain"`
	UpdateDomain int       `json:"updateDomain"`
	Host         string    `json:"host"`
	Created      time.Time `json:"created"`

	// Applied state (controller).
	ModelVersion      int64            `json:"modelVersion"`
	Image             ResolvedImage    `json:"image"`
	Size              string           `json:"size"`
	ProvisioningState string           `json:"provisioningState"`
	Error             *arm.ErrorDetail `json:"error,omitempty"`
	AppliedReimage    int64            `json:"appliedReimage,omitempty"`
	AppliedRestart    int64            `json:"appliedRestart,omitempty"`
	// Placed is true once the host has been asked to create the instance.
	Placed bool `json:"placed,omitempty"`
	// FailedModel is the model version an upgrade to failed; it is not
	// retried until the user asks again (manualupgrade) or the model changes.
	FailedModel int64 `json:"failedModel,omitempty"`

	// Desired state (API).
	Power       string `json:"power"`
	TargetModel int64  `json:"targetModel,omitempty"`
	// UpgradeSeq counts manualupgrade requests, so that a failure of an
	// earlier attempt does not cancel a newer request.
	UpgradeSeq     int64 `json:"upgradeSeq,omitempty"`
	ReimageSeq     int64 `json:"reimageSeq,omitempty"`
	RestartSeq     int64 `json:"restartSeq,omitempty"`
	ProtectScaleIn bool  `json:"protectScaleIn,omitempty"`
	ProtectActions bool  `json:"protectActions,omitempty"`
	Deleting       bool  `json:"deleting,omitempty"`
}

// Name is the instance's ARM name, "{vmss}_{id}".
func (i *Instance) Name() string { return fmt.Sprintf("%s_%d", i.ScaleSet, i.ID) }

// Ref returns the instance's scale set reference.
func (i *Instance) Ref() SetRef { return SetRef{Sub: i.Sub, RG: i.RG, Name: i.ScaleSet} }

// Operation is a long-running operation.
type Operation struct {
	ID         string           `json:"id"`
	Sub        string           `json:"sub"`
	Location   string           `json:"location"`
	Kind       string           `json:"kind"`
	Target     string           `json:"target"` // SetRef key or resource group key
	Generation int64            `json:"generation"`
	Status     string           `json:"status"`
	Start      time.Time        `json:"start"`
	End        *time.Time       `json:"end,omitempty"`
	Error      *arm.ErrorDetail `json:"error,omitempty"`
}

// ImageVersion is a platform image version in the local catalog.
type ImageVersion struct {
	Publisher string    `json:"publisher"`
	Offer     string    `json:"offer"`
	SKU       string    `json:"sku"`
	Version   string    `json:"version"`
	Location  string    `json:"location"`
	OSType    string    `json:"osType"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"`
	Created   time.Time `json:"created"`
}
