package template

import "strings"

// apiProfiles maps hybrid API profile names to the api-version of each
// resource type, for templates that set "apiProfile" instead of per-resource
// apiVersions (Azure Stack Hub templates). Sources: the Azure CLI's
// AZURE_API_PROFILES table (azure-cli-core profiles/_shared.py, the versions
// `az --profile <name>` calls) and Microsoft's "Resource provider API versions
// supported by profiles in Azure Stack Hub" (azure-stack-docs,
// azure-stack-profiles-azure-resource-manager-versions.md). A provider's
// default is keyed "namespace/*"; exceptions are keyed by full type.
var apiProfiles = map[string]map[string]string{
	"2018-03-01-hybrid": {
		"microsoft.compute/*":                       "2017-03-30",
		"microsoft.network/*":                       "2017-10-01",
		"microsoft.network/dnszones":                "2016-04-01",
		"microsoft.network/dnszones/a":              "2016-04-01",
		"microsoft.network/dnszones/cname":          "2016-04-01",
		"microsoft.storage/*":                       "2016-01-01",
		"microsoft.resources/*":                     "2018-02-01",
		"microsoft.resources/links":                 "2016-09-01",
		"microsoft.resources/subscriptions":         "2016-06-01",
		"microsoft.resources/tenants":               "2016-06-01",
		"microsoft.authorization/*":                 "2015-07-01",
		"microsoft.authorization/locks":             "2016-09-01",
		"microsoft.authorization/policyassignments": "2016-12-01",
		"microsoft.authorization/policydefinitions": "2016-12-01",
		"microsoft.keyvault/*":                      "2016-10-01",
		"microsoft.managedidentity/*":               "2018-11-30",
	},
	"2019-03-01-hybrid": {
		"microsoft.compute/*":                       "2017-12-01",
		"microsoft.compute/disks":                   "2017-03-30",
		"microsoft.compute/snapshots":               "2017-03-30",
		"microsoft.network/*":                       "2017-10-01",
		"microsoft.network/dnszones":                "2016-04-01",
		"microsoft.network/dnszones/a":              "2016-04-01",
		"microsoft.network/dnszones/cname":          "2016-04-01",
		"microsoft.storage/*":                       "2017-10-01",
		"microsoft.resources/*":                     "2018-05-01",
		"microsoft.resources/links":                 "2016-09-01",
		"microsoft.resources/subscriptions":         "2016-06-01",
		"microsoft.resources/tenants":               "2016-06-01",
		"microsoft.authorization/*":                 "2015-07-01",
		"microsoft.authorization/locks":             "2016-09-01",
		"microsoft.authorization/policyassignments": "2016-12-01",
		"microsoft.authorization/policydefinitions": "2016-12-01",
		"microsoft.keyvault/*":                      "2016-10-01",
		"microsoft.managedidentity/*":               "2018-11-30",
	},
	"2020-09-01-hybrid": {
		"microsoft.compute/*":                         "2020-06-01",
		"microsoft.compute/disks":                     "2019-07-01",
		"microsoft.compute/snapshots":                 "2019-07-01",
		"microsoft.compute/diskencryptionsets":        "2019-07-01",
		"microsoft.compute/diskaccesses":              "2020-05-01",
		"microsoft.compute/galleries":                 "2019-12-01",
		"microsoft.compute/galleries/images":          "2019-12-01",
		"microsoft.compute/galleries/images/versions": "2019-12-01",
		"microsoft.network/*":                         "2018-11-01",
		"microsoft.network/dnszones":                  "2016-04-01",
		"microsoft.network/dnszones/a":                "2016-04-01",
		"microsoft.network/dnszones/cname":            "2016-04-01",
		"microsoft.storage/*":                         "2019-06-01",
		"microsoft.resources/*":                       "2019-10-01",
		"microsoft.resources/links":                   "2016-09-01",
		"microsoft.resources/subscriptions":           "2016-06-01",
		"microsoft.resources/tenants":                 "2016-06-01",
		"microsoft.authorization/*":                   "2015-07-01",
		"microsoft.authorization/locks":               "2016-09-01",
		"microsoft.authorization/policyassignments":   "2016-12-01",
		"microsoft.authorization/policydefinitions":   "2016-12-01",
		"microsoft.keyvault/*":                        "2019-09-01",
		"microsoft.managedidentity/*":                 "2018-11-30",
	},
}

// APIProfiles lists the supported profile names.
func APIProfiles() []string {
	return []string{"2018-03-01-hybrid", "2019-03-01-hybrid", "2020-09-01-hybrid"}
}

// ProfileAPIVersion is the api-version a profile gives a resource type, or ""
// when the profile does not cover it.
func ProfileAPIVersion(profile, resourceType string) string {
	p, ok := apiProfiles[strings.ToLower(profile)]
	if !ok {
		return ""
	}
	t := strings.ToLower(resourceType)
	if v, ok := p[t]; ok {
		return v
	}
	ns, _, _ := strings.Cut(t, "/")
	return p[ns+"/*"]
}
