package client

import (
	"os/exec"
	"strings"
	"testing"
)

func TestLoginEndpoint(t *testing.T) {
	for _, ep := range []string{"https://127.0.0.1:8443", "https://127.0.0.1:8443/"} {
		if got := LoginEndpoint(ep); got != "https://127.0.0.1:8443/adfs" {
			t.Errorf("LoginEndpoint(%q) = %q", ep, got)
		}
	}
}

// TestAzureCLI: the commands are what a POSIX shell runs as meant, paths
// with spaces or quotes included.
func TestAzureCLI(t *testing.T) {
	c := Config{Endpoint: "https://127.0.0.1:8443", CAFile: "/home/a b/.vmssd/pki/ca.crt", Tenant: LoginTenant, ClientID: "operator"}
	cmds := c.AzureCLI("/home/it's/vmssctl.json")
	want := []string{
		"export REQUESTS_CA_BUNDLE='/home/a b/.vmssd/pki/ca.crt'",
		"az cloud register -n vmssd --endpoint-resource-manager https://127.0.0.1:8443/ --profile 2020-09-01-hybrid",
		"az cloud set -n vmssd",
		`az login --service-principal -u operator -p "$(jq -r .clientSecret '/home/it'\''s/vmssctl.json')" --tenant adfs`,
	}
	if strings.Join(cmds, "\n") != strings.Join(want, "\n") {
		t.Fatalf("AzureCLI:\n%s\nwant:\n%s", strings.Join(cmds, "\n"), strings.Join(want, "\n"))
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, s := range []string{"plain", "a b", "it's", `"q" $x`, ""} {
		out, err := exec.Command(sh, "-c", "printf %s "+shellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("shellQuote(%q) = %s: sh printed %q (%v)", s, shellQuote(s), out, err)
		}
	}
}
