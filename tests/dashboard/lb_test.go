package dashboard

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmssd/vmssd/internal/testenv"
)

const netAPI = "?api-version=2024-05-01"

// TestLoadBalancerView: a set behind a load balancer shows the balancer's
// frontend (the public IP's address), rule and probe, its members in
// rotation, and each cell's private IP.
func TestLoadBalancerView(t *testing.T) {
	e := testenv.Start(t, testenv.Options{HealthGrace: 2 * time.Second})
	ctx := browser(t, e)
	e.CreateRG("rg")
	np := func(typ, name string) string {
		return e.RGPath("rg") + "/providers/Microsoft.Network/" + typ + "/" + name
	}
	put := func(path string, body any) map[string]any {
		t.Helper()
		r := e.Do(http.MethodPut, path+netAPI, body)
		if r.Status != http.StatusCreated && r.Status != http.StatusOK {
			t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
		}
		return r.Map()
	}
	vn := np("virtualNetworks", "vnet")
	put(vn, map[string]any{"location": "local", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{"10.0.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24"}}},
	}})
	pipID := np("publicIPAddresses", "pip")
	put(pipID, map[string]any{"location": "local", "properties": map[string]any{"publicIPAllocationMethod": "Static"}})
	addr, _ := dig(e.Do(http.MethodGet, pipID+netAPI, nil).Map(), "properties", "ipAddress").(string)
	lbID := np("loadBalancers", "lb")
	port := 20000 + rand.IntN(15000)
	put(lbID, map[string]any{"location": "local", "properties": map[string]any{
		"frontendIPConfigurations": []any{map[string]any{"name": "fe", "properties": map[string]any{"publicIPAddress": map[string]any{"id": pipID}}}},
		"backendAddressPools":      []any{map[string]any{"name": "pool"}},
		"probes": []any{map[string]any{"name": "health", "properties": map[string]any{
			"protocol": "Http", "port": 80, "requestPath": "/health", "intervalInSeconds": 5, "numberOfProbes": 2}}},
		"loadBalancingRules": []any{map[string]any{"name": "http", "properties": map[string]any{
			"protocol": "Tcp", "frontendPort": port, "backendPort": 80,
			"frontendIPConfiguration": map[string]any{"id": lbID + "/frontendIPConfigurations/fe"},
			"backendAddressPool":      map[string]any{"id": lbID + "/backendAddressPools/pool"},
			"probe":                   map[string]any{"id": lbID + "/probes/health"}}}},
	}})
	body := testenv.VMSSBody(2, "1.0.0", "Manual")
	body["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)["networkProfile"] = map[string]any{
		"healthProbe": map[string]any{"id": lbID + "/probes/health"},
		"networkInterfaceConfigurations": []any{map[string]any{"name": "nic", "properties": map[string]any{
			"primary": true,
			"ipConfigurations": []any{map[string]any{"name": "ipconfig", "properties": map[string]any{
				"subnet":                          map[string]any{"id": vn + "/subnets/default"},
				"loadBalancerBackendAddressPools": []any{map[string]any{"id": lbID + "/backendAddressPools/pool"}},
			}}},
		}}},
	}
	path := e.VMSSPath("rg", "web")
	waitDone(t, e, e.Do(http.MethodPut, path, body))

	nav(t, ctx, e.Server.URL+"/", "#login")
	run(t, ctx, "sign in",
		chromedp.SetValue(chromedp.ID("client_id"), e.Server.Client.ClientID),
		chromedp.SetValue(chromedp.ID("client_secret"), e.Server.Client.ClientSecret),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("who")),
	)
	set := e.Server.URL + "/ui/set?sub=" + e.Sub + "&rg=rg&name=web"
	deadline := time.Now().Add(60 * time.Second)
	for {
		nav(t, ctx, set, "#lbs")
		in := text(t, ctx, "#lbs .lb-in")
		if strings.HasPrefix(in, "2:") {
			break
		}
		if time.Now().After(deadline) {
			shot(t, ctx, "failed-lb")
			t.Fatalf("members in rotation: %q (out: %q)", in, text(t, ctx, "#lbs .lb-out"))
		}
		time.Sleep(time.Second)
	}
	lbs := text(t, ctx, "#lbs")
	for _, want := range []string{"lb", "fe: " + addr + " (public)", fmt.Sprintf("http: Tcp %d → 80, probe health", port), "health: Http port 80 /health"} {
		if !strings.Contains(lbs, want) {
			t.Errorf("load balancer view lacks %q:\n%s", want, lbs)
		}
	}
	ips := eval[[]string](t, ctx, `Array.from(document.querySelectorAll('#grid .cell')).map(c => c.dataset.ip)`)
	if len(ips) != 2 || !strings.HasPrefix(ips[0], "10.0.0.") || !strings.HasPrefix(ips[1], "10.0.0.") {
		t.Errorf("cells' private IPs %v, want two in 10.0.0.0/24", ips)
	}
	shot(t, ctx, "lb")
}
