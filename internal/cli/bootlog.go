package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/spf13/cobra"
)

// vmss get-boot-log: the serial console of one instance (az vm
// boot-diagnostics get-boot-log), through retrieveBootDiagnosticsData.
type vmssBootLogOptions struct {
	root       *rootOptions
	ref        setRef
	instanceID string
}

func newVMSSGetBootLogCommand(root *rootOptions) *cobra.Command {
	o := &vmssBootLogOptions{root: root}
	cmd := &cobra.Command{Use: "get-boot-log -g RG -n NAME --instance-id ID", Short: "Print the boot console (serial log) of an instance", Args: noArgs}
	o.ref.addFlags(cmd)
	cmd.Flags().StringVar(&o.instanceID, "instance-id", "", "instance id")
	_ = cmd.MarkFlagRequired("instance-id")
	return bind(root, cmd, o)
}

func (o *vmssBootLogOptions) Complete(context.Context, []string) error { return nil }

func (o *vmssBootLogOptions) Validate() error {
	if !isInstanceID(o.instanceID) {
		return usageErrorf("--instance-id %q: an instance id (a decimal number) is required", o.instanceID)
	}
	return o.ref.validate()
}

func (o *vmssBootLogOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	vms, err := c.scaleSetVMs()
	if err != nil {
		return err
	}
	res, err := vms.RetrieveBootDiagnosticsData(ctx, o.ref.rg, o.ref.name, o.instanceID, nil)
	if err != nil {
		return err
	}
	if res.SerialConsoleLogBlobURI == nil || *res.SerialConsoleLogBlobURI == "" {
		return fmt.Errorf("instance %s has no serial console log", o.instanceID)
	}
	u, err := url.Parse(*res.SerialConsoleLogBlobURI)
	if err != nil {
		return fmt.Errorf("serial console URI: %w", err)
	}
	resp, err := c.do(ctx, adminCall{
		method: http.MethodGet, path: u.Path, apiVersion: u.Query().Get("api-version"), ok: []int{http.StatusOK},
	})
	if err != nil {
		return err
	}
	b, err := runtime.Payload(resp)
	if err != nil {
		return err
	}
	out := string(b)
	if out != "" && !strings.HasSuffix(out, "\n") {
		out += "\n"
	}
	_, err = fmt.Fprint(o.root.streams.Out, out)
	return err
}
