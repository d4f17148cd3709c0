package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/vmssd/vmssd/internal/testenv"
)

const netAPIVersion = "?api-version=2025-05-01"

// lbSetup is a virtual network, a public IP and a load balancer in front
// of a scale set, as az creates them, on ports picked for this test (tests
// of several engineers share the loopback pool's addresses).
type lbSetup struct {
	rg, lbID, pipID, subnetID string
	addr                      string // the public IP's address
	port                      int    // the HTTP rule's frontend port
	natStart                  int    // the inbound NAT pool's first port
}

func (s lbSetup) frontend() string { return net.JoinHostPort(s.addr, strconv.Itoa(s.port)) }

func (s lbSetup) netPath(e *testenv.Env, typ, name string) string {
	return e.RGPath(s.rg) + "/providers/Microsoft.Network/" + typ + "/" + name
}

func netPut(t testing.TB, e *testenv.Env, path string, body any) map[string]any {
	t.Helper()
	r := e.Do(http.MethodPut, path+netAPIVersion, body)
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		t.Fatalf("PUT %s: %d %s", path, r.Status, r.Body)
	}
	return r.Map()
}

// createLB creates vnet "vnet" (10.0.0.0/16, subnet "default"
// 10.0.0.0/24), public IP "pip" and load balancer "lb": frontend "fe" on
// the public IP, pool "pool", an Http probe of /health on the guest port
// every 5 s (2 failures take a member out), rule "http" port -> 80 and NAT
// pool "ssh" natStart..natStart+119 -> 22.
func createLB(t testing.TB, e *testenv.Env, rg string) lbSetup {
	t.Helper()
	s := lbSetup{rg: rg, port: 20000 + rand.IntN(15000), natStart: 40000 + rand.IntN(20000)}
	vn := s.netPath(e, "virtualNetworks", "vnet")
	netPut(t, e, vn, map[string]any{"location": "local", "properties": map[string]any{
		"addressSpace": map[string]any{"addressPrefixes": []string{"10.0.0.0/16"}},
		"subnets":      []any{map[string]any{"name": "default", "properties": map[string]any{"addressPrefix": "10.0.0.0/24"}}},
	}})
	s.subnetID = vn + "/subnets/default"
	s.pipID = s.netPath(e, "publicIPAddresses", "pip")
	netPut(t, e, s.pipID, map[string]any{"location": "local", "properties": map[string]any{"publicIPAllocationMethod": "Static"}})
	r := e.Do(http.MethodGet, s.pipID+netAPIVersion, nil)
	var pip struct {
		Properties struct {
			IPAddress string `json:"ipAddress"`
		} `json:"properties"`
	}
	if err := r.JSON(&pip); err != nil || pip.Properties.IPAddress == "" {
		t.Fatalf("public IP: %d %s", r.Status, r.Body)
	}
	s.addr = pip.Properties.IPAddress
	s.lbID = s.netPath(e, "loadBalancers", "lb")
	fe := map[string]any{"id": s.lbID + "/frontendIPConfigurations/fe"}
	netPut(t, e, s.lbID, map[string]any{"location": "local", "properties": map[string]any{
		"frontendIPConfigurations": []any{map[string]any{"name": "fe", "properties": map[string]any{"publicIPAddress": map[string]any{"id": s.pipID}}}},
		"backendAddressPools":      []any{map[string]any{"name": "pool"}},
		"probes": []any{map[string]any{"name": "health", "properties": map[string]any{
			"protocol": "Http", "port": 80, "requestPath": "/health", "intervalInSeconds": 5, "numberOfProbes": 2}}},
		"loadBalancingRules": []any{map[string]any{"name": "http", "properties": map[string]any{
			"protocol": "Tcp", "frontendPort": s.port, "backendPort": 80, "frontendIPConfiguration": fe,
			"backendAddressPool": map[string]any{"id": s.lbID + "/backendAddressPools/pool"},
			"probe":              map[string]any{"id": s.lbID + "/probes/health"}, "idleTimeoutInMinutes": 4}}},
		"inboundNatPools": []any{map[string]any{"name": "ssh", "properties": map[string]any{
			"protocol": "Tcp", "frontendPortRangeStart": s.natStart, "frontendPortRangeEnd": s.natStart + 119, "backendPort": 22,
			"frontendIPConfiguration": fe}}},
	}})
	return s
}

// setBody is a scale set of the demo image whose NIC is in the subnet, the
// backend pool and the NAT pool, and whose health probe is the load
// balancer's.
func (s lbSetup) setBody(capacity int, version, mode string) map[string]any {
	b := testenv.VMSSBody(capacity, version, mode)
	vp := b["properties"].(map[string]any)["virtualMachineProfile"].(map[string]any)
	vp["networkProfile"] = map[string]any{
		"healthProbe": map[string]any{"id": s.lbID + "/probes/health"},
		"networkInterfaceConfigurations": []any{map[string]any{"name": "nic", "properties": map[string]any{
			"primary": true,
			"ipConfigurations": []any{map[string]any{"name": "ipconfig", "properties": map[string]any{
				"subnet":                          map[string]any{"id": s.subnetID},
				"loadBalancerBackendAddressPools": []any{map[string]any{"id": s.lbID + "/backendAddressPools/pool"}},
				"loadBalancerInboundNatPools":     []any{map[string]any{"id": s.lbID + "/inboundNatPools/ssh"}},
			}}},
		}}},
	}
	return b
}

// imds is what the demo guest's /metadata/instance says about itself.
type imds struct {
	Compute struct {
		Name    string `json:"name"`
		VMID    string `json:"vmId"`
		Version string `json:"version"`
	} `json:"compute"`
}

// whoAnswers asks addr (a frontend or NAT port) which instance answers,
// on a new connection.
func whoAnswers(addr string) (imds, error) {
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	var doc imds
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/metadata/instance?api-version=2021-02-01", nil)
	req.Header.Set("Metadata", "true")
	resp, err := c.Do(req)
	if err != nil {
		return doc, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return doc, fmt.Errorf("%s: %d %s", addr, resp.StatusCode, b)
	}
	return doc, json.Unmarshal(b, &doc)
}

// answering collects the instance names that answer n requests through
// the frontend.
func answering(t testing.TB, addr string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		doc, err := whoAnswers(addr)
		if err != nil {
			t.Fatalf("request through the frontend %s: %v", addr, err)
		}
		seen[doc.Compute.Name]++
	}
	return seen
}

// load is a steady vegeta attack through a frontend (loopback only, a new
// connection per request, bounded in time).
type load struct {
	atk     *vegeta.Attacker
	metrics vegeta.Metrics
	done    chan struct{}
}

func startLoad(addr string, rate int, max time.Duration) *load {
	l := &load{atk: vegeta.NewAttacker(vegeta.KeepAlive(false), vegeta.Proxy(nil), vegeta.Timeout(5*time.Second)), done: make(chan struct{})}
	results := l.atk.Attack(vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: "http://" + addr + "/health"}),
		vegeta.Rate{Freq: rate, Per: time.Second}, max, "network")
	go func() {
		defer close(l.done)
		for r := range results {
			l.metrics.Add(r)
		}
	}()
	return l
}

// stop ends the attack and returns the failed requests (errors and
// answers other than 200).
func (l *load) stop(t testing.TB, what string) uint64 {
	t.Helper()
	l.atk.Stop()
	<-l.done
	l.metrics.Close()
	m := &l.metrics
	failed := m.Requests - uint64(m.StatusCodes["200"])
	t.Logf("%s: %d requests in %s: %.1f req/s, p50 %s, p99 %s, max %s, %d failed, codes %v, errors %v",
		what, m.Requests, m.Duration.Round(time.Millisecond), m.Rate, m.Latencies.P50, m.Latencies.P99, m.Latencies.Max, failed, m.StatusCodes, firstErrs(m.Errors))
	fmt.Printf("%s: %.1f req/s, p99 %s, %d requests, %d failed\n", what, m.Rate, m.Latencies.P99, m.Requests, failed)
	return failed
}

func firstErrs(es []string) []string {
	if len(es) > 5 {
		return es[:5]
	}
	return es
}
