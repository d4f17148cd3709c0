package auth

import (
	"context"
	"errors"
	"testing"
)

func TestParseRole(t *testing.T) {
	tests := []struct {
		in      string
		want    Role
		wantErr bool
	}{
		{"operator", RoleOperator, false},
		{"tenant", RoleTenant, false},
		{"", "", true},
		{"Operator", "", true},
		{"admin", "", true},
	}
	for _, tc := range tests {
		got, err := ParseRole(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("ParseRole(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !errors.Is(err, ErrUnknownRole) {
			t.Errorf("ParseRole(%q) error %v does not wrap ErrUnknownRole", tc.in, err)
		}
	}
}

func TestCanAccessSubscription(t *testing.T) {
	const sub1, sub2 = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	operator := Principal{ClientID: "op", Role: RoleOperator}
	tenant := Principal{ClientID: "t", Role: RoleTenant, Subscriptions: []string{sub1}}
	tests := []struct {
		name string
		p    Principal
		sub  string
		want bool
	}{
		{"operator, any subscription", operator, sub2, true},
		{"tenant, assigned", tenant, sub1, true},
		{"tenant, assigned, other case", Principal{Role: RoleTenant, Subscriptions: []string{"ABC-def"}}, "abc-DEF", true},
		{"tenant, not assigned", tenant, sub2, false},
		{"tenant, empty id", tenant, "", false},
		{"unknown role with a matching list", Principal{Role: "auditor", Subscriptions: []string{sub1}}, sub1, false},
		{"no role", Principal{Subscriptions: []string{sub1}}, sub1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.CanAccessSubscription(tc.sub); got != tc.want {
				t.Errorf("CanAccessSubscription(%q) = %v, want %v", tc.sub, got, tc.want)
			}
		})
	}
	if !operator.IsOperator() || tenant.IsOperator() {
		t.Error("IsOperator wrong")
	}
}

func TestContext(t *testing.T) {
	ctx := context.Background()
	if _, ok := FromContext(ctx); ok {
		t.Error("principal in an empty context")
	}
	p := Principal{ClientID: "c", Role: RoleTenant}
	got, ok := FromContext(NewContext(ctx, p))
	if !ok || got.ClientID != "c" || got.Role != RoleTenant {
		t.Errorf("FromContext = %+v, %v", got, ok)
	}
}
