package cli

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/marketplace"
	"github.com/vmssd/vmssd/internal/testenv"
)

func TestRenderBar(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		rate, eta   float64
		want        []string
	}{
		{0, 100, 0, 0, []string{"[..............................]", "  0.0%", "0 B/100 B"}},
		{50 << 20, 100 << 20, 10 << 20, 5, []string{"[###############...............]", " 50.0%", "50.0 MiB/100.0 MiB", "10.0 MiB/s", "ETA 5s"}},
		{100, 100, 1, 0, []string{"[##############################]", "100.0%"}},
		{200, 100, 1, 0, []string{"100.0%"}},
	} {
		got := renderBar(c.done, c.total, c.rate, c.eta)
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("renderBar(%d, %d) = %q, want %q in it", c.done, c.total, got, w)
			}
		}
		if c.done >= c.total && strings.Contains(got, "ETA") {
			t.Errorf("finished bar shows an ETA: %q", got)
		}
	}
}

// TestMarketplaceCommands: register with an upstream vmssd, browse,
// download with a progress bar, export and import, deploy the scale-set
// item, remove it.
func TestMarketplaceCommands(t *testing.T) {
	up := testenv.Start(t, testenv.Options{ServeMarketplace: true, MarketplaceKey: "k"})
	var demo bytes.Buffer
	if err := artifact.BuildDemo(&demo, artifact.DemoOptions{Version: "4.0.0", Healthy: true}); err != nil {
		t.Fatal(err)
	}
	r := up.Do(http.MethodPost, "/providers/vmssd.Admin/artifacts?api-version="+apiComputeAdmin, demo.Bytes())
	uri, _ := r.Map()["uri"].(string)
	r = up.Do(http.MethodPut, "/subscriptions/"+up.Sub+"/providers/Microsoft.Compute.Admin/locations/local/artifactTypes/platformImage/publishers/vmssd/offers/demo/skus/guest/versions/4.0.0?api-version="+apiComputeAdmin,
		map[string]any{"properties": map[string]any{"osDisk": map[string]any{"osType": "Linux", "uri": uri}}})
	if r.Status != http.StatusCreated {
		t.Fatalf("publish: %d %s", r.Status, r.Body)
	}
	down := testenv.Start(t, testenv.Options{})
	c := newCtl(t, down)
	endpoint := up.Server.URL + marketplace.CatalogPrefix

	if _, errOut, code := c.run("marketplace", "download", "vmssd:demo:guest:4.0.0"); code == 0 || !strings.Contains(errOut, "MarketplaceNotRegistered") || !strings.Contains(errOut, "marketplace register") {
		t.Fatalf("unregistered download: %d %s", code, errOut)
	}
	c.ok("marketplace", "register", "--endpoint", endpoint, "--credential", "k", "--ca", up.Server.CAFile)
	if out := c.ok("marketplace", "products", "-o", "table"); !strings.Contains(out, "vmssd:demo:guest:4.0.0") || !strings.Contains(out, "vmssd.VMScaleSet.1.0.0") {
		t.Fatalf("products:\n%s", out)
	}
	_, errOut, code := c.run("marketplace", "download", "vmssd:demo:guest:4.0.0", "-o", "json")
	if code != 0 || !strings.Contains(errOut, "100.0%") || !strings.Contains(errOut, "[####") {
		t.Fatalf("download: %d\n%s", code, errOut)
	}
	if out := c.ok("image", "list", "--all", "-o", "tsv", "--query", "[].version"); !strings.Contains(out, "4.0.0") {
		t.Fatalf("image list after download:\n%s", out)
	}
	if out := c.ok("marketplace", "download", "vmssd:demo:guest:4.0.0", "--no-wait", "-o", "tsv", "--query", "status"); strings.TrimSpace(out) == "" {
		t.Fatalf("--no-wait printed no status")
	}

	// Export on a "connected machine", import on this cloud.
	dir := t.TempDir()
	c.ok("marketplace", "export", "--endpoint", endpoint, "--credential", "k", "--ca", up.Server.CAFile, "--dir", dir, "vmssd:demo:guest:4.0.0")
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Fatal(err)
	}
	c.ok("marketplace", "import", "--dir", dir)

	// Deploy the scale-set item, then remove it.
	c.ok("group", "create", "-n", "rg")
	if _, errOut, code := c.run("marketplace", "deploy", "vmssd.VMScaleSet.1.0.0", "-g", "rg", "-p", "adminPassword=x"); code == 0 || !strings.Contains(errOut, "vmssName") {
		t.Fatalf("deploy without vmssName: %d %s", code, errOut)
	}
	c.ok("marketplace", "deploy", "vmssd.VMScaleSet.1.0.0", "-g", "rg", "-n", "ss", "-p", "vmssName=cli", "-p", "instanceCount=1", "-p", "adminPassword=S3cret!pass")
	if out := c.ok("vmss", "show", "-g", "rg", "-n", "cli", "-o", "tsv", "--query", "sku.capacity"); strings.TrimSpace(out) != "1" {
		t.Fatalf("deployed set capacity %q", out)
	}
	if out := c.ok("marketplace", "list", "-o", "tsv", "--query", "[].name"); strings.TrimSpace(out) != "vmssd.VMScaleSet.1.0.0" {
		t.Fatalf("list: %q", out)
	}
	c.ok("marketplace", "remove", "vmssd.VMScaleSet.1.0.0")
	if out := c.ok("marketplace", "list", "-o", "tsv", "--query", "[].name"); strings.TrimSpace(out) != "" {
		t.Fatalf("list after remove: %q", out)
	}
	if _, errOut, code := c.run("marketplace", "deploy", "vmssd.VMScaleSet.1.0.0", "-g", "rg", "-p", "vmssName=again"); code == 0 || !strings.Contains(errOut, "GalleryItemNotFound") {
		t.Fatalf("deploy after remove: %d %s", code, errOut)
	}
}
