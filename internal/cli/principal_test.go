package cli

import (
	"slices"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestRotateSecretKeepsPrincipal: "admin principal create --rotate-secret"
// with no other flag replaces the secret only. Rotating the operator's own
// secret keeps it an operator, and vmssctl (whose config file the server
// updates) goes on working with the new secret.
func TestRotateSecretKeepsPrincipal(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)

	var p principal
	c.json(&p, "admin", "principal", "create", "--client-id", "bob", "--role", "tenant", "--subscriptions", e.Sub, "--display-name", "Bob")
	var r principal
	c.json(&r, "admin", "principal", "create", "--client-id", "bob", "--rotate-secret")
	if r.Role != "tenant" || r.DisplayName != "Bob" || !slices.Equal(r.Subscriptions, []string{e.Sub}) || r.ClientSecret == "" || r.ClientSecret == p.ClientSecret {
		t.Errorf("tenant after --rotate-secret: %+v", r)
	}
	// Flags given do change what they name.
	c.json(&r, "admin", "principal", "create", "--client-id", "bob", "--subscriptions", "")
	if r.Role != "tenant" || len(r.Subscriptions) != 0 {
		t.Errorf("tenant after --subscriptions '': %+v", r)
	}

	var op principal
	c.json(&op, "admin", "principal", "create", "--client-id", "operator", "--rotate-secret")
	if op.Role != "operator" || op.ClientSecret == "" {
		t.Fatalf("operator after --rotate-secret: %+v", op)
	}
	// The next vmssctl call reads the config file the server rewrote.
	var list []principal
	c.json(&list, "admin", "principal", "list")
	if !slices.ContainsFunc(list, func(p principal) bool { return p.ClientID == "operator" && p.Role == "operator" }) {
		t.Errorf("principal list after rotating the operator's secret: %+v", list)
	}
	c.ok("group", "create", "-n", "after-rotation")
}
