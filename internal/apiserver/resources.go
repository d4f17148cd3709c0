package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/api/client"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// metadataEndpoints serves the cloud metadata document clients register the
// cloud from: the legacy Azure Stack shape for old api-versions, the single
// object shape az CLI reads for 2022-09-01 and newer. The login endpoint is
// the AD FS authority https://host/adfs, as on Azure Stack Hub with AD FS:
// MSAL trusts it without asking login.microsoftonline.com (api/client).
func (s *Server) metadataEndpoints(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	base := "https://" + r.Host + "/"
	login := client.LoginEndpoint(base)
	if rc.api >= "2019-05-01" && rc.api != "1.0" {
		writeJSON(w, http.StatusOK, map[string]any{
			"name":            "vmssd",
			"resourceManager": base,
			"portal":          base,
			"gallery":         base,
			"graph":           base,
			"graphAudience":   base,
			"authentication": map[string]any{
				"loginEndpoint":    login,
				"audiences":        []string{s.opts.Audience},
				"tenant":           client.LoginTenant,
				"identityProvider": "ADFS",
			},
			"suffixes": map[string]any{"storage": "vmssd.local", "keyVaultDns": ".vault.vmssd.local", "acrLoginServer": ".acr.vmssd.local"},
		})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"galleryEndpoint": base,
		"graphEndpoint":   base,
		"portalEndpoint":  base,
		"authentication":  map[string]any{"loginEndpoint": login, "audiences": []string{s.opts.Audience}},
	})
	return nil
}

type subscriptionBody struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
	TenantID       string `json:"tenantId,omitempty"`
}

func renderSubscription(sub *model.Subscription) subscriptionBody {
	return subscriptionBody{ID: "/subscriptions/" + sub.ID, SubscriptionID: sub.ID, DisplayName: sub.DisplayName, State: sub.State}
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	subs, _, err := state.List[model.Subscription](r.Context(), s.opts.Store, model.PrefixSubscriptions)
	if err != nil {
		return err
	}
	page := arm.Page[subscriptionBody]{Value: []subscriptionBody{}}
	for _, sub := range subs {
		if rc.caller.CanSee(sub.ID) {
			page.Value = append(page.Value, renderSubscription(sub))
		}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	sub, _, err := state.Get[model.Subscription](r.Context(), s.opts.Store, model.SubscriptionKey(rc.v("sub")))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderSubscription(sub))
	return nil
}

type resourceGroupBody struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func renderRG(rg *model.ResourceGroup) resourceGroupBody {
	b := resourceGroupBody{ID: arm.ResourceGroupID(rg.Sub, rg.Name), Name: rg.Name, Type: "Microsoft.Resources/resourceGroups", Location: rg.Location, Tags: rg.Tags}
	b.Properties.ProvisioningState = "Succeeded"
	if rg.Deleting {
		b.Properties.ProvisioningState = "Deleting"
	}
	return b
}

func validRGName(n string) bool {
	if n == "" || len(n) > 90 || strings.HasSuffix(n, ".") {
		return false
	}
	for _, c := range n {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '(', c == ')':
		default:
			return false
		}
	}
	return true
}

func (s *Server) putResourceGroup(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	sub, name := rc.v("sub"), rc.v("rg")
	if !validRGName(name) {
		return errs.New(errs.Invalid, "InvalidResourceGroup", "The provided resource group name '%s' has these invalid characters or length.", name).WithTarget("resourceGroupName")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in struct {
		Location string            `json:"location"`
		Tags     map[string]string `json:"tags"`
	}
	if body == nil {
		return errs.New(errs.Invalid, "InvalidRequestContent", "The request content is missing.")
	}
	if err := decode(body, &in); err != nil {
		return err
	}
	if in.Location == "" {
		return errs.New(errs.Invalid, "LocationRequired", "The location property is required for this definition.").WithTarget("location")
	}
	if !strings.EqualFold(in.Location, s.opts.Location) {
		return errs.New(errs.Invalid, "LocationNotAvailableForResourceGroup", "The provided location '%s' is not available for resource group. List of available regions is '%s'.", in.Location, s.opts.Location).WithTarget("location")
	}
	if err := validateTags(in.Tags); err != nil {
		return err
	}
	rg := &model.ResourceGroup{Sub: sub, Name: name, Location: strings.ToLower(in.Location), Tags: in.Tags}
	status, err := s.putResourceGroupLocked(r.Context(), rg)
	if err != nil {
		return err
	}
	writeJSON(w, status, renderRG(rg))
	return nil
}

// putResourceGroupLocked retries tryPutResourceGroup under the
// subscription's lock (not held while the response is written).
func (s *Server) putResourceGroupLocked(ctx context.Context, rg *model.ResourceGroup) (int, error) {
	unlock := s.subLocks.lock(rg.Sub)
	defer unlock()
	for attempt := 0; ; attempt++ {
		status, err := s.tryPutResourceGroup(ctx, rg)
		if errors.Is(err, store.ErrConflict) {
			if attempt < 20 {
				continue
			}
			return 0, errs.New(errs.Conflict, "Conflict", "The resource group '%s' was changed concurrently; retry the request.", rg.Name)
		}
		return status, err
	}
}

// tryPutResourceGroup creates or updates rg once; a concurrent change
// fails it with store.ErrConflict. The transaction is conditioned on the
// subscription record, so that a group is never created in a subscription
// whose deletion has begun (adminDeleteSubscription marks it first), and a
// new group on the subscription's group guard, so that concurrent creations
// cannot exceed MaxResourceGroups.
func (s *Server) tryPutResourceGroup(ctx context.Context, rg *model.ResourceGroup) (int, error) {
	sub, subRev, err := state.Get[model.Subscription](ctx, s.opts.Store, model.SubscriptionKey(rg.Sub))
	if errors.Is(err, store.ErrNotFound) {
		return 0, errs.New(errs.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", rg.Sub)
	}
	if err != nil {
		return 0, err
	}
	if strings.EqualFold(sub.State, subDeleting) || strings.EqualFold(sub.State, "Disabled") {
		return 0, errs.New(errs.Conflict, "ReadOnlyDisabledSubscription", "The subscription '%s' is %s and therefore marked as read only. You cannot perform any write actions on this subscription.", rg.Sub, strings.ToLower(sub.State))
	}
	key := model.ResourceGroupKey(rg.Sub, rg.Name)
	cur, rev, err := state.Get[model.ResourceGroup](ctx, s.opts.Store, key)
	status := http.StatusCreated
	conds := []store.Cond{store.ModRevisionIs(model.SubscriptionKey(rg.Sub), subRev)}
	var ops []store.Op
	switch {
	case err == nil:
		if cur.Deleting {
			return 0, errs.New(errs.Conflict, "ResourceGroupBeingDeleted", "The resource group '%s' is in deprovisioning state and cannot perform this operation.", cur.Name)
		}
		status = http.StatusOK
		rg.Name = cur.Name
	case errors.Is(err, store.ErrNotFound):
		rev = 0
		guard := model.ResourceGroupGuardKey(rg.Sub)
		var guardRev int64
		if kv, err := s.opts.Store.Get(ctx, guard); err == nil {
			guardRev = kv.ModRevision
		} else if !errors.Is(err, store.ErrNotFound) {
			return 0, err
		}
		n, err := s.countKeys(ctx, model.ResourceGroupPrefix(rg.Sub), s.opts.MaxResourceGroups)
		if err != nil {
			return 0, err
		}
		if n >= s.opts.MaxResourceGroups {
			return 0, errs.New(errs.Conflict, "ResourceGroupQuotaExceeded", "Creating the resource group '%s' would exceed the quota of %d resource groups of subscription '%s'.", rg.Name, s.opts.MaxResourceGroups, rg.Sub)
		}
		c, op := guardOps(guard, guardRev)
		conds, ops = append(conds, c), append(ops, op)
	default:
		return 0, err
	}
	conds = append(conds, store.ModRevisionIs(key, rev))
	if _, err := s.opts.Store.Txn(ctx, conds, append(ops, state.PutOp(key, rg))...); err != nil {
		return 0, err
	}
	return status, nil
}

// patchResourceGroup updates a resource group's tags.
func (s *Server) patchResourceGroup(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in struct {
		Tags map[string]string `json:"tags"`
	}
	if body != nil {
		if err := decode(body, &in); err != nil {
			return err
		}
	}
	if err := validateTags(in.Tags); err != nil {
		return err
	}
	rg, err := state.Update(r.Context(), s.opts.Store, model.ResourceGroupKey(rc.v("sub"), rc.v("rg")), func(rg *model.ResourceGroup) error {
		if rg.Deleting {
			return errs.New(errs.Conflict, "ResourceGroupBeingDeleted", "The resource group '%s' is in deprovisioning state and cannot perform this operation.", rg.Name)
		}
		if in.Tags != nil {
			rg.Tags = in.Tags
		}
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return errs.New(errs.NotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", rc.v("rg"))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, renderRG(rg))
	return nil
}

func (s *Server) loadRG(r *http.Request, sub, name string) (*model.ResourceGroup, int64, error) {
	rg, rev, err := state.Get[model.ResourceGroup](r.Context(), s.opts.Store, model.ResourceGroupKey(sub, name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, errs.New(errs.NotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", name)
	}
	return rg, rev, err
}

func (s *Server) getResourceGroup(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	rg, _, err := s.loadRG(r, rc.v("sub"), rc.v("rg"))
	if err != nil {
		return err
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	writeJSON(w, http.StatusOK, renderRG(rg))
	return nil
}

// listResourceGroups pages the groups in key (lower-cased name) order.
func (s *Server) listResourceGroups(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	prefix := model.ResourceGroupPrefix(rc.v("sub"))
	start, err := pageStart(rc, prefix, nil)
	if err != nil {
		return err
	}
	kvs, next, err := state.ListPage(r.Context(), s.opts.Store, prefix, start, s.opts.PageSize)
	if err != nil {
		return err
	}
	page := arm.Page[resourceGroupBody]{Value: make([]resourceGroupBody, 0, len(kvs))}
	for _, kv := range kvs {
		rg := &model.ResourceGroup{}
		if err := json.Unmarshal(kv.Value, rg); err != nil {
			return err
		}
		page.Value = append(page.Value, renderRG(rg))
	}
	if next != "" {
		page.NextLink = pageLink(r, prefix, next)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// deleteResourceGroup marks the group and every scale set in it for
// deletion; the controller removes them, then the group.
func (s *Server) deleteResourceGroup(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	sub := rc.v("sub")
	rg, rev, err := s.loadRG(r, sub, rc.v("rg"))
	if err != nil {
		return err // ARM answers 404 ResourceGroupNotFound
	}
	sets, revs, err := state.List[model.ScaleSet](ctx, s.opts.Store, model.ScaleSetPrefix(sub, rg.Name))
	if err != nil {
		return err
	}
	key := model.ResourceGroupKey(sub, rg.Name)
	op, opOps := state.NewOperation("deleteResourceGroup", sub, s.opts.Location, key, 0, s.opts.Now())
	conds := []store.Cond{store.ModRevisionIs(key, rev)}
	ops := opOps
	rg.Deleting = true
	ops = append(ops, state.PutOp(key, rg))
	netOps, err := s.groupNetworkOps(ctx, sub, rg.Name)
	if err != nil {
		return err
	}
	ops = append(ops, netOps...)
	for i, set := range sets {
		k := model.ScaleSetKey(set.Ref())
		conds = append(conds, store.ModRevisionIs(k, revs[i]))
		set.Deleting = true
		set.Generation++
		ops = append(ops, state.PutOp(k, set))
	}
	if _, err := s.opts.Store.Txn(ctx, conds, ops...); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The resource group changed concurrently; retry the request.")
		}
		return err
	}
	s.lroHeaders(w, r, op, rc.api)
	w.WriteHeader(http.StatusAccepted)
	return nil
}
