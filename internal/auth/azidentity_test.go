package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// requestLog records the method and path of every request to the server.
type requestLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.seen = append(l.seen, r.Method+" "+r.URL.Path)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = nil
}

func (l *requestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.seen, ", ")
}

// TestClientSecretCredential drives the handler with the real azidentity
// ClientSecretCredential (and MSAL under it), as an armcompute client would
// use it against vmssd (docs: arm-api.md §9).
func TestClientSecretCredential(t *testing.T) {
	t.Setenv("AZURE_REGIONAL_AUTHORITY_NAME", "") // a region would force instance discovery

	const rmAudience = "https://management.vmssd.local/"
	var log requestLog
	a := newAuthServer(t, Options{Audiences: []string{rmAudience}}, log.wrap)

	newCredential := func(t *testing.T, tenant, clientID, secret string) *azidentity.ClientSecretCredential {
		t.Helper()
		cred, err := azidentity.NewClientSecretCredential(tenant, clientID, secret, &azidentity.ClientSecretCredentialOptions{
			ClientOptions: azcore.ClientOptions{
				Cloud: cloud.Configuration{
					ActiveDirectoryAuthorityHost: a.srv.URL + "/",
					Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
						cloud.ResourceManager: {Endpoint: a.srv.URL, Audience: rmAudience},
					},
				},
				Transport: a.srv.Client(),
				Retry:     policy.RetryOptions{MaxRetries: -1},
			},
			DisableInstanceDiscovery: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		return cred
	}
	// The ARM pipeline asks for Audience+"/.default" with CAE enabled.
	armScope := policy.TokenRequestOptions{Scopes: []string{rmAudience + "/.default"}, EnableCAE: true}

	tests := []struct {
		name      string
		tenant    string
		secret    string
		wantOK    bool
		wantPaths []string // must have been requested
	}{
		{"AAD tenant", "tenant1", a.secret, true, []string{
			"GET /tenant1/v2.0/.well-known/openid-configuration", "POST /tenant1/oauth2/v2.0/token"}},
		{"AAD tenant, wrong secret", "tenant2", "wrong-secret", false, []string{
			"GET /tenant2/v2.0/.well-known/openid-configuration", "POST /tenant2/oauth2/v2.0/token"}},
		{"ADFS", "adfs", a.secret, true, []string{
			"GET /adfs/.well-known/openid-configuration", "POST /adfs/oauth2/token"}},
		{"ADFS, wrong secret", "adfs", "wrong-secret", false, []string{
			"GET /adfs/.well-known/openid-configuration", "POST /adfs/oauth2/token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			log.reset()
			cred := newCredential(t, tc.tenant, testPrincipal.ClientID, tc.secret)
			tok, err := cred.GetToken(ctx, armScope)
			if !tc.wantOK {
				if err == nil {
					t.Fatal("GetToken succeeded with a wrong secret")
				}
				var afe *azidentity.AuthenticationFailedError
				if !errors.As(err, &afe) || afe.RawResponse == nil || afe.RawResponse.StatusCode != http.StatusUnauthorized {
					t.Errorf("error %v, want an AuthenticationFailedError with a 401 response", err)
				}
				if !strings.Contains(err.Error(), "invalid_client") {
					t.Errorf("error does not carry invalid_client: %v", err)
				}
			} else {
				if err != nil {
					t.Fatalf("GetToken: %v (requests: %s)", err, &log)
				}
				if d := time.Until(tok.ExpiresOn); d < 50*time.Minute || d > time.Hour+time.Minute {
					t.Errorf("ExpiresOn in %v, want about 1h", d)
				}
				c, err := a.iss.Verify(tok.Token, time.Now())
				if err != nil {
					t.Fatalf("token from GetToken does not verify: %v", err)
				}
				if c.Subject != testPrincipal.ClientID || c.Role != RoleTenant || c.Audience[0] != rmAudience {
					t.Errorf("claims %+v", c)
				}
				// A second call is served from MSAL's cache.
				before := a.src.calls.Load()
				if _, err := cred.GetToken(ctx, armScope); err != nil {
					t.Fatal(err)
				}
				if a.src.calls.Load() != before {
					t.Error("second GetToken went to the token endpoint")
				}
			}
			got := log.String()
			for _, p := range tc.wantPaths {
				if !strings.Contains(got, p) {
					t.Errorf("no %q among requests: %s", p, got)
				}
			}
		})
	}

	t.Run("unknown audience", func(t *testing.T) {
		cred := newCredential(t, "tenant1", testPrincipal.ClientID, a.secret)
		_, err := cred.GetToken(t.Context(), policy.TokenRequestOptions{Scopes: []string{"https://graph.microsoft.com/.default"}})
		if err == nil || !strings.Contains(err.Error(), "invalid_scope") {
			t.Errorf("GetToken error = %v, want invalid_scope", err)
		}
	})
}
