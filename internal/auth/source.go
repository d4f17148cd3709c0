package auth

import (
	"context"
	"errors"
	"fmt"
)

// Credential is a principal as a credential store keeps it: the principal
// and the hash of its secret (HashSecret).
type Credential struct {
	Principal  Principal
	SecretHash string
}

// LookupFunc returns the credential of clientID, or an error wrapping
// ErrInvalidClient if there is no such client. Any other error is a failure
// of the store.
type LookupFunc func(ctx context.Context, clientID string) (Credential, error)

// LookupSource is a Source over a credential store. It checks secrets the
// same way whether the client exists or not: an unknown client id costs
// the same secret digest as a known one (compared with a dummy hash), so
// the token endpoint's answer time does not tell which client ids exist.
type LookupSource struct {
	Lookup LookupFunc
}

var _ Source = LookupSource{}

// Authenticate implements Source.
func (s LookupSource) Authenticate(ctx context.Context, clientID, secret string) (Principal, error) {
	c, err := s.Lookup(ctx, clientID)
	known := err == nil
	if err != nil && !errors.Is(err, ErrInvalidClient) {
		return Principal{}, err
	}
	if !known {
		c = Credential{} // CheckSecret compares with its dummy hash
	}
	if !CheckSecret(c.SecretHash, secret) || !known {
		return Principal{}, ErrInvalidClient
	}
	if !c.Principal.Role.Valid() {
		return Principal{}, fmt.Errorf("auth: client %q: %w %q", clientID, ErrUnknownRole, c.Principal.Role)
	}
	return c.Principal, nil
}
