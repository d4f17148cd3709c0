package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmssd/vmssd/api/client"
	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// operatorFile is the bootstrap operator's credential file in the data dir.
const operatorFile = "operator.json"

// lookupCredential is the auth.LookupFunc of the state store.
func lookupCredential(st store.Store) auth.LookupFunc {
	return func(ctx context.Context, clientID string) (auth.Credential, error) {
		p, _, err := state.Get[model.Principal](ctx, st, model.PrincipalKey(clientID))
		if errors.Is(err, store.ErrNotFound) {
			return auth.Credential{}, auth.ErrInvalidClient
		}
		if err != nil {
			return auth.Credential{}, err
		}
		return auth.Credential{SecretHash: p.SecretHash, Principal: auth.Principal{
			ClientID: p.ClientID, DisplayName: p.DisplayName, Role: auth.Role(p.Role), Subscriptions: p.Subscriptions,
			UID: p.UID, SecretGeneration: p.SecretGeneration,
		}}, nil
	}
}

// secretRotated keeps the server's own credential files (operator.json and
// vmssctl.json in the data dir) in step when the secret of the principal
// they hold is rotated through the API. Other fields of the files are kept.
func (s *Server) secretRotated(ctx context.Context, clientID, secret string) {
	if !strings.EqualFold(clientID, s.clientID()) {
		return
	}
	s.credMu.Lock()
	defer s.credMu.Unlock()
	s.Client.ClientSecret = secret
	for _, name := range []string{operatorFile, client.ConfigFileName} {
		path := filepath.Join(s.cfg.DataDir, name)
		if err := replaceSecret(path, secret); err != nil {
			s.cfg.Logger.ErrorContext(ctx, "rotated secret not written to the credential file", "file", path, "err", err)
			continue
		}
		s.cfg.Logger.InfoContext(ctx, "credential file follows the rotated secret", "file", path, "client_id", clientID)
	}
}

func (s *Server) clientID() string {
	s.credMu.Lock()
	defer s.credMu.Unlock()
	return s.Client.ClientID
}

// replaceSecret sets "clientSecret" in the JSON object in path, keeping
// every other member.
func replaceSecret(path, secret string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	m["clientSecret"], _ = json.Marshal(secret)
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, out, 0o600)
}
