package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"
	"github.com/spf13/cobra"
)

// vmssctl network: virtual networks and subnets, public IPs, load
// balancers (with probe, rule and inbound-nat-pool sub-commands) and
// network security groups, named and flagged as az network names them.

func newNetworkCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("network", "Manage virtual networks, public IPs, load balancers and NSGs (az network)")
	vnet := newVNetCommand(root)
	vnet.AddCommand(newSubnetCommand(root))
	cmd.AddCommand(vnet, newSubnetCommand(root), newPublicIPCommand(root), newLBCommand(root), newNSGCommand(root))
	return cmd
}

func (r *rootOptions) networkClients() (*armnetwork.ClientFactory, *connection, error) {
	c, err := r.connect()
	if err != nil {
		return nil, nil, err
	}
	sub, err := c.sub()
	if err != nil {
		return nil, nil, err
	}
	f, err := armnetwork.NewClientFactory(sub, c.cred, c.opts)
	if err != nil {
		return nil, nil, err
	}
	return f, c, nil
}

// funcRunner is a runner made of functions (Complete does nothing).
type funcRunner struct {
	validate func() error
	run      func(ctx context.Context) error
}

func (f *funcRunner) Complete(context.Context, []string) error { return nil }
func (f *funcRunner) Validate() error {
	if f.validate == nil {
		return nil
	}
	return f.validate()
}
func (f *funcRunner) Run(ctx context.Context) error { return f.run(ctx) }

// netName is a command's -g/--resource-group and -n/--name.
type netName struct {
	rg, name string
}

func (n *netName) addFlags(cmd *cobra.Command, what string, nameRequired bool) {
	cmd.Flags().StringVarP(&n.rg, "resource-group", "g", "", "resource group name")
	_ = cmd.MarkFlagRequired("resource-group")
	if nameRequired {
		cmd.Flags().StringVarP(&n.name, "name", "n", "", what+" name")
		_ = cmd.MarkFlagRequired("name")
	}
}

func (n *netName) validate(nameRequired bool) error {
	if strings.TrimSpace(n.rg) == "" {
		return usageErrorf("--resource-group must not be empty")
	}
	if nameRequired && strings.TrimSpace(n.name) == "" {
		return usageErrorf("--name must not be empty")
	}
	return nil
}

// netKind describes a top-level network resource type for the show, list
// and delete commands.
type netKind[T any] struct {
	noun, short string
	get         func(ctx context.Context, f *armnetwork.ClientFactory, rg, name string) (T, error)
	list        func(ctx context.Context, f *armnetwork.ClientFactory, rg string) ([]T, error)
	del         func(ctx context.Context, r *rootOptions, f *armnetwork.ClientFactory, rg, name string) (func() error, error)
	header      []string
	row         func(T) []string
}

func (k *netKind[T]) print(r *rootOptions, list bool, vs ...T) error {
	return printRows(r, k.header, k.row, list, vs...)
}

// printRows prints vs (the one value alone unless list), as a table a row
// each in table output.
func printRows[T any](r *rootOptions, header []string, row func(T) []string, list bool, vs ...T) error {
	var v any = vs
	if !list && len(vs) == 1 {
		v = vs[0]
	}
	return r.print(v, func() table {
		t := table{header: header}
		for _, x := range vs {
			t.rows = append(t.rows, row(x))
		}
		return t
	})
}

func (k *netKind[T]) commands(root *rootOptions) []*cobra.Command {
	show := &netName{}
	showCmd := &cobra.Command{Use: "show -g RG -n NAME", Short: "Show a " + k.noun, Args: noArgs}
	show.addFlags(showCmd, k.noun, true)
	bind(root, showCmd, &funcRunner{validate: func() error { return show.validate(true) }, run: func(ctx context.Context) error {
		f, _, err := root.networkClients()
		if err != nil {
			return err
		}
		v, err := k.get(ctx, f, show.rg, show.name)
		if err != nil {
			return err
		}
		return k.print(root, false, v)
	}})
	var listRG string
	listCmd := &cobra.Command{Use: "list [-g RG]", Short: "List " + k.noun + "s (of a resource group, or of the subscription)", Args: noArgs}
	listCmd.Flags().StringVarP(&listRG, "resource-group", "g", "", "resource group name (default: the whole subscription)")
	bind(root, listCmd, &funcRunner{run: func(ctx context.Context) error {
		f, _, err := root.networkClients()
		if err != nil {
			return err
		}
		vs, err := k.list(ctx, f, listRG)
		if err != nil {
			return err
		}
		return k.print(root, true, vs...)
	}})
	del := &netName{}
	delCmd := &cobra.Command{Use: "delete -g RG -n NAME", Short: "Delete a " + k.noun, Args: noArgs}
	del.addFlags(delCmd, k.noun, true)
	bind(root, delCmd, &funcRunner{validate: func() error { return del.validate(true) }, run: func(ctx context.Context) error {
		f, _, err := root.networkClients()
		if err != nil {
			return err
		}
		wait, err := k.del(ctx, root, f, del.rg, del.name)
		if err != nil {
			return err
		}
		return wait()
	}})
	return []*cobra.Command{showCmd, listCmd, delCmd}
}

// pages collects a pager's values.
func pages[P any, T any](ctx context.Context, p *runtime.Pager[P], values func(P) []T) ([]T, error) {
	out := []T{}
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, values(page)...)
	}
	return out, nil
}

// rgOf is the resource group of an ARM id.
func rgOf(id *string) string {
	segs := strings.Split(str(id), "/")
	for i := 0; i+1 < len(segs); i++ {
		if strings.EqualFold(segs[i], "resourceGroups") {
			return segs[i+1]
		}
	}
	return ""
}

func joinPtrs(vs []*string) string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		out = append(out, str(v))
	}
	return strings.Join(out, ",")
}

func provState(p *armnetwork.ProvisioningState) string { return str(p) }

// netID formats the id of a network resource of the connection's
// subscription.
func netID(sub, rg, typ, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/%s/%s", sub, rg, typ, name)
}

// idOrName makes an id of a name (ids pass as they are).
func idOrName(sub, rg, typ, v string) string {
	if strings.HasPrefix(v, "/") {
		return v
	}
	return netID(sub, rg, typ, v)
}
