package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/vmssd/vmssd/api/client"
	"github.com/vmssd/vmssd/internal/deploy"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/template"
)

// Template deployments (Microsoft.Resources/deployments) at resource-group
// and subscription scope. The handlers validate the request, prepare the
// template (parameters, variables, resource expansion) to report template
// errors at once, record the deployment and hand it to the deploy.Runner,
// which applies each resource through this server's own routes as the
// caller (Do). The deployment's long-running operation is its
// operationStatuses resource, read from the deployment record.

const (
	depRGP  = rgP + "/providers/Microsoft.Resources/deployments"
	depSubP = subP + "/providers/Microsoft.Resources/deployments"
	// maxTemplateBody bounds a deployment request (Azure: 4 MB).
	maxTemplateBody = 4 << 20
	depType         = "Microsoft.Resources/deployments"
)

var deploymentNameRE = regexp.MustCompile(`^[-\w._()]{1,64}$`)

func (s *Server) registerDeployments() {
	rv := ResourcesAPIVersions
	get, put, post, del := http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete
	// The deployment operations client addresses deployments without
	// "providers/Microsoft.Resources" (ARM serves both forms).
	for _, base := range []string{depRGP, depSubP, rgP + "/deployments", subP + "/deployments"} {
		s.handle(get, base, rv, s.listDeployments)
		s.handle(put, base+"/{dep}", rv, s.putDeployment)
		s.handle(get, base+"/{dep}", rv, s.getDeployment)
		s.handle(del, base+"/{dep}", rv, s.deleteDeployment)
		s.handle(post, base+"/{dep}/validate", rv, s.validateDeployment)
		s.handle(post, base+"/{dep}/whatIf", rv, s.whatIfDeployment)
		s.handle(post, base+"/{dep}/cancel", rv, s.cancelDeployment)
		s.handle(post, base+"/{dep}/exportTemplate", rv, s.exportDeploymentTemplate)
		s.handle(get, base+"/{dep}/operations", rv, s.listDeploymentOperations)
		s.handle(get, base+"/{dep}/operations/{opid}", rv, s.getDeploymentOperation)
		s.handle(get, base+"/{dep}/operationStatuses/{op}", nil, s.deploymentOperationStatus)
	}
}

// Deployments returns the runner of template deployments; the server runs
// its Run method (it resumes deployments a crash left running).
func (s *Server) Deployments() *deploy.Runner { return s.deploys }

func (s *Server) newRunner() *deploy.Runner {
	return deploy.New(deploy.Options{
		Store: s.opts.Store, Dispatcher: s, Logger: s.log.With("component", "deploy"), Now: s.opts.Now,
		Env:    func(ctx context.Context, rec *deploy.Record) (template.Env, error) { return s.templateEnv(ctx, rec) },
		Coerce: coerceBody,
		Sweep:  s.sweepDeploymentRecords,
	})
}

// sweepDeploymentRecords removes the finished deployments and the storage
// accounts of resource groups that no longer exist (a resource group's
// deletion removes its scale sets; these records go within a minute).
func (s *Server) sweepDeploymentRecords(ctx context.Context) error {
	rgs, _, err := s.opts.Store.List(ctx, model.PrefixResourceGroups)
	if err != nil {
		return err
	}
	live := map[string]bool{}
	for _, kv := range rgs {
		live[string(kv.Key)] = true
	}
	var ops []store.Op
	for _, prefix := range []string{deploy.Prefix, storagePrefix} {
		kvs, _, err := s.opts.Store.List(ctx, prefix)
		if err != nil {
			return err
		}
		for _, kv := range kvs {
			parts := strings.Split(strings.TrimPrefix(string(kv.Key), prefix), "/")
			if len(parts) != 3 || parts[1] == "~" || live[model.ResourceGroupKey(parts[0], parts[1])] {
				continue
			}
			if prefix == deploy.Prefix {
				var rec deploy.Record
				if json.Unmarshal(kv.Value, &rec) != nil || !rec.Finished() {
					continue
				}
			}
			ops = append(ops, store.Delete(string(kv.Key)))
		}
	}
	for len(ops) > 0 {
		n := min(len(ops), 100)
		if _, err := s.opts.Store.Txn(ctx, nil, ops[:n]...); err != nil {
			return err
		}
		ops = ops[n:]
	}
	return nil
}

// modelTypes are the Go models of resource types whose template values are
// coerced as ARM's JSON handling does ("true" for a boolean property, "5"
// for an integer one) before the request reaches the handler.
var modelTypes = map[string]reflect.Type{
	"microsoft.compute/virtualmachinescalesets": reflect.TypeFor[armcompute.VirtualMachineScaleSet](),
}

func coerceBody(resourceType string, body map[string]any) map[string]any {
	t, ok := modelTypes[strings.ToLower(resourceType)]
	if !ok {
		return body
	}
	if m, ok := template.CoerceTo(body, t).(map[string]any); ok {
		return m
	}
	return body
}

// internalCallerKey carries the caller of an in-process request (Do).
type internalCallerKey struct{}

// internalCaller returns the caller Do put on the request's context.
func internalCaller(ctx context.Context) (*Caller, bool) {
	c, ok := ctx.Value(internalCallerKey{}).(*Caller)
	return c, ok
}

// callerOf resolves a deployment's identity to the principal's current
// role and subscriptions: a deleted or re-created principal stops its
// deployments.
func (s *Server) callerOf(ctx context.Context, id deploy.Identity) (*Caller, error) {
	p, _, err := state.Get[model.Principal](ctx, s.opts.Store, model.PrincipalKey(id.ClientID))
	if err != nil || id.UID != "" && p.UID != id.UID {
		return nil, errs.New(errs.Unauthenticated, "InvalidAuthenticationToken", "The principal '%s' that started the deployment no longer exists.", id.ClientID)
	}
	return &Caller{ClientID: p.ClientID, Role: p.Role, Subscriptions: p.Subscriptions}, nil
}

// Do runs an ARM request through the router in process as the principal
// id names (deploy.Dispatcher).
func (s *Server) Do(ctx context.Context, id deploy.Identity, method, path string, body []byte) (*deploy.Response, error) {
	return s.DoAs(ctx, id, method, path, nil, body)
}

// internalHost is the Host of in-process requests.
const internalHost = "vmssd.internal"

// recorder is the ResponseWriter of in-process requests.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// templateEnv is what the template functions see of this cloud.
func (s *Server) templateEnv(ctx context.Context, rec *deploy.Record) (template.Env, error) {
	env := template.Env{
		Subscription: template.Subscription{SubscriptionID: rec.Sub, TenantID: client.LoginTenant, DisplayName: rec.Sub},
		Tenant:       template.Tenant{TenantID: client.LoginTenant, DisplayName: "vmssd"},
		Deployment:   template.DeploymentInfo{Name: rec.Name, Location: rec.Location, TemplateLink: rec.TemplateLink, Mode: rec.Mode},
		Deployer:     template.Deployer{ObjectID: rec.Identity.ClientID, TenantID: client.LoginTenant, UserPrincipalName: rec.Identity.ClientID},
		Environment: map[string]any{
			"name": "vmssd", "suffixes": map[string]any{"storage": "vmssd.local"},
			"resourceManager": "https://management.vmssd.local/",
		},
		Providers: s.templateProviders,
	}
	if sub, _, err := state.Get[model.Subscription](ctx, s.opts.Store, model.SubscriptionKey(rec.Sub)); err == nil && sub.DisplayName != "" {
		env.Subscription.DisplayName = sub.DisplayName
	}
	if rec.RG != "" {
		rg, _, err := state.Get[model.ResourceGroup](ctx, s.opts.Store, model.ResourceGroupKey(rec.Sub, rec.RG))
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return env, errs.New(errs.NotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", rec.RG)
			}
			return env, err
		}
		env.ResourceGroup = &template.ResourceGroup{Name: rg.Name, Location: rg.Location, Tags: rg.Tags}
	}
	return env, nil
}

// templateProviders answers providers(): what GET .../providers/{ns}
// reports.
func (s *Server) templateProviders(_ context.Context, ns, typ string) (any, error) {
	p := s.providers.get(ns)
	if p == nil || p.operator {
		return nil, errs.New(errs.NotFound, "InvalidResourceNamespace", "The resource namespace '%s' is invalid.", ns)
	}
	var types []any
	for _, t := range p.types {
		if typ != "" && !strings.EqualFold(t.name, typ) {
			continue
		}
		vs := make([]string, 0, len(t.api))
		for v := range t.api {
			vs = append(vs, v)
		}
		sort.Sort(sort.Reverse(sort.StringSlice(vs)))
		apis := make([]any, len(vs))
		for i, v := range vs {
			apis[i] = v
		}
		entry := map[string]any{"resourceType": t.name, "locations": []any{s.opts.Location}, "apiVersions": apis}
		if typ != "" {
			return entry, nil
		}
		types = append(types, entry)
	}
	if typ != "" {
		return nil, errs.New(errs.NotFound, "InvalidResourceType", "The resource type '%s' could not be found in the namespace '%s'.", typ, ns)
	}
	return map[string]any{"namespace": p.namespace, "resourceTypes": types}, nil
}

// depRequest is a deployment request body.
type depRequest struct {
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags"`
	Properties *struct {
		Template       json.RawMessage `json:"template"`
		TemplateLink   map[string]any  `json:"templateLink"`
		Parameters     map[string]any  `json:"parameters"`
		ParametersLink map[string]any  `json:"parametersLink"`
		Mode           string          `json:"mode"`
	} `json:"properties"`
}

// readLimited reads a request body of at most limit bytes; what names it in
// the error when it is larger.
func readLimited(r *http.Request, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errs.New(errs.TooLarge, "RequestEntityTooLarge", "The %s is larger than %d bytes.", what, limit)
		}
		return nil, errs.New(errs.Invalid, "InvalidRequestContent", "The request content could not be read.").Wrap(err)
	}
	return b, nil
}

// readDeploymentBody reads a deployment request (templates may be larger
// than other ARM bodies).
func readDeploymentBody(r *http.Request) (*depRequest, error) {
	b, err := readLimited(r, maxTemplateBody, "deployment request")
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errs.New(errs.Invalid, "InvalidRequestContent", "The request content was invalid and could not be deserialized: the body is empty.")
	}
	if !json.Valid(b) {
		// az splices the template file's text into its request as
		// `template: {...}`, with the key unquoted: ARM's JSON reader
		// accepts unquoted property names, and so does this one.
		b = quoteBareKeys(b)
	}
	var req depRequest
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, errs.New(errs.Invalid, "InvalidRequestContent", "The request content was invalid and could not be deserialized: %s", trimSDK(err.Error()))
	}
	if req.Properties == nil {
		return nil, errs.New(errs.Invalid, "InvalidRequestContent", "The request content is missing 'properties'.").WithTarget("properties")
	}
	return &req, nil
}

// quoteBareKeys quotes the object keys written as bare identifiers
// ({template: ...}), outside string literals; everything else is kept.
func quoteBareKeys(b []byte) []byte {
	out := make([]byte, 0, len(b)+16)
	inStr, esc := false, false
	expectKey := false // after '{' or ',' outside strings
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inStr {
			out = append(out, c)
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr, expectKey = true, false
		case c == '{' || c == ',':
			expectKey = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
		case expectKey && isIdent(c, true):
			j := i + 1
			for j < len(b) && isIdent(b[j], false) {
				j++
			}
			k := j
			for k < len(b) && (b[k] == ' ' || b[k] == '\t' || b[k] == '\n' || b[k] == '\r') {
				k++
			}
			expectKey = false
			if k < len(b) && b[k] == ':' {
				out = append(out, '"')
				out = append(out, b[i:j]...)
				out = append(out, '"')
				i = j - 1
				continue
			}
		default:
			expectKey = false
		}
		out = append(out, c)
	}
	return out
}

// buildRecord turns a request into a deployment record, fetching linked
// templates and parameters, and prepares the template to validate it. It
// returns the prepared deployment for what-if.
func (s *Server) buildRecord(r *http.Request, rc *reqCtx, req *depRequest) (*deploy.Record, *template.Deployment, error) {
	ctx := r.Context()
	sub, rg, name := rc.v("sub"), rc.v("rg"), rc.v("dep")
	if !deploymentNameRE.MatchString(name) {
		return nil, nil, errs.New(errs.Invalid, "InvalidDeploymentName", "The deployment name '%s' is invalid: 1 to 64 letters, digits, '-', '_', '.', '(' or ')'.", name).WithTarget("deploymentName")
	}
	if rg != "" {
		if _, _, err := s.loadRG(r, sub, rg); err != nil {
			return nil, nil, err
		}
	} else if req.Location == "" {
		return nil, nil, errs.New(errs.Invalid, "InvalidDeploymentLocation", "A subscription-level deployment needs a 'location'.").WithTarget("location")
	}
	p := req.Properties
	mode := p.Mode
	switch strings.ToLower(mode) {
	case "", "incremental":
		mode = "Incremental"
	case "complete":
		return nil, nil, errs.New(errs.Invalid, "InvalidDeploymentMode", "The deployment mode 'Complete' is not supported by vmssd: it would delete every resource of the resource group the template does not name. Use 'Incremental' and delete unwanted resources explicitly.").WithTarget("properties.mode")
	default:
		return nil, nil, errs.New(errs.Invalid, "InvalidDeploymentMode", "The deployment mode '%s' is invalid: 'Incremental'.", mode).WithTarget("properties.mode")
	}
	tmpl := []byte(p.Template)
	if t := bytes.TrimSpace(tmpl); len(t) > 0 && t[0] == '"' {
		// az sends the template file's text as a JSON string (ARM
		// accepts both forms).
		var text string
		if err := json.Unmarshal(t, &text); err != nil {
			return nil, nil, errs.New(errs.Invalid, "InvalidRequestContent", "properties.template is neither an object nor a string.").WithTarget("properties.template")
		}
		tmpl = []byte(text)
	}
	hasTmpl := len(bytes.TrimSpace(tmpl)) > 0 && !bytes.Equal(bytes.TrimSpace(tmpl), []byte("null"))
	switch {
	case hasTmpl && p.TemplateLink != nil:
		return nil, nil, errs.New(errs.Invalid, "InvalidRequestContent", "Give either 'template' or 'templateLink', not both.").WithTarget("properties.templateLink")
	case p.TemplateLink != nil:
		uri, _ := p.TemplateLink["uri"].(string)
		b, err := s.fetchLink(ctx, uri, "properties.templateLink.uri")
		if err != nil {
			return nil, nil, err
		}
		tmpl = b
	case !hasTmpl:
		return nil, nil, errs.New(errs.Invalid, "InvalidRequestContent", "The deployment has neither 'template' nor 'templateLink'.").WithTarget("properties.template")
	}
	params := p.Parameters
	if p.ParametersLink != nil {
		if params != nil {
			return nil, nil, errs.New(errs.Invalid, "InvalidRequestContent", "Give either 'parameters' or 'parametersLink', not both.").WithTarget("properties.parametersLink")
		}
		uri, _ := p.ParametersLink["uri"].(string)
		b, err := s.fetchLink(ctx, uri, "properties.parametersLink.uri")
		if err != nil {
			return nil, nil, err
		}
		var file struct {
			Parameters map[string]any `json:"parameters"`
		}
		if err := json.Unmarshal(b, &file); err != nil || file.Parameters == nil {
			return nil, nil, errs.New(errs.Invalid, "InvalidContentLink", "The parameters link '%s' does not hold a parameters file (an object with 'parameters').", uri).WithTarget("properties.parametersLink.uri")
		}
		params = file.Parameters
	}
	c := rc.caller
	id := deploy.Identity{ClientID: c.ClientID}
	if p, _, err := state.Get[model.Principal](ctx, s.opts.Store, model.PrincipalKey(c.ClientID)); err == nil {
		id.UID = p.UID
	}
	now := s.opts.Now()
	rec := &deploy.Record{
		Sub: sub, RG: rg, Name: name, Location: req.Location, Template: tmpl, TemplateLink: p.TemplateLink,
		Parameters: params, ParametersLink: p.ParametersLink, Mode: mode, Tags: req.Tags,
		State: deploy.StateAccepted, CorrelationID: correlationID(r), Created: now, Timestamp: now,
		Identity: id, OperationID: state.NewID(),
	}
	env, err := s.templateEnv(ctx, rec)
	if err != nil {
		return nil, nil, err
	}
	// reference() runs only from EvaluateBody (what-if) and Outputs: bodies
	// that need it are evaluated when their dependencies exist.
	env.Reference = func(ctx context.Context, req template.ReferenceRequest) (any, error) {
		return deploy.Reference(ctx, s, id, req)
	}
	env.List = func(ctx context.Context, req template.ListRequest) (any, error) {
		return deploy.List(ctx, s, id, req)
	}
	_, d, err := deploy.Prepare(ctx, rec, env)
	if err != nil {
		return nil, nil, template.ToARM(err)
	}
	if err := checkOutputs(rec.Template); err != nil {
		return nil, nil, err
	}
	for n, secure := range d.SecureParameters {
		if secure {
			rec.SecureParameters = append(rec.SecureParameters, n)
		}
	}
	if err := s.checkResources(ctx, c, rec, d, env, ""); err != nil {
		return nil, nil, err
	}
	for _, res := range d.Resources {
		if res.Condition && !res.Existing {
			rec.Dependencies = append(rec.Dependencies, deploy.Dependency{ID: res.ID, ResourceType: res.Type, ResourceName: res.Name, DependsOn: res.DependsOn})
		}
	}
	return rec, d, nil
}

// checkOutputs parses the outputs' expressions (they are evaluated only
// when the deployment ends): a malformed one fails validation.
func checkOutputs(raw []byte) error {
	var t struct {
		Outputs map[string]any `json:"outputs"`
	}
	_ = json.Unmarshal(raw, &t)
	names := make([]string, 0, len(t.Outputs))
	for n := range t.Outputs {
		names = append(names, n)
	}
	sort.Strings(names)
	var walk func(path string, v any) error
	walk = func(path string, v any) error {
		switch x := v.(type) {
		case string:
			if strings.HasPrefix(x, "[") && !strings.HasPrefix(x, "[[") && strings.HasSuffix(x, "]") {
				if _, err := template.ParseExpression(x[1 : len(x)-1]); err != nil {
					return errs.New(errs.Invalid, template.CodeInvalidTemplate, "Deployment template language expression evaluation failed at '%s': %v", path, err).WithTarget(path)
				}
			}
		case map[string]any:
			for k, e := range x {
				if err := walk(path+"."+k, e); err != nil {
					return err
				}
			}
		case []any:
			for i, e := range x {
				if err := walk(fmt.Sprintf("%s[%d]", path, i), e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, n := range names {
		if err := walk("outputs."+n, t.Outputs[n]); err != nil {
			return err
		}
	}
	return nil
}

func correlationID(r *http.Request) string {
	if c := r.Header.Get("x-ms-correlation-request-id"); c != "" {
		return c
	}
	return state.NewID()
}

// checkResources refuses a template with resource types this cloud does not
// serve (listing those it does), types the caller may not create, and
// resources outside the deployment's subscription.
func (s *Server) checkResources(ctx context.Context, c *Caller, rec *deploy.Record, d *template.Deployment, env template.Env, path string) error {
	var details []*errs.Error
	for _, res := range d.Resources {
		if !res.Condition || res.Existing {
			continue
		}
		target := path + res.Path
		segs := strings.Split(strings.Trim(res.ID, "/"), "/")
		if len(segs) < 2 || !strings.EqualFold(segs[0], "subscriptions") || !strings.EqualFold(segs[1], rec.Sub) {
			details = append(details, errs.New(errs.Invalid, "InvalidCrossSubscriptionDeployment", "The resource '%s' is outside the deployment's subscription '%s'.", res.ID, rec.Sub).WithTarget(target))
			continue
		}
		switch {
		case strings.EqualFold(res.Type, deploy.TypeDeployments):
			if res.Body != nil {
				nenv := env
				if res.ResourceGroup != "" {
					nenv.ResourceGroup = &template.ResourceGroup{Name: res.ResourceGroup, Location: s.opts.Location}
				}
				nd, err := d.PrepareNested(ctx, res.Body, nenv)
				if err != nil {
					e := template.ToARM(err)
					e.Target = target + "." + e.Target
					details = append(details, e)
					continue
				}
				if err := s.checkResources(ctx, c, rec, nd, nenv, target+".properties.template."); err != nil {
					details = append(details, errs.From(err).Details...)
				}
			}
			continue
		case strings.EqualFold(res.Type, deploy.TypeScaleSetExtensions):
			continue // a PATCH of the scale set, checked when applied
		case strings.EqualFold(res.Type, deploy.TypeResourceGroups):
			if rec.RG != "" {
				details = append(details, errs.New(errs.Invalid, "InvalidTemplateDeployment", "The resource group '%s' can be created only by a subscription-level deployment.", res.Name).WithTarget(target))
			}
			continue
		}
		rt, ok := s.putRoute(segs)
		if !ok {
			details = append(details, errs.New(errs.Invalid, "NoRegisteredProviderFound", "The resource type '%s' of '%s' is not supported by vmssd. The supported resource types are '%s'.", res.Type, res.Name, strings.Join(s.deployableTypes(c), "', '")).WithTarget(target))
			continue
		}
		if rt.operator && !c.IsOperator() {
			details = append(details, errs.New(errs.Invalid, "AuthorizationFailed", "The client '%s' may not deploy resources of type '%s': it is an operator-only type.", c.ClientID, res.Type).WithTarget(target))
		}
	}
	if len(details) == 0 {
		return nil
	}
	e := errs.New(errs.Invalid, "InvalidTemplateDeployment", "The template deployment '%s' is not valid according to the validation procedure. See inner errors for details.", rec.Name)
	e.Details = details
	return e
}

// putRoute finds the PUT route that would serve a resource id.
func (s *Server) putRoute(segs []string) (*route, bool) {
	for i := range s.routes {
		rt := &s.routes[i]
		if rt.method != http.MethodPut {
			continue
		}
		if _, ok := match(rt.pattern, segs); ok {
			return rt, true
		}
	}
	return nil, false
}

// deployableTypes lists the resource types a template may create: those
// with a PUT route under a provider namespace, and nested deployments.
func (s *Server) deployableTypes(c *Caller) []string {
	seen := map[string]bool{strings.ToLower(deploy.TypeDeployments): true, strings.ToLower(deploy.TypeScaleSetExtensions): true}
	out := []string{deploy.TypeDeployments, deploy.TypeScaleSetExtensions}
	for _, rt := range s.routes {
		if rt.method != http.MethodPut || (rt.operator && !c.IsOperator()) {
			continue
		}
		ns, chain, named := armType(rt.pattern)
		if isVar(ns) || !named || strings.EqualFold(ns, nsResources) || !slicesHasProviders(rt.pattern) {
			continue
		}
		t := ns + "/" + strings.Join(chain, "/")
		if !seen[strings.ToLower(t)] {
			seen[strings.ToLower(t)] = true
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

func slicesHasProviders(p []string) bool {
	for _, s := range p {
		if strings.EqualFold(s, "providers") {
			return true
		}
	}
	return false
}

func (s *Server) depKey(rc *reqCtx) string { return deploy.Key(rc.v("sub"), rc.v("rg"), rc.v("dep")) }

func (s *Server) depID(rc *reqCtx) string { return depIDOf(rc.v("sub"), rc.v("rg"), rc.v("dep")) }

func depIDOf(sub, rg, name string) string {
	if rg == "" {
		return "/subscriptions/" + sub + "/providers/Microsoft.Resources/deployments/" + name
	}
	return "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Resources/deployments/" + name
}

func (s *Server) putDeployment(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	req, err := readDeploymentBody(r)
	if err != nil {
		return err
	}
	rec, _, err := s.buildRecord(r, rc, req)
	if err != nil {
		return err
	}
	key := s.depKey(rc)
	old, rev, err := state.Get[deploy.Record](ctx, s.opts.Store, key)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	case !old.Finished():
		return errs.New(errs.Conflict, "DeploymentActive", "Unable to edit or replace deployment '%s': previous deployment from '%s' is still active (provisioning state: %s). Wait for it to finish or cancel it.", rec.Name, old.Created.UTC().Format(time.RFC3339), old.State)
	}
	conds := []store.Cond{store.ModRevisionIs(key, rev)}
	ops := []store.Op{state.PutOp(key, rec)}
	if rev == 0 {
		// Keep at most deploy.MaxHistory deployments in the scope: the
		// oldest finished ones go.
		kvs, _, err := s.opts.Store.List(ctx, deploy.ScopePrefix(rec.Sub, rec.RG))
		if err != nil {
			return err
		}
		if len(kvs) >= deploy.MaxHistory {
			var done []*deploy.Record
			for _, kv := range kvs {
				var d deploy.Record
				if json.Unmarshal(kv.Value, &d) == nil && d.Finished() {
					done = append(done, &d)
				}
			}
			sort.Slice(done, func(i, j int) bool { return done[i].Created.Before(done[j].Created) })
			for i := 0; i <= len(kvs)-deploy.MaxHistory && i < len(done); i++ {
				ops = append(ops, store.Delete(deploy.Key(done[i].Sub, done[i].RG, done[i].Name)))
			}
		}
	}
	if _, err := s.opts.Store.Txn(ctx, conds, ops...); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The deployment changed concurrently; retry the request.")
		}
		return err
	}
	s.deploys.Start(key)
	s.depLRO(w, r, rc, rec)
	status := http.StatusCreated
	if rev != 0 {
		status = http.StatusOK
	}
	writeJSON(w, status, s.renderDeployment(rec))
	return nil
}

func (s *Server) depLRO(w http.ResponseWriter, r *http.Request, rc *reqCtx, rec *deploy.Record) {
	base := "https://" + r.Host + depIDOf(rec.Sub, rec.RG, rec.Name) + "/operationStatuses/" + rec.OperationID
	w.Header().Set("Azure-AsyncOperation", base+"?api-version="+url.QueryEscape(rc.api))
	w.Header().Set("Retry-After", retryAfter)
}

// renderDeployment is DeploymentExtended.
func (s *Server) renderDeployment(rec *deploy.Record) map[string]any {
	props := map[string]any{
		"provisioningState": rec.State,
		"timestamp":         rec.Timestamp.UTC().Format(time.RFC3339Nano),
		"duration":          isoDuration(rec.Duration(s.opts.Now())),
		"correlationId":     rec.CorrelationID,
		"mode":              rec.Mode,
		"parameters":        rec.PublicParameters(),
		"providers":         s.depProviders(rec),
		"dependencies":      s.depDependencies(rec),
		"outputResources":   outputResources(rec),
		"templateHash":      template.UniqueString(string(rec.Template)),
	}
	if rec.TemplateLink != nil {
		props["templateLink"] = rec.TemplateLink
	}
	if rec.ParametersLink != nil {
		props["parametersLink"] = rec.ParametersLink
	}
	if rec.Outputs != nil {
		props["outputs"] = rec.Outputs
	}
	if rec.Error != nil {
		props["error"] = rec.Error
	}
	out := map[string]any{
		"id": depIDOf(rec.Sub, rec.RG, rec.Name), "name": rec.Name, "type": depType, "properties": props,
	}
	if rec.Location != "" {
		out["location"] = rec.Location
	}
	if rec.Tags != nil {
		out["tags"] = rec.Tags
	}
	return out
}

func outputResources(rec *deploy.Record) []any {
	out := []any{}
	for _, op := range rec.Operations {
		if op.State == deploy.StateSucceeded && !strings.EqualFold(op.ResourceType, deploy.TypeDeployments) {
			out = append(out, map[string]any{"id": op.ResourceID})
		}
	}
	return out
}

func (s *Server) depDependencies(rec *deploy.Record) []any {
	out := []any{}
	for _, d := range rec.Dependencies {
		if len(d.DependsOn) == 0 {
			continue
		}
		var on []any
		for _, id := range d.DependsOn {
			_, typ, name := splitID(id)
			on = append(on, map[string]any{"id": id, "resourceType": typ, "resourceName": name})
		}
		out = append(out, map[string]any{"id": d.ID, "resourceType": d.ResourceType, "resourceName": d.ResourceName, "dependsOn": on})
	}
	return out
}

// splitID returns a resource id's namespace, full type and full name.
func splitID(id string) (ns, typ, name string) {
	segs := strings.Split(strings.Trim(id, "/"), "/")
	for i := len(segs) - 2; i >= 0; i-- {
		if strings.EqualFold(segs[i], "providers") && i+1 < len(segs) {
			ns = segs[i+1]
			rest := segs[i+2:]
			var ts, ns2 []string
			for j := 0; j+1 < len(rest); j += 2 {
				ts = append(ts, rest[j])
				ns2 = append(ns2, rest[j+1])
			}
			return ns, ns + "/" + strings.Join(ts, "/"), strings.Join(ns2, "/")
		}
	}
	return "", "", ""
}

func (s *Server) depProviders(rec *deploy.Record) []any {
	byNS := map[string]map[string]bool{}
	var order []string
	for _, d := range rec.Dependencies {
		ns, rest, _ := strings.Cut(d.ResourceType, "/")
		if byNS[ns] == nil {
			byNS[ns] = map[string]bool{}
			order = append(order, ns)
		}
		byNS[ns][rest] = true
	}
	out := []any{}
	for _, ns := range order {
		var types []any
		for t := range byNS[ns] {
			types = append(types, map[string]any{"resourceType": t, "locations": []any{s.opts.Location}})
		}
		out = append(out, map[string]any{"namespace": ns, "resourceTypes": types})
	}
	return out
}

// isoDuration formats d as ARM does ("PT12.345S").
func isoDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	h := int(d.Hours())
	m := int(d.Minutes()) % 60
	sec := (d % time.Minute).Seconds()
	out := "PT"
	if h > 0 {
		out += fmt.Sprintf("%dH", h)
	}
	if m > 0 {
		out += fmt.Sprintf("%dM", m)
	}
	return out + strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", sec), "0"), ".") + "S"
}

func (s *Server) loadDeployment(r *http.Request, rc *reqCtx) (*deploy.Record, int64, error) {
	if rg := rc.v("rg"); rg != "" {
		if _, _, err := s.loadRG(r, rc.v("sub"), rg); err != nil {
			return nil, 0, err
		}
	}
	rec, rev, err := state.Get[deploy.Record](r.Context(), s.opts.Store, s.depKey(rc))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, errs.New(errs.NotFound, "DeploymentNotFound", "Deployment '%s' could not be found.", rc.v("dep"))
	}
	return rec, rev, err
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	rec, _, err := s.loadDeployment(r, rc)
	if err != nil {
		return err
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, s.renderDeployment(rec))
	return nil
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	if rg := rc.v("rg"); rg != "" {
		if _, _, err := s.loadRG(r, rc.v("sub"), rg); err != nil {
			return err
		}
	}
	recs, _, err := state.List[deploy.Record](r.Context(), s.opts.Store, deploy.ScopePrefix(rc.v("sub"), rc.v("rg")))
	if err != nil {
		return err
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Created.After(recs[j].Created) })
	if top := rc.query.Get("$top"); top != "" {
		var n int
		if _, err := fmt.Sscan(top, &n); err == nil && n >= 0 && n < len(recs) {
			recs = recs[:n]
		}
	}
	out := []any{}
	for _, rec := range recs {
		out = append(out, s.renderDeployment(rec))
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

// deleteDeployment deletes the record only: what it deployed stays, as in
// Azure. A running deployment is refused (cancel it first).
func (s *Server) deleteDeployment(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	rec, rev, err := s.loadDeployment(r, rc)
	if err != nil {
		if e := errs.From(err); e.Code == "DeploymentNotFound" {
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return err
	}
	if !rec.Finished() {
		return errs.New(errs.Conflict, "DeploymentActive", "The deployment '%s' is %s: cancel it, or wait for it to finish, before deleting it.", rec.Name, rec.State)
	}
	if _, err := s.opts.Store.Txn(r.Context(), []store.Cond{store.ModRevisionIs(s.depKey(rc), rev)}, store.Delete(s.depKey(rc))); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The deployment changed concurrently; retry the request.")
		}
		return err
	}
	// 204 as the SDK's BeginDelete expects of a finished deletion.
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) validateDeployment(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	req, err := readDeploymentBody(r)
	if err != nil {
		return err
	}
	rec, _, err := s.buildRecord(r, rc, req)
	if err != nil {
		return err
	}
	rec.State = deploy.StateSucceeded
	out := s.renderDeployment(rec)
	props := out["properties"].(map[string]any)
	var validated []any
	for _, d := range rec.Dependencies {
		validated = append(validated, map[string]any{"id": d.ID})
	}
	props["validatedResources"] = validated
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) cancelDeployment(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	if _, _, err := s.loadDeployment(r, rc); err != nil {
		return err
	}
	_, err := state.Update[deploy.Record](r.Context(), s.opts.Store, s.depKey(rc), func(rec *deploy.Record) error {
		if rec.Finished() {
			return errs.New(errs.Conflict, "DeploymentCannotBeCancelled", "The deployment '%s' is %s: only an Accepted or Running deployment can be canceled.", rec.Name, rec.State)
		}
		rec.CancelRequested = true
		return nil
	})
	if err != nil {
		return err
	}
	s.deploys.Cancel(s.depKey(rc))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) exportDeploymentTemplate(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	rec, _, err := s.loadDeployment(r, rc)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"template": json.RawMessage(rec.Template)})
	return nil
}

func (s *Server) renderDepOperation(rec *deploy.Record, op *deploy.Operation) map[string]any {
	dur := s.opts.Now().Sub(op.Start)
	if op.End != nil {
		dur = op.End.Sub(op.Start)
	}
	ts := op.Start
	if op.End != nil {
		ts = *op.End
	}
	props := map[string]any{
		"provisioningOperation": op.ProvisioningOperation,
		"provisioningState":     op.State,
		"timestamp":             ts.UTC().Format(time.RFC3339Nano),
		"duration":              isoDuration(dur),
		"trackingId":            op.ID,
		"targetResource":        map[string]any{"id": op.ResourceID, "resourceType": op.ResourceType, "resourceName": op.ResourceName},
	}
	if op.StatusCode != "" {
		props["statusCode"] = op.StatusCode
	}
	if op.StatusMessage != nil {
		props["statusMessage"] = map[string]any{"status": "Failed", "error": op.StatusMessage}
	} else if op.State == deploy.StateSucceeded {
		props["statusMessage"] = map[string]any{"status": "OK"}
	}
	return map[string]any{
		"id": depIDOf(rec.Sub, rec.RG, rec.Name) + "/operations/" + op.ID, "operationId": op.ID, "properties": props,
	}
}

func (s *Server) listDeploymentOperations(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	rec, _, err := s.loadDeployment(r, rc)
	if err != nil {
		return err
	}
	out := []any{}
	for i := range rec.Operations {
		out = append(out, s.renderDepOperation(rec, &rec.Operations[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": out})
	return nil
}

func (s *Server) getDeploymentOperation(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	rec, _, err := s.loadDeployment(r, rc)
	if err != nil {
		return err
	}
	for i := range rec.Operations {
		if strings.EqualFold(rec.Operations[i].ID, rc.v("opid")) {
			writeJSON(w, http.StatusOK, s.renderDepOperation(rec, &rec.Operations[i]))
			return nil
		}
	}
	return errs.New(errs.NotFound, "DeploymentOperationNotFound", "The deployment operation '%s' could not be found.", rc.v("opid"))
}

// deploymentOperationStatus is the deployment's Azure-AsyncOperation.
func (s *Server) deploymentOperationStatus(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	rec, _, err := s.loadDeployment(r, rc)
	if err == nil && !strings.EqualFold(rec.OperationID, rc.v("op")) {
		err = errs.New(errs.NotFound, "NotFound", "The operation '%s' was not found.", rc.v("op"))
	}
	if err != nil {
		return err
	}
	body := map[string]any{"status": rec.State, "startTime": rec.Created.UTC().Format(time.RFC3339Nano)}
	if rec.End != nil {
		body["endTime"] = rec.End.UTC().Format(time.RFC3339Nano)
	}
	if rec.Error != nil {
		body["error"] = rec.Error
	}
	if !rec.Finished() {
		w.Header().Set("Retry-After", retryAfter)
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}
