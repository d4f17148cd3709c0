package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/vmssd/vmssd/internal/testenv"
)

const chromiumPath = "/usr/bin/chromium"

// browser starts a headless Chromium trusting only the test server's
// certificate; it skips without Chromium unless VMSSD_E2E=1.
func browser(t *testing.T, e *testenv.Env) context.Context { return browserB(t, e) }

func browserB(t testing.TB, e *testenv.Env) context.Context {
	t.Helper()
	path := chromiumPath
	if _, err := os.Stat(path); err != nil {
		p, lerr := exec.LookPath("chromium")
		if lerr != nil {
			if os.Getenv("VMSSD_E2E") == "1" {
				t.Fatalf("chromium is required under VMSSD_E2E=1: %v", lerr)
			}
			t.Skip("chromium not installed")
		}
		path = p
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.Headless,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", spki(t, e)),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// spki is the server certificate's public key hash, the one certificate
// the browser is told to accept.
func spki(t testing.TB, e *testenv.Env) string {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.Server.CAPEM)
	u, _ := url.Parse(e.Server.URL)
	c, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: pool, ServerName: u.Hostname()})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	defer c.Close()
	sum := sha256.Sum256(c.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// run runs browser actions with a deadline.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		shot(t, ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
		dump(t, ctx)
		t.Fatalf("%s: %v", what, err)
	}
}

// shot saves a screenshot to the test's temp dir, and to
// $VMSSD_SCREENSHOTS/<name>.png for the names the docs use.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	buf, err := chromedp.Run(c, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	dir := shotDir(t)
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	if docs := os.Getenv("VMSSD_SCREENSHOTS"); docs != "" && docNames[name] {
		if !filepath.IsAbs(docs) {
			docs = filepath.Join(repoRoot(t), docs) // VMSSD_SCREENSHOTS=docs/img is the repository's
		}
		if err := os.WriteFile(filepath.Join(docs, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var docNames = map[string]bool{"scaleset-rollout": true, "scaleset-heatmap": true, "marketplace": true}

var shotDirs = map[*testing.T]string{}

func shotDir(t *testing.T) string {
	if d, ok := shotDirs[t]; ok {
		return d
	}
	d := t.TempDir()
	shotDirs[t] = d
	return d
}

// domCell is a heatmap cell as the page shows it.
type domCell struct {
	ID      string `json:"id"`
	Power   string `json:"power"`
	Health  string `json:"health"`
	Latest  string `json:"latest"`
	Version string `json:"version"`
	UD      string `json:"ud"`
	FD      string `json:"fd"`
}

const cellsJS = `Array.from(document.querySelectorAll('#grid .cell')).map(c => ({id: c.dataset.id, power: c.dataset.power,
 health: c.dataset.health, latest: c.dataset.latest, version: c.dataset.version, ud: c.dataset.ud, fd: c.dataset.fd}))`

func pageCells(ctx context.Context) (map[string]domCell, error) {
	c, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cells, err := chromedp.Run(c, chromedp.Evaluate[[]domCell](cellsJS))
	if err != nil {
		return nil, err
	}
	out := map[string]domCell{}
	for _, x := range cells {
		out[x.ID] = x
	}
	return out, nil
}

// apiCells is what the ARM API says about the same instances.
func apiCells(t *testing.T, e *testenv.Env, path string) map[string]domCell {
	t.Helper()
	r := e.Do(http.MethodGet, path+"/virtualMachines?$expand=instanceView", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("list instances: %d %s", r.Status, r.Body)
	}
	var list struct {
		Value []struct {
			InstanceID string `json:"instanceId"`
			Properties struct {
				LatestModelApplied bool `json:"latestModelApplied"`
				StorageProfile     struct {
					ImageReference struct{ ExactVersion string } `json:"imageReference"`
				} `json:"storageProfile"`
				InstanceView struct {
					PlatformUpdateDomain int
					PlatformFaultDomain  int
					Statuses             []struct{ Code string }
				} `json:"instanceView"`
			} `json:"properties"`
		} `json:"value"`
	}
	if err := r.JSON(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]domCell{}
	for _, v := range list.Value {
		c := domCell{ID: v.InstanceID, Latest: fmt.Sprint(v.Properties.LatestModelApplied), Version: v.Properties.StorageProfile.ImageReference.ExactVersion,
			UD: fmt.Sprint(v.Properties.InstanceView.PlatformUpdateDomain), FD: fmt.Sprint(v.Properties.InstanceView.PlatformFaultDomain)}
		for _, s := range v.Properties.InstanceView.Statuses {
			if p, ok := strings.CutPrefix(s.Code, "PowerState/"); ok {
				c.Power = p
			}
		}
		out[c.ID] = c
	}
	return out
}

// checkHeatmap waits until the heatmap shows what the API says, every
// instance satisfying want, then saves a screenshot.
func checkHeatmap(t *testing.T, ctx context.Context, e *testenv.Env, path, step string, want func(domCell) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		api := apiCells(t, e, path)
		dom, err := pageCells(ctx)
		if err == nil {
			last = diff(api, dom, want)
			if last == "" {
				shot(t, ctx, step)
				return
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			shot(t, ctx, "failed-"+step)
			t.Fatalf("%s: the heatmap does not match the API: %s", step, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func diff(api, dom map[string]domCell, want func(domCell) bool) string {
	if len(api) != len(dom) {
		return fmt.Sprintf("%d cells, the API lists %d instances", len(dom), len(api))
	}
	for id, a := range api {
		d, ok := dom[id]
		if !ok {
			return "no cell for instance " + id
		}
		d.Health = ""
		if d != a {
			return fmt.Sprintf("instance %s: page %+v, API %+v", id, d, a)
		}
		if want != nil && !want(a) {
			return fmt.Sprintf("instance %s not yet as wanted: %+v", id, a)
		}
	}
	return ""
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// One evaluation in the page: live updates replace nodes, so a node
	// found by one protocol call can be gone at the next.
	js := fmt.Sprintf(`(function(){var e=document.querySelector(%q); return e ? e.innerText : null})()`, sel)
	for {
		s, err := chromedp.Run(c, chromedp.Evaluate[*string](js))
		if err == nil && s != nil {
			return *s
		}
		select {
		case <-c.Done():
			shot(t, ctx, "failed-read")
			t.Fatalf("read %s: %v", sel, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitAttr waits until the element's attribute has the value (the page
// changes it by itself: server-sent events).
func waitAttr(t *testing.T, ctx context.Context, sel, name, value string, timeout time.Duration) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	js := fmt.Sprintf(`(function(){var e=document.querySelector(%q);return e?e.getAttribute(%q):""})()`, sel, name)
	var got string
	for {
		v, err := chromedp.Run(c, chromedp.Evaluate[string](js))
		if err == nil && v == value {
			return
		}
		got = v
		select {
		case <-c.Done():
			shot(t, ctx, "failed-wait-"+name)
			t.Fatalf("%s[%s] is %q, want %q", sel, name, got, value)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func waitDone(t *testing.T, e *testenv.Env, r *testenv.Response) {
	t.Helper()
	if st, m := e.Wait(r, 90*time.Second); st != "Succeeded" {
		t.Fatalf("operation ended %s: %v", st, m)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) in the page.
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

// dump logs the page's URL and text, for a failure's report.
func dump(t *testing.T, ctx context.Context) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		t.Logf("page: %v", err)
		return
	}
	if len(v) > 3000 {
		v = v[:3000]
	}
	t.Logf("page: %s", v)
}

// submit clicks a form's button and waits for the page the server sends
// back (a new document with a status line), returning the status line.
func submit(t *testing.T, ctx context.Context, what string, before []chromedp.Action[chromedp.Void], button chromedp.Action[chromedp.Void]) string {
	t.Helper()
	steps := append([]chromedp.Action[chromedp.Void]{}, before...)
	steps = append(steps, chromedp.Func(func(c context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`window.vmssdOld = true`)(c, tg)
		return err
	}), button)
	back, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx, what, steps...)
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		if href, err := chromedp.Run(c, chromedp.Evaluate[string](`location.href`)); err == nil && strings.HasPrefix(href, "chrome-error:") {
			// Chromium dropped the request (ERR_NETWORK_CHANGED when other
			// tests on the machine add interfaces): the server finishes an
			// accepted action regardless; its answer is the session's status
			// line on the page.
			t.Logf("%s: %s; reading the outcome from the activity log", what, href)
			u, err := url.Parse(back)
			if err != nil {
				t.Fatalf("%s: page address %q: %v", what, back, err)
			}
			nav(t, ctx, u.Scheme+"://"+u.Host+"/ui/activity", "#activity")
			v, err := chromedp.Run(c, chromedp.Evaluate[string](`document.querySelector('#activity tbody tr').dataset.status || "-"`))
			if err != nil {
				t.Fatalf("%s: activity log: %v", what, err)
			}
			nav(t, ctx, back, "h1")
			return v
		}
		v, err := chromedp.Run(c, chromedp.Evaluate[string](`(window.vmssdOld || document.readyState !== 'complete') ? "" : ((document.getElementById('flash') || document.getElementById('error') || {}).innerText || "-")`))
		if err == nil && v != "" {
			return v
		}
		select {
		case <-c.Done():
			shot(t, ctx, "failed-"+strings.ReplaceAll(what, " ", "-"))
			dump(t, ctx)
			t.Fatalf("%s: no answer page", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// repoRoot is the module's root (where go.mod is).
func repoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found")
		}
		dir = parent
	}
}

// nav opens a page and waits for an element, again if Chromium drops the
// navigation (ERR_NETWORK_CHANGED: other tests on the machine add
// network interfaces).
func nav(t *testing.T, ctx context.Context, url, sel string) {
	t.Helper()
	for try := 0; ; try++ {
		c, cancel := context.WithTimeout(ctx, 20*time.Second)
		err := chromedp.Do(c, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return
		}
		if try == 2 {
			shot(t, ctx, "failed-nav")
			dump(t, ctx)
			t.Fatalf("open %s: %v", url, err)
		}
		t.Logf("open %s: %v; again", url, err)
	}
}
