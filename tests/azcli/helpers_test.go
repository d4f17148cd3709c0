// Package azcli drives the real Azure CLI (Debian's azure-cli, 2.45) against
// a fresh vmssd, exactly as the README and the server's start banner
// document it: az cloud register with the hybrid profile, the server's CA
// trusted with REQUESTS_CA_BUNDLE, az login as printed, then the scale set
// commands. The resulting state is checked through the ARM API.
package azcli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.RunGuestIfAsked()
	os.Exit(m.Run())
}

// requireTools skips without az or jq (the banner's login reads the secret
// with jq), unless VMSSD_E2E=1: then it fails.
func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"az", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("VMSSD_E2E") == "1" {
				t.Fatalf("VMSSD_E2E=1: %s is required (apt-get install azure-cli jq): %v", tool, err)
			}
			t.Skipf("%s is not installed (apt-get install azure-cli jq)", tool)
		}
	}
}

// deadProxy is where az's proxy variables point: a local port that accepts
// and drops connections, counting them. az must never use it: it is only
// to reach the server (NO_PROXY) and nothing else. The one exception is az's
// own: the first command in a new config directory probes
// https://azure.microsoft.com before looking for a newer az (azure.cli.core.util
// check_connectivity); that has nothing to do with the cloud it talks to.
type deadProxy struct {
	addr  string
	conns atomic.Int64
	mu    sync.Mutex
	asked []string // the first line of each request (CONNECT host:port ...)
}

// requests returns what was asked of the proxy.
func (p *deadProxy) requests() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.asked, "; ")
}

func startDeadProxy(t *testing.T) *deadProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &deadProxy{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			line, _ := bufio.NewReader(io.LimitReader(c, 512)).ReadString('\n')
			_ = c.Close()
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "CONNECT azure.microsoft.com:443 ") {
				continue // az's version check
			}
			p.mu.Lock()
			p.asked = append(p.asked, line)
			p.mu.Unlock()
			p.conns.Add(1)
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return p
}

// az runs the Azure CLI in an environment of its own: its own config
// directory and home, no telemetry, proxies that lead nowhere.
type az struct {
	t     *testing.T
	env   []string
	proxy *deadProxy
}

func newAZ(t *testing.T, proxy *deadProxy) *az {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "AZURE_"), strings.HasSuffix(strings.ToUpper(k), "_PROXY"),
			k == "REQUESTS_CA_BUNDLE", k == "CURL_CA_BUNDLE", k == "HOME":
			continue
		}
		env = append(env, kv)
	}
	home := t.TempDir()
	env = append(env,
		"HOME="+home,
		"AZURE_CONFIG_DIR="+home+"/.azure",
		"AZURE_CORE_COLLECT_TELEMETRY=false",
		"AZURE_CORE_NO_COLOR=true",
		"AZURE_CORE_SURVEY_MESSAGE=false",
		"HTTPS_PROXY=http://"+proxy.addr, "HTTP_PROXY=http://"+proxy.addr,
		"https_proxy=http://"+proxy.addr, "http_proxy=http://"+proxy.addr,
		"NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
	)
	return &az{t: t, env: env, proxy: proxy}
}

// startWithAZ starts vmssd (the tools required) and an az that has run the
// server's banner commands (vmssd registered as a cloud, the hybrid
// profile) and trusts its CA.
func startWithAZ(t *testing.T) (*testenv.Env, *deadProxy, *az) {
	t.Helper()
	requireTools(t)
	e := testenv.Start(t, testenv.Options{})
	proxy := startDeadProxy(t)
	a := newAZ(t, proxy)
	if out, errOut, err := a.shell(strings.Join(e.Server.AzureCLICommands(), "\n")); err != nil {
		t.Fatalf("banner commands: %v\n%s%s", err, out, errOut)
	}
	a.setenv("REQUESTS_CA_BUNDLE", e.Server.CAFile)
	return e, proxy, a
}

// setenv adds or replaces a variable.
func (a *az) setenv(k, v string) {
	a.env = append(a.env, k+"="+v) // the last one wins in exec
}

// shell runs a POSIX shell script in az's environment.
func (a *az) shell(script string) (string, string, error) {
	cmd := exec.Command("sh", "-e", "-c", script)
	cmd.Env = a.env
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// try runs az with args and returns its stdout, stderr and error.
func (a *az) try(args ...string) (string, string, error) {
	a.t.Helper()
	start, before := time.Now(), a.proxy.conns.Load()
	cmd := exec.Command("az", args...)
	cmd.Env = a.env
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	a.t.Logf("az %s (%.1fs)", redact(args), time.Since(start).Seconds())
	if n := a.proxy.conns.Load() - before; n > 0 {
		a.t.Errorf("az %s opened %d connection(s) through the proxy: it tried to reach something other than vmssd (%s)\n%s", redact(args), n, a.proxy.requests(), errOut.String())
	}
	return out.String(), errOut.String(), err
}

// redact hides the password of az login in logged command lines.
func redact(args []string) string {
	shown := slices.Clone(args)
	for i := range shown {
		if i > 0 && args[0] == "login" && (shown[i-1] == "-p" || shown[i-1] == "--password") {
			shown[i] = "***"
		}
	}
	return strings.Join(shown, " ")
}

// run runs az and fails the test if it fails.
func (a *az) run(args ...string) string {
	a.t.Helper()
	out, errOut, err := a.try(args...)
	if err != nil {
		a.t.Fatalf("az %s: %v\n%s%s", redact(args), err, out, errOut)
	}
	return out
}

// json runs az with -o json and decodes its output into v.
func (a *az) json(v any, args ...string) {
	a.t.Helper()
	out := a.run(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		a.t.Fatalf("az %s: output is not JSON: %v\n%s", redact(args), err, out)
	}
}

// strs runs az with a --query that selects strings, as a sorted-free list.
func (a *az) strs(query string, args ...string) []string {
	a.t.Helper()
	var v []string
	a.json(&v, append(args, "--query", query)...)
	return v
}

type status struct {
	Code string `json:"code"`
}

// vm is an instance as the API shows it (with its instance view).
type vm struct {
	InstanceID string `json:"instanceId"`
	Properties struct {
		LatestModelApplied bool   `json:"latestModelApplied"`
		ProvisioningState  string `json:"provisioningState"`
		StorageProfile     struct {
			ImageReference struct {
				Version      string `json:"version"`
				ExactVersion string `json:"exactVersion"`
			} `json:"imageReference"`
		} `json:"storageProfile"`
		InstanceView struct {
			Statuses []status `json:"statuses"`
		} `json:"instanceView"`
	} `json:"properties"`
}

func (v vm) power() string {
	for _, s := range v.Properties.InstanceView.Statuses {
		if strings.HasPrefix(s.Code, "PowerState/") {
			return s.Code
		}
	}
	return ""
}

func (v vm) version() string { return v.Properties.StorageProfile.ImageReference.ExactVersion }

// vms lists a scale set's instances through the API, by instance id.
func vms(t *testing.T, e *testenv.Env, rg, name string) map[string]vm {
	t.Helper()
	r := e.Do(http.MethodGet, e.VMSSPath(rg, name)+"/virtualMachines?$expand=instanceView", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list instances of %s: %d %s", name, r.Status, r.Body)
	}
	var page struct {
		Value []vm `json:"value"`
	}
	if err := r.JSON(&page); err != nil {
		t.Fatal(err)
	}
	out := map[string]vm{}
	for _, v := range page.Value {
		out[v.InstanceID] = v
	}
	return out
}

// waitVMs waits until cond holds for the set's instances.
func waitVMs(t *testing.T, e *testenv.Env, rg, name, what string, cond func(map[string]vm) bool) map[string]vm {
	t.Helper()
	var last map[string]vm
	deadline := time.Now().Add(60 * time.Second)
	for {
		last = vms(t, e, rg, name)
		if cond(last) {
			return last
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for id, v := range last {
				fmt.Fprintf(&b, " %s:%s/%s/%s/latest=%v", id, v.Properties.ProvisioningState, v.power(), v.version(), v.Properties.LatestModelApplied)
			}
			t.Fatalf("%s/%s: timed out waiting for %s; instances:%s", rg, name, what, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scaleSetBody is a scale set of the demo image, as a file az reads.
func scaleSetBody(t *testing.T, capacity int, mode, version string) string {
	t.Helper()
	b, err := json.Marshal(testenv.VMSSBody(capacity, version, mode))
	if err != nil {
		t.Fatal(err)
	}
	f := t.TempDir() + "/vmss.json"
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
