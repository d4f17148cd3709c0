package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/netctl"
	"github.com/vmssd/vmssd/internal/testenv"
)

// nicAddress reads an instance's primary private address from its NIC view.
func nicAddress(t testing.TB, e *testenv.Env, path, id string) string {
	t.Helper()
	r := e.Do(http.MethodGet, path+"/virtualMachines/"+id+"/networkInterfaces?api-version=2018-10-01", nil)
	var page struct {
		Value []struct {
			Properties struct {
				IPConfigurations []struct {
					Properties struct {
						PrivateIPAddress string `json:"privateIPAddress"`
					} `json:"properties"`
				} `json:"ipConfigurations"`
			} `json:"properties"`
		} `json:"value"`
	}
	if err := r.JSON(&page); err != nil || r.Status != http.StatusOK || len(page.Value) != 1 || len(page.Value[0].Properties.IPConfigurations) == 0 {
		t.Fatalf("NIC view of instance %s: %d %s", id, r.Status, r.Body)
	}
	return page.Value[0].Properties.IPConfigurations[0].Properties.PrivateIPAddress
}

// TestLoadBalancerEndToEnd: real instances behind the real load balancer.
// Requests through the frontend reach every healthy instance; each
// instance has its own private address in the subnet (NIC view); NAT pool
// port start+k reaches instance k; an instance whose probe fails leaves
// rotation within interval x threshold (plus the probe's timeout) and
// returns when it passes; a scale-out adds backends and a scale-in drains
// the leaving ones first (no request fails meanwhile).
func TestLoadBalancerEndToEnd(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg")
	s := createLB(t, e, "rg")
	path := e.VMSSPath("rg", "web")
	waitOp(t, e, e.Do(http.MethodPut, path, s.setBody(3, "1.0.0", "Manual")))
	lbKey := model.NetRef{Sub: e.Sub, RG: "rg", Type: model.NetLoadBalancers, Name: "lb"}.Key()
	defer func() {
		if t.Failed() {
			if b := e.Server.Network.Balancer(lbKey); b != nil {
				t.Logf("load balancer members: %+v", b.Health())
			}
		}
	}()
	vms := waitHealthy(t, e, "rg", "web", 3, 60*time.Second)

	// Every healthy instance answers through the frontend.
	testenv.Eventually(t, 30*time.Second, "every instance answering through the frontend", func() bool {
		return len(answering(t, s.frontend(), 30)) == 3
	})

	// Private addresses from the subnet, one per instance, in the NIC views.
	subnet := netip.MustParsePrefix("10.0.0.0/24")
	addrs := map[string]string{}
	for _, v := range vms {
		a := nicAddress(t, e, path, v.InstanceID)
		ip, err := netip.ParseAddr(a)
		if err != nil || !subnet.Contains(ip) {
			t.Fatalf("instance %s private address %q is not in %s", v.InstanceID, a, subnet)
		}
		if other, dup := addrs[a]; dup {
			t.Fatalf("instances %s and %s share %s", other, v.InstanceID, a)
		}
		addrs[a] = v.InstanceID
	}

	// NAT pool: port start+k reaches instance k.
	for _, v := range vms {
		k, _ := strconv.Atoi(v.InstanceID)
		doc, err := whoAnswers(net.JoinHostPort(s.addr, strconv.Itoa(s.natStart+k)))
		if err != nil {
			t.Fatalf("NAT port of instance %d: %v", k, err)
		}
		if doc.Compute.Name != v.Name {
			t.Errorf("NAT port %d answered by %s, want %s", s.natStart+k, doc.Compute.Name, v.Name)
		}
	}

	// A probe that fails: the guest of instance 1 stops answering.
	victim := vms[1]
	pid := testenv.Containers(e.Config.DataDir)[victim.Properties.VMID]
	if pid == 0 {
		o, _ := e.Server.Host.Get(victim.Properties.VMID)
		pid = o.PID
	}
	if pid == 0 {
		t.Fatalf("no process for instance %s", victim.InstanceID)
	}
	set := model.SetRef{Sub: e.Sub, RG: "rg", Name: "web"}
	member := netctl.MemberID(set, 1, "nic")
	data := e.Server.Network.Balancer(lbKey)
	if data == nil {
		t.Fatal("the load balancer's data plane is not running")
	}
	if !data.Health()[member].InRotation {
		t.Fatalf("instance 1 not in rotation before the test: %+v", data.Health()[member])
	}
	setGuestHealthy(t, pid, false)
	failing := time.Now()
	t.Cleanup(func() { setGuestHealthy(t, pid, true) })
	// interval x threshold = 10 s (the probes answer 503 at once), and a
	// margin for a busy machine.
	testenv.Eventually(t, 13*time.Second, "instance 1 out of rotation", func() bool { return !data.Health()[member].InRotation })
	t.Logf("probe failure to out of rotation: %s (interval 5 s x 2 probes)", time.Since(failing).Round(10*time.Millisecond))
	for name := range answering(t, s.frontend(), 20) {
		if name == victim.Name {
			t.Fatalf("%s answered while out of rotation", name)
		}
	}
	// The instance view agrees (healthProbe names the load balancer's probe).
	testenv.Eventually(t, 10*time.Second, "instance 1 unhealthy in its view", func() bool {
		for _, v := range listVMs(t, e, "rg", "web") {
			if v.InstanceID == "1" {
				return v.health() == "HealthState/unhealthy"
			}
		}
		return false
	})
	setGuestHealthy(t, pid, true)
	testenv.Eventually(t, 12*time.Second, "instance 1 back in rotation", func() bool { return data.Health()[member].InRotation })

	// Power off and deallocate drain first; start brings the instance back
	// once its probe passes. No request fails meanwhile.
	l := startLoad(s.frontend(), 50, 2*time.Minute)
	time.Sleep(500 * time.Millisecond)
	waitOp(t, e, e.Do(http.MethodPost, path+"/virtualMachines/0/poweroff", nil))
	waitOp(t, e, e.Do(http.MethodPost, path+"/virtualMachines/2/deallocate", nil))
	member0 := netctl.MemberID(set, 0, "nic")
	if data.Health()[member0].InRotation {
		t.Errorf("instance 0 in rotation while powered off: %+v", data.Health()[member0])
	}
	waitOp(t, e, e.Do(http.MethodPost, path+"/virtualMachines/0/start", nil))
	waitOp(t, e, e.Do(http.MethodPost, path+"/virtualMachines/2/start", nil))
	testenv.Eventually(t, 15*time.Second, "instance 0 back in rotation", func() bool { return data.Health()[member0].InRotation })
	if failed := l.stop(t, "lb power off, deallocate, start"); failed != 0 {
		t.Errorf("%d requests failed while instances were stopped and started", failed)
	}

	// Scale-out adds a backend.
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"sku": map[string]any{"capacity": 4}}))
	waitHealthy(t, e, "rg", "web", 4, 60*time.Second)
	testenv.Eventually(t, 30*time.Second, "4 instances answering through the frontend", func() bool {
		return len(answering(t, s.frontend(), 40)) == 4
	})

	// Scale-in drains the leaving instances first: no request fails.
	l = startLoad(s.frontend(), 50, 2*time.Minute)
	time.Sleep(500 * time.Millisecond)
	waitOp(t, e, e.Do(http.MethodPatch, path, map[string]any{"sku": map[string]any{"capacity": 2}}))
	time.Sleep(time.Second)
	if failed := l.stop(t, "lb scale-in"); failed != 0 {
		t.Errorf("%d requests failed during the scale-in", failed)
	}
	vms = waitHealthy(t, e, "rg", "web", 2, 30*time.Second)
	seen := answering(t, s.frontend(), 20)
	if len(seen) != 2 {
		t.Errorf("after the scale-in, answers from %v", seen)
	}
	for _, v := range vms {
		if seen[v.Name] == 0 {
			t.Errorf("remaining instance %s does not answer: %v", v.Name, seen)
		}
	}
}

// setGuestHealthy makes the demo guest of process pid answer its health
// probe with 200 or 503: the guest re-reads its config file from its disk
// on every request (the container's root, seen through /proc/pid/root).
func setGuestHealthy(t testing.TB, pid int, healthy bool) {
	t.Helper()
	disk := "/"
	env, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, artifact.EnvDisk+"="); ok && v != "" {
			disk = v
		}
	}
	path := filepath.Join("/proc", strconv.Itoa(pid), "root", disk, artifact.GuestConfigPath)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("guest config: %v", err)
	}
	var cfg artifact.GuestConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Healthy = healthy
	b, _ = json.Marshal(cfg)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatalf("guest config: %v", err)
	}
}
