package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/template"
)

// Response is an in-process API answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Dispatcher runs one ARM request through the API server's router in
// process, as the principal id names: the same handlers, validation,
// authorization and operations as a REST call from that principal.
type Dispatcher interface {
	Do(ctx context.Context, id Identity, method, path string, body []byte) (*Response, error)
}

// Options configures a Runner.
type Options struct {
	Store      store.Store
	Dispatcher Dispatcher
	// Env returns the template environment of a deployment (subscription,
	// resource group, tenant, providers()); the runner adds reference().
	Env    func(ctx context.Context, rec *Record) (template.Env, error)
	Logger *slog.Logger
	// Parallelism bounds the resources applied at once per deployment
	// (DefaultParallelism when 0).
	Parallelism int
	// PollInterval is how often a resource's operation is read
	// (100 ms when 0).
	PollInterval time.Duration
	// ResourceTimeout bounds one resource's operation (30 min when 0).
	ResourceTimeout time.Duration
	// Coerce, if set, converts an evaluated body toward the resource
	// type's model as ARM does ("true" for a boolean property).
	Coerce func(resourceType string, body map[string]any) map[string]any
	// Sweep, if set, runs every SweepInterval (1 min when 0) while Run
	// runs: the API server removes the records of deleted resource groups.
	Sweep         func(ctx context.Context) error
	SweepInterval time.Duration
	Now           func() time.Time
}

// DefaultParallelism is how many resources of one deployment are applied at
// once by default.
const DefaultParallelism = 8

// Runner executes deployments. Start runs one; Run resumes the unfinished
// ones at server start.
type Runner struct {
	opts   Options
	log    *slog.Logger
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]*run
}

// New returns a Runner.
func New(opts Options) *Runner {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Parallelism <= 0 {
		opts.Parallelism = DefaultParallelism
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.ResourceTimeout <= 0 {
		opts.ResourceTimeout = 30 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = time.Minute
	}
	base, cancel := context.WithCancel(context.Background())
	return &Runner{opts: opts, log: opts.Logger, base: base, cancel: cancel, running: map[string]*run{}}
}

// Run resumes every deployment a previous process left Accepted or Running,
// then waits for ctx to end and stops the runs in flight (they stay Running
// in the store, to be resumed by the next start).
func (r *Runner) Run(ctx context.Context) error {
	recs, _, err := state.List[Record](ctx, r.opts.Store, Prefix)
	if err != nil {
		return fmt.Errorf("deploy: list deployments: %w", err)
	}
	for _, rec := range recs {
		if !rec.Finished() {
			r.log.Info("resuming deployment", "sub", rec.Sub, "rg", rec.RG, "name", rec.Name, "state", rec.State)
			r.Start(Key(rec.Sub, rec.RG, rec.Name))
		}
	}
	tick := time.NewTicker(r.opts.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Close()
			return nil
		case <-tick.C:
			if r.opts.Sweep != nil {
				if err := r.opts.Sweep(ctx); err != nil && ctx.Err() == nil {
					r.log.Error("sweep deployment records", "err", err)
				}
			}
		}
	}
}

// Close stops the runs in flight and waits for them.
func (r *Runner) Close() {
	r.cancel()
	r.wg.Wait()
}

// Start executes the deployment stored under key in the background, unless
// this process already runs it.
func (r *Runner) Start(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.running[key]; ok || r.base.Err() != nil {
		return
	}
	ru := &run{r: r, key: key, cancelled: make(chan struct{})}
	r.running[key] = ru
	r.wg.Go(func() {
		defer func() {
			r.mu.Lock()
			delete(r.running, key)
			r.mu.Unlock()
		}()
		ru.execute(r.base)
	})
}

// Cancel tells the run of key (if this process runs it) that a cancel was
// recorded: no further resource starts.
func (r *Runner) Cancel(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ru, ok := r.running[key]; ok {
		ru.cancelOnce.Do(func() { close(ru.cancelled) })
	}
}

// Wait blocks until this process no longer runs key (tests).
func (r *Runner) Wait(ctx context.Context, key string) error {
	for {
		r.mu.Lock()
		_, ok := r.running[key]
		r.mu.Unlock()
		if !ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Prepare parses rec's template and evaluates it against its parameters.
func Prepare(ctx context.Context, rec *Record, env template.Env) (*template.Template, *template.Deployment, error) {
	t, err := template.Parse(rec.Template)
	if err != nil {
		return nil, nil, err
	}
	params, err := template.ParameterValues(rec.Parameters)
	if err != nil {
		return nil, nil, err
	}
	d, err := template.Prepare(ctx, t, params, env)
	if err != nil {
		return nil, nil, err
	}
	return t, d, nil
}

// run is one execution of one deployment.
type run struct {
	r          *Runner
	key        string
	id         Identity
	cancelled  chan struct{}
	cancelOnce sync.Once

	mu      sync.Mutex
	nested  map[string]map[string]any // nested deployment id -> outputs
	done    map[string]bool           // resource ids Succeeded in an earlier attempt
	failed  []arm.ErrorDetail
	stopped bool // canceled
}

func (ru *run) update(ctx context.Context, fn func(rec *Record) error) (*Record, error) {
	return state.Update[Record](ctx, ru.r.opts.Store, ru.key, fn)
}

func (ru *run) execute(ctx context.Context) {
	log := ru.r.log.With("deployment", ru.key)
	rec, err := ru.update(ctx, func(rec *Record) error {
		if rec.Finished() {
			return state.ErrSkip
		}
		rec.State = StateRunning
		rec.Attempt++
		rec.Timestamp = ru.r.opts.Now()
		return nil
	})
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			log.Error("deployment start", "err", err)
		}
		return
	}
	if rec.Finished() {
		return
	}
	ru.id = rec.Identity
	ru.nested = map[string]map[string]any{}
	ru.done = map[string]bool{}
	for _, op := range rec.Operations {
		if op.State == StateSucceeded {
			ru.done[lower(op.ResourceID)] = true
			if op.Outputs != nil {
				ru.nested[lower(op.ResourceID)] = op.Outputs
			}
		}
	}
	if rec.CancelRequested {
		ru.cancelOnce.Do(func() { close(ru.cancelled) })
	}
	outputs, err := ru.deploy(ctx, rec)
	if ctx.Err() != nil {
		// Shutting down: the record stays Running and the next start
		// resumes it.
		return
	}
	final := StateSucceeded
	var detail *arm.ErrorDetail
	switch {
	case ru.isStopped():
		final = StateCanceled
	case err != nil:
		final = StateFailed
		detail = ru.failure(err)
	}
	now := ru.r.opts.Now()
	_, uerr := ru.update(context.WithoutCancel(ctx), func(rec *Record) error {
		rec.State = final
		rec.Error = detail
		rec.Outputs = outputs
		rec.Timestamp = now
		rec.End = &now
		return nil
	})
	if uerr != nil {
		log.Error("deployment end", "err", uerr)
	}
	log.Info("deployment ended", "state", final)
}

func (ru *run) isStopped() bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.stopped
}

// failure builds the deployment's error: a template error as it is, or
// DeploymentFailed with the failed resources' errors as details.
func (ru *run) failure(err error) *arm.ErrorDetail {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	if len(ru.failed) == 0 {
		return state.ErrorDetail(toARM(err))
	}
	return &arm.ErrorDetail{
		Code:    "DeploymentFailed",
		Message: "At least one resource deployment operation failed. Please list deployment operations for details. Please see https://aka.ms/arm-deployment-operations for usage details.",
		Details: append([]arm.ErrorDetail(nil), ru.failed...),
	}
}

func toARM(err error) error {
	var te *template.Error
	if errors.As(err, &te) {
		return te.ARM()
	}
	return err
}

// errResourcesFailed ends a graph in which a resource failed.
var errResourcesFailed = errors.New("deploy: resources failed")

// deploy prepares the template and runs its graph; it returns the outputs.
func (ru *run) deploy(ctx context.Context, rec *Record) (map[string]any, error) {
	env, err := ru.r.opts.Env(ctx, rec)
	if err != nil {
		return nil, err
	}
	env.Reference = ru.reference
	env.List = func(ctx context.Context, req template.ListRequest) (any, error) {
		return List(ctx, ru.r.opts.Dispatcher, ru.id, req)
	}
	_, d, err := Prepare(ctx, rec, env)
	if err != nil {
		return nil, err
	}
	if err := ru.graph(ctx, d, env); err != nil {
		return nil, err
	}
	outs, err := d.Outputs(ctx)
	if err != nil {
		return nil, err
	}
	return outputValues(outs), nil
}

func outputValues(outs map[string]template.Output) map[string]any {
	if len(outs) == 0 {
		return nil
	}
	m := make(map[string]any, len(outs))
	for k, o := range outs {
		if t := lower(o.Type); t == "securestring" || t == "secureobject" {
			// Secure outputs are not returned, as in Azure.
			m[k] = map[string]any{"type": o.Type}
			continue
		}
		m[k] = map[string]any{"type": o.Type, "value": o.Value}
	}
	return m
}

// graph applies d's resources in dependency order, at most Parallelism at
// once. A failed resource blocks its dependents; the others finish.
func (ru *run) graph(ctx context.Context, d *template.Deployment, env template.Env) error {
	g := newGraph(d.Resources)
	if c := g.cycle(); c != nil {
		return errs.New(errs.Invalid, "InvalidTemplate", "Deployment template validation failed: 'Circular dependency detected on resource: %s'.", strings.Join(c, " -> "))
	}
	type result struct {
		i   int
		err error
	}
	results := make(chan result)
	anyFailed := false
	cancelled := ru.cancelled
	for {
		select {
		case <-cancelled:
			ru.mu.Lock()
			ru.stopped = true
			ru.mu.Unlock()
			g.blockAll()
			cancelled = nil
		default:
		}
		if ctx.Err() == nil {
			for _, i := range g.ready() {
				if g.running() >= ru.r.opts.Parallelism {
					break
				}
				g.state[i] = nodeRunning
				res := g.res[i]
				go func() { results <- result{i, ru.apply(ctx, d, env, res)} }()
			}
		}
		if g.running() == 0 {
			break
		}
		var res result
		select {
		case res = <-results:
		case <-cancelled:
			continue
		}
		if res.err != nil {
			g.state[res.i] = nodeFailed
			anyFailed = true
		} else {
			g.state[res.i] = nodeDone
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if anyFailed {
		return errResourcesFailed
	}
	return nil
}

// metaKeys are template-only keys not sent in a resource's PUT body.
var metaKeys = map[string]bool{
	"apiversion": true, "dependson": true, "copy": true, "condition": true, "comments": true,
	"resources": true, "existing": true, "scope": true, "name": true, "type": true,
	"subscriptionid": true, "resourcegroup": true,
}

// requestBody is the PUT body of a resource from its evaluated template
// body.
func requestBody(body map[string]any) map[string]any {
	out := make(map[string]any, len(body))
	for k, v := range body {
		if !metaKeys[lower(k)] {
			out[k] = v
		}
	}
	return out
}

// apply deploys one resource and records its operation.
func (ru *run) apply(ctx context.Context, d *template.Deployment, env template.Env, res *template.Resource) error {
	if ru.alreadyDone(res.ID) {
		return nil
	}
	start := ru.r.opts.Now()
	opID := strings.ToUpper(strings.ReplaceAll(state.NewID(), "-", "")[:16])
	if _, err := ru.update(ctx, func(rec *Record) error {
		op := rec.Op(res.ID)
		if op == nil {
			rec.Operations = append(rec.Operations, Operation{ID: opID, ResourceID: res.ID})
			op = &rec.Operations[len(rec.Operations)-1]
		}
		*op = Operation{ID: op.ID, ResourceID: res.ID, ResourceType: res.Type, ResourceName: res.Name,
			State: StateRunning, Start: start, ProvisioningOperation: "Create"}
		rec.Timestamp = start
		return nil
	}); err != nil {
		return err
	}
	status, outputs, err := ru.applyResource(ctx, d, env, res)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	end := ru.r.opts.Now()
	var detail *arm.ErrorDetail
	st := StateSucceeded
	if err != nil {
		st = StateFailed
		detail = state.ErrorDetail(toARM(err))
		if status == 0 {
			status = errs.From(toARM(err)).Status()
		}
		ru.mu.Lock()
		fd := *detail
		if fd.Target != "" && fd.Target != res.ID {
			fd.Message += " (target: " + fd.Target + ")"
		}
		fd.Target = res.ID
		ru.failed = append(ru.failed, fd)
		ru.mu.Unlock()
	}
	if outputs != nil {
		ru.mu.Lock()
		ru.nested[lower(res.ID)] = outputs
		ru.mu.Unlock()
	}
	if _, uerr := ru.update(context.WithoutCancel(ctx), func(rec *Record) error {
		op := rec.Op(res.ID)
		if op == nil {
			return state.ErrSkip
		}
		op.State = st
		op.StatusCode = statusCode(status)
		op.StatusMessage = detail
		op.End = &end
		op.Outputs = outputs
		rec.Timestamp = end
		return nil
	}); uerr != nil {
		return uerr
	}
	return err
}

func (ru *run) alreadyDone(id string) bool {
	ru.mu.Lock()
	defer ru.mu.Unlock()
	return ru.done[lower(id)]
}

// statusCode is the operation's statusCode as ARM words it.
func statusCode(status int) string {
	switch status {
	case http.StatusOK:
		return "OK"
	case http.StatusCreated:
		return "Created"
	case http.StatusAccepted:
		return "Accepted"
	case 0:
		return ""
	}
	return strings.ReplaceAll(http.StatusText(status), " ", "")
}

// applyResource runs the resource's request and follows its operation.
func (ru *run) applyResource(ctx context.Context, d *template.Deployment, env template.Env, res *template.Resource) (int, map[string]any, error) {
	body, err := d.EvaluateBody(ctx, res)
	if err != nil {
		return 0, nil, err
	}
	if isType(res, TypeDeployments) {
		return ru.nestedDeployment(ctx, d, env, res, body)
	}
	if isType(res, TypeScaleSetExtensions) {
		return ru.scaleSetExtension(ctx, res, body)
	}
	path := res.ID
	if isType(res, TypeResourceGroups) {
		path = arm.ResourceGroupID(subOf(res.ID, env), res.Name)
	}
	body = requestBody(body)
	if ru.r.opts.Coerce != nil {
		body = ru.r.opts.Coerce(res.Type, body)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, ru.r.opts.ResourceTimeout)
	defer cancel()
	resp, err := ru.r.opts.Dispatcher.Do(ctx, ru.id, http.MethodPut, path+"?api-version="+url.QueryEscape(res.APIVersion), b)
	if err != nil {
		return 0, nil, err
	}
	if resp.Status >= 400 {
		return resp.Status, nil, responseError(resp)
	}
	if err := ru.follow(ctx, resp); err != nil {
		return resp.Status, nil, err
	}
	return resp.Status, nil, nil
}

func subOf(id string, env template.Env) string {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	if len(parts) > 1 && strings.EqualFold(parts[0], "subscriptions") {
		return parts[1]
	}
	return env.Subscription.SubscriptionID
}

// Resource types the runner handles itself.
const (
	TypeDeployments    = "Microsoft.Resources/deployments"
	TypeResourceGroups = "Microsoft.Resources/resourceGroups"
	// TypeScaleSetExtensions, a scale set's extension as a child resource,
	// becomes an entry of the set's extensionProfile (the model has no
	// separate extension resource).
	TypeScaleSetExtensions = "Microsoft.Compute/virtualMachineScaleSets/extensions"
)

// scaleSetExtension adds (or replaces, by name) the extension in its scale
// set's extensionProfile with a PATCH of the set, and follows its operation.
func (ru *run) scaleSetExtension(ctx context.Context, res *template.Resource, body map[string]any) (int, map[string]any, error) {
	i := strings.LastIndex(strings.ToLower(res.ID), "/extensions/")
	if i < 0 {
		return http.StatusBadRequest, nil, errs.New(errs.Invalid, "InvalidTemplate", "The scale set extension id '%s' is not valid.", res.ID)
	}
	parent, extName := res.ID[:i], res.ID[i+len("/extensions/"):]
	q := "?api-version=" + url.QueryEscape(res.APIVersion)
	resp, err := ru.r.opts.Dispatcher.Do(ctx, ru.id, http.MethodGet, parent+q, nil)
	if err != nil {
		return 0, nil, err
	}
	if resp.Status >= 400 {
		return resp.Status, nil, responseError(resp)
	}
	var set struct {
		Properties struct {
			VirtualMachineProfile struct {
				ExtensionProfile struct {
					Extensions []map[string]any `json:"extensions"`
				} `json:"extensionProfile"`
			} `json:"virtualMachineProfile"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(resp.Body, &set); err != nil {
		return 0, nil, fmt.Errorf("deploy: scale set %s: %w", parent, err)
	}
	ext := map[string]any{"name": extName, "properties": body["properties"]}
	exts := []any{}
	replaced := false
	for _, e := range set.Properties.VirtualMachineProfile.ExtensionProfile.Extensions {
		if n, _ := e["name"].(string); strings.EqualFold(n, extName) {
			exts = append(exts, ext)
			replaced = true
			continue
		}
		exts = append(exts, e)
	}
	if !replaced {
		exts = append(exts, ext)
	}
	patch, _ := json.Marshal(map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"extensionProfile": map[string]any{"extensions": exts}}}})
	resp, err = ru.r.opts.Dispatcher.Do(ctx, ru.id, http.MethodPatch, parent+q, patch)
	if err != nil {
		return 0, nil, err
	}
	if resp.Status >= 400 {
		return resp.Status, nil, responseError(resp)
	}
	if err := ru.follow(ctx, resp); err != nil {
		return resp.Status, nil, err
	}
	if resp.Status == http.StatusOK && !replaced {
		resp.Status = http.StatusCreated
	}
	return resp.Status, nil, nil
}

// nestedDeployment runs an inline nested template in the same run.
func (ru *run) nestedDeployment(ctx context.Context, d *template.Deployment, env template.Env, res *template.Resource, body map[string]any) (int, map[string]any, error) {
	nenv := env
	if res.ResourceGroup != "" && (env.ResourceGroup == nil || !strings.EqualFold(res.ResourceGroup, env.ResourceGroup.Name)) {
		rg, err := ru.resourceGroup(ctx, subOf(res.ID, env), res.ResourceGroup)
		if err != nil {
			return 0, nil, err
		}
		nenv.ResourceGroup = rg
	}
	if res.SubscriptionID != "" && !strings.EqualFold(res.SubscriptionID, env.Subscription.SubscriptionID) {
		return http.StatusBadRequest, nil, errs.New(errs.Invalid, "InvalidCrossSubscriptionDeployment", "The nested deployment '%s' targets subscription '%s': vmssd deploys within the deployment's own subscription only.", res.Name, res.SubscriptionID)
	}
	nenv.Deployment.Name = res.Name
	nd, err := d.PrepareNested(ctx, body, nenv)
	if err != nil {
		return http.StatusBadRequest, nil, err
	}
	if err := ru.graph(ctx, nd, nenv); err != nil {
		return http.StatusBadRequest, nil, err
	}
	outs, err := nd.Outputs(ctx)
	if err != nil {
		return http.StatusBadRequest, nil, err
	}
	o := outputValues(outs)
	if o == nil {
		o = map[string]any{}
	}
	return http.StatusCreated, o, nil
}

func (ru *run) resourceGroup(ctx context.Context, sub, name string) (*template.ResourceGroup, error) {
	resp, err := ru.r.opts.Dispatcher.Do(ctx, ru.id, http.MethodGet, arm.ResourceGroupID(sub, name)+"?api-version=2021-04-01", nil)
	if err != nil {
		return nil, err
	}
	if resp.Status >= 400 {
		return nil, responseError(resp)
	}
	var g struct {
		Name     string            `json:"name"`
		Location string            `json:"location"`
		Tags     map[string]string `json:"tags"`
	}
	_ = json.Unmarshal(resp.Body, &g)
	return &template.ResourceGroup{Name: g.Name, Location: g.Location, Tags: g.Tags}, nil
}

// follow waits for the operation an accepted request started (its
// Azure-AsyncOperation, else its Location), reading it through the API as
// the deployment's principal.
func (ru *run) follow(ctx context.Context, resp *Response) error {
	link := resp.Header.Get("Azure-AsyncOperation")
	monitor := false
	if link == "" && resp.Status == http.StatusAccepted {
		link, monitor = resp.Header.Get("Location"), true
	}
	if link == "" {
		return nil
	}
	u, err := url.Parse(link)
	if err != nil {
		return fmt.Errorf("deploy: operation link %q: %w", link, err)
	}
	path := u.Path
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	// The first read is immediate (many operations are already complete);
	// then the pause doubles from 20 ms up to PollInterval.
	pause := 20 * time.Millisecond
	for {
		st, err := ru.r.opts.Dispatcher.Do(ctx, ru.id, http.MethodGet, path, nil)
		if err != nil {
			return err
		}
		if monitor {
			switch {
			case st.Status == http.StatusAccepted:
			case st.Status >= 400:
				return responseError(st)
			default:
				return nil
			}
		} else {
			if st.Status >= 400 {
				return responseError(st)
			}
			var os arm.OperationStatus
			if err := json.Unmarshal(st.Body, &os); err != nil {
				return fmt.Errorf("deploy: operation status: %w", err)
			}
			switch {
			case strings.EqualFold(os.Status, arm.StatusSucceeded):
				return nil
			case strings.EqualFold(os.Status, "Failed"), strings.EqualFold(os.Status, "Canceled"):
				if os.Error != nil {
					return detailError(*os.Error, errs.Conflict)
				}
				return errs.New(errs.Conflict, "OperationFailed", "The resource operation ended %s.", os.Status)
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errs.New(errs.Conflict, "ResourceDeploymentTimeout", "The resource operation did not complete within %s.", ru.r.opts.ResourceTimeout)
			}
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, ru.r.opts.PollInterval)
	}
}

// responseError turns an ARM error answer into an error.
func responseError(resp *Response) error {
	var er arm.ErrorResponse
	kind := errs.Invalid
	switch resp.Status {
	case http.StatusNotFound:
		kind = errs.NotFound
	case http.StatusConflict:
		kind = errs.Conflict
	case http.StatusUnauthorized:
		kind = errs.Unauthenticated
	}
	if resp.Status >= 500 {
		kind = errs.Internal
	}
	if err := json.Unmarshal(resp.Body, &er); err != nil || er.Error.Code == "" {
		return errs.New(kind, "ResourceDeploymentFailure", "The resource request answered %d %s.", resp.Status, http.StatusText(resp.Status))
	}
	return detailError(er.Error, kind)
}

func detailError(d arm.ErrorDetail, kind errs.Kind) error {
	e := errs.New(kind, d.Code, "%s", d.Message).WithTarget(d.Target)
	for _, x := range d.Details {
		e.Details = append(e.Details, detailError(x, kind).(*errs.Error))
	}
	return e
}

// reference answers reference(): a nested deployment's outputs from this
// run, anything else by a GET through the API as the deployment's
// principal (so another tenant's resource is not found).
func (ru *run) reference(ctx context.Context, req template.ReferenceRequest) (any, error) {
	ru.mu.Lock()
	outs, nested := ru.nested[lower(req.ResourceID)]
	ru.mu.Unlock()
	if nested {
		props := map[string]any{"outputs": outs, "provisioningState": StateSucceeded}
		if req.Full {
			return map[string]any{"id": req.ResourceID, "properties": props}, nil
		}
		return props, nil
	}
	return Reference(ctx, ru.r.opts.Dispatcher, ru.id, req)
}

// List answers a list*() function (listKeys, ...) by a POST of the action
// through the API as id.
func List(ctx context.Context, disp Dispatcher, id Identity, req template.ListRequest) (any, error) {
	var body []byte
	if req.Body != nil {
		b, err := json.Marshal(req.Body)
		if err != nil {
			return nil, err
		}
		body = b
	}
	resp, err := disp.Do(ctx, id, http.MethodPost, req.ResourceID+"/"+url.PathEscape(req.Function)+"?api-version="+url.QueryEscape(req.APIVersion), body)
	if err != nil {
		return nil, err
	}
	if resp.Status >= 400 {
		return nil, responseError(resp)
	}
	var v any
	if len(resp.Body) > 0 {
		if err := json.Unmarshal(resp.Body, &v); err != nil {
			return nil, fmt.Errorf("deploy: %s %s: %w", req.Function, req.ResourceID, err)
		}
	}
	return v, nil
}

// Reference answers reference() for a resource by a GET through the API as
// id: its properties, or the whole resource with Full.
func Reference(ctx context.Context, disp Dispatcher, id Identity, req template.ReferenceRequest) (any, error) {
	api := req.APIVersion
	if api == "" && req.Resource != nil {
		api = req.Resource.APIVersion
	}
	if api == "" {
		return nil, errs.New(errs.Invalid, "InvalidTemplate", "reference('%s') needs an api-version for a resource the template does not deploy.", req.ResourceID)
	}
	resp, err := disp.Do(ctx, id, http.MethodGet, req.ResourceID+"?api-version="+url.QueryEscape(api), nil)
	if err != nil {
		return nil, err
	}
	if resp.Status >= 400 {
		return nil, responseError(resp)
	}
	var v map[string]any
	if err := json.Unmarshal(resp.Body, &v); err != nil {
		return nil, fmt.Errorf("deploy: reference %s: %w", req.ResourceID, err)
	}
	if req.Full {
		return v, nil
	}
	if p, ok := v["properties"]; ok {
		return p, nil
	}
	return map[string]any{}, nil
}
