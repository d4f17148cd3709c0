package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/spf13/cobra"
)

// vmssctl deployment group ...: template deployments at resource group
// scope (az deployment group).

func newDeploymentCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("deployment", "Manage template deployments (az deployment)")
	grp := groupCommand("group", "Template deployments at resource group scope (az deployment group)")
	grp.AddCommand(
		newDeploymentCreateCommand(root, "create", "Deploy a template to a resource group, showing each resource's operation as it progresses"),
		newDeploymentCreateCommand(root, "validate", "Validate a template and its parameters without deploying"),
		newDeploymentCreateCommand(root, "what-if", "Show what deploying a template would change"),
		newDeploymentNamedCommand(root, "show", "Show a deployment"),
		newDeploymentNamedCommand(root, "delete", "Delete a deployment record (what it deployed stays)"),
		newDeploymentNamedCommand(root, "cancel", "Cancel a running deployment"),
		newDeploymentListCommand(root),
	)
	cmd.AddCommand(grp)
	return cmd
}

func (c *connection) deployments() (*armresources.DeploymentsClient, *armresources.DeploymentOperationsClient, error) {
	sub, err := c.sub()
	if err != nil {
		return nil, nil, err
	}
	d, err := armresources.NewDeploymentsClient(sub, c.cred, c.opts)
	if err != nil {
		return nil, nil, err
	}
	o, err := armresources.NewDeploymentOperationsClient(sub, c.cred, c.opts)
	return d, o, err
}

func (r *rootOptions) deploymentClients() (*armresources.DeploymentsClient, *armresources.DeploymentOperationsClient, error) {
	c, err := r.connect()
	if err != nil {
		return nil, nil, err
	}
	return c.deployments()
}

func (r *rootOptions) printDeployments(list bool, ds ...*armresources.DeploymentExtended) error {
	var v any = ds
	if !list && len(ds) == 1 {
		v = ds[0]
	}
	return r.print(v, func() table {
		t := table{header: []string{"Name", "State", "Timestamp", "Mode"}}
		for _, d := range ds {
			var state, ts, mode string
			if p := d.Properties; p != nil {
				if p.ProvisioningState != nil {
					state = string(*p.ProvisioningState)
				}
				if p.Timestamp != nil {
					ts = p.Timestamp.UTC().Format(time.RFC3339)
				}
				if p.Mode != nil {
					mode = string(*p.Mode)
				}
			}
			t.rows = append(t.rows, []string{str(d.Name), state, ts, mode})
		}
		return t
	})
}

// deploymentCreateOptions serve create, validate and what-if.
type deploymentCreateOptions struct {
	root         *rootOptions
	verb         string
	group        string
	name         string
	templateFile string
	parameters   []string
	mode         string

	template map[string]any
	params   map[string]any
}

func newDeploymentCreateCommand(root *rootOptions, verb, short string) *cobra.Command {
	o := &deploymentCreateOptions{root: root, verb: verb}
	cmd := &cobra.Command{Use: verb + " -g GROUP -f TEMPLATE [-n NAME] [-p @params.json] [-p key=value]", Short: short, Args: noArgs}
	f := cmd.Flags()
	f.StringVarP(&o.group, "resource-group", "g", "", "resource group")
	f.StringVarP(&o.name, "name", "n", "", "deployment name (default: the template file's base name)")
	f.StringVarP(&o.templateFile, "template-file", "f", "", "template file (JSON)")
	f.StringArrayVarP(&o.parameters, "parameters", "p", nil, "parameters: @file.json (a parameters file), a JSON object, or key=value (repeatable)")
	f.StringVar(&o.mode, "mode", "Incremental", "deployment mode (Incremental; Complete is refused by vmssd)")
	_ = cmd.MarkFlagRequired("resource-group")
	_ = cmd.MarkFlagRequired("template-file")
	return bind(root, cmd, o)
}

func (o *deploymentCreateOptions) Complete(context.Context, []string) error {
	if o.templateFile == "" {
		return nil
	}
	b, err := os.ReadFile(o.templateFile)
	if err != nil {
		return fmt.Errorf("--template-file: %w", err)
	}
	if err := json.Unmarshal(b, &o.template); err != nil {
		return usageErrorf("--template-file %s: not a JSON object: %v", o.templateFile, err)
	}
	if o.name == "" {
		o.name = strings.TrimSuffix(filepath.Base(o.templateFile), filepath.Ext(o.templateFile))
	}
	o.params, err = parseDeploymentParameters(o.parameters, o.template, os.ReadFile)
	return err
}

func (o *deploymentCreateOptions) Validate() error {
	if strings.TrimSpace(o.group) == "" {
		return usageErrorf("--resource-group must not be empty")
	}
	if !strings.EqualFold(o.mode, "Incremental") && !strings.EqualFold(o.mode, "Complete") {
		return usageErrorf("--mode must be Incremental or Complete")
	}
	return nil
}

// parseDeploymentParameters merges --parameters values in order, as az
// does: @file (a parameters file, or a bare name->{value} object), a JSON
// object, or key=value. A key=value value is converted by the template's
// declared type of the parameter (int, bool, object, array), else kept as
// a string.
func parseDeploymentParameters(args []string, tmpl map[string]any, readFile func(string) ([]byte, error)) (map[string]any, error) {
	out := map[string]any{}
	declared := map[string]string{}
	if ps, ok := tmpl["parameters"].(map[string]any); ok {
		for k, v := range ps {
			if m, ok := v.(map[string]any); ok {
				t, _ := m["type"].(string)
				declared[strings.ToLower(k)] = strings.ToLower(t)
			}
		}
	}
	addObject := func(src string, b []byte) error {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return usageErrorf("--parameters %s: not a JSON object: %v", src, err)
		}
		if inner, ok := m["parameters"].(map[string]any); ok && (m["$schema"] != nil || m["contentVersion"] != nil) {
			m = inner
		}
		for k, v := range m {
			vm, ok := v.(map[string]any)
			if !ok || (vm["value"] == nil && vm["reference"] == nil && len(vm) > 0) {
				vm = map[string]any{"value": v}
			}
			out[k] = vm
		}
		return nil
	}
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "@"):
			b, err := readFile(a[1:])
			if err != nil {
				return nil, fmt.Errorf("--parameters %s: %w", a, err)
			}
			if err := addObject(a, b); err != nil {
				return nil, err
			}
		case strings.HasPrefix(strings.TrimSpace(a), "{"):
			if err := addObject("value", []byte(a)); err != nil {
				return nil, err
			}
		default:
			k, v, ok := strings.Cut(a, "=")
			if !ok || k == "" {
				return nil, usageErrorf("--parameters %q: want @file, a JSON object or key=value", a)
			}
			val, err := typedParameter(k, v, declared[strings.ToLower(k)])
			if err != nil {
				return nil, err
			}
			out[k] = map[string]any{"value": val}
		}
	}
	return out, nil
}

func typedParameter(k, v, typ string) (any, error) {
	switch typ {
	case "int":
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, usageErrorf("--parameters %s=%s: the template declares an int", k, v)
		}
		return n, nil
	case "bool":
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, usageErrorf("--parameters %s=%s: the template declares a bool", k, v)
		}
		return b, nil
	case "object", "secureobject", "array":
		var x any
		if err := json.Unmarshal([]byte(v), &x); err != nil {
			return nil, usageErrorf("--parameters %s: the template declares an %s: %v", k, typ, err)
		}
		return x, nil
	}
	return v, nil
}

func (o *deploymentCreateOptions) properties() *armresources.DeploymentProperties {
	return &armresources.DeploymentProperties{
		Mode: to.Ptr(armresources.DeploymentMode(o.mode)), Template: o.template, Parameters: o.params,
	}
}

func (o *deploymentCreateOptions) Run(ctx context.Context) error {
	dc, oc, err := o.root.deploymentClients()
	if err != nil {
		return err
	}
	switch o.verb {
	case "validate":
		p, err := dc.BeginValidate(ctx, o.group, o.name, armresources.Deployment{Properties: o.properties()}, nil)
		if err != nil {
			return err
		}
		res, _, err := await(ctx, o.root, p)
		if err != nil {
			return err
		}
		if res.Error != nil {
			b, _ := json.Marshal(res.Error)
			return fmt.Errorf("validation failed: %s", b)
		}
		return o.root.print(res, func() table {
			t := table{header: []string{"Name", "State"}}
			state := ""
			if res.Properties != nil && res.Properties.ProvisioningState != nil {
				state = string(*res.Properties.ProvisioningState)
			}
			t.rows = append(t.rows, []string{o.name, state})
			return t
		})
	case "what-if":
		props := o.properties()
		p, err := dc.BeginWhatIf(ctx, o.group, o.name, armresources.DeploymentWhatIf{Properties: &armresources.DeploymentWhatIfProperties{
			Mode: props.Mode, Template: props.Template, Parameters: props.Parameters}}, nil)
		if err != nil {
			return err
		}
		res, _, err := await(ctx, o.root, p)
		if err != nil {
			return err
		}
		return o.root.print(res, func() table { return whatIfTable(res.Properties) })
	}
	p, err := dc.BeginCreateOrUpdate(ctx, o.group, o.name, armresources.Deployment{Properties: o.properties()}, nil)
	if err != nil {
		return err
	}
	if o.root.noWait {
		return nil
	}
	w := &opWatcher{seen: map[string]string{}}
	delay := firstPollDelay
	for !p.Done() {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(delay+firstPollDelay, maxPollDelay)
		if _, err := p.Poll(ctx); err != nil {
			return err
		}
		w.show(ctx, o.root, oc, o.group, o.name)
	}
	w.show(ctx, o.root, oc, o.group, o.name)
	res, err := p.Result(ctx)
	if err != nil {
		return err
	}
	return o.root.printDeployments(false, &res.DeploymentExtended)
}

// opWatcher prints, on stderr, each resource operation whose state
// changed since the last look: the live view of a deployment.
type opWatcher struct{ seen map[string]string }

func (w *opWatcher) show(ctx context.Context, r *rootOptions, oc *armresources.DeploymentOperationsClient, group, name string) {
	pager := oc.NewListPager(group, name, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return
		}
		for _, op := range page.Value {
			p := op.Properties
			if p == nil || p.TargetResource == nil || p.ProvisioningState == nil {
				continue
			}
			id := str(p.TargetResource.ID)
			state := *p.ProvisioningState
			if w.seen[id] == state {
				continue
			}
			w.seen[id] = state
			line := fmt.Sprintf("%-10s %s %s", state, str(p.TargetResource.ResourceType), str(p.TargetResource.ResourceName))
			if p.StatusCode != nil && state != "Running" {
				line += " (" + *p.StatusCode + ")"
			}
			if sm := p.StatusMessage; sm != nil && sm.Error != nil {
				line += ": " + str(sm.Error.Code) + ": " + str(sm.Error.Message)
			}
			fmt.Fprintln(r.streams.ErrOut, line)
		}
	}
}

// whatIfTable lists the changes with their property-level deltas.
func whatIfTable(p *armresources.WhatIfOperationProperties) table {
	t := table{header: []string{"Change", "Resource", "Property", "Before", "After"}}
	if p == nil {
		return t
	}
	for _, c := range p.Changes {
		ct := ""
		if c.ChangeType != nil {
			ct = string(*c.ChangeType)
		}
		if len(c.Delta) == 0 {
			t.rows = append(t.rows, []string{ct, str(c.ResourceID), "", "", ""})
			continue
		}
		for _, d := range c.Delta {
			t.rows = append(t.rows, []string{ct, str(c.ResourceID), str(d.Path), jsonText(d.Before), jsonText(d.After)})
		}
	}
	return t
}

func jsonText(v any) string {
	if v == nil {
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// deploymentNamedOptions serve show, delete and cancel.
type deploymentNamedOptions struct {
	root  *rootOptions
	verb  string
	group string
	name  string
}

func newDeploymentNamedCommand(root *rootOptions, verb, short string) *cobra.Command {
	o := &deploymentNamedOptions{root: root, verb: verb}
	cmd := &cobra.Command{Use: verb + " -g GROUP -n NAME", Short: short, Args: noArgs}
	cmd.Flags().StringVarP(&o.group, "resource-group", "g", "", "resource group")
	cmd.Flags().StringVarP(&o.name, "name", "n", "", "deployment name")
	_ = cmd.MarkFlagRequired("resource-group")
	_ = cmd.MarkFlagRequired("name")
	return bind(root, cmd, o)
}

func (o *deploymentNamedOptions) Complete(context.Context, []string) error { return nil }

func (o *deploymentNamedOptions) Validate() error {
	if strings.TrimSpace(o.group) == "" || strings.TrimSpace(o.name) == "" {
		return usageErrorf("--resource-group and --name must not be empty")
	}
	return nil
}

func (o *deploymentNamedOptions) Run(ctx context.Context) error {
	dc, _, err := o.root.deploymentClients()
	if err != nil {
		return err
	}
	switch o.verb {
	case "delete":
		p, err := dc.BeginDelete(ctx, o.group, o.name, nil)
		if err != nil {
			return err
		}
		_, _, err = await(ctx, o.root, p)
		return err
	case "cancel":
		_, err := dc.Cancel(ctx, o.group, o.name, nil)
		return err
	}
	res, err := dc.Get(ctx, o.group, o.name, nil)
	if err != nil {
		return err
	}
	return o.root.printDeployments(false, &res.DeploymentExtended)
}

type deploymentListOptions struct {
	root  *rootOptions
	group string
}

func newDeploymentListCommand(root *rootOptions) *cobra.Command {
	o := &deploymentListOptions{root: root}
	cmd := &cobra.Command{Use: "list -g GROUP", Short: "List a resource group's deployments, newest first", Args: noArgs}
	cmd.Flags().StringVarP(&o.group, "resource-group", "g", "", "resource group")
	_ = cmd.MarkFlagRequired("resource-group")
	return bind(root, cmd, o)
}

func (o *deploymentListOptions) Complete(context.Context, []string) error { return nil }

func (o *deploymentListOptions) Validate() error {
	if strings.TrimSpace(o.group) == "" {
		return usageErrorf("--resource-group must not be empty")
	}
	return nil
}

func (o *deploymentListOptions) Run(ctx context.Context) error {
	dc, _, err := o.root.deploymentClients()
	if err != nil {
		return err
	}
	ds := []*armresources.DeploymentExtended{}
	pager := dc.NewListByResourceGroupPager(o.group, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return err
		}
		ds = append(ds, page.Value...)
	}
	sort.SliceStable(ds, func(i, j int) bool {
		ti, tj := ds[i].Properties, ds[j].Properties
		return ti != nil && tj != nil && ti.Timestamp != nil && tj.Timestamp != nil && ti.Timestamp.After(*tj.Timestamp)
	})
	return o.root.printDeployments(true, ds...)
}
