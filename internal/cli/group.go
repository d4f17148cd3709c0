package cli

import (
	"context"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/spf13/cobra"
)

func newGroupCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("group", "Manage resource groups (az group)")
	cmd.AddCommand(newGroupCreateCommand(root), newGroupListCommand(root), newGroupShowCommand(root), newGroupDeleteCommand(root))
	return cmd
}

func (c *connection) resourceGroups() (*armresources.ResourceGroupsClient, error) {
	sub, err := c.sub()
	if err != nil {
		return nil, err
	}
	return armresources.NewResourceGroupsClient(sub, c.cred, c.opts)
}

func (r *rootOptions) resourceGroupsClient() (*armresources.ResourceGroupsClient, error) {
	c, err := r.connect()
	if err != nil {
		return nil, err
	}
	return c.resourceGroups()
}

func (r *rootOptions) printGroups(list bool, groups ...*armresources.ResourceGroup) error {
	var v any = groups
	if !list && len(groups) == 1 {
		v = groups[0]
	}
	return r.print(v, func() table {
		t := table{header: []string{"Name", "Location", "ProvisioningState"}}
		for _, g := range groups {
			state := ""
			if g.Properties != nil {
				state = str(g.Properties.ProvisioningState)
			}
			t.rows = append(t.rows, []string{str(g.Name), str(g.Location), state})
		}
		return t
	})
}

// groupName is the -n/--name of a group command.
type groupName struct{ name string }

func (g *groupName) addFlag(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&g.name, "name", "n", "", "resource group name")
	_ = cmd.MarkFlagRequired("name")
}

func (g *groupName) validate() error {
	if strings.TrimSpace(g.name) == "" {
		return usageErrorf("--name must not be empty")
	}
	return nil
}

type groupCreateOptions struct {
	root     *rootOptions
	group    groupName
	location string
}

func newGroupCreateCommand(root *rootOptions) *cobra.Command {
	o := &groupCreateOptions{root: root}
	cmd := &cobra.Command{Use: "create -n NAME [-l LOCATION]", Short: "Create (or update) a resource group", Args: noArgs}
	o.group.addFlag(cmd)
	cmd.Flags().StringVarP(&o.location, "location", "l", "", "location (default: the configured one)")
	return bind(root, cmd, o)
}

func (o *groupCreateOptions) Complete(context.Context, []string) error { return nil }
func (o *groupCreateOptions) Validate() error                          { return o.group.validate() }

func (o *groupCreateOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	client, err := c.resourceGroups()
	if err != nil {
		return err
	}
	loc := c.location(o.location)
	res, err := client.CreateOrUpdate(ctx, o.group.name, armresources.ResourceGroup{Location: &loc}, nil)
	if err != nil {
		return err
	}
	return o.root.printGroups(false, &res.ResourceGroup)
}

type groupListOptions struct{ root *rootOptions }

func newGroupListCommand(root *rootOptions) *cobra.Command {
	o := &groupListOptions{root: root}
	return bind(root, &cobra.Command{Use: "list", Short: "List resource groups", Args: noArgs}, o)
}

func (o *groupListOptions) Complete(context.Context, []string) error { return nil }
func (o *groupListOptions) Validate() error                          { return nil }

func (o *groupListOptions) Run(ctx context.Context) error {
	client, err := o.root.resourceGroupsClient()
	if err != nil {
		return err
	}
	groups := []*armresources.ResourceGroup{}
	pager := client.NewListPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return err
		}
		groups = append(groups, page.Value...)
	}
	return o.root.printGroups(true, groups...)
}

type groupShowOptions struct {
	root  *rootOptions
	group groupName
}

func newGroupShowCommand(root *rootOptions) *cobra.Command {
	o := &groupShowOptions{root: root}
	cmd := &cobra.Command{Use: "show -n NAME", Short: "Show a resource group", Args: noArgs}
	o.group.addFlag(cmd)
	return bind(root, cmd, o)
}

func (o *groupShowOptions) Complete(context.Context, []string) error { return nil }
func (o *groupShowOptions) Validate() error                          { return o.group.validate() }

func (o *groupShowOptions) Run(ctx context.Context) error {
	client, err := o.root.resourceGroupsClient()
	if err != nil {
		return err
	}
	res, err := client.Get(ctx, o.group.name, nil)
	if err != nil {
		return err
	}
	return o.root.printGroups(false, &res.ResourceGroup)
}

type groupDeleteOptions struct {
	root  *rootOptions
	group groupName
}

func newGroupDeleteCommand(root *rootOptions) *cobra.Command {
	o := &groupDeleteOptions{root: root}
	cmd := &cobra.Command{Use: "delete -n NAME", Short: "Delete a resource group and every scale set in it", Args: noArgs}
	o.group.addFlag(cmd)
	return bind(root, cmd, o)
}

func (o *groupDeleteOptions) Complete(context.Context, []string) error { return nil }
func (o *groupDeleteOptions) Validate() error                          { return o.group.validate() }

func (o *groupDeleteOptions) Run(ctx context.Context) error {
	client, err := o.root.resourceGroupsClient()
	if err != nil {
		return err
	}
	p, err := client.BeginDelete(ctx, o.group.name, nil)
	if err != nil {
		return err
	}
	_, _, err = await(ctx, o.root, p)
	return err
}
