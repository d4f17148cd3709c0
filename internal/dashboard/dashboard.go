// Package dashboard is vmssd's browser dashboard, served by vmssd itself at
// "/" and "/ui/...": sign in with client credentials, pick a scale set, see
// its instances as a heatmap (rows are update domains, columns fault
// domains) kept live by server-sent events from the store's watch, edit the
// model (ETag-checked), scale, act on the set, a domain or an instance, and
// drive rolling upgrades. Every read and every action is an ARM request run
// in process as the signed-in principal (Dispatcher), so the dashboard can
// do nothing the principal's API calls could not.
package dashboard

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/deploy"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

//go:embed web
var webFS embed.FS

// Options configures the dashboard.
type Options struct {
	// Store is watched for live updates and read for the signed-in
	// principal's role (never for what a page shows: that goes through API).
	Store store.Store
	// Credentials checks a sign-in's client id and secret (the token
	// endpoint's source).
	Credentials auth.Source
	Logger      *slog.Logger
	Now         func() time.Time
	// Links are extra operator pages shown in the navigation (name -> URL),
	// e.g. a marketplace page served elsewhere.
	Links map[string]string
}

// Dashboard is the http.Handler for "/" and "/ui/...".
type Dashboard struct {
	opts     Options
	log      *slog.Logger
	mu       sync.RWMutex
	api      Dispatcher
	sessions sessions
	activity activity
	timeline timeline
	hub      hub
	tmpl     *template.Template
	static   http.Handler
	// closed ends open event streams (Close), so that a server shutdown
	// does not wait for browsers.
	closed    chan struct{}
	closeOnce sync.Once
	// downloads are the marketplace downloads started here (newest last).
	downloads []string
}

// New builds the dashboard; Bind gives it the API before it serves.
func New(opts Options) *Dashboard {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	sub, err := fs.Sub(webFS, "web/static")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	d := &Dashboard{opts: opts, log: opts.Logger, activity: activity{max: 2000}, closed: make(chan struct{})}
	d.tmpl = template.Must(template.New("").Funcs(funcs).ParseFS(webFS, "web/*.html"))
	d.static = http.StripPrefix("/ui/static/", http.FileServerFS(sub))
	return d
}

// Bind sets the API the dashboard acts through (apiserver.Server).
func (d *Dashboard) Bind(api Dispatcher) {
	d.mu.Lock()
	d.api = api
	d.mu.Unlock()
}

// Close ends the open event streams (http.Server.RegisterOnShutdown).
func (d *Dashboard) Close() { d.closeOnce.Do(func() { close(d.closed) }) }

// HostChanged tells open pages that a host observation (power, health)
// changed: those are not store records, so the store's watch alone would
// not see them.
func (d *Dashboard) HostChanged() { d.hub.broadcast() }

func (d *Dashboard) client(s *session) client {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return client{api: d.api, id: s.identity}
}

// ServeHTTP routes "/" and "/ui/...".
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	path := strings.TrimRight(r.URL.Path, "/")
	if strings.HasPrefix(path, "/ui/static/") {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Cache-Control", "no-cache")
		d.static.ServeHTTP(w, r)
		return
	}
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodPost {
		// An action the server accepted runs to its end even if the
		// browser goes away meanwhile (its outcome is in the activity log).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), actionTimeout)
		defer cancel()
		r = r.WithContext(ctx)
	}
	if r.Method == http.MethodPost && path == "/ui/login" {
		d.login(w, r)
		return
	}
	s := d.sessionOf(r)
	if r.Method == http.MethodPost {
		// Every action needs a session and its CSRF token.
		if s == nil || !s.csrfOK(r.PostFormValue("csrf")) {
			d.page(w, r, http.StatusForbidden, "error", nil, pageData{Title: "Forbidden", Error: "The request was refused: it did not carry this session's CSRF token. Reload the page and try again."})
			return
		}
	}
	if s == nil {
		if path == "" && r.Method == http.MethodGet {
			d.loginPage(w, r, "")
			return
		}
		if r.Method == http.MethodGet && r.Header.Get("Accept") != "text/event-stream" {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	op := d.isOperator(r.Context(), s)
	if r.Method == http.MethodPost && path != "/ui/logout" && path != "/ui/create" && !strings.HasPrefix(path, "/ui/admin/") && !refOf(r).valid() {
		d.page(w, r, http.StatusNotFound, "error", s, pageData{Title: "Not found", Operator: op, Error: "No such scale set."})
		return
	}
	switch {
	case r.Method == http.MethodGet && path == "":
		d.home(w, r, s, op)
	case r.Method == http.MethodPost && path == "/ui/logout":
		d.sessions.remove(s.id)
		http.SetCookie(w, sessionCookie("", -1))
		http.Redirect(w, r, "/", http.StatusSeeOther)
	case r.Method == http.MethodGet && path == "/ui/set":
		d.setPage(w, r, s, op)
	case r.Method == http.MethodGet && path == "/ui/bootlog":
		d.bootLog(w, r, s, op)
	case r.Method == http.MethodGet && path == "/ui/events":
		d.events(w, r, s)
	case r.Method == http.MethodPost && path == "/ui/create":
		d.createSet(w, r, s)
	case r.Method == http.MethodPost && path == "/ui/scale":
		d.scale(w, r, s)
	case r.Method == http.MethodPost && path == "/ui/model":
		d.updateModel(w, r, s)
	case r.Method == http.MethodPost && path == "/ui/action":
		d.action(w, r, s)
	case r.Method == http.MethodPost && path == "/ui/rollout":
		d.rollout(w, r, s)
	case r.Method == http.MethodGet && path == "/ui/activity":
		d.activityPage(w, r, s, op)
	case r.Method == http.MethodGet && path == "/ui/admin/marketplace" && op:
		d.marketplacePage(w, r, s)
	case r.Method == http.MethodPost && path == "/ui/admin/marketplace" && op:
		d.marketplaceAction(w, r, s)
	case r.Method == http.MethodGet && strings.HasPrefix(path, "/ui/admin/") && op:
		d.adminPage(w, r, s, strings.TrimPrefix(path, "/ui/admin/"))
	default:
		d.page(w, r, http.StatusNotFound, "error", s, pageData{Title: "Not found", Operator: op, Error: "There is no such page."})
	}
}

// sessionOf returns the request's session if its principal still exists
// with the same identity and secret generation (a rotated secret or a
// deleted principal ends the session).
func (d *Dashboard) sessionOf(r *http.Request) *session {
	s := d.sessions.get(r, d.opts.Now())
	if s == nil {
		return nil
	}
	p, _, err := state.Get[model.Principal](r.Context(), d.opts.Store, model.PrincipalKey(s.identity.ClientID))
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && (p.UID != s.identity.UID || p.SecretGeneration != s.secGen):
		d.sessions.remove(s.id) // the principal is gone, re-created or has a new secret
		return nil
	case err != nil:
		// Not this request (e.g. a cancelled one): the session stays.
		return nil
	}
	return s
}

func (d *Dashboard) isOperator(ctx context.Context, s *session) bool {
	p, _, err := state.Get[model.Principal](ctx, d.opts.Store, model.PrincipalKey(s.identity.ClientID))
	return err == nil && auth.Role(p.Role) == auth.RoleOperator
}

const loginCookie = "vmssd_login"

// actionTimeout bounds one POST (its API calls), detached from the browser.
const actionTimeout = time.Minute

func (d *Dashboard) loginPage(w http.ResponseWriter, r *http.Request, msg string) {
	// Login CSRF: a double-submit token tied to this browser.
	tok := randToken()
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: tok, Path: "/ui/login", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode, MaxAge: 3600})
	status := http.StatusOK
	if msg != "" {
		status = http.StatusUnauthorized
	}
	d.page(w, r, status, "login", nil, pageData{Title: "Sign in", CSRF: tok, Error: msg})
}

func (d *Dashboard) login(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(loginCookie)
	if err != nil || c.Value == "" || c.Value != r.PostFormValue("csrf") {
		d.page(w, r, http.StatusForbidden, "error", nil, pageData{Title: "Forbidden", Error: "The sign-in form expired or was not sent by this page. Reload and try again."})
		return
	}
	clientID := strings.TrimSpace(r.PostFormValue("client_id"))
	p, err := d.opts.Credentials.Authenticate(r.Context(), clientID, r.PostFormValue("client_secret"))
	if err != nil {
		if !errors.Is(err, auth.ErrInvalidClient) {
			d.log.Error("dashboard sign-in", "err", err)
		}
		d.activity.add(Entry{Time: d.opts.Now(), Who: clientID, Action: "sign in", Code: "InvalidClient", Message: "invalid client id or secret"})
		d.loginPage(w, r, "Invalid client id or secret.")
		return
	}
	s := d.sessions.create(deploy.Identity{ClientID: p.ClientID, UID: p.UID}, p.SecretGeneration, d.opts.Now())
	http.SetCookie(w, sessionCookie(s.id, int(sessionTTL/time.Second)))
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Path: "/ui/login", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	d.activity.add(Entry{Time: d.opts.Now(), Who: p.ClientID, Action: "sign in", OK: true})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// pageData is what every page template gets.
type pageData struct {
	Title    string
	Who      string
	CSRF     string
	Operator bool
	Error    string
	Flash    string
	Links    map[string]string
	Body     any
}

func (d *Dashboard) page(w http.ResponseWriter, r *http.Request, status int, name string, s *session, pd pageData) {
	if s != nil {
		pd.Who, pd.CSRF = s.identity.ClientID, s.csrf
		if id, err := strconv.ParseInt(r.URL.Query().Get("status"), 10, 64); err == nil && pd.Flash == "" {
			// The outcome of the action that sent the browser here (a reload
			// shows it again; another principal's id shows nothing).
			pd.Flash = d.activity.status(id, s.identity.ClientID)
		}
	}
	if pd.Operator {
		pd.Links = d.opts.Links
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := d.tmpl.ExecuteTemplate(w, name, pd); err != nil {
		d.log.Error("dashboard template", "page", name, "err", err)
	}
}
