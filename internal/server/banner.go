package server

import (
	"strings"

	"github.com/vmssd/vmssd/api/client"
)

// AzureCLICommands are the shell commands, as the start banner prints them,
// that point the Azure CLI at this server and log in as the operator: trust
// the CA, register the cloud with the hybrid profile, select it, log in.
func (s *Server) AzureCLICommands() []string {
	// Not the secret: it may be rotated while serving; the login command
	// reads it from the config file, which follows rotations.
	c := client.Config{Endpoint: s.Client.Endpoint, CAFile: s.Client.CAFile, Tenant: s.Client.Tenant, ClientID: s.Client.ClientID}
	return c.AzureCLI(s.ConfigFile)
}

// AzureCLIBanner is the start banner's Azure CLI part.
func (s *Server) AzureCLIBanner() string {
	var b strings.Builder
	for i, cmd := range s.AzureCLICommands() {
		label := ""
		if i == 0 {
			label = "Azure CLI:"
		}
		b.WriteString("  " + label + strings.Repeat(" ", 20-len(label)) + cmd + "\n")
	}
	return b.String()
}
