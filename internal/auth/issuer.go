package auth

import (
	"cmp"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/vmssd/vmssd/internal/fsutil"
)

// Defaults for Options.
const (
	// DefaultAudience is the ARM audience of vmssd (cloud.ServiceConfiguration
	// Audience); clients request "DefaultAudience/.default".
	DefaultAudience = "https://management.vmssd.local/"
	// DefaultIssuer is the "iss" claim of vmssd's access tokens.
	DefaultIssuer = "https://sts.vmssd.local/"
	// DefaultTenantID is the "tid" claim: vmssd has a single directory.
	DefaultTenantID = "vmssd"
	// DefaultTokenLifetime is how long an access token is valid.
	DefaultTokenLifetime = time.Hour
	// DefaultLeeway is the clock skew tolerated by Verify.
	DefaultLeeway = time.Minute
)

// signingAlg is the only algorithm vmssd signs and accepts tokens with.
const signingAlg = "ES256"

// Errors returned by Verify and BearerToken. ErrTokenExpired is distinct from
// ErrTokenInvalid so that the API can answer with ARM's
// "ExpiredAuthenticationToken" rather than "InvalidAuthenticationToken".
var (
	ErrTokenMissing = errors.New("auth: no bearer token")
	ErrTokenInvalid = errors.New("auth: invalid token")
	ErrTokenExpired = errors.New("auth: token expired")
)

// ErrUnknownAudience is returned by Issue for an audience that Verify would
// not accept.
var ErrUnknownAudience = errors.New("auth: unknown audience")

// Options configure an Issuer. The zero value selects every default.
type Options struct {
	// Issuer is the "iss" claim put in tokens, and the only one accepted.
	// Default DefaultIssuer.
	Issuer string
	// TenantID is the "tid" claim. Default DefaultTenantID.
	TenantID string
	// Audiences are the audiences tokens may be requested for and are
	// accepted with; each matches with or without a trailing slash.
	// Default []string{DefaultAudience}.
	Audiences []string
	// ResourceManagerEndpoint, if set, is accepted as an audience too
	// (clients that use the endpoint URL as their audience).
	ResourceManagerEndpoint string
	// TokenLifetime is the validity of issued tokens. Default
	// DefaultTokenLifetime.
	TokenLifetime time.Duration
	// Leeway is the clock skew tolerated when checking exp, nbf and iat.
	// Default DefaultLeeway.
	Leeway time.Duration
	// Now is the clock of the token endpoint. Default time.Now.
	Now func() time.Time
	// Logger receives token endpoint events (never secrets or tokens).
	// Default: discard.
	Logger *slog.Logger
	// RateLimit bounds token requests per remote address and in total.
	// The zero value selects the defaults.
	RateLimit RateLimit
}

// Issuer issues and verifies vmssd's access tokens, and serves the OAuth 2.0
// endpoints that hand them out. It is safe for concurrent use.
type Issuer struct {
	key       *ecdsa.PrivateKey
	kid       string
	issuer    string
	tenantID  string
	audiences []string // canonical audiences, as configured
	accepted  []string // every spelling Verify accepts
	lifetime  time.Duration
	leeway    time.Duration
	now       func() time.Time
	log       *slog.Logger
	limiter   *limiter // nil: token requests are not rate limited
}

// NewIssuer returns an Issuer signing with the ES256 (ECDSA P-256) key in
// keyFile, a PEM PKCS#8 "PRIVATE KEY" (or SEC 1 "EC PRIVATE KEY") file. If
// the file does not exist it is created, with mode 0600, atomically: two
// processes racing to create it end up using the same key.
func NewIssuer(keyFile string, opts Options) (*Issuer, error) {
	if keyFile == "" {
		return nil, errors.New("auth: no signing key file")
	}
	key, err := loadOrCreateKey(keyFile)
	if err != nil {
		return nil, err
	}
	kid, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	i := &Issuer{
		key:      key,
		kid:      kid,
		issuer:   cmp.Or(opts.Issuer, DefaultIssuer),
		tenantID: cmp.Or(opts.TenantID, DefaultTenantID),
		lifetime: opts.TokenLifetime,
		leeway:   opts.Leeway,
		now:      opts.Now,
		log:      opts.Logger,
		limiter:  newLimiter(opts.RateLimit),
	}
	if i.lifetime <= 0 {
		i.lifetime = DefaultTokenLifetime
	}
	if i.leeway <= 0 {
		i.leeway = DefaultLeeway
	}
	if i.now == nil {
		i.now = time.Now
	}
	if i.log == nil {
		i.log = slog.New(slog.DiscardHandler)
	}
	auds := opts.Audiences
	if len(auds) == 0 {
		auds = []string{DefaultAudience}
	}
	if opts.ResourceManagerEndpoint != "" {
		auds = append(auds[:len(auds):len(auds)], opts.ResourceManagerEndpoint)
	}
	for _, a := range auds {
		if strings.TrimRight(a, "/") == "" {
			return nil, fmt.Errorf("auth: empty audience in %q", auds)
		}
		if _, ok := i.canonicalAudience(a); ok {
			continue
		}
		i.audiences = append(i.audiences, a)
		trimmed := strings.TrimRight(a, "/")
		i.accepted = append(i.accepted, trimmed, trimmed+"/")
	}
	return i, nil
}

// Audiences returns the configured audiences.
func (i *Issuer) Audiences() []string {
	return append([]string(nil), i.audiences...)
}

// TenantID returns the "tid" claim of issued tokens, the directory id to
// advertise (for example in the metadata endpoint).
func (i *Issuer) TenantID() string {
	return i.tenantID
}

// canonicalAudience returns the configured audience that aud names: equal
// but for case and trailing slashes.
func (i *Issuer) canonicalAudience(aud string) (string, bool) {
	norm := strings.TrimRight(aud, "/")
	if norm == "" {
		return "", false
	}
	for _, a := range i.audiences {
		if strings.EqualFold(strings.TrimRight(a, "/"), norm) {
			return a, true
		}
	}
	return "", false
}

// Claims are the claims of a vmssd access token.
type Claims struct {
	jwt.RegisteredClaims
	// Role is the principal's role when the token was issued.
	Role Role `json:"role"`
	// AppID is the client id, like Entra's "appid"; equal to Subject.
	AppID string `json:"appid"`
	// TenantID is the directory id ("tid").
	TenantID string `json:"tid"`
	// AppDisplayName is the principal's display name, if any.
	AppDisplayName string `json:"app_displayname,omitempty"`
	// ObjectID is the principal's UID ("oid", as Entra names the object id
	// of a service principal).
	ObjectID string `json:"oid,omitempty"`
	// SecretGeneration is the generation of the secret the token was
	// obtained with.
	SecretGeneration int64 `json:"secret_gen,omitempty"`
}

// BoundTo reports whether the token was issued to the principal record
// with this UID and secret generation: false once that principal was
// deleted (and perhaps created again) or its secret rotated.
func (c Claims) BoundTo(uid string, secretGeneration int64) bool {
	return subtle.ConstantTimeCompare([]byte(c.ObjectID), []byte(uid)) == 1 && c.SecretGeneration == secretGeneration
}

// Validate checks the vmssd-specific claims; the jwt parser calls it after
// the registered claims' checks.
func (c Claims) Validate() error {
	switch {
	case c.Subject == "":
		return errors.New("no sub claim")
	case c.AppID != c.Subject:
		return errors.New("appid differs from sub")
	case !c.Role.Valid():
		return fmt.Errorf("%w %q", ErrUnknownRole, c.Role)
	}
	return nil
}

// Principal returns the principal the token was issued to. Subscriptions
// are not carried in tokens (assignments change more often than tokens
// expire): the caller resolves them from the state store by ClientID.
func (c Claims) Principal() Principal {
	return Principal{ClientID: c.Subject, DisplayName: c.AppDisplayName, Role: c.Role,
		UID: c.ObjectID, SecretGeneration: c.SecretGeneration}
}

// Issue returns a signed access token for p and audience (one of the
// configured audiences, compared ignoring case and trailing slashes; the
// token carries the configured spelling), valid from now for the token
// lifetime, and its expiry time.
func (i *Issuer) Issue(p Principal, audience string, now time.Time) (token string, expiresAt time.Time, err error) {
	if p.ClientID == "" {
		return "", time.Time{}, errors.New("auth: issue: principal has no client id")
	}
	if !p.Role.Valid() {
		return "", time.Time{}, fmt.Errorf("auth: issue: %w %q", ErrUnknownRole, p.Role)
	}
	aud, ok := i.canonicalAudience(audience)
	if !ok {
		return "", time.Time{}, fmt.Errorf("%w %q", ErrUnknownAudience, audience)
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti) // never fails: see crypto/rand.Read
	now = now.Truncate(time.Second)
	expiresAt = now.Add(i.lifetime)
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.issuer,
			Subject:   p.ClientID,
			Audience:  jwt.ClaimStrings{aud},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(expiresAt),
			ID:        hex.EncodeToString(jti),
		},
		Role:             p.Role,
		AppID:            p.ClientID,
		TenantID:         i.tenantID,
		AppDisplayName:   p.DisplayName,
		ObjectID:         p.UID,
		SecretGeneration: p.SecretGeneration,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = i.kid
	token, err = t.SignedString(i.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return token, expiresAt, nil
}

// Verify checks token's signature (ES256 with this issuer's key only), its
// issuer, audience, expiry and not-before (with the configured leeway) at
// now, and vmssd's own claims. Errors wrap ErrTokenMissing (empty token),
// ErrTokenExpired, or ErrTokenInvalid (anything else).
func (i *Issuer) Verify(token string, now time.Time) (Claims, error) {
	if token == "" {
		return Claims{}, ErrTokenMissing
	}
	var claims Claims
	_, err := jwt.ParseWithClaims(token, &claims,
		func(t *jwt.Token) (any, error) {
			if t.Method != jwt.SigningMethodES256 {
				return nil, fmt.Errorf("unexpected signing method %q", t.Method.Alg())
			}
			return &i.key.PublicKey, nil
		},
		jwt.WithValidMethods([]string{signingAlg}),
		jwt.WithIssuer(i.issuer),
		jwt.WithAudience(i.accepted...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(i.leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	switch {
	case err == nil:
		return claims, nil
	case errors.Is(err, jwt.ErrTokenExpired):
		return Claims{}, fmt.Errorf("%w: %w", ErrTokenExpired, err)
	default:
		return Claims{}, fmt.Errorf("%w: %w", ErrTokenInvalid, err)
	}
}

// BearerToken returns the bearer token of r's Authorization header, or
// ErrTokenMissing if there is none.
func BearerToken(r *http.Request) (string, error) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", ErrTokenMissing
	}
	return token, nil
}

// JWKS returns the JSON Web Key Set (RFC 7517) of the issuer's public key.
func (i *Issuer) JWKS() []byte {
	x, y := ecPoint(&i.key.PublicKey)
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "x": x, "y": y,
		"use": "sig", "alg": signingAlg, "kid": i.kid,
	}}})
	return b
}

// ecPoint returns the base64url coordinates of a P-256 public key.
func ecPoint(pub *ecdsa.PublicKey) (x, y string) {
	k, err := pub.ECDH()
	if err != nil {
		return "", ""
	}
	raw := k.Bytes() // 0x04 || X || Y, 32 bytes each
	return b64.EncodeToString(raw[1:33]), b64.EncodeToString(raw[33:65])
}

// keyID is the RFC 7638 JWK thumbprint of pub.
func keyID(pub *ecdsa.PublicKey) (string, error) {
	x, y := ecPoint(pub)
	if x == "" {
		return "", errors.New("auth: signing key is not a valid P-256 key")
	}
	// Members in lexicographic order, no whitespace (RFC 7638 §3.2).
	sum := sha256.Sum256([]byte(`{"crv":"P-256","kty":"EC","x":"` + x + `","y":"` + y + `"}`))
	return b64.EncodeToString(sum[:]), nil
}

// loadOrCreateKey reads the P-256 key in path, or creates it.
func loadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return parseKey(data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("auth: read signing key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("auth: generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("auth: encode signing key: %w", err)
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	created, err := createFileAtomic(path, pemData, 0o600)
	if err != nil {
		return nil, fmt.Errorf("auth: write signing key: %w", err)
	}
	if !created { // lost a race: use the winner's key
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("auth: read signing key: %w", err)
		}
		return parseKey(data)
	}
	return key, nil
}

func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("auth: signing key: no PEM block")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("auth: signing key: unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: signing key: %w", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("auth: signing key: want an ECDSA P-256 key for %s, got %T", signingAlg, key)
	}
	return ec, nil
}

// createFileAtomic creates path, and its directory, with data and mode perm
// unless it exists (fsutil.CreateFile): path never holds partial content
// and an existing file is never replaced. It reports whether it created the
// file.
func createFileAtomic(path string, data []byte, perm fs.FileMode) (created bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	return fsutil.CreateFile(path, data, perm)
}
