package security

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/testenv"
)

// requireSandbox skips without runc or root, unless VMSSD_E2E=1 (then the
// test fails).
func requireSandbox(t *testing.T) {
	t.Helper()
	if !testenv.CanSandbox() {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatal("VMSSD_E2E=1: this host cannot sandbox process instances (runc, root)")
		}
		t.Skip("this host cannot sandbox process instances (runc, root)")
	}
}

// shellImage is a tenant's vmssd.process/v1 artifact whose entrypoint is
// "/bin/sh -c script", with busybox (static) as its shell and tools.
func shellImage(t *testing.T, script string) []byte {
	t.Helper()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: busybox-static: %v", err)
		}
		t.Skipf("busybox-static: %v", err)
	}
	manifest, _ := json.Marshal(map[string]any{
		"format": "vmssd.process/v1", "osType": "Linux", "name": "hostile", "version": "1.0.0",
		"entrypoint":  []string{"/bin/sh", "-c", script},
		"env":         map[string]string{"PATH": "/bin"},
		"healthProbe": map[string]string{"protocol": "http", "path": "/health"},
	})
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(h *tar.Header, data []byte) {
		h.ModTime = time.Unix(0, 0)
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(manifest)), Typeflag: tar.TypeReg}, manifest)
	add(&tar.Header{Name: "rootfs/", Mode: 0o755, Typeflag: tar.TypeDir}, nil)
	add(&tar.Header{Name: "rootfs/bin/", Mode: 0o755, Typeflag: tar.TypeDir}, nil)
	add(&tar.Header{Name: "rootfs/bin/busybox", Mode: 0o755, Size: int64(len(busybox)), Typeflag: tar.TypeReg}, busybox)
	for _, applet := range []string{"sh", "cat", "ls", "echo", "nc", "httpd", "mkdir", "find", "sleep", "id", "hostname", "grep", "wc"} {
		add(&tar.Header{Name: "rootfs/bin/" + applet, Linkname: "busybox", Typeflag: tar.TypeSymlink, Mode: 0o777}, nil)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestHostileProcessImage (issue 6): a tenant's process image that runs a
// shell looks for the server's data directory, the operator's credential,
// the token-signing key, another instance's directory and the API port.
// It runs in a runc sandbox: none of it is visible, its console shows
// only its own output, the user namespace maps its root to an unprivileged
// range and the size's limits are cgroup limits.
func TestHostileProcessImage(t *testing.T) {
	requireSandbox(t)
	e := start(t, testenv.Options{})
	dataDir := e.Config.DataDir
	apiURL, _ := url.Parse(e.Server.URL)

	// Another tenant's instance, whose directory the hostile one looks for.
	other := setupTenant(t, e, "tenantB", subB)
	other.token = e.IssueToken(other.id, auth.RoleTenant)
	other.createSet(t, e)
	otherDirs, _ := filepath.Glob(filepath.Join(testenv.InstancesRoot(dataDir), "*"))
	if len(otherDirs) == 0 {
		t.Fatal("no instance directory for tenant B")
	}
	operatorCred, err := os.ReadFile(filepath.Join(dataDir, "operator.json"))
	if err != nil {
		t.Fatalf("operator credential: %v", err)
	}

	tn := setupTenant(t, e, "tenantA", subA)
	tn.token = e.IssueToken(tn.id, auth.RoleTenant)
	if r := send(t, e, tn.token, call{method: http.MethodPut, path: tn.rg(), body: map[string]any{"location": "local"}}); r.Status != http.StatusCreated {
		t.Fatalf("create rg: %d %s", r.Status, r.Body)
	}
	probes := []string{dataDir, filepath.Join(dataDir, "operator.json"), filepath.Join(dataDir, "token-signing.key"),
		filepath.Join(dataDir, "state.db"), otherDirs[0], filepath.Join(otherDirs[0], "console.log")}
	var sb strings.Builder
	sb.WriteString("echo HOSTILE-BEGIN; id; echo uidmap $(cat /proc/self/uid_map); echo memlimit $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>&1); echo pidsmax $(cat /sys/fs/cgroup/pids/pids.max 2>&1); echo cpuquota $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>&1);\n")
	for _, p := range probes {
		fmt.Fprintf(&sb, "if ls -d %q >/dev/null 2>&1 || cat %q >/dev/null 2>&1; then echo LEAK-PATH %q; else echo blocked %q; fi\n", p, p, p, p)
	}
	fmt.Fprintf(&sb, "find / -xdev \\( -name operator.json -o -name token-signing.key -o -name state.db \\) 2>/dev/null | sed 's/^/LEAK-FOUND /';\n")
	fmt.Fprintf(&sb, "if nc -w 2 127.0.0.1 %s </dev/null >/dev/null 2>&1; then echo LEAK-API; else echo api-unreachable; fi\n", apiURL.Port())
	sb.WriteString("echo ifaces $(ls /sys/class/net); echo HOSTILE-END\n")
	sb.WriteString("mkdir -p /www && echo ok > /www/health && exec httpd -f -p 127.0.0.1:$VMSSD_PORT -h /www\n")
	script := strings.ReplaceAll(sb.String(), "sed 's/^/LEAK-FOUND /'", "while read l; do echo LEAK-FOUND $l; done")

	up := send(t, e, tn.token, call{method: http.MethodPost, path: "/subscriptions/" + tn.sub + "/providers/vmssd.Storage/artifacts?api-version=" + adminAPI, body: shellImage(t, script)})
	if up.Status != http.StatusCreated {
		t.Fatalf("upload: %d %s", up.Status, up.Body)
	}
	uri, _ := up.Map()["uri"].(string)
	r := send(t, e, tn.token, call{method: http.MethodPut, path: tn.vmss(), body: customImageBody(1, uri)})
	if r.Status != http.StatusCreated {
		t.Fatalf("create set: %d %s", r.Status, r.Body)
	}
	waitOp(t, e, r)

	r = send(t, e, tn.token, call{method: http.MethodPost, path: tn.vmss() + "/virtualMachines/0/retrieveBootDiagnosticsData"})
	consoleURL, _ := r.Map()["serialConsoleLogBlobUri"].(string)
	if consoleURL == "" {
		t.Fatalf("retrieveBootDiagnosticsData: %d %s", r.Status, r.Body)
	}
	var console string
	testenv.Eventually(t, 30*time.Second, "the hostile guest's report in its console", func() bool {
		c := e.DoAs(tn.token, http.MethodGet, consoleURL, nil)
		console = string(c.Body)
		return c.Status == http.StatusOK && strings.Contains(console, "HOSTILE-END")
	})
	t.Logf("console:\n%s", console)
	for _, leak := range []string{"LEAK", string(operatorCred)} {
		if strings.Contains(console, leak) {
			t.Errorf("the hostile guest saw %q", leak)
		}
	}
	for _, want := range []string{
		"uid=0 gid=0",            // root in its namespace...
		"uidmap 0 1000000 65536", // ...which is host uid 1000000
		"api-unreachable",
		"ifaces lo",                         // loopback only
		fmt.Sprintf("memlimit %d", 128<<20), // Standard_A1: 128 MB...
		"cpuquota 100000",                   // ...and 1 vCPU
	} {
		if !strings.Contains(strings.Join(strings.Fields(console), " "), want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if !strings.Contains(console, "pidsmax ") || strings.Contains(console, "pidsmax max") {
		t.Error("no pids limit in the sandbox")
	}
	for _, p := range probes {
		if !strings.Contains(console, "blocked "+p) {
			t.Errorf("no probe result for %s", p)
		}
	}

	// The instance view says it is sandboxed, and it becomes healthy
	// through the loopback forward.
	testenv.Eventually(t, 30*time.Second, "a healthy sandboxed instance", func() bool {
		v := send(t, e, tn.token, call{method: http.MethodGet, path: tn.vmss() + "/virtualMachines/0/instanceView"})
		return strings.Contains(string(v.Body), "Isolation/runc") && strings.Contains(string(v.Body), "HealthState/healthy")
	})
}

// TestUnsandboxedHostRefusesTenantImages (issue 6): on a host whose process
// instances run unsandboxed, an operator's image still runs (and its
// instance view says it is not sandboxed), while a tenant's uploaded image
// is refused: its instance is Failed with SandboxNotAvailable.
func TestUnsandboxedHostRefusesTenantImages(t *testing.T) {
	e := start(t, testenv.Options{ProcessIsolation: "none"})
	e.CreateRG("rg")
	op := e.VMSSPath("rg", "op")
	waitOp(t, e, e.Do(http.MethodPut, op, testenv.VMSSBody(1, "latest", "Manual")))
	v := e.Do(http.MethodGet, op+"/virtualMachines/0/instanceView", nil)
	if !strings.Contains(string(v.Body), "Isolation/none") {
		t.Errorf("operator image instance view: %s", v.Body)
	}

	tn := setupTenant(t, e, "tenantA", subA)
	tn.token = e.IssueToken(tn.id, auth.RoleTenant)
	if r := send(t, e, tn.token, call{method: http.MethodPut, path: tn.rg(), body: map[string]any{"location": "local"}}); r.Status != http.StatusCreated {
		t.Fatalf("create rg: %d %s", r.Status, r.Body)
	}
	var img bytes.Buffer
	if err := artifact.BuildDemo(&img, artifact.DemoOptions{Version: "9.9.9", Healthy: true}); err != nil {
		t.Fatal(err)
	}
	up := send(t, e, tn.token, call{method: http.MethodPost, path: "/subscriptions/" + tn.sub + "/providers/vmssd.Storage/artifacts?api-version=" + adminAPI, body: img.Bytes()})
	if up.Status != http.StatusCreated {
		t.Fatalf("upload: %d %s", up.Status, up.Body)
	}
	uri, _ := up.Map()["uri"].(string)
	r := send(t, e, tn.token, call{method: http.MethodPut, path: tn.vmss(), body: customImageBody(1, uri)})
	if r.Status != http.StatusCreated {
		t.Fatalf("create set: %d %s", r.Status, r.Body)
	}
	if st := opStatus(t, e, r); st != "Failed" {
		t.Errorf("operation of a tenant image on an unsandboxed host: %s, want Failed", st)
	}
	vm := send(t, e, tn.token, call{method: http.MethodGet, path: tn.vmss() + "/virtualMachines/0?$expand=instanceView"})
	if !strings.Contains(string(vm.Body), "SandboxNotAvailable") {
		t.Errorf("instance: %d %s, want SandboxNotAvailable", vm.Status, vm.Body)
	}
}
