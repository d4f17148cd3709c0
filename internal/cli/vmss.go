package cli

import (
	"context"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/spf13/cobra"
)

func newVMSSCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("vmss", "Manage virtual machine scale sets (az vmss)")
	cmd.AddCommand(
		newVMSSCreateCommand(root),
		newVMSSShowCommand(root),
		newVMSSListCommand(root),
		newVMSSDeleteCommand(root),
		newVMSSScaleCommand(root),
		newVMSSUpdateCommand(root),
		newVMSSListInstancesCommand(root),
		newVMSSGetInstanceViewCommand(root),
		newVMSSUpdateInstancesCommand(root),
		newVMSSDeleteInstancesCommand(root),
		newVMSSGetBootLogCommand(root),
		newVMSSUpgradeCommand(root),
		newVMSSRollingUpgradeCommand(root),
		newVMSSOSUpgradeHistoryCommand(root),
	)
	for _, a := range vmssActions() {
		cmd.AddCommand(newVMSSActionCommand(root, a))
	}
	return cmd
}

// setRef names a scale set (-g, -n).
type setRef struct {
	rg, name string
}

func (s *setRef) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&s.rg, "resource-group", "g", "", "resource group name")
	cmd.Flags().StringVarP(&s.name, "name", "n", "", "scale set name")
	_ = cmd.MarkFlagRequired("resource-group")
	_ = cmd.MarkFlagRequired("name")
}

func (s *setRef) validate() error {
	if strings.TrimSpace(s.rg) == "" || strings.TrimSpace(s.name) == "" {
		return usageErrorf("--resource-group and --name must not be empty")
	}
	return nil
}

func (c *connection) scaleSets() (*armcompute.VirtualMachineScaleSetsClient, error) {
	sub, err := c.sub()
	if err != nil {
		return nil, err
	}
	return armcompute.NewVirtualMachineScaleSetsClient(sub, c.cred, c.opts)
}

func (c *connection) scaleSetVMs() (*armcompute.VirtualMachineScaleSetVMsClient, error) {
	sub, err := c.sub()
	if err != nil {
		return nil, err
	}
	return armcompute.NewVirtualMachineScaleSetVMsClient(sub, c.cred, c.opts)
}

// scaleSetsClient connects and returns the scale set client.
func (r *rootOptions) scaleSetsClient() (*armcompute.VirtualMachineScaleSetsClient, error) {
	c, err := r.connect()
	if err != nil {
		return nil, err
	}
	return c.scaleSets()
}

// printSets prints scale sets (one object, or a list when list is set).
func (r *rootOptions) printSets(list bool, sets ...*armcompute.VirtualMachineScaleSet) error {
	var v any = sets
	if !list && len(sets) == 1 {
		v = sets[0]
	}
	return r.print(v, func() table {
		t := table{header: []string{"Name", "ResourceGroup", "Location", "Sku", "Capacity", "UpgradePolicy", "ProvisioningState", "Image"}}
		for _, s := range sets {
			row := []string{str(s.Name), resourceGroupOf(s.ID), str(s.Location), "", "", "", "", ""}
			if s.SKU != nil {
				row[3], row[4] = str(s.SKU.Name), num(s.SKU.Capacity)
			}
			if p := s.Properties; p != nil {
				if p.UpgradePolicy != nil {
					row[5] = str(p.UpgradePolicy.Mode)
				}
				row[6] = str(p.ProvisioningState)
				if vp := p.VirtualMachineProfile; vp != nil {
					row[7] = imageOf(vp.StorageProfile)
				}
			}
			t.rows = append(t.rows, row)
		}
		return t
	})
}

// resourceGroupOf extracts the resource group from an ARM id.
func resourceGroupOf(id *string) string {
	if id == nil {
		return ""
	}
	rid, err := arm.ParseResourceID(*id)
	if err != nil {
		return ""
	}
	return rid.ResourceGroupName
}

// imageOf formats a scale set's image as a URN or URI.
func imageOf(sp *armcompute.VirtualMachineScaleSetStorageProfile) string {
	if sp == nil {
		return ""
	}
	if sp.OSDisk != nil && sp.OSDisk.Image != nil && str(sp.OSDisk.Image.URI) != "" {
		return str(sp.OSDisk.Image.URI)
	}
	if ir := sp.ImageReference; ir != nil {
		return strings.Join([]string{str(ir.Publisher), str(ir.Offer), str(ir.SKU), str(ir.Version)}, ":")
	}
	return ""
}

// ---- create ----

type vmssCreateOptions struct {
	root *rootOptions
	ref  setRef

	location      string
	image         string
	imageURI      string
	osType        string
	instanceCount int64
	upgradeMode   string
	vmSKU         string
	prefix        string
	adminUser     string
	adminPassword string
	faultDomains  int32
	scaleIn       string
	// policy are the rolling upgrade policy flags (rolling.go).
	policy upgradePolicyFlags
	// net are az's networking defaults (vmss_netdefaults.go).
	net vmssNetFlags

	imageRef *armcompute.ImageReference
	fdSet    bool
}

func newVMSSCreateCommand(root *rootOptions) *cobra.Command {
	o := &vmssCreateOptions{root: root}
	cmd := &cobra.Command{
		Use:   "create -g RG -n NAME (--image URN | --image-uri URI) [flags]",
		Short: "Create a scale set (a direct PUT of the scale set)",
		Example: `  vmssctl vmss create -g rg1 -n web --image vmssd:demo:guest:latest --instance-count 3 \
      --upgrade-policy-mode Rolling --admin-username azureuser`,
		Args: noArgs,
	}
	o.ref.addFlags(cmd)
	f := cmd.Flags()
	f.StringVarP(&o.location, "location", "l", "", "location (default: the resource group's)")
	f.StringVar(&o.image, "image", "", "platform image URN publisher:offer:sku:version (version may be 'latest' or omitted)")
	f.StringVar(&o.imageURI, "image-uri", "", "custom image URI (osDisk.image.uri), e.g. artifact:sha256:...")
	f.StringVar(&o.osType, "os-type", "", "OS type of a custom image: Linux or Windows")
	f.Int64Var(&o.instanceCount, "instance-count", 2, "number of instances")
	f.StringVar(&o.upgradeMode, "upgrade-policy-mode", "Manual", "upgrade policy: Manual, Automatic or Rolling")
	f.StringVar(&o.vmSKU, "vm-sku", "Standard_A1", "instance size")
	f.StringVar(&o.prefix, "computer-name-prefix", "", "computer name prefix (default: derived from the name)")
	f.StringVar(&o.adminUser, "admin-username", "azureuser", "administrator user name")
	f.StringVar(&o.adminPassword, "admin-password", "", "administrator password")
	f.Int32Var(&o.faultDomains, "fault-domain-count", 0, "platform fault domain count (1-5)")
	f.StringVar(&o.scaleIn, "scale-in-policy", "", "scale-in policy: Default, OldestVM or NewestVM")
	o.policy.addRollingFlags(cmd)
	o.net.addFlags(cmd)
	cmd.PreRun = func(c *cobra.Command, _ []string) {
		o.fdSet = c.Flags().Changed("fault-domain-count")
		o.net.complete(c, o.ref.name)
	}
	return bind(root, cmd, o)
}

// computerNamePrefix derives a computer name prefix from a scale set name:
// letters, digits and hyphens, at most 9, not starting with a hyphen.
func computerNamePrefix(name string) string {
	p := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, name)
	p = strings.TrimLeft(p, "-")
	if len(p) > 9 {
		p = p[:9]
	}
	if p == "" {
		p = "vm"
	}
	return p
}

func (o *vmssCreateOptions) Complete(_ context.Context, _ []string) error {
	if o.image != "" {
		urn, err := parseURN(o.image, true)
		if err != nil {
			return err
		}
		o.imageRef = &armcompute.ImageReference{Publisher: &urn.publisher, Offer: &urn.offer, SKU: &urn.sku, Version: &urn.version}
	}
	if o.prefix == "" {
		o.prefix = computerNamePrefix(o.ref.name)
	}
	var err error
	if o.upgradeMode, err = canonical("--upgrade-policy-mode", o.upgradeMode, "Manual", "Automatic", "Rolling"); err != nil {
		return err
	}
	if o.scaleIn != "" {
		if o.scaleIn, err = canonical("--scale-in-policy", o.scaleIn, "Default", "OldestVM", "NewestVM"); err != nil {
			return err
		}
	}
	if o.osType != "" {
		if o.osType, err = canonical("--os-type", o.osType, "Linux", "Windows"); err != nil {
			return err
		}
	}
	return o.policy.complete()
}

func (o *vmssCreateOptions) Validate() error {
	if err := o.ref.validate(); err != nil {
		return err
	}
	switch {
	case o.image == "" && o.imageURI == "":
		return usageErrorf("one of --image or --image-uri is required")
	case o.image != "" && o.imageURI != "":
		return usageErrorf("--image and --image-uri are mutually exclusive")
	case o.osType != "" && o.imageURI == "":
		return usageErrorf("--os-type applies to --image-uri only")
	case o.instanceCount < 0:
		return usageErrorf("--instance-count must not be negative")
	case o.fdSet && (o.faultDomains < 1 || o.faultDomains > 5):
		return usageErrorf("--fault-domain-count must be between 1 and 5")
	case o.adminUser == "":
		return usageErrorf("--admin-username must not be empty")
	case o.vmSKU == "":
		return usageErrorf("--vm-sku must not be empty")
	}
	return o.net.validate()
}

// body builds the scale set to PUT.
func (o *vmssCreateOptions) body(location string) armcompute.VirtualMachineScaleSet {
	sp := &armcompute.VirtualMachineScaleSetStorageProfile{ImageReference: o.imageRef}
	if o.imageURI != "" {
		sp.OSDisk = &armcompute.VirtualMachineScaleSetOSDisk{
			CreateOption: ptr(armcompute.DiskCreateOptionTypesFromImage),
			Image:        &armcompute.VirtualHardDisk{URI: &o.imageURI},
		}
		if o.osType != "" {
			sp.OSDisk.OSType = ptr(armcompute.OperatingSystemTypes(o.osType))
		}
	}
	osp := &armcompute.VirtualMachineScaleSetOSProfile{ComputerNamePrefix: &o.prefix, AdminUsername: &o.adminUser}
	if o.adminPassword != "" {
		osp.AdminPassword = &o.adminPassword
	}
	props := &armcompute.VirtualMachineScaleSetProperties{
		UpgradePolicy: &armcompute.UpgradePolicy{Mode: ptr(armcompute.UpgradeMode(o.upgradeMode))},
		VirtualMachineProfile: &armcompute.VirtualMachineScaleSetVMProfile{
			OSProfile:      osp,
			StorageProfile: sp,
		},
	}
	if o.fdSet {
		props.PlatformFaultDomainCount = &o.faultDomains
	}
	if o.scaleIn != "" {
		props.ScaleInPolicy = &armcompute.ScaleInPolicy{Rules: []*armcompute.VirtualMachineScaleSetScaleInRules{ptr(armcompute.VirtualMachineScaleSetScaleInRules(o.scaleIn))}}
	}
	set := armcompute.VirtualMachineScaleSet{
		Location:   &location,
		SKU:        &armcompute.SKU{Name: &o.vmSKU, Tier: ptr("Standard"), Capacity: &o.instanceCount},
		Properties: props,
	}
	o.policy.apply(&set)
	return set
}

func (o *vmssCreateOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	location := o.location
	if location == "" {
		// Like az: default to the resource group's location.
		groups, err := c.resourceGroups()
		if err != nil {
			return err
		}
		g, err := groups.Get(ctx, o.ref.rg, nil)
		if err != nil {
			return err
		}
		location = str(g.Location)
	}
	if location == "" {
		location = c.cfg.Location
	}
	client, err := c.scaleSets()
	if err != nil {
		return err
	}
	body := o.body(location)
	np, err := o.net.ensure(ctx, o.root, o.ref.rg, o.ref.name, location)
	if err != nil {
		return err
	}
	body.Properties.VirtualMachineProfile.NetworkProfile = np
	p, err := client.BeginCreateOrUpdate(ctx, o.ref.rg, o.ref.name, body, nil)
	if err != nil {
		return err
	}
	res, done, err := await(ctx, o.root, p)
	if err != nil || !done {
		return err
	}
	return o.root.printSets(false, &res.VirtualMachineScaleSet)
}

// canonical matches v case-insensitively against allowed values.
func canonical(flag, v string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a, nil
		}
	}
	return "", usageErrorf("argument %s: invalid choice: %q (choose from %s)", flag, v, strings.Join(allowed, ", "))
}

// ---- show / list / delete ----

type vmssShowOptions struct {
	root *rootOptions
	ref  setRef
}

func newVMSSShowCommand(root *rootOptions) *cobra.Command {
	o := &vmssShowOptions{root: root}
	cmd := &cobra.Command{Use: "show -g RG -n NAME", Short: "Show a scale set", Args: noArgs}
	o.ref.addFlags(cmd)
	return bind(root, cmd, o)
}

func (o *vmssShowOptions) Complete(context.Context, []string) error { return nil }
func (o *vmssShowOptions) Validate() error                          { return o.ref.validate() }

func (o *vmssShowOptions) Run(ctx context.Context) error {
	client, err := o.root.scaleSetsClient()
	if err != nil {
		return err
	}
	res, err := client.Get(ctx, o.ref.rg, o.ref.name, nil)
	if err != nil {
		return err
	}
	return o.root.printSets(false, &res.VirtualMachineScaleSet)
}

type vmssListOptions struct {
	root *rootOptions
	rg   string
}

func newVMSSListCommand(root *rootOptions) *cobra.Command {
	o := &vmssListOptions{root: root}
	cmd := &cobra.Command{Use: "list [-g RG]", Short: "List scale sets in a resource group or the subscription", Args: noArgs}
	cmd.Flags().StringVarP(&o.rg, "resource-group", "g", "", "resource group name (default: all)")
	return bind(root, cmd, o)
}

func (o *vmssListOptions) Complete(context.Context, []string) error { return nil }
func (o *vmssListOptions) Validate() error                          { return nil }

func (o *vmssListOptions) Run(ctx context.Context) error {
	client, err := o.root.scaleSetsClient()
	if err != nil {
		return err
	}
	sets := []*armcompute.VirtualMachineScaleSet{}
	if o.rg != "" {
		pager := client.NewListPager(o.rg, nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return err
			}
			sets = append(sets, page.Value...)
		}
	} else {
		pager := client.NewListAllPager(nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				return err
			}
			sets = append(sets, page.Value...)
		}
	}
	return o.root.printSets(true, sets...)
}

type vmssDeleteOptions struct {
	root *rootOptions
	ref  setRef
}

func newVMSSDeleteCommand(root *rootOptions) *cobra.Command {
	o := &vmssDeleteOptions{root: root}
	cmd := &cobra.Command{Use: "delete -g RG -n NAME", Short: "Delete a scale set and its instances", Args: noArgs}
	o.ref.addFlags(cmd)
	return bind(root, cmd, o)
}

func (o *vmssDeleteOptions) Complete(context.Context, []string) error { return nil }
func (o *vmssDeleteOptions) Validate() error                          { return o.ref.validate() }

func (o *vmssDeleteOptions) Run(ctx context.Context) error {
	client, err := o.root.scaleSetsClient()
	if err != nil {
		return err
	}
	p, err := client.BeginDelete(ctx, o.ref.rg, o.ref.name, nil)
	if err != nil {
		return err
	}
	_, _, err = await(ctx, o.root, p)
	return err
}

// ---- scale ----

type vmssScaleOptions struct {
	root     *rootOptions
	ref      setRef
	capacity int64
}

func newVMSSScaleCommand(root *rootOptions) *cobra.Command {
	o := &vmssScaleOptions{root: root}
	cmd := &cobra.Command{Use: "scale -g RG -n NAME --new-capacity N", Short: "Change the number of instances", Args: noArgs}
	o.ref.addFlags(cmd)
	cmd.Flags().Int64Var(&o.capacity, "new-capacity", -1, "number of instances")
	_ = cmd.MarkFlagRequired("new-capacity")
	return bind(root, cmd, o)
}

func (o *vmssScaleOptions) Complete(context.Context, []string) error { return nil }

func (o *vmssScaleOptions) Validate() error {
	if o.capacity < 0 {
		return usageErrorf("--new-capacity must not be negative")
	}
	return o.ref.validate()
}

// Run does what az does: GET the scale set, then PUT {location, sku} with
// the new capacity (nothing when it is unchanged).
func (o *vmssScaleOptions) Run(ctx context.Context) error {
	client, err := o.root.scaleSetsClient()
	if err != nil {
		return err
	}
	return updateSet(ctx, o.root, client, o.ref, func(cur *armcompute.VirtualMachineScaleSet) (*armcompute.VirtualMachineScaleSet, error) {
		if cur.SKU != nil && cur.SKU.Capacity != nil && *cur.SKU.Capacity == o.capacity {
			return nil, nil
		}
		sku := &armcompute.SKU{Capacity: &o.capacity}
		if cur.SKU != nil {
			sku.Name, sku.Tier = cur.SKU.Name, cur.SKU.Tier
		}
		return &armcompute.VirtualMachineScaleSet{Location: cur.Location, SKU: sku}, nil
	})
}

// maxUpdateAttempts bounds read-modify-write retries on ETag conflicts.
const maxUpdateAttempts = 3

// updateSet GETs a scale set, lets change build the PUT body (nil: nothing
// to do) and PUTs it with If-Match, retrying when the scale set changed in
// between. It prints the result.
func updateSet(ctx context.Context, r *rootOptions, client *armcompute.VirtualMachineScaleSetsClient, ref setRef,
	change func(cur *armcompute.VirtualMachineScaleSet) (*armcompute.VirtualMachineScaleSet, error)) error {
	for attempt := 1; ; attempt++ {
		cur, err := client.Get(ctx, ref.rg, ref.name, nil)
		if err != nil {
			return err
		}
		next, err := change(&cur.VirtualMachineScaleSet)
		if err != nil {
			return err
		}
		if next == nil {
			return r.printSets(false, &cur.VirtualMachineScaleSet)
		}
		p, err := client.BeginCreateOrUpdate(ctx, ref.rg, ref.name, *next,
			&armcompute.VirtualMachineScaleSetsClientBeginCreateOrUpdateOptions{IfMatch: cur.Etag})
		if isPreconditionFailed(err) && attempt < maxUpdateAttempts {
			continue
		}
		if err != nil {
			return err
		}
		res, done, err := await(ctx, r, p)
		if err != nil || !done {
			return err
		}
		return r.printSets(false, &res.VirtualMachineScaleSet)
	}
}

// ---- update --set ----

type vmssUpdateOptions struct {
	root *rootOptions
	ref  setRef
	sets []string
	// policy are the upgrade policy flags (rolling.go).
	policy upgradePolicyFlags

	assignments []assignment
}

func newVMSSUpdateCommand(root *rootOptions) *cobra.Command {
	o := &vmssUpdateOptions{root: root}
	cmd := &cobra.Command{
		Use:   "update -g RG -n NAME [--set PATH=VALUE ...] [upgrade policy flags]",
		Short: "Update a scale set by setting properties (GET, change, PUT)",
		Long: `Update a scale set like az's generic update: GET the scale set, set each
dotted PATH (the leading "properties." may be omitted; [N] indexes lists) to
VALUE (parsed as JSON when it is valid JSON and the current value is not a
string), and PUT the result. The upgrade policy flags (--upgrade-policy-mode,
--max-batch-instance-percent, ...) set upgradePolicy as az's do.`,
		Example: `  vmssctl vmss update -g rg1 -n web --set virtualMachineProfile.storageProfile.imageReference.version=1.1.0
  vmssctl vmss update -g rg1 -n web --set upgradePolicy.mode=Automatic --set tags.env=prod
  vmssctl vmss update -g rg1 -n web --upgrade-policy-mode Rolling --max-batch-instance-percent 20 --pause-time-between-batches PT5S`,
		Args: noArgs,
	}
	o.ref.addFlags(cmd)
	cmd.Flags().StringArrayVar(&o.sets, "set", nil, "PATH=VALUE to set (repeatable)")
	o.policy.addFlags(cmd)
	return bind(root, cmd, o)
}

func (o *vmssUpdateOptions) Complete(context.Context, []string) error {
	o.assignments = o.assignments[:0]
	for _, s := range o.sets {
		a, err := parseAssignment(s)
		if err != nil {
			return err
		}
		o.assignments = append(o.assignments, a)
	}
	return o.policy.complete()
}

func (o *vmssUpdateOptions) Validate() error {
	if len(o.assignments) == 0 && !o.policy.any() {
		return usageErrorf("at least one --set PATH=VALUE or upgrade policy flag is required")
	}
	return o.ref.validate()
}

func (o *vmssUpdateOptions) Run(ctx context.Context) error {
	client, err := o.root.scaleSetsClient()
	if err != nil {
		return err
	}
	return updateSet(ctx, o.root, client, o.ref, func(cur *armcompute.VirtualMachineScaleSet) (*armcompute.VirtualMachineScaleSet, error) {
		next := &armcompute.VirtualMachineScaleSet{}
		if err := applyAssignments(cur, next, o.assignments); err != nil {
			return nil, err
		}
		o.policy.apply(next)
		return next, nil
	})
}

// ---- instances ----

func (c *connection) listInstances(ctx context.Context, ref setRef) ([]*armcompute.VirtualMachineScaleSetVM, error) {
	client, err := c.scaleSetVMs()
	if err != nil {
		return nil, err
	}
	vms := []*armcompute.VirtualMachineScaleSetVM{}
	pager := client.NewListPager(ref.rg, ref.name, &armcompute.VirtualMachineScaleSetVMsClientListOptions{Expand: ptr("instanceView")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		vms = append(vms, page.Value...)
	}
	return vms, nil
}

func instanceTable(vms []*armcompute.VirtualMachineScaleSetVM) table {
	t := table{header: []string{"InstanceId", "Name", "ComputerName", "ProvisioningState", "Power", "Health", "LatestModel", "Version", "FD", "UD"}}
	for _, vm := range vms {
		row := make([]string, len(t.header))
		row[0], row[1] = str(vm.InstanceID), str(vm.Name)
		if p := vm.Properties; p != nil {
			if p.OSProfile != nil {
				row[2] = str(p.OSProfile.ComputerName)
			}
			row[3] = str(p.ProvisioningState)
			row[6] = boolean(p.LatestModelApplied)
			if sp := p.StorageProfile; sp != nil {
				switch {
				case sp.ImageReference != nil && str(sp.ImageReference.ExactVersion) != "":
					row[7] = str(sp.ImageReference.ExactVersion)
				case sp.ImageReference != nil:
					row[7] = str(sp.ImageReference.Version)
				case sp.OSDisk != nil && sp.OSDisk.Image != nil:
					row[7] = str(sp.OSDisk.Image.URI)
				}
			}
			if iv := p.InstanceView; iv != nil {
				if row[2] == "" {
					row[2] = str(iv.ComputerName)
				}
				row[4] = statusSuffix(iv.Statuses, "PowerState/")
				if iv.VMHealth != nil && iv.VMHealth.Status != nil {
					_, row[5], _ = strings.Cut(str(iv.VMHealth.Status.Code), "/")
				}
				row[8], row[9] = num(iv.PlatformFaultDomain), num(iv.PlatformUpdateDomain)
			}
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// statusSuffix returns the part after prefix of the first status code
// with that prefix ("PowerState/running" → "running").
func statusSuffix(statuses []*armcompute.InstanceViewStatus, prefix string) string {
	for _, s := range statuses {
		if s != nil {
			if v, ok := strings.CutPrefix(str(s.Code), prefix); ok {
				return v
			}
		}
	}
	return ""
}

type vmssListInstancesOptions struct {
	root *rootOptions
	ref  setRef
}

func newVMSSListInstancesCommand(root *rootOptions) *cobra.Command {
	o := &vmssListInstancesOptions{root: root}
	cmd := &cobra.Command{Use: "list-instances -g RG -n NAME", Short: "List the instances of a scale set (with their instance views)", Args: noArgs}
	o.ref.addFlags(cmd)
	return bind(root, cmd, o)
}

func (o *vmssListInstancesOptions) Complete(context.Context, []string) error { return nil }
func (o *vmssListInstancesOptions) Validate() error                          { return o.ref.validate() }

func (o *vmssListInstancesOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	vms, err := c.listInstances(ctx, o.ref)
	if err != nil {
		return err
	}
	return o.root.print(vms, func() table { return instanceTable(vms) })
}

type vmssInstanceViewOptions struct {
	root       *rootOptions
	ref        setRef
	instanceID string
}

func newVMSSGetInstanceViewCommand(root *rootOptions) *cobra.Command {
	o := &vmssInstanceViewOptions{root: root}
	cmd := &cobra.Command{
		Use:   "get-instance-view -g RG -n NAME [--instance-id ID|*]",
		Short: "Show the instance view of a scale set or of its instances",
		Long: `Without --instance-id, show the scale set's instance view (a summary of its
instances' states); with an id, that instance's view; with "*", the views
of all instances.`,
		Args: noArgs,
	}
	o.ref.addFlags(cmd)
	cmd.Flags().StringVar(&o.instanceID, "instance-id", "", "instance id, or * for all instances")
	return bind(root, cmd, o)
}

func (o *vmssInstanceViewOptions) Complete(context.Context, []string) error { return nil }

func (o *vmssInstanceViewOptions) Validate() error {
	if o.instanceID != "" && o.instanceID != "*" && !isInstanceID(o.instanceID) {
		return usageErrorf("--instance-id %q: an instance id (a decimal number) or * is required", o.instanceID)
	}
	return o.ref.validate()
}

func (o *vmssInstanceViewOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	switch o.instanceID {
	case "":
		client, err := c.scaleSets()
		if err != nil {
			return err
		}
		res, err := client.GetInstanceView(ctx, o.ref.rg, o.ref.name, nil)
		if err != nil {
			return err
		}
		iv := res.VirtualMachineScaleSetInstanceView
		return o.root.print(iv, func() table {
			t := table{header: []string{"Code", "Count"}}
			for _, s := range iv.Statuses {
				t.rows = append(t.rows, []string{str(s.Code), ""})
			}
			if iv.VirtualMachine != nil {
				for _, s := range iv.VirtualMachine.StatusesSummary {
					t.rows = append(t.rows, []string{str(s.Code), num(s.Count)})
				}
			}
			return t
		})
	case "*":
		vms, err := c.listInstances(ctx, o.ref)
		if err != nil {
			return err
		}
		views := make([]*armcompute.VirtualMachineScaleSetVMInstanceView, 0, len(vms))
		for _, vm := range vms {
			if vm.Properties != nil {
				views = append(views, vm.Properties.InstanceView)
			}
		}
		return o.root.print(views, func() table { return instanceTable(vms) })
	default:
		client, err := c.scaleSetVMs()
		if err != nil {
			return err
		}
		res, err := client.GetInstanceView(ctx, o.ref.rg, o.ref.name, o.instanceID, nil)
		if err != nil {
			return err
		}
		iv := res.VirtualMachineScaleSetVMInstanceView
		return o.root.print(iv, func() table {
			t := table{header: []string{"Code", "Level", "DisplayStatus", "Message"}}
			statuses := iv.Statuses
			if iv.VMHealth != nil && iv.VMHealth.Status != nil {
				statuses = append(statuses[:len(statuses):len(statuses)], iv.VMHealth.Status)
			}
			for _, s := range statuses {
				t.rows = append(t.rows, []string{str(s.Code), str(s.Level), str(s.DisplayStatus), str(s.Message)})
			}
			return t
		})
	}
}

// ---- instance actions ----

// instanceIDs is the --instance-ids flag. Like az, it takes several values:
// comma separated, repeated, or as further positional arguments.
type instanceIDs struct {
	ids      []string
	required bool
}

func (i *instanceIDs) addFlag(cmd *cobra.Command, required bool) {
	i.required = required
	help := "instance ids (comma separated or space separated), or * for all"
	if !required {
		help += " (default: all)"
	}
	cmd.Flags().StringSliceVar(&i.ids, "instance-ids", nil, help)
	if required {
		_ = cmd.MarkFlagRequired("instance-ids")
	}
	cmd.Args = cobra.ArbitraryArgs
}

// complete appends positional arguments to the ids.
func (i *instanceIDs) complete(args []string) error {
	if len(args) > 0 && len(i.ids) == 0 {
		return usageErrorf("unrecognized arguments: %s", strings.Join(args, " "))
	}
	i.ids = append(i.ids, args...)
	var out []string
	for _, id := range i.ids {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	i.ids = out
	return nil
}

func (i *instanceIDs) validate() error {
	if i.required && len(i.ids) == 0 {
		return usageErrorf("--instance-ids is required")
	}
	for _, id := range i.ids {
		if id == "*" {
			if len(i.ids) > 1 {
				return usageErrorf("--instance-ids: * cannot be combined with other ids")
			}
			continue
		}
		if !isInstanceID(id) {
			return usageErrorf("--instance-ids: %q is not an instance id", id)
		}
	}
	return nil
}

// all reports whether the ids mean every instance.
func (i *instanceIDs) all() bool {
	return len(i.ids) == 0 || len(i.ids) == 1 && i.ids[0] == "*"
}

// optional returns the SDK's optional id list (nil: all instances).
func (i *instanceIDs) optional() *armcompute.VirtualMachineScaleSetVMInstanceIDs {
	if i.all() {
		return nil
	}
	return &armcompute.VirtualMachineScaleSetVMInstanceIDs{InstanceIDs: strPtrs(i.ids)}
}

// isInstanceID reports whether s is a decimal instance id.
func isInstanceID(s string) bool {
	if s == "" || len(s) > 18 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// vmssAction is a scale set action on (some of) its instances.
type vmssAction struct {
	use, short string
	// begin starts the operation; it returns a function that waits for it.
	begin func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, o *vmssActionOptions) (func() error, error)
}

// vmssActions are the optional-ids actions.
func vmssActions() []vmssAction {
	return []vmssAction{
		{use: "start", short: "Start instances", begin: func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, o *vmssActionOptions) (func() error, error) {
			p, err := c.BeginStart(ctx, o.ref.rg, o.ref.name, &armcompute.VirtualMachineScaleSetsClientBeginStartOptions{VMInstanceIDs: o.ids.optional()})
			return waitFn(ctx, o.root, p, err)
		}},
		{use: "stop", short: "Power off instances (they keep their resources)", begin: func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, o *vmssActionOptions) (func() error, error) {
			opts := &armcompute.VirtualMachineScaleSetsClientBeginPowerOffOptions{VMInstanceIDs: o.ids.optional()}
			if o.skipShutdown {
				opts.SkipShutdown = ptr(true)
			}
			p, err := c.BeginPowerOff(ctx, o.ref.rg, o.ref.name, opts)
			return waitFn(ctx, o.root, p, err)
		}},
		{use: "restart", short: "Restart instances", begin: func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, o *vmssActionOptions) (func() error, error) {
			p, err := c.BeginRestart(ctx, o.ref.rg, o.ref.name, &armcompute.VirtualMachineScaleSetsClientBeginRestartOptions{VMInstanceIDs: o.ids.optional()})
			return waitFn(ctx, o.root, p, err)
		}},
		{use: "deallocate", short: "Deallocate instances", begin: func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, o *vmssActionOptions) (func() error, error) {
			p, err := c.BeginDeallocate(ctx, o.ref.rg, o.ref.name, &armcompute.VirtualMachineScaleSetsClientBeginDeallocateOptions{VMInstanceIDs: o.ids.optional()})
			return waitFn(ctx, o.root, p, err)
		}},
		{use: "reimage", short: "Reimage instances from their image", begin: func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, o *vmssActionOptions) (func() error, error) {
			opts := &armcompute.VirtualMachineScaleSetsClientBeginReimageOptions{}
			if !o.ids.all() {
				opts.VMScaleSetReimageInput = &armcompute.VirtualMachineScaleSetReimageParameters{InstanceIDs: strPtrs(o.ids.ids)}
			}
			p, err := c.BeginReimage(ctx, o.ref.rg, o.ref.name, opts)
			return waitFn(ctx, o.root, p, err)
		}},
	}
}

type vmssActionOptions struct {
	root         *rootOptions
	action       vmssAction
	ref          setRef
	ids          instanceIDs
	skipShutdown bool
}

func newVMSSActionCommand(root *rootOptions, a vmssAction) *cobra.Command {
	o := &vmssActionOptions{root: root, action: a}
	cmd := &cobra.Command{Use: a.use + " -g RG -n NAME [--instance-ids ID ...]", Short: a.short}
	o.ref.addFlags(cmd)
	o.ids.addFlag(cmd, false)
	if a.use == "stop" {
		cmd.Flags().BoolVar(&o.skipShutdown, "skip-shutdown", false, "power off without a graceful shutdown")
	}
	return bind(root, cmd, o)
}

func (o *vmssActionOptions) Complete(_ context.Context, args []string) error {
	return o.ids.complete(args)
}

func (o *vmssActionOptions) Validate() error {
	if err := o.ids.validate(); err != nil {
		return err
	}
	return o.ref.validate()
}

func (o *vmssActionOptions) Run(ctx context.Context) error {
	client, err := o.root.scaleSetsClient()
	if err != nil {
		return err
	}
	wait, err := o.action.begin(ctx, client, o)
	if err != nil {
		return err
	}
	return wait()
}

// waitFn turns a started operation into a function waiting for it.
func waitFn[T any](ctx context.Context, r *rootOptions, p *runtime.Poller[T], err error) (func() error, error) {
	if err != nil {
		return nil, err
	}
	return func() error {
		_, _, err := await(ctx, r, p)
		return err
	}, nil
}

// vmssRequiredIDsOptions are update-instances and delete-instances.
type vmssRequiredIDsOptions struct {
	root  *rootOptions
	ref   setRef
	ids   instanceIDs
	begin func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, ids armcompute.VirtualMachineScaleSetVMInstanceRequiredIDs) (func() error, error)
}

func newVMSSUpdateInstancesCommand(root *rootOptions) *cobra.Command {
	o := &vmssRequiredIDsOptions{root: root}
	o.begin = func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, ids armcompute.VirtualMachineScaleSetVMInstanceRequiredIDs) (func() error, error) {
		p, err := c.BeginUpdateInstances(ctx, o.ref.rg, o.ref.name, ids, nil)
		return waitFn(ctx, root, p, err)
	}
	cmd := &cobra.Command{
		Use:   "update-instances -g RG -n NAME --instance-ids ID ...|*",
		Short: "Upgrade instances to the scale set's latest model (manual upgrade)",
	}
	o.ref.addFlags(cmd)
	o.ids.addFlag(cmd, true)
	return bind(root, cmd, o)
}

func newVMSSDeleteInstancesCommand(root *rootOptions) *cobra.Command {
	o := &vmssRequiredIDsOptions{root: root}
	o.begin = func(ctx context.Context, c *armcompute.VirtualMachineScaleSetsClient, ids armcompute.VirtualMachineScaleSetVMInstanceRequiredIDs) (func() error, error) {
		p, err := c.BeginDeleteInstances(ctx, o.ref.rg, o.ref.name, ids, nil)
		return waitFn(ctx, root, p, err)
	}
	cmd := &cobra.Command{
		Use:   "delete-instances -g RG -n NAME --instance-ids ID ...|*",
		Short: "Delete instances (the capacity shrinks accordingly)",
	}
	o.ref.addFlags(cmd)
	o.ids.addFlag(cmd, true)
	return bind(root, cmd, o)
}

func (o *vmssRequiredIDsOptions) Complete(_ context.Context, args []string) error {
	return o.ids.complete(args)
}

func (o *vmssRequiredIDsOptions) Validate() error {
	if err := o.ids.validate(); err != nil {
		return err
	}
	return o.ref.validate()
}

func (o *vmssRequiredIDsOptions) Run(ctx context.Context) error {
	client, err := o.root.scaleSetsClient()
	if err != nil {
		return err
	}
	wait, err := o.begin(ctx, client, armcompute.VirtualMachineScaleSetVMInstanceRequiredIDs{InstanceIDs: strPtrs(o.ids.ids)})
	if err != nil {
		return err
	}
	return wait()
}
