// Package vm drives real QEMU virtual machines through vmssd's ARM API: a
// scale set whose image is a VM image gets VMs instead of processes.
package vm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
	"github.com/vmssd/vmssd/internal/vmimage"
)

func TestMain(m *testing.M) {
	testenv.RunGuestIfAsked()
	os.Exit(m.Run())
}

const adminAPI = "2015-12-01-preview"

// requireQEMU skips a test on a machine without QEMU, unless VMSSD_E2E=1
// (CI), where it must run.
func requireQEMU(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil && os.Getenv("VMSSD_E2E") != "1" {
		t.Skip("qemu-system-x86_64 is not installed (set VMSSD_E2E=1 to require it)")
	}
}

// vmBody is a scale set of n VMs from vmssd:linux:tiny:1.0.0.
func vmBody(n int) map[string]any {
	body := testenv.VMSSBody(n, "1.0.0", "Manual")
	body["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)["storageProfile"].(map[string]any)["imageReference"] =
		map[string]any{"publisher": "vmssd", "offer": "linux", "sku": "tiny", "version": "1.0.0"}
	return body
}

func publish(t testing.TB, e *testenv.Env, artifactPath, version string) {
	t.Helper()
	b, err := os.ReadFile(artifactPath)
	if err != nil {
		t.Fatal(err)
	}
	r := e.Do(http.MethodPost, "/providers/vmssd.Admin/artifacts?api-version="+adminAPI, b)
	if r.Status != http.StatusCreated {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	uri, _ := r.Map()["uri"].(string)
	path := "/subscriptions/" + e.Sub + "/providers/Microsoft.Compute.Admin/locations/local/artifactTypes/platformImage/publishers/vmssd/offers/linux/skus/tiny/versions/" + version + "?api-version=" + adminAPI
	r = e.Do(http.MethodPut, path, map[string]any{"properties": map[string]any{"osDisk": map[string]any{"osType": "Linux", "uri": uri}}})
	if r.Status != http.StatusCreated {
		t.Fatalf("publish: %d %s", r.Status, r.Body)
	}
}

type status struct {
	Code          string `json:"code"`
	DisplayStatus string `json:"displayStatus"`
}

type vm struct {
	InstanceID string `json:"instanceId"`
	Properties struct {
		LatestModelApplied bool   `json:"latestModelApplied"`
		ProvisioningState  string `json:"provisioningState"`
		VMID               string `json:"vmId"`
		InstanceView       struct {
			Statuses []status `json:"statuses"`
			VMHealth struct {
				Status status `json:"status"`
			} `json:"vmHealth"`
		} `json:"instanceView"`
	} `json:"properties"`
}

func (v vm) status(prefix string) status {
	for _, s := range v.Properties.InstanceView.Statuses {
		if strings.HasPrefix(s.Code, prefix) {
			return s
		}
	}
	return status{}
}

func list(t *testing.T, e *testenv.Env, path string) []vm {
	t.Helper()
	r := e.Do(http.MethodGet, path+"/virtualMachines?$expand=instanceView", nil)
	var page struct{ Value []vm }
	if r.Status != http.StatusOK || r.JSON(&page) != nil {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	return page.Value
}

// waitHealthy waits until n VMs run and are healthy; it returns them.
func waitHealthy(t *testing.T, e *testenv.Env, path string, n int) []vm {
	t.Helper()
	var vms []vm
	deadline := time.Now().Add(4 * time.Minute)
	for {
		vms = list(t, e, path)
		ok := len(vms) == n
		for _, v := range vms {
			ok = ok && v.status("PowerState/").Code == "PowerState/running" && v.Properties.InstanceView.VMHealth.Status.Code == "HealthState/healthy"
		}
		if ok {
			return vms
		}
		if time.Now().After(deadline) {
			for _, v := range vms {
				t.Logf("instance %s: %+v %+v", v.InstanceID, v.Properties.InstanceView.Statuses, v.Properties.InstanceView.VMHealth)
			}
			t.Fatalf("%d healthy VMs not reached", n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// version asks a VM's guest (through its forwarded health port) what it runs.
func version(t *testing.T, v vm) string {
	t.Helper()
	addr := v.status("Endpoint/health").DisplayStatus
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatalf("instance %s health: %v", v.InstanceID, err)
	}
	defer resp.Body.Close()
	var h struct {
		ImageVersion string `json:"imageVersion"`
	}
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("instance %s health body %q: %v", v.InstanceID, b, err)
	}
	return h.ImageVersion
}

func waitOp(t *testing.T, e *testenv.Env, r *testenv.Response) {
	t.Helper()
	if st, m := e.Wait(r, 5*time.Minute); st != "Succeeded" {
		t.Fatalf("operation %s: %v", st, m)
	}
}

// qemuPIDs lists the live QEMU processes running in a directory under dir.
func qemuPIDs(dir string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmd, []byte("qemu-system")) {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil || !strings.HasPrefix(cwd, dir) {
			continue
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
		}
		out = append(out, pid)
	}
	return out
}

// TestVMScaleSet: two VMs boot and answer their health probe with version
// 1.0.0; one is upgraded to 2.0.0 by manualupgrade; power off is an ACPI
// shutdown and start boots it again; reimage; a restart of vmssd re-adopts
// the running VMs; delete leaves nothing behind.
func TestVMScaleSet(t *testing.T) {
	requireQEMU(t)
	a1 := vmimage.Build(t, "1.0.0", false)
	a2 := vmimage.Build(t, "2.0.0", false)
	dataDir := t.TempDir()
	e := testenv.Start(t, testenv.Options{DataDir: dataDir, HealthGrace: 3 * time.Minute})
	publish(t, e, a1, "1.0.0")
	publish(t, e, a2, "2.0.0")
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "vms")
	body := vmBody(2)
	start := time.Now()
	waitOp(t, e, e.Do(http.MethodPut, path, body))
	vms := waitHealthy(t, e, path, 2)
	t.Logf("2 VMs healthy after %v", time.Since(start))
	for _, v := range vms {
		if got := version(t, v); got != "1.0.0" {
			t.Errorf("VM %s runs %q, want 1.0.0", v.InstanceID, got)
		}
		if acc := v.status("Virtualization/").Code; acc == "" {
			t.Errorf("VM %s: the instance view does not say how it is virtualized", v.InstanceID)
		}
	}
	vmsDir := filepath.Join(dataDir, "hosts", "local", "vms")
	if n := len(qemuPIDs(vmsDir)); n != 2 {
		t.Fatalf("%d QEMU processes, want 2", n)
	}

	// The boot console is readable.
	r := e.Do(http.MethodPost, path+"/virtualMachines/0/retrieveBootDiagnosticsData", nil)
	u, _ := r.Map()["serialConsoleLogBlobUri"].(string)
	if c := e.Do(http.MethodGet, u, nil); c.Status != http.StatusOK || !strings.Contains(string(c.Body), "GUEST-READY") {
		t.Errorf("serial console: %d, %d bytes", c.Status, len(c.Body))
	}

	// Model to 2.0.0, upgrade instance 0 only.
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"imageReference": map[string]any{"version": "2.0.0"}}}}}))
	waitOp(t, e, e.Do(http.MethodPost, path+"/manualupgrade", map[string]any{"instanceIds": []string{"0"}}))
	vms = waitHealthy(t, e, path, 2)
	got := map[string]string{}
	for _, v := range vms {
		got[v.InstanceID] = version(t, v)
	}
	if got["0"] != "2.0.0" || got["1"] != "1.0.0" {
		t.Errorf("after manualupgrade of 0: %v", got)
	}

	// Power off (ACPI) and start again.
	waitOp(t, e, e.Do(http.MethodPost, path+"/virtualMachines/1/poweroff", nil))
	testenv.Eventually(t, time.Minute, "VM 1 stopped", func() bool {
		for _, v := range list(t, e, path) {
			if v.InstanceID == "1" {
				return v.status("PowerState/").Code == "PowerState/stopped"
			}
		}
		return false
	})
	if n := len(qemuPIDs(vmsDir)); n != 1 {
		t.Errorf("%d QEMU processes after power off, want 1", n)
	}
	waitOp(t, e, e.Do(http.MethodPost, path+"/virtualMachines/1/start", nil))
	waitHealthy(t, e, path, 2)

	// Reimage instance 1.
	waitOp(t, e, e.Do(http.MethodPost, path+"/reimage", map[string]any{"instanceIds": []string{"1"}}))
	waitHealthy(t, e, path, 2)

	// Restart vmssd while the VMs run: they are re-adopted, not restarted.
	before := qemuPIDs(vmsDir)
	e.Stop()
	e = testenv.Start(t, testenv.Options{DataDir: dataDir, HealthGrace: 3 * time.Minute})
	waitHealthy(t, e, path, 2)
	after := qemuPIDs(vmsDir)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("QEMU processes changed across a vmssd restart: %v -> %v", before, after)
	}

	// Delete: nothing left.
	waitOp(t, e, e.Do(http.MethodDelete, path, nil))
	testenv.Eventually(t, time.Minute, "no QEMU process left", func() bool { return len(qemuPIDs(vmsDir)) == 0 })
	if ents, _ := os.ReadDir(vmsDir); len(ents) != 0 {
		t.Errorf("%d VM directories left", len(ents))
	}
}

// TestVMMemoryOvercommitRefused: a VM size beyond what the host may give is
// refused with a clear AllocationFailed, and no QEMU is started.
func TestVMMemoryOvercommitRefused(t *testing.T) {
	requireQEMU(t)
	a1 := vmimage.Build(t, "1.0.0", false)
	dataDir := t.TempDir()
	e := testenv.Start(t, testenv.Options{DataDir: dataDir})
	publish(t, e, a1, "1.0.0")
	if r := e.Do(http.MethodPut, "/providers/vmssd.Admin/vmSizes/Standard_Huge?api-version="+adminAPI, map[string]any{"numberOfCores": 2, "memoryInMB": 1 << 20}); r.Status != http.StatusCreated {
		t.Fatalf("add size: %d %s", r.Status, r.Body)
	}
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "huge")
	body := vmBody(1)
	body["sku"] = map[string]any{"name": "Standard_Huge", "capacity": 1}
	st, m := e.Wait(e.Do(http.MethodPut, path, body), time.Minute)
	errBody, _ := m["error"].(map[string]any)
	if st != "Failed" || errBody["code"] != "AllocationFailed" {
		t.Fatalf("operation %s %v, want Failed with AllocationFailed", st, m)
	}
	vms := list(t, e, path)
	if len(vms) != 1 || vms[0].Properties.ProvisioningState != "Failed" {
		t.Fatalf("instances: %+v", vms)
	}
	if n := len(qemuPIDs(filepath.Join(dataDir, "hosts", "local", "vms"))); n != 0 {
		t.Errorf("%d QEMU processes started for a refused VM", n)
	}
}

// TestVMBootDeadline: a VM that does not boot within the deadline is killed
// and its instance reported Failed with OSProvisioningTimedOut; it is not
// restarted on its own.
func TestVMBootDeadline(t *testing.T) {
	requireQEMU(t)
	a1 := vmimage.Build(t, "1.0.0", false)
	dataDir := t.TempDir()
	// No TCG boot of this guest takes under a second.
	e := testenv.Start(t, testenv.Options{DataDir: dataDir, BootDeadline: time.Second})
	publish(t, e, a1, "1.0.0")
	e.CreateRG("rg")
	path := e.VMSSPath("rg", "slow")
	body := vmBody(1)
	e.Do(http.MethodPut, path, body)
	var failed vm
	testenv.Eventually(t, time.Minute, "the instance reported Failed", func() bool {
		vms := list(t, e, path)
		if len(vms) == 1 && vms[0].Properties.ProvisioningState == "Failed" {
			failed = vms[0]
			return true
		}
		return false
	})
	if msg := failed.status("ProvisioningState/").Code; msg != "ProvisioningState/failed" {
		t.Errorf("status %q", msg)
	}
	r := e.Do(http.MethodGet, path+"/virtualMachines/0/instanceView", nil)
	if !strings.Contains(string(r.Body), "OSProvisioningTimedOut") {
		t.Errorf("instance view does not name OSProvisioningTimedOut: %s", r.Body)
	}
	// Not restarted on its own.
	time.Sleep(3 * time.Second)
	if n := len(qemuPIDs(filepath.Join(dataDir, "hosts", "local", "vms"))); n != 0 {
		t.Errorf("%d QEMU processes: the failed VM was restarted", n)
	}
	if vms := list(t, e, path); vms[0].Properties.ProvisioningState != "Failed" {
		t.Errorf("instance %s, want it to stay Failed", vms[0].Properties.ProvisioningState)
	}
}
