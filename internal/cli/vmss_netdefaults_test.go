package cli

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v9"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestVMSSCreateNetworkDefaults: `vmss create` creates az's virtual
// network, public IP and load balancer for the set, puts its NIC in the
// subnet, backend pool and NAT pool, and the load balancer's frontend
// answers from the instances; `--lb ""` makes none, and an existing
// virtual network named by --vnet-name is used as it is.
func TestVMSSCreateNetworkDefaults(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	c := newCtl(t, e)
	c.ok("group", "create", "-n", "rg1")
	// Ports of this test only: other tests' servers share the pool's
	// addresses.
	fport, nat := 20000+rand.IntN(15000), 40000+rand.IntN(20000)
	_, errOut, code := c.run("vmss", "create", "-g", "rg1", "-n", "web", "--image", "vmssd:demo:guest:1.0.0", "--instance-count", "2",
		"--lb-frontend-port", strconv.Itoa(fport), "--nat-frontend-port-start", strconv.Itoa(nat), "-o", "none")
	if code != ExitOK {
		t.Fatalf("vmss create: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"Creating virtual network webVNET", "Creating public IP address webLBPublicIP", "Creating load balancer webLB"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not say %q:\n%s", want, errOut)
		}
	}
	var set armcompute.VirtualMachineScaleSet
	c.json(&set, "vmss", "show", "-g", "rg1", "-n", "web")
	np := set.Properties.VirtualMachineProfile.NetworkProfile
	if np == nil || len(np.NetworkInterfaceConfigurations) != 1 || np.HealthProbe == nil || !strings.HasSuffix(str(np.HealthProbe.ID), "/loadBalancers/webLB/probes/healthProbe") {
		t.Fatalf("networkProfile: %+v", np)
	}
	ipc := np.NetworkInterfaceConfigurations[0].Properties.IPConfigurations[0].Properties
	if !strings.HasSuffix(str(ipc.Subnet.ID), "/virtualNetworks/webVNET/subnets/webSubnet") || len(ipc.LoadBalancerBackendAddressPools) != 1 || len(ipc.LoadBalancerInboundNatPools) != 1 {
		t.Fatalf("ipConfiguration: %+v", ipc)
	}
	var pip armnetwork.PublicIPAddress
	c.json(&pip, "network", "public-ip", "show", "-g", "rg1", "-n", "webLBPublicIP")
	addr := str(pip.Properties.IPAddress)
	if addr == "" {
		t.Fatalf("public IP without an address: %+v", pip.Properties)
	}
	// Both instances answer through the frontend.
	frontend := net.JoinHostPort(addr, strconv.Itoa(fport))
	seen := map[string]bool{}
	client := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	eventually(t, "both instances answering through "+frontend, func() bool {
		resp, err := client.Get("http://" + frontend + "/metadata/instance")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			for _, n := range []string{"web_0", "web_1"} {
				if strings.Contains(string(b), fmt.Sprintf("%q", n)) {
					seen[n] = true
				}
			}
		}
		return len(seen) == 2
	})

	// --lb "": a virtual network (the existing one), no load balancer.
	_, errOut, code = c.run("vmss", "create", "-g", "rg1", "-n", "solo", "--image", "vmssd:demo:guest:1.0.0", "--instance-count", "0",
		"--lb", "", "--vnet-name", "webVNET", "--subnet", "webSubnet", "-o", "none")
	if code != ExitOK {
		t.Fatalf("vmss create --lb '': exit %d\n%s", code, errOut)
	}
	if strings.Contains(errOut, "Creating") {
		t.Errorf("created something for an existing subnet and no load balancer:\n%s", errOut)
	}
	var solo armcompute.VirtualMachineScaleSet
	c.json(&solo, "vmss", "show", "-g", "rg1", "-n", "solo")
	np = solo.Properties.VirtualMachineProfile.NetworkProfile
	ipc = np.NetworkInterfaceConfigurations[0].Properties.IPConfigurations[0].Properties
	if np.HealthProbe != nil || len(ipc.LoadBalancerBackendAddressPools) != 0 || !strings.HasSuffix(str(ipc.Subnet.ID), "/subnets/webSubnet") {
		t.Fatalf("networkProfile with --lb '': %+v %+v", np, ipc)
	}
	if _, errOut, code := c.run("network", "lb", "show", "-g", "rg1", "-n", "soloLB"); code == ExitOK {
		t.Fatalf("soloLB exists:\n%s", errOut)
	}
}
