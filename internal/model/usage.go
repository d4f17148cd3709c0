package model

import "fmt"

// Guard keys serialise the writes that a per-subscription bound depends on:
// every write that could raise a subscription's usage (a scale set write, a
// resource group creation) puts its guard key in the same transaction,
// conditioned on the guard's revision read before the usage was counted.
// Two such writes can then not both pass a count taken before the other.

// PrefixGuards holds the guard keys.
const PrefixGuards = "/guards/"

// GuardPrefix holds every guard key of a subscription.
func GuardPrefix(sub string) string { return PrefixGuards + lower(sub) + "/" }

// ComputeGuardKey guards the subscription's compute usage (scale sets).
func ComputeGuardKey(sub string) string { return GuardPrefix(sub) + "compute" }

// ResourceGroupGuardKey guards the number of the subscription's resource
// groups.
func ResourceGroupGuardKey(sub string) string { return GuardPrefix(sub) + "resourcegroups" }

// Usage is what a subscription uses of the things a Quota bounds.
type Usage struct {
	VCPUs        int64 `json:"vcpus"`
	Instances    int64 `json:"instances"`
	ScaleSets    int64 `json:"scaleSets"`
	StorageBytes int64 `json:"storageBytes"`
}

// SetUsage is the usage of one scale set: its capacity times its size's
// vCPUs. A size missing from the table (deleted by the operator while in
// use) counts one vCPU per instance.
func SetUsage(capacity int64, size string, sizes map[string]int) Usage {
	v, ok := sizes[lower(size)]
	if !ok || v < 1 {
		v = 1
	}
	return Usage{VCPUs: capacity * int64(v), Instances: capacity, ScaleSets: 1}
}

// Add returns u + o.
func (u Usage) Add(o Usage) Usage {
	return Usage{VCPUs: u.VCPUs + o.VCPUs, Instances: u.Instances + o.Instances, ScaleSets: u.ScaleSets + o.ScaleSets, StorageBytes: u.StorageBytes + o.StorageBytes}
}

// Sub returns u - o.
func (u Usage) Sub(o Usage) Usage {
	return Usage{VCPUs: u.VCPUs - o.VCPUs, Instances: u.Instances - o.Instances, ScaleSets: u.ScaleSets - o.ScaleSets, StorageBytes: u.StorageBytes - o.StorageBytes}
}

// Quota resource names, as Microsoft.Compute usages name them.
const (
	UsageCores     = "cores"
	UsageVMs       = "virtualMachines"
	UsageScaleSets = "virtualMachineScaleSets"
	UsageStorage   = "imageStorageMiB"
)

// QuotaExcess says which limit a change would exceed, and by how much.
type QuotaExcess struct {
	// Name is the usage name (UsageCores, ...); Title is how Azure's
	// messages and `az vm list-usage` call it.
	Name, Title string
	Limit       int64
	Current     int64
	Additional  int64
}

// Message is Azure's wording for an exceeded compute quota.
func (e *QuotaExcess) Message(location string) string {
	return fmt.Sprintf("Operation could not be completed as it results in exceeding approved %s quota. Additional details - Deployment Model: Resource Manager, Location: %s, Current Limit: %d, Current Usage: %d, Additional Required: %d, (Minimum) New Limit Required: %d. Ask the cloud operator to raise the quota (vmssctl admin quota set).",
		e.Title, location, e.Limit, e.Current, e.Additional, e.Current+e.Additional)
}

// UsageTitles are the localized names of the usages.
var UsageTitles = map[string]string{
	UsageCores:     "Total Regional vCPUs",
	UsageVMs:       "Virtual Machines",
	UsageScaleSets: "Virtual Machine Scale Sets",
	UsageStorage:   "Image Storage (MiB)",
}

// Check returns the first limit of q (made Effective) that going from cur
// to next exceeds, or nil. Only growth is checked: a change that lowers or
// keeps a usage already above its limit (after the operator lowered it)
// passes, so that a tenant can always scale in.
func (q Quota) Check(cur, next Usage) *QuotaExcess {
	q = q.Effective()
	for _, c := range []struct {
		name           string
		limit, cu, nxt int64
	}{
		{UsageCores, q.VCPUs, cur.VCPUs, next.VCPUs},
		{UsageVMs, q.Instances, cur.Instances, next.Instances},
		{UsageScaleSets, q.ScaleSets, cur.ScaleSets, next.ScaleSets},
		{UsageStorage, q.StorageBytes, cur.StorageBytes, next.StorageBytes},
	} {
		if c.limit < 0 || c.nxt <= c.cu || c.nxt <= c.limit {
			continue
		}
		title := UsageTitles[c.name]
		switch c.name {
		case UsageCores:
			title = "Total Regional Cores"
		case UsageStorage:
			title = "Image Storage (bytes)"
		}
		return &QuotaExcess{Name: c.name, Title: title, Limit: c.limit, Current: c.cu, Additional: c.nxt - c.cu}
	}
	return nil
}
