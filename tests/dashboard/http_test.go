package dashboard

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestSessionHTTP checks the dashboard's session rules at the HTTP level
// (no browser needed): sign-in form token, cookie flags, CSRF on every
// POST, security headers, and that ARM paths still answer as ARM.
func TestSessionHTTP(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	jar, _ := cookiejar.New(nil)
	c := testenv.Client(e.Server.CAPEM)
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := e.Server.URL
	get := func(p string) (*http.Response, string) {
		t.Helper()
		r, err := c.Get(base + p)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r, string(b)
	}
	post := func(p string, form url.Values) *http.Response {
		t.Helper()
		r, err := c.PostForm(base+p, form)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		return r
	}

	r, body := get("/")
	if r.StatusCode != http.StatusOK || !strings.Contains(body, `id="login"`) {
		t.Fatalf("GET /: %d %s", r.StatusCode, body)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	loginTok := between(body, `name="csrf" value="`, `"`)
	creds := url.Values{"client_id": {e.Server.Client.ClientID}, "client_secret": {e.Server.Client.ClientSecret}}

	// The sign-in form's own token is required (login CSRF).
	if r := post("/ui/login", creds); r.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without the form token: %d", r.StatusCode)
	}
	bad := url.Values{"client_id": {e.Server.Client.ClientID}, "client_secret": {"wrong"}, "csrf": {loginTok}}
	if r := post("/ui/login", bad); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign-in with a wrong secret: %d", r.StatusCode)
	}
	_, body = get("/")
	creds.Set("csrf", between(body, `name="csrf" value="`, `"`))
	r = post("/ui/login", creds)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.StatusCode)
	}
	var cookie string
	for _, v := range r.Header.Values("Set-Cookie") {
		if strings.HasPrefix(v, "vmssd_session=") {
			cookie = v
		}
	}
	for _, flag := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, flag) {
			t.Errorf("session cookie %q lacks %s", cookie, flag)
		}
	}
	_, body = get("/")
	tok := between(body, `name="csrf" value="`, `"`)
	if tok == "" || !strings.Contains(body, "Signed in as") {
		t.Fatalf("home after sign-in: %s", body)
	}

	// Every POST needs the session's token.
	e.CreateRG("rg")
	form := url.Values{"sub": {e.Sub}, "rg": {"rg"}, "name": {"web"}, "capacity": {"1"}}
	for _, p := range []string{"/ui/scale", "/ui/model", "/ui/action", "/ui/rollout", "/ui/create", "/ui/logout"} {
		if r := post(p, form); r.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s without the token: %d, want 403", p, r.StatusCode)
		}
		f := url.Values{"csrf": {"forged"}}
		for k, v := range form {
			f[k] = v
		}
		if r := post(p, f); r.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s with a forged token: %d, want 403", p, r.StatusCode)
		}
	}
	// With it, the action reaches the API (here: no such set -> the API's
	// answer is recorded, not a 403).
	form.Set("csrf", tok)
	if r := post("/ui/scale", form); r.StatusCode != http.StatusSeeOther {
		t.Errorf("POST /ui/scale with the token: %d", r.StatusCode)
	}
	_, body = get("/ui/activity")
	if !strings.Contains(body, "ResourceNotFound") && !strings.Contains(body, "NotFound") {
		t.Errorf("the activity log lacks the API's error: %s", body)
	}

	// Create a scale set over the subscription's instance quota: the
	// API's refusal comes back to the form's page and the activity log,
	// and no set is made.
	if r := e.Do(http.MethodPut, "/providers/vmssd.Admin/quotas/"+e.Sub+"?api-version=2015-12-01-preview", map[string]any{"instances": 2}); r.Status != http.StatusOK {
		t.Fatalf("quota: %d %s", r.Status, r.Body)
	}
	create := url.Values{"csrf": {tok}, "sub": {e.Sub}, "rg": {e.Sub + "/rg"}, "name": {"big"}, "image": {"vmssd:demo:guest:1.0.0"},
		"capacity": {"3"}, "size": {"Standard_A1"}, "mode": {"Manual"}}
	r = post("/ui/create", create)
	loc := r.Header.Get("Location")
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/?status=") {
		t.Fatalf("POST /ui/create over quota: %d to %q, want a redirect to the form", r.StatusCode, loc)
	}
	if _, body = get(loc); !strings.Contains(body, `id="flash"`) || !strings.Contains(body, "create scale set big failed: OperationNotAllowed") || !strings.Contains(body, `id="create-form"`) {
		t.Fatalf("the page after a refused create lacks the ARM error or the form: %s", between(body, `<main`, `</main>`))
	}
	if _, body = get("/ui/activity"); !strings.Contains(body, "create scale set big") || !strings.Contains(body, "OperationNotAllowed") {
		t.Errorf("the activity log lacks the refused create: %s", body)
	}
	if ar := e.Do(http.MethodGet, e.VMSSPath("rg", "big"), nil); ar.Status != http.StatusNotFound {
		t.Errorf("the refused set: GET %d, want 404", ar.Status)
	}

	// ARM paths are untouched: an unknown one is still an ARM error.
	ar := e.Do(http.MethodGet, "/subscriptions/"+e.Sub+"/providers/Microsoft.Nope/things", nil)
	if ar.Status < 400 || ar.ErrorCode() == "" || strings.Contains(string(ar.Body), "<html") {
		t.Errorf("unknown ARM route: %d %s", ar.Status, ar.Body)
	}

	// Signing out ends the session.
	if r := post("/ui/logout", url.Values{"csrf": {tok}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out: %d", r.StatusCode)
	}
	if r, _ := get("/ui/activity"); r.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out /ui/activity: %d, want a redirect to sign-in", r.StatusCode)
	}
}

func between(s, a, b string) string {
	_, rest, ok := strings.Cut(s, a)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, b)
	return v
}
