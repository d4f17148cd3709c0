package azcli

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// createdSet is the part of az vmss create's output (the deployment's
// "VMSS" output: the scale set as ARM's reference() returns it) checked.
type createdSet struct {
	VMSS struct {
		ProvisioningState string `json:"provisioningState"`
		UpgradePolicy     struct {
			Mode string `json:"mode"`
		} `json:"upgradePolicy"`
		VirtualMachineProfile struct {
			OSProfile struct {
				AdminUsername      string `json:"adminUsername"`
				LinuxConfiguration struct {
					DisablePasswordAuthentication bool `json:"disablePasswordAuthentication"`
				} `json:"linuxConfiguration"`
			} `json:"osProfile"`
		} `json:"virtualMachineProfile"`
	} `json:"VMSS"`
}

// healthyVM is an instance with the health its instance view reports.
type healthyVM struct {
	InstanceID string `json:"instanceId"`
	Name       string `json:"name"`
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
		InstanceView      struct {
			ComputerName string   `json:"computerName"`
			Statuses     []status `json:"statuses"`
			VMHealth     struct {
				Status status `json:"status"`
			} `json:"vmHealth"`
		} `json:"instanceView"`
	} `json:"properties"`
}

// waitHealthy waits until the set has n instances, each running and
// reported healthy through the API, and returns their names by instance id.
func waitHealthy(t *testing.T, e *testenv.Env, rg, name string, n int) map[string]string {
	t.Helper()
	names := map[string]string{}
	var last []byte
	testenv.Eventually(t, 90*time.Second, fmt.Sprintf("%s: %d running, healthy instances", name, n), func() bool {
		r := e.Do(http.MethodGet, e.VMSSPath(rg, name)+"/virtualMachines?$expand=instanceView", nil)
		last = r.Body
		var page struct {
			Value []healthyVM `json:"value"`
		}
		if r.Status != http.StatusOK || r.JSON(&page) != nil || len(page.Value) != n {
			return false
		}
		clear(names)
		for _, v := range page.Value {
			iv := v.Properties.InstanceView
			running := false
			for _, s := range iv.Statuses {
				running = running || s.Code == "PowerState/running"
			}
			if v.Properties.ProvisioningState != "Succeeded" || !running || iv.VMHealth.Status.Code != "HealthState/healthy" {
				return false
			}
			names[v.InstanceID] = v.Name
		}
		return true
	})
	if t.Failed() {
		t.Logf("last instances of %s: %s", name, last)
	}
	return names
}

// whoIs asks the demo guest behind addr (a load balancer frontend) who it is.
func whoIs(addr string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metadata/instance?api-version=2021-02-01", nil)
	req.Header.Set("Metadata", "true")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %d %s", addr, resp.StatusCode, b)
	}
	var doc struct {
		Compute struct {
			Name string `json:"name"`
		} `json:"compute"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return "", fmt.Errorf("%s: %w: %s", addr, err, b)
	}
	return doc.Compute.Name, nil
}

// TestAzVMSSCreate: az vmss create as on Azure (image URN, generated SSH
// key or password, Manual or Rolling upgrades) under the hybrid profile:
// az looks the image up, lists the virtual networks, deploys the template
// it generates (virtual network, public IP, load balancer with a NAT
// pool, the scale set). The instances become healthy (API) and answer
// through the load balancer's frontend: each NAT port that
// az vmss list-instance-connection-info prints reaches its own instance,
// and, once the load balancer has an Http probe and a rule to port 80,
// the rule's frontend port reaches them all. Then az vmss delete. Under --profile latest, Debian's az fails on the client.
func TestAzVMSSCreate(t *testing.T) {
	e, proxy, a := startWithAZ(t)
	a.run("group", "create", "-n", "rg1", "-l", "local", "-o", "none")
	image := []string{"--image", "vmssd:demo:guest:1.0.0", "--admin-username", "azureuser"}

	// SSH key, Manual upgrades, the default Basic load balancer (a NAT
	// pool 50000-50119 -> 22, no rule).
	var c createdSet
	a.json(&c, append([]string{"vmss", "create", "-g", "rg1", "-n", "web", "--instance-count", "2", "--generate-ssh-keys"}, image...)...)
	if v := c.VMSS; v.ProvisioningState != "Succeeded" || !strings.EqualFold(v.UpgradePolicy.Mode, "Manual") ||
		v.VirtualMachineProfile.OSProfile.AdminUsername != "azureuser" || !v.VirtualMachineProfile.OSProfile.LinuxConfiguration.DisablePasswordAuthentication {
		t.Fatalf("az vmss create (ssh key): %+v", c)
	}
	waitHealthy(t, e, "rg1", "web", 2)
	var conn map[string]string
	a.json(&conn, "vmss", "list-instance-connection-info", "-g", "rg1", "-n", "web")
	if len(conn) != 2 {
		t.Fatalf("az vmss list-instance-connection-info: %v", conn)
	}
	for _, id := range []string{"0", "1"} {
		want := "web_" + id // the demo guest's metadata names the instance as Azure's does
		addr := conn["instance "+id]
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			t.Fatalf("connection info of instance %s: %q (%v)", id, addr, err)
		}
		var got string
		testenv.Eventually(t, 20*time.Second, "instance "+id+" answering at "+addr, func() bool {
			n, err := whoIs(addr)
			got = n
			return err == nil
		})
		if got != want {
			t.Errorf("NAT port %s of instance %s answered as %q, want %q", addr, id, got, want)
		}
	}

	// A password and Rolling upgrades (a new set into the same virtual
	// network: az finds webVNET and puts the set in its subnet).
	c = createdSet{}
	a.json(&c, append([]string{"vmss", "create", "-g", "rg1", "-n", "roll", "--instance-count", "2", "--authentication-type", "password",
		"--admin-password", "S3cret!Passw0rd", "--upgrade-policy-mode", "Rolling"}, image...)...)
	if v := c.VMSS; v.ProvisioningState != "Succeeded" || !strings.EqualFold(v.UpgradePolicy.Mode, "Rolling") ||
		v.VirtualMachineProfile.OSProfile.LinuxConfiguration.DisablePasswordAuthentication {
		t.Fatalf("az vmss create (password, Rolling): %+v", c)
	}
	waitHealthy(t, e, "rg1", "roll", 2)

	// az's Basic load balancer has no rule. Given an Http probe and a rule
	// (through the API: Debian's az has no network SDK for the hybrid
	// profile's 2018-11-01, so az network lb probe|rule create fail on the
	// client), the frontend's rule port reaches both instances.
	host, _, _ := net.SplitHostPort(conn["instance 0"])
	port := 20000 + rand.IntN(15000)
	lbPath := e.RGPath("rg1") + "/providers/Microsoft.Network/loadBalancers/webLB"
	r := e.Do(http.MethodGet, lbPath+"?api-version=2018-11-01", nil)
	lb := r.Map()
	if r.Status != http.StatusOK {
		t.Fatalf("GET webLB: %d %s", r.Status, r.Body)
	}
	lbID := lb["id"].(string)
	props := lb["properties"].(map[string]any)
	props["probes"] = []any{map[string]any{"name": "http", "properties": map[string]any{
		"protocol": "Http", "port": 80, "requestPath": "/health", "intervalInSeconds": 5, "numberOfProbes": 2}}}
	props["loadBalancingRules"] = []any{map[string]any{"name": "http", "properties": map[string]any{
		"protocol": "Tcp", "frontendPort": port, "backendPort": 80,
		"frontendIPConfiguration": map[string]any{"id": lbID + "/frontendIPConfigurations/loadBalancerFrontEnd"},
		"backendAddressPool":      map[string]any{"id": lbID + "/backendAddressPools/webLBBEPool"},
		"probe":                   map[string]any{"id": lbID + "/probes/http"}}}}
	delete(props, "inboundNatRules") // the NAT pool's, read-only
	if st, _ := e.Wait(e.Do(http.MethodPut, lbPath+"?api-version=2018-11-01", lb), 30*time.Second); st != "Succeeded" {
		t.Fatalf("PUT webLB with a rule: %s", st)
	}
	frontend := net.JoinHostPort(host, strconv.Itoa(port))
	testenv.Eventually(t, 30*time.Second, "both instances answering at "+frontend, func() bool {
		seen := map[string]bool{}
		for range 20 {
			n, err := whoIs(frontend)
			if err != nil {
				return false
			}
			seen[n] = true
		}
		return len(seen) == 2 && seen["web_0"] && seen["web_1"]
	})

	for _, set := range []string{"web", "roll"} {
		a.run("vmss", "delete", "-g", "rg1", "-n", set)
		if r := e.Do(http.MethodGet, e.VMSSPath("rg1", set), nil); r.Status != http.StatusNotFound {
			t.Fatalf("%s after az vmss delete: %d %s", set, r.Status, r.Body)
		}
	}

	// Under --profile latest Debian's az has no api-version for the
	// compute operations it asks for, and fails before sending anything.
	l := newAZ(t, proxy)
	if out, errOut, err := l.shell(strings.ReplaceAll(strings.Join(e.Server.AzureCLICommands(), "\n"), "2020-09-01-hybrid", "latest")); err != nil {
		t.Fatalf("banner commands with --profile latest: %v\n%s%s", err, out, errOut)
	}
	l.setenv("REQUESTS_CA_BUNDLE", e.Server.CAFile)
	if _, errOut, err := l.try(append([]string{"vmss", "create", "-g", "rg1", "-n", "late", "--generate-ssh-keys"}, image...)...); err == nil || !strings.Contains(errOut, "does not have operation group") {
		t.Errorf("az vmss create under --profile latest: %v %s", err, errOut)
	}
}
