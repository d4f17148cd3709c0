package template

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Template is a parsed deployment template.
type Template struct {
	raw map[string]any
	pos positions // nil when the template was not parsed from bytes
	src []byte

	Schema         string
	ContentVersion string
	APIProfile     string
}

// Parse reads a template from JSON (comments allowed, as ARM allows them),
// keeping the position of every value for error messages.
func Parse(src []byte) (*Template, error) {
	v, pos, err := decodeWithPositions(src)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &Error{Code: CodeInvalidTemplate, Line: 1, Column: 1, Message: "the template must be a JSON object"}
	}
	return newTemplate(m, pos, stripComments(src))
}

// FromValue wraps an already decoded template (for example the "template"
// property of a deployment request). Errors carry JSON paths but no lines.
func FromValue(v map[string]any) (*Template, error) {
	m, _ := Normalize(v).(map[string]any)
	return newTemplate(m, nil, nil)
}

func newTemplate(m map[string]any, pos positions, src []byte) (*Template, error) {
	t := &Template{raw: m, pos: pos, src: src}
	for _, f := range []struct {
		key string
		dst *string
	}{{"$schema", &t.Schema}, {"contentVersion", &t.ContentVersion}, {"apiProfile", &t.APIProfile}} {
		if v, ok := lookupKey(m, f.key); ok {
			s, ok := v.(string)
			if !ok {
				return nil, t.errAt(f.key, "the template property '%s' must be a string", f.key)
			}
			*f.dst = s
		}
	}
	if t.APIProfile != "" && apiProfiles[strings.ToLower(t.APIProfile)] == nil {
		return nil, t.errAt("apiProfile", "the API profile '%s' is not supported; supported profiles are '%s'", t.APIProfile, strings.Join(APIProfiles(), "', '"))
	}
	if lv, ok := lookupKey(m, "languageVersion"); ok {
		return nil, t.errAt("languageVersion", "the template language version '%v' (symbolic resource names) is not supported", lv)
	}
	res, ok := lookupKey(m, "resources")
	if !ok {
		return nil, t.errAt("", "the template must have a 'resources' array")
	}
	if _, ok := res.([]any); !ok {
		return nil, t.errAt("resources", "the template 'resources' property must be an array")
	}
	for _, k := range []string{"parameters", "variables", "outputs"} {
		if v, ok := lookupKey(m, k); ok && v != nil {
			if _, ok := v.(map[string]any); !ok {
				return nil, t.errAt(k, "the template '%s' property must be an object", k)
			}
		}
	}
	return t, nil
}

// Raw returns a copy of the template document.
func (t *Template) Raw() map[string]any { return deepCopy(t.raw).(map[string]any) }

// section returns a top-level object section (parameters, variables, outputs).
func (t *Template) section(name string) (map[string]any, string) {
	k, ok := realKey(t.raw, name)
	if !ok {
		return nil, name
	}
	m, _ := t.raw[k].(map[string]any)
	return m, k
}

// lineOf finds the position of path, or of its nearest recorded ancestor.
func (t *Template) lineOf(path string) (int, int) {
	if t.pos == nil {
		return 0, 0
	}
	for p := path; ; {
		if off, ok := t.pos[p]; ok {
			return lineCol(t.src, off)
		}
		if p == "" {
			return 0, 0
		}
		p = parentPath(p)
	}
}

func parentPath(p string) string {
	depth := 0
	inQuote := false
	for i := len(p) - 1; i >= 0; i-- {
		switch c := p[i]; {
		case c == '\'':
			inQuote = !inQuote
		case inQuote:
		case c == ']':
			depth++
		case c == '[':
			depth--
			if depth == 0 {
				return p[:i]
			}
		case c == '.' && depth == 0:
			return p[:i]
		}
	}
	return ""
}

func (t *Template) errAt(path, format string, args ...any) *Error {
	line, col := t.lineOf(path)
	return &Error{Code: CodeInvalidTemplate, Path: path, Line: line, Column: col, Message: fmt.Sprintf(format, args...)}
}

// wrap attaches a path (and line) to an evaluation error.
func (t *Template) wrap(path string, err error) error {
	if err == nil {
		return nil
	}
	var te *Error
	if errors.As(err, &te) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	line, col := t.lineOf(path)
	msg := err.Error()
	var se *SyntaxError
	if errors.Is(err, errRuntime) {
		msg = "The template functions 'reference' and 'list*' are not expected at this location: they can be used in resource properties and outputs only"
	} else if errors.As(err, &se) {
		msg = "The language expression is not valid: " + se.Error()
	} else {
		msg = "Unable to evaluate the template language expression: " + msg
	}
	return &Error{Code: CodeInvalidTemplate, Path: path, Line: line, Column: col, Message: msg, Err: err}
}

// ---- environment supplied by the caller ----

// Env is what only the running system knows.
type Env struct {
	Subscription  Subscription
	ResourceGroup *ResourceGroup // nil for subscription-scope deployments
	Tenant        Tenant
	Deployment    DeploymentInfo
	Deployer      Deployer
	Environment   map[string]any // environment(); a minimal AzureCloud object when nil

	Now     func() time.Time // utcNow(); time.Now when nil
	NewGUID func() string    // newGuid(); random v4 when nil

	// Reference answers reference(): the resource's properties (or, with
	// Full, the whole resource). It runs only from EvaluateBody and Outputs.
	Reference func(ctx context.Context, req ReferenceRequest) (any, error)
	// List answers list*() functions (listKeys, listSecrets, ...).
	List func(ctx context.Context, req ListRequest) (any, error)
	// Providers answers providers(namespace, [resourceType]).
	Providers func(ctx context.Context, namespace, resourceType string) (any, error)
	// Zones lists a location's availability zones for pickZones(); nil means
	// no zones (pickZones returns an empty array, as in a non-zonal region).
	Zones func(ctx context.Context, namespace, resourceType, location string) ([]string, error)
}

// Subscription is what subscription() returns.
type Subscription struct{ SubscriptionID, TenantID, DisplayName string }

// ResourceGroup is what resourceGroup() returns.
type ResourceGroup struct {
	Name, Location, ManagedBy string
	Tags                      map[string]string
}

// Tenant is what tenant() returns.
type Tenant struct{ TenantID, DisplayName, CountryCode string }

// DeploymentInfo is what deployment() returns.
type DeploymentInfo struct {
	Name         string
	Location     string         // subscription-scope deployments
	TemplateLink map[string]any // {"uri": ...} when deployed from a link
	Mode         string         // Incremental (default) or Complete
}

// Deployer is what deployer() returns.
type Deployer struct{ ObjectID, TenantID, UserPrincipalName string }

// ReferenceRequest is one reference() call.
type ReferenceRequest struct {
	ResourceID string
	APIVersion string
	Full       bool
	Resource   *Resource // the template's own resource, when it deploys it
}

// ListRequest is one list*() call.
type ListRequest struct {
	Function   string // as written, e.g. "listKeys"
	ResourceID string
	APIVersion string
	Body       any
	Resource   *Resource
}

// ---- the evaluated deployment ----

// Resource is one resource instance after copy expansion.
type Resource struct {
	Path       string // JSON path of its definition, e.g. "resources[3].resources[0]"
	Name       string // full name: "vnet/subnet" for child resources
	Type       string // full type: "Microsoft.Network/virtualNetworks/subnets"
	APIVersion string
	ID         string
	// SubscriptionID and ResourceGroup are set when the resource targets
	// another scope (nested deployments); Scope for extension resources.
	SubscriptionID string
	ResourceGroup  string
	Scope          string
	Condition      bool      // false: not deployed; dependents ignore it
	Existing       bool      // "existing": true: referenced, not deployed
	Copy           *CopyInfo // nil outside copy loops
	// DependsOn lists the IDs of the resources this one waits for: explicit
	// dependsOn, the parent of a nested child, resources named in reference()
	// or list*(), and the previous batch of a serial copy loop.
	DependsOn []string
	// Body is the evaluated request body (name, type, apiVersion, location,
	// properties, ...). Nil when NeedsRuntime: then call EvaluateBody once the
	// dependencies exist.
	Body         map[string]any
	NeedsRuntime bool

	raw      map[string]any
	sc       *scope
	parent   *Resource
	deps     []string // dependsOn as written (evaluated)
	refDeps  []*Resource
	defIndex int // position among instances of the same definition
}

// CopyInfo describes a resource's place in a copy loop.
type CopyInfo struct {
	Name      string
	Index     int
	Count     int
	Mode      string // "Parallel" or "Serial"
	BatchSize int    // serial batches; 0 for parallel
}

// Deployment is a template evaluated against parameters and an Env.
type Deployment struct {
	Parameters       map[string]any  // by declared name
	SecureParameters map[string]bool // names of securestring/secureObject parameters
	Variables        map[string]any
	Resources        []*Resource // in template order, copies expanded

	st *state
}

// Output is one evaluated output.
type Output struct {
	Type  string
	Value any
}

type state struct {
	env   *Env
	cache exprCache
	tmpl  *Template

	params    map[string]*paramState
	vars      map[string]*varState
	functions map[string]*userFunc
	resources []*Resource
	expanded  bool // resources are known: reference() can resolve names
}

type paramState struct {
	name, path string
	decl       map[string]any
	input      any
	hasInput   bool
	value      any
	done, busy bool
	typ        string
}

type varState struct {
	name, path string
	raw        any
	copyLoop   map[string]any // variable copy loop definition
	value      any
	done, busy bool
}

type userFunc struct {
	params     []funcParam
	output     any
	outputType string
}

type funcParam struct{ name, typ string }

func (st *state) now() time.Time {
	if st.env.Now != nil {
		return st.env.Now()
	}
	return time.Now()
}

func (st *state) rgID() string {
	if st.env.ResourceGroup == nil {
		return ""
	}
	return "/subscriptions/" + st.env.Subscription.SubscriptionID + "/resourceGroups/" + st.env.ResourceGroup.Name
}

func (st *state) deploymentObject() map[string]any {
	d := st.env.Deployment
	tmpl := map[string]any{"contentVersion": st.tmpl.ContentVersion}
	if st.tmpl.Schema != "" {
		tmpl["$schema"] = st.tmpl.Schema
	}
	if md, ok := lookupKey(st.tmpl.raw, "metadata"); ok {
		tmpl["metadata"] = deepCopy(md)
	}
	mode := d.Mode
	if mode == "" {
		mode = "Incremental"
	}
	props := map[string]any{"template": tmpl, "mode": mode, "provisioningState": "Accepted"}
	if d.TemplateLink != nil {
		props["templateLink"] = deepCopy(Normalize(d.TemplateLink))
	}
	out := map[string]any{"name": d.Name, "properties": props}
	if d.Location != "" {
		out["location"] = d.Location
	}
	return out
}

func (st *state) rootScope(ctx context.Context) *scope {
	return &scope{ctx: ctx, st: st}
}

// ParameterValues unwraps a deployment request's parameters object
// ({"name": {"value": ...}}) into plain values. Key Vault references are
// refused with a clear error.
func ParameterValues(p map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(p))
	for k, v := range p {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, &Error{Code: CodeInvalidTemplateDeployment, Path: "parameters." + k, Message: fmt.Sprintf("the parameter '%s' must be an object with a 'value'", k)}
		}
		if _, ok := lookupKey(obj, "reference"); ok {
			return nil, &Error{Code: CodeInvalidTemplateDeployment, Path: "parameters." + k, Message: fmt.Sprintf("the parameter '%s' is a Key Vault reference, which is not supported", k)}
		}
		val, ok := lookupKey(obj, "value")
		if !ok {
			return nil, &Error{Code: CodeInvalidTemplateDeployment, Path: "parameters." + k, Message: fmt.Sprintf("the parameter '%s' has no 'value'", k)}
		}
		out[k] = Normalize(val)
	}
	return out, nil
}

// EvaluateString evaluates one JSON string value (an expression like
// "[concat('a', 'b')]" or a literal) against env with an empty template. It
// is the entry point for one-off evaluations and the function tests.
func EvaluateString(ctx context.Context, env Env, s string) (any, error) {
	t, err := FromValue(map[string]any{"resources": []any{}})
	if err != nil {
		return nil, err
	}
	d, err := Prepare(ctx, t, nil, env)
	if err != nil {
		return nil, err
	}
	return d.Eval(ctx, s)
}

// Eval evaluates a JSON value (strings holding expressions anywhere inside)
// in the deployment's scope, with reference() and list*() allowed.
func (d *Deployment) Eval(ctx context.Context, v any) (any, error) {
	sc := d.st.rootScope(ctx)
	sc.runtime = true
	return sc.evalValue(Normalize(v))
}
