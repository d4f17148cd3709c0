package apiserver

import (
	"cmp"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/vmssd/vmssd/internal/errs"
)

// Resource providers: which namespaces and resource types this cloud serves,
// with their api-versions and locations, as ARM's providers API reports them
// (az resolves api-versions this way: az resource, az vmss create). The
// index is built from the routes, so a route added for a new resource type
// is advertised without further work, plus the collection types no route
// names a resource of.

const (
	nsCompute   = "Microsoft.Compute"
	nsNetwork   = "Microsoft.Network"
	nsResources = "Microsoft.Resources"
)

// resourceTypeInfo is one resource type of a namespace.
type resourceTypeInfo struct {
	name string // "virtualMachineScaleSets/virtualMachines"
	api  map[string]bool
}

// providerInfo is a namespace.
type providerInfo struct {
	namespace string
	// operator namespaces exist only for the operator (admin APIs).
	operator bool
	types    []*resourceTypeInfo
}

func (p *providerInfo) typ(name string) *resourceTypeInfo {
	for _, t := range p.types {
		if strings.EqualFold(t.name, name) {
			return t
		}
	}
	return nil
}

// providerIndex is every namespace, in registration order.
type providerIndex struct {
	providers []*providerInfo
}

func (x *providerIndex) get(ns string) *providerInfo {
	for _, p := range x.providers {
		if strings.EqualFold(p.namespace, ns) {
			return p
		}
	}
	return nil
}

// add records a type (or only the namespace when typ is ""); api-versions of
// several routes of one type are merged.
func (x *providerIndex) add(ns, typ string, api map[string]bool, operator bool) {
	p := x.get(ns)
	if p == nil {
		p = &providerInfo{namespace: ns, operator: operator}
		x.providers = append(x.providers, p)
	}
	p.operator = p.operator && operator
	if typ == "" {
		return
	}
	t := p.typ(typ)
	if t == nil {
		t = &resourceTypeInfo{name: typ, api: map[string]bool{}}
		p.types = append(p.types, t)
	}
	for v := range api {
		t.api[v] = true
	}
}

// routeTail is the part of a route pattern after its provider namespace.
func routeTail(pattern []string) []string {
	for i := len(pattern) - 2; i >= 0; i-- {
		if strings.EqualFold(pattern[i], "providers") {
			return pattern[i+2:]
		}
	}
	return nil
}

func isVar(seg string) bool { return len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' }

// armType splits an ARM path into its provider namespace and resource type
// chain ("virtualMachineScaleSets/virtualMachines"): segments after the last
// "providers/{namespace}" alternate type and name. Paths without a provider
// are Microsoft.Resources' (subscriptions, resource groups, locations).
// named reports whether the last type segment is followed by a name.
func armType(segs []string) (ns string, chain []string, named bool) {
	start := -1
	for i := len(segs) - 2; i >= 0; i-- {
		if strings.EqualFold(segs[i], "providers") {
			start = i
			break
		}
	}
	var rest []string
	if start >= 0 {
		ns, rest = segs[start+1], segs[start+2:]
	} else {
		ns, rest = nsResources, segs
		if len(rest) > 0 && strings.EqualFold(rest[0], "subscriptions") {
			// subscriptions/{sub}/resourceGroups/{rg}/x: the types are
			// those under the subscription.
			if len(rest) == 2 {
				return ns, []string{"subscriptions"}, true
			}
			if len(rest) > 2 {
				rest = rest[2:]
			}
		}
	}
	for i := 0; i < len(rest); i += 2 {
		chain = append(chain, rest[i])
		named = i+1 < len(rest)
	}
	return ns, chain, named
}

// extraType is a type no route names a resource of (a collection or proxy
// type), or a namespace alone (typ "") that az asks about.
type extraType struct {
	ns, typ string
	api     map[string]bool
}

// extraTypes are the types and namespaces indexProviders adds to the
// routes'.
func extraTypes() []extraType {
	cv, rv, sv := ComputeAPIVersions, ResourcesAPIVersions, SubscriptionsAPIVersions
	return []extraType{
		{nsCompute, "skus", ResourceSKUsAPIVersions},
		{nsCompute, "locations/vmSizes", cv},
		{nsCompute, "locations/virtualMachineScaleSets", cv},
		{nsNetwork, "", nil},
		{nsResources, "subscriptions", sv},
		{nsResources, "subscriptions/locations", sv},
		{nsResources, "subscriptions/providers", rv},
		{nsResources, "subscriptions/resourceGroups", rv},
		{nsResources, "resourceGroups", rv},
		{nsResources, "providers", rv},
		{nsResources, "deployments", rv},
		{nsResources, "deployments/operations", rv},
		{nsResources, "deploymentOperations", rv},
		{"vmssd.Storage", "artifacts", AdminAPIVersions},
	}
}

// indexProviders builds the provider index from the routes and extra; call
// it once all routes are registered.
func (s *Server) indexProviders(extra []extraType) {
	x := &providerIndex{}
	for _, rt := range s.routes {
		ns, chain, named := armType(rt.pattern)
		if rt.anon || ns == nsResources || isVar(ns) {
			continue
		}
		x.add(ns, "", nil, rt.operator)
		// Each type segment followed by a name makes a resource type, with
		// its parents; an {action} or a trailing sub-path (instanceView,
		// bootDiagnostics/serialConsole) does not.
		rest := routeTail(rt.pattern)
		if !named || len(rest) < 2 || !isVar(rest[len(rest)-1]) {
			chain = chain[:max(len(chain)-1, 0)]
		}
		for i := 1; i <= len(chain); i++ {
			if isVar(chain[i-1]) {
				break
			}
			x.add(ns, strings.Join(chain[:i], "/"), rt.api, rt.operator)
		}
	}
	for _, e := range extra {
		x.add(e.ns, e.typ, e.api, false)
	}
	// A route that takes any api-version (operation status) lists those
	// of its namespace.
	for _, p := range x.providers {
		all := map[string]bool{}
		for _, t := range p.types {
			maps.Copy(all, t.api)
		}
		for _, t := range p.types {
			if len(t.api) == 0 {
				t.api = all
			}
		}
	}
	slices.SortStableFunc(x.providers, func(a, b *providerInfo) int {
		return cmp.Compare(strings.ToLower(a.namespace), strings.ToLower(b.namespace))
	})
	s.providers = x
}

type providerTypeBody struct {
	ResourceType string   `json:"resourceType"`
	Locations    []string `json:"locations"`
	APIVersions  []string `json:"apiVersions"`
	Capabilities string   `json:"capabilities"`
}

type providerBody struct {
	ID                 string             `json:"id"`
	Namespace          string             `json:"namespace"`
	RegistrationState  string             `json:"registrationState,omitempty"`
	RegistrationPolicy string             `json:"registrationPolicy,omitempty"`
	ResourceTypes      []providerTypeBody `json:"resourceTypes"`
}

// newestFirst lists api-versions as ARM does: newest first.
func newestFirst(api map[string]bool) []string {
	vs := make([]string, 0, len(api))
	for v := range api {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	slices.Reverse(vs)
	return vs
}

func (s *Server) renderProvider(p *providerInfo, sub string) providerBody {
	b := providerBody{ID: "/providers/" + p.namespace, Namespace: p.namespace, ResourceTypes: []providerTypeBody{}}
	if sub != "" {
		b.ID = "/subscriptions/" + sub + b.ID
		b.RegistrationState, b.RegistrationPolicy = "Registered", "RegistrationRequired"
	}
	for _, t := range p.types {
		b.ResourceTypes = append(b.ResourceTypes, providerTypeBody{
			ResourceType: t.name, Locations: []string{s.opts.Location}, APIVersions: newestFirst(t.api), Capabilities: "None",
		})
	}
	return b
}

// visibleProvider finds a namespace the caller may know of.
func (s *Server) visibleProvider(rc *reqCtx, ns string) (*providerInfo, error) {
	p := s.providers.get(ns)
	if p == nil || p.operator && !rc.caller.IsOperator() {
		return nil, errs.New(errs.NotFound, "InvalidResourceNamespace", "The resource namespace '%s' is invalid.", ns)
	}
	return p, nil
}

// listProviders serves GET /subscriptions/{sub}/providers and GET /providers.
func (s *Server) listProviders(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	out := struct {
		Value []providerBody `json:"value"`
	}{Value: []providerBody{}}
	for _, p := range s.providers.providers {
		if !p.operator {
			out.Value = append(out.Value, s.renderProvider(p, rc.v("sub")))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// getProvider serves GET /subscriptions/{sub}/providers/{ns} and GET
// /providers/{ns}.
func (s *Server) getProvider(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	p, err := s.visibleProvider(rc, rc.v("ns"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.renderProvider(p, rc.v("sub")))
	return nil
}

// registerProvider serves POST /subscriptions/{sub}/providers/{ns}/register:
// every namespace is always registered.
func (s *Server) registerProvider(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.getProvider(w, r, rc)
}
