package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var testPrincipal = Principal{ClientID: "app-1", DisplayName: "App One", Role: RoleTenant, Subscriptions: []string{"sub-1"}}

func newTestIssuer(t *testing.T, opts Options) *Issuer {
	t.Helper()
	i, err := NewIssuer(filepath.Join(t.TempDir(), "keys", "token.key"), opts)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func mustIssue(t *testing.T, i *Issuer, p Principal, aud string, now time.Time) string {
	t.Helper()
	tok, _, err := i.Issue(p, aud, now)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

// decodeSegment returns the JSON object of a token's header (0) or payload (1).
func decodeSegment(t *testing.T, token string, n int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[n])
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNewIssuerKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "token.key")
	first, err := NewIssuer(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("%d entries next to the key, want 1 (temporary file left behind?)", len(entries))
	}
	// A restart loads the same key: earlier tokens stay valid.
	second, err := NewIssuer(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok := mustIssue(t, first, testPrincipal, DefaultAudience, t0)
	if _, err := second.Verify(tok, t0); err != nil {
		t.Errorf("token of the first issuer rejected after reload: %v", err)
	}
	if first.kid != second.kid {
		t.Error("key id changed after reload")
	}
}

func TestNewIssuerConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token.key")
	var wg sync.WaitGroup
	issuers := make([]*Issuer, 8)
	errs := make([]error, len(issuers))
	for n := range issuers {
		wg.Go(func() { issuers[n], errs[n] = NewIssuer(path, Options{}) })
	}
	wg.Wait()
	for n, err := range errs {
		if err != nil {
			t.Fatalf("NewIssuer #%d: %v", n, err)
		}
		if issuers[n].kid != issuers[0].kid {
			t.Fatalf("issuer #%d uses another key than #0", n)
		}
	}
}

func TestNewIssuerBadKeyFile(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	tests := []struct {
		name string
		data []byte
	}{
		{"not PEM", []byte("garbage")},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}})},
		{"RSA key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER})},
		{"P-384 key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "token.key")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := NewIssuer(path, Options{}); err == nil {
				t.Fatal("NewIssuer succeeded, want an error")
			}
		})
	}
	if _, err := NewIssuer("", Options{}); err == nil {
		t.Error("NewIssuer with no key file succeeded")
	}
}

func TestIssueClaims(t *testing.T) {
	i := newTestIssuer(t, Options{TenantID: "tid-1", TokenLifetime: 30 * time.Minute})
	now := t0.Add(500 * time.Millisecond)
	tok, exp, err := i.Issue(testPrincipal, "HTTPS://management.vmssd.local", now)
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(30 * time.Minute); !exp.Equal(want) {
		t.Errorf("expiresAt = %v, want %v", exp, want)
	}
	header := decodeSegment(t, tok, 0)
	if header["alg"] != "ES256" || header["typ"] != "JWT" || header["kid"] != i.kid {
		t.Errorf("header = %v", header)
	}
	payload := decodeSegment(t, tok, 1)
	want := map[string]any{
		"iss": DefaultIssuer, "sub": "app-1", "appid": "app-1",
		"role": "tenant", "tid": "tid-1", "app_displayname": "App One",
		"iat": float64(t0.Unix()), "nbf": float64(t0.Unix()), "exp": float64(exp.Unix()),
	}
	for k, v := range want {
		if payload[k] != v {
			t.Errorf("claim %s = %v, want %v", k, payload[k], v)
		}
	}
	// golang-jwt writes aud as an array, which RFC 7519 allows.
	if aud, _ := payload["aud"].([]any); len(aud) != 1 || aud[0] != DefaultAudience {
		t.Errorf("claim aud = %v, want [%s]", payload["aud"], DefaultAudience)
	}
	if _, ok := payload["jti"].(string); !ok {
		t.Error("no jti claim")
	}

	c, err := i.Verify(tok, now)
	if err != nil {
		t.Fatal(err)
	}
	p := c.Principal()
	if p.ClientID != "app-1" || p.Role != RoleTenant || p.DisplayName != "App One" || p.Subscriptions != nil {
		t.Errorf("Principal() = %+v", p)
	}
	if c.TenantID != "tid-1" || c.AppID != "app-1" {
		t.Errorf("claims = %+v", c)
	}
}

func TestIssueErrors(t *testing.T) {
	i := newTestIssuer(t, Options{})
	tests := []struct {
		name    string
		p       Principal
		aud     string
		wantErr error
	}{
		{"unknown audience", testPrincipal, "https://graph.vmssd.local/", ErrUnknownAudience},
		{"empty audience", testPrincipal, "", ErrUnknownAudience},
		{"slash audience", testPrincipal, "/", ErrUnknownAudience},
		{"unknown role", Principal{ClientID: "x", Role: "root"}, DefaultAudience, ErrUnknownRole},
		{"no client id", Principal{Role: RoleOperator}, DefaultAudience, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := i.Issue(tc.p, tc.aud, t0)
			if err == nil {
				t.Fatal("Issue succeeded, want an error")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// signWith signs claims with an arbitrary method and key, for forged tokens.
func signWith(t *testing.T, method jwt.SigningMethod, claims jwt.Claims, key any) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	const rmEndpoint = "https://127.0.0.1:8443"
	i := newTestIssuer(t, Options{ResourceManagerEndpoint: rmEndpoint})
	other := newTestIssuer(t, Options{ResourceManagerEndpoint: rmEndpoint})
	// Issuers with i's key but another audience or issuer.
	sameKey := func(opts Options) *Issuer {
		n := newTestIssuer(t, opts)
		n.key, n.kid = i.key, i.kid
		return n
	}
	wrongAud := sameKey(Options{Audiences: []string{"https://other.example/"}})
	wrongIss := sameKey(Options{Issuer: "https://evil.example/"})

	good := mustIssue(t, i, testPrincipal, DefaultAudience, t0)
	goodClaims := func() Claims {
		return Claims{
			RegisteredClaims: jwt.RegisteredClaims{
				Issuer: DefaultIssuer, Subject: "app-1", Audience: jwt.ClaimStrings{DefaultAudience},
				IssuedAt: jwt.NewNumericDate(t0), NotBefore: jwt.NewNumericDate(t0),
				ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
			},
			Role: RoleTenant, AppID: "app-1", TenantID: DefaultTenantID,
		}
	}
	withClaims := func(edit func(*Claims)) string {
		c := goodClaims()
		edit(&c)
		return signWith(t, jwt.SigningMethodES256, c, i.key)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&i.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	parts := strings.Split(good, ".")

	tests := []struct {
		name    string
		token   string
		now     time.Time
		wantErr error // nil: valid
	}{
		{"valid", good, t0.Add(time.Minute), nil},
		{"valid, RM endpoint audience without slash", mustIssue(t, i, testPrincipal, rmEndpoint, t0), t0, nil},
		{"valid, RM endpoint audience with slash", mustIssue(t, i, testPrincipal, rmEndpoint+"/", t0), t0, nil},
		{"valid, audience spelled without slash", withClaims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"https://management.vmssd.local"} }), t0, nil},
		{"valid, operator", mustIssue(t, i, Principal{ClientID: "op", Role: RoleOperator}, DefaultAudience, t0), t0, nil},
		{"expiry within leeway", good, t0.Add(time.Hour + 30*time.Second), nil},
		{"expired", good, t0.Add(time.Hour + DefaultLeeway + time.Second), ErrTokenExpired},
		{"issued just ahead of our clock", good, t0.Add(-30 * time.Second), nil},
		{"not yet valid", good, t0.Add(-DefaultLeeway - time.Second), ErrTokenInvalid},
		{"empty", "", t0, ErrTokenMissing},
		{"garbage", "not-a-jwt", t0, ErrTokenInvalid},
		{"signed by another key", mustIssue(t, other, testPrincipal, DefaultAudience, t0), t0, ErrTokenInvalid},
		{"other key, expired", mustIssue(t, other, testPrincipal, DefaultAudience, t0), t0.Add(2 * time.Hour), ErrTokenInvalid},
		{"wrong audience", mustIssue(t, wrongAud, testPrincipal, "https://other.example/", t0), t0, ErrTokenInvalid},
		{"no audience", withClaims(func(c *Claims) { c.Audience = nil }), t0, ErrTokenInvalid},
		{"wrong issuer", mustIssue(t, wrongIss, testPrincipal, DefaultAudience, t0), t0, ErrTokenInvalid},
		{"no expiry", withClaims(func(c *Claims) { c.ExpiresAt = nil }), t0, ErrTokenInvalid},
		{"issued in the future", withClaims(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(t0.Add(time.Hour)) }), t0, ErrTokenInvalid},
		{"unknown role", withClaims(func(c *Claims) { c.Role = "root" }), t0, ErrTokenInvalid},
		{"no subject", withClaims(func(c *Claims) { c.Subject, c.AppID = "", "" }), t0, ErrTokenInvalid},
		{"appid differs from sub", withClaims(func(c *Claims) { c.AppID = "app-2" }), t0, ErrTokenInvalid},
		{"alg none", signWith(t, jwt.SigningMethodNone, goodClaims(), jwt.UnsafeAllowNoneSignatureType), t0, ErrTokenInvalid},
		{"alg none, no signature", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + ".", t0, ErrTokenInvalid},
		{"HS256 keyed with the public key (PEM)", signWith(t, jwt.SigningMethodHS256, goodClaims(), pubPEM), t0, ErrTokenInvalid},
		{"HS256 keyed with the public key (DER)", signWith(t, jwt.SigningMethodHS256, goodClaims(), pubDER), t0, ErrTokenInvalid},
		{"ES384 header", func() string {
			k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			return signWith(t, jwt.SigningMethodES384, goodClaims(), k)
		}(), t0, ErrTokenInvalid},
		{"payload swapped", parts[0] + "." + strings.Split(mustIssue(t, i, Principal{ClientID: "op", Role: RoleOperator}, DefaultAudience, t0), ".")[1] + "." + parts[2], t0, ErrTokenInvalid},
		{"signature truncated", good[:len(good)-4], t0, ErrTokenInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := i.Verify(tc.token, tc.now)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject == "" || !c.Role.Valid() {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
			for _, e := range []error{ErrTokenMissing, ErrTokenInvalid, ErrTokenExpired} {
				if e != tc.wantErr && errors.Is(err, e) {
					t.Errorf("error %v also matches %v", err, e)
				}
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		header  string
		want    string
		wantErr bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", false},
		{"bearer abc", "abc", false},
		{"", "", true},
		{"Bearer", "", true},
		{"Bearer ", "", true},
		{"Basic dXNlcjpwYXNz", "", true},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodGet, "https://x/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		got, err := BearerToken(r)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("BearerToken(%q) = %q, %v", tc.header, got, err)
		}
		if err != nil && !errors.Is(err, ErrTokenMissing) {
			t.Errorf("BearerToken(%q) error %v, want ErrTokenMissing", tc.header, err)
		}
	}
}

func TestJWKS(t *testing.T) {
	i := newTestIssuer(t, Options{})
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(i.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys", len(set.Keys))
	}
	k := set.Keys[0]
	if k["kty"] != "EC" || k["crv"] != "P-256" || k["alg"] != "ES256" || k["kid"] != i.kid {
		t.Errorf("key = %v", k)
	}
	x, _ := base64.RawURLEncoding.DecodeString(k["x"])
	y, _ := base64.RawURLEncoding.DecodeString(k["y"])
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(&i.key.PublicKey) {
		t.Error("JWKS key differs from the signing key")
	}
}
