package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestCoreScenario walks the user story: create 5 real instances,
// change the model's image version, upgrade two by id (U3, U4), scale to 8
// (new instances take the latest model) and back to 3, power one off,
// reimage one, deallocate one, delete the set.
func TestCoreScenario(t *testing.T) {
	e := testenv.Start(t, testenv.Options{PageSize: 3})
	e.CreateRG("rg1")
	path := e.VMSSPath("rg1", "web")

	r := e.Do(http.MethodPut, path, testenv.VMSSBody(5, "1.0.0", "Manual"))
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("Azure-AsyncOperation") == "" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("missing LRO headers: %v", r.Header)
	}
	waitOp(t, e, r)

	vms := waitHealthy(t, e, "rg1", "web", 5, 30*time.Second)
	fds, uds := map[int]int{}, map[int]int{}
	for _, v := range vms {
		fds[v.Properties.InstanceView.PlatformFaultDomain]++
		uds[v.Properties.InstanceView.PlatformUpdateDomain]++
		if v.Name != "web_"+v.InstanceID {
			t.Errorf("name %q for instance %s", v.Name, v.InstanceID)
		}
	}
	if len(fds) != 5 || len(uds) != 5 {
		t.Errorf("instances not spread over fault/update domains: fd=%v ud=%v", fds, uds)
	}
	if vms[0].Properties.OSProfile.ComputerName != "web000000" {
		t.Errorf("computer name %q", vms[0].Properties.OSProfile.ComputerName)
	}
	for id, ver := range versions(t, vms) {
		if ver != "1.0.0" {
			t.Errorf("instance %s runs %s, want 1.0.0", id, ver)
		}
	}

	// GET never echoes secrets.
	g := e.Do(http.MethodGet, path, nil)
	if g.Status != http.StatusOK || containsBytes(g.Body, "S3cret") {
		t.Fatalf("get: %d, secret echoed=%v", g.Status, containsBytes(g.Body, "S3cret"))
	}

	// Change the model (U3): Manual policy touches no instance.
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
		"storageProfile": map[string]any{"imageReference": map[string]any{"version": "1.1.0"}}}}}))
	vms = listVMs(t, e, "rg1", "web")
	for _, v := range vms {
		if v.Properties.LatestModelApplied {
			t.Errorf("instance %s: latestModelApplied true before manualupgrade", v.InstanceID)
		}
	}

	// Upgrade two instances by id (U4).
	r = e.Do(http.MethodPost, path+"/manualupgrade", map[string]any{"instanceIds": []string{"0", "1"}})
	mustAccepted(t, r)
	waitOp(t, e, r)
	vms = waitHealthy(t, e, "rg1", "web", 5, 30*time.Second)
	got := versions(t, vms)
	want := map[string]string{"0": "1.1.0", "1": "1.1.0", "2": "1.0.0", "3": "1.0.0", "4": "1.0.0"}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("after manualupgrade: instance %s runs %s, want %s", id, got[id], w)
		}
	}
	for _, v := range vms {
		if v.Properties.LatestModelApplied != (v.InstanceID == "0" || v.InstanceID == "1") {
			t.Errorf("instance %s latestModelApplied=%v", v.InstanceID, v.Properties.LatestModelApplied)
		}
	}

	// Scale to 8 with a PUT of {location, sku} only, as az vmss scale does:
	// the rest of the model is kept and new instances take the latest model.
	r = e.Do(http.MethodPut, path, map[string]any{"location": "local", "sku": map[string]any{"name": "Standard_A1", "capacity": 8}})
	if r.Status != http.StatusOK {
		t.Fatalf("scale put: %d %s", r.Status, r.Body)
	}
	waitOp(t, e, r)
	vms = waitHealthy(t, e, "rg1", "web", 8, 30*time.Second)
	got = versions(t, vms)
	for _, id := range []string{"5", "6", "7"} {
		if got[id] != "1.1.0" {
			t.Errorf("scaled-out instance %s runs %s, want 1.1.0", id, got[id])
		}
	}
	g = e.Do(http.MethodGet, path, nil)
	if !containsBytes(g.Body, `"computerNamePrefix":"web"`) {
		t.Errorf("PUT of {location, sku} wiped the model: %s", g.Body)
	}

	// Scale back to 3 (PATCH).
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"sku": map[string]any{"capacity": 3}}))
	vms = waitHealthy(t, e, "rg1", "web", 3, 30*time.Second)

	ids := []string{}
	for _, v := range vms {
		ids = append(ids, v.InstanceID)
	}
	sort.Strings(ids)
	a, b, c := ids[0], ids[1], ids[2]
	inst := func(id string) vm {
		for _, v := range listVMs(t, e, "rg1", "web") {
			if v.InstanceID == id {
				return v
			}
		}
		t.Fatalf("instance %s gone", id)
		return vm{}
	}

	// Power off one: it stops, its disk stays.
	waitOp(t, e, e.Do(http.MethodPost, path+"/virtualMachines/"+a+"/poweroff", nil))
	testenv.Eventually(t, 10*time.Second, "stopped", func() bool { return inst(a).power() == "PowerState/stopped" })
	waitOp(t, e, e.Do(http.MethodPost, path+"/virtualMachines/"+a+"/start", nil))
	testenv.Eventually(t, 20*time.Second, "running+healthy", func() bool {
		v := inst(a)
		return v.power() == "PowerState/running" && v.health() == "HealthState/healthy"
	})

	// Reimage one: a fresh disk from its image.
	vb := inst(b)
	disk := filepath.Join(e.Config.DataDir, "hosts", "local", "instances", vb.Properties.VMID, "disk")
	marker := filepath.Join(disk, "marker")
	if err := os.WriteFile(marker, []byte("x"), 0o644); err != nil {
		t.Fatalf("write marker in the instance disk: %v", err)
	}
	waitOp(t, e, e.Do(http.MethodPost, path+"/reimage", map[string]any{"instanceIds": []string{b}}))
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("reimage kept the old disk (marker: %v)", err)
	}
	testenv.Eventually(t, 20*time.Second, "reimaged healthy", func() bool { return inst(b).health() == "HealthState/healthy" })

	// Deallocate one: process and port released, record kept.
	waitOp(t, e, e.Do(http.MethodPost, path+"/deallocate", map[string]any{"instanceIds": []string{c}}))
	testenv.Eventually(t, 10*time.Second, "deallocated", func() bool {
		v := inst(c)
		return v.power() == "PowerState/deallocated" && v.endpoint() == ""
	})

	// Delete the set: everything goes.
	r = e.Do(http.MethodDelete, path, nil)
	mustAccepted(t, r)
	waitOp(t, e, r)
	if g := e.Do(http.MethodGet, path, nil); g.Status != http.StatusNotFound || g.ErrorCode() != "ResourceNotFound" {
		t.Fatalf("get after delete: %d %s", g.Status, g.Body)
	}
	entries, _ := os.ReadDir(filepath.Join(e.Config.DataDir, "hosts", "local", "instances"))
	if len(entries) != 0 {
		t.Errorf("instance directories left behind: %d", len(entries))
	}
}

func containsBytes(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
