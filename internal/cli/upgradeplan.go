package cli

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
)

// This file is the pure part of `vmss upgrade` (the domain walk): what an
// instance looks like to the walk, which instances a step upgrades, in which
// order and batches, and whether a batch is done, failed or still going.
// No I/O here; upgrade.go drives it.

// instState is what the walk reads of one instance (from its instance view).
type instState struct {
	ID           int64
	UD, FD       int
	Latest       bool   // latestModelApplied
	Provisioning string // lower case: creating, updating, succeeded, failed, deleting
	Power        string // lower case: starting, running, stopped, deallocated, ...
	Health       string // lower case: initializing, healthy, unhealthy, unknown; "" without a health status
	HealthMsg    string
	ErrMsg       string // the provisioning status's message (why it failed)
	Protected    bool   // protectFromScaleSetActions
	Image        string // the image the instance runs (version or URI), for display
}

// instStateOf reads an instance of `list-instances --expand instanceView`.
// Ids are parsed as numbers: vmssupgrade sorted them as strings.
func instStateOf(vm *armcompute.VirtualMachineScaleSetVM) (instState, error) {
	var s instState
	if vm == nil {
		return s, fmt.Errorf("instance list: an empty entry")
	}
	id, err := strconv.ParseInt(str(vm.InstanceID), 10, 64)
	if err != nil {
		return s, fmt.Errorf("instance list: instance id %q is not a number", str(vm.InstanceID))
	}
	s.ID = id
	p := vm.Properties
	if p == nil {
		return s, nil
	}
	s.Latest = p.LatestModelApplied != nil && *p.LatestModelApplied
	s.Provisioning = strings.ToLower(str(p.ProvisioningState))
	if pp := p.ProtectionPolicy; pp != nil && pp.ProtectFromScaleSetActions != nil {
		s.Protected = *pp.ProtectFromScaleSetActions
	}
	if sp := p.StorageProfile; sp != nil {
		switch {
		case sp.ImageReference != nil && str(sp.ImageReference.ExactVersion) != "":
			s.Image = str(sp.ImageReference.ExactVersion)
		case sp.ImageReference != nil:
			s.Image = str(sp.ImageReference.Version)
		case sp.OSDisk != nil && sp.OSDisk.Image != nil:
			s.Image = str(sp.OSDisk.Image.URI)
		}
	}
	iv := p.InstanceView
	if iv == nil {
		return s, nil
	}
	if iv.PlatformUpdateDomain != nil {
		s.UD = int(*iv.PlatformUpdateDomain)
	}
	if iv.PlatformFaultDomain != nil {
		s.FD = int(*iv.PlatformFaultDomain)
	}
	s.Power = statusSuffix(iv.Statuses, "PowerState/")
	for _, st := range iv.Statuses {
		if st != nil && strings.HasPrefix(str(st.Code), "ProvisioningState/") {
			if v := strings.TrimPrefix(str(st.Code), "ProvisioningState/"); v != "" {
				s.Provisioning = strings.ToLower(v)
			}
			s.ErrMsg = str(st.Message)
		}
	}
	if iv.VMHealth != nil && iv.VMHealth.Status != nil {
		_, h, _ := strings.Cut(str(iv.VMHealth.Status.Code), "/")
		s.Health = strings.ToLower(h)
		s.HealthMsg = str(iv.VMHealth.Status.Message)
	}
	return s, nil
}

// down reports whether an instance does not serve: not running, or running
// but not (yet) healthy, or being provisioned.
func (s instState) down() bool {
	return s.Power != "running" || s.Health != "healthy" || s.Provisioning != "succeeded"
}

// targetKind is what `vmss upgrade` was asked to upgrade.
type targetKind int

const (
	targetDomain     targetKind = iota // --update-domain N
	targetInstances                    // --instance-ids
	targetAllDomains                   // --all-domains
)

// walkTarget is the chosen target.
type walkTarget struct {
	kind targetKind
	ud   int
	ids  []int64
}

// step is one health-gated unit of the walk: the instances of one update
// domain, or the instances named on the command line.
type step struct {
	// UD is the update domain, -1 for --instance-ids.
	UD int
	// Pending are the instances to upgrade, in numeric order.
	Pending []int64
	// Current are the instances already on the latest model.
	Current []int64
	// Protected are the instances left alone (protectFromScaleSetActions).
	Protected []int64
}

// label names a step in messages.
func (s step) label() string {
	if s.UD < 0 {
		return "instances"
	}
	return fmt.Sprintf("update domain %d", s.UD)
}

// planWalk splits the target into steps, in walk order: update domains in
// ascending order (only those with instances), instance ids numerically.
// Instances being deleted are ignored. An instance id that does not exist
// is an error: the user named it.
func planWalk(insts []instState, t walkTarget) ([]step, error) {
	byID := make(map[int64]instState, len(insts))
	for _, in := range insts {
		if in.Provisioning != "deleting" {
			byID[in.ID] = in
		}
	}
	add := func(st *step, in instState) {
		switch {
		case in.Protected:
			st.Protected = append(st.Protected, in.ID)
		case in.Latest:
			st.Current = append(st.Current, in.ID)
		default:
			st.Pending = append(st.Pending, in.ID)
		}
	}
	var steps []step
	switch t.kind {
	case targetInstances:
		st := step{UD: -1}
		seen := map[int64]bool{}
		for _, id := range t.ids {
			in, ok := byID[id]
			if !ok {
				return nil, fmt.Errorf("instance %d is not an instance of the scale set", id)
			}
			if !seen[id] {
				seen[id] = true
				add(&st, in)
			}
		}
		steps = append(steps, st)
	default:
		uds := map[int]*step{}
		for _, in := range byID {
			if t.kind == targetDomain && in.UD != t.ud {
				continue
			}
			st := uds[in.UD]
			if st == nil {
				st = &step{UD: in.UD}
				uds[in.UD] = st
			}
			add(st, in)
		}
		if t.kind == targetDomain && uds[t.ud] == nil {
			return nil, fmt.Errorf("update domain %d has no instances", t.ud)
		}
		for _, st := range uds {
			steps = append(steps, *st)
		}
		slices.SortFunc(steps, func(a, b step) int { return a.UD - b.UD })
	}
	for i := range steps {
		slices.Sort(steps[i].Pending)
		slices.Sort(steps[i].Current)
		slices.Sort(steps[i].Protected)
	}
	return steps, nil
}

// batches cuts ids into batches of at most size (size <= 0: one batch).
func batches(ids []int64, size int) [][]int64 {
	if len(ids) == 0 {
		return nil
	}
	if size <= 0 || size >= len(ids) {
		return [][]int64{ids}
	}
	var out [][]int64
	for len(ids) > 0 {
		n := min(size, len(ids))
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	return out
}

// batchState is where a batch of upgrades stands.
type batchState struct {
	Total    int
	Upgraded int // on the latest model
	Healthy  int // on the latest model, provisioned, and healthy (or deliberately not running)
	// Failed are the instances whose upgrade failed or which came up
	// unhealthy on the latest model, with why.
	Failed []instFailure
	// Waiting are the instances not yet done.
	Waiting []int64
	// Gone are instances deleted meanwhile (they count as done).
	Gone []int64
}

// instFailure is an instance that failed its upgrade.
type instFailure struct {
	ID     int64
	Reason string
}

// Done reports whether every instance of the batch is upgraded and healthy.
func (b batchState) Done() bool { return len(b.Waiting) == 0 && len(b.Failed) == 0 }

// assessBatch compares a batch with the instances as they are now. An
// instance is done when it runs the latest model, its provisioning
// succeeded and it is healthy; one that is stopped or deallocated (the
// user's choice) is done once on the latest model, since it cannot answer a
// probe. It failed when its provisioning failed, or when it runs the latest
// model and its health probe says unhealthy. Anything else (updating,
// initializing, unknown) is still waiting.
func assessBatch(batch []int64, now map[int64]instState) batchState {
	b := batchState{Total: len(batch)}
	for _, id := range batch {
		in, ok := now[id]
		if !ok || in.Provisioning == "deleting" {
			b.Gone = append(b.Gone, id)
			b.Upgraded++
			b.Healthy++
			continue
		}
		if in.Latest {
			b.Upgraded++
		}
		switch {
		case in.Provisioning == "failed":
			reason := "provisioning failed"
			if in.ErrMsg != "" {
				reason += ": " + in.ErrMsg
			}
			b.Failed = append(b.Failed, instFailure{id, reason})
		case !in.Latest || in.Provisioning != "succeeded":
			b.Waiting = append(b.Waiting, id)
		case in.Power == "stopped" || in.Power == "deallocated":
			b.Healthy++
		case in.Power == "running" && in.Health == "healthy":
			b.Healthy++
		case in.Power == "running" && in.Health == "unhealthy":
			reason := "unhealthy on the new model"
			if in.HealthMsg != "" {
				reason += ": " + in.HealthMsg
			}
			b.Failed = append(b.Failed, instFailure{id, reason})
		default:
			b.Waiting = append(b.Waiting, id)
		}
	}
	return b
}

// otherDown lists the instances outside the step (and not protected or being
// deleted) that do not serve right now: the walk warns about them, since
// upgrading the step then takes more than one domain's worth of capacity.
func otherDown(insts []instState, st step) []int64 {
	in := map[int64]bool{}
	for _, ids := range [][]int64{st.Pending, st.Current, st.Protected} {
		for _, id := range ids {
			in[id] = true
		}
	}
	var out []int64
	for _, s := range insts {
		if !in[s.ID] && s.Provisioning != "deleting" && s.down() && s.Power != "stopped" && s.Power != "deallocated" {
			out = append(out, s.ID)
		}
	}
	slices.Sort(out)
	return out
}

// joinIDs formats ids as "0, 5, 10".
func joinIDs(ids []int64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(parts, ", ")
}

// idStrings converts ids for the SDK.
func idStrings(ids []int64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strconv.FormatInt(id, 10)
	}
	return out
}

// bar renders a progress bar of width cells: "[#####.....]".
func bar(done, total, width int) string {
	if width <= 0 {
		return ""
	}
	filled := 0
	if total > 0 {
		filled = min(width, max(0, done*width/total))
	}
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}
