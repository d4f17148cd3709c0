package apiserver

import (
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/vmssd/vmssd/internal/errs"
)

func set(vs ...string) map[string]bool {
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[v] = true
	}
	return m
}

// ComputeAPIVersions are the Microsoft.Compute api-versions served: the
// Azure Stack hybrid profiles (2017-03-30, 2017-12-01, 2020-06-01), the
// public versions since, and the newest armcompute (2026-04-01).
var ComputeAPIVersions = set(
	"2015-06-15", "2016-03-30", "2016-04-30-preview", "2017-03-30", "2017-12-01",
	"2018-04-01", "2018-06-01", "2018-10-01", "2019-03-01", "2019-07-01", "2019-12-01",
	"2020-06-01", "2020-12-01", "2021-03-01", "2021-04-01", "2021-07-01", "2021-11-01",
	"2022-03-01", "2022-08-01", "2022-11-01", "2023-03-01", "2023-07-01", "2023-09-01",
	"2024-03-01", "2024-07-01", "2024-11-01", "2025-04-01", "2025-11-01", "2026-04-01",
)

// ResourcesAPIVersions are the Microsoft.Resources api-versions served.
var ResourcesAPIVersions = set(
	"2016-02-01", "2016-06-01", "2016-09-01", "2017-05-10", "2018-02-01", "2018-05-01",
	"2019-05-01", "2019-05-10", "2019-07-01", "2019-08-01", "2019-10-01", "2020-01-01",
	"2020-06-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-01-01", "2022-09-01",
	"2022-12-01", "2023-07-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-03-01", "2025-04-01",
)

// SubscriptionsAPIVersions are the api-versions of the subscriptions API
// (subscriptions, their locations): az's profiles use 2016-06-01 (hybrid)
// and 2019-11-01 (latest).
var SubscriptionsAPIVersions = union(ResourcesAPIVersions, set("2015-11-01", "2019-06-01", "2019-11-01"))

// ResourceSKUsAPIVersions are the api-versions of Microsoft.Compute/skus:
// az's profiles use 2017-09-01 (2019-03-01-hybrid) and 2019-04-01.
var ResourceSKUsAPIVersions = set("2017-09-01", "2019-04-01", "2021-07-01")

func union(ms ...map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, m := range ms {
		for v := range m {
			out[v] = true
		}
	}
	return out
}

// AdminAPIVersions are the operator (Azure Stack admin style) api-versions.
var AdminAPIVersions = set("2015-11-01", "2015-12-01-preview", "2018-02-09", "2019-07-01", "2024-01-01")

var apiVersionRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}(-preview)?$`)

func checkAPIVersion(q url.Values, allowed map[string]bool, segs []string) (string, error) {
	v := q.Get("api-version")
	if v == "" {
		for k, vs := range q {
			if strings.EqualFold(k, "api-version") && len(vs) > 0 {
				v = vs[0]
			}
		}
	}
	if v == "" {
		return "", errs.New(errs.Invalid, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
	}
	if !apiVersionRE.MatchString(v) && v != "1.0" {
		return "", errs.New(errs.Invalid, "InvalidApiVersionParameter", "The api-version '%s' is invalid. The supported versions are '%s'.", v, list(allowed))
	}
	if allowed != nil && !allowed[v] {
		return "", errs.New(errs.Invalid, "NoRegisteredProviderFound",
			"No registered resource provider found for location 'local' and API version '%s' for type '%s'. The supported api-versions are '%s'.",
			v, resourceType(segs), list(allowed))
	}
	return v, nil
}

func list(m map[string]bool) string {
	vs := make([]string, 0, len(m))
	for v := range m {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return strings.Join(vs, ", ")
}

func resourceType(segs []string) string {
	for i := len(segs) - 2; i >= 0; i-- {
		if strings.EqualFold(segs[i], "providers") && i+2 < len(segs) {
			return segs[i+2]
		}
	}
	if len(segs) > 0 {
		return segs[len(segs)-1]
	}
	return ""
}

const (
	subP   = "subscriptions/{sub}"
	rgP    = subP + "/resourceGroups/{rg}"
	vmssP  = rgP + "/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}"
	instP  = vmssP + "/virtualMachines/{id}"
	locP   = subP + "/providers/Microsoft.Compute/locations/{loc}"
	imgP   = locP + "/publishers"
	adminP = subP + "/providers/Microsoft.Compute.Admin/locations/{loc}/artifactTypes/platformImage"
)

func (s *Server) register() {
	cv, rv, av := ComputeAPIVersions, ResourcesAPIVersions, AdminAPIVersions
	sv, skuv := SubscriptionsAPIVersions, ResourceSKUsAPIVersions
	get, put, post, del, patch := http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch

	s.handle(get, "metadata/endpoints", nil, s.metadataEndpoints).anon = true

	// Subscriptions and resource groups (Microsoft.Resources).
	s.handle(get, "subscriptions", sv, s.listSubscriptions)
	s.handle(get, subP, sv, s.getSubscription)
	s.handle(get, subP+"/locations", sv, s.listLocations)
	s.handle(get, subP+"/providers", rv, s.listProviders)
	s.handle(get, subP+"/providers/{ns}", rv, s.getProvider)
	s.handle(post, subP+"/providers/{ns}/register", rv, s.registerProvider)
	s.handle(get, "providers", rv, s.listProviders)
	s.handle(get, "providers/{ns}", rv, s.getProvider)
	s.handle(get, subP+"/resourcegroups", rv, s.listResourceGroups)
	s.handle(put, rgP, rv, s.putResourceGroup)
	s.handle(get, rgP, rv, s.getResourceGroup)
	s.handle(del, rgP, rv, s.deleteResourceGroup)
	s.handle(patch, rgP, rv, s.patchResourceGroup)
	s.registerDeployments()
	s.registerStorage()

	// Scale sets.
	s.handle(get, subP+"/providers/Microsoft.Compute/virtualMachineScaleSets", cv, s.listScaleSets)
	s.handle(get, locP+"/virtualMachineScaleSets", cv, s.listScaleSets)
	s.handle(get, rgP+"/providers/Microsoft.Compute/virtualMachineScaleSets", cv, s.listScaleSets)
	s.handle(put, vmssP, cv, s.putScaleSet)
	s.handle(patch, vmssP, cv, s.patchScaleSet)
	s.handle(get, vmssP, cv, s.getScaleSet)
	s.handle(del, vmssP, cv, s.deleteScaleSet)
	s.handle(get, vmssP+"/instanceView", cv, s.scaleSetInstanceView)
	s.handle(get, vmssP+"/skus", cv, s.scaleSetSKUs)
	s.registerRolling(cv) // before the generic action route
	s.handle(post, vmssP+"/{action}", cv, s.scaleSetAction)

	// Instances.
	s.handle(get, vmssP+"/virtualMachines", cv, s.listInstances)
	s.handle(get, instP, cv, s.getInstance)
	s.handle(put, instP, cv, s.putInstance)
	s.handle(del, instP, cv, s.deleteInstance)
	s.handle(get, instP+"/instanceView", cv, s.instanceView)
	s.handle(post, instP+"/retrieveBootDiagnosticsData", cv, s.retrieveBootDiagnostics)
	s.handle(get, instP+"/bootDiagnostics/serialConsole", cv, s.serialConsole)
	s.handle(post, instP+"/{action}", cv, s.instanceAction)

	// Microsoft.Network (network.go).
	s.registerNetwork()

	// Custom images: a tenant uploads an artifact, then names it in
	// osDisk.image.uri.
	s.handle(post, subP+"/providers/vmssd.Storage/artifacts", av, s.adminUploadArtifact)

	// VM sizes.
	s.handle(get, locP+"/vmSizes", cv, s.listVMSizes)
	s.handle(get, subP+"/providers/Microsoft.Compute/skus", skuv, s.listComputeSKUs)
	s.handle(get, locP+"/usages", cv, s.listUsages)

	// Operations.
	s.handle(get, locP+"/operations/{op}", nil, s.getOperation)

	// Platform images (read side).
	s.handle(get, imgP, cv, s.listPublishers)
	s.handle(get, imgP+"/{pub}/artifacttypes/vmimage/offers", cv, s.listOffers)
	s.handle(get, imgP+"/{pub}/artifacttypes/vmimage/offers/{offer}/skus", cv, s.listSKUs)
	s.handle(get, imgP+"/{pub}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions", cv, s.listVersions)
	s.handle(get, imgP+"/{pub}/artifacttypes/vmimage/offers/{offer}/skus/{sku}/versions/{ver}", cv, s.getVersion)

	// Operator APIs.
	op := func(r *route) { r.operator = true }
	op(s.handle(get, adminP, av, s.adminListImages))
	op(s.handle(put, adminP+"/publishers/{pub}/offers/{offer}/skus/{sku}/versions/{ver}", av, s.adminPutImage))
	op(s.handle(get, adminP+"/publishers/{pub}/offers/{offer}/skus/{sku}/versions/{ver}", av, s.adminGetImage))
	op(s.handle(del, adminP+"/publishers/{pub}/offers/{offer}/skus/{sku}/versions/{ver}", av, s.adminDeleteImage))
	op(s.handle(post, "providers/vmssd.Admin/artifacts", av, s.adminUploadArtifact))
	op(s.handle(get, "providers/Microsoft.Subscriptions.Admin/subscriptions", av, s.adminListSubscriptions))
	op(s.handle(put, "providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", av, s.adminPutSubscription))
	op(s.handle(get, "providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", av, s.adminGetSubscription))
	op(s.handle(del, "providers/Microsoft.Subscriptions.Admin/subscriptions/{id}", av, s.adminDeleteSubscription))
	op(s.handle(get, "providers/vmssd.Admin/vmSizes", av, s.adminListVMSizes))
	op(s.handle(put, "providers/vmssd.Admin/vmSizes/{name}", av, s.adminPutVMSize))
	op(s.handle(del, "providers/vmssd.Admin/vmSizes/{name}", av, s.adminDeleteVMSize))
	op(s.handle(get, "providers/vmssd.Admin/quotas", av, s.adminListQuotas))
	op(s.handle(put, "providers/vmssd.Admin/quotas/{id}", av, s.adminPutQuota))
	op(s.handle(get, "providers/vmssd.Admin/quotas/{id}", av, s.adminGetQuota))
	op(s.handle(del, "providers/vmssd.Admin/quotas/{id}", av, s.adminDeleteQuota))
	op(s.handle(get, "providers/vmssd.Admin/principals", av, s.adminListPrincipals))
	op(s.handle(put, "providers/vmssd.Admin/principals/{id}", av, s.adminPutPrincipal))
	op(s.handle(get, "providers/vmssd.Admin/principals/{id}", av, s.adminGetPrincipal))
	op(s.handle(del, "providers/vmssd.Admin/principals/{id}", av, s.adminDeletePrincipal))

	// Marketplace syndication and gallery items (marketplace.go, gallery.go).
	s.registerMarketplace(av)
}
