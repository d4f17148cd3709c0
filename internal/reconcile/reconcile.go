// Package reconcile is the pure core of the scale set controller. Compute
// takes a scale set's desired model and capacity, its instance records, what
// the hosts observe and the image catalog at a moment `now`, and returns a
// Plan: instances to create, instances to retire, and per-instance actions.
// It does no I/O; the controller persists and executes the plan.
package reconcile

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vmssd/vmssd/internal/catalog"
	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
)

// Host is a place instances run; each host is a fault domain.
type Host struct {
	Name        string
	FaultDomain int
}

// CustomImage is the resolution of a custom image URI done at the edge.
type CustomImage struct {
	Image model.ResolvedImage
	Err   *errs.Error
}

// Input is everything Compute looks at.
type Input struct {
	Set       *model.ScaleSet
	Status    model.ScaleSetStatus
	Instances []*model.Instance
	// Observed maps a VMID to what its host reports; absent means the host
	// does not have the instance.
	Observed map[string]driver.Status
	Hosts    []Host
	Images   []model.ImageVersion
	Custom   map[string]CustomImage
	Now      time.Time
	// NewVMID returns a fresh unique VM id (injected for determinism).
	NewVMID func() string
}

// ActionKind is a host action on one instance.
type ActionKind string

// Action kinds.
const (
	ActPlace      ActionKind = "place"      // create on the host
	ActRemove     ActionKind = "remove"     // delete from the host and drop the record
	ActUpgrade    ActionKind = "upgrade"    // rebuild the OS disk from the latest model's image
	ActReimage    ActionKind = "reimage"    // rebuild the OS disk from the same image
	ActRestart    ActionKind = "restart"    //
	ActStart      ActionKind = "start"      //
	ActStop       ActionKind = "stop"       //
	ActDeallocate ActionKind = "deallocate" //
	ActSettle     ActionKind = "settle"     // no host work; mark the record Succeeded
	ActFail       ActionKind = "fail"       // no host work; the host saw the instance fail
)

// Action is one thing to do to one instance.
type Action struct {
	Kind       ActionKind
	InstanceID int64
	// Image and ModelVersion are set for upgrades.
	Image        model.ResolvedImage
	ModelVersion int64
	Reason       string
	// Failure is the ARM error code of an ActFail.
	Failure string
}

// Plan is the result of Compute.
type Plan struct {
	// Create are new instance records to write before placing them.
	Create []*model.Instance
	// Retire are instance ids to mark Deleting (scale-in victims).
	Retire []int64
	// Actions are host actions on existing instances.
	Actions []Action
	// NextInstanceID is the status counter after Create.
	NextInstanceID int64
	// Err is a scale set level failure (e.g. ImageNotFound on scale-out).
	Err *errs.Error
	// Finalize is true when a deleting scale set has no instances left.
	Finalize bool
}

// Converged reports whether the plan has nothing left to do.
func (p *Plan) Converged() bool {
	return len(p.Create) == 0 && len(p.Retire) == 0 && len(p.Actions) == 0 && !p.Finalize
}

// Summary is a short description for logs.
func (p *Plan) Summary() string {
	counts := map[ActionKind]int{}
	for _, a := range p.Actions {
		counts[a.Kind]++
	}
	var parts []string
	if len(p.Create) > 0 {
		parts = append(parts, fmt.Sprintf("create=%d", len(p.Create)))
	}
	if len(p.Retire) > 0 {
		parts = append(parts, fmt.Sprintf("retire=%d", len(p.Retire)))
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, string(k))
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s=%d", k, counts[ActionKind(k)]))
	}
	if p.Err != nil {
		parts = append(parts, "error="+p.Err.ARMCode())
	}
	if p.Finalize {
		parts = append(parts, "finalize")
	}
	if len(parts) == 0 {
		return "converged"
	}
	return strings.Join(parts, " ")
}

// ResolveImage resolves the model's image source against the catalog
// snapshot and the custom-image resolutions.
func ResolveImage(src model.ImageSource, images []model.ImageVersion, custom map[string]CustomImage) (model.ResolvedImage, *errs.Error) {
	if src.IsCustom() {
		c, ok := custom[src.URI]
		if !ok {
			return model.ResolvedImage{}, errs.New(errs.NotFound, "ImageNotFound",
				"The custom image '%s' is not available.", src.URI).WithTarget("osDisk.image.uri")
		}
		return c.Image, c.Err
	}
	ref := catalog.Ref{Publisher: src.Publisher, Offer: src.Offer, SKU: src.SKU, Version: src.Version}
	v, err := catalog.Resolve(ref, images)
	if err != nil {
		return model.ResolvedImage{}, err
	}
	return model.ResolvedImage{
		Publisher: v.Publisher, Offer: v.Offer, SKU: v.SKU,
		Version: src.Version, ExactVersion: v.Version,
		Digest: v.Digest, OSType: v.OSType,
	}, nil
}

// ComputerName is prefix + the instance id in 6 base-36 digits.
func ComputerName(prefix string, id int64) string {
	s := strings.ToUpper(strconv.FormatInt(id, 36))
	if len(s) < 6 {
		s = strings.Repeat("0", 6-len(s)) + s
	}
	return prefix + s
}

// Compute builds the plan for one scale set.
func Compute(in Input) *Plan {
	set := in.Set
	p := &Plan{NextInstanceID: in.Status.NextInstanceID}
	if set.Deleting {
		for _, inst := range in.Instances {
			p.Actions = append(p.Actions, Action{Kind: ActRemove, InstanceID: inst.ID, Reason: "scale set deleting"})
		}
		p.Finalize = len(in.Instances) == 0
		return p
	}

	var active []*model.Instance
	for _, inst := range in.Instances {
		if inst.Deleting {
			p.Actions = append(p.Actions, Action{Kind: ActRemove, InstanceID: inst.ID, Reason: "instance deleting"})
			continue
		}
		active = append(active, inst)
	}

	// Capacity.
	want := set.Capacity()
	switch n := int64(len(active)); {
	case n < want:
		img, err := ResolveImage(set.ImageSource(), in.Images, in.Custom)
		if err != nil {
			p.Err = err
			break
		}
		p.Create = placeNew(in, active, int(want-n), img)
		p.NextInstanceID = p.Create[len(p.Create)-1].ID + 1
	case n > want:
		victims := chooseVictims(active, int(n-want), set.ScaleInRule())
		p.Retire = victims
		gone := make(map[int64]bool, len(victims))
		for _, id := range victims {
			gone[id] = true
		}
		kept := active[:0:0]
		for _, inst := range active {
			if !gone[inst.ID] {
				kept = append(kept, inst)
			}
		}
		active = kept
	}

	// Per-instance actions.
	var upgradeImg *model.ResolvedImage
	var upgradeErr *errs.Error
	for _, inst := range active {
		obs, onHost := in.Observed[inst.VMID]
		needsUpgrade := inst.ModelVersion < set.ModelVersion && inst.FailedModel != set.ModelVersion &&
			(inst.TargetModel >= set.ModelVersion || strings.EqualFold(set.UpgradeMode(), "Automatic") && !inst.ProtectActions)
		if needsUpgrade {
			if upgradeImg == nil && upgradeErr == nil {
				img, err := ResolveImage(set.ImageSource(), in.Images, in.Custom)
				upgradeImg, upgradeErr = &img, err
			}
			if upgradeErr != nil {
				// The upgrade waits for its image; everything else still applies.
				p.Err = upgradeErr
				needsUpgrade = false
			}
		}
		switch {
		case needsUpgrade:
			p.Actions = append(p.Actions, Action{Kind: ActUpgrade, InstanceID: inst.ID, Image: *upgradeImg, ModelVersion: set.ModelVersion, Reason: "model upgrade"})
		case inst.ProvisioningState == model.StateFailed && inst.ReimageSeq <= inst.AppliedReimage && inst.RestartSeq <= inst.AppliedRestart:
			// A failed instance stays failed until it is reimaged, restarted,
			// upgraded or deleted.
		case onHost && obs.Failure != "" && inst.ProvisioningState != model.StateFailed:
			p.Actions = append(p.Actions, Action{Kind: ActFail, InstanceID: inst.ID, Failure: obs.Failure, Reason: obs.Message})
		case !inst.Placed || !onHost:
			p.Actions = append(p.Actions, Action{Kind: ActPlace, InstanceID: inst.ID, Reason: placeReason(inst)})
		case inst.ReimageSeq > inst.AppliedReimage:
			p.Actions = append(p.Actions, Action{Kind: ActReimage, InstanceID: inst.ID, Reason: "reimage requested"})
		case inst.RestartSeq > inst.AppliedRestart:
			p.Actions = append(p.Actions, Action{Kind: ActRestart, InstanceID: inst.ID, Reason: "restart requested"})
		default:
			if a, ok := powerAction(inst, obs); ok {
				p.Actions = append(p.Actions, a)
			} else if inst.ProvisioningState != model.StateSucceeded {
				p.Actions = append(p.Actions, Action{Kind: ActSettle, InstanceID: inst.ID, Reason: "in desired state"})
			}
		}
	}
	return p
}

func placeReason(inst *model.Instance) string {
	if inst.Placed {
		return "lost by its host"
	}
	return "new instance"
}

func powerAction(inst *model.Instance, obs driver.Status) (Action, bool) {
	a := Action{InstanceID: inst.ID}
	switch inst.Power {
	case model.PowerStopped:
		if obs.Power == driver.PowerRunning || obs.Power == driver.PowerStarting {
			a.Kind, a.Reason = ActStop, "power off requested"
			return a, true
		}
	case model.PowerDeallocated:
		if obs.Power != driver.PowerDeallocated {
			a.Kind, a.Reason = ActDeallocate, "deallocate requested"
			return a, true
		}
	default:
		if obs.Power == driver.PowerStopped || obs.Power == driver.PowerDeallocated {
			a.Kind, a.Reason = ActStart, "start requested"
			return a, true
		}
	}
	return a, false
}

// placeNew creates n new instance records, balancing fault and update domains
// over the active instances.
func placeNew(in Input, active []*model.Instance, n int, img model.ResolvedImage) []*model.Instance {
	set := in.Set
	fdCount := set.FaultDomainCount()
	fd := make([]int, fdCount)
	ud := make([]int, model.UpdateDomainCount)
	for _, inst := range active {
		if inst.FaultDomain >= 0 && inst.FaultDomain < fdCount {
			fd[inst.FaultDomain]++
		}
		if inst.UpdateDomain >= 0 && inst.UpdateDomain < len(ud) {
			ud[inst.UpdateDomain]++
		}
	}
	prefix := set.ComputerNamePrefix()
	out := make([]*model.Instance, 0, n)
	// Ids are never reused while a record holds them, even if the status
	// counter lags behind the records.
	next := in.Status.NextInstanceID
	for _, inst := range in.Instances {
		next = max(next, inst.ID+1)
	}
	for range n {
		f, u := argmin(fd), argmin(ud)
		fd[f]++
		ud[u]++
		id := next
		next++
		inst := &model.Instance{
			Sub: set.Sub, RG: set.RG, ScaleSet: set.Name,
			ID: id, VMID: in.NewVMID(),
			ComputerName: ComputerName(prefix, id),
			FaultDomain:  f, UpdateDomain: u,
			Host:              hostFor(in.Hosts, f),
			Created:           in.Now,
			ModelVersion:      set.ModelVersion,
			Image:             img,
			Size:              set.Size(),
			ProvisioningState: model.StateCreating,
			Power:             model.PowerRunning,
		}
		out = append(out, inst)
	}
	return out
}

func argmin(xs []int) int {
	best := 0
	for i, x := range xs {
		if x < xs[best] {
			best = i
		}
	}
	return best
}

// hostFor maps a fault domain to a host: hosts are fault domains, so a host
// whose FaultDomain matches wins; otherwise hosts are used round-robin.
func hostFor(hosts []Host, fd int) string {
	if len(hosts) == 0 {
		return ""
	}
	for _, h := range hosts {
		if h.FaultDomain == fd {
			return h.Name
		}
	}
	return hosts[fd%len(hosts)].Name
}

// chooseVictims picks k instances to remove according to the scale-in rule.
// Protected instances are never chosen.
func chooseVictims(active []*model.Instance, k int, rule string) []int64 {
	cands := make([]*model.Instance, 0, len(active))
	for _, inst := range active {
		if !inst.ProtectScaleIn {
			cands = append(cands, inst)
		}
	}
	if k > len(cands) {
		k = len(cands)
	}
	var victims []int64
	switch strings.ToLower(rule) {
	case "oldestvm":
		sort.SliceStable(cands, func(i, j int) bool {
			if !cands[i].Created.Equal(cands[j].Created) {
				return cands[i].Created.Before(cands[j].Created)
			}
			return cands[i].ID < cands[j].ID
		})
		for _, c := range cands[:k] {
			victims = append(victims, c.ID)
		}
	case "newestvm":
		sort.SliceStable(cands, func(i, j int) bool {
			if !cands[i].Created.Equal(cands[j].Created) {
				return cands[i].Created.After(cands[j].Created)
			}
			return cands[i].ID > cands[j].ID
		})
		for _, c := range cands[:k] {
			victims = append(victims, c.ID)
		}
	default:
		// Keep fault domains balanced: take from the fullest fault domain
		// (then update domain), highest instance id first.
		fd := map[int]int{}
		ud := map[int]int{}
		for _, inst := range active {
			fd[inst.FaultDomain]++
			ud[inst.UpdateDomain]++
		}
		taken := map[int64]bool{}
		for range k {
			var best *model.Instance
			for _, c := range cands {
				if taken[c.ID] {
					continue
				}
				if best == nil || better(c, best, fd, ud) {
					best = c
				}
			}
			taken[best.ID] = true
			fd[best.FaultDomain]--
			ud[best.UpdateDomain]--
			victims = append(victims, best.ID)
		}
	}
	sort.Slice(victims, func(i, j int) bool { return victims[i] < victims[j] })
	return victims
}

func better(c, best *model.Instance, fd, ud map[int]int) bool {
	if fd[c.FaultDomain] != fd[best.FaultDomain] {
		return fd[c.FaultDomain] > fd[best.FaultDomain]
	}
	if ud[c.UpdateDomain] != ud[best.UpdateDomain] {
		return ud[c.UpdateDomain] > ud[best.UpdateDomain]
	}
	return c.ID > best.ID
}
