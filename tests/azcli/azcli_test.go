package azcli

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestAzureCLI: register, log in as the banner prints it, then every scale
// set command az users run against vmssd, each checked through the API.
func TestAzureCLI(t *testing.T) {
	requireTools(t)
	e := testenv.Start(t, testenv.Options{})
	proxy := startDeadProxy(t)
	a := newAZ(t, proxy)
	defer func() {
		if n := proxy.conns.Load(); n > 0 {
			t.Errorf("az opened %d connection(s) through the proxy in all: it tried to reach something other than vmssd", n)
		}
	}()

	// The banner's commands, run as printed (one shell, so that its export
	// of REQUESTS_CA_BUNDLE holds for the az commands after it).
	cmds := e.Server.AzureCLICommands()
	banner := e.Server.AzureCLIBanner()
	for _, c := range cmds {
		if !strings.Contains(banner, c) {
			t.Fatalf("banner does not print %q:\n%s", c, banner)
		}
	}
	start, before := time.Now(), proxy.conns.Load()
	if out, errOut, err := a.shell(strings.Join(cmds, "\n")); err != nil {
		t.Fatalf("banner commands: %v\n%s\n%s%s", err, strings.Join(cmds, "\n"), out, errOut)
	}
	t.Logf("register and login as printed (%d commands): %.1fs", len(cmds), time.Since(start).Seconds())
	if n := proxy.conns.Load() - before; n > 0 {
		t.Errorf("register and login opened %d connection(s) through the proxy (%s)", n, proxy.requests())
	}
	a.setenv("REQUESTS_CA_BUNDLE", e.Server.CAFile)

	var account struct {
		ID, TenantID string
		User         struct{ Name, Type string }
	}
	a.json(&account, "account", "show")
	if account.ID != e.Sub || account.TenantID != "adfs" || account.User.Name != "operator" || account.User.Type != "servicePrincipal" {
		t.Fatalf("az account show: %+v", account)
	}
	// A non-GUID tenant name resolves (az asks {loginEndpoint}/NAME/.well-known/openid-configuration).
	a.run("login", "--service-principal", "-u", "operator", "-p", e.Server.Client.ClientSecret, "--tenant", "vmssd", "-o", "none")

	// Resource groups.
	a.run("group", "create", "-n", "rg1", "-l", "local", "-o", "none")
	if r := e.Do(http.MethodGet, e.RGPath("rg1"), nil); r.Status != http.StatusOK {
		t.Fatalf("rg1 after az group create: %d %s", r.Status, r.Body)
	}
	if got := a.strs("[].name", "group", "list"); !slices.Contains(got, "rg1") {
		t.Errorf("az group list: %v", got)
	}
	if got := a.strs("[location]", "group", "show", "-n", "rg1"); !slices.Equal(got, []string{"local"}) {
		t.Errorf("az group show: %v", got)
	}

	// Locations, images, sizes, SKUs, providers: with and without -l (az
	// lists the subscription's locations when -l is omitted).
	if got := a.strs("[].name", "account", "list-locations"); !slices.Equal(got, []string{"local"}) {
		t.Errorf("az account list-locations: %v", got)
	}
	want := []string{"vmssd:demo:guest:1.0.0", "vmssd:demo:guest:1.1.0"}
	if got := a.strs("[].urn", "vm", "image", "list", "-l", "local", "-p", "vmssd", "--all"); !slices.Equal(got, want) {
		t.Errorf("az vm image list -l local: %v, want %v", got, want)
	}
	if got := a.strs("[].urn", "vm", "image", "list", "-p", "vmssd", "--all"); !slices.Equal(got, want) {
		t.Errorf("az vm image list --all: %v, want %v", got, want)
	}
	if got := a.strs("[name]", "vm", "image", "show", "-l", "local", "--urn", want[0]); !slices.Equal(got, []string{"1.0.0"}) {
		t.Errorf("az vm image show -l local: %v", got)
	}
	if got := a.strs("[name]", "vm", "image", "show", "--urn", want[1]); !slices.Equal(got, []string{"1.1.0"}) {
		t.Errorf("az vm image show: %v", got)
	}
	sizes := a.strs("[].name", "vm", "list-sizes", "-l", "local")
	if len(sizes) == 0 || !slices.Contains(sizes, "Standard_A1") {
		t.Errorf("az vm list-sizes: %v", sizes)
	}
	if got := a.strs("[?resourceType=='virtualMachines'].name", "vm", "list-skus", "-l", "local"); !slices.Equal(got, sizes) {
		t.Errorf("az vm list-skus: %v, want the sizes %v", got, sizes)
	}
	if got := a.strs("resourceTypes[?resourceType=='virtualMachineScaleSets'].apiVersions[]", "provider", "show", "-n", "Microsoft.Compute"); !slices.Contains(got, "2020-06-01") {
		t.Errorf("az provider show -n Microsoft.Compute: virtualMachineScaleSets api-versions %v", got)
	}
	if got := a.strs("[registrationState]", "provider", "show", "-n", "Microsoft.Network"); !slices.Equal(got, []string{"Registered"}) {
		t.Errorf("az provider show -n Microsoft.Network: %v", got)
	}

	// A Manual scale set, created with az's generic resource command (which
	// resolves the api-version from the provider's resource types).
	a.run("resource", "create", "-g", "rg1", "-n", "web", "--resource-type", "Microsoft.Compute/virtualMachineScaleSets",
		"--is-full-object", "--properties", "@"+scaleSetBody(t, 2, "Manual", "1.0.0"), "-o", "none")
	waitVMs(t, e, "rg1", "web", "2 running instances", func(m map[string]vm) bool {
		return len(m) == 2 && m["0"].power() == "PowerState/running" && m["1"].power() == "PowerState/running"
	})
	if got := a.strs("[].name", "vmss", "list", "-g", "rg1"); !slices.Equal(got, []string{"web"}) {
		t.Errorf("az vmss list: %v", got)
	}
	var set struct {
		VirtualMachineProfile struct {
			StorageProfile struct {
				OSDisk struct {
					CreateOption, Caching, OSType string
					DiskSizeGB                    int `json:"diskSizeGb"`
					ManagedDisk                   struct{ StorageAccountType string }
				}
			}
			NetworkProfile struct {
				NetworkInterfaceConfigurations []struct {
					Name    string
					Primary bool
				}
			}
		}
	}
	a.json(&set, "vmss", "show", "-g", "rg1", "-n", "web")
	disk := set.VirtualMachineProfile.StorageProfile.OSDisk
	if disk.CreateOption != "FromImage" || disk.Caching != "ReadWrite" || disk.OSType != "Linux" || disk.DiskSizeGB <= 0 || disk.ManagedDisk.StorageAccountType == "" {
		t.Errorf("az vmss show: osDisk %+v", disk)
	}
	if nics := set.VirtualMachineProfile.NetworkProfile.NetworkInterfaceConfigurations; len(nics) != 1 || !nics[0].Primary {
		t.Errorf("az vmss show: networkProfile NICs %+v", nics)
	}
	if got := a.strs("[].instanceId", "vmss", "list-instances", "-g", "rg1", "-n", "web"); !slices.Equal(got, []string{"0", "1"}) {
		t.Errorf("az vmss list-instances: %v", got)
	}
	if got := a.strs("statuses[].code", "vmss", "get-instance-view", "-g", "rg1", "-n", "web", "--instance-id", "0"); !slices.Contains(got, "PowerState/running") {
		t.Errorf("az vmss get-instance-view: %v", got)
	}
	// No load balancer here: az says so, it does not crash on the model.
	if out, errOut, err := a.try("vmss", "list-instance-connection-info", "-g", "rg1", "-n", "web"); err == nil ||
		!strings.Contains(errOut, "No load balancer exists") || strings.Contains(errOut, "Traceback") {
		t.Errorf("az vmss list-instance-connection-info: err %v\n%s%s", err, out, errOut)
	}

	// Scale: one GET, one PUT and the operation polls, paced by Retry-After.
	start = time.Now()
	a.run("vmss", "scale", "-g", "rg1", "-n", "web", "--new-capacity", "3", "-o", "none")
	t.Logf("az vmss scale 2 -> 3 instances took %.2fs (az's own start-up included)", time.Since(start).Seconds())
	waitVMs(t, e, "rg1", "web", "3 instances", func(m map[string]vm) bool { return len(m) == 3 })

	// Manual upgrade: a model change reaches instances only when asked.
	a.run("vmss", "update", "-g", "rg1", "-n", "web", "--set", "virtualMachineProfile.storageProfile.imageReference.version=1.1.0", "-o", "none")
	m := vms(t, e, "rg1", "web")
	for id, v := range m {
		if v.Properties.LatestModelApplied || v.version() != "1.0.0" {
			t.Errorf("after az vmss update (Manual), instance %s: latest=%v version %s", id, v.Properties.LatestModelApplied, v.version())
		}
	}
	a.run("vmss", "update-instances", "-g", "rg1", "-n", "web", "--instance-ids", "0", "-o", "none")
	waitVMs(t, e, "rg1", "web", "instance 0 on 1.1.0", func(m map[string]vm) bool {
		return m["0"].Properties.LatestModelApplied && m["0"].version() == "1.1.0" && !m["1"].Properties.LatestModelApplied
	})

	// Power actions on single instances.
	for _, step := range []struct {
		args  []string
		id    string
		power string
	}{
		{[]string{"stop", "--instance-ids", "1"}, "1", "PowerState/stopped"},
		{[]string{"start", "--instance-ids", "1"}, "1", "PowerState/running"},
		{[]string{"restart", "--instance-ids", "1"}, "1", "PowerState/running"},
		{[]string{"deallocate", "--instance-ids", "2"}, "2", "PowerState/deallocated"},
		{[]string{"reimage", "--instance-id", "0"}, "0", "PowerState/running"},
	} {
		a.run(append(append([]string{"vmss"}, step.args...), "-g", "rg1", "-n", "web", "-o", "none")...)
		waitVMs(t, e, "rg1", "web", "instance "+step.id+" "+step.power, func(m map[string]vm) bool {
			return m[step.id].power() == step.power
		})
	}
	a.run("vmss", "delete-instances", "-g", "rg1", "-n", "web", "--instance-ids", "2", "-o", "none")
	waitVMs(t, e, "rg1", "web", "instances 0 and 1 left", func(m map[string]vm) bool {
		_, has2 := m["2"]
		return len(m) == 2 && !has2
	})

	// What is not served is told apart from what is not there.
	bogus := e.RGPath("rg1") + "/providers/Microsoft.Compute/fooBars/x"
	if _, errOut, err := a.try("resource", "show", "--ids", bogus, "--api-version", "2020-06-01"); err == nil || !strings.Contains(errOut, "InvalidResourceType") {
		t.Errorf("az resource show of an unknown type: %v %s", err, errOut)
	}
	if _, errOut, err := a.try("vmss", "show", "-g", "rg1", "-n", "nope"); err == nil || !strings.Contains(errOut, "ResourceNotFound") {
		t.Errorf("az vmss show of a missing set: %v %s", err, errOut)
	}

	// Automatic mode: a model change rolls over every instance.
	a.run("resource", "create", "-g", "rg1", "-n", "auto", "--resource-type", "Microsoft.Compute/virtualMachineScaleSets",
		"--is-full-object", "--properties", "@"+scaleSetBody(t, 2, "Automatic", "1.0.0"), "-o", "none")
	a.run("vmss", "update", "-g", "rg1", "-n", "auto", "--set", "virtualMachineProfile.storageProfile.imageReference.version=1.1.0", "-o", "none")
	waitVMs(t, e, "rg1", "auto", "every instance on 1.1.0", func(m map[string]vm) bool {
		if len(m) != 2 {
			return false
		}
		for _, v := range m {
			if !v.Properties.LatestModelApplied || v.version() != "1.1.0" || v.power() != "PowerState/running" {
				return false
			}
		}
		return true
	})

	// Deletes.
	a.run("vmss", "delete", "-g", "rg1", "-n", "auto")
	if r := e.Do(http.MethodGet, e.VMSSPath("rg1", "auto"), nil); r.Status != http.StatusNotFound {
		t.Errorf("auto after az vmss delete: %d %s", r.Status, r.Body)
	}
	a.run("group", "delete", "-n", "rg1", "--yes")
	if r := e.Do(http.MethodGet, e.RGPath("rg1"), nil); r.Status != http.StatusNotFound {
		t.Errorf("rg1 after az group delete: %d %s", r.Status, r.Body)
	}
}
