package cli

import (
	"context"
	"net/url"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/spf13/cobra"
)

// Quotas: tenants read their usage (vm list-usage, through the SDK's
// UsageClient, as az vm list-usage); operators set the limits (admin quota,
// vmssd.Admin/quotas).

// usageTable renders usages as az vm list-usage does.
func usageTable(us []*armcompute.Usage) table {
	t := table{header: []string{"Name", "CurrentValue", "Limit"}}
	for _, u := range us {
		name := ""
		if u.Name != nil {
			name = str(u.Name.LocalizedValue)
			if name == "" {
				name = str(u.Name.Value)
			}
		}
		t.rows = append(t.rows, []string{name, num(u.CurrentValue), num(u.Limit)})
	}
	return t
}

// ---- vm list-usage ----

func newVMListUsageCommand(root *rootOptions) *cobra.Command {
	return newLocationListCommand(root, "list-usage [-l LOCATION]", "List the subscription's compute usage and quotas in a location",
		func(ctx context.Context, c *connection, sub, location string) ([]*armcompute.Usage, error) {
			client, err := armcompute.NewUsageClient(sub, c.cred, c.opts)
			if err != nil {
				return nil, err
			}
			return pages(ctx, client.NewListPager(location, nil), func(p armcompute.UsageClientListResponse) []*armcompute.Usage { return p.Value })
		}, usageTable)
}

// newLocationListCommand is a command that lists what list finds in a
// location (-l, default: the configured one) and prints it, as tbl makes a
// table of it.
func newLocationListCommand[T any](root *rootOptions, use, short string,
	list func(ctx context.Context, c *connection, sub, location string) ([]T, error), tbl func([]T) table) *cobra.Command {
	var location string
	cmd := &cobra.Command{Use: use, Short: short, Args: noArgs}
	cmd.Flags().StringVarP(&location, "location", "l", "", "location (default: the configured one)")
	return bind(root, cmd, &funcRunner{run: func(ctx context.Context) error {
		c, sub, err := root.connectSub()
		if err != nil {
			return err
		}
		vs, err := list(ctx, c, sub, c.location(location))
		if err != nil {
			return err
		}
		return root.print(vs, func() table { return tbl(vs) })
	}})
}

// ---- admin quota ----

func newAdminQuotaCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("quota", "Manage per-subscription compute and storage quotas (operator)")
	cmd.AddCommand(newQuotaSetCommand(root), newQuotaShowCommand(root))
	return cmd
}

// adminQuota is a subscription's effective limits (-1: unlimited) and
// usage.
type adminQuota struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	VCPUs          int64  `json:"vcpus"`
	Instances      int64  `json:"instances"`
	ScaleSets      int64  `json:"scaleSets"`
	StorageBytes   int64  `json:"storageBytes"`
	Usage          struct {
		VCPUs        int64 `json:"vcpus"`
		Instances    int64 `json:"instances"`
		ScaleSets    int64 `json:"scaleSets"`
		StorageBytes int64 `json:"storageBytes"`
	} `json:"usage"`
}

func quotaPath(id string) string { return "/providers/vmssd.Admin/quotas/" + url.PathEscape(id) }

func limitText(v int64) string {
	if v < 0 {
		return "unlimited"
	}
	return strconv.FormatInt(v, 10)
}

func (r *rootOptions) printQuota(q *adminQuota) error {
	return r.print(q, func() table {
		t := table{header: []string{"Name", "CurrentValue", "Limit"}}
		t.rows = [][]string{
			{"vCPUs", strconv.FormatInt(q.Usage.VCPUs, 10), limitText(q.VCPUs)},
			{"Instances", strconv.FormatInt(q.Usage.Instances, 10), limitText(q.Instances)},
			{"ScaleSets", strconv.FormatInt(q.Usage.ScaleSets, 10), limitText(q.ScaleSets)},
			{"StorageBytes", strconv.FormatInt(q.Usage.StorageBytes, 10), limitText(q.StorageBytes)},
		}
		return t
	})
}

// connectQuota connects and names the subscription a quota command is
// about: id, or the configured subscription.
func (r *rootOptions) connectQuota(id string) (*connection, string, error) {
	c, err := r.connect()
	if err != nil {
		return nil, "", err
	}
	if strings.TrimSpace(id) != "" {
		return c, id, nil
	}
	sub, err := c.sub()
	if err != nil {
		return nil, "", err
	}
	return c, sub, nil
}

type quotaSetOptions struct {
	root *rootOptions
	id   string
	// limits holds the flags given; a flag left out keeps its limit.
	vcpus, instances, scaleSets, storageBytes int64
	cmd                                       *cobra.Command
}

func newQuotaSetCommand(root *rootOptions) *cobra.Command {
	o := &quotaSetOptions{root: root}
	cmd := &cobra.Command{
		Use:   "set [--id SUBSCRIPTION] [--vcpus N] [--instances N] [--scale-sets N] [--storage-bytes N]",
		Short: "Set a subscription's quota (0: the default, -1: unlimited; limits not given are kept)",
		Example: `  vmssctl admin quota set --id team-a --vcpus 16 --instances 16
  vmssctl admin quota set --id team-a --scale-sets -1`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&o.id, "id", "", "subscription id (default: the configured subscription)")
	f.Int64Var(&o.vcpus, "vcpus", 0, "total vCPUs of all instances")
	f.Int64Var(&o.instances, "instances", 0, "total instances")
	f.Int64Var(&o.scaleSets, "scale-sets", 0, "number of scale sets")
	f.Int64Var(&o.storageBytes, "storage-bytes", 0, "unpacked bytes of uploaded images")
	o.cmd = cmd
	return bind(root, cmd, o)
}

func (o *quotaSetOptions) Complete(context.Context, []string) error { return nil }

func (o *quotaSetOptions) Validate() error {
	n := 0
	for _, f := range []struct {
		name string
		v    int64
	}{{"vcpus", o.vcpus}, {"instances", o.instances}, {"scale-sets", o.scaleSets}, {"storage-bytes", o.storageBytes}} {
		if !o.cmd.Flags().Changed(f.name) {
			continue
		}
		n++
		if f.v < -1 {
			return usageErrorf("--%s must be a limit, 0 (the default) or -1 (unlimited)", f.name)
		}
	}
	if n == 0 {
		return usageErrorf("give at least one of --vcpus, --instances, --scale-sets, --storage-bytes")
	}
	return nil
}

func (o *quotaSetOptions) Run(ctx context.Context) error {
	c, id, err := o.root.connectQuota(o.id)
	if err != nil {
		return err
	}
	body := map[string]int64{}
	for _, f := range []struct {
		flag, field string
		v           int64
	}{{"vcpus", "vcpus", o.vcpus}, {"instances", "instances", o.instances}, {"scale-sets", "scaleSets", o.scaleSets}, {"storage-bytes", "storageBytes", o.storageBytes}} {
		if o.cmd.Flags().Changed(f.flag) {
			body[f.field] = f.v
		}
	}
	var out adminQuota
	if err := c.adminPut(ctx, quotaPath(id), apiVMSSDAdmin, body, &out); err != nil {
		return err
	}
	return o.root.printQuota(&out)
}

func newQuotaShowCommand(root *rootOptions) *cobra.Command {
	var id string
	cmd := &cobra.Command{Use: "show [--id SUBSCRIPTION]", Short: "Show a subscription's quota and usage", Args: noArgs}
	cmd.Flags().StringVar(&id, "id", "", "subscription id (default: the configured subscription)")
	return bind(root, cmd, &funcRunner{run: func(ctx context.Context) error {
		c, id, err := root.connectQuota(id)
		if err != nil {
			return err
		}
		var out adminQuota
		if err := c.adminGet(ctx, quotaPath(id), apiVMSSDAdmin, &out); err != nil {
			return err
		}
		return root.printQuota(&out)
	}})
}
