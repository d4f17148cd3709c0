package auth

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewSecret(t *testing.T) {
	seen := map[string]bool{}
	// 1,000 secrets: without the guard, about 16 would start with '-'.
	for range 1000 {
		s, err := NewSecret()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(raw) != 32 {
			t.Fatalf("secret %q: decoded %d bytes, err %v; want 32 base64url bytes", s, len(raw), err)
		}
		if s[0] == '-' {
			t.Fatalf("secret %q starts with '-': az login -p would read it as an option", s)
		}
		if seen[s] {
			t.Fatalf("secret %q generated twice", s)
		}
		seen[s] = true
	}
}

func TestHashSecret(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	hash := HashSecret(secret)
	if !strings.HasPrefix(hash, "sha256$") {
		t.Errorf("hash %q lacks its scheme", hash)
	}
	if strings.Contains(hash, secret) {
		t.Error("hash contains the secret")
	}
	if HashSecret(secret) == hash {
		t.Error("two hashes of one secret are equal: salt not random")
	}
	scheme, rest, _ := strings.Cut(hash, "$")
	salt, sum, _ := strings.Cut(rest, "$")

	tests := []struct {
		name   string
		hash   string
		secret string
		want   bool
	}{
		{"right secret", hash, secret, true},
		{"right secret, another hash", HashSecret(secret), secret, true},
		{"wrong secret", hash, secret + "x", false},
		{"secret prefix", hash, secret[:len(secret)-1], false},
		{"empty secret", hash, "", false},
		{"empty hash", "", secret, false},
		{"empty hash and secret", "", "", false},
		{"other scheme", "md5$" + salt + "$" + sum, secret, false},
		{"digest missing", scheme + "$" + salt, secret, false},
		{"salt not base64", scheme + "$!!$" + sum, secret, false},
		{"digest truncated", scheme + "$" + salt + "$" + sum[:10], secret, false},
		{"hash of the empty secret", HashSecret(""), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckSecret(tc.hash, tc.secret); got != tc.want {
				t.Errorf("CheckSecret(%q, %q) = %v, want %v", tc.hash, tc.secret, got, tc.want)
			}
		})
	}
}
