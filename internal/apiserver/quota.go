package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"hash/fnv"
	"math"
	"net/http"
	"strings"
	"sync"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// Per-subscription quotas (model.Quota). Usage is never stored: a write
// that could raise it counts it from the scale set records and commits only
// if the subscription's compute guard key (model.ComputeGuardKey) is still
// the one read before counting, and bumps it. Two writes can therefore not
// both pass on the same count, whichever server process makes them; the
// in-process lock below only keeps such writes from conflicting with each
// other and retrying.

// StorageUsage is implemented by an Artifacts that can count the unpacked
// bytes of the artifacts uploaded into a subscription.
type StorageUsage interface {
	StorageUsage(ctx context.Context, sub string) (int64, error)
}

// subLocks serialise quota-bound writes of one subscription in this process.
type subLocks struct{ mu [64]sync.Mutex }

func (l *subLocks) lock(sub string) func() {
	h := fnv.New32a()
	_, _ = h.Write([]byte(strings.ToLower(sub)))
	m := &l.mu[h.Sum32()%uint32(len(l.mu))]
	m.Lock()
	return m.Unlock
}

// computeUsage is a subscription's compute usage as counted at guardRev.
type computeUsage struct {
	total model.Usage
	// sets is the usage of each scale set, by store key.
	sets map[string]model.Usage
	// perRG counts scale sets by lower-cased resource group name.
	perRG    map[string]int64
	guardRev int64
	// sizes are the vCPUs of each size (lower-cased name).
	sizes map[string]int
}

// setUsageRecord is the part of a scale set record usage depends on;
// decoding only it keeps a count cheap whatever else the records hold.
type setUsageRecord struct {
	RG    string `json:"rg"`
	Model struct {
		SKU *struct {
			Name     *string `json:"name"`
			Capacity *int64  `json:"capacity"`
		} `json:"sku"`
	} `json:"model"`
}

// sizeCores maps lower-cased size names to their vCPUs.
func (s *Server) sizeCores(ctx context.Context) (map[string]int, error) {
	szs, _, err := state.List[model.VMSize](ctx, s.opts.Store, model.PrefixSizes)
	if err != nil {
		return nil, err
	}
	m := make(map[string]int, len(szs))
	for _, sz := range szs {
		m[strings.ToLower(sz.Name)] = sz.VCPUs
	}
	return m, nil
}

// countCompute counts sub's compute usage. The guard's revision is read
// first, so a write committed after it makes a transaction conditioned on
// guardRev fail.
func (s *Server) countCompute(ctx context.Context, sub string) (*computeUsage, error) {
	u := &computeUsage{sets: map[string]model.Usage{}, perRG: map[string]int64{}}
	kv, err := s.opts.Store.Get(ctx, model.ComputeGuardKey(sub))
	switch {
	case err == nil:
		u.guardRev = kv.ModRevision
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	if u.sizes, err = s.sizeCores(ctx); err != nil {
		return nil, err
	}
	kvs, _, err := s.opts.Store.List(ctx, model.ScaleSetPrefix(sub, ""))
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		var rec setUsageRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, err
		}
		size, capacity := model.DefaultSize, int64(0)
		if sku := rec.Model.SKU; sku != nil {
			if sku.Name != nil {
				size = *sku.Name
			}
			if sku.Capacity != nil {
				capacity = *sku.Capacity
			}
		}
		su := model.SetUsage(capacity, size, u.sizes)
		u.sets[string(kv.Key)] = su
		u.total = u.total.Add(su)
		u.perRG[strings.ToLower(rec.RG)]++
	}
	return u, nil
}

// guardOps are the condition and write that make a transaction valid only
// for the count taken at rev.
func guardOps(key string, rev int64) (store.Cond, store.Op) {
	return store.ModRevisionIs(key, rev), store.Put(key, []byte("1"))
}

// storageUsage counts the unpacked bytes uploaded into sub: by the
// Artifacts when they can, else from the sizes the grant records carry.
func (s *Server) storageUsage(ctx context.Context, sub string) (int64, error) {
	if su, ok := s.opts.Artifacts.(StorageUsage); ok {
		return su.StorageUsage(ctx, sub)
	}
	kvs, _, err := s.opts.Store.List(ctx, model.ArtifactGrantKey(sub, ""))
	if err != nil {
		return 0, err
	}
	var n int64
	for _, kv := range kvs {
		var g struct {
			UnpackedBytes int64 `json:"unpackedBytes"`
			SizeBytes     int64 `json:"sizeBytes"`
		}
		if json.Unmarshal(kv.Value, &g) != nil {
			continue // a bare marker: no size recorded
		}
		n += max(g.UnpackedBytes, g.SizeBytes)
	}
	return n, nil
}

// quotaOf reads sub's quota record (the defaults when there is none).
func (s *Server) quotaOf(ctx context.Context, sub string) (model.Quota, error) {
	q, _, err := state.Get[model.Quota](ctx, s.opts.Store, model.QuotaKey(sub))
	if errors.Is(err, store.ErrNotFound) {
		return model.Quota{Sub: strings.ToLower(sub)}.Effective(), nil
	}
	if err != nil {
		return model.Quota{}, err
	}
	return q.Effective(), nil
}

// quotaError is Azure's answer to a write that exceeds a quota: 409
// OperationNotAllowed, with a QuotaExceeded detail naming the usage.
func (s *Server) quotaError(ex *model.QuotaExcess) *errs.Error {
	msg := ex.Message(s.opts.Location)
	e := errs.New(errs.Conflict, "OperationNotAllowed", "%s", msg)
	e.Details = []*errs.Error{errs.New(errs.Conflict, "QuotaExceeded", "%s", msg).WithTarget(ex.Name)}
	return e
}

// ---- GET .../locations/{loc}/usages ----

type usageName struct {
	Value          string `json:"value"`
	LocalizedValue string `json:"localizedValue"`
}

type usageBody struct {
	Unit         string    `json:"unit"`
	CurrentValue int64     `json:"currentValue"`
	Limit        int64     `json:"limit"`
	Name         usageName `json:"name"`
}

// wireLimit renders a limit: unlimited (negative) as the largest value
// clients decode without overflow.
func wireLimit(v int64) int64 {
	if v < 0 {
		return math.MaxInt32
	}
	return v
}

// usages are the subscription's usages as Microsoft.Compute reports them;
// storage is in MiB so that currentValue fits the SDK's int32.
func (s *Server) usages(ctx context.Context, sub string) ([]usageBody, model.Usage, model.Quota, error) {
	q, err := s.quotaOf(ctx, sub)
	if err != nil {
		return nil, model.Usage{}, q, err
	}
	cu, err := s.countCompute(ctx, sub)
	if err != nil {
		return nil, model.Usage{}, q, err
	}
	u := cu.total
	if u.StorageBytes, err = s.storageUsage(ctx, sub); err != nil {
		return nil, u, q, err
	}
	item := func(name string, cur, limit int64) usageBody {
		return usageBody{Unit: "Count", CurrentValue: cur, Limit: wireLimit(limit), Name: usageName{Value: name, LocalizedValue: model.UsageTitles[name]}}
	}
	storageLimit := q.StorageBytes
	if storageLimit > 0 {
		storageLimit >>= 20
	}
	out := []usageBody{
		item(model.UsageCores, u.VCPUs, q.VCPUs),
		item(model.UsageVMs, u.Instances, q.Instances),
		item(model.UsageScaleSets, u.ScaleSets, q.ScaleSets),
		item(model.UsageStorage, (u.StorageBytes+(1<<20)-1)>>20, storageLimit),
	}
	return out, u, q, nil
}

func (s *Server) listUsages(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	out := struct {
		Value []usageBody `json:"value"`
	}{Value: []usageBody{}}
	if strings.EqualFold(rc.v("loc"), s.opts.Location) {
		us, _, _, err := s.usages(r.Context(), rc.v("sub"))
		if err != nil {
			return err
		}
		out.Value = us
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ---- operator API: /providers/vmssd.Admin/quotas/{id} ----

// quotaBody is a subscription's effective limits (negative: unlimited)
// and what it uses of them.
type quotaBody struct {
	ID             string      `json:"id"`
	SubscriptionID string      `json:"subscriptionId"`
	VCPUs          int64       `json:"vcpus"`
	Instances      int64       `json:"instances"`
	ScaleSets      int64       `json:"scaleSets"`
	StorageBytes   int64       `json:"storageBytes"`
	Usage          model.Usage `json:"usage"`
}

func quotaID(sub string) string { return "/providers/vmssd.Admin/quotas/" + sub }

func (s *Server) renderQuota(ctx context.Context, sub string) (*quotaBody, error) {
	_, u, q, err := s.usages(ctx, sub)
	if err != nil {
		return nil, err
	}
	sub = strings.ToLower(sub)
	return &quotaBody{ID: quotaID(sub), SubscriptionID: sub, VCPUs: q.VCPUs, Instances: q.Instances, ScaleSets: q.ScaleSets, StorageBytes: q.StorageBytes, Usage: u}, nil
}

// adminSubExists answers 404 SubscriptionNotFound for an unknown id.
func (s *Server) adminSubExists(ctx context.Context, id string) error {
	if _, err := s.opts.Store.Get(ctx, model.SubscriptionKey(id)); errors.Is(err, store.ErrNotFound) {
		return errs.New(errs.NotFound, "SubscriptionNotFound", "The subscription '%s' could not be found.", id)
	} else if err != nil {
		return err
	}
	return nil
}

// adminPutQuota sets some of a subscription's limits: fields left out keep
// their value, 0 restores the default, -1 means unlimited.
func (s *Server) adminPutQuota(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	id := rc.v("id")
	if err := s.adminSubExists(ctx, id); err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if body == nil {
		return errs.New(errs.Invalid, "InvalidRequestContent", "The request content is missing.")
	}
	var in struct {
		VCPUs        *int64 `json:"vcpus"`
		Instances    *int64 `json:"instances"`
		ScaleSets    *int64 `json:"scaleSets"`
		StorageBytes *int64 `json:"storageBytes"`
	}
	if err := decode(body, &in); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    *int64
	}{{"vcpus", in.VCPUs}, {"instances", in.Instances}, {"scaleSets", in.ScaleSets}, {"storageBytes", in.StorageBytes}} {
		if f.v != nil && *f.v < -1 {
			return errs.InvalidParameter(f.name, "The value %d of '%s' is not valid: use a limit, 0 for the default or -1 for unlimited.", *f.v, f.name)
		}
	}
	key := model.QuotaKey(id)
	for attempt := 0; ; attempt++ {
		q, rev, err := state.Get[model.Quota](ctx, s.opts.Store, key)
		if errors.Is(err, store.ErrNotFound) {
			q, rev = &model.Quota{}, 0
		} else if err != nil {
			return err
		}
		q.Sub = strings.ToLower(id)
		set := func(dst *int64, v *int64) {
			if v != nil {
				*dst = *v
			}
		}
		set(&q.VCPUs, in.VCPUs)
		set(&q.Instances, in.Instances)
		set(&q.ScaleSets, in.ScaleSets)
		set(&q.StorageBytes, in.StorageBytes)
		// The subscription must not be deleted meanwhile: its deletion
		// removes the quota record.
		subKV, err := s.opts.Store.Get(ctx, model.SubscriptionKey(id))
		if err != nil {
			return s.adminSubExists(ctx, id)
		}
		conds := []store.Cond{store.ModRevisionIs(key, rev), store.ModRevisionIs(model.SubscriptionKey(id), subKV.ModRevision)}
		_, err = s.opts.Store.Txn(ctx, conds, state.PutOp(key, q))
		if errors.Is(err, store.ErrConflict) && attempt < 20 {
			continue
		}
		if errors.Is(err, store.ErrConflict) {
			return errs.New(errs.Conflict, "Conflict", "The quota was modified concurrently; retry the request.")
		}
		if err != nil {
			return err
		}
		break
	}
	out, err := s.renderQuota(ctx, id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) adminGetQuota(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	if err := s.adminSubExists(r.Context(), rc.v("id")); err != nil {
		return err
	}
	out, err := s.renderQuota(r.Context(), rc.v("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// adminDeleteQuota restores the defaults.
func (s *Server) adminDeleteQuota(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.deleteRecord(w, r, model.QuotaKey(rc.v("id")))
}

func (s *Server) adminListQuotas(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	subs, _, err := state.List[model.Subscription](r.Context(), s.opts.Store, model.PrefixSubscriptions)
	if err != nil {
		return err
	}
	out := struct {
		Value []*quotaBody `json:"value"`
	}{Value: []*quotaBody{}}
	for _, sub := range subs {
		q, err := s.renderQuota(r.Context(), sub.ID)
		if err != nil {
			return err
		}
		out.Value = append(out.Value, q)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// checkComputeQuota counts the subscription's usage and refuses a scale set
// write that would raise it beyond the quota, or add a scale set beyond a
// resource group's bound. It returns the guard condition and write that the
// scale set's transaction must carry.
func (s *Server) checkComputeQuota(ctx context.Context, ref model.SetRef, key string, next *model.ScaleSet, exists bool) (store.Cond, store.Op, error) {
	u, err := s.countCompute(ctx, ref.Sub)
	if err != nil {
		return store.Cond{}, store.Op{}, err
	}
	if !exists && u.perRG[strings.ToLower(ref.RG)] >= int64(s.opts.MaxScaleSetsPerGroup) {
		return store.Cond{}, store.Op{}, errs.New(errs.Conflict, "ResourceQuotaExceeded",
			"Creating the scale set '%s' would exceed the limit of %d resources of type '%s' in resource group '%s'.",
			ref.Name, s.opts.MaxScaleSetsPerGroup, typeVMSS, ref.RG)
	}
	q, err := s.quotaOf(ctx, ref.Sub)
	if err != nil {
		return store.Cond{}, store.Op{}, err
	}
	after := u.total.Sub(u.sets[key]).Add(model.SetUsage(next.Capacity(), next.Size(), u.sizes))
	if ex := q.Check(u.total, after); ex != nil {
		return store.Cond{}, store.Op{}, s.quotaError(ex)
	}
	c, op := guardOps(model.ComputeGuardKey(ref.Sub), u.guardRev)
	return c, op, nil
}
