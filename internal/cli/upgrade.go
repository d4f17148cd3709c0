package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes of `vmss upgrade` (besides ExitOK, ExitError, ExitUsage,
// ExitNotFound and ExitInterrupted).
const (
	// ExitHealthFailed: an upgraded instance failed its upgrade or came up
	// unhealthy; the walk stopped there.
	ExitHealthFailed = 4
	// ExitTimeout: a batch was not healthy on the new model within --timeout.
	ExitTimeout = 5
	// ExitDeclined: the user answered no at the confirmation prompt;
	// nothing was changed.
	ExitDeclined = 6
)

// exitError is an error with its own exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Defaults of `vmss upgrade`.
const (
	defaultBatchTimeout = 10 * time.Minute
	defaultRetryTimeout = 5 * time.Minute
	walkPollInterval    = time.Second
)

type vmssUpgradeOptions struct {
	root *rootOptions
	ref  setRef

	newVersion string
	sku        string
	customURI  string

	updateDomain int
	udSet        bool
	ids          instanceIDs
	allDomains   bool

	yes          bool
	timeout      time.Duration
	retryTimeout time.Duration
	batchSize    int
	pause        time.Duration

	target walkTarget
}

func newVMSSUpgradeCommand(root *rootOptions) *cobra.Command {
	o := &vmssUpgradeOptions{root: root}
	cmd := &cobra.Command{
		Use:   "upgrade -g RG -n NAME [--new-version V | --sku S | --custom-uri URI] (--update-domain N | --instance-ids ID ... | --all-domains)",
		Short: "Roll an OS image upgrade over a Manual scale set, one update domain at a time (vmssupgrade's successor)",
		Long: `Change the scale set's image (--new-version, --sku, or --custom-uri) and
upgrade its instances with manual upgrades, never more than one update
domain (or one batch) at a time:

  --update-domain N   upgrade the instances of update domain N
  --instance-ids ...  upgrade these instances
  --all-domains       walk every update domain in order; each domain must be
                      healthy on the new model before the next one starts

Without an image flag the instances move to the model the scale set already
has (resuming an interrupted walk). Instances already on the latest model
are skipped, instances protected from scale set actions are left alone.
The command shows the current image and what will change and asks for
confirmation (-y skips it; without a terminal -y is required). It shows
progress on stderr, and prints a summary on stdout.

A batch is done when each of its instances runs the latest model, its
provisioning succeeded and its health probe says healthy. While the server
is unreachable or busy the command retries (up to --retry-timeout), then
goes on where it stood. The scale set's upgrade policy must be Manual:
Automatic upgrades every instance at once and Rolling has the server roll
(see 'vmssctl vmss rolling-upgrade').

Exit codes: 0 success; 1 error; 2 usage (also: confirmation needed but no
terminal); 3 not found; 4 health failure (an instance failed its upgrade or
is unhealthy on the new model: the walk stopped); 5 timeout (a batch was not
healthy within --timeout); 6 declined at the prompt; 130 interrupted.`,
		Example: `  vmssctl vmss upgrade -g rg1 -n web --new-version 1.1.0 --all-domains -y
  vmssctl vmss upgrade -g rg1 -n web --new-version 1.1.0 --update-domain 0
  vmssctl vmss upgrade -g rg1 -n web --instance-ids 3 7 --timeout 5m
  vmssctl vmss upgrade -g rg1 -n web --custom-uri artifact:sha256:... --all-domains --batch-size 2 --pause 30s`,
	}
	o.ref.addFlags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.newVersion, "new-version", "", "new platform image version (imageReference.version), or latest")
	f.StringVar(&o.sku, "sku", "", "new platform image SKU (imageReference.sku)")
	f.StringVar(&o.customURI, "custom-uri", "", "new custom image URI (osDisk.image.uri)")
	f.IntVar(&o.updateDomain, "update-domain", 0, "upgrade the instances of this update domain")
	o.ids.addFlag(cmd, false)
	f.Lookup("instance-ids").Usage = "upgrade these instance ids (comma or space separated)"
	f.BoolVar(&o.allDomains, "all-domains", false, "walk all update domains in order, each healthy before the next")
	f.BoolVarP(&o.yes, "yes", "y", false, "do not ask for confirmation")
	f.DurationVar(&o.timeout, "timeout", defaultBatchTimeout, "how long one batch may take to be healthy on the new model")
	f.DurationVar(&o.retryTimeout, "retry-timeout", defaultRetryTimeout, "how long to keep retrying while the server is unreachable or busy")
	f.IntVar(&o.batchSize, "batch-size", 0, "upgrade at most this many instances of a domain at a time (default: the whole domain)")
	f.DurationVar(&o.pause, "pause", 0, "pause between domains")
	cmd.PreRun = func(c *cobra.Command, _ []string) { o.udSet = c.Flags().Changed("update-domain") }
	return bind(root, cmd, o)
}

func (o *vmssUpgradeOptions) Complete(_ context.Context, args []string) error {
	return o.ids.complete(args)
}

// Validate rejects what vmssupgrade let through silently: two image flags
// (its -n silently beat -c), several targets (-u beat -i beat -l), ids that
// are not numbers (its -l was pasted into the request body).
func (o *vmssUpgradeOptions) Validate() error {
	if err := o.ref.validate(); err != nil {
		return err
	}
	if o.customURI != "" && (o.newVersion != "" || o.sku != "") {
		return usageErrorf("--custom-uri cannot be combined with --new-version or --sku")
	}
	n := 0
	for _, set := range []bool{o.udSet, len(o.ids.ids) > 0, o.allDomains} {
		if set {
			n++
		}
	}
	if n != 1 {
		return usageErrorf("exactly one of --update-domain, --instance-ids or --all-domains is required")
	}
	if err := o.ids.validate(); err != nil {
		return err
	}
	switch {
	case o.udSet && o.updateDomain < 0:
		return usageErrorf("--update-domain must not be negative")
	case len(o.ids.ids) > 0 && o.ids.all():
		return usageErrorf("--instance-ids *: upgrading every instance at once is not a rolling upgrade; use --all-domains (or 'vmss update-instances')")
	case o.timeout <= 0:
		return usageErrorf("--timeout must be positive")
	case o.retryTimeout < 0:
		return usageErrorf("--retry-timeout must not be negative")
	case o.batchSize < 0:
		return usageErrorf("--batch-size must not be negative")
	case o.pause < 0:
		return usageErrorf("--pause must not be negative")
	case o.root.noWait && o.allDomains:
		return usageErrorf("--no-wait cannot walk several domains (each waits for the previous one); use --update-domain N --no-wait")
	case o.root.noWait && o.batchSize > 0:
		return usageErrorf("--no-wait cannot be combined with --batch-size (each batch waits for the previous one)")
	}
	for _, v := range []struct{ flag, val string }{{"--new-version", o.newVersion}, {"--sku", o.sku}, {"--custom-uri", o.customURI}} {
		if v.val != "" && strings.TrimSpace(v.val) != v.val {
			return usageErrorf("%s %q: leading or trailing spaces", v.flag, v.val)
		}
	}
	switch {
	case o.udSet:
		o.target = walkTarget{kind: targetDomain, ud: o.updateDomain}
	case o.allDomains:
		o.target = walkTarget{kind: targetAllDomains}
	default:
		o.target = walkTarget{kind: targetInstances}
		for _, id := range o.ids.ids {
			var v int64
			if _, err := fmt.Sscan(id, &v); err != nil {
				return usageErrorf("--instance-ids: %q is not an instance id", id)
			}
			o.target.ids = append(o.target.ids, v)
		}
	}
	return nil
}

// imageChange is what the image flags ask for.
type imageChange struct {
	newVersion, sku, customURI string
}

func (c imageChange) empty() bool { return c.newVersion == "" && c.sku == "" && c.customURI == "" }

// applyImageChange changes the storage profile sp in place and describes
// each change; no change means the model already has it. It refuses what
// does not fit the scale set's image kind, instead of vmssupgrade's
// KeyError on a set without imageReference.
func applyImageChange(sp *armcompute.VirtualMachineScaleSetStorageProfile, c imageChange) ([]string, error) {
	if sp == nil {
		return nil, errors.New("the scale set has no storage profile")
	}
	var changes []string
	if c.customURI != "" {
		if sp.OSDisk == nil || sp.OSDisk.Image == nil || str(sp.OSDisk.Image.URI) == "" {
			return nil, fmt.Errorf("--custom-uri: the scale set uses a platform image (%s), not a custom image URI", imageOf(sp))
		}
		if old := str(sp.OSDisk.Image.URI); old != c.customURI {
			changes = append(changes, fmt.Sprintf("osDisk.image.uri: %s -> %s", old, c.customURI))
			sp.OSDisk.Image.URI = ptr(c.customURI)
		}
		return changes, nil
	}
	if c.newVersion == "" && c.sku == "" {
		return nil, nil
	}
	ir := sp.ImageReference
	if ir == nil || str(ir.Offer) == "" {
		what := "no platform image reference"
		switch {
		case sp.OSDisk != nil && sp.OSDisk.Image != nil && str(sp.OSDisk.Image.URI) != "":
			what = "a custom image URI (" + str(sp.OSDisk.Image.URI) + "); use --custom-uri"
		case ir != nil && str(ir.ID) != "":
			what = "an image id (" + str(ir.ID) + ")"
		}
		return nil, fmt.Errorf("--new-version/--sku: the scale set has %s", what)
	}
	if c.sku != "" && str(ir.SKU) != c.sku {
		changes = append(changes, fmt.Sprintf("imageReference.sku: %s -> %s", str(ir.SKU), c.sku))
		ir.SKU = ptr(c.sku)
	}
	if c.newVersion != "" && str(ir.Version) != c.newVersion {
		changes = append(changes, fmt.Sprintf("imageReference.version: %s -> %s", str(ir.Version), c.newVersion))
		ir.Version = ptr(c.newVersion)
	}
	return changes, nil
}

// walker runs one `vmss upgrade`.
type walker struct {
	o      *vmssUpgradeOptions
	sets   *armcompute.VirtualMachineScaleSetsClient
	conn   *connection
	rt     *retrier
	prog   *walkProgress
	errOut io.Writer
}

func (o *vmssUpgradeOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	sets, err := c.scaleSets()
	if err != nil {
		return err
	}
	w := &walker{o: o, sets: sets, conn: c, errOut: o.root.streams.ErrOut,
		rt: &retrier{budget: o.retryTimeout, w: o.root.streams.ErrOut}}
	w.prog = newWalkProgress(w.errOut)
	return w.run(ctx)
}

func (w *walker) run(ctx context.Context) error {
	o := w.o
	change := imageChange{newVersion: o.newVersion, sku: o.sku, customURI: o.customURI}

	// The model, and what changes in it.
	set, err := w.getSet(ctx)
	if err != nil {
		return err
	}
	if err := checkWalkPolicy(set); err != nil {
		return err
	}
	sp := set.Properties.VirtualMachineProfile.StorageProfile
	before := imageOf(sp)
	changes, err := applyImageChange(sp, change)
	if err != nil {
		return usageErrorf("%v", err)
	}
	after := imageOf(sp)
	if len(changes) > 0 && (change.newVersion != "" || change.sku != "") {
		// A version that does not exist would fail every upgrade: check first.
		if err := w.checkImage(ctx, str(set.Location), sp.ImageReference); err != nil {
			return err
		}
	}

	// The plan, as it will be once the model changed.
	insts, err := w.listInstances(ctx)
	if err != nil {
		return err
	}
	if len(changes) > 0 {
		for i := range insts {
			insts[i].Latest = false
		}
	}
	steps, err := planWalk(insts, o.target)
	if err != nil {
		return usageErrorf("%v", err)
	}
	w.describe(set, before, after, changes, steps)
	if err := w.confirm(changes, steps); err != nil {
		return err
	}

	summary := upgradeSummary{ResourceGroup: o.ref.rg, Name: o.ref.name, Image: after, ModelChanged: len(changes) > 0, Status: "Succeeded"}
	if len(changes) > 0 {
		if err := w.updateModel(ctx, change); err != nil {
			return err
		}
		fmt.Fprintf(w.errOut, "Model updated: %s\n", strings.Join(changes, ", "))
	} else if !change.empty() {
		fmt.Fprintf(w.errOut, "The model already has %s, skipping the model update.\n", after)
	}

	for i, planned := range steps {
		res, err := w.walkStep(ctx, i, len(steps), planned)
		summary.Steps = append(summary.Steps, res)
		if err != nil {
			var xe *exitError
			if errors.As(err, &xe) {
				summary.Status = res.Status
				if perr := w.printSummary(summary); perr != nil {
					return perr
				}
			}
			return err
		}
		if res.Status == "Started" {
			summary.Status = "Started"
			break
		}
		if o.pause > 0 && i < len(steps)-1 {
			fmt.Fprintf(w.errOut, "Pausing %s before the next domain.\n", o.pause)
			if err := sleepCtx(ctx, o.pause); err != nil {
				return w.interrupted(err, "", nil)
			}
		}
	}
	return w.printSummary(summary)
}

// checkWalkPolicy refuses sets whose policy would fight the walk.
func checkWalkPolicy(set *armcompute.VirtualMachineScaleSet) error {
	p := set.Properties
	if p == nil || p.VirtualMachineProfile == nil || p.VirtualMachineProfile.StorageProfile == nil {
		return errors.New("the scale set has no virtual machine profile")
	}
	mode := "Manual"
	if p.UpgradePolicy != nil && p.UpgradePolicy.Mode != nil {
		mode = string(*p.UpgradePolicy.Mode)
	}
	switch {
	case strings.EqualFold(mode, "Automatic"):
		return usageErrorf("the scale set's upgrade policy is Automatic: a model change upgrades every instance at once; " +
			"set --upgrade-policy-mode Manual ('vmssctl vmss update') to walk the update domains")
	case strings.EqualFold(mode, "Rolling"):
		return usageErrorf("the scale set's upgrade policy is Rolling: the server rolls model changes itself; " +
			"use 'vmssctl vmss rolling-upgrade', or set --upgrade-policy-mode Manual to walk the update domains")
	}
	return nil
}

// checkImage makes sure the platform image exists.
func (w *walker) checkImage(ctx context.Context, location string, ir *armcompute.ImageReference) error {
	images, err := w.conn.images()
	if err != nil {
		return err
	}
	if location == "" {
		location = w.conn.cfg.Location
	}
	return w.rt.do(ctx, "check the image", func() error {
		_, err := images.Get(ctx, location, str(ir.Publisher), str(ir.Offer), str(ir.SKU), str(ir.Version), nil)
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == 404 {
			msg, _ := describeError(err)
			return &exitError{code: ExitNotFound, err: fmt.Errorf("image %s:%s:%s:%s does not exist; nothing was changed "+
				"('vmssctl image list --all' lists the images): %s", str(ir.Publisher), str(ir.Offer), str(ir.SKU), str(ir.Version), msg)}
		}
		return err
	})
}

func (w *walker) getSet(ctx context.Context) (*armcompute.VirtualMachineScaleSet, error) {
	var set *armcompute.VirtualMachineScaleSet
	err := w.rt.do(ctx, "read the scale set", func() error {
		res, err := w.sets.Get(ctx, w.o.ref.rg, w.o.ref.name, nil)
		if err == nil {
			set = &res.VirtualMachineScaleSet
		}
		return err
	})
	return set, err
}

// listInstances reads every instance with its instance view (all pages).
func (w *walker) listInstances(ctx context.Context) ([]instState, error) {
	var out []instState
	err := w.rt.do(ctx, "list the instances", func() error {
		vms, err := w.conn.listInstances(ctx, w.o.ref)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, vm := range vms {
			s, err := instStateOf(vm)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// updateModel applies the image change to the current model and PUTs it
// with If-Match, so a concurrent change is not overwritten (vmssupgrade
// PUT the whole model blindly): on 412 it reads the model again.
func (w *walker) updateModel(ctx context.Context, change imageChange) error {
	for attempt := 1; ; attempt++ {
		set, err := w.getSet(ctx)
		if err != nil {
			return err
		}
		changes, err := applyImageChange(set.Properties.VirtualMachineProfile.StorageProfile, change)
		if err != nil {
			return err
		}
		if len(changes) == 0 {
			return nil // done meanwhile (e.g. a retried PUT that had gone through)
		}
		err = w.rt.do(ctx, "update the model", func() error {
			_, err := w.sets.BeginCreateOrUpdate(ctx, w.o.ref.rg, w.o.ref.name, *set,
				&armcompute.VirtualMachineScaleSetsClientBeginCreateOrUpdateOptions{IfMatch: set.Etag})
			return err
		})
		if isPreconditionFailed(err) && attempt < maxUpdateAttempts {
			continue
		}
		if err != nil {
			return fmt.Errorf("update the model: %w", err)
		}
		return nil
	}
}

// describe shows the current image, the change and the plan on stderr.
func (w *walker) describe(set *armcompute.VirtualMachineScaleSet, before, after string, changes []string, steps []step) {
	ew := w.errOut
	n := int64(0)
	if set.SKU != nil && set.SKU.Capacity != nil {
		n = *set.SKU.Capacity
	}
	fmt.Fprintf(ew, "Scale set %s/%s: %d instances, upgrade policy Manual\n", w.o.ref.rg, w.o.ref.name, n)
	fmt.Fprintf(ew, "  image now:   %s\n", before)
	if len(changes) > 0 {
		fmt.Fprintf(ew, "  image after: %s (%s)\n", after, strings.Join(changes, ", "))
	} else {
		fmt.Fprintf(ew, "  image after: %s (the model is unchanged)\n", after)
	}
	how := "one batch at a time"
	if w.o.target.kind == targetAllDomains {
		how = "update domains in order, one at a time, each healthy on the new model before the next"
	}
	fmt.Fprintf(ew, "  plan: %s (timeout %s per batch)\n", how, w.o.timeout)
	for _, st := range steps {
		line := "    " + st.label() + ": "
		if len(st.Pending) == 0 {
			line += "nothing to upgrade"
		} else {
			line += "upgrade " + joinIDs(st.Pending)
			if bs := batches(st.Pending, w.o.batchSize); len(bs) > 1 {
				line += fmt.Sprintf(" in %d batches", len(bs))
			}
		}
		if len(st.Current) > 0 {
			line += "; already on the latest model: " + joinIDs(st.Current)
		}
		if len(st.Protected) > 0 {
			line += "; protected, left alone: " + joinIDs(st.Protected)
		}
		fmt.Fprintln(ew, line)
	}
}

// confirm asks before changing anything, unless -y. Without a terminal it
// refuses instead of hanging or assuming yes.
func (w *walker) confirm(changes []string, steps []step) error {
	if w.o.yes {
		return nil
	}
	pending := 0
	for _, st := range steps {
		pending += len(st.Pending)
	}
	if len(changes) == 0 && pending == 0 {
		return nil // nothing will change
	}
	f, ok := w.o.root.streams.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return usageErrorf("confirmation required, but standard input is not a terminal: pass -y/--yes to upgrade without asking")
	}
	fmt.Fprint(w.errOut, "Proceed with the upgrade? (y/N): ")
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return &exitError{code: ExitDeclined, err: fmt.Errorf("no answer at the prompt (%v): nothing was changed", err)}
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return &exitError{code: ExitDeclined, err: errors.New("upgrade declined: nothing was changed")}
}

// stepSummary is one step in the printed summary.
type stepSummary struct {
	UpdateDomain   *int             `json:"updateDomain,omitempty"`
	Upgraded       []string         `json:"upgraded"`
	AlreadyCurrent []string         `json:"alreadyCurrent"`
	Protected      []string         `json:"protected"`
	Status         string           `json:"status"`
	Seconds        float64          `json:"seconds"`
	Failed         []failureSummary `json:"failed,omitempty"`
}

type failureSummary struct {
	InstanceID string `json:"instanceId"`
	Reason     string `json:"reason"`
}

// upgradeSummary is what `vmss upgrade` prints on stdout.
type upgradeSummary struct {
	ResourceGroup string        `json:"resourceGroup"`
	Name          string        `json:"name"`
	Image         string        `json:"image"`
	ModelChanged  bool          `json:"modelChanged"`
	Status        string        `json:"status"`
	Steps         []stepSummary `json:"steps"`
}

func (w *walker) printSummary(s upgradeSummary) error {
	return w.o.root.print(s, func() table {
		t := table{header: []string{"Step", "Status", "Upgraded", "AlreadyCurrent", "Protected", "Seconds"}}
		for _, st := range s.Steps {
			name := "instances"
			if st.UpdateDomain != nil {
				name = fmt.Sprintf("UD %d", *st.UpdateDomain)
			}
			t.rows = append(t.rows, []string{name, st.Status, strings.Join(st.Upgraded, ","), strings.Join(st.AlreadyCurrent, ","),
				strings.Join(st.Protected, ","), fmt.Sprintf("%.1f", st.Seconds)})
		}
		return t
	})
}

// walkStep upgrades one step: it reads the instances again (the set may
// have changed since the plan), sends manualupgrade per batch, and waits
// for each batch, then for the whole domain, to be healthy on the latest
// model.
func (w *walker) walkStep(ctx context.Context, idx, total int, planned step) (stepSummary, error) {
	start := time.Now()
	res := stepSummary{Status: "Succeeded"}
	if planned.UD >= 0 {
		res.UpdateDomain = ptr(planned.UD)
	}
	insts, err := w.listInstances(ctx)
	if err != nil {
		return res, err
	}
	t := walkTarget{kind: targetDomain, ud: planned.UD}
	if planned.UD < 0 {
		// The named instances that still exist (a scale-in may have
		// removed some since the plan).
		exists := map[int64]bool{}
		for _, in := range insts {
			exists[in.ID] = in.Provisioning != "deleting"
		}
		t = walkTarget{kind: targetInstances}
		for _, ids := range [][]int64{planned.Pending, planned.Current, planned.Protected} {
			for _, id := range ids {
				if exists[id] {
					t.ids = append(t.ids, id)
				} else {
					fmt.Fprintf(w.errOut, "Instance %d is gone; skipped.\n", id)
				}
			}
		}
	}
	steps, err := planWalk(insts, t)
	if err != nil {
		// The domain emptied (scale-in) or an instance went away meanwhile.
		fmt.Fprintf(w.errOut, "%s: %v; skipped\n", planned.label(), err)
		res.Status = "Skipped"
		return res, nil
	}
	st := steps[0]
	res.Upgraded, res.AlreadyCurrent, res.Protected = idStrings(st.Pending), idStrings(st.Current), idStrings(st.Protected)
	if down := otherDown(insts, st); len(down) > 0 {
		fmt.Fprintf(w.errOut, "Warning: instances outside %s are not serving now: %s\n", st.label(), joinIDs(down))
	}
	bs := batches(st.Pending, w.o.batchSize)
	// The final gate covers the whole domain, the instances that were
	// already current too.
	gate := append(append([]int64{}, st.Pending...), st.Current...)
	for b, batch := range bs {
		if err := w.rt.do(ctx, "send manualupgrade", func() error {
			_, err := w.sets.BeginUpdateInstances(ctx, w.o.ref.rg, w.o.ref.name,
				armcompute.VirtualMachineScaleSetVMInstanceRequiredIDs{InstanceIDs: strPtrs(idStrings(batch))}, nil)
			return err
		}); err != nil {
			if ctx.Err() != nil {
				return res, w.interrupted(err, st.label(), batch)
			}
			res.Status = "Failed"
			return res, fmt.Errorf("%s: manualupgrade of %s: %w", st.label(), joinIDs(batch), err)
		}
		if w.o.root.noWait {
			fmt.Fprintf(w.errOut, "Upgrade of %s started (%s). Follow it with: vmssctl vmss list-instances -g %s -n %s -o table\n",
				st.label(), joinIDs(batch), w.o.ref.rg, w.o.ref.name)
			res.Status = "Started"
			return res, nil
		}
		if err := w.wait(ctx, idx, total, st, b, len(bs), batch); err != nil {
			return w.stepFailed(res, start, err, st, batch)
		}
	}
	if len(bs) > 1 || len(st.Current) > 0 {
		if err := w.wait(ctx, idx, total, st, len(bs), len(bs), gate); err != nil {
			return w.stepFailed(res, start, err, st, gate)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	w.prog.done(fmt.Sprintf("%s: done in %s (%d upgraded, %d already current)", st.label(), time.Since(start).Round(100*time.Millisecond), len(st.Pending), len(st.Current)))
	return res, nil
}

func (w *walker) stepFailed(res stepSummary, start time.Time, err error, st step, batch []int64) (stepSummary, error) {
	res.Seconds = time.Since(start).Seconds()
	var xe *exitError
	var fe *batchFailure
	switch {
	case errors.As(err, &fe):
		res.Status = "Failed"
		for _, f := range fe.failed {
			res.Failed = append(res.Failed, failureSummary{InstanceID: fmt.Sprint(f.ID), Reason: f.Reason})
		}
	case errors.As(err, &xe) && xe.code == ExitTimeout:
		res.Status = "TimedOut"
	case ctxEnded(err):
		return res, w.interrupted(err, st.label(), batch)
	default:
		res.Status = "Failed"
	}
	return res, err
}

func ctxEnded(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// batchFailure is a health failure of a batch.
type batchFailure struct {
	label  string
	failed []instFailure
}

func (e *batchFailure) Error() string {
	parts := make([]string, len(e.failed))
	for i, f := range e.failed {
		parts[i] = fmt.Sprintf("instance %d: %s", f.ID, f.Reason)
	}
	return fmt.Sprintf("%s: health check failed, the walk stopped (%s). The model keeps the new image: "+
		"fix the image and run the command again, or go back with --new-version/--custom-uri of the previous image",
		e.label, strings.Join(parts, "; "))
}

// wait polls the instances until the batch is healthy on the latest model,
// fails, or times out. Polling survives the server being away (retrier).
func (w *walker) wait(ctx context.Context, idx, total int, st step, b, nb int, batch []int64) error {
	deadline := time.Now().Add(w.o.timeout)
	start := time.Now()
	for {
		insts, err := w.listInstances(ctx)
		if err != nil {
			return err
		}
		now := make(map[int64]instState, len(insts))
		for _, in := range insts {
			now[in.ID] = in
		}
		bs := assessBatch(batch, now)
		w.prog.show(progressLine(idx, total, st, b, nb, bs, time.Since(start)))
		if len(bs.Failed) > 0 {
			w.prog.clear()
			return &exitError{code: ExitHealthFailed, err: &batchFailure{label: st.label(), failed: bs.Failed}}
		}
		if bs.Done() {
			return nil
		}
		if time.Now().After(deadline) {
			w.prog.clear()
			return &exitError{code: ExitTimeout, err: fmt.Errorf("%s: not healthy on the new model after %s: still waiting for %s "+
				"(run the command again to keep waiting; instances already upgraded are skipped)", st.label(), w.o.timeout, waitingDetail(bs.Waiting, now))}
		}
		if err := sleepCtx(ctx, walkPollInterval); err != nil {
			return err
		}
	}
}

// waitingDetail describes the instances still waited for.
func waitingDetail(ids []int64, now map[int64]instState) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		in := now[id]
		state := in.Provisioning
		if in.Latest {
			state += ", latest model"
		}
		if in.Health != "" {
			state += ", " + in.Health
		}
		parts[i] = fmt.Sprintf("instance %d (%s)", id, state)
	}
	return strings.Join(parts, ", ")
}

// interrupted reports where an interrupted walk stood and how to resume.
func (w *walker) interrupted(err error, label string, batch []int64) error {
	w.prog.clear()
	if label != "" && len(batch) > 0 {
		fmt.Fprintf(w.errOut, "Interrupted during %s: the upgrades already sent (%s) go on. Run the same command again to resume; "+
			"instances on the latest model are skipped.\n", label, joinIDs(batch))
	}
	return err
}

// progressLine is the live progress of a batch.
func progressLine(idx, total int, st step, b, nb int, bs batchState, elapsed time.Duration) string {
	var sb strings.Builder
	if total > 1 {
		fmt.Fprintf(&sb, "domains %s %d/%d  ", bar(idx, total, 10), idx, total)
	}
	sb.WriteString(st.label())
	if b < nb {
		fmt.Fprintf(&sb, " batch %d/%d", b+1, nb)
	} else {
		sb.WriteString(" health gate")
	}
	fmt.Fprintf(&sb, " %s %d/%d upgraded, %d/%d healthy", bar(bs.Healthy, bs.Total, 20), bs.Upgraded, bs.Total, bs.Healthy, bs.Total)
	if len(bs.Waiting) > 0 {
		fmt.Fprintf(&sb, ", waiting for %s", joinIDs(bs.Waiting))
	}
	fmt.Fprintf(&sb, " (%ds)", int(elapsed.Seconds()))
	return sb.String()
}

// walkProgress draws the live progress on stderr: one refreshed line on a
// terminal, plain lines (on change, or every plainRepeat) otherwise.
type walkProgress struct {
	w         io.Writer
	tty       bool
	shown     bool
	last      string
	lastPrint time.Time
}

func newWalkProgress(w io.Writer) *walkProgress {
	return &walkProgress{w: w, tty: isTerminal(w)}
}

func (p *walkProgress) show(line string) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
		return
	}
	// Plain lines: print when something but the clock changed.
	key := line
	if i := strings.LastIndex(line, " ("); i >= 0 {
		key = line[:i]
	}
	if key == p.last && time.Since(p.lastPrint) < plainRepeat {
		return
	}
	p.last, p.lastPrint = key, time.Now()
	fmt.Fprintln(p.w, line)
}

// clear removes the refreshed line.
func (p *walkProgress) clear() {
	if p.tty && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

// done ends a step with a line that stays.
func (p *walkProgress) done(line string) {
	p.clear()
	p.last = ""
	fmt.Fprintln(p.w, line)
}

// sleepCtx sleeps d unless ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retrier retries calls that fail because the server is unreachable or
// busy (vmssupgrade and the editor had no retry at all), for at most budget
// of consecutive failures, telling the user once per outage.
type retrier struct {
	budget time.Duration
	w      io.Writer
}

func (r *retrier) do(ctx context.Context, what string, f func() error) error {
	var since time.Time
	delay := 250 * time.Millisecond
	for {
		err := f()
		if err == nil || !transient(ctx, err) {
			if err == nil && !since.IsZero() {
				fmt.Fprintf(r.w, "The server answers again (after %s); going on.\n", time.Since(since).Round(time.Second))
			}
			return err
		}
		if since.IsZero() {
			since = time.Now()
			fmt.Fprintf(r.w, "Cannot %s: %v; retrying for up to %s.\n", what, shortErr(err), r.budget)
		}
		if time.Since(since) >= r.budget {
			return fmt.Errorf("%s: the server was unreachable for %s: %w", what, r.budget, err)
		}
		if err := sleepCtx(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, 3*time.Second)
	}
}

// shortErr is the first line of an error.
func shortErr(err error) string {
	msg, _ := describeError(err)
	first, _, _ := strings.Cut(msg, "\n")
	return first
}

// transient reports whether err is worth retrying: the server unreachable,
// a dropped connection, or an answer that says "try again" (408, 429, 5xx).
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		switch re.StatusCode {
		case 408, 429, 500, 502, 503, 504:
			return true
		}
		return false
	}
	var ae *azidentity.AuthenticationFailedError
	if errors.As(err, &ae) {
		return ae.RawResponse == nil || ae.RawResponse.StatusCode >= 500
	}
	var ue *usageError
	if errors.As(err, &ue) {
		return false
	}
	var ne net.Error
	var ue2 *url.Error
	switch {
	case errors.As(err, &ne), errors.As(err, &ue2),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, context.DeadlineExceeded):
		return true
	}
	// Credential errors that carry no response (the token endpoint is down)
	// are not typed; their text says so.
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "connection reset")
}
