package apiserver

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/catalog"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// Operator APIs: platform images (Microsoft.Compute.Admin style), artifact
// upload, subscriptions (Microsoft.Subscriptions.Admin style) and principals.

type adminImageBody struct {
	ID         string `json:"id,omitempty"`
	Name       string `json:"name,omitempty"`
	Type       string `json:"type,omitempty"`
	Location   string `json:"location,omitempty"`
	Properties struct {
		OSDisk struct {
			OSType string `json:"osType"`
			URI    string `json:"uri"`
		} `json:"osDisk"`
		ProvisioningState string `json:"provisioningState,omitempty"`
		Digest            string `json:"digest,omitempty"`
		Size              int64  `json:"sizeBytes,omitempty"`
	} `json:"properties"`
}

func adminImageID(sub, loc string, v *model.ImageVersion) string {
	return "/subscriptions/" + sub + "/providers/Microsoft.Compute.Admin/locations/" + loc +
		"/artifactTypes/platformImage/publishers/" + v.Publisher + "/offers/" + v.Offer + "/skus/" + v.SKU + "/versions/" + v.Version
}

func (s *Server) renderAdminImage(sub string, v *model.ImageVersion) adminImageBody {
	var b adminImageBody
	b.ID = adminImageID(sub, s.opts.Location, v)
	b.Name = v.Version
	b.Type = "Microsoft.Compute.Admin/locations/artifactTypes/platformImage"
	b.Location = s.opts.Location
	b.Properties.OSDisk.OSType = v.OSType
	b.Properties.OSDisk.URI = "artifact:" + v.Digest
	b.Properties.ProvisioningState = "Succeeded"
	b.Properties.Digest = v.Digest
	b.Properties.Size = v.Size
	return b
}

var imageNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func (s *Server) adminPutImage(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	pub, offer, sku, ver := rc.v("pub"), rc.v("offer"), rc.v("sku"), rc.v("ver")
	for _, p := range []struct{ name, v string }{{"publisher", pub}, {"offer", offer}, {"sku", sku}} {
		if !imageNameRE.MatchString(p.v) {
			return errs.InvalidParameter(p.name, "The %s '%s' is not valid.", p.name, p.v)
		}
	}
	if !catalog.ValidVersion(ver) {
		return errs.InvalidParameter("version", "The version '%s' is not valid: use Major.Minor.Build.", ver)
	}
	if !strings.EqualFold(rc.v("loc"), s.opts.Location) {
		return errs.InvalidParameter("location", "The location '%s' is not available; this cloud's location is '%s'.", rc.v("loc"), s.opts.Location)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in adminImageBody
	if body == nil {
		return errs.New(errs.Invalid, "InvalidRequestContent", "The request content is missing.")
	}
	if err := decode(body, &in); err != nil {
		return err
	}
	if in.Properties.OSDisk.URI == "" {
		return errs.InvalidParameter("properties.osDisk.uri", "Required parameter 'osDisk.uri' is missing.")
	}
	digest, size, osType, err := s.opts.Artifacts.ImportURI(ctx, in.Properties.OSDisk.URI)
	if err != nil {
		return err
	}
	if t := in.Properties.OSDisk.OSType; t != "" {
		if !oneOf(t, "Linux", "Windows") {
			return errs.InvalidParameter("properties.osDisk.osType", "The osType '%s' is not valid: Linux or Windows.", t)
		}
		osType = t
	}
	v := &model.ImageVersion{Publisher: pub, Offer: offer, SKU: sku, Version: ver, Location: s.opts.Location, OSType: osType, Digest: digest, Size: size, Created: s.opts.Now()}
	key := model.ImageKey(pub, offer, sku, ver)
	status := http.StatusCreated
	if cur, _, err := state.Get[model.ImageVersion](ctx, s.opts.Store, key); err == nil {
		status = http.StatusOK
		v.Created = cur.Created
		if cur.Digest != digest {
			// Re-publishing a version number with other bytes (V2): the
			// operator must delete it first, as on Azure Stack.
			return errs.New(errs.Conflict, "Conflict", "Image version %s:%s:%s:%s already exists with other content; delete it first.", pub, offer, sku, ver)
		}
	}
	if _, err := s.opts.Store.Txn(ctx, nil, state.PutOp(key, v)); err != nil {
		return err
	}
	writeJSON(w, status, s.renderAdminImage(rc.v("sub"), v))
	return nil
}

func (s *Server) adminGetImage(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return getRecord(s, w, r, model.ImageKey(rc.v("pub"), rc.v("offer"), rc.v("sku"), rc.v("ver")),
		errs.New(errs.NotFound, "NotFound", "Artifact: VMImage was not found."),
		func(v *model.ImageVersion) adminImageBody { return s.renderAdminImage(rc.v("sub"), v) })
}

func (s *Server) adminDeleteImage(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.deleteRecord(w, r, model.ImageKey(rc.v("pub"), rc.v("offer"), rc.v("sku"), rc.v("ver")))
}

func (s *Server) adminListImages(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return listRecords(s, w, r, model.PrefixImages,
		func(v *model.ImageVersion) adminImageBody { return s.renderAdminImage(rc.v("sub"), v) })
}

type adminSubscriptionBody struct {
	ID             string `json:"id"`
	SubscriptionID string `json:"subscriptionId"`
	DisplayName    string `json:"displayName"`
	State          string `json:"state"`
}

var subIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

func renderAdminSub(sub *model.Subscription) adminSubscriptionBody {
	return adminSubscriptionBody{ID: "/subscriptions/" + sub.ID, SubscriptionID: sub.ID, DisplayName: sub.DisplayName, State: sub.State}
}

// Subscription states: a subscription is Enabled, or Deleting while its
// deletion checks that it holds nothing.
const (
	subEnabled  = "Enabled"
	subDeleting = "Deleting"
)

func (s *Server) adminPutSubscription(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	id := rc.v("id")
	if !subIDRE.MatchString(id) {
		return errs.InvalidParameter("subscriptionId", "The subscription id '%s' is not valid.", id)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in struct {
		DisplayName string `json:"displayName"`
		Properties  struct {
			DisplayName string `json:"displayName"`
		} `json:"properties"`
	}
	if body != nil {
		if err := decode(body, &in); err != nil {
			return err
		}
	}
	name := in.DisplayName
	if name == "" {
		name = in.Properties.DisplayName
	}
	if name == "" {
		name = id
	}
	if utf8.RuneCountInString(name) > 256 {
		return errs.InvalidParameter("displayName", "The display name is longer than 256 characters.")
	}
	key := model.SubscriptionKey(id)
	status := http.StatusCreated
	sub := &model.Subscription{ID: strings.ToLower(id), DisplayName: name, State: subEnabled, Created: s.opts.Now()}
	cur, rev, err := state.Get[model.Subscription](r.Context(), s.opts.Store, key)
	switch {
	case err == nil:
		if cur.State == subDeleting {
			return errs.New(errs.Conflict, "SubscriptionBeingDeleted", "The subscription '%s' is being deleted.", id)
		}
		status = http.StatusOK
		sub.Created, sub.State = cur.Created, cur.State
	case errors.Is(err, store.ErrNotFound):
		rev = 0
	default:
		return err
	}
	if _, err := s.opts.Store.Txn(r.Context(), []store.Cond{store.ModRevisionIs(key, rev)}, state.PutOp(key, sub)); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The subscription '%s' was changed concurrently; retry the request.", id)
		}
		return err
	}
	writeJSON(w, status, renderAdminSub(sub))
	return nil
}

func (s *Server) adminGetSubscription(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return getRecord(s, w, r, model.SubscriptionKey(rc.v("id")),
		errs.New(errs.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", rc.v("id")), renderAdminSub)
}

func (s *Server) adminListSubscriptions(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return listRecords(s, w, r, model.PrefixSubscriptions, renderAdminSub)
}

// adminDeleteSubscription deletes an empty subscription. It is exclusive
// with resource group creation: it first marks the subscription Deleting
// (a group creation conditioned on the old record then fails, and a later
// one sees the mark), then looks for groups, and deletes the record only if
// it is still the marked one. A subscription that holds groups is put back
// as it was and the deletion refused.
func (s *Server) adminDeleteSubscription(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	id := rc.v("id")
	key := model.SubscriptionKey(id)
	sub, rev, err := state.Get[model.Subscription](ctx, s.opts.Store, key)
	if errors.Is(err, store.ErrNotFound) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return err
	}
	if sub.State == subDeleting {
		return errs.New(errs.Conflict, "SubscriptionBeingDeleted", "The subscription '%s' is being deleted.", id)
	}
	prior := *sub
	sub.State = subDeleting
	markRev, err := s.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(key, rev)}, state.PutOp(key, sub))
	if err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The subscription '%s' was changed concurrently; retry the request.", id)
		}
		return err
	}
	n, err := s.countKeys(ctx, model.ResourceGroupPrefix(id), s.opts.MaxResourceGroups+1)
	if err == nil && n == 0 {
		_, err = s.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(key, markRev)},
			store.Delete(key), store.Delete(model.QuotaKey(id)), store.DeletePrefix(model.GuardPrefix(id)),
			store.DeletePrefix(model.ArtifactGrantKey(id, "")))
		if err == nil {
			w.WriteHeader(http.StatusOK)
			return nil
		}
	}
	// Put the subscription back as it was (nothing else writes a subscription
	// marked Deleting).
	if _, uerr := s.opts.Store.Txn(context.WithoutCancel(ctx), []store.Cond{store.ModRevisionIs(key, markRev)}, state.PutOp(key, &prior)); uerr != nil {
		s.log.Error("subscription left marked Deleting", "sub", id, "err", uerr)
	}
	if err != nil {
		return err
	}
	return errs.New(errs.Conflict, "SubscriptionNotEmpty", "The subscription '%s' still has %d resource group(s); delete them first.", id, n)
}

type principalBody struct {
	ClientID      string   `json:"clientId"`
	DisplayName   string   `json:"displayName,omitempty"`
	Role          string   `json:"role"`
	Subscriptions []string `json:"subscriptions"`
	// Secret is returned once, when created or rotated.
	Secret string `json:"clientSecret,omitempty"`
}

func renderPrincipal(p *model.Principal) principalBody {
	subs := p.Subscriptions
	if subs == nil {
		subs = []string{}
	}
	return principalBody{ClientID: p.ClientID, DisplayName: p.DisplayName, Role: p.Role, Subscriptions: subs}
}

var clientIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// adminPutPrincipal creates or updates a principal. A new principal (or
// ?rotateSecret=true) gets a fresh secret, returned once.
func (s *Server) adminPutPrincipal(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	id := rc.v("id")
	if !clientIDRE.MatchString(id) {
		return errs.InvalidParameter("clientId", "The client id '%s' is not valid.", id)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var in principalBody
	if body != nil {
		if err := decode(body, &in); err != nil {
			return err
		}
	}
	if in.Role != "" && in.Role != string(auth.RoleTenant) && in.Role != string(auth.RoleOperator) {
		return errs.InvalidParameter("role", "The role '%s' is not valid: 'operator' or 'tenant'.", in.Role)
	}
	for _, sub := range in.Subscriptions {
		if _, err := s.opts.Store.Get(ctx, model.SubscriptionKey(sub)); errors.Is(err, store.ErrNotFound) {
			return errs.New(errs.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", sub).WithTarget("subscriptions")
		}
	}
	key := model.PrincipalKey(id)
	// A new principal is a tenant unless told otherwise. An existing one
	// keeps what the body leaves out (role, subscriptions, display name):
	// rotating a secret never changes what the principal may do.
	p := &model.Principal{ClientID: id, DisplayName: in.DisplayName, Role: cmp.Or(in.Role, string(auth.RoleTenant)),
		Created: s.opts.Now(), UID: auth.NewPrincipalUID()}
	for _, sub := range in.Subscriptions {
		p.Subscriptions = append(p.Subscriptions, strings.ToLower(sub))
	}
	sort.Strings(p.Subscriptions)
	status := http.StatusCreated
	cur, rev, err := state.Get[model.Principal](ctx, s.opts.Store, key)
	secret := ""
	switch {
	case err == nil:
		status = http.StatusOK
		p.ClientID, p.Created, p.SecretHash = cur.ClientID, cur.Created, cur.SecretHash
		p.UID, p.SecretGeneration = cur.UID, cur.SecretGeneration
		p.Role = cmp.Or(in.Role, cur.Role)
		p.DisplayName = cmp.Or(in.DisplayName, cur.DisplayName)
		if in.Subscriptions == nil {
			p.Subscriptions = cur.Subscriptions
		}
	case errors.Is(err, store.ErrNotFound):
		rev = 0
	default:
		return err
	}
	if p.SecretHash == "" || strings.EqualFold(rc.query.Get("rotateSecret"), "true") {
		if secret, err = auth.NewSecret(); err != nil {
			return err
		}
		p.SecretHash = auth.HashSecret(secret)
		p.SecretGeneration++ // tokens of the old secret stop working
	}
	if _, err := s.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(key, rev)}, state.PutOp(key, p)); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The principal was modified concurrently; retry.")
		}
		return err
	}
	if secret != "" && s.opts.SecretRotated != nil {
		s.opts.SecretRotated(ctx, p.ClientID, secret)
	}
	out := renderPrincipal(p)
	out.Secret = secret
	writeJSON(w, status, out)
	return nil
}

func (s *Server) adminGetPrincipal(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return getRecord(s, w, r, model.PrincipalKey(rc.v("id")),
		errs.New(errs.NotFound, "NotFound", "The principal '%s' was not found.", rc.v("id")), renderPrincipal)
}

func (s *Server) adminListPrincipals(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return listRecords(s, w, r, model.PrefixPrincipals, renderPrincipal)
}

func (s *Server) adminDeletePrincipal(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	if strings.EqualFold(rc.v("id"), rc.caller.ClientID) {
		return errs.New(errs.Conflict, "OperationNotAllowed", "A principal cannot delete itself.")
	}
	return s.deleteRecord(w, r, model.PrincipalKey(rc.v("id")))
}
