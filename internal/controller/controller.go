// Package controller drives scale sets toward their models. It is level
// based: a work queue keyed by scale set feeds workers that read the state
// store and the hosts' observations, ask the pure reconciler for a plan,
// persist the plan's intent, run host actions, and record the outcome
// (instance records, the scale set status, long-running operations).
//
// Crash safety: new instance records are written before any host is asked to
// create them, and host drivers are idempotent by VM id, so after a SIGKILL a
// restart re-reads the same records, re-adopts what the hosts still run,
// recreates what they lost, and removes host instances that have no record.
package controller

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/reconcile"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// Images is what the controller needs from the image store.
type Images interface {
	// Unpack returns the unpacked, read-only directory of an artifact.
	Unpack(ctx context.Context, digest string) (string, error)
	// ResolveURI resolves a custom image URI (osDisk.image.uri).
	ResolveURI(ctx context.Context, uri string) (model.ResolvedImage, error)
}

// Options configures a controller.
type Options struct {
	Store   store.Store
	Hosts   []*host.Host
	Images  Images
	Logger  *slog.Logger
	Workers int
	// Parallel bounds concurrent host actions per reconcile.
	Parallel int
	Resync   time.Duration
	Now      func() time.Time
	// Metrics, if set, is told the queue wait and duration of every
	// reconcile (internal/metrics implements it).
	Metrics Metrics
	// Network, if set, gives instances private addresses and drains them
	// from load balancers before host actions (network.go).
	Network Network
}

// Metrics receives the controller's measurements.
type Metrics interface {
	// QueueWait is how long a scale set waited in the work queue before a
	// worker took it.
	QueueWait(d time.Duration)
	// Reconciled is one reconcile of a scale set: its duration and error.
	Reconciled(d time.Duration, err error)
}

// Controller reconciles scale sets.
type Controller struct {
	opts  Options
	q     *queue
	hosts map[string]*host.Host
	log   *slog.Logger

	mu    sync.Mutex
	index map[string]string // vmid -> set key
}

// New returns a controller; call Run.
func New(opts Options) *Controller {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	if opts.Parallel == 0 {
		opts.Parallel = 16
	}
	if opts.Resync == 0 {
		opts.Resync = 30 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Controller{opts: opts, q: newQueue(100*time.Millisecond, 30*time.Second), hosts: map[string]*host.Host{}, log: opts.Logger, index: map[string]string{}}
	for _, h := range opts.Hosts {
		c.hosts[h.Name()] = h
	}
	if opts.Metrics != nil {
		c.q.waited = opts.Metrics.QueueWait
	}
	return c
}

// QueueDepth is the number of scale sets waiting for a worker.
func (c *Controller) QueueDepth() int { return c.q.Len() }

// HostChanged is the hosts' OnChange callback: it requeues the instance's
// scale set.
func (c *Controller) HostChanged(vmid string) {
	c.mu.Lock()
	key, ok := c.index[vmid]
	c.mu.Unlock()
	if ok {
		c.q.Add(key)
	}
}

// Host returns a host by name.
func (c *Controller) Host(name string) *host.Host { return c.hosts[name] }

// Observe returns what an instance's host observes.
func (c *Controller) Observe(inst *model.Instance) (host.Observed, bool) {
	h := c.hosts[inst.Host]
	if h == nil {
		return host.Observed{}, false
	}
	o, ok := h.Get(inst.VMID)
	if ok && c.opts.Network != nil {
		// A load balancer probe named by the set's healthProbe decides.
		if lh, gen, lok := c.opts.Network.Health(inst, o.Health); lok {
			o.Health, o.Gen = lh, o.Gen*1000003^gen
		}
	}
	return o, ok
}

// Enqueue asks for a reconcile of a scale set.
func (c *Controller) Enqueue(ref model.SetRef) { c.q.Add(ref.String()) }

// Run runs the controller until ctx ends. The hosts must be running
// (their Ready channels closed) for reconciles to start.
func (c *Controller) Run(ctx context.Context) error {
	for _, h := range c.opts.Hosts {
		select {
		case <-h.Ready():
		case <-ctx.Done():
			return nil
		}
	}
	rev, err := c.opts.Store.Revision(ctx)
	if err != nil {
		return err
	}
	c.safely("startup sweeps", func() {
		if err := c.sweepOrphans(ctx); err != nil {
			c.log.Error("orphan sweep failed", "err", err)
		}
		c.sweepOperations(ctx)
		c.enqueueAll(ctx)
	})

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.q.Close()

	wg.Go(func() { c.watch(ctx, rev+1) })
	wg.Go(func() {
		t := time.NewTicker(c.opts.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.safely("periodic sweeps", func() {
					c.enqueueAll(ctx)
					c.sweepResourceGroups(ctx)
					c.sweepOperations(ctx)
				})
			}
		}
	})
	for range c.opts.Workers {
		wg.Go(func() { c.worker(ctx) })
	}
	<-ctx.Done()
	return nil
}

func (c *Controller) watch(ctx context.Context, from int64) {
	for ctx.Err() == nil {
		ch, err := c.opts.Store.Watch(ctx, "/", from)
		if err != nil {
			if errors.Is(err, store.ErrCompacted) {
				from = 0
				c.enqueueAll(ctx)
				continue
			}
			c.log.Error("watch failed", "err", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			continue
		}
		for ev := range ch {
			from = ev.KV.ModRevision + 1
			c.safely("watch event", func() { c.onEvent(ctx, ev) })
		}
		if ctx.Err() == nil {
			// The watcher was cancelled (too slow): catch up with a resync.
			c.enqueueAll(ctx)
			from = 0
		}
	}
}

func (c *Controller) onEvent(ctx context.Context, ev store.Event) {
	k := string(ev.KV.Key)
	switch {
	case strings.HasPrefix(k, model.PrefixScaleSets):
		c.q.Add(k[len(model.PrefixScaleSets):])
	case strings.HasPrefix(k, model.PrefixInstances):
		rest := k[len(model.PrefixInstances):]
		if i := strings.LastIndexByte(rest, '/'); i > 0 {
			c.q.Add(rest[:i])
		}
	case strings.HasPrefix(k, model.PrefixImages):
		// A new or removed image can unblock or break scale-out: revisit
		// every scale set.
		c.enqueueAll(ctx)
	case strings.HasPrefix(k, model.PrefixResourceGroups):
		c.sweepResourceGroups(ctx)
	case strings.HasPrefix(k, model.PrefixRollouts):
		// A rollout created, cancelled or approved through the API.
		if setKey, ok := model.RolloutSetKey(k); ok {
			c.q.Add(setKey)
		}
	}
}

func (c *Controller) enqueueAll(ctx context.Context) {
	kvs, _, err := c.opts.Store.List(ctx, model.PrefixScaleSets)
	if err != nil {
		c.log.Error("list scale sets", "err", err)
		return
	}
	for _, kv := range kvs {
		c.q.Add(string(kv.Key)[len(model.PrefixScaleSets):])
	}
}

func (c *Controller) worker(ctx context.Context) {
	for {
		key, ok := c.q.Get()
		if !ok {
			return
		}
		start := time.Now()
		requeue, err := c.safeReconcile(ctx, key)
		if c.opts.Metrics != nil {
			c.opts.Metrics.Reconciled(time.Since(start), err)
		}
		c.q.Done(key)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			d := c.q.Retry(key)
			c.log.Warn("reconcile failed", "set", key, "retry", d, "err", err)
		default:
			c.q.Forget(key)
			if requeue > 0 {
				c.q.AddAfter(key, requeue)
			}
		}
	}
}

func (c *Controller) safeReconcile(ctx context.Context, key string) (d time.Duration, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reconcile panic: %v\n%s", r, debug.Stack())
		}
	}()
	return c.reconcile(ctx, key)
}

// reconcile runs plan/execute rounds until the set converges.
func (c *Controller) reconcile(ctx context.Context, key string) (time.Duration, error) {
	ref, ok := model.RefFromKey(key)
	if !ok {
		return 0, nil
	}
	var rolloutWake time.Duration
	for round := 0; round < 20; round++ {
		set, _, err := state.Get[model.ScaleSet](ctx, c.opts.Store, model.ScaleSetKey(ref))
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		st, stRev, err := state.Get[model.ScaleSetStatus](ctx, c.opts.Store, model.ScaleSetStatusKey(ref))
		if errors.Is(err, store.ErrNotFound) {
			st, stRev = &model.ScaleSetStatus{}, 0
		} else if err != nil {
			return 0, err
		}
		insts, revs, err := state.List[model.Instance](ctx, c.opts.Store, model.InstancePrefix(ref))
		if err != nil {
			return 0, err
		}
		in, err := c.input(ctx, set, st, insts)
		if err != nil {
			return 0, err
		}
		// A rolling upgrade steps first (rolling.go).
		rs, err := c.stepRollout(ctx, set, st, stRev, insts, revs, in)
		if errors.Is(err, store.ErrConflict) || err == nil && rs.changed {
			continue
		}
		if err != nil {
			return 0, err
		}
		rolloutWake = rs.wake
		if rs.surge > 0 {
			// maxSurge instances are not a scale-out to undo.
			in.Set = withCapacity(set, set.Capacity()+int64(rs.surge))
		}
		plan := reconcile.Compute(in)
		if plan.Converged() {
			return rolloutWake, c.settle(ctx, set, st, stRev, plan.Err, nil)
		}
		c.log.Debug("plan", "set", key, "round", round, "plan", plan.Summary())
		if plan.Finalize {
			return 0, c.finalize(ctx, set)
		}
		if len(plan.Create) > 0 || len(plan.Retire) > 0 {
			if err := c.persistIntent(ctx, ref, plan, insts, revs, st, stRev); err != nil {
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				return 0, err
			}
			continue // re-plan with the new records
		}
		if err := c.execute(ctx, set, insts, plan.Actions); err != nil {
			actionErr := instanceError(err)
			if set.Deleting {
				// A deletion retries until it is done; finalize completes
				// its operation.
				return 0, actionErr
			}
			// Fail the operations this generation owes, then retry with
			// backoff (the worker requeues on error) rather than spin.
			if serr := c.settle(ctx, set, st, stRev, plan.Err, actionErr); serr != nil {
				return 0, serr
			}
			return 0, actionErr
		}
	}
	return time.Second, nil
}

func (c *Controller) input(ctx context.Context, set *model.ScaleSet, st *model.ScaleSetStatus, insts []*model.Instance) (reconcile.Input, error) {
	images, _, err := state.List[model.ImageVersion](ctx, c.opts.Store, model.PrefixImages)
	if err != nil {
		return reconcile.Input{}, err
	}
	imgs := make([]model.ImageVersion, len(images))
	for i, v := range images {
		imgs[i] = *v
	}
	custom := map[string]reconcile.CustomImage{}
	if src := set.ImageSource(); src.IsCustom() {
		img, err := c.opts.Images.ResolveURI(ctx, src.URI)
		custom[src.URI] = reconcile.CustomImage{Image: img, Err: toErr(err)}
	}
	obs := make(map[string]driver.Status, len(insts))
	c.mu.Lock()
	for _, inst := range insts {
		c.index[inst.VMID] = set.Ref().String()
	}
	c.mu.Unlock()
	for _, inst := range insts {
		if o, ok := c.Observe(inst); ok {
			obs[inst.VMID] = o.Status
		}
	}
	hosts := make([]reconcile.Host, 0, len(c.opts.Hosts))
	for _, h := range c.opts.Hosts {
		hosts = append(hosts, reconcile.Host{Name: h.Name(), FaultDomain: h.FaultDomain()})
	}
	return reconcile.Input{
		Set: set, Status: *st, Instances: insts, Observed: obs, Hosts: hosts,
		Images: imgs, Custom: custom, Now: c.opts.Now(), NewVMID: state.NewID,
	}, nil
}

func toErr(err error) *errs.Error {
	if err == nil {
		return nil
	}
	return errs.From(err)
}

// persistIntent writes new instance records and scale-in marks in one
// transaction guarded by the status and instance revisions.
func (c *Controller) persistIntent(ctx context.Context, ref model.SetRef, plan *reconcile.Plan, insts []*model.Instance, revs []int64, st *model.ScaleSetStatus, stRev int64) error {
	conds := []store.Cond{store.ModRevisionIs(model.ScaleSetStatusKey(ref), stRev)}
	var ops []store.Op
	for _, inst := range plan.Create {
		k := model.InstanceKey(ref, inst.ID)
		conds = append(conds, store.ModRevisionIs(k, 0))
		ops = append(ops, state.PutOp(k, inst))
	}
	retire := map[int64]bool{}
	for _, id := range plan.Retire {
		retire[id] = true
	}
	for i, inst := range insts {
		if !retire[inst.ID] {
			continue
		}
		k := model.InstanceKey(ref, inst.ID)
		cp := *inst
		cp.Deleting = true
		cp.ProvisioningState = model.StateDeleting
		conds = append(conds, store.ModRevisionIs(k, revs[i]))
		ops = append(ops, state.PutOp(k, &cp))
	}
	ns := *st
	ns.NextInstanceID = plan.NextInstanceID
	if ns.ProvisioningState == "" || ns.ProvisioningState == model.StateSucceeded || ns.ProvisioningState == model.StateFailed {
		ns.ProvisioningState = model.StateUpdating
	}
	ops = append(ops, state.PutOp(model.ScaleSetStatusKey(ref), &ns))
	_, err := c.opts.Store.Txn(ctx, conds, ops...)
	if err == nil {
		c.mu.Lock()
		for _, inst := range plan.Create {
			c.index[inst.VMID] = ref.String()
		}
		c.mu.Unlock()
		c.log.Info("scale intent written", "set", ref.String(), "create", len(plan.Create), "retire", len(plan.Retire))
	}
	return err
}

// settle records a converged (or blocked) generation and completes the
// operations it satisfies.
func (c *Controller) settle(ctx context.Context, set *model.ScaleSet, st *model.ScaleSetStatus, stRev int64, planErr *errs.Error, actionErr error) error {
	ref := set.Ref()
	var failure error
	if planErr != nil {
		failure = planErr
	} else if actionErr != nil {
		failure = actionErr
	}
	ns := *st
	ns.ObservedGeneration = set.Generation
	ns.ProvisioningState = model.StateSucceeded
	ns.Error, ns.ErrorGeneration = nil, 0
	if failure != nil {
		ns.ProvisioningState = model.StateFailed
		ns.Error, ns.ErrorGeneration = state.ErrorDetail(failure), set.Generation
	}
	if !reflect.DeepEqual(ns, *st) {
		if _, err := c.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(model.ScaleSetStatusKey(ref), stRev)}, state.PutOp(model.ScaleSetStatusKey(ref), &ns)); err != nil {
			return err
		}
	}
	// Every operation up to the observed generation ends with the set's
	// state: a scale set that cannot reach its model fails the requests
	// that are waiting on it, as Azure does.
	return state.CompletePending(ctx, c.opts.Store, ref.String(), ns.ObservedGeneration, ns.Error, c.opts.Now())
}

// finalize removes a deleted scale set's records once its instances are gone.
func (c *Controller) finalize(ctx context.Context, set *model.ScaleSet) error {
	ref := set.Ref()
	pending, err := state.Pending(ctx, c.opts.Store, ref.String())
	if err != nil {
		return err
	}
	// The records go and the operations complete in one transaction, so a
	// crash cannot leave a deletion's operation InProgress.
	conds := []store.Cond{}
	ops := []store.Op{
		store.Delete(model.ScaleSetKey(ref)),
		store.Delete(model.ScaleSetStatusKey(ref)),
		store.DeletePrefix(model.InstancePrefix(ref)),
		store.DeletePrefix(model.RolloutPrefix(ref)),
	}
	release, err := c.releaseOps(ctx, ref, -1)
	if err != nil {
		return err
	}
	ops = append(ops, release...)
	// A rolling upgrade's operations end with the scale set.
	if r, _, err := latestRollout(ctx, c.opts.Store, ref); err == nil && r != nil && r.Active() {
		canceled := &arm.ErrorDetail{Code: "OperationCanceled", Message: "The operation was canceled: its scale set was deleted."}
		for _, id := range append([]string{r.Operation}, r.CancelOperations...) {
			if id != "" {
				cs, os := c.endOperation(ctx, id, arm.StatusCanceled, canceled, c.opts.Now())
				conds, ops = append(conds, cs...), append(ops, os...)
			}
		}
	}
	for _, p := range pending {
		cs, os := p.Complete(arm.StatusSucceeded, nil, c.opts.Now())
		conds, ops = append(conds, cs...), append(ops, os...)
	}
	if _, err := c.opts.Store.Txn(ctx, conds, ops...); err != nil {
		return err
	}
	c.log.Info("scale set deleted", "set", ref.String())
	c.sweepResourceGroups(ctx)
	return nil
}

// execute runs the plan's host actions, bounded in parallel. It returns the
// first failure (instances that failed are recorded as Failed).
func (c *Controller) execute(ctx context.Context, set *model.ScaleSet, insts []*model.Instance, actions []reconcile.Action) error {
	byID := make(map[int64]*model.Instance, len(insts))
	for _, inst := range insts {
		byID[inst.ID] = inst
	}
	sem := make(chan struct{}, c.opts.Parallel)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, a := range actions {
		inst := byID[a.InstanceID]
		if inst == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := c.safeAct(ctx, set, inst, a); err != nil {
				c.log.Warn("instance action failed", "set", set.Ref().String(), "instance", inst.ID, "action", a.Kind, "err", err)
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// safeAct is act, with a panic turned into the action's error.
func (c *Controller) safeAct(ctx context.Context, set *model.ScaleSet, inst *model.Instance, a reconcile.Action) (err error) {
	defer recoverErr("host action", &err)
	return c.act(ctx, set, inst, a)
}

func (c *Controller) instanceKey(inst *model.Instance) string {
	return model.InstanceKey(inst.Ref(), inst.ID)
}

// updateInstance applies fn to the stored record (CAS with retry).
func (c *Controller) updateInstance(ctx context.Context, inst *model.Instance, fn func(*model.Instance)) error {
	_, err := state.Update(ctx, c.opts.Store, c.instanceKey(inst), func(r *model.Instance) error {
		before := *r
		fn(r)
		if reflect.DeepEqual(before, *r) {
			// An unchanged record is not rewritten: a rewrite would wake
			// the watch and requeue the set past its backoff.
			return state.ErrSkip
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

func (c *Controller) spec(ctx context.Context, set *model.ScaleSet, inst *model.Instance, img model.ResolvedImage, modelVersion int64) (driver.Spec, error) {
	dir, err := c.opts.Images.Unpack(ctx, img.Digest)
	if err != nil {
		return driver.Spec{}, errs.New(errs.NotFound, "ImageNotFound", "The image artifact %s of %s is not available.", img.Digest, imageName(img)).WithTarget("imageReference").Wrap(err)
	}
	size, _, err := state.Get[model.VMSize](ctx, c.opts.Store, model.SizeKey(inst.Size))
	if errors.Is(err, store.ErrNotFound) {
		return driver.Spec{}, errs.New(errs.Conflict, "SkuNotAvailable", "The VM size '%s' is not in this cloud's size table.", inst.Size).WithTarget("sku.name")
	}
	if err != nil {
		return driver.Spec{}, err
	}
	var nw driver.Network
	if c.opts.Network != nil {
		if nw, err = c.opts.Network.Attach(ctx, set, inst); err != nil {
			return driver.Spec{}, err
		}
	}
	return driver.Spec{
		ID: inst.VMID, ImageDir: dir, ImageDigest: img.Digest, Size: size.Name, VCPUs: size.VCPUs, MemoryMB: size.MemoryMB,
		// Marketplace images are published by the operator; custom URIs
		// (tenant uploads) are untrusted.
		OperatorImage: img.URI == "",
		Metadata: driver.Metadata{
			SubscriptionID: set.Sub, ResourceGroupName: set.RG, VMScaleSetName: set.Name,
			Name: inst.Name(), InstanceID: strconv.FormatInt(inst.ID, 10), VMID: inst.VMID,
			ComputerName: inst.ComputerName, Location: set.Location(), VMSize: inst.Size,
			FaultDomain: inst.FaultDomain, UpdateDomain: inst.UpdateDomain, OSType: img.OSType,
			Publisher: img.Publisher, Offer: img.Offer, SKU: img.SKU, ImageVersion: img.ExactVersion,
			ImageURI: img.URI, ModelVersion: modelVersion, PrivateIP: nw.PrivateIP,
		},
		Provisioning: provisioning(set),
		Network:      nw,
	}, nil
}

// provisioning extracts what a guest applies at first boot from the model's
// osProfile.
func provisioning(set *model.ScaleSet) driver.Provisioning {
	var p driver.Provisioning
	if set.Model == nil || set.Model.Properties == nil || set.Model.Properties.VirtualMachineProfile == nil {
		return p
	}
	op := set.Model.Properties.VirtualMachineProfile.OSProfile
	if op == nil {
		return p
	}
	if op.AdminUsername != nil {
		p.AdminUsername = *op.AdminUsername
	}
	if lc := op.LinuxConfiguration; lc != nil && lc.SSH != nil {
		for _, k := range lc.SSH.PublicKeys {
			if k != nil && k.KeyData != nil {
				p.SSHKeys = append(p.SSHKeys, *k.KeyData)
			}
		}
	}
	if op.CustomData != nil {
		if b, err := base64.StdEncoding.DecodeString(*op.CustomData); err == nil {
			p.CustomData = b
		}
	}
	return p
}

func imageName(img model.ResolvedImage) string {
	if img.URI != "" {
		return img.URI
	}
	return img.Publisher + ":" + img.Offer + ":" + img.SKU + ":" + img.ExactVersion
}

// hostErrors maps what drivers report to the ARM error an instance shows.
var hostErrors = []struct {
	sentinel error
	kind     errs.Kind
	code     string
}{
	{driver.ErrInsufficientCapacity, errs.Conflict, "AllocationFailed"},
	{driver.ErrSizeUnsupported, errs.Invalid, "SkuNotAvailable"},
	{driver.ErrImageInvalid, errs.Invalid, "InvalidImage"},
	{driver.ErrSandboxUnavailable, errs.Conflict, "SandboxNotAvailable"},
	{driver.ErrNetworkInvalid, errs.Invalid, "InvalidNetworkConfiguration"},
}

// instanceError is the ARM error recorded on an instance whose host action
// failed.
func instanceError(err error) *errs.Error {
	if e := errs.From(err); e.Kind != errs.Internal {
		return e
	}
	for _, h := range hostErrors {
		if errors.Is(err, h.sentinel) {
			return errs.New(h.kind, h.code, "%s", err.Error()).Wrap(err)
		}
	}
	return errs.New(errs.Internal, "ProvisioningFailed", "%s", err.Error()).Wrap(err)
}

func failed(err error) func(*model.Instance) {
	return func(r *model.Instance) {
		r.ProvisioningState = model.StateFailed
		r.Error = state.ErrorDetail(instanceError(err))
	}
}

func (c *Controller) act(ctx context.Context, set *model.ScaleSet, inst *model.Instance, a reconcile.Action) error {
	h := c.hosts[inst.Host]
	if h == nil && a.Kind != reconcile.ActRemove {
		err := errs.New(errs.Internal, "HostNotFound", "Host %q of instance %d is not registered.", inst.Host, inst.ID)
		_ = c.updateInstance(ctx, inst, failed(err))
		return err
	}
	defer c.drainFor(ctx, inst, a)()
	switch a.Kind {
	case reconcile.ActRemove:
		if h != nil {
			if err := h.Delete(ctx, inst.VMID); err != nil {
				return err
			}
		}
		release, err := c.releaseOps(ctx, inst.Ref(), inst.ID)
		if err != nil {
			return err
		}
		_, err = c.opts.Store.Txn(ctx, nil, append(release, store.Delete(c.instanceKey(inst)))...)
		c.mu.Lock()
		delete(c.index, inst.VMID)
		c.mu.Unlock()
		return err
	case reconcile.ActPlace:
		spec, err := c.spec(ctx, set, inst, inst.Image, inst.ModelVersion)
		if err == nil {
			err = h.Create(ctx, spec)
		}
		if err != nil {
			_ = c.updateInstance(ctx, inst, failed(err))
			return err
		}
		return c.updateInstance(ctx, inst, func(r *model.Instance) {
			r.Placed, r.ProvisioningState, r.Error = true, model.StateSucceeded, nil
			r.AppliedReimage, r.AppliedRestart = inst.ReimageSeq, inst.RestartSeq
		})
	case reconcile.ActUpgrade, reconcile.ActReimage:
		img, mv := inst.Image, inst.ModelVersion
		if a.Kind == reconcile.ActUpgrade {
			img, mv = a.Image, a.ModelVersion
		}
		if err := c.updateInstance(ctx, inst, func(r *model.Instance) { r.ProvisioningState = model.StateUpdating }); err != nil {
			return err
		}
		spec, err := c.spec(ctx, set, inst, img, mv)
		if err == nil {
			if _, onHost := h.Get(inst.VMID); onHost {
				err = h.Reimage(ctx, spec)
			} else {
				err = h.Create(ctx, spec)
			}
		}
		if err != nil {
			// The request is consumed: a failed instance stays failed until
			// the user asks again, as on Azure.
			_ = c.updateInstance(ctx, inst, func(r *model.Instance) {
				failed(err)(r)
				if a.Kind == reconcile.ActUpgrade {
					// Unless the user asked again meanwhile.
					if r.UpgradeSeq == inst.UpgradeSeq {
						r.FailedModel = a.ModelVersion
					}
				} else {
					r.AppliedReimage = inst.ReimageSeq
				}
			})
			return err
		}
		return c.updateInstance(ctx, inst, func(r *model.Instance) {
			r.Image, r.ModelVersion, r.Placed, r.FailedModel = img, mv, true, 0
			r.ProvisioningState, r.Error = model.StateSucceeded, nil
			// A reimaged instance boots; the next round applies the desired
			// power state again.
			r.AppliedReimage = inst.ReimageSeq
		})
	case reconcile.ActRestart:
		if err := h.Restart(ctx, inst.VMID); err != nil {
			_ = c.updateInstance(ctx, inst, func(r *model.Instance) { r.AppliedRestart = inst.RestartSeq })
			return err
		}
		return c.updateInstance(ctx, inst, func(r *model.Instance) {
			r.AppliedRestart, r.Power = inst.RestartSeq, model.PowerRunning
			// A restart is also how a failed instance is retried.
			r.ProvisioningState, r.Error = model.StateSucceeded, nil
		})
	case reconcile.ActStart:
		return h.Start(ctx, inst.VMID)
	case reconcile.ActStop:
		return h.Stop(ctx, inst.VMID)
	case reconcile.ActDeallocate:
		return h.Deallocate(ctx, inst.VMID)
	case reconcile.ActFail:
		err := errs.New(errs.Conflict, a.Failure, "%s", a.Reason)
		_ = c.updateInstance(ctx, inst, failed(err))
		return err
	case reconcile.ActSettle:
		return c.updateInstance(ctx, inst, func(r *model.Instance) {
			if r.ProvisioningState != model.StateFailed {
				r.ProvisioningState, r.Error = model.StateSucceeded, nil
			}
		})
	}
	return nil
}

// sweepOrphans deletes host instances that no record claims: what a crash
// between a record's deletion and the host's cleanup can leave.
func (c *Controller) sweepOrphans(ctx context.Context) error {
	insts, _, err := state.List[model.Instance](ctx, c.opts.Store, model.PrefixInstances)
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(insts))
	c.mu.Lock()
	for _, inst := range insts {
		known[inst.VMID] = true
		c.index[inst.VMID] = inst.Ref().String()
	}
	c.mu.Unlock()
	for _, h := range c.opts.Hosts {
		for _, id := range h.IDs() {
			if known[id] {
				continue
			}
			c.log.Info("removing orphan instance", "host", h.Name(), "vmid", id)
			if err := h.Delete(ctx, id); err != nil {
				c.log.Warn("orphan removal failed", "vmid", id, "err", err)
			}
		}
	}
	return nil
}

// sweepResourceGroups removes resource groups marked for deletion once
// their scale sets are gone, completing their operations in the same
// transaction.
func (c *Controller) sweepResourceGroups(ctx context.Context) {
	rgs, revs, err := state.List[model.ResourceGroup](ctx, c.opts.Store, model.PrefixResourceGroups)
	if err != nil {
		c.log.Error("list resource groups", "err", err)
		return
	}
	for i, rg := range rgs {
		if !rg.Deleting {
			continue
		}
		sets, setRevs, err := state.List[model.ScaleSet](ctx, c.opts.Store, model.ScaleSetPrefix(rg.Sub, rg.Name))
		if err != nil {
			continue
		}
		if len(sets) > 0 {
			// A scale set created while the group's deletion was being
			// recorded is deleted with it.
			for j, set := range sets {
				if set.Deleting {
					continue
				}
				set.Deleting = true
				set.Generation++
				k := model.ScaleSetKey(set.Ref())
				if _, err := c.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(k, setRevs[j])}, state.PutOp(k, set)); err != nil && !errors.Is(err, store.ErrConflict) {
					c.log.Error("delete scale set of a deleted resource group", "set", set.Ref().String(), "err", err)
				}
			}
			continue
		}
		key := model.ResourceGroupKey(rg.Sub, rg.Name)
		pending, err := state.Pending(ctx, c.opts.Store, key)
		if err != nil {
			c.log.Error("resource group operations", "rg", key, "err", err)
			continue
		}
		conds := []store.Cond{store.ModRevisionIs(key, revs[i])}
		ops := []store.Op{store.Delete(key)}
		for _, p := range pending {
			cs, os := p.Complete(arm.StatusSucceeded, nil, c.opts.Now())
			conds, ops = append(conds, cs...), append(ops, os...)
		}
		if _, err := c.opts.Store.Txn(ctx, conds, ops...); err != nil && !errors.Is(err, store.ErrConflict) {
			c.log.Error("delete resource group", "rg", key, "err", err)
		}
	}
}

// operationRetention is how long finished operations stay readable.
const operationRetention = 24 * time.Hour

// sweepOperations ends operations whose resource is gone (a crash between a
// deletion and its bookkeeping) and forgets finished operations past their
// retention.
func (c *Controller) sweepOperations(ctx context.Context) {
	exists := func(ctx context.Context, target string) (bool, error) {
		key := target
		if !strings.HasPrefix(target, model.PrefixResourceGroups) {
			ref, ok := model.RefFromKey(target)
			if !ok {
				return false, nil
			}
			key = model.ScaleSetKey(ref)
		}
		_, err := c.opts.Store.Get(ctx, key)
		if errors.Is(err, store.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	}
	if err := state.SweepOrphans(ctx, c.opts.Store, exists, c.opts.Now()); err != nil {
		c.log.Error("sweep operations", "err", err)
	}
	if err := state.GCOperations(ctx, c.opts.Store, c.opts.Now().Add(-operationRetention)); err != nil {
		c.log.Error("forget old operations", "err", err)
	}
}

// Console returns an instance's console from its host.
func (c *Controller) Console(ctx context.Context, inst *model.Instance) ([]byte, error) {
	h := c.hosts[inst.Host]
	if h == nil {
		return nil, fmt.Errorf("host %q is not registered", inst.Host)
	}
	return h.Console(ctx, inst.VMID)
}
