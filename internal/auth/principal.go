package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Role is what a principal is allowed to do. Roles are coarse today; finer
// ones (for example a read-only tenant, or an operator limited to the
// marketplace) can be added as new constants with their rules in the
// methods of Role and Principal, without changing tokens or the Source
// contract.
type Role string

// Known roles.
const (
	// RoleOperator runs the cloud: every subscription, the marketplace and
	// the admin API.
	RoleOperator Role = "operator"
	// RoleTenant uses the cloud: only the subscriptions assigned to it.
	RoleTenant Role = "tenant"
)

// ErrUnknownRole is returned by ParseRole for a role this version of vmssd
// does not know.
var ErrUnknownRole = errors.New("auth: unknown role")

// ParseRole returns the Role named s, or ErrUnknownRole. Unknown roles are
// rejected rather than mapped to some default, so that a token or record
// written by a newer vmssd never grants more than it says.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("%w: %q", ErrUnknownRole, s)
	}
	return r, nil
}

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case RoleOperator, RoleTenant:
		return true
	}
	return false
}

// AllSubscriptions reports whether the role grants access to every
// subscription, assigned or not.
func (r Role) AllSubscriptions() bool {
	return r == RoleOperator
}

// Principal is an authenticated caller: a service principal, as returned by
// a Source or reconstructed from a verified token.
type Principal struct {
	// ClientID is the application (client) id; the "sub" and "appid" claims.
	ClientID string
	// DisplayName is a human-readable name, for logs and UIs.
	DisplayName string
	// Role decides what the principal may do.
	Role Role
	// Subscriptions are the subscription ids assigned to a tenant. It is
	// ignored for roles with AllSubscriptions.
	Subscriptions []string
	// UID identifies the principal record the credentials belong to (the
	// "oid" claim): a principal deleted and created again with the same
	// client id has a new UID, so tokens of the old one name nobody.
	UID string
	// SecretGeneration is the generation of the principal's secret (the
	// "secret_gen" claim): rotating the secret increments it, so tokens
	// obtained with the old secret stop working at once.
	SecretGeneration int64
}

// NewPrincipalUID returns a new random principal UID, formatted like an
// Entra object id (a random UUID).
func NewPrincipalUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails: see crypto/rand.Read
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// IsOperator reports whether p has the operator role.
func (p Principal) IsOperator() bool {
	return p.Role == RoleOperator
}

// CanAccessSubscription reports whether p may use subscription id. Operators
// may use all; tenants the ones assigned to them. Subscription ids compare
// case-insensitively, as ARM resource ids do.
func (p Principal) CanAccessSubscription(id string) bool {
	if !p.Role.Valid() || id == "" {
		return false
	}
	if p.Role.AllSubscriptions() {
		return true
	}
	return slices.ContainsFunc(p.Subscriptions, func(s string) bool { return strings.EqualFold(s, id) })
}

// ErrInvalidClient is returned by a Source for an unknown client id or a
// wrong secret. The two are deliberately not distinguished.
var ErrInvalidClient = errors.New("auth: invalid client id or secret")

// Source checks client credentials. vmssd implements it on its state store.
type Source interface {
	// Authenticate returns the principal whose client id and secret are
	// given, or an error wrapping ErrInvalidClient if the client is unknown
	// or the secret is wrong; any other error is a failure of the source
	// itself. Implementations compare secrets with CheckSecret, and call
	// CheckSecret("", secret) for an unknown client id so that both cases
	// take about the same time.
	Authenticate(ctx context.Context, clientID, secret string) (Principal, error)
}

type principalKey struct{}

// NewContext returns a copy of ctx carrying p, for handlers behind the
// authentication middleware.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal stored by NewContext.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
