// Command vmssctl is the command-line client of vmssd, modelled on the Azure
// CLI: "vmssctl vmss create|show|list|scale|update|update-instances|...",
// "vmssctl image list|show|add|delete", "vmssctl group ..." and the operator
// commands "vmssctl admin subscription|principal ...". It reads the
// connection settings vmssd writes to <data-dir>/vmssctl.json (default
// ~/.vmssd/vmssctl.json, or --config / $VMSSCTL_CONFIG).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmssd/vmssd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
