package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// vmssdBinary builds cmd/vmssd once per test binary.
func vmssdBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vmssd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "vmssd")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/vmssd/vmssd/cmd/vmssd")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is a vmssd server process.
type proc struct {
	cmd  *exec.Cmd
	url  string
	done chan struct{}
}

// freePort returns a free loopback address for a vmssd that will be killed
// and started again on it. The port comes from below the kernel's ephemeral
// range (32768-60999 by default): while the killed server is down, another
// process's outgoing connection could otherwise take the same port as its
// source port and make the restart's listen fail.
func freePort(t testing.TB) string {
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

func startProc(t testing.TB, dataDir, addr string) *proc {
	t.Helper()
	cmd := exec.Command(vmssdBinary(t), "--data-dir", dataDir, "--listen", addr, "--health-grace", "20s")
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "vmssd is listening on "); ok {
				ready <- u
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(p.done) }()
	select {
	case p.url = <-ready:
	case <-p.done:
		t.Fatal("vmssd exited before listening")
	case <-time.After(30 * time.Second):
		t.Fatal("vmssd did not start")
	}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// attach builds a testenv-style client for a vmssd process.
func attach(t testing.TB, dataDir, url string) *testenv.Env {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	cfgB, err := os.ReadFile(filepath.Join(dataDir, "vmssctl.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cc server.ClientConfig
	if err := json.Unmarshal(cfgB, &cc); err != nil {
		t.Fatal(err)
	}
	e := &testenv.Env{T: t, HTTP: testenv.Client(ca), Sub: server.DefaultSubscriptionID, API: "2024-11-01"}
	e.Config.DataDir = dataDir
	e.Server = &server.Server{URL: url}
	e.Token = clientCredentialsToken(t, e, cc)
	return e
}

// clientCredentialsToken gets a token from the server's token endpoint.
func clientCredentialsToken(t testing.TB, e *testenv.Env, cc server.ClientConfig) string {
	t.Helper()
	form := "grant_type=client_credentials&client_id=" + cc.ClientID + "&client_secret=" + cc.ClientSecret +
		"&scope=" + strings.TrimSuffix(auth.DefaultAudience, "/") + "/.default"
	req, _ := http.NewRequest(http.MethodPost, e.Server.URL+"/"+cc.Tenant+"/oauth2/v2.0/token", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// guestProcesses counts live guest processes whose working directory is
// under dataDir, and running containers (one per running instance, no
// more).
func guestProcesses(t *testing.T, dataDir string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for id := range testenv.Containers(dataDir) {
		out["container:"+id]++
	}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil || !strings.HasPrefix(cwd, dataDir) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.Contains(string(cmdline), "guest") {
			continue
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := strings.LastIndexByte(string(stat), ')'); i > 0 && strings.HasPrefix(string(stat[i+2:]), "Z") {
			continue // a zombie is not running
		}
		out[cwd]++
	}
	return out
}

// checkExact verifies the final instance set: n instances with ids 0..n-1,
// all healthy on version, one guest process each, one disk each.
func checkExact(t *testing.T, e *testenv.Env, dataDir string, n int, version string) {
	t.Helper()
	vms := waitHealthy(t, e, "rg", "ss", n, 60*time.Second)
	seen := map[string]bool{}
	for _, v := range vms {
		if seen[v.InstanceID] {
			t.Errorf("duplicate instance id %s", v.InstanceID)
		}
		seen[v.InstanceID] = true
	}
	for id, ver := range versions(t, vms) {
		if ver != version {
			t.Errorf("instance %s runs %s, want %s", id, ver, version)
		}
	}
	testenv.Eventually(t, 15*time.Second, "one guest process per instance", func() bool {
		procs := guestProcesses(t, dataDir)
		total := 0
		for _, c := range procs {
			total += c
		}
		return total == n && len(procs) == n
	})
	dirs, _ := os.ReadDir(filepath.Join(dataDir, "hosts", "local", "instances"))
	if len(dirs) != n {
		t.Errorf("%d instance directories, want %d", len(dirs), n)
	}
}

// crashDuring runs vmssd as a process on a fresh data dir, lets act start
// a long-running request, SIGKILLs vmssd after delay, restarts it on the same
// data dir and address, and waits for the interrupted request's operation
// to succeed. It returns a client of the restarted server and the data dir.
func crashDuring(t *testing.T, delay time.Duration, act func(e *testenv.Env) *testenv.Response) (*testenv.Env, string) {
	t.Helper()
	h, e := startCrashHost(t)
	r := act(e)
	time.Sleep(delay)
	e, _ = h.crash()
	waitOp(t, e, r) // the operation started before the crash completes
	return e, h.dataDir
}

// crashHost is vmssd run as a process on a fresh data dir (its instances
// are killed at the end of the test), to be SIGKILLed and restarted on the
// same data dir and address.
type crashHost struct {
	t             testing.TB
	dataDir, addr string
	p             *proc
}

// startCrashHost starts vmssd and creates the resource group rg; it returns
// a client of it.
func startCrashHost(t testing.TB) (*crashHost, *testenv.Env) {
	t.Helper()
	h := &crashHost{t: t, dataDir: t.TempDir()}
	t.Cleanup(func() { testenv.KillInstances(h.dataDir) })
	h.addr = freePort(t)
	h.p = startProc(t, h.dataDir, h.addr)
	e := attach(t, h.dataDir, h.p.url)
	e.CreateRG("rg")
	return h, e
}

// crash SIGKILLs vmssd and starts it again; it returns a client of the new
// process and when the old one died.
func (h *crashHost) crash() (*testenv.Env, time.Time) {
	h.t.Helper()
	h.p.kill()
	killed := time.Now()
	h.p = startProc(h.t, h.dataDir, h.addr)
	return attach(h.t, h.dataDir, h.p.url), killed
}

// createSet creates the scale set "ss" of n healthy instances on version.
func createSet(t *testing.T, e *testenv.Env, dataDir string, n int, version string) {
	t.Helper()
	waitOp(t, e, e.Do(http.MethodPut, e.VMSSPath("rg", "ss"), testenv.VMSSBody(n, version, "Manual")))
	checkExact(t, e, dataDir, n, version)
}

// TestCrashDuringScaleOut kills vmssd with SIGKILL at several points of a
// scale-out and restarts it on the same data dir: the final set is exactly
// the capacity, nothing lost, duplicated or orphaned.
func TestCrashDuringScaleOut(t *testing.T) {
	for _, delay := range []time.Duration{0, 40 * time.Millisecond, 150 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			e, dataDir := crashDuring(t, delay, func(e *testenv.Env) *testenv.Response {
				r := e.Do(http.MethodPut, e.VMSSPath("rg", "ss"), testenv.VMSSBody(12, "latest", "Manual"))
				if r.Status != http.StatusCreated {
					t.Fatalf("create: %d %s", r.Status, r.Body)
				}
				return r
			})
			checkExact(t, e, dataDir, 12, "1.1.0")
		})
	}
}

// TestCrashDuringManualUpgrade kills vmssd during a manual upgrade of every
// instance and restarts it: every instance ends on the new version, once.
func TestCrashDuringManualUpgrade(t *testing.T) {
	for _, delay := range []time.Duration{10 * time.Millisecond, 80 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			e, dataDir := crashDuring(t, delay, func(e *testenv.Env) *testenv.Response {
				createSet(t, e, e.Config.DataDir, 8, "1.0.0")
				waitOp(t, e, e.Do(http.MethodPatch, e.VMSSPath("rg", "ss"), map[string]any{"properties": map[string]any{"virtualMachineProfile": map[string]any{
					"storageProfile": map[string]any{"imageReference": map[string]any{"version": "1.1.0"}}}}}))
				r := e.Do(http.MethodPost, e.VMSSPath("rg", "ss")+"/manualupgrade", map[string]any{"instanceIds": []string{"*"}})
				mustAccepted(t, r)
				return r
			})
			checkExact(t, e, dataDir, 8, "1.1.0")
			for _, v := range listVMs(t, e, "rg", "ss") {
				if !v.Properties.LatestModelApplied {
					t.Errorf("instance %s not on the latest model", v.InstanceID)
				}
			}
		})
	}
}

// TestCrashDuringDelete kills vmssd while it deletes a scale set: after a
// restart the delete's operation completes and nothing is left behind.
func TestCrashDuringDelete(t *testing.T) {
	for _, delay := range []time.Duration{5 * time.Millisecond, 60 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			e, dataDir := crashDuring(t, delay, func(e *testenv.Env) *testenv.Response {
				createSet(t, e, e.Config.DataDir, 8, "1.0.0")
				r := e.Do(http.MethodDelete, e.VMSSPath("rg", "ss"), nil)
				mustAccepted(t, r)
				return r
			})
			if g := e.Do(http.MethodGet, e.VMSSPath("rg", "ss"), nil); g.Status != http.StatusNotFound {
				t.Fatalf("get after delete: %d", g.Status)
			}
			testenv.Eventually(t, 10*time.Second, "no guest process left", func() bool { return len(guestProcesses(t, dataDir)) == 0 })
			if dirs, _ := os.ReadDir(filepath.Join(dataDir, "hosts", "local", "instances")); len(dirs) != 0 {
				t.Errorf("%d instance directories left", len(dirs))
			}
		})
	}
}
