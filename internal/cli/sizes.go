package cli

import (
	"context"
	"net/url"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/spf13/cobra"
)

// VM sizes: tenants list them (vm list-sizes, through the SDK); operators
// edit the table (admin vm-size, vmssd.Admin/vmSizes).

func newVMCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("vm", "Virtual machine information (az vm)")
	cmd.AddCommand(newVMListSizesCommand(root), newVMListUsageCommand(root))
	return cmd
}

func newAdminVMSizeCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("vm-size", "Manage the VM size table (operator)")
	cmd.AddCommand(newVMSizeSetCommand(root), newVMSizeDeleteCommand(root), newVMSizeListCommand(root))
	return cmd
}

// vmSizeTable renders sizes as Name, Cores, MemoryMB, MaxDataDisks.
func vmSizeTable(sizes []*armcompute.VirtualMachineSize) table {
	t := table{header: []string{"Name", "Cores", "MemoryMB", "MaxDataDisks"}}
	for _, s := range sizes {
		t.rows = append(t.rows, []string{str(s.Name), num(s.NumberOfCores), num(s.MemoryInMB), num(s.MaxDataDiskCount)})
	}
	return t
}

// ---- vm list-sizes ----

func newVMListSizesCommand(root *rootOptions) *cobra.Command {
	return newLocationListCommand(root, "list-sizes [-l LOCATION]", "List the VM sizes available in a location",
		func(ctx context.Context, c *connection, sub, location string) ([]*armcompute.VirtualMachineSize, error) {
			client, err := armcompute.NewVirtualMachineSizesClient(sub, c.cred, c.opts)
			if err != nil {
				return nil, err
			}
			return pages(ctx, client.NewListPager(location, nil),
				func(p armcompute.VirtualMachineSizesClientListResponse) []*armcompute.VirtualMachineSize {
					return p.Value
				})
		}, vmSizeTable)
}

// ---- admin vm-size ----

// adminVMSize is an entry of the operator's size table.
type adminVMSize struct {
	Name             string `json:"name"`
	NumberOfCores    int32  `json:"numberOfCores"`
	MemoryInMB       int32  `json:"memoryInMB"`
	OSDiskSizeInMB   int32  `json:"osDiskSizeInMB,omitempty"`
	MaxDataDiskCount int32  `json:"maxDataDiskCount"`
}

func vmSizePath(name string) string {
	return "/providers/vmssd.Admin/vmSizes/" + url.PathEscape(name)
}

func (r *rootOptions) printAdminVMSizes(v any, sizes []adminVMSize) error {
	return r.print(v, func() table {
		ss := make([]*armcompute.VirtualMachineSize, len(sizes))
		for i, s := range sizes {
			ss[i] = &armcompute.VirtualMachineSize{Name: ptr(s.Name), NumberOfCores: ptr(s.NumberOfCores), MemoryInMB: ptr(s.MemoryInMB), MaxDataDiskCount: ptr(s.MaxDataDiskCount)}
		}
		return vmSizeTable(ss)
	})
}

type vmSizeSetOptions struct {
	root         *rootOptions
	name         string
	cores        int32
	memoryMB     int32
	maxDataDisks int32
}

func newVMSizeSetCommand(root *rootOptions) *cobra.Command {
	o := &vmSizeSetOptions{root: root}
	cmd := &cobra.Command{
		Use:     "set --name NAME --cores N --memory-mb M [--max-data-disks D]",
		Short:   "Create or replace a VM size",
		Example: `  vmssctl admin vm-size set --name Standard_B1 --cores 1 --memory-mb 256`,
		Args:    noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "size name, e.g. Standard_B1")
	f.Int32Var(&o.cores, "cores", 0, "number of vCPUs")
	f.Int32Var(&o.memoryMB, "memory-mb", 0, "memory in MB")
	f.Int32Var(&o.maxDataDisks, "max-data-disks", 0, "maximum number of data disks")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("cores")
	_ = cmd.MarkFlagRequired("memory-mb")
	return bind(root, cmd, o)
}

func (o *vmSizeSetOptions) Complete(context.Context, []string) error { return nil }

// Validate leaves the ranges to the server, which owns them.
func (o *vmSizeSetOptions) Validate() error {
	if strings.TrimSpace(o.name) == "" {
		return usageErrorf("--name must not be empty")
	}
	if o.maxDataDisks < 0 {
		return usageErrorf("--max-data-disks must not be negative")
	}
	return nil
}

func (o *vmSizeSetOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	in := adminVMSize{Name: o.name, NumberOfCores: o.cores, MemoryInMB: o.memoryMB, MaxDataDiskCount: o.maxDataDisks}
	var out adminVMSize
	if err := c.adminPut(ctx, vmSizePath(o.name), apiVMSSDAdmin, in, &out); err != nil {
		return err
	}
	if out.Name == "" {
		out.Name = o.name
	}
	return o.root.printAdminVMSizes(out, []adminVMSize{out})
}

type vmSizeDeleteOptions struct {
	root *rootOptions
	name string
}

func newVMSizeDeleteCommand(root *rootOptions) *cobra.Command {
	o := &vmSizeDeleteOptions{root: root}
	cmd := &cobra.Command{
		Use:   "delete --name NAME",
		Short: "Delete a VM size (scale sets already using it keep running)",
		Args:  noArgs,
	}
	cmd.Flags().StringVar(&o.name, "name", "", "size name")
	_ = cmd.MarkFlagRequired("name")
	return bind(root, cmd, o)
}

func (o *vmSizeDeleteOptions) Complete(context.Context, []string) error { return nil }

func (o *vmSizeDeleteOptions) Validate() error {
	if strings.TrimSpace(o.name) == "" {
		return usageErrorf("--name must not be empty")
	}
	return nil
}

func (o *vmSizeDeleteOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	// 204: there was no such size; like az, deleting nothing succeeds.
	return c.adminDelete(ctx, vmSizePath(o.name), apiVMSSDAdmin)
}

type vmSizeListOptions struct{ root *rootOptions }

func newVMSizeListCommand(root *rootOptions) *cobra.Command {
	return bind(root, &cobra.Command{Use: "list", Short: "List the VM size table", Args: noArgs}, &vmSizeListOptions{root: root})
}

func (o *vmSizeListOptions) Complete(context.Context, []string) error { return nil }
func (o *vmSizeListOptions) Validate() error                          { return nil }

func (o *vmSizeListOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	var out struct {
		Value []adminVMSize `json:"value"`
	}
	if err := c.adminGet(ctx, "/providers/vmssd.Admin/vmSizes", apiVMSSDAdmin, &out); err != nil {
		return err
	}
	if out.Value == nil {
		out.Value = []adminVMSize{}
	}
	return o.root.printAdminVMSizes(out.Value, out.Value)
}
