// Package catalog holds the pure rules of the local image catalog: how image
// versions order, how an imageReference resolves to one exact version
// ("latest" means the newest version available at that moment, V1), and the
// ImageNotFound error a missing pinned version gives (V3).
package catalog

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
)

// versionRE is Major.Minor.Build with decimal components, as Azure image
// versions are.
var versionRE = regexp.MustCompile(`^[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}$`)

// ValidVersion reports whether v is a well-formed image version.
func ValidVersion(v string) bool { return versionRE.MatchString(v) }

// CompareVersions orders versions numerically component by component
// ("1.10.0" > "1.9.3"); a shorter version with equal prefix sorts first.
// Malformed versions sort before well-formed ones, then as strings.
func CompareVersions(a, b string) int {
	va, vb := ValidVersion(a), ValidVersion(b)
	switch {
	case !va && !vb:
		return strings.Compare(a, b)
	case !va:
		return -1
	case !vb:
		return 1
	}
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) && i < len(pb); i++ {
		x, _ := strconv.ParseUint(pa[i], 10, 64)
		y, _ := strconv.ParseUint(pb[i], 10, 64)
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return len(pa) - len(pb)
}

// SortVersions sorts image versions ascending by version.
func SortVersions(vs []model.ImageVersion) {
	sort.SliceStable(vs, func(i, j int) bool { return CompareVersions(vs[i].Version, vs[j].Version) < 0 })
}

// Ref is a platform image reference.
type Ref struct {
	Publisher, Offer, SKU, Version string
}

func (r Ref) String() string {
	return fmt.Sprintf("%s:%s:%s:%s", r.Publisher, r.Offer, r.SKU, r.Version)
}

// NotFound is the error a missing platform image gives, as Azure Stack words it.
func NotFound(r Ref) *errs.Error {
	return errs.New(errs.NotFound, "ImageNotFound",
		"The platform image '%s' is not available. Verify that all fields in the storage profile are correct.", r).
		WithTarget("imageReference")
}

// Resolve picks the image version a reference means among the catalog's
// versions: the newest one for "latest" (or an empty version), the exact one
// otherwise. Names compare case-insensitively.
func Resolve(r Ref, all []model.ImageVersion) (model.ImageVersion, *errs.Error) {
	var best *model.ImageVersion
	latest := r.Version == "" || strings.EqualFold(r.Version, "latest")
	for i := range all {
		v := &all[i]
		if !strings.EqualFold(v.Publisher, r.Publisher) || !strings.EqualFold(v.Offer, r.Offer) || !strings.EqualFold(v.SKU, r.SKU) {
			continue
		}
		if latest {
			if best == nil || CompareVersions(v.Version, best.Version) > 0 {
				best = v
			}
		} else if v.Version == r.Version || CompareVersions(v.Version, r.Version) == 0 && ValidVersion(r.Version) {
			best = v
			break
		}
	}
	if best == nil {
		if latest {
			r.Version = "latest"
		}
		return model.ImageVersion{}, NotFound(r)
	}
	return *best, nil
}
