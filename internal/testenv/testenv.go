// Package testenv is the hermetic test harness: it starts a real vmssd
// (bbolt store, TLS, token issuer, process driver, controller) in the test
// process on a temporary data directory and a free loopback port, and gives
// tests an authenticated HTTPS client. The test binary doubles as the guest
// program: call RunGuestIfAsked from TestMain.
package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/driver/process"
	"github.com/vmssd/vmssd/internal/driver/sandbox"
	"github.com/vmssd/vmssd/internal/guest"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/state"
)

// RunGuestIfAsked runs the guest program and exits when the test binary was
// started as a guest (argv[1] == "guest"). Call it first in TestMain.
func RunGuestIfAsked() {
	if len(os.Args) < 2 || os.Args[1] != "guest" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := guest.Run(ctx, os.Args[2:], os.Getenv, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "guest:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Env is a running server and a client for it.
type Env struct {
	T       testing.TB
	Server  *server.Server
	Config  server.Config
	HTTP    *http.Client
	Token   string
	Sub     string
	API     string
	dataDir string
}

// Options tunes Start.
type Options struct {
	DataDir  string
	PageSize int
	Store    string
	Listen   string
	// HealthGrace is the Application Health grace period (default 20s).
	HealthGrace time.Duration
	// BootDeadline bounds VM boots (default: the server's).
	BootDeadline time.Duration
	// ProcessIsolation forces how process instances run (server.Config):
	// "none" runs them as plain processes, operator images only.
	ProcessIsolation string
	// ServeMarketplace and MarketplaceKey make the server an upstream
	// marketplace (server.Config).
	ServeMarketplace bool
	MarketplaceKey   string
}

// Start starts a server for the test; it is closed at cleanup (instances
// are deleted with it unless KeepInstances).
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	if o.HealthGrace == 0 {
		o.HealthGrace = 20 * time.Second
	}
	level := slog.LevelWarn
	if os.Getenv("VMSSD_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	cfg := server.Config{
		DataDir: o.DataDir, Listen: o.Listen, Store: o.Store, GuestBinary: os.Args[0],
		PageSize: o.PageSize, HealthGrace: o.HealthGrace, BootDeadline: o.BootDeadline,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	// Without runc (a laptop) operator images run unsandboxed; CI
	// (VMSSD_E2E=1) always sandboxes.
	cfg.UnsandboxedProcessImages = !CanSandbox() && os.Getenv("VMSSD_E2E") != "1"
	cfg.ProcessIsolation = o.ProcessIsolation
	cfg.ServeMarketplace, cfg.MarketplaceKey = o.ServeMarketplace, o.MarketplaceKey
	cfg.PublicIPPool = publicPool(o.DataDir)
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start vmssd: %v", err)
	}
	e := &Env{T: t, Server: s, Config: cfg, Sub: server.DefaultSubscriptionID, API: "2024-11-01", dataDir: o.DataDir}
	e.HTTP = Client(s.CAPEM)
	e.Token = e.IssueToken(server.OperatorClientID, auth.RoleOperator)
	t.Cleanup(func() {
		e.Stop()
		// Instances outlive a server stop by design (they are re-adopted by
		// the next start); a finished test must not leave them running.
		KillInstances(o.DataDir)
	})
	return e
}

// Public IP pools: every data dir gets its own loopback /24, so servers
// of parallel tests (and of other test processes on the machine) do not
// hand out, and listen on, the same addresses; a restart on the same data
// dir keeps its pool. The second octet is drawn once per process, the
// third counts up.
var (
	poolMu     sync.Mutex
	poolByDir  = map[string][]netip.Prefix{}
	poolOctet  = 32 + mrand.IntN(223)
	poolNext   = mrand.IntN(256)
	poolIssued int
)

func publicPool(dataDir string) []netip.Prefix {
	poolMu.Lock()
	defer poolMu.Unlock()
	if p, ok := poolByDir[dataDir]; ok {
		return p
	}
	third := (poolNext + poolIssued) % 256
	poolIssued++
	p := []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{127, byte(poolOctet), byte(third), 0}), 24)}
	poolByDir[dataDir] = p
	return p
}

// CanSandbox reports whether this host runs process instances in runc
// containers (runc installed, running as root).
func CanSandbox() bool {
	_, err := sandbox.Check("")
	return err == nil
}

// Containers returns the running containers (their host init pids by
// instance id) of the sandboxed process instances of the server on dataDir.
func Containers(dataDir string) map[string]int {
	out := map[string]int{}
	runDir := process.DefaultRunDir(InstancesRoot(dataDir))
	if _, err := os.Stat(runDir); err != nil {
		return out
	}
	rt, err := sandbox.NewRuntime("", filepath.Join(runDir, "runc"))
	if err != nil {
		return out
	}
	sts, _ := rt.List(context.Background())
	for _, st := range sts {
		if st.Status == "running" && st.Pid > 0 {
			if b, err := os.ReadFile("/proc/" + strconv.Itoa(st.Pid) + "/stat"); err == nil {
				if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && b[i+2] != 'Z' {
					out[st.ID] = st.Pid
				}
			}
		}
	}
	return out
}

// InstancesRoot is where the server on dataDir keeps its process
// instances.
func InstancesRoot(dataDir string) string {
	return filepath.Join(dataDir, "hosts", "local", "instances")
}

// KillInstances kills every process (guest or QEMU) whose working directory
// is under dataDir, and removes the containers of its sandboxed instances.
func KillInstances(dataDir string) {
	if err := process.RemoveContainers(context.Background(), InstancesRoot(dataDir), ""); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: remove containers of %s: %v\n", dataDir, err)
	}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink("/proc/" + ent.Name() + "/cwd"); err == nil && strings.HasPrefix(cwd, dataDir+"/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Client returns an HTTPS client trusting only caPEM.
func Client(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 16}}
}

// IssueToken mints a token for a principal directly (a "static token"),
// bound to the principal's stored record and secret generation if it
// exists (as the token endpoint would).
func (e *Env) IssueToken(clientID string, role auth.Role) string {
	p := auth.Principal{ClientID: clientID, Role: role}
	if rec, _, err := state.Get[model.Principal](context.Background(), e.Server.Store, model.PrincipalKey(clientID)); err == nil {
		p.UID, p.SecretGeneration = rec.UID, rec.SecretGeneration
	}
	tok, _, err := e.Server.Issuer.Issue(p, auth.DefaultAudience, time.Now())
	if err != nil {
		e.T.Fatalf("issue token: %v", err)
	}
	return tok
}

// Stop stops the server (idempotent); running instances survive it.
func (e *Env) Stop() {
	if e.Server != nil {
		e.Server.Close()
		e.Server = nil
	}
}

// Response is a decoded HTTP response.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body.
func (r *Response) JSON(v any) error { return json.Unmarshal(r.Body, v) }

// Map decodes the body into a map.
func (r *Response) Map() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// ErrorCode is error.code of an ARM error body.
func (r *Response) ErrorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// Do sends a request with the env's token (token "" = none, use DoAs).
func (e *Env) Do(method, path string, body any) *Response {
	return e.DoAs(e.Token, method, path, body)
}

// DoAs sends a request with the given bearer token ("" sends none). path
// may omit api-version; e.API is added.
func (e *Env) DoAs(token, method, path string, body any) *Response {
	e.T.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.T.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	url := path
	if !strings.HasPrefix(url, "https://") {
		url = e.Server.URL + path
	}
	if !strings.Contains(url, "api-version=") {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + "api-version=" + e.API
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.T.Fatalf("request: %v", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.HTTP.Do(req)
	if err != nil {
		e.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// Wait polls the Azure-AsyncOperation of a response until it ends and
// returns the final status ("Succeeded", "Failed", ...).
func (e *Env) Wait(r *Response, timeout time.Duration) (string, map[string]any) {
	e.T.Helper()
	u := r.Header.Get("Azure-AsyncOperation")
	if u == "" {
		e.T.Fatalf("no Azure-AsyncOperation header (status %d: %s)", r.Status, r.Body)
	}
	deadline := time.Now().Add(timeout)
	for {
		op := e.Do(http.MethodGet, u, nil)
		m := op.Map()
		if s, _ := m["status"].(string); s != "InProgress" {
			return s, m
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("operation %s still InProgress after %v", u, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually polls cond until it is true or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Paths.
func (e *Env) RGPath(rg string) string { return "/subscriptions/" + e.Sub + "/resourceGroups/" + rg }

// VMSSPath is the ARM path of a scale set.
func (e *Env) VMSSPath(rg, name string) string {
	return e.RGPath(rg) + "/providers/Microsoft.Compute/virtualMachineScaleSets/" + name
}

// CreateRG creates a resource group.
func (e *Env) CreateRG(rg string) {
	e.T.Helper()
	r := e.Do(http.MethodPut, e.RGPath(rg), map[string]any{"location": "local"})
	if r.Status != http.StatusCreated && r.Status != http.StatusOK {
		e.T.Fatalf("create rg: %d %s", r.Status, r.Body)
	}
}

// VMSSBody is a scale set body for the demo image.
func VMSSBody(capacity int, version, mode string) map[string]any {
	return map[string]any{
		"location": "local",
		"sku":      map[string]any{"name": "Standard_A1", "tier": "Standard", "capacity": capacity},
		"properties": map[string]any{
			"upgradePolicy": map[string]any{"mode": mode},
			"virtualMachineProfile": map[string]any{
				"osProfile": map[string]any{"computerNamePrefix": "web", "adminUsername": "azureuser", "adminPassword": "S3cret!pass"},
				"storageProfile": map[string]any{
					"imageReference": map[string]any{"publisher": "vmssd", "offer": "demo", "sku": "guest", "version": version},
				},
			},
		},
	}
}
