// Package apiserver is vmssd's Azure Resource Manager front end: a
// case-insensitive router over ARM paths, api-version checks, bearer-token
// authentication and tenant scoping, ETag preconditions, the long-running
// operation protocol (Azure-AsyncOperation, Location, Retry-After) and ARM
// error bodies. Handlers only validate and record intent in the store; the
// controller does the work.
package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/deploy"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/host"
	"github.com/vmssd/vmssd/internal/marketplace/syndication"
	"github.com/vmssd/vmssd/internal/metrics"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/store"
)

// Caller is an authenticated principal.
type Caller struct {
	ClientID      string
	Role          string // "operator" or "tenant"
	Subscriptions []string
}

// IsOperator reports whether the caller may use admin APIs.
func (c *Caller) IsOperator() bool { return c.Role == "operator" }

// CanSee reports whether the caller may know subscription sub exists.
func (c *Caller) CanSee(sub string) bool {
	if c.IsOperator() {
		return true
	}
	return slices.ContainsFunc(c.Subscriptions, func(s string) bool { return strings.EqualFold(s, sub) })
}

// Authenticator turns a bearer token into a caller.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Caller, error)
}

// Observer gives the hosts' view of instances.
type Observer interface {
	Observe(inst *model.Instance) (host.Observed, bool)
	// Console returns the instance's captured console (boot diagnostics).
	Console(ctx context.Context, inst *model.Instance) ([]byte, error)
}

// Artifacts is the image store as the admin API needs it.
type Artifacts interface {
	// Import stores an uploaded artifact within lim (see uploads.go).
	Import(ctx context.Context, r io.Reader, lim UploadLimits) (Upload, error)
	// ImportURI stores the artifact a URI points to (file path, file://,
	// artifact:sha256:...).
	ImportURI(ctx context.Context, uri string) (digest string, size int64, osType string, err error)
	// ResolveURI checks that a custom image URI can be used.
	ResolveURI(ctx context.Context, uri string) (model.ResolvedImage, error)
}

// Options configures the API server.
type Options struct {
	Store     store.Store
	Auth      Authenticator
	Observer  Observer
	Artifacts Artifacts
	// TokenHandler serves OIDC discovery and token endpoints (paths that are
	// not ARM paths).
	TokenHandler http.Handler
	Logger       *slog.Logger
	// Location is the cloud's single region ("local").
	Location string
	// Audience is the ARM token audience advertised by metadata/endpoints.
	Audience string
	// PageSize bounds list pages (nextLink beyond).
	PageSize int
	// MaxCapacity bounds sku.capacity.
	MaxCapacity int64
	// MaxResourceGroups bounds a subscription's resource groups (980 as
	// Azure); MaxScaleSetsPerGroup bounds a resource group's scale sets
	// (800, Azure's bound per resource type and group).
	MaxResourceGroups    int
	MaxScaleSetsPerGroup int
	// SecretRotated, if set, is told the new secret of a principal whose
	// secret was just created or rotated (the server keeps its own
	// credential files in step).
	SecretRotated func(ctx context.Context, clientID, secret string)
	Now           func() time.Time
	// MaxConcurrentUploads bounds artifact uploads in progress
	// (DefaultMaxConcurrentUploads when 0).
	MaxConcurrentUploads int
	// Metrics, if set, serves GET /metrics to operators (metrics.go).
	Metrics http.Handler
	// PublicIPPool is where public IP addresses come from
	// (network.DefaultPublicPool when empty; network.go).
	PublicIPPool []netip.Prefix
	// Dashboard, if set, serves the browser dashboard at "/" and "/ui/..."
	// (internal/dashboard); every other path stays an ARM or token path.
	Dashboard http.Handler
	// Marketplace, if set, serves the marketplace and gallery item APIs
	// (marketplace.go, gallery.go).
	Marketplace *syndication.Service
}

// Server is the HTTP handler.
type Server struct {
	opts   Options
	routes []route
	log    *slog.Logger
	vms    vmCache
	// subLocks serialise a subscription's quota-bound writes (quota.go).
	subLocks subLocks
	// uploads bounds concurrent artifact uploads (uploads.go).
	uploads uploadGate
	// providers is what the providers API reports (providers.go).
	providers *providerIndex
	// deploys runs template deployments (deployments.go).
	deploys *deploy.Runner
}

// New builds the server.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Location == "" {
		opts.Location = "local"
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 1000
	}
	if opts.MaxCapacity <= 0 {
		opts.MaxCapacity = 1000
	}
	if opts.MaxResourceGroups <= 0 {
		opts.MaxResourceGroups = 980
	}
	if opts.MaxScaleSetsPerGroup <= 0 {
		opts.MaxScaleSetsPerGroup = 800
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger}
	s.deploys = s.newRunner()
	s.register()
	s.indexProviders(extraTypes())
	return s
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, rc *reqCtx) error

// route is a method and a path pattern; literal segments match
// case-insensitively, {name} segments capture.
type route struct {
	method  string
	pattern []string
	h       handlerFunc
	// api is the set of api-versions accepted (nil: any well-formed one).
	api map[string]bool
	// anon routes need no token.
	anon bool
	// operator routes need the operator role.
	operator bool
	// tmpl is the route's template: the metrics' route label.
	tmpl string
}

// reqCtx carries what every handler needs.
type reqCtx struct {
	caller *Caller
	vars   map[string]string
	api    string
	query  url.Values
}

func (rc *reqCtx) v(name string) string { return rc.vars[name] }

func (s *Server) handle(method, pattern string, api map[string]bool, h handlerFunc) *route {
	s.routes = append(s.routes, route{method: method, pattern: strings.Split(strings.Trim(pattern, "/"), "/"), h: h, api: api, tmpl: "/" + strings.Trim(pattern, "/")})
	return &s.routes[len(s.routes)-1]
}

func match(pattern, segs []string) (map[string]string, bool) {
	if len(pattern) != len(segs) {
		return nil, false
	}
	var vars map[string]string
	for i, p := range pattern {
		if len(p) > 2 && p[0] == '{' && p[len(p)-1] == '}' {
			if segs[i] == "" {
				return nil, false
			}
			if vars == nil {
				vars = map[string]string{}
			}
			vars[p[1:len(p)-1]] = segs[i]
			continue
		}
		if !strings.EqualFold(p, segs[i]) {
			return nil, false
		}
	}
	return vars, true
}

var armRoots = map[string]bool{"subscriptions": true, "providers": true, "metadata": true, "tenants": true}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	reqID := newRequestID()
	w.Header().Set("x-ms-request-id", reqID)
	if c := r.Header.Get("x-ms-correlation-request-id"); c != "" {
		w.Header().Set("x-ms-correlation-request-id", c)
	} else {
		w.Header().Set("x-ms-correlation-request-id", reqID)
	}
	path := strings.Trim(r.URL.Path, "/")
	segs := strings.Split(path, "/")
	if len(segs) > 1 {
		// Empty segments are ignored, as ARM ignores them: az's generic
		// resource calls send "providers/Microsoft.Compute//virtualMachineScaleSets/web"
		// for a resource without a parent.
		segs = slices.DeleteFunc(segs, func(s string) bool { return s == "" })
	}
	if s.opts.Metrics != nil && len(segs) == 1 && strings.EqualFold(segs[0], "metrics") {
		s.serveMetrics(w, r)
		return
	}
	if s.opts.Dashboard != nil && (path == "" || strings.EqualFold(segs[0], "ui")) {
		metrics.SetRoute(r.Context(), "/ui")
		s.opts.Dashboard.ServeHTTP(w, r)
		return
	}
	if !armRoots[strings.ToLower(segs[0])] && s.opts.TokenHandler != nil {
		metrics.SetRoute(r.Context(), metrics.RouteAuth)
		s.opts.TokenHandler.ServeHTTP(w, r)
		return
	}
	err := s.dispatch(w, r, segs)
	if err != nil {
		s.writeError(w, r, err)
	}
	s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "dur", time.Since(start), "err", err)
}

func (s *Server) dispatch(w http.ResponseWriter, r *http.Request, segs []string) error {
	var allowed []string
	for i := range s.routes {
		rt := &s.routes[i]
		vars, ok := match(rt.pattern, segs)
		if !ok {
			continue
		}
		metrics.SetRoute(r.Context(), rt.tmpl)
		if rt.method != r.Method && !(r.Method == http.MethodHead && rt.method == http.MethodGet) {
			allowed = append(allowed, rt.method)
			continue
		}
		rc := &reqCtx{vars: vars, query: r.URL.Query()}
		if !rt.anon {
			c, err := s.authenticate(r)
			if err != nil {
				return err
			}
			rc.caller = c
			if rt.operator && !c.IsOperator() {
				// Admin APIs do not exist for tenants.
				return errs.New(errs.NotFound, "NotFound", "The requested resource does not exist.")
			}
			if sub, ok := vars["sub"]; ok {
				if err := s.checkSubscription(r.Context(), c, sub); err != nil {
					return err
				}
			}
		}
		api, err := checkAPIVersion(rc.query, rt.api, segs)
		if err != nil {
			return err
		}
		rc.api = api
		return rt.h(w, r, rc)
	}
	if len(allowed) > 0 {
		// Authenticate first so that an anonymous caller learns nothing.
		if _, err := s.authenticate(r); err != nil {
			return err
		}
		return errs.New(errs.MethodNotAllowed, "MethodNotAllowed", "The requested method %s is not allowed for this resource.", r.Method)
	}
	c, err := s.authenticate(r)
	if err != nil {
		return err
	}
	return s.unknownRoute(r, segs, c)
}

// DoAs is Do with extra request headers (the dashboard's If-Match): an ARM
// request through the router in process as the principal id names.
func (s *Server) DoAs(ctx context.Context, id deploy.Identity, method, path string, header http.Header, body []byte) (*deploy.Response, error) {
	c, err := s.callerOf(ctx, id)
	if err != nil {
		return nil, err
	}
	ctx = context.WithValue(ctx, internalCallerKey{}, c)
	req, err := http.NewRequestWithContext(ctx, method, "https://"+internalHost+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("apiserver: internal request: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	rec := &recorder{header: http.Header{}}
	s.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &deploy.Response{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}, nil
}

func (s *Server) authenticate(r *http.Request) (*Caller, error) {
	if c, ok := internalCaller(r.Context()); ok {
		return c, nil // an in-process request of a deployment (deployments.go)
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errs.New(errs.Unauthenticated, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.")
	}
	// The scheme is case-insensitive (RFC 9110 §11.1).
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, errs.New(errs.Unauthenticated, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.")
	}
	c, err := s.opts.Auth.Authenticate(r.Context(), strings.TrimSpace(tok))
	if err != nil {
		return nil, errs.New(errs.Unauthenticated, "InvalidAuthenticationToken", "The access token is invalid or has expired.").Wrap(err)
	}
	return c, nil
}

func (s *Server) checkSubscription(ctx context.Context, c *Caller, sub string) error {
	notFound := errs.New(errs.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", sub)
	if !c.CanSee(sub) {
		return notFound
	}
	if _, err := s.opts.Store.Get(ctx, model.SubscriptionKey(sub)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return notFound
		}
		return err
	}
	return nil
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := errs.From(err)
	if e.Kind == errs.Internal {
		s.log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.Kind == errs.Unauthenticated {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="https://`+r.Host+`/common/oauth2/authorize", error="invalid_token", error_description="`+e.Message+`"`)
	}
	w.Header().Set("x-ms-error-code", e.ARMCode())
	writeJSON(w, e.Status(), arm.ErrorResponse{Error: detail(e)})
}

func detail(e *errs.Error) arm.ErrorDetail {
	d := arm.ErrorDetail{Code: e.ARMCode(), Message: e.Message, Target: e.Target}
	for _, x := range e.Details {
		d.Details = append(d.Details, detail(x))
	}
	return d
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	if v == nil {
		return
	}
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
}

// maxBody bounds ARM request bodies (artifact uploads are read elsewhere,
// with their own bound): a scale set model with the largest customData and
// userData fits well within it.
const maxBody = 1 << 20

// readBody reads a JSON body; empty bodies give nil.
func readBody(r *http.Request) ([]byte, error) {
	b, err := readLimited(r, maxBody, "request body")
	if err != nil {
		return nil, err
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, nil
	}
	if !json.Valid(b) {
		return nil, errs.New(errs.Invalid, "InvalidRequestContent", "The request content was invalid and could not be deserialized: %s", jsonErr(b))
	}
	return b, nil
}

func jsonErr(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err.Error()
	}
	return "invalid JSON"
}

// decode unmarshals body into v, mapping type errors to ARM errors.
func decode(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return errs.New(errs.Invalid, "InvalidRequestContent", "The request content was invalid and could not be deserialized: %s", trimSDK(err.Error()))
	}
	return nil
}

func trimSDK(s string) string {
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// LRO headers.
func (s *Server) lroHeaders(w http.ResponseWriter, r *http.Request, op *model.Operation, api string) {
	base := "https://" + r.Host + arm.OperationID(op.Sub, op.Location, op.ID)
	w.Header().Set("Azure-AsyncOperation", base+"?api-version="+url.QueryEscape(api))
	w.Header().Set("Location", base+"?monitor=true&api-version="+url.QueryEscape(api))
	w.Header().Set("Retry-After", retryAfter)
}

func newRequestID() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36)
}

// etag formats a store revision as an HTTP entity tag.
func etag(rev int64) string { return fmt.Sprintf("\"%d\"", rev) }

// checkPreconditions applies If-Match / If-None-Match against the current
// revision (0: the resource does not exist).
func checkPreconditions(r *http.Request, rev int64) error {
	if im := r.Header.Get("If-Match"); im != "" {
		if rev == 0 {
			return errs.New(errs.PreconditionFailed, "PreconditionFailed", "The resource does not exist; If-Match '%s' cannot be satisfied.", im)
		}
		if im != "*" && !etagIn(im, rev) {
			return errs.New(errs.PreconditionFailed, "PreconditionFailed", "The ETag '%s' does not match the current ETag %s of the resource.", im, etag(rev))
		}
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && rev != 0 {
		if inm == "*" || etagIn(inm, rev) {
			return errs.New(errs.PreconditionFailed, "PreconditionFailed", "The resource already exists (If-None-Match '%s').", inm)
		}
	}
	return nil
}

func etagIn(list string, rev int64) bool {
	want := strconv.FormatInt(rev, 10)
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		t = strings.TrimPrefix(t, "W/")
		t = strings.Trim(t, "\"")
		if t == want {
			return true
		}
	}
	return false
}
