// Package client holds the client configuration file vmssd writes for its
// clients (<data-dir>/vmssctl.json), like a kubeconfig: where the server is,
// which CA to trust and which credential to use; and the commands that point
// the Azure CLI at the same server with the same credential.
package client

import "strings"

// ConfigFileName is the name of the file in the data directory.
const ConfigFileName = "vmssctl.json"

// LoginTenant is the tenant clients log in with: "adfs". vmssd is its own
// authority in the AD FS style, as Azure Stack Hub with AD FS: the cloud's
// login endpoint is https://<server>/adfs, for which MSAL (under az and
// azidentity) asks no one else, where for any other authority it first
// asks login.microsoftonline.com's instance discovery.
const LoginTenant = "adfs"

// LoginEndpoint is the login endpoint (authority) of the server at endpoint.
func LoginEndpoint(endpoint string) string {
	return strings.TrimRight(endpoint, "/") + "/" + LoginTenant
}

// AzureCLICloud is the cloud name AzureCLI registers in az.
const AzureCLICloud = "vmssd"

// AzureCLIProfile is the az API profile AzureCLI registers the cloud with:
// Azure Stack Hub's current one. Under "latest" az asks for compute
// api-versions Debian's packaged SDK lacks.
const AzureCLIProfile = "2020-09-01-hybrid"

// AzureCLI returns the shell commands that point the Azure CLI at the server
// c describes and log in as c's service principal: trust the server's CA,
// register the cloud from its metadata endpoint and select it, log in (the
// secret is read from configFile, the file c was read from, with jq).
func (c Config) AzureCLI(configFile string) []string {
	return []string{
		"export REQUESTS_CA_BUNDLE=" + shellQuote(c.CAFile),
		"az cloud register -n " + AzureCLICloud + " --endpoint-resource-manager " + shellQuote(strings.TrimRight(c.Endpoint, "/")+"/") +
			" --profile " + AzureCLIProfile,
		"az cloud set -n " + AzureCLICloud,
		"az login --service-principal -u " + shellQuote(c.ClientID) +
			` -p "$(jq -r .clientSecret ` + shellQuote(configFile) + `)" --tenant ` + c.Tenant,
	}
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:+@=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Config is the client configuration file.
type Config struct {
	Endpoint string `json:"endpoint"`
	CAFile   string `json:"caFile"`
	// Tenant is the tenant to log in with (LoginTenant).
	Tenant       string `json:"tenant"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	Audience     string `json:"audience"`
	Subscription string `json:"subscription"`
	Location     string `json:"location"`
	// Output is vmssctl's default output format (-o): json (the default),
	// jsonc, table, tsv, yaml or none. $VMSSCTL_OUTPUT and $AZURE_CORE_OUTPUT
	// override it.
	Output string `json:"output,omitempty"`
}
