package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/catalog"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/reconcile"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

const typeVMSS = "Microsoft.Compute/virtualMachineScaleSets"

var vmssNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}[A-Za-z0-9_]$|^[A-Za-z0-9]$`)

func (s *Server) ref(rc *reqCtx) model.SetRef {
	return model.SetRef{Sub: rc.v("sub"), RG: rc.v("rg"), Name: rc.v("vmss")}
}

func notFoundVMSS(rg, name string) *errs.Error {
	return errs.New(errs.NotFound, "ResourceNotFound", "The Resource '%s/%s' under resource group '%s' was not found.", typeVMSS, name, rg)
}

// loadSet reads a scale set; tenants and operators alike get 404 for one that
// does not exist.
func (s *Server) loadSet(ctx context.Context, ref model.SetRef) (*model.ScaleSet, int64, error) {
	set, rev, err := state.Get[model.ScaleSet](ctx, s.opts.Store, model.ScaleSetKey(ref))
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, notFoundVMSS(ref.RG, ref.Name)
	}
	return set, rev, err
}

func (s *Server) loadStatus(ctx context.Context, ref model.SetRef) (*model.ScaleSetStatus, error) {
	st, _, err := state.Get[model.ScaleSetStatus](ctx, s.opts.Store, model.ScaleSetStatusKey(ref))
	if errors.Is(err, store.ErrNotFound) {
		return &model.ScaleSetStatus{}, nil
	}
	return st, err
}

// provisioningState derives the scale set's state from spec and status.
func provisioningState(set *model.ScaleSet, st *model.ScaleSetStatus) string {
	switch {
	case set.Deleting:
		return model.StateDeleting
	case st.ObservedGeneration < set.Generation:
		if st.ObservedGeneration == 0 {
			return model.StateCreating
		}
		return model.StateUpdating
	case st.ProvisioningState == "":
		return model.StateSucceeded
	}
	return st.ProvisioningState
}

// render builds the wire scale set: a copy of the model without secrets, with
// read-only fields filled in.
func (s *Server) render(set *model.ScaleSet, st *model.ScaleSetStatus, rev int64) *armcompute.VirtualMachineScaleSet {
	b, _ := json.Marshal(set.Model)
	out := &armcompute.VirtualMachineScaleSet{}
	_ = json.Unmarshal(b, out)
	id := arm.ScaleSetID(set.Sub, set.RG, set.Name)
	out.ID, out.Name, out.Type = &id, ptr(set.Name), ptr(typeVMSS)
	out.Etag = ptr(etag(rev))
	if out.Properties == nil {
		out.Properties = &armcompute.VirtualMachineScaleSetProperties{}
	}
	p := out.Properties
	p.ProvisioningState = ptr(provisioningState(set, st))
	p.UniqueID = ptr(set.UniqueID)
	created := set.Created
	p.TimeCreated = &created
	if p.PlatformFaultDomainCount == nil {
		p.PlatformFaultDomainCount = ptr(int32(set.FaultDomainCount()))
	}
	if p.UpgradePolicy == nil {
		p.UpgradePolicy = &armcompute.UpgradePolicy{}
	}
	if p.UpgradePolicy.Mode == nil {
		p.UpgradePolicy.Mode = ptr(armcompute.UpgradeModeManual)
	}
	if p.OrchestrationMode == nil {
		p.OrchestrationMode = ptr(armcompute.OrchestrationModeUniform)
	}
	if p.SinglePlacementGroup == nil {
		p.SinglePlacementGroup = ptr(true)
	}
	withProfileDefaults(p)
	if vp := p.VirtualMachineProfile; vp != nil && vp.OSProfile != nil {
		vp.OSProfile.AdminPassword = nil
		vp.OSProfile.CustomData = nil
	}
	if vp := p.VirtualMachineProfile; vp != nil {
		vp.UserData = nil
		if vp.ExtensionProfile != nil {
			for _, e := range vp.ExtensionProfile.Extensions {
				if e != nil && e.Properties != nil {
					e.Properties.ProtectedSettings = nil
				}
			}
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func (s *Server) writeSet(w http.ResponseWriter, status int, set *model.ScaleSet, st *model.ScaleSetStatus, rev int64) {
	w.Header().Set("ETag", etag(rev))
	writeJSON(w, status, s.render(set, st, rev))
}

func (s *Server) getScaleSet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ref := s.ref(rc)
	set, rev, err := s.loadSet(r.Context(), ref)
	if err != nil {
		return err
	}
	st, err := s.loadStatus(r.Context(), ref)
	if err != nil {
		return err
	}
	s.writeSet(w, http.StatusOK, set, st, rev)
	return nil
}

func (s *Server) listScaleSets(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	if rg := rc.v("rg"); rg != "" {
		if _, _, err := s.loadRG(r, rc.v("sub"), rg); err != nil {
			return err
		}
	}
	prefix := model.ScaleSetPrefix(rc.v("sub"), rc.v("rg"))
	start, err := pageStart(rc, prefix, nil)
	if err != nil {
		return err
	}
	// One page of records is read, decoded and rendered; a location filter
	// may leave it shorter than the page size.
	kvs, next, err := state.ListPage(ctx, s.opts.Store, prefix, start, s.opts.PageSize)
	if err != nil {
		return err
	}
	page := arm.Page[*armcompute.VirtualMachineScaleSet]{Value: []*armcompute.VirtualMachineScaleSet{}}
	for _, kv := range kvs {
		set := &model.ScaleSet{}
		if err := json.Unmarshal(kv.Value, set); err != nil {
			return err
		}
		if loc := rc.v("loc"); loc != "" && !strings.EqualFold(loc, set.Location()) {
			continue
		}
		st, err := s.loadStatus(ctx, set.Ref())
		if err != nil {
			return err
		}
		page.Value = append(page.Value, s.render(set, st, kv.ModRevision))
	}
	if next != "" {
		page.NextLink = pageLink(r, prefix, next)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// readOnlyClear drops the fields clients may echo back but never set.
func readOnlyClear(m *armcompute.VirtualMachineScaleSet) {
	m.ID, m.Name, m.Type, m.Etag, m.SystemData = nil, nil, nil, nil, nil
	if p := m.Properties; p != nil {
		p.ProvisioningState, p.UniqueID, p.TimeCreated = nil, nil, nil
		if vp := p.VirtualMachineProfile; vp != nil {
			vp.TimeCreated = nil
			if sp := vp.StorageProfile; sp != nil && sp.ImageReference != nil {
				sp.ImageReference.ExactVersion = nil
			}
		}
	}
}

// modelSignature is what decides whether the VM model changed.
func modelSignature(m *armcompute.VirtualMachineScaleSet) string {
	// Defaults GET shows count as given: echoing them changes nothing.
	prof, _ := json.Marshal(profileWithDefaults(m))
	name := ""
	if m.SKU != nil && m.SKU.Name != nil {
		name = strings.ToLower(*m.SKU.Name)
	}
	return name + "|" + string(prof)
}

var computerNamePrefixRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,8}$`)

// validate checks a merged model.
func (s *Server) validate(m *armcompute.VirtualMachineScaleSet) error {
	if m.Location == nil || *m.Location == "" {
		return errs.New(errs.Invalid, "LocationRequired", "The location property is required for this definition.").WithTarget("location")
	}
	if !strings.EqualFold(*m.Location, s.opts.Location) {
		return errs.New(errs.Invalid, "LocationNotAvailableForResourceType",
			"The provided location '%s' is not available for resource type '%s'. List of available regions for the resource type is '%s'.", *m.Location, typeVMSS, s.opts.Location).WithTarget("location")
	}
	if len(m.Tags) > 0 {
		tags := make(map[string]string, len(m.Tags))
		for k, v := range m.Tags {
			if v != nil {
				tags[k] = *v
			} else {
				tags[k] = ""
			}
		}
		if err := validateTags(tags); err != nil {
			return err
		}
	}
	if m.SKU != nil && m.SKU.Capacity != nil {
		c := *m.SKU.Capacity
		if c < 0 || c > s.opts.MaxCapacity {
			return errs.InvalidParameter("sku.capacity", "The value %d of parameter 'sku.capacity' is out of range. The value must be between 0 and %d, inclusive.", c, s.opts.MaxCapacity)
		}
	}
	p := m.Properties
	if p == nil {
		return nil
	}
	if p.OrchestrationMode != nil && !strings.EqualFold(string(*p.OrchestrationMode), "Uniform") {
		return errs.InvalidParameter("properties.orchestrationMode", "Orchestration mode '%s' is not supported; only 'Uniform' is.", *p.OrchestrationMode)
	}
	if n := p.PlatformFaultDomainCount; n != nil && (*n < 1 || *n > 5) {
		return errs.InvalidParameter("properties.platformFaultDomainCount", "The value %d of parameter 'platformFaultDomainCount' is out of range. The value must be between 1 and 5, inclusive.", *n)
	}
	if up := p.UpgradePolicy; up != nil {
		if up.Mode != nil && !oneOf(string(*up.Mode), "Automatic", "Manual", "Rolling") {
			return errs.InvalidParameter("properties.upgradePolicy.mode", "The value '%s' of parameter 'upgradePolicy.mode' is not valid. Allowed values are 'Automatic', 'Manual', 'Rolling'.", *up.Mode)
		}
		if rp := up.RollingUpgradePolicy; rp != nil {
			for _, c := range []struct {
				name   string
				v      *int32
				lo, hi int32
			}{
				{"maxBatchInstancePercent", rp.MaxBatchInstancePercent, 5, 100},
				{"maxUnhealthyInstancePercent", rp.MaxUnhealthyInstancePercent, 5, 100},
				{"maxUnhealthyUpgradedInstancePercent", rp.MaxUnhealthyUpgradedInstancePercent, 0, 100},
			} {
				if c.v != nil && (*c.v < c.lo || *c.v > c.hi) {
					return errs.InvalidParameter("properties.upgradePolicy.rollingUpgradePolicy."+c.name,
						"The value %d of parameter '%s' is out of range. The value must be between %d and %d, inclusive.", *c.v, c.name, c.lo, c.hi)
				}
			}
		}
	}
	if err := validateRolling(m); err != nil {
		return err
	}
	if sp := p.ScaleInPolicy; sp != nil {
		for _, rule := range sp.Rules {
			if rule == nil || !oneOf(string(*rule), "Default", "OldestVM", "NewestVM") {
				return errs.InvalidParameter("properties.scaleInPolicy.rules", "Scale-in policy rules must be one of 'Default', 'OldestVM', 'NewestVM'.")
			}
		}
	}
	vp := p.VirtualMachineProfile
	if vp == nil {
		return nil
	}
	if op := vp.OSProfile; op != nil && op.CustomData != nil {
		b, err := base64.StdEncoding.DecodeString(*op.CustomData)
		if err != nil {
			return errs.InvalidParameter("properties.virtualMachineProfile.osProfile.customData", "customData must be base64-encoded.")
		}
		if len(b) > 64<<10 {
			return errs.InvalidParameter("properties.virtualMachineProfile.osProfile.customData", "customData is %d bytes once decoded; at most 65536 are allowed.", len(b))
		}
	}
	if op := vp.OSProfile; op != nil && op.ComputerNamePrefix != nil && !computerNamePrefixRE.MatchString(*op.ComputerNamePrefix) {
		return errs.InvalidParameter("properties.virtualMachineProfile.osProfile.computerNamePrefix",
			"The computer name prefix '%s' is not valid: 1 to 9 letters, digits or hyphens, not starting with a hyphen.", *op.ComputerNamePrefix)
	}
	if sp := vp.StorageProfile; sp != nil {
		if ir := sp.ImageReference; ir != nil {
			if ir.ID != nil || ir.SharedGalleryImageID != nil || ir.CommunityGalleryImageID != nil {
				return errs.InvalidParameter("properties.virtualMachineProfile.storageProfile.imageReference.id",
					"Managed, shared and community gallery images are not supported; use a platform image (publisher, offer, sku, version) or osDisk.image.uri.")
			}
			if ir.Version != nil && *ir.Version != "" && !strings.EqualFold(*ir.Version, "latest") && !catalog.ValidVersion(*ir.Version) {
				return errs.InvalidParameter("properties.virtualMachineProfile.storageProfile.imageReference.version",
					"The image version '%s' is not valid: use 'latest' or Major.Minor.Build.", *ir.Version)
			}
		}
	}
	return nil
}

func oneOf(v string, allowed ...string) bool {
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return true
		}
	}
	return false
}

// hasImage reports whether the model names an image.
func hasImage(set *model.ScaleSet) bool {
	src := set.ImageSource()
	return src.IsCustom() || src.Publisher != "" && src.Offer != "" && src.SKU != ""
}

// uriAllowed: paths on the server are the operator's; tenants name
// artifacts uploaded into the scale set's subscription (artifact:sha256:...).
func (s *Server) uriAllowed(ctx context.Context, set *model.ScaleSet, caller *Caller) error {
	src := set.ImageSource()
	if !src.IsCustom() || caller.IsOperator() {
		return nil
	}
	target := "properties.virtualMachineProfile.storageProfile.osDisk.image.uri"
	digest, ok := strings.CutPrefix(src.URI, "artifact:")
	if !ok {
		return errs.InvalidParameter(target,
			"The image URI '%s' is not allowed: upload the image (POST /subscriptions/{id}/providers/vmssd.Storage/artifacts) and use the artifact:sha256:<digest> URI the upload returns.", src.URI)
	}
	if _, err := s.opts.Store.Get(ctx, model.ArtifactGrantKey(set.Sub, digest)); errors.Is(err, store.ErrNotFound) {
		return errs.New(errs.NotFound, "ImageNotFound", "The custom image '%s' is not available in subscription '%s'.", src.URI, set.Sub).WithTarget(target)
	} else if err != nil {
		return err
	}
	return nil
}

// checkImage resolves the model's image now; scale-out and model changes
// fail synchronously when it does not exist (V3).
func (s *Server) checkImage(ctx context.Context, set *model.ScaleSet, caller *Caller) error {
	if !hasImage(set) {
		return errs.New(errs.Invalid, "InvalidParameter", "Required parameter 'imageReference' is missing (null).").
			WithTarget("properties.virtualMachineProfile.storageProfile.imageReference")
	}
	src := set.ImageSource()
	if src.IsCustom() {
		if err := s.uriAllowed(ctx, set, caller); err != nil {
			return err
		}
		_, err := s.opts.Artifacts.ResolveURI(ctx, src.URI)
		return err
	}
	images, _, err := state.List[model.ImageVersion](ctx, s.opts.Store, model.PrefixImages)
	if err != nil {
		return err
	}
	all := make([]model.ImageVersion, len(images))
	for i, v := range images {
		all[i] = *v
	}
	if _, e := reconcile.ResolveImage(src, all, nil); e != nil {
		return e
	}
	return nil
}

func (s *Server) activeCount(ctx context.Context, ref model.SetRef) (int64, error) {
	insts, _, err := state.List[model.Instance](ctx, s.opts.Store, model.InstancePrefix(ref))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, inst := range insts {
		if !inst.Deleting {
			n++
		}
	}
	return n, nil
}

func (s *Server) putScaleSet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.writeScaleSet(w, r, rc, false)
}

func (s *Server) patchScaleSet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.writeScaleSet(w, r, rc, true)
}

// writeScaleSet implements PUT (create, or update-as-merge) and PATCH.
func (s *Server) writeScaleSet(w http.ResponseWriter, r *http.Request, rc *reqCtx, patch bool) error {
	ctx := r.Context()
	ref := s.ref(rc)
	if !vmssNameRE.MatchString(ref.Name) {
		return errs.New(errs.Invalid, "InvalidParameter", "The scale set name '%s' is not valid: 1 to 64 letters, digits, '.', '_' or '-'.", ref.Name).WithTarget("vmScaleSetName")
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if body == nil || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return errs.New(errs.Invalid, "InvalidRequestContent", "The request content must be a JSON object.")
	}
	// Type-check the body against the wire type first.
	if patch {
		var upd armcompute.VirtualMachineScaleSetUpdate
		if err := decode(body, &upd); err != nil {
			return err
		}
		var raw map[string]json.RawMessage
		_ = json.Unmarshal(body, &raw)
		delete(raw, "location")
		body, _ = json.Marshal(raw)
	} else {
		var full armcompute.VirtualMachineScaleSet
		if err := decode(body, &full); err != nil {
			return err
		}
	}
	res, err := s.writeScaleSetLocked(r, rc, ref, body, patch)
	if err != nil {
		return err
	}
	st, err := s.loadStatus(ctx, ref)
	if err != nil {
		return err
	}
	s.lroHeaders(w, r, res.op, rc.api)
	s.writeSet(w, res.status, res.set, st, res.rev)
	return nil
}

// writeScaleSetLocked retries tryWriteScaleSet under the subscription's
// lock: writes that may raise the subscription's usage are serialised here
// (the guard key in their transaction is what makes the quota exact). The
// lock is not held while the response is written to the client.
func (s *Server) writeScaleSetLocked(r *http.Request, rc *reqCtx, ref model.SetRef, body []byte, patch bool) (*writeResult, error) {
	unlock := s.subLocks.lock(ref.Sub)
	defer unlock()
	for attempt := 0; ; attempt++ {
		// Each attempt re-reads the set and re-checks If-Match, so a real
		// change of the set still gives 412.
		res, err := s.tryWriteScaleSet(r, rc, ref, body, patch)
		if errors.Is(err, store.ErrConflict) {
			if attempt < 20 {
				continue
			}
			return nil, errs.New(errs.Conflict, "Conflict", "The scale set is being modified concurrently; retry the request.")
		}
		return res, err
	}
}

type writeResult struct {
	status int
	set    *model.ScaleSet
	rev    int64
	op     *model.Operation
}

// tryWriteScaleSet reads, merges, validates and writes once; a concurrent
// change makes it fail with store.ErrConflict.
func (s *Server) tryWriteScaleSet(r *http.Request, rc *reqCtx, ref model.SetRef, body []byte, patch bool) (*writeResult, error) {
	ctx := r.Context()
	rg, rgRev, err := s.loadRG(r, ref.Sub, ref.RG)
	if err != nil {
		return nil, err
	}
	if rg.Deleting {
		return nil, errs.New(errs.Conflict, "ResourceGroupBeingDeleted", "The resource group '%s' is being deleted.", rg.Name)
	}
	cur, rev, err := s.loadSet(ctx, ref)
	exists := err == nil
	if err != nil && !errs.IsKind(err, errs.NotFound) {
		return nil, err
	}
	if err := checkPreconditions(r, rev); err != nil {
		return nil, err
	}
	if patch && !exists {
		return nil, notFoundVMSS(ref.RG, ref.Name)
	}
	if exists && cur.Deleting {
		return nil, errs.New(errs.Conflict, "OperationNotAllowed", "The scale set '%s' is being deleted.", cur.Name)
	}

	merged := body
	if exists {
		base, err := json.Marshal(cur.Model)
		if err != nil {
			return nil, err
		}
		if merged, err = jsonpatch.MergePatch(base, body); err != nil {
			return nil, errs.New(errs.Invalid, "InvalidRequestContent", "The request content could not be merged: %v", err)
		}
	}
	m := &armcompute.VirtualMachineScaleSet{}
	if err := decode(merged, m); err != nil {
		return nil, err
	}
	readOnlyClear(m)
	if exists && m.Location != nil && cur.Location() != "" && !strings.EqualFold(*m.Location, cur.Location()) {
		return nil, errs.InvalidParameter("location", "Changing property 'location' is not allowed.")
	}
	if m.SKU == nil {
		m.SKU = &armcompute.SKU{}
	}
	if m.SKU.Name == nil {
		m.SKU.Name = ptr(model.DefaultSize)
	}
	if m.SKU.Tier == nil {
		m.SKU.Tier = ptr("Standard")
	}
	if m.SKU.Capacity == nil {
		m.SKU.Capacity = ptr(int64(0))
	}
	if err := s.validate(m); err != nil {
		return nil, err
	}

	now := s.opts.Now()
	next := &model.ScaleSet{Sub: ref.Sub, RG: rg.Name, Name: ref.Name, Model: m, UniqueID: state.NewID(), Created: now, Generation: 1, ModelVersion: 1}
	status := http.StatusCreated
	var active int64
	modelChanged := true
	if exists {
		status = http.StatusOK
		next.Name, next.RG, next.UniqueID, next.Created = cur.Name, cur.RG, cur.UniqueID, cur.Created
		next.Generation, next.ModelVersion = cur.Generation+1, cur.ModelVersion
		modelChanged = modelSignature(cur.Model) != modelSignature(m)
		if modelChanged {
			next.ModelVersion++
		}
		if active, err = s.activeCount(ctx, ref); err != nil {
			return nil, err
		}
	}
	if err := s.uriAllowed(ctx, next, rc.caller); err != nil {
		return nil, err
	}
	netConds, netOps, err := s.checkNetworkProfile(ctx, rc.caller, ref, m)
	if err != nil {
		return nil, err
	}
	if modelChanged {
		if err := s.checkSize(ctx, next.Size()); err != nil {
			return nil, err
		}
	}
	if next.Capacity() > active || modelChanged && next.Capacity() > 0 {
		if err := s.checkImage(ctx, next, rc.caller); err != nil {
			return nil, err
		}
	}

	key := model.ScaleSetKey(ref)
	guardCond, guardOp, err := s.checkComputeQuota(ctx, ref, key, next, exists)
	if err != nil {
		return nil, err
	}
	op, ops := state.NewOperation("vmss.put", ref.Sub, s.opts.Location, ref.String(), next.Generation, now)
	// The resource group must not start being deleted under us, and the
	// subscription's usage must still be the one the quota was checked on.
	conds := []store.Cond{store.ModRevisionIs(key, rev), store.ModRevisionIs(model.ResourceGroupKey(ref.Sub, rg.Name), rgRev), guardCond}
	conds, ops = append(conds, netConds...), append(ops, netOps...)
	newRev, err := s.opts.Store.Txn(ctx, conds, append(ops, state.PutOp(key, next), guardOp)...)
	if err != nil {
		return nil, err
	}
	if patch {
		status = http.StatusOK
	}
	return &writeResult{status: status, set: next, rev: newRev, op: op}, nil
}

func (s *Server) deleteScaleSet(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	ref := s.ref(rc)
	set, rev, err := s.loadSet(ctx, ref)
	if err != nil {
		if errs.IsKind(err, errs.NotFound) {
			if _, _, err := s.loadRG(r, ref.Sub, ref.RG); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
		return err
	}
	if err := checkPreconditions(r, rev); err != nil {
		return err
	}
	set.Deleting = true
	set.Generation++
	op, ops := state.NewOperation("vmss.delete", ref.Sub, s.opts.Location, ref.String(), set.Generation, s.opts.Now())
	key := model.ScaleSetKey(ref)
	if _, err := s.opts.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(key, rev)}, append(ops, state.PutOp(key, set))...); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The scale set was modified concurrently; retry the request.")
		}
		return err
	}
	s.lroHeaders(w, r, op, rc.api)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

func (s *Server) scaleSetSKUs(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	set, _, err := s.loadSet(r.Context(), s.ref(rc))
	if err != nil {
		return err
	}
	type capacity struct {
		Minimum         int64  `json:"minimum"`
		Maximum         int64  `json:"maximum"`
		DefaultCapacity int64  `json:"defaultCapacity"`
		ScaleType       string `json:"scaleType"`
	}
	type item struct {
		ResourceType string         `json:"resourceType"`
		SKU          map[string]any `json:"sku"`
		Capacity     capacity       `json:"capacity"`
	}
	szs, err := s.sizes(r.Context())
	if err != nil {
		return err
	}
	sizes := []string{set.Size()}
	for _, sz := range szs {
		if !strings.EqualFold(sz.Name, set.Size()) {
			sizes = append(sizes, sz.Name)
		}
	}
	page := arm.Page[item]{}
	for _, sz := range sizes {
		page.Value = append(page.Value, item{
			ResourceType: typeVMSS,
			SKU:          map[string]any{"name": sz, "tier": "Standard"},
			Capacity:     capacity{Minimum: 0, Maximum: s.opts.MaxCapacity, DefaultCapacity: 1, ScaleType: "Automatic"},
		})
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}
