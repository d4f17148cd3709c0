package model

// QuotaKey is the key of a subscription's quota record.
func QuotaKey(sub string) string { return "/quotas/" + lower(sub) }

// Quota is what the operator allows one subscription to use in this cloud.
// A zero limit means "the default" (DefaultQuota), not "nothing"; a negative
// limit means unlimited. Usage is never stored: it is counted from the
// records it consists of, in the transaction that would exceed it.
type Quota struct {
	Sub string `json:"sub"`
	// VCPUs bounds the sum of the sizes' vCPUs over all instances.
	VCPUs int64 `json:"vcpus,omitempty"`
	// Instances bounds the number of instances (scale set capacity).
	Instances int64 `json:"instances,omitempty"`
	// ScaleSets bounds the number of scale sets.
	ScaleSets int64 `json:"scaleSets,omitempty"`
	// StorageBytes bounds the unpacked bytes of the artifacts uploaded into
	// the subscription.
	StorageBytes int64 `json:"storageBytes,omitempty"`
}

// DefaultQuota applies to a subscription without a record, and fills the
// zero fields of one that has it.
var DefaultQuota = Quota{
	VCPUs:        100,
	Instances:    100,
	ScaleSets:    50,
	StorageBytes: 20 << 30,
}

// Effective returns q with zero limits replaced by DefaultQuota's.
func (q Quota) Effective() Quota {
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&q.VCPUs, DefaultQuota.VCPUs)
	def(&q.Instances, DefaultQuota.Instances)
	def(&q.ScaleSets, DefaultQuota.ScaleSets)
	def(&q.StorageBytes, DefaultQuota.StorageBytes)
	return q
}
