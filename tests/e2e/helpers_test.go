package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

type status struct {
	Code          string `json:"code"`
	DisplayStatus string `json:"displayStatus"`
	Message       string `json:"message"`
}

type vm struct {
	InstanceID string `json:"instanceId"`
	Name       string `json:"name"`
	Properties struct {
		LatestModelApplied bool   `json:"latestModelApplied"`
		ProvisioningState  string `json:"provisioningState"`
		VMID               string `json:"vmId"`
		StorageProfile     struct {
			ImageReference struct {
				Version      string `json:"version"`
				ExactVersion string `json:"exactVersion"`
			} `json:"imageReference"`
		} `json:"storageProfile"`
		OSProfile struct {
			ComputerName string `json:"computerName"`
		} `json:"osProfile"`
		InstanceView struct {
			PlatformFaultDomain  int      `json:"platformFaultDomain"`
			PlatformUpdateDomain int      `json:"platformUpdateDomain"`
			Statuses             []status `json:"statuses"`
			VMHealth             struct {
				Status status `json:"status"`
			} `json:"vmHealth"`
		} `json:"instanceView"`
	} `json:"properties"`
}

func (v vm) statusWithPrefix(p string) string {
	for _, s := range v.Properties.InstanceView.Statuses {
		if strings.HasPrefix(s.Code, p) {
			return s.Code
		}
	}
	return ""
}

func (v vm) power() string { return v.statusWithPrefix("PowerState/") }

func (v vm) health() string { return v.Properties.InstanceView.VMHealth.Status.Code }

func (v vm) endpoint() string {
	for _, s := range v.Properties.InstanceView.Statuses {
		if s.Code == "Endpoint/health" {
			return s.DisplayStatus
		}
	}
	return ""
}

func listVMs(t testing.TB, e *testenv.Env, rg, name string) []vm {
	t.Helper()
	var out []vm
	url := e.VMSSPath(rg, name) + "/virtualMachines?$expand=instanceView"
	for url != "" {
		r := e.Do(http.MethodGet, url, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("list vms: %d %s", r.Status, r.Body)
		}
		var page struct {
			Value    []vm   `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if err := r.JSON(&page); err != nil {
			t.Fatal(err)
		}
		out = append(out, page.Value...)
		url = page.NextLink
	}
	return out
}

// guestHealth asks an instance's guest directly what it runs.
func guestHealth(addr string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/health")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h struct {
		ImageVersion string `json:"imageVersion"`
	}
	_ = json.Unmarshal(b, &h)
	return resp.StatusCode, h.ImageVersion, nil
}

// waitHealthy waits until the set has n instances, all running and healthy,
// and returns them.
func waitHealthy(t testing.TB, e *testenv.Env, rg, name string, n int, timeout time.Duration) []vm {
	t.Helper()
	var vms []vm
	defer func() {
		if t.Failed() {
			for _, v := range vms {
				t.Logf("instance %s: %s %s %s %s", v.InstanceID, v.Properties.ProvisioningState, v.power(), v.health(), v.Properties.InstanceView.Statuses)
			}
		}
	}()
	testenv.Eventually(t, timeout, fmt.Sprintf("%d healthy instances", n), func() bool {
		vms = listVMs(t, e, rg, name)
		if len(vms) != n {
			return false
		}
		for _, v := range vms {
			if v.power() != "PowerState/running" || v.health() != "HealthState/healthy" || v.Properties.ProvisioningState != "Succeeded" {
				return false
			}
		}
		return true
	})
	return vms
}

// versions maps instance id to the image version its guest reports.
func versions(t testing.TB, vms []vm) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, v := range vms {
		code, ver, err := guestHealth(v.endpoint())
		if err != nil || code != http.StatusOK {
			t.Fatalf("instance %s health: %d %v", v.InstanceID, code, err)
		}
		out[v.InstanceID] = ver
	}
	return out
}

func mustAccepted(t testing.TB, r *testenv.Response) {
	t.Helper()
	if r.Status != http.StatusAccepted {
		t.Fatalf("want 202, got %d %s", r.Status, r.Body)
	}
}

func waitOp(t testing.TB, e *testenv.Env, r *testenv.Response) {
	t.Helper()
	st, m := e.Wait(r, 60*time.Second)
	if st != "Succeeded" {
		t.Fatalf("operation ended %s: %v", st, m)
	}
}
