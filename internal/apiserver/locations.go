package apiserver

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/vmssd/vmssd/internal/model"
)

// The cloud's locations (one) and its compute SKUs, as the subscriptions
// API and Microsoft.Compute/skus report them; az reads both when -l is
// omitted (vm image list --all, vm image show --urn) and in az vm list-skus.

type locationBody struct {
	ID                  string         `json:"id"`
	SubscriptionID      string         `json:"subscriptionId"`
	Name                string         `json:"name"`
	Type                string         `json:"type"`
	DisplayName         string         `json:"displayName"`
	RegionalDisplayName string         `json:"regionalDisplayName"`
	Metadata            locationDetail `json:"metadata"`
}

type locationDetail struct {
	RegionType     string `json:"regionType"`
	RegionCategory string `json:"regionCategory"`
	PhysicalLoc    string `json:"physicalLocation"`
}

// listLocations serves GET /subscriptions/{sub}/locations.
func (s *Server) listLocations(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	loc := s.opts.Location
	out := struct {
		Value []locationBody `json:"value"`
	}{Value: []locationBody{{
		ID: "/subscriptions/" + rc.v("sub") + "/locations/" + loc, SubscriptionID: rc.v("sub"),
		Name: loc, Type: "Region", DisplayName: loc, RegionalDisplayName: loc,
		Metadata: locationDetail{RegionType: "Physical", RegionCategory: "Recommended", PhysicalLoc: loc},
	}}}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type skuCapability struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

type skuLocationInfo struct {
	Location string   `json:"location"`
	Zones    []string `json:"zones"`
}

type resourceSKUBody struct {
	ResourceType string            `json:"resourceType"`
	Name         string            `json:"name"`
	Tier         string            `json:"tier,omitempty"`
	Size         string            `json:"size,omitempty"`
	Locations    []string          `json:"locations"`
	LocationInfo []skuLocationInfo `json:"locationInfo"`
	Capabilities []skuCapability   `json:"capabilities"`
	Restrictions []any             `json:"restrictions"`
}

// skuLocationFilter matches the $filter ARM's resource SKU list takes:
// "location eq 'westus'".
var skuLocationFilter = regexp.MustCompile(`(?i)^\s*location\s+eq\s+'([^']*)'\s*$`)

// renderSKU describes a VM size as a virtualMachines resource SKU.
func renderSKU(sz *model.VMSize, loc string) resourceSKUBody {
	tier, size, _ := strings.Cut(sz.Name, "_")
	if size == "" {
		tier, size = "", sz.Name
	}
	return resourceSKUBody{
		ResourceType: "virtualMachines", Name: sz.Name, Tier: tier, Size: size,
		Locations: []string{loc}, LocationInfo: []skuLocationInfo{{Location: loc, Zones: []string{}}},
		Capabilities: []skuCapability{
			{"vCPUs", strconv.Itoa(sz.VCPUs)},
			{"MemoryGB", strconv.FormatFloat(float64(sz.MemoryMB)/1024, 'f', -1, 64)},
			{"MaxDataDiskCount", strconv.Itoa(sz.MaxDataDiskCount)},
			{"OSVhdSizeMB", strconv.Itoa(sz.OSDiskSizeMB)},
			{"MaxResourceVolumeMB", "0"},
			{"LowPriorityCapable", "False"},
			{"PremiumIO", "False"},
			{"HyperVGenerations", "V1"},
		},
		Restrictions: []any{},
	}
}

// listComputeSKUs serves GET /subscriptions/{sub}/providers/Microsoft.Compute/skus:
// the VM size table as virtualMachines SKUs of the one location.
func (s *Server) listComputeSKUs(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	out := struct {
		Value []resourceSKUBody `json:"value"`
	}{Value: []resourceSKUBody{}}
	if f := rc.query.Get("$filter"); f != "" {
		if m := skuLocationFilter.FindStringSubmatch(f); m != nil && !strings.EqualFold(m[1], s.opts.Location) {
			writeJSON(w, http.StatusOK, out)
			return nil
		}
	}
	szs, err := s.sizes(r.Context())
	if err != nil {
		return err
	}
	for _, sz := range szs {
		out.Value = append(out.Value, renderSKU(sz, s.opts.Location))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
