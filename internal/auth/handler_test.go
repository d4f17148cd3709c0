package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// memSource is an in-memory Source keyed by client id.
type memSource struct {
	clients map[string]memClient
	fail    error // returned by every call if set
	calls   atomic.Int64
}

type memClient struct {
	hash string
	p    Principal
}

func (s *memSource) add(p Principal) string {
	secret, err := NewSecret()
	if err != nil {
		panic(err)
	}
	if s.clients == nil {
		s.clients = map[string]memClient{}
	}
	s.clients[p.ClientID] = memClient{hash: HashSecret(secret), p: p}
	return secret
}

func (s *memSource) Authenticate(ctx context.Context, clientID, secret string) (Principal, error) {
	s.calls.Add(1)
	if s.fail != nil {
		return Principal{}, s.fail
	}
	c, ok := s.clients[clientID]
	if !CheckSecret(c.hash, secret) || !ok {
		return Principal{}, ErrInvalidClient
	}
	return c.p, nil
}

type authServer struct {
	srv    *httptest.Server
	iss    *Issuer
	src    *memSource
	secret string // of client "app-1"
}

// newAuthServer serves iss.Handler over TLS, through wrap if given.
func newAuthServer(t *testing.T, opts Options, wrap ...func(http.Handler) http.Handler) *authServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	iss := newTestIssuer(t, opts)
	src := &memSource{}
	secret := src.add(testPrincipal)
	h := iss.Handler(src)
	for _, w := range wrap {
		h = w(h)
	}
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	return &authServer{srv: srv, iss: iss, src: src, secret: secret}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (a *authServer) do(t *testing.T, req *http.Request) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := a.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
	}
	return resp.StatusCode, resp.Header, m
}

func TestDiscovery(t *testing.T) {
	a := newAuthServer(t, Options{})
	tests := []struct {
		path, host    string
		issuer, token string // relative to https://host
		authorize     string
	}{
		{"/tenant1/v2.0/.well-known/openid-configuration", "", "/tenant1/v2.0", "/tenant1/oauth2/v2.0/token", "/tenant1/oauth2/v2.0/authorize"},
		{"/Tenant.One-2/v2.0/.well-known/openid-configuration", "", "/Tenant.One-2/v2.0", "/Tenant.One-2/oauth2/v2.0/token", "/Tenant.One-2/oauth2/v2.0/authorize"},
		{"/tenant1/.well-known/openid-configuration", "", "/tenant1/", "/tenant1/oauth2/token", "/tenant1/oauth2/authorize"},
		{"/adfs/.well-known/openid-configuration", "", "/adfs", "/adfs/oauth2/token", "/adfs/oauth2/authorize"},
		// az login --tenant NAME under the AD FS login endpoint resolves NAME here.
		{"/adfs/vmssd/.well-known/openid-configuration", "", "/adfs", "/adfs/oauth2/token", "/adfs/oauth2/authorize"},
		{"/adfs/adfs/.well-known/openid-configuration", "", "/adfs", "/adfs/oauth2/token", "/adfs/oauth2/authorize"},
		{"/tenant1/v2.0/.well-known/openid-configuration", "login.vmssd.example:8443", "/tenant1/v2.0", "/tenant1/oauth2/v2.0/token", "/tenant1/oauth2/v2.0/authorize"},
	}
	for _, tc := range tests {
		t.Run(tc.path+" "+tc.host, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, a.srv.URL+tc.path, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			status, _, doc := a.do(t, req)
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			base := "https://" + req.Host
			if req.Host == "" {
				base = a.srv.URL
			}
			for k, want := range map[string]string{
				"issuer": base + tc.issuer, "token_endpoint": base + tc.token, "authorization_endpoint": base + tc.authorize,
			} {
				if doc[k] != want {
					t.Errorf("%s = %v, want %s", k, doc[k], want)
				}
			}
			// The advertised JWKS is served.
			jwks, _ := doc["jwks_uri"].(string)
			if !strings.HasPrefix(jwks, base+"/") {
				t.Fatalf("jwks_uri %q", jwks)
			}
			kreq, _ := http.NewRequest(http.MethodGet, a.srv.URL+strings.TrimPrefix(jwks, base), nil)
			if status, _, keys := a.do(t, kreq); status != http.StatusOK || keys["keys"] == nil {
				t.Errorf("GET %s: %d %v", jwks, status, keys)
			}
		})
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/ten%20ant/v2.0/.well-known/openid-configuration", http.StatusNotFound},
		{http.MethodGet, "/ten_ant/v2.0/.well-known/openid-configuration", http.StatusNotFound},
		{http.MethodGet, "/tenant1/oauth2/v2.0/token", http.StatusMethodNotAllowed},
		{http.MethodPost, "/tenant1/v2.0/.well-known/openid-configuration", http.StatusMethodNotAllowed},
		{http.MethodGet, "/tenant1/oauth2/v2.0/authorize", http.StatusNotFound},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/other/vmssd/.well-known/openid-configuration", http.StatusNotFound},
		{http.MethodGet, "/adfs/ten_ant/.well-known/openid-configuration", http.StatusNotFound},
	} {
		req, _ := http.NewRequest(tc.method, a.srv.URL+tc.path, nil)
		if status, _, _ := a.do(t, req); status != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, status, tc.want)
		}
	}
}

func TestTokenEndpoint(t *testing.T) {
	a := newAuthServer(t, Options{ResourceManagerEndpoint: "https://127.0.0.1:8443", TokenLifetime: 20 * time.Minute})
	const cae = `{"access_token":{"xms_cc":{"values":["CP1"]}}}`
	msalScope := DefaultAudience + "/.default openid offline_access profile"

	type request struct {
		path        string
		form        url.Values
		basic       []string // user, password
		contentType string
		body        string // overrides form
	}
	creds := func(extra url.Values) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-1"}, "client_secret": {a.secret}}
		for k, vs := range extra {
			v[k] = vs
		}
		return v
	}
	tests := []struct {
		name       string
		req        request
		wantStatus int
		wantError  string // OAuth error code; "" for success
		wantAud    string
	}{
		{"v2 as MSAL sends it", request{path: "/tenant1/oauth2/v2.0/token", form: creds(url.Values{"scope": {msalScope}, "claims": {cae}})}, 200, "", DefaultAudience},
		{"v2 scope without trailing slash", request{path: "/tenant1/oauth2/v2.0/token", form: creds(url.Values{"scope": {"https://management.vmssd.local/.default"}})}, 200, "", DefaultAudience},
		{"v2 RM endpoint scope", request{path: "/tenant1/oauth2/v2.0/token", form: creds(url.Values{"scope": {"https://127.0.0.1:8443/.default"}})}, 200, "", "https://127.0.0.1:8443"},
		{"v1 resource", request{path: "/tenant1/oauth2/token", form: creds(url.Values{"resource": {DefaultAudience}})}, 200, "", DefaultAudience},
		{"adfs scope", request{path: "/adfs/oauth2/token", form: creds(url.Values{"scope": {msalScope}})}, 200, "", DefaultAudience},
		{"HTTP Basic", request{path: "/t/oauth2/v2.0/token", form: url.Values{"grant_type": {"client_credentials"}, "scope": {msalScope}}, basic: []string{"app-1", a.secret}}, 200, "", DefaultAudience},
		{"HTTP Basic and matching client_id", request{path: "/t/oauth2/v2.0/token", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-1"}, "scope": {msalScope}}, basic: []string{"app-1", a.secret}}, 200, "", DefaultAudience},
		{"content type with charset", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {msalScope}}), contentType: "application/x-www-form-urlencoded; charset=utf-8"}, 200, "", DefaultAudience},

		{"wrong secret", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {msalScope}, "client_secret": {"nope"}})}, 401, "invalid_client", ""},
		{"unknown client", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {msalScope}, "client_id": {"app-2"}})}, 401, "invalid_client", ""},
		{"wrong secret via Basic", request{path: "/t/oauth2/v2.0/token", form: url.Values{"grant_type": {"client_credentials"}, "scope": {msalScope}}, basic: []string{"app-1", "nope"}}, 401, "invalid_client", ""},
		{"no secret", request{path: "/t/oauth2/v2.0/token", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-1"}, "scope": {msalScope}}}, 401, "invalid_client", ""},
		{"client assertion", request{path: "/t/oauth2/v2.0/token", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-1"}, "client_assertion": {"x.y.z"}, "scope": {msalScope}}}, 401, "invalid_client", ""},
		{"Basic and client_secret", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {msalScope}}), basic: []string{"app-1", a.secret}}, 400, "invalid_request", ""},
		{"Basic user differs from client_id", request{path: "/t/oauth2/v2.0/token", form: url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-2"}, "scope": {msalScope}}, basic: []string{"app-1", a.secret}}, 400, "invalid_request", ""},
		{"no grant type", request{path: "/t/oauth2/v2.0/token", form: url.Values{"client_id": {"app-1"}, "client_secret": {a.secret}, "scope": {msalScope}}}, 400, "invalid_request", ""},
		{"password grant", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"grant_type": {"password"}, "scope": {msalScope}})}, 400, "unsupported_grant_type", ""},
		{"no scope", request{path: "/t/oauth2/v2.0/token", form: creds(nil)}, 400, "invalid_request", ""},
		{"only OIDC scopes", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {"openid profile"}})}, 400, "invalid_scope", ""},
		{"two resources", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {msalScope + " https://127.0.0.1:8443/.default"}})}, 400, "invalid_scope", ""},
		{"not .default", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {DefaultAudience + "user_impersonation"}})}, 400, "invalid_scope", ""},
		{"unknown resource", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {"https://graph.microsoft.com/.default"}})}, 400, "invalid_scope", ""},
		{"unknown v1 resource", request{path: "/t/oauth2/token", form: creds(url.Values{"resource": {"https://vault.vmssd.local"}})}, 400, "invalid_scope", ""},
		{"scope and resource", request{path: "/t/oauth2/token", form: creds(url.Values{"scope": {msalScope}, "resource": {DefaultAudience}})}, 400, "invalid_request", ""},
		{"repeated parameter", request{path: "/t/oauth2/v2.0/token", form: creds(url.Values{"scope": {msalScope}, "client_id": {"app-1", "app-2"}})}, 400, "invalid_request", ""},
		{"JSON body", request{path: "/t/oauth2/v2.0/token", contentType: "application/json", body: `{"grant_type":"client_credentials"}`}, 400, "invalid_request", ""},
		{"body too large", request{path: "/t/oauth2/v2.0/token", body: creds(url.Values{"scope": {msalScope}}).Encode() + "&pad=" + strings.Repeat("a", maxTokenRequestBytes)}, 413, "invalid_request", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.req.body
			if body == "" {
				body = tc.req.form.Encode()
			}
			req, _ := http.NewRequest(http.MethodPost, a.srv.URL+tc.req.path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tc.req.contentType != "" {
				req.Header.Set("Content-Type", tc.req.contentType)
			}
			if tc.req.basic != nil {
				req.SetBasicAuth(url.QueryEscape(tc.req.basic[0]), url.QueryEscape(tc.req.basic[1]))
			}
			status, header, resp := a.do(t, req)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %v", status, tc.wantStatus, resp)
			}
			if header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", header.Get("Cache-Control"))
			}
			if tc.wantError != "" {
				if resp["error"] != tc.wantError || resp["error_description"] == "" {
					t.Errorf("error body %v, want error %q with a description", resp, tc.wantError)
				}
				if resp["access_token"] != nil {
					t.Error("error response carries a token")
				}
				return
			}
			// expires_in rounds down: the token's exp is whole seconds.
			if exp := resp["expires_in"]; resp["token_type"] != "Bearer" || (exp != float64(1200) && exp != float64(1199)) || resp["ext_expires_in"] != exp {
				t.Errorf("response %v", resp)
			}
			tok, _ := resp["access_token"].(string)
			c, err := a.iss.Verify(tok, time.Now())
			if err != nil {
				t.Fatalf("issued token does not verify: %v", err)
			}
			if c.Subject != "app-1" || c.Role != RoleTenant || len(c.Audience) != 1 || c.Audience[0] != tc.wantAud {
				t.Errorf("claims %+v, want audience %q", c, tc.wantAud)
			}
		})
	}
}

func TestTokenEndpointSourceFailure(t *testing.T) {
	a := newAuthServer(t, Options{})
	a.src.fail = errors.New("store unavailable")
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"app-1"}, "client_secret": {a.secret}, "scope": {DefaultAudience + ".default"}}
	req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/t/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, _, resp := a.do(t, req)
	if status != http.StatusInternalServerError || resp["error"] != "server_error" {
		t.Fatalf("status %d body %v", status, resp)
	}
	if strings.Contains(resp["error_description"].(string), "store unavailable") {
		t.Error("internal error leaked to the client")
	}
}

func TestTokenEndpointRejectsBadHostInDiscovery(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	h := iss.Handler(&memSource{})
	req := httptest.NewRequest(http.MethodGet, "https://x/t/v2.0/.well-known/openid-configuration", nil)
	req.Host = "evil.example/path"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("status %d, want 400", rec.Code)
	}
}
