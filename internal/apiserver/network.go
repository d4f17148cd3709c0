package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"time"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/network"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/template"
)

// Microsoft.Network: virtual networks (and their subnets as child
// resources), public IP addresses, load balancers and network security
// groups. PUT is create-or-replace (Microsoft.Network does not merge),
// with If-Match/If-None-Match; the change is recorded in one transaction
// with an operation that is already complete, so PUT and DELETE answer
// with the LRO headers and the first poll says Succeeded. References to
// other resources must be visible to the caller (else 403
// LinkedAuthorizationFailed, whether or not they exist) and exist (else
// 400 InvalidResourceReference); what is referenced cannot be deleted.

// NetworkAPIVersions are the Microsoft.Network api-versions served: those
// of the Azure Stack hybrid profiles (2017-10-01 for 2018-03-01-hybrid and
// 2019-03-01-hybrid, 2018-11-01 for 2020-09-01-hybrid), the ones az uses,
// the public versions since, and the newest armnetwork's (v9: 2025-05-01).
var NetworkAPIVersions = set(
	"2015-06-15", "2016-03-30", "2016-09-01", "2016-12-01", "2017-03-01", "2017-06-01",
	"2017-08-01", "2017-09-01", "2017-10-01", "2017-11-01", "2018-01-01", "2018-02-01",
	"2018-04-01", "2018-06-01", "2018-07-01", "2018-08-01", "2018-10-01", "2018-11-01",
	"2018-12-01", "2019-02-01", "2019-04-01", "2019-06-01", "2019-07-01", "2019-08-01",
	"2019-09-01", "2019-11-01", "2019-12-01", "2020-03-01", "2020-04-01", "2020-05-01",
	"2020-06-01", "2020-07-01", "2020-08-01", "2020-11-01", "2021-02-01", "2021-03-01",
	"2021-05-01", "2021-08-01", "2022-01-01", "2022-05-01", "2022-07-01", "2022-09-01",
	"2022-11-01", "2023-02-01", "2023-04-01", "2023-05-01", "2023-06-01", "2023-09-01",
	"2023-11-01", "2024-01-01", "2024-03-01", "2024-05-01", "2024-07-01", "2024-10-01",
	"2025-01-01", "2025-03-01", "2025-05-01",
)

const netP = rgP + "/providers/Microsoft.Network"

func (s *Server) registerNetwork() {
	nv := NetworkAPIVersions
	var cv map[string]bool
	get, put, del := http.MethodGet, http.MethodPut, http.MethodDelete
	for _, k := range s.netKinds() {
		p := netP + "/" + k.typ + "/{name}"
		s.handle(get, subP+"/providers/Microsoft.Network/"+k.typ, nv, s.listNet(k))
		s.handle(get, netP+"/"+k.typ, nv, s.listNet(k))
		s.handle(put, p, nv, s.putNet(k))
		s.handle(get, p, nv, s.getNet(k))
		s.handle(del, p, nv, s.deleteNet(k))
	}
	sn := netP + "/virtualNetworks/{name}/subnets"
	s.handle(get, sn, nv, s.listSubnets)
	s.handle(put, sn+"/{subnet}", nv, s.putSubnet)
	s.handle(get, sn+"/{subnet}", nv, s.getSubnet)
	s.handle(del, sn+"/{subnet}", nv, s.deleteSubnet)
	nr := netP + "/networkSecurityGroups/{name}/securityRules"
	s.handle(get, nr, nv, s.nsgRuleView)
	s.handle(get, nr+"/{rule}", nv, s.nsgRuleView)
	s.handle(put, nr+"/{rule}", nv, s.nsgRuleWrite)
	s.handle(del, nr+"/{rule}", nv, s.nsgRuleWrite)
	lbp := netP + "/loadBalancers/{name}"
	for _, part := range []string{"frontendIPConfigurations", "backendAddressPools", "probes", "loadBalancingRules", "inboundNatRules"} {
		s.handle(get, lbp+"/"+part, nv, s.listLBParts(part))
		s.handle(get, lbp+"/"+part+"/{part}", nv, s.getLBPart(part))
	}
	// The read views of scale set NICs and public IPs take any api-version:
	// clients send the compute one (2017-03-30 in the hybrid profiles,
	// 2018-10-01 in armnetwork) or, pinned to a profile, its network one
	// (2018-11-01); any keeps them out of the compute types' advertised
	// versions.
	s.handle(get, vmssP+"/networkInterfaces", cv, s.listScaleSetNICs)
	s.handle(get, instP+"/networkInterfaces", cv, s.listInstanceNICs)
	s.handle(get, instP+"/networkInterfaces/{nic}", cv, s.getInstanceNIC)
	s.handle(get, instP+"/networkInterfaces/{nic}/ipConfigurations", cv, s.listInstanceNICIPConfigs)
	s.handle(get, vmssP+"/publicIPAddresses", cv, s.listScaleSetPublicIPs)
	s.handle(get, instP+"/networkInterfaces/{nic}/ipConfigurations/{ipc}/publicIPAddresses", cv, s.listScaleSetPublicIPs)
}

func (s *Server) publicPool() []netip.Prefix {
	if len(s.opts.PublicIPPool) > 0 {
		return s.opts.PublicIPPool
	}
	return network.DefaultPublicPool
}

// linkedAuthFailed is ARM's answer when the caller may not use a
// resource its request links to.
func linkedAuthFailed(c *Caller, action, scope, linked, target string) *errs.Error {
	return errs.New(errs.Forbidden, "LinkedAuthorizationFailed",
		"The client '%s' with object id '%s' has permission to perform action '%s' on scope '%s'; however, it does not have permission to perform action(s) '%s' on the linked scope(s) '%s' (respectively) or the linked scope(s) are invalid.",
		c.ClientID, c.ClientID, action, scope, linkAction(linked), linked).WithTarget(target)
}

// linkAction is the join action a reference needs.
func linkAction(id string) string {
	p, ok := network.ParseID(id)
	if !ok {
		return "Microsoft.Network/join/action"
	}
	return p.Namespace + "/" + strings.Join(p.Types, "/") + "/join/action"
}

// linked resolves a reference to another network resource for caller:
// 403 LinkedAuthorizationFailed unless its subscription is visible, 400
// InvalidResourceReference unless it exists. The record and its revision
// are returned.
func (s *Server) linked(ctx context.Context, c *Caller, ref network.Reference, action, scope, by string) (*model.NetResource, int64, error) {
	p, ok := network.ParseRef(ref.ID, ref.Kind)
	if !ok {
		return nil, 0, network.InvalidRef(ref.ID, by, ref.Target)
	}
	if !c.CanSee(p.Sub) {
		return nil, 0, linkedAuthFailed(c, action, scope, ref.ID, ref.Target)
	}
	rec, rev, err := state.Get[model.NetResource](ctx, s.opts.Store, p.Resource().Key())
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, network.InvalidRef(ref.ID, by, ref.Target)
	}
	if err != nil {
		return nil, 0, err
	}
	return rec, rev, nil
}

// lenient converts a JSON body toward the SDK model type t as ARM's JSON
// handling does ("50119" for an integer property, "true" for a boolean):
// az's templates send port numbers as strings.
func lenient(body []byte, t reflect.Type) []byte {
	var v any
	if json.Unmarshal(body, &v) != nil {
		return body
	}
	b, err := json.Marshal(template.CoerceTo(v, t))
	if err != nil {
		return body
	}
	return b
}

// netKind describes one top-level Microsoft.Network resource type.
type netKind struct {
	typ string // model.NetVirtualNetworks, ...
	// model is the SDK model type of a body.
	model reflect.Type
	// prepare decodes, normalises and validates a PUT body against the
	// current record (nil when new) and returns the model to store and
	// the extra conditions and writes of the transaction.
	prepare func(ctx context.Context, rc *reqCtx, ref model.NetRef, cur *model.NetResource, body []byte) (*netWrite, error)
	// render builds the wire body of a record.
	render func(ctx context.Context, rec *model.NetResource, rev int64) (any, error)
	// deleteCheck refuses to delete a resource in use and returns the
	// extra conditions and writes of the deletion.
	deleteCheck func(ctx context.Context, rec *model.NetResource) (*netWrite, error)
}

// netWrite is what prepare and deleteCheck add to a transaction.
type netWrite struct {
	model    any // the SDK model to store (prepare only)
	location string
	tags     map[string]*string
	address  string
	conds    []store.Cond
	ops      []store.Op
}

func (s *Server) netKinds() []*netKind {
	return []*netKind{s.vnetKind(), s.publicIPKind(), s.lbKind(), s.nsgKind()}
}

func (s *Server) netRef(rc *reqCtx, typ string) model.NetRef {
	return model.NetRef{Sub: rc.v("sub"), RG: rc.v("rg"), Type: typ, Name: rc.v("name")}
}

func netNotFound(ref model.NetRef) *errs.Error {
	return errs.New(errs.NotFound, "ResourceNotFound", "The Resource 'Microsoft.Network/%s/%s' under resource group '%s' was not found.", ref.Type, ref.Name, ref.RG)
}

// loadNet reads a network record: 404 when it does not exist.
func (s *Server) loadNet(ctx context.Context, ref model.NetRef) (*model.NetResource, int64, error) {
	rec, rev, err := state.Get[model.NetResource](ctx, s.opts.Store, ref.Key())
	if errors.Is(err, store.ErrNotFound) {
		return nil, 0, netNotFound(ref)
	}
	return rec, rev, err
}

// checkLocation requires the cloud's location, unchanged on update.
// decodeNetPut decodes the PUT body of a network resource of type typ and the
// model of the current record (nil when there is none), and checks the
// body's location (loc reads it).
func decodeNetPut[T any](s *Server, body []byte, cur *model.NetResource, typ string, loc func(*T) *string) (v, old *T, err error) {
	v = new(T)
	if err := decode(body, v); err != nil {
		return nil, nil, err
	}
	curLoc := ""
	if cur != nil {
		old = new(T)
		if err := json.Unmarshal(cur.Model, old); err != nil {
			return nil, nil, err
		}
		curLoc = strVal(loc(old))
	}
	if err := s.checkLocation(strVal(loc(v)), cur, curLoc, typ); err != nil {
		return nil, nil, err
	}
	return v, old, nil
}

func (s *Server) checkLocation(loc string, cur *model.NetResource, curLoc, typ string) error {
	if loc == "" {
		return errs.New(errs.Invalid, "LocationRequired", "The location property is required for this definition.").WithTarget("location")
	}
	if !strings.EqualFold(loc, s.opts.Location) {
		return errs.New(errs.Invalid, "LocationNotAvailableForResourceType",
			"The provided location '%s' is not available for resource type 'Microsoft.Network/%s'. List of available regions for the resource type is '%s'.", loc, typ, s.opts.Location).WithTarget("location")
	}
	if cur != nil && curLoc != "" && !strings.EqualFold(loc, curLoc) {
		return errs.InvalidParameter("location", "Changing property 'location' is not allowed.")
	}
	return nil
}

func checkNetTags(tags map[string]*string) error {
	if len(tags) == 0 {
		return nil
	}
	m := make(map[string]string, len(tags))
	for k, v := range tags {
		if v != nil {
			m[k] = *v
		} else {
			m[k] = ""
		}
	}
	return validateTags(m)
}

// completedOp records an operation that is already over: network changes
// are complete once written.
func (s *Server) completedOp(kind string, ref model.NetRef) (*model.Operation, store.Op) {
	now := s.opts.Now()
	op := &model.Operation{ID: state.NewID(), Sub: ref.Sub, Location: s.opts.Location, Kind: kind, Target: ref.Key(), Status: arm.StatusSucceeded, Start: now, End: &now}
	return op, state.PutOp(model.OperationKey(op.ID), op)
}

// readNetPut checks the name of the network resource (or child) a PUT
// writes, named by field in the errors, and reads the body, a JSON object.
func readNetPut(r *http.Request, name, field string) ([]byte, error) {
	if err := network.ValidName(name, field); err != nil {
		return nil, err
	}
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if body == nil || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return nil, errs.New(errs.Invalid, "InvalidRequestContent", "The request content must be a JSON object.")
	}
	return body, nil
}

func (s *Server) putNet(k *netKind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
		ref := s.netRef(rc, k.typ)
		body, err := readNetPut(r, ref.Name, "name")
		if err != nil {
			return err
		}
		unlock := s.subLocks.lock(ref.Sub)
		defer unlock()
		for attempt := 0; ; attempt++ {
			status, rec, rev, op, err := s.tryPutNet(r, rc, k, ref, body)
			if errors.Is(err, store.ErrConflict) {
				if attempt < 20 {
					continue
				}
				return errs.New(errs.Conflict, "Conflict", "The resource is being modified concurrently; retry the request.")
			}
			if err != nil {
				return err
			}
			out, err := k.render(r.Context(), rec, rev)
			if err != nil {
				return err
			}
			s.lroHeaders(w, r, op, rc.api)
			w.Header().Set("ETag", etag(rev))
			writeJSON(w, status, out)
			return nil
		}
	}
}

func (s *Server) tryPutNet(r *http.Request, rc *reqCtx, k *netKind, ref model.NetRef, body []byte) (int, *model.NetResource, int64, *model.Operation, error) {
	ctx := r.Context()
	rg, rgRev, err := s.loadRG(r, ref.Sub, ref.RG)
	if err != nil {
		return 0, nil, 0, nil, err
	}
	if rg.Deleting {
		return 0, nil, 0, nil, errs.New(errs.Conflict, "ResourceGroupBeingDeleted", "The resource group '%s' is being deleted.", rg.Name)
	}
	ref.RG = rg.Name
	cur, rev, err := s.loadNet(ctx, ref)
	if err != nil && !errs.IsKind(err, errs.NotFound) {
		return 0, nil, 0, nil, err
	}
	if err := checkPreconditions(r, rev); err != nil {
		return 0, nil, 0, nil, err
	}
	nw, err := k.prepare(ctx, rc, ref, cur, lenient(body, k.model))
	if err != nil {
		return 0, nil, 0, nil, err
	}
	if err := checkNetTags(nw.tags); err != nil {
		return 0, nil, 0, nil, err
	}
	b, err := json.Marshal(nw.model)
	if err != nil {
		return 0, nil, 0, nil, err
	}
	rec := &model.NetResource{Sub: ref.Sub, RG: rg.Name, Type: k.typ, Name: ref.Name, Model: b, ResourceGUID: state.NewID(), Created: s.opts.Now(), Address: nw.address}
	status := http.StatusCreated
	if cur != nil {
		status = http.StatusOK
		rec.Name, rec.ResourceGUID, rec.Created = cur.Name, cur.ResourceGUID, cur.Created
	}
	op, opPut := s.completedOp("network.put", ref)
	conds := append([]store.Cond{store.ModRevisionIs(ref.Key(), rev), store.ModRevisionIs(model.ResourceGroupKey(ref.Sub, rg.Name), rgRev)}, nw.conds...)
	newRev, err := s.opts.Store.Txn(ctx, conds, append([]store.Op{state.PutOp(ref.Key(), rec), opPut}, nw.ops...)...)
	if err != nil {
		return 0, nil, 0, nil, err
	}
	return status, rec, newRev, op, nil
}

func (s *Server) getNet(k *netKind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
		rec, rev, err := s.loadNet(r.Context(), s.netRef(rc, k.typ))
		if err != nil {
			return err
		}
		out, err := k.render(r.Context(), rec, rev)
		if err != nil {
			return err
		}
		w.Header().Set("ETag", etag(rev))
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

func (s *Server) listNet(k *netKind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
		ctx := r.Context()
		if rg := rc.v("rg"); rg != "" {
			if _, _, err := s.loadRG(r, rc.v("sub"), rg); err != nil {
				return err
			}
		}
		prefix := model.NetPrefix(k.typ, rc.v("sub"), rc.v("rg"))
		start, err := pageStart(rc, prefix, nil)
		if err != nil {
			return err
		}
		kvs, next, err := state.ListPage(ctx, s.opts.Store, prefix, start, s.opts.PageSize)
		if err != nil {
			return err
		}
		page := arm.Page[any]{Value: []any{}}
		for _, kv := range kvs {
			rec := &model.NetResource{}
			if err := json.Unmarshal(kv.Value, rec); err != nil {
				return err
			}
			out, err := k.render(ctx, rec, kv.ModRevision)
			if err != nil {
				return err
			}
			page.Value = append(page.Value, out)
		}
		if next != "" {
			page.NextLink = pageLink(r, prefix, next)
		}
		writeJSON(w, http.StatusOK, page)
		return nil
	}
}

func (s *Server) deleteNet(k *netKind) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
		ctx := r.Context()
		ref := s.netRef(rc, k.typ)
		unlock := s.subLocks.lock(ref.Sub)
		defer unlock()
		for attempt := 0; attempt < 20; attempt++ {
			rec, rev, err := s.loadNet(ctx, ref)
			if errs.IsKind(err, errs.NotFound) {
				if _, _, err := s.loadRG(r, ref.Sub, ref.RG); err != nil {
					return err
				}
				w.WriteHeader(http.StatusNoContent)
				return nil
			}
			if err != nil {
				return err
			}
			if err := checkPreconditions(r, rev); err != nil {
				return err
			}
			// The guard is read before the in-use checks: whoever starts
			// to reference the resource bumps it.
			guard := network.GuardKey(rec.Ref())
			guardRev, err := s.keyRev(ctx, guard)
			if err != nil {
				return err
			}
			nw, err := k.deleteCheck(ctx, rec)
			if err != nil {
				return err
			}
			op, opPut := s.completedOp("network.delete", ref)
			conds := append([]store.Cond{store.ModRevisionIs(ref.Key(), rev), store.ModRevisionIs(guard, guardRev)}, nw.conds...)
			_, err = s.opts.Store.Txn(ctx, conds, append([]store.Op{store.Delete(ref.Key()), store.Delete(guard), opPut}, nw.ops...)...)
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			if err != nil {
				return err
			}
			s.lroHeaders(w, r, op, rc.api)
			w.WriteHeader(http.StatusAccepted)
			return nil
		}
		return errs.New(errs.Conflict, "Conflict", "The resource is being modified concurrently; retry the request.")
	}
}

// touchGuard is the write that tells deleters of ref that it was just
// referenced (see deleteNet).
func (s *Server) touchGuard(ref model.NetRef) store.Op {
	return store.Put(network.GuardKey(ref), []byte(s.opts.Now().UTC().Format(time.RFC3339Nano)))
}

// netUsers are the scale sets and load balancers that may reference a
// network resource (all subscriptions': a reference is checked against
// the caller's visibility when it is made).
type netUsers struct {
	sets []*model.ScaleSet
	lbs  []*model.NetResource
}

func (s *Server) loadNetUsers(ctx context.Context) (*netUsers, error) {
	sets, _, err := state.List[model.ScaleSet](ctx, s.opts.Store, model.PrefixScaleSets)
	if err != nil {
		return nil, err
	}
	lbs, _, err := state.List[model.NetResource](ctx, s.opts.Store, model.PrefixNetwork+strings.ToLower(model.NetLoadBalancers)+"/")
	if err != nil {
		return nil, err
	}
	return &netUsers{sets: sets, lbs: lbs}, nil
}

// groupNetworkOps are the writes that remove a resource group's network
// resources and the addresses they hold (deleteResourceGroup adds them to
// its transaction).
func (s *Server) groupNetworkOps(ctx context.Context, sub, rg string) ([]store.Op, error) {
	var ops []store.Op
	for _, typ := range []string{model.NetVirtualNetworks, model.NetPublicIPs, model.NetLoadBalancers, model.NetSecurityGroups} {
		recs, _, err := state.List[model.NetResource](ctx, s.opts.Store, model.NetPrefix(typ, sub, rg))
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if rec.Address != "" {
				ops = append(ops, store.Delete(model.PublicAddrKey(rec.Address)))
			}
			if typ == model.NetVirtualNetworks {
				ops = append(ops, store.DeletePrefix(model.VNetAddrPrefix(rec.Ref())))
			}
		}
		ops = append(ops, store.DeletePrefix(model.NetPrefix(typ, sub, rg)),
			store.DeletePrefix(model.PrefixIPAM+"guard/"+strings.TrimPrefix(model.NetPrefix(typ, sub, rg), model.PrefixNetwork)))
	}
	return ops, nil
}
