// Package cli implements vmssctl, the az-like command-line client of vmssd.
//
// Commands follow the kubectl pattern: every command has an options struct
// with Complete (derive values from flags and arguments), Validate (reject
// bad input before any request) and Run (talk to the server). The commands
// drive vmssd's ARM surface through the official Azure SDK for Go
// (azidentity, armcompute, armresources); the operator APIs that the SDK
// does not know go through the same azcore pipeline. All I/O goes through
// injected streams, so tests run commands in-process.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// IOStreams are the standard streams a command uses.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Exit codes, as az uses them.
const (
	ExitOK       = 0
	ExitError    = 1
	ExitUsage    = 2
	ExitNotFound = 3
	// ExitInterrupted is returned when the context was cancelled.
	ExitInterrupted = 130
)

// Execute runs vmssctl with args (without the program name) and returns the
// process exit code. getenv replaces os.Getenv (nil: no environment).
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	root := &rootOptions{streams: IOStreams{In: stdin, Out: stdout, ErrOut: stderr}, getenv: getenv}
	defer root.close()
	cmd := newRootCommand(root)
	cmd.SetArgs(args)
	cmd.SetIn(stdin)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	c, err := cmd.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	return root.report(ctx, c, err)
}

// usageError is a problem with the command line (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// runner is a command's options: kubectl's Complete/Validate/Run.
type runner interface {
	// Complete fills in derived values from flags and arguments.
	Complete(ctx context.Context, args []string) error
	// Validate checks the options without contacting the server.
	Validate() error
	// Run executes the command.
	Run(ctx context.Context) error
}

// bind makes cmd run o.
func bind(root *rootOptions, cmd *cobra.Command, o runner) *cobra.Command {
	cmd.RunE = func(c *cobra.Command, args []string) error {
		ctx := c.Context()
		if err := o.Complete(ctx, args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		root.ran = true
		return o.Run(ctx)
	}
	return cmd
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("unrecognized arguments: %s", strings.Join(args, " "))
	}
	return nil
}

// groupCommand is a command that only holds subcommands: alone it prints
// its help; with an unknown subcommand it fails.
func groupCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], c.CommandPath())
			}
			return c.Help()
		},
	}
}

func newRootCommand(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vmssctl",
		Short: "vmssctl manages virtual machine scale sets on vmssd",
		Long: `vmssctl manages virtual machine scale sets on vmssd, the self-hosted,
ARM-compatible scale set service. Commands mirror the Azure CLI (az vmss,
az vm list-sizes, az vm image, az group) plus operator commands (image
add/delete, admin).

Connection settings come from a config file written by vmssd
(--config, else $VMSSCTL_CONFIG, else $VMSSD_DATA_DIR/vmssctl.json, else
~/.vmssd/vmssctl.json); flags override it.

Output follows az: JSON by default, -o for another format (json, jsonc,
table, tsv, yaml, none; the default can be set with $VMSSCTL_OUTPUT,
$AZURE_CORE_OUTPUT or "output" in the config file), and --query for a
JMESPath query applied to the result before it is formatted.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return root.validateGlobal()
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{msg: err.Error()}
	})
	root.addFlags(cmd)
	cmd.AddCommand(newVMSSCommand(root), newVMCommand(root), newImageCommand(root), newGroupCommand(root), newAdminCommand(root))
	cmd.AddCommand(newNetworkCommand(root))
	cmd.AddCommand(newDeploymentCommand(root))
	cmd.AddCommand(newMarketplaceCommand(root))
	return cmd
}

// report prints err the az way and maps it to an exit code.
func (r *rootOptions) report(ctx context.Context, cmd *cobra.Command, err error) int {
	w := r.streams.ErrOut
	var ue *usageError
	if errors.As(err, &ue) || !r.ran {
		fmt.Fprintf(w, "ERROR: %v\n", err)
		if cmd != nil {
			fmt.Fprintf(w, "See '%s --help'.\n", cmd.CommandPath())
		}
		return ExitUsage
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		fmt.Fprintln(w, "ERROR: interrupted")
		return ExitInterrupted
	}
	var xe *exitError // a command's own exit code (vmss upgrade)
	if errors.As(err, &xe) {
		fmt.Fprintf(w, "ERROR: %v\n", xe.err)
		return xe.code
	}
	msg, code := describeError(err)
	fmt.Fprintf(w, "ERROR: %s\n", msg)
	return code
}
