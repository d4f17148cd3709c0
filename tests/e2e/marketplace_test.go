package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/auth"
	"github.com/vmssd/vmssd/internal/marketplace"
	"github.com/vmssd/vmssd/internal/testenv"
)

const (
	mpAPI      = "2015-12-01-preview"
	mpKey      = "upstream-secret"
	mpRegPath  = "/providers/vmssd.Admin/marketplace/registration?api-version=" + mpAPI
	mpProdPath = "/providers/vmssd.Admin/marketplace/products?api-version=" + mpAPI
	mpDownPath = "/providers/vmssd.Admin/marketplace/downloads?api-version=" + mpAPI
	mpImpPath  = "/providers/vmssd.Admin/marketplace/imports?api-version=" + mpAPI
	galAPI     = "2015-04-01"
	scaleItem  = "vmssd.VMScaleSet.1.0.0"
)

// upstream starts a vmssd serving its catalog, with demo version ver
// published (padded with pad random bytes so that a download takes a while).
func upstream(t *testing.T, ver string, pad int) *testenv.Env {
	t.Helper()
	up := testenv.Start(t, testenv.Options{ServeMarketplace: true, MarketplaceKey: mpKey})
	if ver != "" {
		publish(t, up, "vmssd", "demo", "guest", ver, uploadBytes(t, up, paddedDemo(t, ver, pad)))
	}
	return up
}

// paddedDemo is a demo artifact with pad incompressible bytes in its rootfs.
func paddedDemo(t *testing.T, ver string, pad int) []byte {
	t.Helper()
	var demo bytes.Buffer
	if err := artifact.BuildDemo(&demo, artifact.DemoOptions{Version: ver, Healthy: true}); err != nil {
		t.Fatal(err)
	}
	if pad == 0 {
		return demo.Bytes()
	}
	zr, err := gzip.NewReader(&demo)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, pad)
	_, _ = rand.Read(buf)
	if err := tw.WriteHeader(&tar.Header{Name: "rootfs/pad.bin", Mode: 0o644, Size: int64(pad), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	_, _ = tw.Write(buf)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func uploadBytes(t *testing.T, e *testenv.Env, b []byte) string {
	t.Helper()
	r := e.Do(http.MethodPost, "/providers/vmssd.Admin/artifacts?api-version="+adminAPI, b)
	if r.Status != http.StatusCreated {
		t.Fatalf("upload: %d %s", r.Status, r.Body)
	}
	return r.Map()["uri"].(string)
}

func register(t *testing.T, down *testenv.Env, endpoint, cred string, caPEM []byte) *testenv.Response {
	t.Helper()
	return down.Do(http.MethodPut, mpRegPath, map[string]any{"properties": map[string]any{"endpoint": endpoint, "credential": cred, "caPem": string(caPEM)}})
}

// download starts a download and follows it to its end; it returns the
// final status and every percentComplete seen.
func download(t *testing.T, down *testenv.Env, products ...string) (map[string]any, []float64) {
	t.Helper()
	r := down.Do(http.MethodPost, mpDownPath, map[string]any{"products": products})
	if r.Status != http.StatusAccepted {
		t.Fatalf("download: %d %s", r.Status, r.Body)
	}
	return follow(t, down, r)
}

func follow(t *testing.T, down *testenv.Env, r *testenv.Response) (map[string]any, []float64) {
	t.Helper()
	u := r.Header.Get("Azure-AsyncOperation")
	if u == "" {
		t.Fatalf("no Azure-AsyncOperation: %s", r.Body)
	}
	var pcts []float64
	deadline := time.Now().Add(2 * time.Minute)
	for {
		m := down.Do(http.MethodGet, u, nil).Map()
		p, _ := m["percentComplete"].(float64)
		pcts = append(pcts, p)
		if s := m["status"]; s != marketplace.JobRunning {
			return m, pcts
		}
		if time.Now().After(deadline) {
			t.Fatalf("download still running: %v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// TestMarketplaceSyndication: two vmssd servers; the downstream must
// register before it can browse or download; it downloads a newer OS image
// with progress, and a "latest" scale set scales out onto it (V1 through
// the marketplace) while the old instance keeps its version.
func TestMarketplaceSyndication(t *testing.T) {
	up := upstream(t, "3.0.0", 4<<20)
	down := testenv.Start(t, testenv.Options{})
	endpoint := up.Server.URL + marketplace.CatalogPrefix

	// Unregistered: a clear error naming the step.
	for _, r := range []*testenv.Response{
		down.Do(http.MethodGet, mpProdPath, nil),
		down.Do(http.MethodPost, mpDownPath, map[string]any{"products": []string{"vmssd:demo:guest:3.0.0"}}),
	} {
		if r.Status != http.StatusConflict || r.ErrorCode() != "MarketplaceNotRegistered" || !strings.Contains(string(r.Body), "marketplace/registration") {
			t.Fatalf("unregistered: %d %s", r.Status, r.Body)
		}
	}
	if r := register(t, down, endpoint, "wrong", up.Server.CAPEM); r.Status != http.StatusConflict || r.ErrorCode() != "MarketplaceCredentialRejected" {
		t.Fatalf("wrong credential: %d %s", r.Status, r.Body)
	}
	if r := register(t, down, endpoint, mpKey, nil); r.Status != http.StatusConflict || r.ErrorCode() != "MarketplaceUnreachable" {
		t.Fatalf("untrusted CA: %d %s", r.Status, r.Body)
	}
	if r := register(t, down, endpoint, mpKey, up.Server.CAPEM); r.Status != http.StatusOK {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	if m := down.Do(http.MethodGet, mpRegPath, nil).Map(); strings.Contains(fmt.Sprint(m), mpKey) || m["properties"].(map[string]any)["hasCredential"] != true {
		t.Fatalf("registration shows its credential: %v", m)
	}

	// Browse: images and the scale-set item, with sizes and checksums.
	var prods struct {
		Value []marketplace.Product `json:"value"`
	}
	if err := down.Do(http.MethodGet, mpProdPath, nil).JSON(&prods); err != nil {
		t.Fatal(err)
	}
	names := map[string]marketplace.Product{}
	for _, p := range prods.Value {
		names[p.Name] = p
	}
	img, ok := names["vmssd:demo:guest:3.0.0"]
	if !ok || img.SizeBytes < 4<<20 || len(img.SHA256) != 64 || img.OSType != "Linux" {
		t.Fatalf("products: %+v", prods.Value)
	}
	if _, ok := names[scaleItem]; !ok {
		t.Fatalf("no scale-set item upstream: %+v", prods.Value)
	}

	down.CreateRG("rg")
	waitOp(t, down, down.Do(http.MethodPut, down.VMSSPath("rg", "web"), testenv.VMSSBody(1, "latest", "Manual")))
	before := versions(t, waitHealthy(t, down, "rg", "web", 1, 60*time.Second))

	if r := down.Do(http.MethodPost, mpDownPath, map[string]any{"products": []string{"nosuch:1:2:3.0.0"}}); r.Status != http.StatusNotFound || r.ErrorCode() != "MarketplaceProductNotFound" {
		t.Fatalf("unknown product: %d %s", r.Status, r.Body)
	}
	m, pcts := download(t, down, "vmssd:demo:guest:3.0.0")
	if m["status"] != marketplace.JobSucceeded || m["percentComplete"] != 100.0 {
		t.Fatalf("download: %v", m)
	}
	if pcts[len(pcts)-1] != 100 {
		t.Fatalf("progress %v", pcts)
	}
	if r := down.Do(http.MethodGet, adminImagePath(down, "vmssd", "demo", "guest", "3.0.0"), nil); r.Status != http.StatusOK || r.Map()["properties"].(map[string]any)["digest"] != "sha256:"+img.SHA256 {
		t.Fatalf("downloaded image: %d %s", r.Status, r.Body)
	}
	// Downloading it again stores nothing twice and succeeds at once.
	if m, _ := download(t, down, "vmssd:demo:guest:3.0.0"); m["status"] != marketplace.JobSucceeded {
		t.Fatalf("second download: %v", m)
	}

	waitOp(t, down, scale(t, down, "rg", "web", 2))
	after := versions(t, waitHealthy(t, down, "rg", "web", 2, 60*time.Second))
	for id, v := range before {
		if after[id] != v {
			t.Fatalf("instance %s moved from %s to %s", id, v, after[id])
		}
	}
	newest := 0
	for id, v := range after {
		if _, old := before[id]; !old && v == "3.0.0" {
			newest++
		}
	}
	if newest != 1 {
		t.Fatalf("versions after scale-out %v (before %v): want the new instance on 3.0.0", after, before)
	}
}

// flakyServer is a static file server over an exported catalog directory
// that can cut or corrupt blob responses and slow them down; it records
// the Range headers it got.
type flakyServer struct {
	*httptest.Server
	mu      sync.Mutex
	cutOnce int64 // cut the next blob response after this many bytes
	corrupt bool
	delay   time.Duration // per 64 KiB chunk
	ranges  []string
}

func newFlaky(t *testing.T, dir string) *flakyServer {
	f := &flakyServer{}
	fs := http.FileServer(http.Dir(dir))
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+mpKey {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		if !strings.Contains(r.URL.Path, "/blobs/") {
			fs.ServeHTTP(w, r)
			return
		}
		f.mu.Lock()
		f.ranges = append(f.ranges, r.Header.Get("Range"))
		cut, corrupt, delay := f.cutOnce, f.corrupt, f.delay
		f.cutOnce = 0
		f.mu.Unlock()
		rec := httptest.NewRecorder()
		fs.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		body := rec.Body.Bytes()
		if corrupt && len(body) > 100 {
			body = bytes.Clone(body)
			body[len(body)/2] ^= 0xff
		}
		w.WriteHeader(rec.Code)
		for off := 0; off < len(body); off += 64 << 10 {
			end := min(off+64<<10, len(body))
			if cut > 0 && int64(end) > cut {
				_, _ = w.Write(body[off:cut])
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler) // the upstream dies mid-response
			}
			if _, err := w.Write(body[off:end]); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(delay)
		}
	}))
	f.Server.Config.ErrorLog = nil
	t.Cleanup(f.Close)
	return f
}

func (f *flakyServer) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.Certificate().Raw})
}

func (f *flakyServer) rangesSeen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ranges...)
}

// exportFrom exports products of up's catalog into a new directory.
func exportFrom(t *testing.T, up *testenv.Env, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	_, err := marketplace.Export(context.Background(), marketplace.HTTPClient(string(up.Server.CAPEM)), up.Server.URL+marketplace.CatalogPrefix, mpKey, dir, names, nil)
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return dir
}

// TestMarketplaceResumeAndVerify: a plain directory behind a static file
// server is an upstream; a corrupted artifact is rejected with nothing
// visible; an upstream that dies mid-response is resumed with a Range
// request; a downstream killed mid-download resumes after its restart.
func TestMarketplaceResumeAndVerify(t *testing.T) {
	const size = 6 << 20
	up := upstream(t, "3.0.0", size)
	dir := exportFrom(t, up, "vmssd:demo:guest:3.0.0")
	flaky := newFlaky(t, dir)
	dataDir := t.TempDir()
	down := testenv.Start(t, testenv.Options{DataDir: dataDir})
	if r := register(t, down, flaky.URL, mpKey, flaky.caPEM()); r.Status != http.StatusOK {
		t.Fatalf("register: %d %s", r.Status, r.Body)
	}
	img := adminImagePath(down, "vmssd", "demo", "guest", "3.0.0")

	// Corrupted: rejected, nothing visible, nothing left behind.
	flaky.mu.Lock()
	flaky.corrupt = true
	flaky.mu.Unlock()
	m, _ := download(t, down, "vmssd:demo:guest:3.0.0")
	if m["status"] != marketplace.JobFailed || errCode(m) != "MarketplaceChecksumMismatch" {
		t.Fatalf("corrupted download: %v", m)
	}
	if r := down.Do(http.MethodGet, img, nil); r.Status != http.StatusNotFound {
		t.Fatalf("corrupted image visible: %d %s", r.Status, r.Body)
	}
	if parts, _ := filepath.Glob(filepath.Join(dataDir, "marketplace", "partial", "*")); len(parts) != 0 {
		t.Fatalf("left behind: %v", parts)
	}

	// A cancelled download ends Canceled and leaves nothing behind.
	flaky.mu.Lock()
	flaky.corrupt, flaky.delay = false, 40*time.Millisecond
	flaky.mu.Unlock()
	r := down.Do(http.MethodPost, mpDownPath, map[string]any{"products": []string{"vmssd:demo:guest:3.0.0"}})
	if r.Status != http.StatusAccepted {
		t.Fatalf("download: %d %s", r.Status, r.Body)
	}
	u := r.Header.Get("Azure-AsyncOperation")
	testenv.Eventually(t, time.Minute, "some bytes downloaded", func() bool {
		p, _ := down.Do(http.MethodGet, u, nil).Map()["percentComplete"].(float64)
		return p > 0
	})
	if r := down.Do(http.MethodDelete, u, nil); r.Status != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	if m, _ := follow(t, down, r); m["status"] != marketplace.JobCanceled {
		t.Fatalf("cancelled download: %v", m)
	}
	if parts, _ := filepath.Glob(filepath.Join(dataDir, "marketplace", "partial", "*")); len(parts) != 0 {
		t.Fatalf("left behind after cancel: %v", parts)
	}

	// The downstream is killed mid-download, restarted, and resumes.
	r = down.Do(http.MethodPost, mpDownPath, map[string]any{"products": []string{"vmssd:demo:guest:3.0.0"}})
	if r.Status != http.StatusAccepted {
		t.Fatalf("download: %d %s", r.Status, r.Body)
	}
	u = r.Header.Get("Azure-AsyncOperation")
	testenv.Eventually(t, time.Minute, "a quarter downloaded", func() bool {
		p, _ := down.Do(http.MethodGet, u, nil).Map()["percentComplete"].(float64)
		return p >= 25
	})
	down.Stop()
	down = testenv.Start(t, testenv.Options{DataDir: dataDir})
	if r := down.Do(http.MethodGet, img, nil); r.Status != http.StatusNotFound {
		t.Fatalf("half-downloaded image visible after restart: %d %s", r.Status, r.Body)
	}
	// The upstream also dies once mid-response; the download goes on.
	flaky.mu.Lock()
	flaky.delay, flaky.cutOnce = 0, 1<<20
	flaky.mu.Unlock()
	n := len(flaky.rangesSeen())
	m, _ = download(t, down, "vmssd:demo:guest:3.0.0")
	if m["status"] != marketplace.JobSucceeded {
		t.Fatalf("resumed download: %v", m)
	}
	seen := flaky.rangesSeen()[n:]
	if len(seen) < 2 || !strings.HasPrefix(seen[0], "bytes=") || seen[0] == "bytes=0-" || !strings.HasPrefix(seen[1], "bytes=") {
		t.Fatalf("ranges after restart %q: want a resumed range, then another after the cut", seen)
	}
	if r := down.Do(http.MethodGet, img, nil); r.Status != http.StatusOK {
		t.Fatalf("image after resume: %d %s", r.Status, r.Body)
	}
}

// TestMarketplaceExportImport: disconnected mode. Products exported from
// a connected machine are imported into another cloud's data dir without
// a registration.
func TestMarketplaceExportImport(t *testing.T) {
	up := upstream(t, "3.0.0", 0)
	dir := exportFrom(t, up, "vmssd:demo:guest:3.0.0")
	if _, err := marketplace.Export(context.Background(), marketplace.HTTPClient(string(up.Server.CAPEM)), up.Server.URL+marketplace.CatalogPrefix, mpKey, dir, []string{scaleItem}, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := marketplace.ParseIndex(b)
	if err != nil || len(ix.Products) != 2 {
		t.Fatalf("exported index: %v %s", err, b)
	}
	down := testenv.Start(t, testenv.Options{})
	// Remove the preloaded item so that the import brings it back.
	del := "/subscriptions/" + down.Sub + "/providers/Microsoft.Gallery.Admin/galleryItems/" + scaleItem + "?api-version=" + galAPI
	if r := down.Do(http.MethodDelete, del, nil); r.Status != http.StatusOK {
		t.Fatalf("delete item: %d %s", r.Status, r.Body)
	}
	if r := down.Do(http.MethodPost, mpImpPath, map[string]any{"directory": "relative"}); r.Status != http.StatusBadRequest {
		t.Fatalf("relative directory: %d %s", r.Status, r.Body)
	}
	r := down.Do(http.MethodPost, mpImpPath, map[string]any{"directory": dir})
	if r.Status != http.StatusAccepted {
		t.Fatalf("import: %d %s", r.Status, r.Body)
	}
	if m, _ := follow(t, down, r); m["status"] != marketplace.JobSucceeded {
		t.Fatalf("import: %v", m)
	}
	if r := down.Do(http.MethodGet, adminImagePath(down, "vmssd", "demo", "guest", "3.0.0"), nil); r.Status != http.StatusOK {
		t.Fatalf("imported image: %d %s", r.Status, r.Body)
	}
	if r := down.Do(http.MethodGet, del, nil); r.Status != http.StatusOK {
		t.Fatalf("imported item: %d %s", r.Status, r.Body)
	}
}

// TestGalleryItemDeployAndRemove: a tenant sees the preloaded scale-set
// item and deploys it with its parameters checked; the operator removes
// it: it is gone from the tenant view at once and deploying it fails
// clearly, while the deployed set still scales.
func TestGalleryItemDeployAndRemove(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	tok := depTenant(t, e, "galTenant", depSubA)
	tview := "/subscriptions/" + depSubA + "/providers/Microsoft.Gallery/galleryitems?api-version=" + galAPI
	deployP := "/subscriptions/" + depSubA + "/resourceGroups/rg/providers/Microsoft.Gallery/galleryitems/" + scaleItem + "/deploy?api-version=" + galAPI
	var list struct {
		Value []map[string]any `json:"value"`
	}
	if err := e.DoAs(tok, http.MethodGet, tview, nil).JSON(&list); err != nil || len(list.Value) != 1 || list.Value[0]["name"] != scaleItem {
		t.Fatalf("tenant view: %v %v", err, list)
	}
	item := e.DoAs(tok, http.MethodGet, "/subscriptions/"+depSubA+"/providers/Microsoft.Gallery/galleryitems/"+scaleItem+"?api-version="+galAPI, nil).Map()
	props := item["properties"].(map[string]any)
	if props["itemDisplayName"] != "Virtual machine scale set" || props["template"] == nil || props["parameters"].(map[string]any)["osImageSku"] == nil {
		t.Fatalf("item: %v", item)
	}

	// Parameters are checked against the item's definitions.
	for _, c := range []struct {
		params map[string]any
		target string
	}{
		{map[string]any{"adminPassword": "S3cret!pass"}, "parameters.vmssName"},
		{map[string]any{"vmssName": "web", "adminPassword": "x", "instanceCount": 1000}, "parameters.instanceCount"},
		{map[string]any{"vmssName": "web", "adminPassword": "x", "nosuch": 1}, "parameters.nosuch"},
		{map[string]any{"vmssName": "web", "adminPassword": "x", "upgradeMode": "Sometimes"}, "parameters.upgradeMode"},
	} {
		r := e.DoAs(tok, http.MethodPost, deployP, map[string]any{"deploymentName": "d", "parameters": c.params})
		var eb struct {
			Error struct{ Code, Target string } `json:"error"`
		}
		_ = r.JSON(&eb)
		if r.Status != http.StatusBadRequest || eb.Error.Code != "InvalidGalleryItemParameters" || eb.Error.Target != c.target {
			t.Errorf("params %v: %d %s", c.params, r.Status, r.Body)
		}
	}

	r := e.DoAs(tok, http.MethodPost, deployP, map[string]any{"deploymentName": "ss", "parameters": map[string]any{
		"vmssName": map[string]any{"value": "web"}, "instanceCount": 1, "adminPassword": "S3cret!pass"}})
	if st, res := waitDeployment(t, e, r, 2*time.Minute); st != "Succeeded" {
		t.Fatalf("deploy item: %s %v", st, res)
	}
	rg := "/subscriptions/" + depSubA + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web?api-version=" + e.API
	if r := e.DoAs(tok, http.MethodGet, rg, nil); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"version":"latest"`) {
		t.Fatalf("deployed set: %d %s", r.Status, r.Body)
	}

	// Remove: gone from the tenant view at once, deploying fails clearly.
	del := "/subscriptions/" + e.Sub + "/providers/Microsoft.Gallery.Admin/galleryItems/" + scaleItem + "?api-version=" + galAPI
	if r := e.Do(http.MethodDelete, del, nil); r.Status != http.StatusOK {
		t.Fatalf("remove: %d %s", r.Status, r.Body)
	}
	if err := e.DoAs(tok, http.MethodGet, tview, nil).JSON(&list); err != nil || len(list.Value) != 0 {
		t.Fatalf("tenant view after remove: %v %v", err, list)
	}
	if r := e.DoAs(tok, http.MethodPost, deployP, map[string]any{"deploymentName": "ss2", "parameters": map[string]any{"vmssName": "web2", "adminPassword": "x"}}); r.Status != http.StatusNotFound || r.ErrorCode() != "GalleryItemNotFound" {
		t.Fatalf("deploy removed item: %d %s", r.Status, r.Body)
	}
	if r := e.Do(http.MethodDelete, del, nil); r.Status != http.StatusNoContent {
		t.Fatalf("second remove: %d %s", r.Status, r.Body)
	}
	// The existing set still scales.
	r = e.DoAs(tok, http.MethodPatch, rg, map[string]any{"sku": map[string]any{"capacity": 2}})
	if st, m := e.Wait(r, time.Minute); st != "Succeeded" {
		t.Fatalf("scale after remove: %s %v", st, m)
	}

	// The operator adds it back from an upload.
	req, _ := http.NewRequest(http.MethodPost, e.Server.URL+"/subscriptions/"+e.Sub+"/providers/Microsoft.Gallery.Admin/galleryItems?api-version="+galAPI, bytes.NewReader(marketplace.DefaultItemPackage()))
	req.Header.Set("Authorization", "Bearer "+e.Token)
	req.Header.Set("Content-Type", "application/zip")
	resp, err := e.HTTP.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("add item: %v %v", err, resp)
	}
	resp.Body.Close()
	if err := e.DoAs(tok, http.MethodGet, tview, nil).JSON(&list); err != nil || len(list.Value) != 1 {
		t.Fatalf("tenant view after add: %v %v", err, list)
	}
}

// TestMarketplaceAdminEndpointsHiddenFromTenants: every admin endpoint
// (marketplace, gallery admin, platform images, artifacts) answers a
// tenant token with 404, as admin APIs do not exist for tenants.
func TestMarketplaceAdminEndpointsHiddenFromTenants(t *testing.T) {
	e := testenv.Start(t, testenv.Options{})
	r := e.Do(http.MethodPut, "/providers/vmssd.Admin/principals/mpTenant?api-version=2015-11-01", map[string]any{"role": "tenant", "subscriptions": []string{e.Sub}})
	if r.Status != http.StatusCreated {
		t.Fatalf("principal: %d %s", r.Status, r.Body)
	}
	tok := e.IssueToken("mpTenant", auth.RoleTenant)
	gal := "/subscriptions/" + e.Sub + "/providers/Microsoft.Gallery.Admin/galleryItems"
	for _, c := range []struct{ method, path string }{
		{http.MethodPut, mpRegPath}, {http.MethodGet, mpRegPath}, {http.MethodDelete, mpRegPath},
		{http.MethodGet, mpProdPath}, {http.MethodPost, mpDownPath}, {http.MethodPost, mpImpPath},
		{http.MethodGet, "/providers/vmssd.Admin/marketplace/downloads/x?api-version=" + mpAPI},
		{http.MethodDelete, "/providers/vmssd.Admin/marketplace/downloads/x?api-version=" + mpAPI},
		{http.MethodGet, gal + "?api-version=" + galAPI}, {http.MethodPost, gal + "?api-version=" + galAPI},
		{http.MethodGet, gal + "/" + scaleItem + "?api-version=" + galAPI}, {http.MethodDelete, gal + "/" + scaleItem + "?api-version=" + galAPI},
		{http.MethodGet, "/subscriptions/" + e.Sub + "/providers/Microsoft.Compute.Admin/locations/local/artifactTypes/platformImage?api-version=" + adminAPI},
		{http.MethodPut, adminImagePath(e, "vmssd", "demo", "guest", "9.0.0")},
		{http.MethodDelete, adminImagePath(e, "vmssd", "demo", "guest", "1.0.0")},
		{http.MethodPost, "/providers/vmssd.Admin/artifacts?api-version=" + adminAPI},
	} {
		if r := e.DoAs(tok, c.method, c.path, map[string]any{}); r.Status != http.StatusNotFound && r.Status != http.StatusForbidden {
			t.Errorf("tenant %s %s: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
	// The image is still there.
	if r := e.Do(http.MethodGet, adminImagePath(e, "vmssd", "demo", "guest", "1.0.0"), nil); r.Status != http.StatusOK {
		t.Fatalf("image: %d", r.Status)
	}
}
