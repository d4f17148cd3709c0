package e2e

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestDeployTemplateShapes deploys the standard Azure Stack scale-set
// template shapes of testdata/templates (apiProfile 2018-03-01-hybrid,
// storage account, uniqueString names) and checks healthy instances: a new
// network (then scaled out by redeploying it with a larger instanceCount),
// an existing network, a custom-script extension, and a large set
// (overprovision, singlePlacementGroup false).
func TestDeployTemplateShapes(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	deployShape := func(t *testing.T, rg, name, file string, count int, extra map[string]any) (string, map[string]any) {
		t.Helper()
		r := e.Do(http.MethodPut, depPath(e, rg, name), depBody(readTemplate(t, file), demoParams(rg, count, extra)))
		st, res := waitDeployment(t, e, r, 3*time.Minute)
		if st != "Succeeded" {
			t.Fatalf("%s: %s: %v", file, st, res)
		}
		p := props(e.Do(http.MethodGet, depPath(e, rg, name), nil).Map())
		outs := p["outputs"].(map[string]any)
		id := outs["vmssId"].(map[string]any)["value"].(string)
		return id[strings.LastIndex(id, "/")+1:], outs
	}

	t.Run("new network, then scale by redeploy", func(t *testing.T) {
		e.CreateRG("newnet")
		set, outs := deployShape(t, "newnet", "d1", "vmss-new-network.json", 2, nil)
		waitHealthy(t, e, "newnet", set, 2, 2*time.Minute)
		if fqdn, _ := outs["fqdn"].(map[string]any)["value"].(string); fqdn == "" {
			t.Errorf("fqdn output: %v", outs)
		}
		ports, _ := outs["sshPorts"].(map[string]any)["value"].([]any)
		if len(ports) != 2 {
			t.Fatalf("sshPorts output: %v", outs)
		}
		// The load balancer works: each NAT pool port of the public IP
		// reaches its own instance.
		var pips struct{ Value []map[string]any }
		_ = e.Do(http.MethodGet, e.RGPath("newnet")+"/providers/Microsoft.Network/publicIPAddresses?api-version=2017-10-01", nil).JSON(&pips)
		if len(pips.Value) != 1 {
			t.Fatalf("public IPs: %v", pips.Value)
		}
		ip, _ := props(pips.Value[0])["ipAddress"].(string)
		seen := map[string]bool{}
		for _, p := range ports {
			addr := net.JoinHostPort(ip, fmt.Sprint(p))
			var doc imds
			testenv.Eventually(t, 30*time.Second, "an instance answers on "+addr, func() bool {
				var err error
				doc, err = whoAnswers(addr)
				return err == nil
			})
			seen[doc.Compute.Name] = true
		}
		if len(seen) != 2 {
			t.Fatalf("the NAT pool's ports reach %v, want 2 distinct instances", seen)
		}
		set2, _ := deployShape(t, "newnet", "d2", "vmss-new-network.json", 4, nil)
		if set2 != set {
			t.Fatalf("redeploy named another set: %s", set2)
		}
		waitHealthy(t, e, "newnet", set, 4, 2*time.Minute)
	})
	t.Run("existing network", func(t *testing.T) {
		e.CreateRG("existing")
		vnet := e.RGPath("existing") + "/providers/Microsoft.Network/virtualNetworks/corp?api-version=2017-10-01"
		r := e.Do(http.MethodPut, vnet, map[string]any{"location": "local", "properties": map[string]any{
			"addressSpace": map[string]any{"addressPrefixes": []any{"10.1.0.0/16"}},
			"subnets":      []any{map[string]any{"name": "apps", "properties": map[string]any{"addressPrefix": "10.1.0.0/24"}}},
		}})
		if r.Status != http.StatusCreated && r.Status != http.StatusOK {
			t.Fatalf("vnet: %d %s", r.Status, r.Body)
		}
		set, _ := deployShape(t, "existing", "d", "vmss-existing-network.json", 2, map[string]any{"existingVirtualNetworkName": "corp", "existingSubnetName": "apps"})
		waitHealthy(t, e, "existing", set, 2, 2*time.Minute)
	})
	t.Run("custom script extension", func(t *testing.T) {
		e.CreateRG("script")
		set, _ := deployShape(t, "script", "d", "vmss-custom-script.json", 2, nil)
		waitHealthy(t, e, "script", set, 2, 2*time.Minute)
		m := e.Do(http.MethodGet, e.VMSSPath("script", set), nil).Map()
		if !strings.Contains(string(mustJSON(m)), "CustomScript") {
			t.Fatalf("extension not in the model: %v", m)
		}
	})
	t.Run("large set", func(t *testing.T) {
		e.CreateRG("large")
		set, _ := deployShape(t, "large", "d", "vmss-large.json", 6, nil)
		waitHealthy(t, e, "large", set, 6, 3*time.Minute)
		p := props(e.Do(http.MethodGet, e.VMSSPath("large", set), nil).Map())
		if p["overprovision"] != true {
			t.Errorf("overprovision = %v", p["overprovision"])
		}
	})
}
