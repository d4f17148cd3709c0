// Package client holds the client configuration file vmssd writes for its
// clients (<data-dir>/vmssctl.json), like a kubeconfig: where the server is,
// which CA to trust and which credential to use.
package client

// ConfigFileName is the name of the file in the data directory.
const ConfigFileName = "vmssctl.json"

// Config is the client configuration file.
type Config struct {
	Endpoint     string `json:"endpoint"`
	CAFile       string `json:"caFile"`
	Tenant       string `json:"tenant"`
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret"`
	Audience     string `json:"audience"`
	Subscription string `json:"subscription"`
	Location     string `json:"location"`
}
