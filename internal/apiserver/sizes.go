package apiserver

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// The VM size table: what sku.name means in vCPUs and memory. Tenants read
// it (vmSizes); operators edit it (vmssd.Admin/vmSizes).

func (s *Server) sizes(ctx context.Context) ([]*model.VMSize, error) {
	szs, _, err := state.List[model.VMSize](ctx, s.opts.Store, model.PrefixSizes)
	if err != nil {
		return nil, err
	}
	sort.Slice(szs, func(i, j int) bool { return szs[i].Name < szs[j].Name })
	return szs, nil
}

// checkSize rejects a sku.name that is not in the table.
func (s *Server) checkSize(ctx context.Context, name string) error {
	_, _, err := state.Get[model.VMSize](ctx, s.opts.Store, model.SizeKey(name))
	if errors.Is(err, store.ErrNotFound) {
		szs, _ := s.sizes(ctx)
		names := make([]string, 0, len(szs))
		for _, sz := range szs {
			names = append(names, sz.Name)
		}
		return errs.InvalidParameter("sku.name", "The value '%s' provided for the VM size is not valid. The sizes available in location '%s' are: %s.", name, s.opts.Location, strings.Join(names, ", "))
	}
	return err
}

func (s *Server) listVMSizes(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	out := struct {
		Value []map[string]any `json:"value"`
	}{Value: []map[string]any{}}
	if strings.EqualFold(rc.v("loc"), s.opts.Location) {
		szs, err := s.sizes(r.Context())
		if err != nil {
			return err
		}
		for _, sz := range szs {
			out.Value = append(out.Value, map[string]any{
				"name": sz.Name, "numberOfCores": sz.VCPUs, "memoryInMB": sz.MemoryMB,
				"osDiskSizeInMB": sz.OSDiskSizeMB, "resourceDiskSizeInMB": 0, "maxDataDiskCount": sz.MaxDataDiskCount,
			})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) adminListVMSizes(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	szs, err := s.sizes(r.Context())
	if err != nil {
		return err
	}
	out := struct {
		Value []*model.VMSize `json:"value"`
	}{Value: szs}
	writeJSON(w, http.StatusOK, out)
	return nil
}

var sizeNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)

func (s *Server) adminPutVMSize(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	name := rc.v("name")
	if !sizeNameRE.MatchString(name) {
		return errs.InvalidParameter("name", "The VM size name '%s' is not valid.", name)
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if body == nil {
		return errs.New(errs.Invalid, "InvalidRequestContent", "The request content is missing.")
	}
	var in model.VMSize
	if err := decode(body, &in); err != nil {
		return err
	}
	in.Name = name
	if in.VCPUs < 1 || in.VCPUs > 64 {
		return errs.InvalidParameter("numberOfCores", "numberOfCores must be between 1 and 64.")
	}
	if in.MemoryMB < 64 || in.MemoryMB > 1<<20 {
		return errs.InvalidParameter("memoryInMB", "memoryInMB must be between 64 and 1048576.")
	}
	if in.OSDiskSizeMB == 0 {
		in.OSDiskSizeMB = 1047552
	}
	status := http.StatusCreated
	if _, err := s.opts.Store.Get(r.Context(), model.SizeKey(name)); err == nil {
		status = http.StatusOK
	}
	if _, err := s.opts.Store.Txn(r.Context(), nil, state.PutOp(model.SizeKey(name), &in)); err != nil {
		return err
	}
	writeJSON(w, status, &in)
	return nil
}

func (s *Server) adminDeleteVMSize(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	return s.deleteRecord(w, r, model.SizeKey(rc.v("name")))
}
