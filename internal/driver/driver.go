// Package driver defines how vmssd runs instances on a host. A Driver turns
// an instance Spec into something running (a supervised process, a QEMU
// virtual machine, ...) and reports what it observes. The controller never
// touches the local machine directly: it talks to hosts, and each host has a
// driver. Drivers are imperative and idempotent: calling Create for an
// instance that already exists with the same Spec.ID is not an error.
package driver

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for an instance the driver does not know.
var ErrNotFound = errors.New("driver: instance not found")

// ErrImageInvalid is returned when the image directory cannot be used by
// this driver (wrong format, missing manifest, ...).
var ErrImageInvalid = errors.New("driver: image not usable by this driver")

// ErrInsufficientCapacity is wrapped by errors of a host that cannot give an
// instance what its size asks (memory beyond the overcommit allowance, ...).
var ErrInsufficientCapacity = errors.New("driver: insufficient host capacity")

// ErrSizeUnsupported is wrapped by errors about a VM size the driver cannot
// run (unknown, or too small for the image).
var ErrSizeUnsupported = errors.New("driver: VM size not supported")

// ErrSandboxUnavailable is wrapped by errors about an instance that must run
// sandboxed (a tenant's image) on a host that cannot sandbox it (no runc,
// not root), or an operator image there without the operator's consent to
// run it unsandboxed.
var ErrSandboxUnavailable = errors.New("driver: this host cannot sandbox the instance")

// ErrNetworkInvalid is wrapped by errors about a Spec.Network that cannot
// be attached (not an IPv4 address, prefix length, gateway or MAC).
var ErrNetworkInvalid = errors.New("driver: invalid network attachment")

// Power is the observed power state of an instance.
type Power string

const (
	PowerStarting     Power = "starting"
	PowerRunning      Power = "running"
	PowerStopping     Power = "stopping"
	PowerStopped      Power = "stopped"
	PowerDeallocating Power = "deallocating"
	PowerDeallocated  Power = "deallocated"
	PowerUnknown      Power = "unknown"
)

// Spec is everything a driver needs to create an instance. It is persisted by
// the driver next to the instance so that Recover can rebuild its state.
type Spec struct {
	// ID is the instance's unique, immutable identity (the ARM vmId). Driver
	// state is keyed by it.
	ID string `json:"id"`
	// ImageDir is an unpacked, read-only image (see package artifact for the
	// layout: manifest.json + rootfs/). Drivers must not modify it.
	ImageDir string `json:"imageDir"`
	// ImageDigest identifies the image content ("sha256:...").
	ImageDigest string `json:"imageDigest"`
	// Size is the VM size (sku.name), resolved through the operator's size
	// table into VCPUs and MemoryMB; drivers that enforce sizes use them.
	Size     string `json:"size,omitempty"`
	VCPUs    int    `json:"vcpus,omitempty"`
	MemoryMB int    `json:"memoryMB,omitempty"`
	// Metadata is served by the guest as its instance-metadata document
	// (image version, instance id, fault and update domain, ...).
	Metadata Metadata `json:"metadata"`
	// OperatorImage says the image was published by the operator (a
	// marketplace image). Anything else (a tenant's upload, a custom URI) is
	// untrusted: a process driver runs it only sandboxed.
	OperatorImage bool `json:"operatorImage,omitempty"`
	// Provisioning is what a VM's guest agent (cloud-init) applies at first
	// boot. Drivers keep it only in files readable by root.
	Provisioning Provisioning `json:"provisioning,omitempty"`
	// Network attaches the instance to a virtual network where the host
	// can (Linux, root): a process instance's network namespace gets a veth
	// on the network's bridge, a VM a TAP device on it. Zero (no
	// NetworkID): loopback forwards only, as on hosts that cannot.
	Network Network `json:"network,omitzero"`
}

// Network is an instance's NIC on a virtual network, as the controller
// resolves it from the scale set's networkProfile and IPAM.
type Network struct {
	// NetworkID names the virtual network: instances with the same
	// NetworkID share one Linux bridge and reach each other; different
	// networks (other virtual networks, other tenants) are isolated even
	// when their address ranges overlap. Use the virtual network's ARM id
	// (lower-cased), which is unique across tenants.
	NetworkID string `json:"networkId,omitempty"`
	// PrivateIP and PrefixLen are the NIC's address in its subnet
	// ("10.0.0.4", 24).
	PrivateIP string `json:"privateIp,omitempty"`
	PrefixLen int    `json:"prefixLen,omitempty"`
	// Gateway, when set, becomes the default route (Azure's is the
	// subnet's first address; nothing answers there yet).
	Gateway string `json:"gateway,omitempty"`
	// MAC is the NIC's hardware address ("02:..."); empty derives a
	// stable locally administered one from the instance id.
	MAC string `json:"mac,omitempty"`
}

// Provisioning is the scale set model's osProfile as a guest needs it.
type Provisioning struct {
	AdminUsername string   `json:"adminUsername,omitempty"`
	SSHKeys       []string `json:"sshKeys,omitempty"`
	// CustomData is osProfile.customData, decoded from base64.
	CustomData []byte `json:"customData,omitempty"`
}

// Metadata is the instance-metadata document handed to the guest.
type Metadata struct {
	SubscriptionID    string `json:"subscriptionId"`
	ResourceGroupName string `json:"resourceGroupName"`
	VMScaleSetName    string `json:"vmScaleSetName"`
	Name              string `json:"name"`
	InstanceID        string `json:"instanceId"`
	VMID              string `json:"vmId"`
	ComputerName      string `json:"computerName"`
	Location          string `json:"location"`
	VMSize            string `json:"vmSize"`
	FaultDomain       int    `json:"platformFaultDomain"`
	UpdateDomain      int    `json:"platformUpdateDomain"`
	OSType            string `json:"osType"`
	Publisher         string `json:"publisher,omitempty"`
	Offer             string `json:"offer,omitempty"`
	SKU               string `json:"sku,omitempty"`
	ImageVersion      string `json:"version,omitempty"`
	ImageURI          string `json:"imageUri,omitempty"`
	ModelVersion      int64  `json:"modelVersion"`
	// PrivateIP is the primary NIC's private address from its subnet
	// (IPAM; empty when the model names no subnet).
	PrivateIP string `json:"privateIp,omitempty"`
}

// Status is what the driver observes about one instance.
type Status struct {
	ID          string `json:"id"`
	Power       Power  `json:"power"`
	ImageDigest string `json:"imageDigest"`
	// HealthURL is the http URL the host prober GETs (empty when not running).
	HealthURL string `json:"healthUrl,omitempty"`
	// Ports maps a guest port name ("health", "ssh") to a host address.
	Ports map[string]string `json:"ports,omitempty"`
	// PID of the instance process (0 when none).
	PID int `json:"pid,omitempty"`
	// Since is when Power last changed.
	Since time.Time `json:"since"`
	// Message explains the state (exit status, boot failure, ...).
	Message string `json:"message,omitempty"`
	// Restarts counts how often the supervisor restarted a crashed guest.
	Restarts int `json:"restarts,omitempty"`
	// Accel says how a virtual machine is accelerated ("kvm" or "tcg");
	// empty for drivers without virtualisation.
	Accel string `json:"accel,omitempty"`
	// Isolation says how a process instance is isolated from the host:
	// "runc" (an OCI container) or "none" (a plain host process, allowed
	// by the operator); empty for virtual machines.
	Isolation string `json:"isolation,omitempty"`
	// Network says how the instance is addressed: "bridge" (attached to
	// its virtual network's bridge with PrivateIP) or "loopback" (only the
	// loopback forwards in Ports); empty for drivers that do not say.
	Network string `json:"network,omitempty"`
	// PrivateIP is the instance's address on its virtual network (bridge
	// mode only).
	PrivateIP string `json:"privateIp,omitempty"`
	// Failure, when set, is an ARM error code saying the instance stopped
	// because it failed (e.g. "OSProvisioningTimedOut" for a VM that did not
	// boot in time); Message explains it. It clears when the instance is
	// started again.
	Failure string `json:"failure,omitempty"`
}

// ConsoleReader is implemented by drivers that capture an instance's console
// (a VM's serial port, a process's stdout and stderr). The result is bounded
// (the newest bytes are kept).
type ConsoleReader interface {
	Console(ctx context.Context, id string) ([]byte, error)
}

// Driver runs instances on one host.
type Driver interface {
	// Name is the driver's name ("process", "qemu").
	Name() string
	// Create prepares a fresh OS disk from the image and starts the instance.
	// Creating an existing ID with the same image is a no-op.
	Create(ctx context.Context, spec Spec) (Status, error)
	// Start boots a stopped or deallocated instance (same disk).
	Start(ctx context.Context, id string) (Status, error)
	// Stop powers the instance off and keeps its disk. graceful=false skips
	// the guest shutdown. Deallocate additionally releases the host
	// resources (process, ports, memory) but keeps the disk.
	Stop(ctx context.Context, id string, graceful bool) (Status, error)
	Deallocate(ctx context.Context, id string) (Status, error)
	// Restart stops and starts the instance.
	Restart(ctx context.Context, id string) (Status, error)
	// Reimage replaces the OS disk with a fresh one from spec's image (which
	// may be a new image: this is also how upgrades apply) and leaves the
	// instance running.
	Reimage(ctx context.Context, spec Spec) (Status, error)
	// Delete stops the instance and removes everything it had. Deleting an
	// unknown ID returns an error wrapping ErrNotFound, which callers treat
	// as "already deleted".
	Delete(ctx context.Context, id string) error
	// Inspect returns the current status of one instance, or ErrNotFound.
	Inspect(ctx context.Context, id string) (Status, error)
	// List returns the status of every instance the driver knows.
	List(ctx context.Context) ([]Status, error)
	// Recover re-adopts instances after a restart of vmssd: it reads the
	// driver's on-disk state, re-attaches to guests that are still running
	// and restarts supervision. It is called once, before any other method.
	Recover(ctx context.Context) ([]Status, error)
	// Close stops supervising (it does not stop the guests) and releases
	// resources.
	Close() error
}
