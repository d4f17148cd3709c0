package guest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/driver"
)

var testMetadata = driver.Metadata{
	SubscriptionID:    "00000000-0000-0000-0000-000000000001",
	ResourceGroupName: "rg",
	VMScaleSetName:    "web",
	Name:              "web_3",
	InstanceID:        "3",
	VMID:              "7d3f1a4e-0000-4000-8000-000000000003",
	ComputerName:      "web000003",
	Location:          "westeurope",
	VMSize:            "Standard_B1s",
	FaultDomain:       2,
	UpdateDomain:      4,
	OSType:            "Linux",
	Publisher:         "vmssd",
	Offer:             "demo",
	SKU:               "v1",
	ImageVersion:      "9.9.9", // not what the disk says: /health must use the disk
	ModelVersion:      7,
}

// instance is an instance's files: its disk and its metadata.
type instance struct {
	disk, metadata string
}

func newInstance(t *testing.T, cfg artifact.GuestConfig, md driver.Metadata) instance {
	t.Helper()
	dir := t.TempDir()
	in := instance{disk: filepath.Join(dir, "disk"), metadata: filepath.Join(dir, "metadata.json")}
	in.writeConfig(t, cfg)
	data, err := json.Marshal(md)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in.metadata, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return in
}

func (in instance) writeConfig(t *testing.T, cfg artifact.GuestConfig) {
	t.Helper()
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(in.disk, filepath.FromSlash(artifact.GuestConfigPath))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	// Replace atomically, as an operator's editor or a driver would.
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

func (in instance) env(port string) func(string) string {
	vars := map[string]string{
		artifact.EnvPort:     port,
		artifact.EnvMetadata: in.metadata,
		artifact.EnvDisk:     in.disk,
	}
	return func(k string) string { return vars[k] }
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// start runs the guest on a port the system picks and returns its base URL
// once it printed its ready line. The guest is stopped, and must return nil,
// at the end of the test.
func start(t *testing.T, in instance) string {
	t.Helper()
	return "http://127.0.0.1:" + strconv.Itoa(startEnv(t, in.env("0")))
}

// startEnv runs the guest with env and returns its port once it printed its
// ready line.
func startEnv(t *testing.T, env func(string) string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, nil, env, pw, testLogger(t))
		pw.CloseWithError(fmt.Errorf("guest returned: %v", err))
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("guest returned %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("guest did not stop after cancel")
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no ready line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var version string
	var port int
	if _, err := fmt.Sscanf(line, ReadyPrefix+" version=%s port=%d\n", &version, &port); err != nil {
		t.Fatalf("ready line %q: %v", line, err)
	}
	return port
}

// with returns env with key set to v.
func with(env func(string) string, key, v string) func(string) string {
	return func(k string) string {
		if k == key {
			return v
		}
		return env(k)
	}
}

// A guest on a virtual network is reached by its neighbours: it listens on
// every address (its private IP may be configured after it started), not
// only on loopback. 127.0.0.2 stands for an address other than 127.0.0.1.
func TestListenOnVirtualNetwork(t *testing.T) {
	tests := []struct {
		name      string
		privateIP string
		neighbour bool // reachable on 127.0.0.2
	}{
		{"loopback only", "", false},
		{"private IPv4", "10.0.0.4", true},
		{"private IPv6", "fd00::4", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInstance(t, artifact.GuestConfig{Version: "1.2.3", Healthy: true}, testMetadata)
			port := strconv.Itoa(startEnv(t, with(in.env("0"), EnvPrivateIP, tt.privateIP)))
			var h HealthResponse
			if code := get(t, "http://127.0.0.1:"+port+"/health", &h); code != http.StatusOK || h.ImageVersion != "1.2.3" {
				t.Errorf("loopback /health = %d %+v", code, h)
			}
			c := http.Client{Timeout: 5 * time.Second}
			resp, err := c.Get("http://127.0.0.2:" + port + "/health")
			if err == nil {
				resp.Body.Close()
			}
			if got := err == nil && resp.StatusCode == http.StatusOK; got != tt.neighbour {
				t.Errorf("reachable on another address: %v (%v), want %v", got, err, tt.neighbour)
			}
		})
	}
}

func get(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: Content-Type %q", url, ct)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
	}
	return resp.StatusCode
}

func TestHealth(t *testing.T) {
	tests := []struct {
		name     string
		cfg      artifact.GuestConfig
		first    string // status right after start
		settled  string // status after the startup delay
		wantCode int    // HTTP code once settled
	}{
		{"healthy", artifact.GuestConfig{Version: "1.0.0", Healthy: true, StartupDelay: "0s"},
			StatusHealthy, StatusHealthy, http.StatusOK},
		{"unhealthy", artifact.GuestConfig{Version: "1.0.0", Healthy: false},
			StatusUnhealthy, StatusUnhealthy, http.StatusServiceUnavailable},
		{"startup delay", artifact.GuestConfig{Version: "2.0.0", Healthy: true, StartupDelay: "700ms"},
			StatusInitializing, StatusHealthy, http.StatusOK},
		{"startup delay then unhealthy", artifact.GuestConfig{Version: "2.0.0", Healthy: false, StartupDelay: "700ms"},
			StatusInitializing, StatusUnhealthy, http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := start(t, newInstance(t, tt.cfg, testMetadata))
			var h HealthResponse
			code := get(t, base+"/health", &h)
			if h.Status != tt.first {
				t.Fatalf("first /health = %d %+v, want %s", code, h, tt.first)
			}
			if h.Status == StatusInitializing && code != http.StatusServiceUnavailable {
				t.Fatalf("Initializing with code %d, want 503", code)
			}
			deadline := time.Now().Add(10 * time.Second)
			for h.Status == StatusInitializing && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				code = get(t, base+"/health", &h)
			}
			want := HealthResponse{
				Status:                 tt.settled,
				ApplicationHealthState: tt.settled,
				ImageVersion:           tt.cfg.Version,
				InstanceID:             testMetadata.InstanceID,
				VMID:                   testMetadata.VMID,
			}
			if code != tt.wantCode || h != want {
				t.Fatalf("/health = %d %+v, want %d %+v", code, h, tt.wantCode, want)
			}
		})
	}
}

// The guest re-reads its disk: editing the config flips the probe, and a
// broken config keeps the last good one.
func TestHealthFollowsDisk(t *testing.T) {
	in := newInstance(t, artifact.GuestConfig{Version: "1.0.0", Healthy: true}, testMetadata)
	base := start(t, in)
	steps := []struct {
		write    func()
		wantCode int
		want     string
	}{
		{func() {}, http.StatusOK, StatusHealthy},
		{func() { in.writeConfig(t, artifact.GuestConfig{Version: "1.0.1", Healthy: false}) }, http.StatusServiceUnavailable, StatusUnhealthy},
		{func() { in.writeConfig(t, artifact.GuestConfig{Version: "1.0.2", Healthy: true}) }, http.StatusOK, StatusHealthy},
		{func() {
			name := filepath.Join(in.disk, filepath.FromSlash(artifact.GuestConfigPath))
			if err := os.WriteFile(name, []byte("{broken"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, http.StatusOK, StatusHealthy},
	}
	for i, s := range steps {
		s.write()
		var h HealthResponse
		if code := get(t, base+"/health", &h); code != s.wantCode || h.Status != s.want {
			t.Fatalf("step %d: /health = %d %+v, want %d %s", i, code, h, s.wantCode, s.want)
		}
	}
}

func TestMetadataInstance(t *testing.T) {
	base := start(t, newInstance(t, artifact.GuestConfig{Version: "1.0.0", Healthy: true}, testMetadata))
	var raw struct {
		Compute map[string]any `json:"compute"`
	}
	if code := get(t, base+"/metadata/instance?api-version=2021-02-01", &raw); code != http.StatusOK {
		t.Fatalf("/metadata/instance = %d", code)
	}
	vmss := "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web"
	want := map[string]string{
		"name":                 "web_3",
		"vmScaleSetName":       "web",
		"resourceGroupName":    "rg",
		"subscriptionId":       testMetadata.SubscriptionID,
		"vmId":                 testMetadata.VMID,
		"platformFaultDomain":  "2", // strings, as IMDS has them
		"platformUpdateDomain": "4",
		"osType":               "Linux",
		"publisher":            "vmssd",
		"offer":                "demo",
		"sku":                  "v1",
		"version":              "9.9.9",
		"location":             "westeurope",
		"vmSize":               "Standard_B1s",
		"computerName":         "web000003",
		"resourceId":           vmss + "/virtualMachines/3",
	}
	for k, v := range want {
		if got, ok := raw.Compute[k].(string); !ok || got != v {
			t.Errorf("compute.%s = %#v, want %q", k, raw.Compute[k], v)
		}
	}
	var doc InstanceDocument
	get(t, base+"/metadata/instance", &doc)
	if doc.Compute.OSProfile.ComputerName != "web000003" || doc.Compute.VirtualMachineScaleSet.ID != vmss ||
		doc.Compute.StorageProfile.ImageReference.Version != "9.9.9" {
		t.Errorf("compute = %+v", doc.Compute)
	}
	var c Compute
	if code := get(t, base+"/metadata/instance/compute", &c); code != http.StatusOK || c != doc.Compute {
		t.Errorf("/metadata/instance/compute = %d %+v, want %+v", code, c, doc.Compute)
	}
}

func TestRoutes(t *testing.T) {
	base := start(t, newInstance(t, artifact.GuestConfig{Version: "1.0.0", Healthy: true}, testMetadata))
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/health", http.StatusOK},
		{http.MethodHead, "/health", http.StatusOK},
		{http.MethodPost, "/health", http.StatusMethodNotAllowed},
		{http.MethodGet, "/metadata/instance", http.StatusOK},
		{http.MethodDelete, "/metadata/instance", http.StatusMethodNotAllowed},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/metadata/identity/oauth2/token", http.StatusNotFound},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, base+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}

// Run, as the host calls it: settings from the environment, a fixed port.
func TestRun(t *testing.T) {
	in := newInstance(t, artifact.GuestConfig{Version: "3.1.4", Healthy: true}, testMetadata)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, nil, in.env(port), testLogger(t)) }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + "/health")
		if err == nil {
			var h HealthResponse
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || h.ImageVersion != "3.1.4" {
				t.Fatalf("/health = %d %+v, %v", resp.StatusCode, h, err)
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("guest not serving: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	if _, err := http.Get("http://127.0.0.1:" + port + "/health"); err == nil {
		t.Fatal("still serving after Run returned")
	}
}

func TestRunRefusesBadSettings(t *testing.T) {
	good := newInstance(t, artifact.GuestConfig{Version: "1.0.0", Healthy: true}, testMetadata)
	badDelay := newInstance(t, artifact.GuestConfig{Version: "1.0.0", StartupDelay: "soon"}, testMetadata)
	badMetadata := newInstance(t, artifact.GuestConfig{Version: "1.0.0"}, testMetadata)
	if err := os.WriteFile(badMetadata.metadata, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)

	without := func(key string) func(string) string {
		env := good.env("0")
		return func(k string) string {
			if k == key {
				return ""
			}
			return env(k)
		}
	}
	tests := []struct {
		name string
		args []string
		env  func(string) string
	}{
		{"no port", nil, without(artifact.EnvPort)},
		{"no metadata", nil, without(artifact.EnvMetadata)},
		{"no disk", nil, without(artifact.EnvDisk)},
		{"port not a number", nil, good.env("http")},
		{"port out of range", nil, good.env("65536")},
		{"negative port", nil, good.env("-1")},
		{"bad private IP", nil, with(good.env("0"), EnvPrivateIP, "10.0.0")},
		{"port in use", nil, good.env(busyPort)},
		{"missing disk config", []string{"-disk", t.TempDir()}, good.env("0")},
		{"bad startup delay", nil, badDelay.env("0")},
		{"missing metadata file", []string{"-metadata", filepath.Join(t.TempDir(), "nope.json")}, good.env("0")},
		{"bad metadata", nil, badMetadata.env("0")},
		{"unknown flag", []string{"-verbose"}, good.env("0")},
		{"extra argument", []string{"serve"}, good.env("0")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := run(ctx, tt.args, tt.env, io.Discard, testLogger(t))
			if err == nil {
				t.Fatal("run = nil, want an error")
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("run served instead of failing: %v", err)
			}
		})
	}
}
