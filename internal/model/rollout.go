package model

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/vmssd/vmssd/api/arm"
)

// Rolling upgrades (rollouts).
//
// A rollout is one rolling upgrade of a scale set: started by a model change
// on a Rolling set, by POST osRollingUpgrade, or by the platform when a newer
// version of the image a `latest` set runs lands in the catalog (automatic OS
// image upgrade). It is a persisted state machine: the controller asks the
// pure planner (internal/rollout) for the next step, writes the new record
// (CAS on its ModRevision) and only then acts on instances, so a restart
// resumes from the record.
//
// Keys: PrefixRollouts + "{sub}/{rg}/{name}/" + a 12-digit inverted sequence
// number (RolloutKey), so that a prefix list of a scale set returns its
// rollouts newest first: the first record is rollingUpgrades/latest, the
// list is osUpgradeHistory. Readers (the API, the metrics collectors) must
// treat the records as read-only; only the controller writes them after
// the API has created one (osRollingUpgrade) or flagged it (cancel,
// approve).
const PrefixRollouts = "/rollouts/"

// RolloutHistory is how many rollouts of a scale set are kept (the
// oldest goes when a new one starts).
const RolloutHistory = 100

// maxRolloutSeq bounds rollout sequence numbers (keys invert them).
const maxRolloutSeq = 999999999999

// RolloutPrefix lists the rollouts of a scale set, newest first.
func RolloutPrefix(r SetRef) string { return PrefixRollouts + r.String() + "/" }

// RolloutKey is the key of a scale set's rollout number seq (1, 2, ...).
func RolloutKey(r SetRef, seq int64) string {
	return fmt.Sprintf("%s%012d", RolloutPrefix(r), maxRolloutSeq-seq)
}

// RolloutSetKey returns the scale set queue key ("sub/rg/name") of a
// rollout key.
func RolloutSetKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, PrefixRollouts)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}

// Rollout running states (runningStatus.code on the wire).
const (
	RolloutRollingForward = "RollingForward"
	RolloutCancelled      = "Cancelled"
	RolloutCompleted      = "Completed"
	RolloutFaulted        = "Faulted"
)

// Rollout phases while RollingForward (vmssd's own detail, shown in
// rollingUpgrades/latest as properties.vmssd.phase).
const (
	PhaseStarting         = "Starting"         // recorded, target image not yet resolved
	PhaseUpgrading        = "Upgrading"        // a batch is in flight
	PhasePaused           = "Paused"           // pauseTimeBetweenBatches
	PhaseAwaitingApproval = "AwaitingApproval" // an approval gate (POST rollingUpgrades/approve)
	PhaseWaitingForHealth = "WaitingForHealth" // no healthy instance may be taken down now
	PhaseWaitingForDomain = "WaitingForDomain" // domain-aware: the previous update domain is not all healthy
)

// Rollout kinds.
const (
	RolloutKindModel       = "Model"       // a model change on a Rolling set
	RolloutKindOS          = "OS"          // POST osRollingUpgrade
	RolloutKindAutomaticOS = "AutomaticOS" // automatic OS image upgrade
)

// Who started a rollout (startedBy on the wire).
const (
	StartedByUser     = "User"
	StartedByPlatform = "Platform"
)

// Approval gates (the vmssd.rolling.approval tag).
const (
	ApprovalNone       = ""
	ApprovalEachBatch  = "eachBatch"
	ApprovalFirstBatch = "firstBatch"
)

// RollingPolicy is a scale set's rolling upgrade policy with Azure's
// defaults applied, plus vmssd's own options.
type RollingPolicy struct {
	MaxBatchInstancePercent               int           `json:"maxBatchInstancePercent"`
	MaxUnhealthyInstancePercent           int           `json:"maxUnhealthyInstancePercent"`
	MaxUnhealthyUpgradedInstancePercent   int           `json:"maxUnhealthyUpgradedInstancePercent"`
	PauseTimeBetweenBatches               time.Duration `json:"pauseTimeBetweenBatches"` // nanoseconds
	PrioritizeUnhealthyInstances          bool          `json:"prioritizeUnhealthyInstances,omitempty"`
	RollbackFailedInstancesOnPolicyBreach bool          `json:"rollbackFailedInstancesOnPolicyBreach,omitempty"`
	MaxSurge                              bool          `json:"maxSurge,omitempty"`
	EnableCrossZoneUpgrade                bool          `json:"enableCrossZoneUpgrade,omitempty"`
	// DomainAware (tag vmssd.rolling.domainAware=true): the batch cap
	// applies to one update domain's instances, and a domain starts only
	// when every instance of the domains before it is healthy.
	DomainAware bool `json:"domainAware,omitempty"`
	// Approval (tag vmssd.rolling.approval): ApprovalEachBatch stops after
	// every batch, ApprovalFirstBatch after the first (a canary), until
	// POST rollingUpgrades/approve.
	Approval string `json:"approval,omitempty"`
}

// Azure's rolling upgrade policy defaults and ranges.
const (
	DefaultMaxBatchInstancePercent             = 20
	DefaultMaxUnhealthyInstancePercent         = 20
	DefaultMaxUnhealthyUpgradedInstancePercent = 20
	// MaxPauseTimeBetweenBatches bounds pauseTimeBetweenBatches.
	MaxPauseTimeBetweenBatches = 2 * time.Hour
)

// vmssd's rolling policy tags.
const (
	TagDomainAware = "vmssd.rolling.domainAware"
	TagApproval    = "vmssd.rolling.approval"
)

// RolloutPrev is what an instance ran before a rollout upgraded it: a
// rollback returns it there.
type RolloutPrev struct {
	ID           int64         `json:"id"`
	ModelVersion int64         `json:"modelVersion"`
	Image        ResolvedImage `json:"image"`
}

// RolloutBatch is one batch of a rollout.
type RolloutBatch struct {
	Index        int           `json:"index"`
	UpdateDomain int           `json:"updateDomain"`
	IDs          []int64       `json:"ids"`
	Prev         []RolloutPrev `json:"prev,omitempty"`
	Started      time.Time     `json:"started"`
	// Finished is set once every member is healthy or failed.
	Finished *time.Time `json:"finished,omitempty"`
	// Surge (maxSurge) are the new instances created on the target for
	// the members, Surge[i] replacing IDs[i]: the members keep running
	// until their replacements are healthy, then they are deleted.
	Surge []int64 `json:"surge,omitempty"`
}

// Rollout is one rolling upgrade of a scale set.
type Rollout struct {
	Sub      string `json:"sub"`
	RG       string `json:"rg"`
	ScaleSet string `json:"scaleSet"`
	Seq      int64  `json:"seq"`
	// Kind is RolloutKind*; StartedBy is StartedByUser or StartedByPlatform.
	Kind      string        `json:"kind"`
	StartedBy string        `json:"startedBy"`
	Policy    RollingPolicy `json:"policy"`
	// DisableRollback (automatic OS upgrades: disableAutomaticRollback)
	// keeps failed instances on the new image; otherwise an automatic OS
	// upgrade always rolls failed instances back on a breach.
	DisableRollback bool `json:"disableRollback,omitempty"`
	// TargetModel is the scale set model version the rollout moves
	// instances to; TargetImage the exact image (resolved once, when the
	// rollout starts). An instance is up to date when it runs both.
	TargetModel int64         `json:"targetModel"`
	TargetImage ResolvedImage `json:"targetImage"`

	Status         string     `json:"status"` // Rollout* running state
	Phase          string     `json:"phase,omitempty"`
	Started        time.Time  `json:"started"`
	Ended          *time.Time `json:"ended,omitempty"`
	LastAction     string     `json:"lastAction"` // Start or Cancel
	LastActionTime time.Time  `json:"lastActionTime"`
	// CancelRequested is set by POST rollingUpgrades/cancel.
	CancelRequested bool `json:"cancelRequested,omitempty"`
	// Approvals counts POST rollingUpgrades/approve calls honoured.
	Approvals int `json:"approvals,omitempty"`
	// PauseUntil ends a pause between batches; WaitSince starts a wait
	// for health (bounded by the health grace period).
	PauseUntil time.Time `json:"pauseUntil,omitzero"`
	WaitSince  time.Time `json:"waitSince,omitzero"`

	Batches   []RolloutBatch `json:"batches,omitempty"`
	Succeeded []int64        `json:"succeeded,omitempty"` // upgraded and healthy
	Failed    []int64        `json:"failed,omitempty"`    // upgrade failed or unhealthy after it
	// RollbackPending are failed instances still to be rolled back after a
	// breach; RolledBack and RollbackFailed record the outcome.
	RollbackPending []int64 `json:"rollbackPending,omitempty"`
	RolledBack      []int64 `json:"rolledBack,omitempty"`
	RollbackFailed  []int64 `json:"rollbackFailed,omitempty"`
	// Total is the number of instances the rollout found to upgrade when
	// it started (progress: pending = Total - done - in progress).
	Total int `json:"total"`

	Error         *arm.ErrorDetail `json:"error,omitempty"`
	RollbackError *arm.ErrorDetail `json:"rollbackError,omitempty"`
	// Operation is the operation (osRollingUpgrade) that ends with the
	// rollout; CancelOperations are the cancels waiting for it.
	Operation        string   `json:"operation,omitempty"`
	CancelOperations []string `json:"cancelOperations,omitempty"`
}

// Ref returns the rollout's scale set reference.
func (r *Rollout) Ref() SetRef { return SetRef{Sub: r.Sub, RG: r.RG, Name: r.ScaleSet} }

// Active reports whether the rollout is still rolling forward.
func (r *Rollout) Active() bool { return r.Status == RolloutRollingForward }

// Current returns the batch in flight, or nil.
func (r *Rollout) Current() *RolloutBatch {
	if n := len(r.Batches); n > 0 && r.Batches[n-1].Finished == nil {
		return &r.Batches[n-1]
	}
	return nil
}

// InProgress lists the members of the batch in flight that are not yet
// decided.
func (r *Rollout) InProgress() []int64 {
	b := r.Current()
	if b == nil {
		return nil
	}
	return b.IDs
}

// RollingPolicy returns the scale set's rolling policy with defaults.
func (s *ScaleSet) RollingPolicy() RollingPolicy {
	p := RollingPolicy{
		MaxBatchInstancePercent:             DefaultMaxBatchInstancePercent,
		MaxUnhealthyInstancePercent:         DefaultMaxUnhealthyInstancePercent,
		MaxUnhealthyUpgradedInstancePercent: DefaultMaxUnhealthyUpgradedInstancePercent,
	}
	props := s.props()
	if up := props.UpgradePolicy; up != nil && up.RollingUpgradePolicy != nil {
		rp := up.RollingUpgradePolicy
		if rp.MaxBatchInstancePercent != nil {
			p.MaxBatchInstancePercent = int(*rp.MaxBatchInstancePercent)
		}
		if rp.MaxUnhealthyInstancePercent != nil {
			p.MaxUnhealthyInstancePercent = int(*rp.MaxUnhealthyInstancePercent)
		}
		if rp.MaxUnhealthyUpgradedInstancePercent != nil {
			p.MaxUnhealthyUpgradedInstancePercent = int(*rp.MaxUnhealthyUpgradedInstancePercent)
		}
		if rp.PauseTimeBetweenBatches != nil {
			if d, err := ParseISODuration(*rp.PauseTimeBetweenBatches); err == nil {
				p.PauseTimeBetweenBatches = d
			}
		}
		p.PrioritizeUnhealthyInstances = rp.PrioritizeUnhealthyInstances != nil && *rp.PrioritizeUnhealthyInstances
		p.RollbackFailedInstancesOnPolicyBreach = rp.RollbackFailedInstancesOnPolicyBreach != nil && *rp.RollbackFailedInstancesOnPolicyBreach
		p.MaxSurge = rp.MaxSurge != nil && *rp.MaxSurge
		p.EnableCrossZoneUpgrade = rp.EnableCrossZoneUpgrade != nil && *rp.EnableCrossZoneUpgrade
	}
	if s.Model != nil {
		for k, v := range s.Model.Tags {
			if v == nil {
				continue
			}
			switch {
			case strings.EqualFold(k, TagDomainAware):
				p.DomainAware = strings.EqualFold(*v, "true")
			case strings.EqualFold(k, TagApproval):
				switch {
				case strings.EqualFold(*v, ApprovalEachBatch):
					p.Approval = ApprovalEachBatch
				case strings.EqualFold(*v, ApprovalFirstBatch):
					p.Approval = ApprovalFirstBatch
				}
			}
		}
	}
	return p
}

// AutomaticOSUpgrade is the scale set's automaticOSUpgradePolicy.
type AutomaticOSUpgrade struct {
	Enabled          bool
	DisableRollback  bool
	UseRollingPolicy bool
}

// AutomaticOSUpgrade returns upgradePolicy.automaticOSUpgradePolicy.
func (s *ScaleSet) AutomaticOSUpgrade() AutomaticOSUpgrade {
	var a AutomaticOSUpgrade
	if up := s.props().UpgradePolicy; up != nil && up.AutomaticOSUpgradePolicy != nil {
		ap := up.AutomaticOSUpgradePolicy
		a.Enabled = ap.EnableAutomaticOSUpgrade != nil && *ap.EnableAutomaticOSUpgrade
		a.DisableRollback = ap.DisableAutomaticRollback != nil && *ap.DisableAutomaticRollback
		a.UseRollingPolicy = ap.UseRollingUpgradePolicy != nil && *ap.UseRollingUpgradePolicy
	}
	return a
}

// HealthExtension is the Application Health extension of a model
// (ApplicationHealthLinux / ApplicationHealthWindows), with its defaults.
type HealthExtension struct {
	Name        string
	Protocol    string // http, https or tcp
	Port        int
	RequestPath string
	Interval    time.Duration
	Probes      int
	Grace       time.Duration
}

// Application Health extension defaults (Azure's).
const (
	DefaultHealthInterval = 5 * time.Second
	DefaultHealthProbes   = 1
)

// HealthExtension returns the model's Application Health extension and
// whether there is one. Settings that do not parse are left at their
// defaults here; the API refuses them on write.
func (s *ScaleSet) HealthExtension() (HealthExtension, bool) {
	vp := s.props().VirtualMachineProfile
	if vp == nil || vp.ExtensionProfile == nil {
		return HealthExtension{}, false
	}
	for _, ext := range vp.ExtensionProfile.Extensions {
		if ext == nil || ext.Properties == nil || ext.Properties.Type == nil {
			continue
		}
		t := *ext.Properties.Type
		if !strings.EqualFold(t, "ApplicationHealthLinux") && !strings.EqualFold(t, "ApplicationHealthWindows") {
			continue
		}
		h := HealthExtension{Protocol: "http", Interval: DefaultHealthInterval, Probes: DefaultHealthProbes}
		if ext.Name != nil {
			h.Name = *ext.Name
		}
		settings, _ := ext.Properties.Settings.(map[string]any)
		for k, v := range settings {
			switch strings.ToLower(k) {
			case "protocol":
				if s, ok := v.(string); ok {
					h.Protocol = strings.ToLower(s)
				}
			case "port":
				h.Port = intSetting(v)
			case "requestpath":
				if s, ok := v.(string); ok {
					h.RequestPath = s
				}
			case "intervalinseconds":
				if n := intSetting(v); n > 0 {
					h.Interval = time.Duration(n) * time.Second
				}
			case "numberofprobes":
				if n := intSetting(v); n > 0 {
					h.Probes = n
				}
			case "graceperiod":
				if n := intSetting(v); n > 0 {
					h.Grace = time.Duration(n) * time.Second
				}
			}
		}
		if h.Grace == 0 {
			h.Grace = h.Interval * time.Duration(h.Probes)
		}
		return h, true
	}
	return HealthExtension{}, false
}

func intSetting(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case int:
		return x
	case int32:
		return int(x)
	case int64:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	}
	return 0
}

// ParseISODuration parses an ISO 8601 duration of days, hours, minutes and
// seconds ("PT5S", "PT1M30S", "P1DT2H"; fractional seconds allowed), the
// form pauseTimeBetweenBatches takes.
func ParseISODuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not an ISO 8601 duration such as PT0S or PT1M30S", s)
	rest, ok := strings.CutPrefix(strings.ToUpper(s), "P")
	if !ok || rest == "" {
		return 0, bad
	}
	var d time.Duration
	inTime := false
	any := false
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return 0, bad
			}
			inTime = true
			rest = rest[1:]
			if rest == "" {
				return 0, bad
			}
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		if i == 0 || i == len(rest) || i > 12 {
			return 0, bad
		}
		n, err := strconv.ParseFloat(rest[:i], 64)
		if err != nil {
			return 0, bad
		}
		var unit time.Duration
		switch u := rest[i]; {
		case !inTime && u == 'D':
			unit = 24 * time.Hour
		case !inTime && u == 'W':
			unit = 7 * 24 * time.Hour
		case inTime && u == 'H':
			unit = time.Hour
		case inTime && u == 'M':
			unit = time.Minute
		case inTime && u == 'S':
			unit = time.Second
		default:
			return 0, bad
		}
		if n > 1e6 {
			return 0, bad
		}
		d += time.Duration(n * float64(unit))
		rest = rest[i+1:]
		any = true
	}
	if !any {
		return 0, bad
	}
	return d, nil
}

// FormatISODuration formats d as an ISO 8601 duration ("PT1M30S").
func FormatISODuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	var b strings.Builder
	b.WriteString("PT")
	if h := d / time.Hour; h > 0 {
		fmt.Fprintf(&b, "%dH", h)
		d -= h * time.Hour
	}
	if m := d / time.Minute; m > 0 {
		fmt.Fprintf(&b, "%dM", m)
		d -= m * time.Minute
	}
	if d > 0 {
		b.WriteString(strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S")
	}
	return b.String()
}
