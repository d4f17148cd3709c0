package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

func newAdminCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("admin", "Operator commands: subscriptions, principals and VM sizes")
	sub := groupCommand("subscription", "Manage subscriptions (operator)")
	sub.AddCommand(newSubCreateCommand(root), newSubListCommand(root), newSubShowCommand(root), newSubDeleteCommand(root))
	pr := groupCommand("principal", "Manage service principals (operator)")
	pr.AddCommand(newPrincipalCreateCommand(root), newPrincipalListCommand(root), newPrincipalShowCommand(root), newPrincipalDeleteCommand(root))
	cmd.AddCommand(sub, pr, newAdminVMSizeCommand(root), newAdminQuotaCommand(root))
	return cmd
}

// ---- subscriptions ----

type adminSubscription struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
}

func subscriptionPath(id string) string {
	return "/providers/Microsoft.Subscriptions.Admin/subscriptions/" + url.PathEscape(id)
}

func (r *rootOptions) printSubscriptions(v any, subs []adminSubscription) error {
	return r.print(v, func() table {
		t := table{header: []string{"SubscriptionId", "DisplayName", "State"}}
		for _, s := range subs {
			t.rows = append(t.rows, []string{s.SubscriptionID, s.DisplayName, s.State})
		}
		return t
	})
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

type subCreateOptions struct {
	root        *rootOptions
	id          string
	displayName string
}

func newSubCreateCommand(root *rootOptions) *cobra.Command {
	o := &subCreateOptions{root: root}
	cmd := &cobra.Command{Use: "create [--id ID] [--display-name NAME]", Short: "Create a subscription", Args: noArgs}
	cmd.Flags().StringVar(&o.id, "id", "", "subscription id (default: a new UUID)")
	cmd.Flags().StringVar(&o.displayName, "display-name", "", "display name (default: the id)")
	return bind(root, cmd, o)
}

func (o *subCreateOptions) Complete(context.Context, []string) error {
	if o.id == "" {
		o.id = newUUID()
	}
	return nil
}

func (o *subCreateOptions) Validate() error { return nil }

func (o *subCreateOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	var out adminSubscription
	body := map[string]any{}
	if o.displayName != "" {
		body["displayName"] = o.displayName
	}
	if _, err := c.do(ctx, adminCall{
		method: http.MethodPut, path: subscriptionPath(o.id), apiVersion: apiSubscriptionsAdmin,
		body: body, ok: []int{http.StatusOK, http.StatusCreated}, out: &out,
	}); err != nil {
		return err
	}
	return o.root.printSubscriptions(out, []adminSubscription{out})
}

type subListOptions struct{ root *rootOptions }

func newSubListCommand(root *rootOptions) *cobra.Command {
	return bind(root, &cobra.Command{Use: "list", Short: "List subscriptions", Args: noArgs}, &subListOptions{root: root})
}

func (o *subListOptions) Complete(context.Context, []string) error { return nil }
func (o *subListOptions) Validate() error                          { return nil }

func (o *subListOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	var out struct {
		Value []adminSubscription `json:"value"`
	}
	if _, err := c.do(ctx, adminCall{
		method: http.MethodGet, path: "/providers/Microsoft.Subscriptions.Admin/subscriptions", apiVersion: apiSubscriptionsAdmin,
		ok: []int{http.StatusOK}, out: &out,
	}); err != nil {
		return err
	}
	if out.Value == nil {
		out.Value = []adminSubscription{}
	}
	return o.root.printSubscriptions(out.Value, out.Value)
}

// subIDOptions are show and delete.
type subIDOptions struct {
	root   *rootOptions
	id     string
	delete bool
}

func newSubShowCommand(root *rootOptions) *cobra.Command {
	return newSubIDCommand(root, &cobra.Command{Use: "show --id ID", Short: "Show a subscription", Args: noArgs}, false)
}

func newSubDeleteCommand(root *rootOptions) *cobra.Command {
	return newSubIDCommand(root, &cobra.Command{Use: "delete --id ID", Short: "Delete an empty subscription", Args: noArgs}, true)
}

func newSubIDCommand(root *rootOptions, cmd *cobra.Command, del bool) *cobra.Command {
	o := &subIDOptions{root: root, delete: del}
	cmd.Flags().StringVar(&o.id, "id", "", "subscription id")
	_ = cmd.MarkFlagRequired("id")
	return bind(root, cmd, o)
}

func (o *subIDOptions) Complete(context.Context, []string) error { return nil }

func (o *subIDOptions) Validate() error {
	if strings.TrimSpace(o.id) == "" {
		return usageErrorf("--id must not be empty")
	}
	return nil
}

func (o *subIDOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	if o.delete {
		_, err := c.do(ctx, adminCall{
			method: http.MethodDelete, path: subscriptionPath(o.id), apiVersion: apiSubscriptionsAdmin,
			ok: []int{http.StatusOK, http.StatusAccepted, http.StatusNoContent},
		})
		return err
	}
	var out adminSubscription
	if _, err := c.do(ctx, adminCall{
		method: http.MethodGet, path: subscriptionPath(o.id), apiVersion: apiSubscriptionsAdmin,
		ok: []int{http.StatusOK}, out: &out,
	}); err != nil {
		return err
	}
	return o.root.printSubscriptions(out, []adminSubscription{out})
}

// ---- principals ----

type principal struct {
	ClientID      string   `json:"clientId"`
	DisplayName   string   `json:"displayName,omitempty"`
	Role          string   `json:"role"`
	Subscriptions []string `json:"subscriptions"`
	ClientSecret  string   `json:"clientSecret,omitempty"`
}

func principalPath(id string) string {
	return "/providers/vmssd.Admin/principals/" + url.PathEscape(id)
}

func (r *rootOptions) printPrincipals(v any, ps []principal, withSecret bool) error {
	return r.print(v, func() table {
		t := table{header: []string{"ClientId", "DisplayName", "Role", "Subscriptions"}}
		if withSecret {
			t.header = append(t.header, "ClientSecret")
		}
		for _, p := range ps {
			row := []string{p.ClientID, p.DisplayName, p.Role, strings.Join(p.Subscriptions, ",")}
			if withSecret {
				row = append(row, p.ClientSecret)
			}
			t.rows = append(t.rows, row)
		}
		return t
	})
}

type principalCreateOptions struct {
	root          *rootOptions
	cmd           *cobra.Command
	clientID      string
	displayName   string
	role          string
	subscriptions []string
	rotateSecret  bool
}

func newPrincipalCreateCommand(root *rootOptions) *cobra.Command {
	o := &principalCreateOptions{root: root}
	cmd := &cobra.Command{
		Use:   "create --client-id ID [--role tenant|operator] [--subscriptions a,b]",
		Short: "Create or update a service principal; a new secret is printed once",
		Long: `Create a service principal, or update the role and subscriptions of an
existing one. A new principal (or --rotate-secret) gets a fresh client secret,
which is printed once and cannot be retrieved later. An existing principal
keeps the role, subscriptions and display name not given as flags, so
--rotate-secret alone only replaces the secret (and ends the tokens obtained
with the old one).`,
		Args: noArgs,
	}
	o.cmd = cmd
	f := cmd.Flags()
	f.StringVar(&o.clientID, "client-id", "", "client id")
	f.StringVar(&o.displayName, "display-name", "", "display name")
	f.StringVar(&o.role, "role", "", "role: tenant or operator (a new principal: tenant; an existing one keeps its role)")
	f.StringSliceVar(&o.subscriptions, "subscriptions", nil, "subscriptions a tenant may use (comma separated)")
	f.BoolVar(&o.rotateSecret, "rotate-secret", false, "issue a new secret for an existing principal")
	_ = cmd.MarkFlagRequired("client-id")
	return bind(root, cmd, o)
}

func (o *principalCreateOptions) Complete(context.Context, []string) error {
	var err error
	if o.role != "" {
		o.role, err = canonical("--role", o.role, "tenant", "operator")
	}
	return err
}

func (o *principalCreateOptions) Validate() error {
	if strings.TrimSpace(o.clientID) == "" {
		return usageErrorf("--client-id must not be empty")
	}
	return nil
}

func (o *principalCreateOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	// Only the flags given are sent: the server keeps the rest of an
	// existing principal.
	in := map[string]any{"clientId": o.clientID}
	if o.role != "" {
		in["role"] = o.role
	}
	if o.displayName != "" {
		in["displayName"] = o.displayName
	}
	if o.cmd.Flags().Changed("subscriptions") {
		subs := o.subscriptions
		if subs == nil {
			subs = []string{}
		}
		in["subscriptions"] = subs
	}
	var q url.Values
	if o.rotateSecret {
		q = url.Values{"rotateSecret": {"true"}}
	}
	var out principal
	if _, err := c.do(ctx, adminCall{
		method: http.MethodPut, path: principalPath(o.clientID), apiVersion: apiVMSSDAdmin, query: q,
		body: in, ok: []int{http.StatusOK, http.StatusCreated}, out: &out,
	}); err != nil {
		return err
	}
	if out.ClientSecret != "" {
		fmt.Fprintln(o.root.streams.ErrOut, "Save the client secret now: it cannot be retrieved again.")
	}
	return o.root.printPrincipals(out, []principal{out}, out.ClientSecret != "")
}

type principalListOptions struct{ root *rootOptions }

func newPrincipalListCommand(root *rootOptions) *cobra.Command {
	return bind(root, &cobra.Command{Use: "list", Short: "List service principals", Args: noArgs}, &principalListOptions{root: root})
}

func (o *principalListOptions) Complete(context.Context, []string) error { return nil }
func (o *principalListOptions) Validate() error                          { return nil }

func (o *principalListOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	var out struct {
		Value []principal `json:"value"`
	}
	if _, err := c.do(ctx, adminCall{
		method: http.MethodGet, path: "/providers/vmssd.Admin/principals", apiVersion: apiVMSSDAdmin,
		ok: []int{http.StatusOK}, out: &out,
	}); err != nil {
		return err
	}
	if out.Value == nil {
		out.Value = []principal{}
	}
	return o.root.printPrincipals(out.Value, out.Value, false)
}

// principalIDOptions are show and delete.
type principalIDOptions struct {
	root     *rootOptions
	clientID string
	delete   bool
}

func newPrincipalShowCommand(root *rootOptions) *cobra.Command {
	return newPrincipalIDCommand(root, &cobra.Command{Use: "show --client-id ID", Short: "Show a service principal", Args: noArgs}, false)
}

func newPrincipalDeleteCommand(root *rootOptions) *cobra.Command {
	return newPrincipalIDCommand(root, &cobra.Command{Use: "delete --client-id ID", Short: "Delete a service principal", Args: noArgs}, true)
}

func newPrincipalIDCommand(root *rootOptions, cmd *cobra.Command, del bool) *cobra.Command {
	o := &principalIDOptions{root: root, delete: del}
	cmd.Flags().StringVar(&o.clientID, "client-id", "", "client id")
	_ = cmd.MarkFlagRequired("client-id")
	return bind(root, cmd, o)
}

func (o *principalIDOptions) Complete(context.Context, []string) error { return nil }

func (o *principalIDOptions) Validate() error {
	if strings.TrimSpace(o.clientID) == "" {
		return usageErrorf("--client-id must not be empty")
	}
	return nil
}

func (o *principalIDOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	if o.delete {
		_, err := c.do(ctx, adminCall{
			method: http.MethodDelete, path: principalPath(o.clientID), apiVersion: apiVMSSDAdmin,
			ok: []int{http.StatusOK, http.StatusAccepted, http.StatusNoContent},
		})
		return err
	}
	var out principal
	if _, err := c.do(ctx, adminCall{
		method: http.MethodGet, path: principalPath(o.clientID), apiVersion: apiVMSSDAdmin,
		ok: []int{http.StatusOK}, out: &out,
	}); err != nil {
		return err
	}
	return o.root.printPrincipals(out, []principal{out}, false)
}
