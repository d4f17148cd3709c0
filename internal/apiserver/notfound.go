package apiserver

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/vmssd/vmssd/internal/errs"
)

// Unknown paths are told apart as ARM tells them apart, so that a client
// can tell "not supported here" from "not there": a namespace, resource
// type or action this cloud does not serve is the request's mistake (400
// InvalidResourceNamespace or InvalidResourceType, naming the type and the
// api-version); a resource of a served type that does not exist is 404
// ResourceNotFound.

func queryAPIVersion(q url.Values) string {
	if v := q.Get("api-version"); v != "" {
		return v
	}
	for k, vs := range q {
		if strings.EqualFold(k, "api-version") && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// unknownRoute answers a path no route matches, for an authenticated caller.
func (s *Server) unknownRoute(r *http.Request, segs []string, c *Caller) error {
	if len(segs) >= 2 && strings.EqualFold(segs[0], "subscriptions") && segs[1] != "" {
		// What a caller may not see does not exist, whatever follows.
		if err := s.checkSubscription(r.Context(), c, segs[1]); err != nil {
			return err
		}
	}
	ns, chain, _ := armType(segs)
	p := s.providers.get(ns)
	switch {
	case p != nil && p.operator && !c.IsOperator():
		// Admin APIs do not exist for tenants (as for the routes).
		return errs.New(errs.NotFound, "NotFound", "The requested resource does not exist.")
	case p == nil:
		return errs.New(errs.Invalid, "InvalidResourceNamespace", "The resource namespace '%s' is invalid.", ns)
	}
	api := queryAPIVersion(r.URL.Query())
	if api == "" {
		return errs.New(errs.Invalid, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
	}
	typ := strings.Join(chain, "/")
	if p.typ(typ) == nil {
		return invalidResourceType(p.namespace, typ, api)
	}
	return errs.New(errs.NotFound, "ResourceNotFound", "The resource '%s' was not found.", r.URL.Path)
}

func invalidResourceType(ns, typ, api string) *errs.Error {
	return errs.New(errs.Invalid, "InvalidResourceType",
		"The resource type '%s' could not be found in the namespace '%s' for api version '%s'.", typ, ns, api)
}

// unknownAction answers a POST of an action the resource type does not
// have (.../virtualMachineScaleSets/web/bogus): an unknown resource type,
// as ARM reports it.
func unknownAction(r *http.Request, rc *reqCtx) error {
	ns, chain, _ := armType(strings.Split(strings.Trim(r.URL.Path, "/"), "/"))
	return invalidResourceType(ns, strings.Join(chain, "/"), rc.api)
}
