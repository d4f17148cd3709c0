package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Rolling upgrades driven by the server: az vmss rolling-upgrade
// start|cancel|get-latest, vmssd's approve, az vmss get-os-upgrade-history,
// and the upgrade policy flags of `vmss update` as az names them.

// apiRollingApprove is the api-version sent with vmssd's approve extension.
const apiRollingApprove = "2024-11-01"

// vmssd's rolling policy tags (the server's vmssd extensions of the policy).
const (
	tagDomainAware = "vmssd.rolling.domainAware"
	tagApproval    = "vmssd.rolling.approval"
)

func (c *connection) rollingUpgrades() (*armcompute.VirtualMachineScaleSetRollingUpgradesClient, error) {
	sub, err := c.sub()
	if err != nil {
		return nil, err
	}
	return armcompute.NewVirtualMachineScaleSetRollingUpgradesClient(sub, c.cred, c.opts)
}

func (r *rootOptions) rollingUpgradesClient() (*armcompute.VirtualMachineScaleSetRollingUpgradesClient, error) {
	c, err := r.connect()
	if err != nil {
		return nil, err
	}
	return c.rollingUpgrades()
}

// newSetRefCommand makes cmd a command on one scale set (-g RG -n NAME)
// that run does.
func newSetRefCommand(root *rootOptions, cmd *cobra.Command, run func(ctx context.Context, ref setRef) error) *cobra.Command {
	ref := &setRef{}
	ref.addFlags(cmd)
	return bind(root, cmd, &funcRunner{validate: ref.validate, run: func(ctx context.Context) error { return run(ctx, *ref) }})
}

func newVMSSRollingUpgradeCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("rolling-upgrade", "Start, cancel, approve and show rolling upgrades (az vmss rolling-upgrade)")
	cmd.Long = `Rolling upgrades run on the server, batch by batch with health gates, as
the scale set's rollingUpgradePolicy says (see 'vmssctl vmss update
--max-batch-instance-percent ...'). A model change on a Rolling scale set
starts one by itself; 'start' moves every instance of a scale set whose
image version is 'latest' to the newest image version.`
	cmd.AddCommand(
		newRollingActionCommand(root, "start", "Start an OS rolling upgrade: move instances to the newest image version (POST osRollingUpgrade)",
			func(ctx context.Context, c *armcompute.VirtualMachineScaleSetRollingUpgradesClient, ref setRef) (func() error, error) {
				p, err := c.BeginStartOSUpgrade(ctx, ref.rg, ref.name, nil)
				return waitFn(ctx, root, p, err)
			}),
		newRollingActionCommand(root, "cancel", "Cancel the running rolling upgrade (POST rollingUpgrades/cancel)",
			func(ctx context.Context, c *armcompute.VirtualMachineScaleSetRollingUpgradesClient, ref setRef) (func() error, error) {
				p, err := c.BeginCancel(ctx, ref.rg, ref.name, nil)
				return waitFn(ctx, root, p, err)
			}),
		newRollingApproveCommand(root),
		newRollingGetLatestCommand(root),
	)
	return cmd
}

func newRollingActionCommand(root *rootOptions, use, short string,
	begin func(ctx context.Context, c *armcompute.VirtualMachineScaleSetRollingUpgradesClient, ref setRef) (func() error, error)) *cobra.Command {
	cmd := &cobra.Command{Use: use + " -g RG -n NAME", Short: short, Args: noArgs}
	return newSetRefCommand(root, cmd, func(ctx context.Context, ref setRef) error {
		client, err := root.rollingUpgradesClient()
		if err != nil {
			return err
		}
		wait, err := begin(ctx, client, ref)
		if err != nil {
			return err
		}
		return wait()
	})
}

// ---- approve (vmssd extension) ----

func newRollingApproveCommand(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "approve -g RG -n NAME",
		Short: "Let a rolling upgrade waiting at an approval gate go on (vmssd: POST rollingUpgrades/approve)",
		Long: `A scale set whose tag vmssd.rolling.approval is eachBatch (or firstBatch,
a canary) stops its rolling upgrades after each batch (or the first) until
approved; 'get-latest' shows the wait. Set the gate with
'vmssctl vmss update --approval eachBatch|firstBatch|none'.`,
		Args: noArgs,
	}
	return newSetRefCommand(root, cmd, func(ctx context.Context, ref setRef) error {
		c, sub, err := root.connectSub()
		if err != nil {
			return err
		}
		path := "/subscriptions/" + sub + "/resourceGroups/" + ref.rg +
			"/providers/Microsoft.Compute/virtualMachineScaleSets/" + ref.name + "/rollingUpgrades/approve"
		resp, err := c.do(ctx, adminCall{method: http.MethodPost, path: path, apiVersion: apiRollingApprove,
			ok: []int{http.StatusOK, http.StatusAccepted, http.StatusNoContent}})
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusOK {
			// The answer is the rolling upgrade's status, as get-latest shows it.
			b, err := runtime.Payload(resp)
			if err != nil || len(b) == 0 {
				return err
			}
			var info armcompute.RollingUpgradeStatusInfo
			var doc map[string]any
			if err := json.Unmarshal(b, &info); err != nil {
				return fmt.Errorf("approve: decode the answer: %w", err)
			}
			_ = json.Unmarshal(b, &doc)
			return root.print(doc, func() table { return rollingStatusTable(&info, doc) })
		}
		if resp.StatusCode != http.StatusAccepted || (resp.Header.Get("Azure-AsyncOperation") == "" && resp.Header.Get("Location") == "") {
			return nil
		}
		p, err := runtime.NewPoller[struct{}](resp, c.admin.Pipeline(), nil)
		if err != nil {
			return err
		}
		_, _, err = await(ctx, root, p)
		return err
	})
}

// ---- get-latest ----

func newRollingGetLatestCommand(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get-latest -g RG -n NAME",
		Short: "Show the latest rolling upgrade: status, progress, error (GET rollingUpgrades/latest)",
		Args:  noArgs,
	}
	// It reads the status with the SDK's client and prints the body as the
	// server sent it, so vmssd's own fields (properties.vmssd: phase, batch,
	// approval wait) are shown too.
	return newSetRefCommand(root, cmd, func(ctx context.Context, ref setRef) error {
		client, err := root.rollingUpgradesClient()
		if err != nil {
			return err
		}
		var raw *http.Response
		res, err := client.GetLatest(runtime.WithCaptureResponse(ctx, &raw), ref.rg, ref.name, nil)
		if err != nil {
			return err
		}
		var v any = res.RollingUpgradeStatusInfo
		var doc map[string]any
		if raw != nil {
			if b, err := runtime.Payload(raw); err == nil && json.Unmarshal(b, &doc) == nil {
				v = doc
			}
		}
		return root.print(v, func() table { return rollingStatusTable(&res.RollingUpgradeStatusInfo, doc) })
	})
}

// rollingStatusTable is get-latest's table.
func rollingStatusTable(info *armcompute.RollingUpgradeStatusInfo, doc map[string]any) table {
	t := table{header: []string{"Status", "Phase", "StartTime", "LastAction", "Successful", "Failed", "InProgress", "Pending", "Error"}}
	row := make([]string, len(t.header))
	if p := info.Properties; p != nil {
		if rs := p.RunningStatus; rs != nil {
			row[0] = str(rs.Code)
			if rs.StartTime != nil {
				row[2] = rs.StartTime.UTC().Format(time.RFC3339)
			}
			row[3] = str(rs.LastAction)
		}
		if pr := p.Progress; pr != nil {
			row[4], row[5], row[6], row[7] = num(pr.SuccessfulInstanceCount), num(pr.FailedInstanceCount), num(pr.InProgressInstanceCount), num(pr.PendingInstanceCount)
		}
		if e := p.Error; e != nil {
			row[8] = str(e.Code)
			if m := str(e.Message); m != "" {
				row[8] += ": " + m
			}
		}
	}
	if props, ok := doc["properties"].(map[string]any); ok {
		if ext, ok := props["vmssd"].(map[string]any); ok {
			if ph, ok := ext["phase"].(string); ok {
				row[1] = ph
			}
		}
	}
	t.rows = append(t.rows, row)
	return t
}

// ---- get-os-upgrade-history ----

func newVMSSOSUpgradeHistoryCommand(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get-os-upgrade-history -g RG -n NAME",
		Short: "List the scale set's OS upgrades, newest first (GET osUpgradeHistory)",
		Args:  noArgs,
	}
	return newSetRefCommand(root, cmd, func(ctx context.Context, ref setRef) error {
		client, err := root.scaleSetsClient()
		if err != nil {
			return err
		}
		items, err := pages(ctx, client.NewGetOSUpgradeHistoryPager(ref.rg, ref.name, nil),
			func(p armcompute.VirtualMachineScaleSetsClientGetOSUpgradeHistoryResponse) []*armcompute.UpgradeOperationHistoricalStatusInfo {
				return p.Value
			})
		if err != nil {
			return err
		}
		return root.print(items, func() table {
			t := table{header: []string{"Status", "StartedBy", "StartTime", "EndTime", "TargetImage", "Successful", "Failed", "Error"}}
			for _, it := range items {
				row := make([]string, len(t.header))
				if p := it.Properties; p != nil {
					if rs := p.RunningStatus; rs != nil {
						row[0] = str(rs.Code)
						if rs.StartTime != nil {
							row[2] = rs.StartTime.UTC().Format(time.RFC3339)
						}
						if rs.EndTime != nil {
							row[3] = rs.EndTime.UTC().Format(time.RFC3339)
						}
					}
					row[1] = str(p.StartedBy)
					if ir := p.TargetImageReference; ir != nil {
						row[4] = strings.Join([]string{str(ir.Publisher), str(ir.Offer), str(ir.SKU), str(ir.Version)}, ":")
					}
					if pr := p.Progress; pr != nil {
						row[5], row[6] = num(pr.SuccessfulInstanceCount), num(pr.FailedInstanceCount)
					}
					if p.Error != nil {
						row[7] = str(p.Error.Code)
					}
				}
				t.rows = append(t.rows, row)
			}
			return t
		})
	})
}

// ---- upgrade policy flags (vmss update) ----

// upgradePolicyFlags are az's upgrade policy arguments of `vmss create|update`,
// plus the rollback and automatic OS upgrade fields az lacks and vmssd's
// own extensions (domain-aware batches, approval gates).
type upgradePolicyFlags struct {
	flags *pflag.FlagSet
	// noMode: the command has its own --upgrade-policy-mode (vmss create).
	noMode bool

	mode                 string
	maxBatch             int32
	maxUnhealthy         int32
	maxUnhealthyUpgraded int32
	pause                string
	prioritize           string
	maxSurge             string
	crossZone            string
	rollback             string
	autoOS               string
	disableAutoRollback  string
	useRollingPolicy     string
	domainAware          string
	approval             string

	// parsed
	pauseISO string
	bools    map[string]*bool
}

// policyBoolFlags are the true/false flags: flag name and help.
var policyBoolFlags = []struct{ name, help string }{
	{"prioritize-unhealthy-instances", "upgrade unhealthy instances before healthy ones (true/false)"},
	{"max-surge", "create new instances on the new model first, delete the old ones once the new are healthy (true/false)"},
	{"enable-cross-zone-upgrade", "ignore zone boundaries when forming batches (true/false)"},
	{"rollback-failed-instances-on-policy-breach", "roll failed instances back to the previous model when the policy is breached (true/false)"},
	{"enable-auto-os-upgrade", "upgrade automatically when a newer image version is published; needs version latest (true/false)"},
	{"disable-auto-rollback", "do not roll back a failed automatic OS upgrade (true/false)"},
	{"use-rolling-upgrade-policy", "automatic OS upgrades follow the rolling upgrade policy (true/false)"},
	{"domain-aware", "vmssd: batches stay in one update domain and a domain starts only when the previous ones are healthy (true/false)"},
}

func (p *upgradePolicyFlags) addFlags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&p.mode, "upgrade-policy-mode", "", "upgrade policy: Manual, Automatic or Rolling")
	p.addRollingFlags(cmd)
	p.noMode = false
}

// addRollingFlags adds every policy flag but --upgrade-policy-mode.
func (p *upgradePolicyFlags) addRollingFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	p.flags, p.noMode = f, true
	f.Int32Var(&p.maxBatch, "max-batch-instance-percent", 0, "rolling: the largest share of instances upgraded in one batch (5-100; default 20)")
	f.Int32Var(&p.maxUnhealthy, "max-unhealthy-instance-percent", 0, "rolling: the largest share of unhealthy instances, checked before each batch (5-100; default 20)")
	f.Int32Var(&p.maxUnhealthyUpgraded, "max-unhealthy-upgraded-instance-percent", 0, "rolling: the largest share of upgraded instances found unhealthy, checked after each batch (0-100; default 20)")
	f.StringVar(&p.pause, "pause-time-between-batches", "", "rolling: wait between batches, ISO 8601 (PT30S) or a duration (30s)")
	targets := map[string]*string{
		"prioritize-unhealthy-instances": &p.prioritize, "max-surge": &p.maxSurge, "enable-cross-zone-upgrade": &p.crossZone,
		"rollback-failed-instances-on-policy-breach": &p.rollback, "enable-auto-os-upgrade": &p.autoOS,
		"disable-auto-rollback": &p.disableAutoRollback, "use-rolling-upgrade-policy": &p.useRollingPolicy, "domain-aware": &p.domainAware,
	}
	for _, b := range policyBoolFlags {
		f.StringVar(targets[b.name], b.name, "", b.help)
	}
	f.StringVar(&p.approval, "approval", "", "vmssd: stop rolling upgrades for approval after eachBatch, after the firstBatch (a canary), or none")
}

func (p *upgradePolicyFlags) changed(name string) bool {
	if p.noMode && name == "upgrade-policy-mode" {
		return false
	}
	return p.flags != nil && p.flags.Changed(name)
}

// any reports whether a policy flag was given.
func (p *upgradePolicyFlags) any() bool {
	if p.flags == nil {
		return false
	}
	for _, n := range []string{"upgrade-policy-mode", "max-batch-instance-percent", "max-unhealthy-instance-percent",
		"max-unhealthy-upgraded-instance-percent", "pause-time-between-batches", "approval"} {
		if p.changed(n) {
			return true
		}
	}
	for _, b := range policyBoolFlags {
		if p.changed(b.name) {
			return true
		}
	}
	return false
}

// complete parses and checks the flags (the server checks Azure's exact
// ranges and combinations).
func (p *upgradePolicyFlags) complete() error {
	var err error
	if p.changed("upgrade-policy-mode") {
		if p.mode, err = canonical("--upgrade-policy-mode", p.mode, "Manual", "Automatic", "Rolling"); err != nil {
			return err
		}
	}
	for _, pc := range []struct {
		name string
		v    int32
	}{{"max-batch-instance-percent", p.maxBatch}, {"max-unhealthy-instance-percent", p.maxUnhealthy}, {"max-unhealthy-upgraded-instance-percent", p.maxUnhealthyUpgraded}} {
		if p.changed(pc.name) && (pc.v < 0 || pc.v > 100) {
			return usageErrorf("--%s %d: a percentage (0-100) is required", pc.name, pc.v)
		}
	}
	if p.changed("pause-time-between-batches") {
		d, err := parsePause(p.pause)
		if err != nil {
			return usageErrorf("--pause-time-between-batches %q: %v", p.pause, err)
		}
		p.pauseISO = formatISODuration(d)
	}
	p.bools = map[string]*bool{}
	vals := map[string]string{
		"prioritize-unhealthy-instances": p.prioritize, "max-surge": p.maxSurge, "enable-cross-zone-upgrade": p.crossZone,
		"rollback-failed-instances-on-policy-breach": p.rollback, "enable-auto-os-upgrade": p.autoOS,
		"disable-auto-rollback": p.disableAutoRollback, "use-rolling-upgrade-policy": p.useRollingPolicy, "domain-aware": p.domainAware,
	}
	for _, b := range policyBoolFlags {
		if !p.changed(b.name) {
			continue
		}
		v, err := parseBoolArg(vals[b.name])
		if err != nil {
			return usageErrorf("--%s: %v", b.name, err)
		}
		p.bools[b.name] = &v
	}
	if p.changed("approval") {
		if p.approval, err = canonical("--approval", p.approval, "eachBatch", "firstBatch", "none"); err != nil {
			return err
		}
	}
	return nil
}

// parseBoolArg reads az's three-state flag values.
func parseBoolArg(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "1", "y":
		return true, nil
	case "false", "no", "0", "n":
		return false, nil
	}
	return false, fmt.Errorf("invalid value %q (choose from true, false)", s)
}

// apply writes the flags into the scale set to PUT.
func (p *upgradePolicyFlags) apply(set *armcompute.VirtualMachineScaleSet) {
	if !p.any() {
		return
	}
	if set.Properties == nil {
		set.Properties = &armcompute.VirtualMachineScaleSetProperties{}
	}
	up := set.Properties.UpgradePolicy
	if up == nil {
		up = &armcompute.UpgradePolicy{}
		set.Properties.UpgradePolicy = up
	}
	if p.changed("upgrade-policy-mode") {
		up.Mode = ptr(armcompute.UpgradeMode(p.mode))
	}
	rp := func() *armcompute.RollingUpgradePolicy {
		if up.RollingUpgradePolicy == nil {
			up.RollingUpgradePolicy = &armcompute.RollingUpgradePolicy{}
		}
		return up.RollingUpgradePolicy
	}
	ap := func() *armcompute.AutomaticOSUpgradePolicy {
		if up.AutomaticOSUpgradePolicy == nil {
			up.AutomaticOSUpgradePolicy = &armcompute.AutomaticOSUpgradePolicy{}
		}
		return up.AutomaticOSUpgradePolicy
	}
	if p.changed("max-batch-instance-percent") {
		rp().MaxBatchInstancePercent = ptr(p.maxBatch)
	}
	if p.changed("max-unhealthy-instance-percent") {
		rp().MaxUnhealthyInstancePercent = ptr(p.maxUnhealthy)
	}
	if p.changed("max-unhealthy-upgraded-instance-percent") {
		rp().MaxUnhealthyUpgradedInstancePercent = ptr(p.maxUnhealthyUpgraded)
	}
	if p.changed("pause-time-between-batches") {
		rp().PauseTimeBetweenBatches = ptr(p.pauseISO)
	}
	for name, v := range p.bools {
		switch name {
		case "prioritize-unhealthy-instances":
			rp().PrioritizeUnhealthyInstances = v
		case "max-surge":
			rp().MaxSurge = v
		case "enable-cross-zone-upgrade":
			rp().EnableCrossZoneUpgrade = v
		case "rollback-failed-instances-on-policy-breach":
			rp().RollbackFailedInstancesOnPolicyBreach = v
		case "enable-auto-os-upgrade":
			ap().EnableAutomaticOSUpgrade = v
		case "disable-auto-rollback":
			ap().DisableAutomaticRollback = v
		case "use-rolling-upgrade-policy":
			ap().UseRollingUpgradePolicy = v
		case "domain-aware":
			setTag(set, tagDomainAware, strconv.FormatBool(*v))
		}
	}
	if p.changed("approval") {
		if p.approval == "none" {
			setTag(set, tagApproval, "")
		} else {
			setTag(set, tagApproval, p.approval)
		}
	}
}

// setTag sets a tag; "" removes it: a null tag, since the server merges a
// PUT onto the stored scale set (JSON merge patch) and keeps absent tags.
func setTag(set *armcompute.VirtualMachineScaleSet, k, v string) {
	if v == "" {
		if _, ok := set.Tags[k]; ok {
			set.Tags[k] = nil
		}
		return
	}
	if set.Tags == nil {
		set.Tags = map[string]*string{}
	}
	set.Tags[k] = ptr(v)
}

// isoDuration is an ISO 8601 duration of days, hours, minutes and seconds
// (what pauseTimeBetweenBatches takes).
var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// parsePause reads ISO 8601 (PT1M30S) or a Go duration (90s).
func parsePause(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	up := strings.ToUpper(s)
	if strings.HasPrefix(up, "P") {
		m := isoDuration.FindStringSubmatch(up)
		if m == nil || up == "P" || up == "PT" {
			return 0, fmt.Errorf("not an ISO 8601 duration (e.g. PT30S, PT1M30S)")
		}
		var d time.Duration
		for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute} {
			if m[i+1] != "" {
				n, err := strconv.ParseInt(m[i+1], 10, 64)
				if err != nil || n > 1e6 {
					return 0, fmt.Errorf("out of range")
				}
				d += time.Duration(n) * unit
			}
		}
		if m[4] != "" {
			f, err := strconv.ParseFloat(m[4], 64)
			if err != nil || f > 1e9 {
				return 0, fmt.Errorf("out of range")
			}
			d += time.Duration(f * float64(time.Second))
		}
		return d, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("an ISO 8601 duration (PT30S) or a duration (30s) is required")
	}
	if d < 0 {
		return 0, fmt.Errorf("must not be negative")
	}
	return d, nil
}

// formatISODuration writes d as ISO 8601 (PT#H#M#S; whole seconds unless
// d has a fraction).
func formatISODuration(d time.Duration) string {
	if d <= 0 {
		return "PT0S"
	}
	var sb strings.Builder
	sb.WriteString("PT")
	h := d / time.Hour
	d -= h * time.Hour
	m := d / time.Minute
	d -= m * time.Minute
	if h > 0 {
		fmt.Fprintf(&sb, "%dH", h)
	}
	if m > 0 {
		fmt.Fprintf(&sb, "%dM", m)
	}
	if d > 0 {
		sec := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
		fmt.Fprintf(&sb, "%sS", sec)
	}
	return sb.String()
}
