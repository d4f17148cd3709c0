package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"golang.org/x/sys/unix"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunGuestIfAsked()
	os.Exit(m.Run())
}

// ctl runs vmssctl in-process against a test server.
type ctl struct {
	t   *testing.T
	env map[string]string
}

func newCtl(t *testing.T, e *testenv.Env) *ctl {
	return &ctl{t: t, env: map[string]string{"VMSSCTL_CONFIG": e.Server.ConfigFile, "HOME": t.TempDir()}}
}

// newOfflineCtl is a ctl whose config names a server that is not there, for
// errors found before any request; it returns the config file's path too.
func newOfflineCtl(t *testing.T) (*ctl, string) {
	cfg := filepath.Join(t.TempDir(), "vmssctl.json")
	if err := os.WriteFile(cfg, []byte(`{"endpoint":"https://127.0.0.1:1","clientId":"x","clientSecret":"y","subscription":"s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return &ctl{t: t, env: map[string]string{"VMSSCTL_CONFIG": cfg}}, cfg
}

// run executes vmssctl and returns stdout, stderr and the exit code.
func (c *ctl) run(args ...string) (string, string, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code := Execute(ctx, args, nil, &out, &errOut, func(k string) string { return c.env[k] })
	return out.String(), errOut.String(), code
}

// ok runs vmssctl and fails the test unless it succeeds.
func (c *ctl) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(args...)
	if code != 0 {
		c.t.Fatalf("vmssctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// json runs vmssctl -o json and decodes stdout into v.
func (c *ctl) json(v any, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("vmssctl %s: decode %q: %v", strings.Join(args, " "), out, err)
	}
}

func (c *ctl) instances(rg, name string) []*armcompute.VirtualMachineScaleSetVM {
	c.t.Helper()
	var vms []*armcompute.VirtualMachineScaleSetVM
	c.json(&vms, "vmss", "list-instances", "-g", rg, "-n", name)
	return vms
}

// tsvRows runs a command with -o tsv and splits its rows.
func (c *ctl) tsvRows(args ...string) [][]string {
	c.t.Helper()
	out := c.ok(append(args, "-o", "tsv")...)
	var rows [][]string
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if line != "" {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

// instanceColumns is a query of list-instances: id, power state, latest
// model applied, image version.
const instanceColumns = "[].[instanceId, properties.instanceView.statuses[?starts_with(code, 'PowerState/')].code | [0], " +
	"properties.latestModelApplied, properties.storageProfile.imageReference.exactVersion]"

// eventually retries cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, what, cond)
}

func TestScaleSetLifecycle(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)

	out := c.ok("group", "create", "-n", "rg1", "-o", "table")
	if !strings.Contains(out, "rg1") || !strings.Contains(out, "local") {
		t.Errorf("group create table: %q", out)
	}

	// Create waits, showing progress on (non-terminal) stderr.
	out, errOut, code := c.run("vmss", "create", "-g", "rg1", "-n", "web", "--image", "vmssd:demo:guest:1.0.0",
		"--instance-count", "3", "--upgrade-policy-mode", "manual", "--admin-username", "azureuser", "--admin-password", "S3cret!pass", "-o", "json")
	if code != 0 {
		t.Fatalf("create: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "Running .. (") || strings.Contains(errOut, "\r") {
		t.Errorf("create progress on stderr: %q", errOut)
	}
	var set armcompute.VirtualMachineScaleSet
	if err := json.Unmarshal([]byte(out), &set); err != nil {
		t.Fatalf("create output: %v: %s", err, out)
	}
	if str(set.Properties.ProvisioningState) != "Succeeded" || *set.SKU.Capacity != 3 || str(set.Properties.UpgradePolicy.Mode) != "Manual" {
		t.Errorf("created set: state %s capacity %d mode %s", str(set.Properties.ProvisioningState), *set.SKU.Capacity, str(set.Properties.UpgradePolicy.Mode))
	}
	if strings.Contains(out, "S3cret") {
		t.Errorf("output echoes the password")
	}

	vms := c.instances("rg1", "web")
	if len(vms) != 3 {
		t.Fatalf("list-instances: %d instances, want 3", len(vms))
	}
	// The boot console of an instance (boot diagnostics).
	testenv.Eventually(t, 10*time.Second, "the guest's boot line in get-boot-log", func() bool {
		out, _, code := c.run("vmss", "get-boot-log", "-g", "rg1", "-n", "web", "--instance-id", "0")
		return code == 0 && strings.Contains(out, "GUEST-READY version=1.0.0")
	})
	var ids []string
	for _, vm := range vms {
		ids = append(ids, str(vm.InstanceID))
		if !*vm.Properties.LatestModelApplied || str(vm.Properties.StorageProfile.ImageReference.ExactVersion) != "1.0.0" {
			t.Errorf("instance %s: latest=%v version %s", str(vm.InstanceID), *vm.Properties.LatestModelApplied, str(vm.Properties.StorageProfile.ImageReference.ExactVersion))
		}
		if vm.Properties.InstanceView == nil {
			t.Errorf("instance %s: no instance view", str(vm.InstanceID))
		}
	}

	// Table: the instance columns; tsv of a query: the fields a script asks for.
	out = c.ok("vmss", "list-instances", "-g", "rg1", "-n", "web", "-o", "table")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "InstanceId Name ComputerName ProvisioningState Power Health LatestModel Version FD UD" {
		t.Errorf("list-instances table:\n%s", out)
	}
	eventually(t, "3 running instances", func() bool {
		rows := c.tsvRows("vmss", "list-instances", "-g", "rg1", "-n", "web", "--query", instanceColumns)
		n := 0
		for _, r := range rows {
			if len(r) == 4 && r[1] == "PowerState/running" && r[2] == "true" && r[3] == "1.0.0" {
				n++
			}
		}
		return n == 3
	})

	// update --set, with and without the leading "properties.".
	c.json(&set, "vmss", "update", "-g", "rg1", "-n", "web",
		"--set", "virtualMachineProfile.storageProfile.imageReference.version=1.1.0",
		"--set", "properties.upgradePolicy.mode=Manual", "--set", "tags.env=test")
	if v := str(set.Properties.VirtualMachineProfile.StorageProfile.ImageReference.Version); v != "1.1.0" {
		t.Errorf("after update: model version %s", v)
	}
	if str(set.Tags["env"]) != "test" {
		t.Errorf("after update: tags %v", set.Tags)
	}
	for _, vm := range c.instances("rg1", "web") {
		if *vm.Properties.LatestModelApplied {
			t.Errorf("instance %s has the latest model before update-instances", str(vm.InstanceID))
		}
	}

	// update-instances with space-separated ids, as az takes them.
	c.ok(append([]string{"vmss", "update-instances", "-g", "rg1", "-n", "web", "--instance-ids"}, ids...)...)
	eventually(t, "instances upgraded to 1.1.0", func() bool {
		for _, vm := range c.instances("rg1", "web") {
			if !*vm.Properties.LatestModelApplied || str(vm.Properties.StorageProfile.ImageReference.ExactVersion) != "1.1.0" {
				return false
			}
		}
		return true
	})

	// scale: GET then PUT {location, sku}.
	c.json(&set, "vmss", "scale", "-g", "rg1", "-n", "web", "--new-capacity", "2")
	if *set.SKU.Capacity != 2 {
		t.Errorf("after scale: capacity %d", *set.SKU.Capacity)
	}
	if str(set.Properties.VirtualMachineProfile.OSProfile.ComputerNamePrefix) != "web" {
		t.Errorf("scale lost the model: %+v", set.Properties.VirtualMachineProfile.OSProfile)
	}
	eventually(t, "2 instances", func() bool { return len(c.instances("rg1", "web")) == 2 })

	// stop (poweroff) and start.
	power := func() []string {
		var ps []string
		for _, r := range c.tsvRows("vmss", "list-instances", "-g", "rg1", "-n", "web", "--query", instanceColumns) {
			ps = append(ps, strings.TrimPrefix(r[1], "PowerState/"))
		}
		return ps
	}
	c.ok("vmss", "stop", "-g", "rg1", "-n", "web")
	eventually(t, "instances stopped", func() bool {
		ps := power()
		return len(ps) == 2 && ps[0] == "stopped" && ps[1] == "stopped"
	})
	c.ok("vmss", "start", "-g", "rg1", "-n", "web", "--instance-ids", "*")
	eventually(t, "instances running", func() bool {
		ps := power()
		return len(ps) == 2 && ps[0] == "running" && ps[1] == "running"
	})

	// get-instance-view: set summary, one instance, all instances.
	var siv armcompute.VirtualMachineScaleSetInstanceView
	c.json(&siv, "vmss", "get-instance-view", "-g", "rg1", "-n", "web")
	if siv.VirtualMachine == nil || len(siv.VirtualMachine.StatusesSummary) == 0 {
		t.Errorf("set instance view: %+v", siv)
	}
	vms = c.instances("rg1", "web")
	var iv armcompute.VirtualMachineScaleSetVMInstanceView
	c.json(&iv, "vmss", "get-instance-view", "-g", "rg1", "-n", "web", "--instance-id", str(vms[0].InstanceID))
	if statusSuffix(iv.Statuses, "PowerState/") != "running" {
		t.Errorf("instance view statuses: %v", iv.Statuses)
	}
	var ivs []*armcompute.VirtualMachineScaleSetVMInstanceView
	c.json(&ivs, "vmss", "get-instance-view", "-g", "rg1", "-n", "web", "--instance-id", "*")
	if len(ivs) != 2 {
		t.Errorf("get-instance-view *: %d views", len(ivs))
	}

	// show / list.
	if rows := c.tsvRows("vmss", "list", "-g", "rg1", "--query", "[].[name, sku.capacity]"); len(rows) != 1 || rows[0][0] != "web" || rows[0][1] != "2" {
		t.Errorf("vmss list tsv: %v", rows)
	}
	out = c.ok("vmss", "show", "-g", "rg1", "-n", "web", "-o", "table")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[2], "web  ") || !strings.HasSuffix(lines[2], "  vmssd:demo:guest:1.1.0") {
		t.Errorf("vmss show table:\n%s", out)
	}

	// A missing scale set: the ARM error code and a non-zero exit.
	out, errOut, code = c.run("vmss", "show", "-g", "rg1", "-n", "nope")
	if code != ExitNotFound || out != "" || !strings.HasPrefix(errOut, "ERROR: ResourceNotFound: ") {
		t.Errorf("show missing: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = c.run("vmss", "show", "-g", "rg-missing", "-n", "web")
	if code == 0 || !strings.Contains(errOut, "NotFound: ") {
		t.Errorf("show in missing group: exit %d, stderr %q", code, errOut)
	}

	// --no-wait returns after the initial response, printing nothing.
	out, errOut, code = c.run("vmss", "create", "-g", "rg1", "-n", "web2", "--image", "vmssd:demo:guest", "--instance-count", "1", "--no-wait")
	if code != 0 || out != "" || strings.Contains(errOut, "Running") {
		t.Errorf("create --no-wait: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	c.json(&set, "vmss", "show", "-g", "rg1", "-n", "web2")
	if str(set.Properties.VirtualMachineProfile.StorageProfile.ImageReference.Version) != "latest" {
		t.Errorf("web2 image: %s", imageOf(set.Properties.VirtualMachineProfile.StorageProfile))
	}
	eventually(t, "web2 created", func() bool {
		c.json(&set, "vmss", "show", "-g", "rg1", "-n", "web2")
		return str(set.Properties.ProvisioningState) == "Succeeded"
	})
	c.ok("vmss", "delete", "-g", "rg1", "-n", "web2", "--no-wait")
	eventually(t, "web2 deleted", func() bool {
		_, _, code := c.run("vmss", "show", "-g", "rg1", "-n", "web2")
		return code == ExitNotFound
	})

	// delete-instances shrinks the set.
	c.ok("vmss", "delete-instances", "-g", "rg1", "-n", "web", "--instance-ids", str(vms[0].InstanceID))
	eventually(t, "1 instance", func() bool { return len(c.instances("rg1", "web")) == 1 })

	// Deleting the group removes the set and its instances.
	c.ok("group", "delete", "-n", "rg1")
	if _, errOut, code := c.run("group", "show", "-n", "rg1"); code != ExitNotFound || !strings.Contains(errOut, "ResourceGroupNotFound") {
		t.Errorf("group show after delete: exit %d, %q", code, errOut)
	}
}

func TestImagesAndAdmin(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)

	// image list walks publishers/offers/skus/versions; latest only by default.
	var imgs []imageRow
	c.json(&imgs, "image", "list")
	if len(imgs) != 1 || imgs[0].URN != "vmssd:demo:guest:1.1.0" {
		t.Errorf("image list: %+v", imgs)
	}
	c.json(&imgs, "image", "list", "--all", "--publisher", "VMSS", "--sku", "gue")
	var urns []string
	for _, i := range imgs {
		urns = append(urns, i.URN)
	}
	if !slices.Equal(urns, []string{"vmssd:demo:guest:1.0.0", "vmssd:demo:guest:1.1.0"}) {
		t.Errorf("image list --all: %v", urns)
	}
	if rows := c.tsvRows("image", "list", "--offer", "nothing"); len(rows) != 0 {
		t.Errorf("image list with a filter matching nothing: %v", rows)
	}

	// image add --file uploads the artifact, then publishes it.
	file := filepath.Join(t.TempDir(), "guest-2.0.0.tar.gz")
	var art bytes.Buffer
	if err := artifact.BuildDemo(&art, artifact.DemoOptions{Version: "2.0.0", Healthy: true}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, art.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var added adminImage
	c.json(&added, "image", "add", "--publisher", "acme", "--offer", "web", "--sku", "v2", "--version", "2.0.0", "--file", file)
	if !strings.HasPrefix(added.Properties.OSDisk.URI, "artifact:sha256:") || added.Properties.ProvisioningState != "Succeeded" {
		t.Errorf("image add: %+v", added)
	}
	// ... and --uri publishes a stored artifact under another name.
	c.ok("image", "add", "--publisher", "acme", "--offer", "web", "--sku", "v2", "--version", "2.0.1", "--uri", added.Properties.OSDisk.URI)
	var img armcompute.VirtualMachineImage
	c.json(&img, "image", "show", "--urn", "acme:web:v2:latest")
	if str(img.Name) != "2.0.1" {
		t.Errorf("image show latest: %s", str(img.Name))
	}
	c.ok("image", "delete", "--urn", "acme:web:v2:2.0.1")
	if _, errOut, code := c.run("image", "show", "--urn", "acme:web:v2:2.0.1"); code != ExitNotFound || !strings.Contains(errOut, "ERROR: NotFound: ") {
		t.Errorf("image show after delete: exit %d, %q", code, errOut)
	}

	// Subscriptions and principals.
	var sub adminSubscription
	c.json(&sub, "admin", "subscription", "create", "--id", "team-a", "--display-name", "Team A")
	if sub.SubscriptionID != "team-a" || sub.DisplayName != "Team A" {
		t.Errorf("subscription create: %+v", sub)
	}
	if rows := c.tsvRows("admin", "subscription", "list"); len(rows) != 2 {
		t.Errorf("subscription list: %v", rows)
	}
	var p principal
	c.json(&p, "admin", "principal", "create", "--client-id", "alice", "--role", "tenant", "--subscriptions", "team-a")
	if p.ClientSecret == "" || p.Role != "tenant" || !slices.Equal(p.Subscriptions, []string{"team-a"}) {
		t.Fatalf("principal create: %+v", p)
	}
	out := c.ok("admin", "principal", "list")
	if !strings.Contains(out, "alice") || strings.Contains(out, p.ClientSecret) {
		t.Errorf("principal list:\n%s", out)
	}

	// The new principal signs in with its secret (ClientSecretCredential
	// against vmssd's token endpoint) and sees its subscription only.
	alice := func(args ...string) (string, string, int) {
		return c.run(append(args, "--client-id", "alice", "--client-secret", p.ClientSecret, "--subscription", "team-a")...)
	}
	if out, errOut, code := alice("group", "create", "-n", "alice-rg"); code != 0 || !strings.Contains(out, "alice-rg") {
		t.Errorf("alice group create: exit %d, %q %q", code, out, errOut)
	}
	if _, errOut, code := c.run("group", "list", "--client-id", "alice", "--client-secret", p.ClientSecret); code == 0 || !strings.Contains(errOut, "SubscriptionNotFound") {
		t.Errorf("alice in the default subscription: exit %d, %q", code, errOut)
	}
	if _, errOut, code := c.run("group", "list", "--client-id", "alice", "--client-secret", "wrong"); code == 0 || !strings.Contains(errOut, "ERROR: AuthenticationFailed") {
		t.Errorf("wrong secret: exit %d, %q", code, errOut)
	}
	// A raw token works too.
	tok := e.IssueToken("operator", "operator")
	if out, errOut, code := c.run("group", "list", "--subscription", "team-a", "--token", tok, "--query", "[].name", "-o", "tsv"); code != 0 || out != "alice-rg\n" {
		t.Errorf("--token: exit %d, %q %q", code, out, errOut)
	}
	// Non-empty subscriptions cannot be deleted.
	if _, errOut, code := c.run("admin", "subscription", "delete", "--id", "team-a"); code == 0 || !strings.Contains(errOut, "SubscriptionNotEmpty") {
		t.Errorf("delete non-empty subscription: exit %d, %q", code, errOut)
	}
	c.ok("group", "delete", "-n", "alice-rg", "--subscription", "team-a")
	c.ok("admin", "subscription", "delete", "--id", "team-a")
	c.ok("admin", "principal", "delete", "--client-id", "alice")
	if _, _, code := c.run("admin", "principal", "show", "--client-id", "alice"); code != ExitNotFound {
		t.Errorf("principal show after delete: exit %d", code)
	}

	// --debug logs requests on stderr.
	_, errOut, _ := c.run("group", "list", "--debug")
	if !strings.Contains(errOut, "DEBUG: GET https://") || !strings.Contains(errOut, "resourcegroups") {
		t.Errorf("--debug: %q", errOut)
	}
}

func TestVMSizes(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)

	// sizeRow finds a size in `vm list-sizes -o tsv` (nil if absent).
	sizeRow := func(name string, args ...string) []string {
		t.Helper()
		args = append([]string{"vm", "list-sizes", "--query", "[].[name, numberOfCores, memoryInMB, maxDataDiskCount]"}, args...)
		for _, r := range c.tsvRows(args...) {
			if r[0] == name {
				return r
			}
		}
		return nil
	}

	// The seeded table, through the SDK's VirtualMachineSizesClient.
	out := c.ok("vm", "list-sizes", "-o", "table")
	if lines := strings.Split(out, "\n"); strings.Join(strings.Fields(lines[0]), " ") != "Name Cores MemoryMB MaxDataDisks" {
		t.Errorf("list-sizes table:\n%s", out)
	}
	if r := sizeRow("Standard_A1"); !slices.Equal(r, []string{"Standard_A1", "1", "128", "2"}) {
		t.Errorf("list-sizes Standard_A1: %v", r)
	}
	var sizes []*armcompute.VirtualMachineSize
	c.json(&sizes, "vm", "list-sizes", "-l", "local")
	if len(sizes) == 0 || str(sizes[0].Name) == "" || sizes[0].NumberOfCores == nil {
		t.Errorf("list-sizes json: %+v", sizes)
	}
	if rows := c.tsvRows("vm", "list-sizes", "-l", "elsewhere"); len(rows) != 0 {
		t.Errorf("list-sizes in another location: %v", rows)
	}

	// An operator adds a size, then replaces it.
	var sz adminVMSize
	c.json(&sz, "admin", "vm-size", "set", "--name", "Custom_T1", "--cores", "1", "--memory-mb", "96")
	if sz.Name != "Custom_T1" || sz.NumberOfCores != 1 || sz.MemoryInMB != 96 {
		t.Errorf("vm-size set: %+v", sz)
	}
	c.json(&sz, "admin", "vm-size", "set", "--name", "Custom_T1", "--cores", "1", "--memory-mb", "128", "--max-data-disks", "1")
	if sz.MemoryInMB != 128 || sz.MaxDataDiskCount != 1 {
		t.Errorf("vm-size set (update): %+v", sz)
	}
	if r := sizeRow("Custom_T1"); !slices.Equal(r, []string{"Custom_T1", "1", "128", "1"}) {
		t.Errorf("list-sizes Custom_T1: %v", r)
	}
	var table []adminVMSize
	c.json(&table, "admin", "vm-size", "list")
	if !slices.ContainsFunc(table, func(s adminVMSize) bool { return s.Name == "Custom_T1" && s.MemoryInMB == 128 }) {
		t.Errorf("vm-size list: %+v", table)
	}

	// A scale set can use it.
	c.ok("group", "create", "-n", "rg1", "-o", "none")
	var set armcompute.VirtualMachineScaleSet
	c.json(&set, "vmss", "create", "-g", "rg1", "-n", "small", "--image", "vmssd:demo:guest", "--vm-sku", "Custom_T1", "--instance-count", "1")
	if str(set.Properties.ProvisioningState) != "Succeeded" || str(set.SKU.Name) != "Custom_T1" || *set.SKU.Capacity != 1 {
		t.Errorf("vmss create with Custom_T1: state %s sku %s", str(set.Properties.ProvisioningState), str(set.SKU.Name))
	}
	if vms := c.instances("rg1", "small"); len(vms) != 1 {
		t.Errorf("small: %d instances, want 1", len(vms))
	}

	// Bad input: the server's ARM error, a non-zero exit, nothing on stdout.
	out, errOut, code := c.run("admin", "vm-size", "set", "--name", "Custom_T2", "--cores", "0", "--memory-mb", "128")
	if code != ExitError || out != "" || !strings.HasPrefix(errOut, "ERROR: InvalidParameter: numberOfCores must be between 1 and 64.") {
		t.Errorf("vm-size set --cores 0: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if sizeRow("Custom_T2") != nil {
		t.Errorf("rejected size Custom_T2 was stored")
	}

	// Tenants have no admin API.
	c.ok("admin", "principal", "create", "--client-id", "bob", "--role", "tenant", "--subscriptions", e.Sub, "-o", "none")
	tenant := e.IssueToken("bob", auth.RoleTenant)
	for _, args := range [][]string{
		{"admin", "vm-size", "list"},
		{"admin", "vm-size", "set", "--name", "Custom_T3", "--cores", "1", "--memory-mb", "128"},
		{"admin", "vm-size", "delete", "--name", "Custom_T1"},
	} {
		out, errOut, code := c.run(append(args, "--token", tenant)...)
		if code != ExitNotFound || out != "" || !strings.HasPrefix(errOut, "ERROR: NotFound: ") {
			t.Errorf("tenant %v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	// ... but can list the sizes.
	if out, errOut, code := c.run("vm", "list-sizes", "--token", tenant, "--query", "[?name=='Custom_T1'].name", "-o", "tsv"); code != 0 || out != "Custom_T1\n" {
		t.Errorf("tenant list-sizes: exit %d, %q %q", code, out, errOut)
	}

	// Delete it: gone from the table, and new scale sets cannot use it.
	c.ok("admin", "vm-size", "delete", "--name", "Custom_T1")
	if r := sizeRow("Custom_T1"); r != nil {
		t.Errorf("list-sizes after delete: %v", r)
	}
	c.ok("admin", "vm-size", "delete", "--name", "Custom_T1") // absent: 204, still a success
	_, errOut, code = c.run("vmss", "create", "-g", "rg1", "-n", "small2", "--image", "vmssd:demo:guest", "--vm-sku", "Custom_T1", "--instance-count", "1")
	if code != ExitError || !strings.Contains(errOut, "ERROR: InvalidParameter: ") || !strings.Contains(errOut, "Standard_A1") {
		t.Errorf("vmss create with a deleted size: exit %d, %q", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	c, cfg := newOfflineCtl(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"vmss", "frobnicate"}, "unknown command"},
		{[]string{"nope"}, "unknown command"},
		{[]string{"vmss", "show", "-g", "rg"}, `"name" not set`},
		{[]string{"vmss", "show", "-g", "rg", "-n", "x", "-o", "xml"}, "invalid choice"},
		{[]string{"vmss", "show", "-g", "rg", "-n", "x", "--bogus"}, "unknown flag"},
		{[]string{"vmss", "create", "-g", "rg", "-n", "x"}, "--image or --image-uri"},
		{[]string{"vmss", "create", "-g", "rg", "-n", "x", "--image", "a:b"}, "publisher:offer:sku:version"},
		{[]string{"vmss", "create", "-g", "rg", "-n", "x", "--image", "a:b:c", "--upgrade-policy-mode", "Sometimes"}, "invalid choice"},
		{[]string{"vmss", "create", "-g", "rg", "-n", "x", "--image", "a:b:c", "--fault-domain-count", "9"}, "between 1 and 5"},
		{[]string{"vmss", "update", "-g", "rg", "-n", "x", "--set", "novalue"}, "PATH=VALUE"},
		{[]string{"vmss", "start", "-g", "rg", "-n", "x", "--instance-ids", "0", "abc"}, `"abc" is not an instance id`},
		{[]string{"vmss", "start", "-g", "rg", "-n", "x", "0"}, "unrecognized arguments"},
		{[]string{"vmss", "update-instances", "-g", "rg", "-n", "x"}, `"instance-ids" not set`},
		{[]string{"vmss", "scale", "-g", "rg", "-n", "x", "--new-capacity", "-2"}, "must not be negative"},
		{[]string{"image", "delete", "--urn", "a:b:c:latest"}, "explicit version"},
		{[]string{"image", "add", "--publisher", "a", "--offer", "b", "--sku", "c", "--version", "1.0.0"}, "--file or --uri"},
		{[]string{"admin", "principal", "create", "--client-id", "x", "--role", "root"}, "invalid choice"},
		{[]string{"admin", "vm-size", "set", "--name", "x", "--cores", "1"}, `"memory-mb" not set`},
		{[]string{"admin", "vm-size", "set", "--name", " ", "--cores", "1", "--memory-mb", "128"}, "--name must not be empty"},
		{[]string{"vm", "list-sizes", "extra"}, "unrecognized arguments"},
	} {
		out, errOut, code := c.run(tc.args...)
		if code != ExitUsage || out != "" || !strings.HasPrefix(errOut, "ERROR: ") || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q (want %q)", tc.args, code, out, errOut, tc.want)
		}
	}

	// Help goes to stdout.
	if out, _, code := c.run("vmss", "--help"); code != 0 || !strings.Contains(out, "list-instances") {
		t.Errorf("help: exit %d: %q", code, out)
	}

	// Configuration problems are reported before any request.
	c.env = map[string]string{"HOME": t.TempDir()}
	if _, errOut, code := c.run("group", "list"); code != ExitError || !strings.Contains(errOut, "no endpoint configured") {
		t.Errorf("no config: exit %d, %q", code, errOut)
	}
	if _, errOut, code := c.run("group", "list", "--endpoint", "http://127.0.0.1:1", "--token", "t"); code != ExitError || !strings.Contains(errOut, "https:// URL is required") {
		t.Errorf("http endpoint: exit %d, %q", code, errOut)
	}
	if _, errOut, code := c.run("group", "list", "--config", filepath.Join(t.TempDir(), "missing.json")); code != ExitError || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing explicit config: exit %d, %q", code, errOut)
	}
	c.env["VMSSD_DATA_DIR"] = filepath.Dir(cfg)
	if _, errOut, code := c.run("group", "list", "--client-id", "other"); code != ExitError || !strings.Contains(errOut, `no client secret for client "other"`) {
		t.Errorf("client id without secret: exit %d, %q", code, errOut)
	}
}

func TestSetPath(t *testing.T) {
	doc := func() map[string]any {
		return map[string]any{
			"location": "local",
			"sku":      map[string]any{"capacity": 3.0},
			"properties": map[string]any{
				"upgradePolicy": map[string]any{"mode": "Manual"},
				"list":          []any{map[string]any{"a": "x"}},
			},
		}
	}
	for _, tc := range []struct {
		set  string
		want string // JSON of the result, or "error: ..."
	}{
		{"UpgradePolicy.Mode=Rolling", `"upgradePolicy":{"mode":"Rolling"}`},
		{"properties.upgradePolicy.mode=Automatic", `"upgradePolicy":{"mode":"Automatic"}`},
		{"sku.capacity=5", `"sku":{"capacity":5}`},
		{"tags.env=prod", `"tags":{"env":"prod"}`},
		{"virtualMachineProfile.storageProfile.imageReference.version=1.1.0", `"imageReference":{"version":"1.1.0"}`},
		{"list[0].a=y", `"list":[{"a":"y"}]`},
		{"upgradePolicy.mode=1", `"mode":"1"`},
		{`upgradePolicy.x={"b":[1,true]}`, `"x":{"b":[1,true]}`},
		{"list[3].a=y", "error: out of range"},
		{"upgradePolicy.mode.x=1", "error: not an object"},
		{"list.a=1", "error: not an object"},
		{"list[x]=1", "error: bad index"},
	} {
		a, err := parseAssignment(tc.set)
		if err == nil {
			d := doc()
			if err = setPath(d, a.path, a.value); err == nil {
				b, _ := json.Marshal(d)
				if strings.HasPrefix(tc.want, "error: ") || !strings.Contains(string(b), tc.want) {
					t.Errorf("%s: got %s, want %s", tc.set, b, tc.want)
				}
				continue
			}
		}
		if want, isErr := strings.CutPrefix(tc.want, "error: "); !isErr || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %s", tc.set, err, tc.want)
		}
	}
}

func TestParseURN(t *testing.T) {
	u, err := parseURN("p:o:s", true)
	if err != nil || u.String() != "p:o:s:latest" {
		t.Errorf("short urn: %v %v", u, err)
	}
	for _, bad := range []string{"p:o", "p::s:v", "p:o:s:v:x"} {
		if _, err := parseURN(bad, true); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseURN("p:o:s:latest", false); err == nil {
		t.Errorf("latest accepted where a version is required")
	}
}

func TestPollStatus(t *testing.T) {
	for _, tc := range []struct {
		code int
		body string
		want string
	}{
		{200, `{"status":"InProgress"}`, "InProgress"},
		{200, `{"properties":{"provisioningState":"Updating"}}`, "Updating"},
		{202, ``, "InProgress"},
		{200, `{}`, "OK"},
	} {
		resp := &http.Response{StatusCode: tc.code, Body: nopBody(tc.body), Header: http.Header{}}
		if got := pollStatus(resp); got != tc.want {
			t.Errorf("%d %s: %q, want %q", tc.code, tc.body, got, tc.want)
		}
	}
	var buf bytes.Buffer
	p := newProgress(&buf)
	p.update("InProgress")
	p.update("InProgress")
	p.update("Succeeded")
	p.finish()
	if got := buf.String(); got != "Running .. (0s) InProgress\nRunning .. (0s) Succeeded\n" {
		t.Errorf("progress: %q", got)
	}
}

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

func nopBody(s string) readCloser { return readCloser{strings.NewReader(s)} }

func TestComputerNamePrefix(t *testing.T) {
	for in, want := range map[string]string{"web": "web", "my_long.scale-set": "mylongsca", "--x": "x", "___": "vm"} {
		if got := computerNamePrefix(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// TestOutputConventions: az's output conventions (-o, --query, the default
// format and where it is configured) on real command results.
func TestOutputConventions(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)
	c.ok("group", "create", "-n", "rg1", "-o", "none")
	if out := c.ok("vmss", "create", "-g", "rg1", "-n", "web", "--image", "vmssd:demo:guest:1.0.0", "--instance-count", "2", "-o", "none"); out != "" {
		t.Errorf("-o none printed %q", out)
	}

	// Without -o the output is az's default, JSON.
	var vms []*armcompute.VirtualMachineScaleSetVM
	if out := c.ok("vmss", "list-instances", "-g", "rg1", "-n", "web"); json.Unmarshal([]byte(out), &vms) != nil || len(vms) != 2 {
		t.Fatalf("default output: %q", out)
	}

	withOutput := filepath.Join(t.TempDir(), "vmssctl.json")
	b, err := os.ReadFile(e.Server.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["output"] = "tsv"
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(withOutput, b, 0o600); err != nil {
		t.Fatal(err)
	}

	ids := []string{"vmss", "list-instances", "-g", "rg1", "-n", "web", "--query", "[].instanceId"}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"tsv of a query", append(ids, "-o", "tsv"), nil, "0\n1\n"},
		{"json of a query", ids, nil, "[\n  \"0\",\n  \"1\"\n]\n"},
		{"yaml of a query", []string{"vmss", "list-instances", "-g", "rg1", "-n", "web", "--query", "[].{id: instanceId, latest: properties.latestModelApplied}", "-o", "yaml"}, nil,
			"- id: \"0\"\n  latest: true\n- id: \"1\"\n  latest: true\n"},
		{"table of a query, columns as the query names them", []string{"vmss", "show", "-g", "rg1", "-n", "web", "--query", "{Set: name, Capacity: sku.capacity, Mode: properties.upgradePolicy.mode}", "-o", "table"}, nil,
			"Set  Capacity  Mode\n---  --------  ----\nweb  2         Manual\n"},
		{"a number", []string{"vmss", "show", "-g", "rg1", "-n", "web", "--query", "sku.capacity"}, nil, "2\n"},
		{"a filter", []string{"vm", "list-sizes", "--query", "[?name=='Standard_A1'].[name, numberOfCores, memoryInMB]", "-o", "tsv"}, nil, "Standard_A1\t1\t128\n"},
		{"a function", []string{"group", "list", "--query", "length([?name=='rg1'])", "-o", "tsv"}, nil, "1\n"},
		{"image list", []string{"image", "list", "--query", "[].urn", "-o", "tsv"}, nil, "vmssd:demo:guest:1.1.0\n"},
		{"operator list", []string{"admin", "subscription", "list", "--query", "[].subscriptionId", "-o", "tsv"}, nil, e.Sub + "\n"},
		{"an instance view", []string{"vmss", "get-instance-view", "-g", "rg1", "-n", "web", "--instance-id", "0", "--query", "statuses[?starts_with(code, 'ProvisioningState/')].code", "-o", "tsv"}, nil, "ProvisioningState/succeeded\n"},
		{"$VMSSCTL_OUTPUT", ids, map[string]string{"VMSSCTL_OUTPUT": "tsv"}, "0\n1\n"},
		{"$AZURE_CORE_OUTPUT", ids, map[string]string{"AZURE_CORE_OUTPUT": "tsv"}, "0\n1\n"},
		{"the config file", ids, map[string]string{"VMSSCTL_CONFIG": withOutput}, "0\n1\n"},
		{"-o over the environment", append(ids, "-o", "json"), map[string]string{"VMSSCTL_OUTPUT": "tsv"}, "[\n  \"0\",\n  \"1\"\n]\n"},
		{"-o none", append(ids, "-o", "none"), nil, ""},
	} {
		c := newCtl(t, e)
		maps.Copy(c.env, tc.env)
		if out, errOut, code := c.run(tc.args...); code != 0 || out != tc.want {
			t.Errorf("%s: vmssctl %s: exit %d, stdout %q (want %q), stderr %q", tc.name, strings.Join(tc.args, " "), code, out, tc.want, errOut)
		}
	}

	// A query that does not parse is a usage error, before any request.
	out, errOut, code := c.run("vmss", "list-instances", "-g", "rg1", "-n", "web", "--query", "[?instanceId=='0'", "-o", "tsv")
	if code != ExitUsage || out != "" || !strings.HasPrefix(errOut, "ERROR: argument --query: invalid JMESPath query") {
		t.Errorf("bad query: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// One that fails on the result is an error too, never empty output.
	out, errOut, code = c.run("vmss", "show", "-g", "rg1", "-n", "web", "--query", "abs(name)")
	if code != ExitError || out != "" || !strings.HasPrefix(errOut, `ERROR: --query "abs(name)": `) {
		t.Errorf("failing query: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// A bad default is reported as such.
	c.env["AZURE_CORE_OUTPUT"] = "xml"
	if _, errOut, code := c.run(ids...); code != ExitUsage || !strings.Contains(errOut, "$AZURE_CORE_OUTPUT: invalid choice") {
		t.Errorf("bad $AZURE_CORE_OUTPUT: exit %d, stderr %q", code, errOut)
	}
	delete(c.env, "AZURE_CORE_OUTPUT")

	// jsonc colours only on a terminal.
	tty := func(env map[string]string, args ...string) string {
		t.Helper()
		master, slave := openPTY(t)
		read := make(chan string)
		go func() {
			b, _ := io.ReadAll(master) // ends with EIO once the slave is closed
			read <- string(b)
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var errOut bytes.Buffer
		code := Execute(ctx, args, nil, slave, &errOut, func(k string) string {
			if v, ok := env[k]; ok {
				return v
			}
			return c.env[k]
		})
		slave.Close()
		out := <-read
		if code != 0 {
			t.Fatalf("vmssctl %v on a terminal: exit %d: %s", args, code, errOut.String())
		}
		return out
	}
	out = tty(nil, "group", "show", "-n", "rg1", "-o", "jsonc")
	if !strings.Contains(out, colorKey+`"name"`+colorReset+": "+colorString+`"rg1"`+colorReset) {
		t.Errorf("jsonc on a terminal: %q", out)
	}
	out = tty(map[string]string{"NO_COLOR": "1"}, "group", "show", "-n", "rg1", "-o", "jsonc")
	if strings.Contains(out, "\x1b[") || !strings.Contains(out, `"name": "rg1"`) {
		t.Errorf("jsonc with $NO_COLOR: %q", out)
	}
	out = tty(nil, "group", "show", "-n", "rg1")
	if strings.Contains(out, "\x1b[") {
		t.Errorf("json on a terminal is coloured: %q", out)
	}
}

// openPTY opens a pseudo-terminal pair; the test skips where the system has
// none (and fails when VMSSD_E2E=1).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1 and no pseudo-terminals: %v", err)
		}
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty: %v", err)
	}
	return m, s
}
