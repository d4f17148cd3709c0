package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// credentials is a credential store for LookupSource: a map, as the state
// store's principals are to the server.
type credentials map[string]Credential

func (c credentials) lookup(_ context.Context, id string) (Credential, error) {
	if cred, ok := c[id]; ok {
		return cred, nil
	}
	return Credential{}, fmt.Errorf("client %q: %w", id, ErrInvalidClient)
}

func newCredentials(t testing.TB) (credentials, string) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return credentials{"app": {SecretHash: HashSecret(secret), Principal: Principal{ClientID: "app", Role: RoleTenant, UID: NewPrincipalUID()}}}, secret
}

// TestLookupSourceHashesUnknownClients: an unknown client id costs the
// same secret digest as a known one (compared with a dummy hash), so the
// answer time does not tell which ids exist. The work is counted, not
// timed.
func TestLookupSourceHashesUnknownClients(t *testing.T) {
	creds, secret := newCredentials(t)
	src := LookupSource{Lookup: creds.lookup}
	for _, tc := range []struct {
		name, id, secret string
		ok               bool
	}{
		{"known client, right secret", "app", secret, true},
		{"known client, wrong secret", "app", "wrong", false},
		{"unknown client", "nobody", secret, false},
		{"unknown client, empty secret", "nobody", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := digests.Load()
			p, err := src.Authenticate(t.Context(), tc.id, tc.secret)
			if n := digests.Load() - before; n != 1 {
				t.Errorf("%d secret digests computed, want 1", n)
			}
			switch {
			case tc.ok && (err != nil || p.ClientID != "app"):
				t.Errorf("Authenticate: %v, %v", p, err)
			case !tc.ok && !errors.Is(err, ErrInvalidClient):
				t.Errorf("Authenticate: %v, want ErrInvalidClient", err)
			}
		})
	}
	failing := LookupSource{Lookup: func(context.Context, string) (Credential, error) { return Credential{}, errors.New("disk on fire") }}
	if _, err := failing.Authenticate(t.Context(), "app", secret); err == nil || errors.Is(err, ErrInvalidClient) {
		t.Errorf("store failure: %v, want it passed on", err)
	}
}

// BenchmarkLookupSource compares known and unknown client ids: the two
// should cost about the same (go test -bench LookupSource ./internal/auth).
func BenchmarkLookupSource(b *testing.B) {
	creds, _ := newCredentials(b)
	src := LookupSource{Lookup: creds.lookup}
	for _, id := range []string{"app", "nobody"} {
		b.Run(id, func(b *testing.B) {
			for b.Loop() {
				_, _ = src.Authenticate(context.Background(), id, "some-wrong-secret-of-the-usual-length-4321")
			}
		})
	}
}

func TestClaimsBoundTo(t *testing.T) {
	iss := newTestIssuer(t, Options{})
	p := Principal{ClientID: "app", Role: RoleTenant, UID: NewPrincipalUID(), SecretGeneration: 3}
	c, err := iss.Verify(mustIssue(t, iss, p, DefaultAudience, time.Now()), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uid  string
		gen  int64
		want bool
	}{
		{p.UID, 3, true},
		{p.UID, 4, false},             // secret rotated since
		{NewPrincipalUID(), 3, false}, // principal deleted and created again
		{"", 3, false},
		{"", 0, false},
	} {
		if got := c.BoundTo(tc.uid, tc.gen); got != tc.want {
			t.Errorf("BoundTo(%q, %d) = %v, want %v", tc.uid, tc.gen, got, tc.want)
		}
	}
	if q := c.Principal(); q.UID != p.UID || q.SecretGeneration != 3 {
		t.Errorf("Claims.Principal() = %+v", q)
	}
}

func TestTokenRateLimit(t *testing.T) {
	a := newAuthServer(t, Options{RateLimit: RateLimit{PerAddress: 0.5, PerAddressBurst: 3, Total: 100, TotalBurst: 100}})
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {testPrincipal.ClientID},
		"client_secret": {a.secret}, "scope": {DefaultAudience + ".default"}}
	post := func() (int, http.Header, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, a.srv.URL+"/vmssd/oauth2/v2.0/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return a.do(t, req)
	}
	for i := range 3 {
		if code, _, body := post(); code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d %v", i, code, body)
		}
	}
	code, h, body := post()
	if code != http.StatusTooManyRequests || body["error"] != errTemporarilyUnavailable {
		t.Fatalf("request beyond the burst: %d %v, want 429 %s", code, body, errTemporarilyUnavailable)
	}
	if s, err := strconv.Atoi(h.Get("Retry-After")); err != nil || s < 1 || s > 3 {
		t.Errorf("Retry-After %q, want 1..3 seconds", h.Get("Retry-After"))
	}
	// Discovery is not limited.
	req, _ := http.NewRequest(http.MethodGet, a.srv.URL+"/vmssd/v2.0/.well-known/openid-configuration", nil)
	if code, _, _ := a.do(t, req); code != http.StatusOK {
		t.Errorf("discovery while limited: %d", code)
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLimiter(RateLimit{PerAddress: 1, PerAddressBurst: 2, Total: 10, TotalBurst: 3})
	steps := []struct {
		remote string
		after  time.Duration
		wait   bool
	}{
		{"10.0.0.1:1000", 0, false},
		{"10.0.0.1:1001", 0, false}, // same address, other port: same bucket
		{"10.0.0.1:1002", 0, true},  // burst of 2 spent
		{"10.0.0.2:1000", 0, false}, // another address has its own bucket
		{"10.0.0.3:1000", 0, true},  // ...but the total burst of 3 is spent
		{"10.0.0.1:1003", time.Second, false},
	}
	for i, s := range steps {
		now = now.Add(s.after)
		if w := l.reserve(s.remote, now); (w > 0) != s.wait {
			t.Errorf("step %d (%s): wait %v, want waiting=%v", i, s.remote, w, s.wait)
		}
	}
	if newLimiter(RateLimit{PerAddress: -1}) != nil {
		t.Error("a negative rate does not turn the limit off")
	}
}
