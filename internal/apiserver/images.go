package apiserver

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/vmssd/vmssd/internal/catalog"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
)

func (s *Server) images(ctx context.Context, rc *reqCtx) ([]model.ImageVersion, error) {
	if !strings.EqualFold(rc.v("loc"), s.opts.Location) {
		return nil, nil
	}
	vs, _, err := state.List[model.ImageVersion](ctx, s.opts.Store, model.PrefixImages)
	if err != nil {
		return nil, err
	}
	out := make([]model.ImageVersion, 0, len(vs))
	for _, v := range vs {
		if (rc.v("pub") == "" || strings.EqualFold(v.Publisher, rc.v("pub"))) &&
			(rc.v("offer") == "" || strings.EqualFold(v.Offer, rc.v("offer"))) &&
			(rc.v("sku") == "" || strings.EqualFold(v.SKU, rc.v("sku"))) {
			out = append(out, *v)
		}
	}
	return out, nil
}

func imageBase(sub, loc string) string {
	return "/Subscriptions/" + sub + "/Providers/Microsoft.Compute/Locations/" + loc + "/Publishers/"
}

// names lists distinct names with their ids, sorted.
func (s *Server) writeNames(w http.ResponseWriter, rc *reqCtx, vs []model.ImageVersion, name func(model.ImageVersion) string, id func(model.ImageVersion) string) {
	seen := map[string]bool{}
	out := []*armcompute.VirtualMachineImageResource{}
	for _, v := range vs {
		n := name(v)
		if seen[strings.ToLower(n)] {
			continue
		}
		seen[strings.ToLower(n)] = true
		out = append(out, &armcompute.VirtualMachineImageResource{Name: ptr(n), Location: ptr(s.opts.Location), ID: ptr(id(v))})
	}
	sort.Slice(out, func(i, j int) bool { return strings.ToLower(*out[i].Name) < strings.ToLower(*out[j].Name) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listPublishers(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	vs, err := s.images(r.Context(), rc)
	if err != nil {
		return err
	}
	base := imageBase(rc.v("sub"), s.opts.Location)
	s.writeNames(w, rc, vs, func(v model.ImageVersion) string { return v.Publisher },
		func(v model.ImageVersion) string { return base + v.Publisher })
	return nil
}

func (s *Server) listOffers(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	vs, err := s.images(r.Context(), rc)
	if err != nil {
		return err
	}
	base := imageBase(rc.v("sub"), s.opts.Location)
	s.writeNames(w, rc, vs, func(v model.ImageVersion) string { return v.Offer },
		func(v model.ImageVersion) string {
			return base + v.Publisher + "/ArtifactTypes/VMImage/Offers/" + v.Offer
		})
	return nil
}

func (s *Server) listSKUs(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	vs, err := s.images(r.Context(), rc)
	if err != nil {
		return err
	}
	base := imageBase(rc.v("sub"), s.opts.Location)
	s.writeNames(w, rc, vs, func(v model.ImageVersion) string { return v.SKU },
		func(v model.ImageVersion) string {
			return base + v.Publisher + "/ArtifactTypes/VMImage/Offers/" + v.Offer + "/Skus/" + v.SKU
		})
	return nil
}

func versionID(sub, loc string, v model.ImageVersion) string {
	return imageBase(sub, loc) + v.Publisher + "/ArtifactTypes/VMImage/Offers/" + v.Offer + "/Skus/" + v.SKU + "/Versions/" + v.Version
}

// listVersions supports $orderby=name [asc|desc] and $top, ordering
// versions numerically.
func (s *Server) listVersions(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	vs, err := s.images(r.Context(), rc)
	if err != nil {
		return err
	}
	catalog.SortVersions(vs)
	switch ob := strings.ToLower(strings.TrimSpace(rc.query.Get("$orderby"))); ob {
	case "", "name", "name asc":
	case "name desc":
		slices.Reverse(vs)
	default:
		return errs.InvalidParameter("$orderby", "The $orderby value '%s' is not supported; use 'name asc' or 'name desc'.", ob)
	}
	if t := rc.query.Get("$top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 {
			return errs.InvalidParameter("$top", "The $top value '%s' is not a non-negative integer.", t)
		}
		if n < len(vs) {
			vs = vs[:n]
		}
	}
	if strings.EqualFold(rc.query.Get("$expand"), "properties") {
		out := make([]*armcompute.VirtualMachineImage, 0, len(vs))
		for _, v := range vs {
			out = append(out, s.renderImage(rc.v("sub"), v))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	out := make([]*armcompute.VirtualMachineImageResource, 0, len(vs))
	for _, v := range vs {
		out = append(out, &armcompute.VirtualMachineImageResource{Name: ptr(v.Version), Location: ptr(s.opts.Location), ID: ptr(versionID(rc.v("sub"), s.opts.Location, v))})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) renderImage(sub string, v model.ImageVersion) *armcompute.VirtualMachineImage {
	os := armcompute.OperatingSystemTypes(v.OSType)
	return &armcompute.VirtualMachineImage{
		Name: ptr(v.Version), Location: ptr(s.opts.Location), ID: ptr(versionID(sub, s.opts.Location, v)),
		Properties: &armcompute.VirtualMachineImageProperties{
			OSDiskImage:                  &armcompute.OSDiskImage{OperatingSystem: &os},
			DataDiskImages:               []*armcompute.DataDiskImage{},
			HyperVGeneration:             ptr(armcompute.HyperVGenerationTypesV1),
			Architecture:                 ptr(armcompute.ArchitectureTypesX64),
			AutomaticOSUpgradeProperties: &armcompute.AutomaticOSUpgradeProperties{AutomaticOSUpgradeSupported: ptr(false)},
		},
	}
}

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	vs, err := s.images(r.Context(), rc)
	if err != nil {
		return err
	}
	want := rc.v("ver")
	var found *model.ImageVersion
	if strings.EqualFold(want, "latest") {
		catalog.SortVersions(vs)
		if len(vs) > 0 {
			found = &vs[len(vs)-1]
		}
	} else {
		for i := range vs {
			if catalog.CompareVersions(vs[i].Version, want) == 0 {
				found = &vs[i]
			}
		}
	}
	if found == nil {
		return errs.New(errs.NotFound, "NotFound", "Artifact: VMImage was not found.")
	}
	writeJSON(w, http.StatusOK, s.renderImage(rc.v("sub"), *found))
	return nil
}
