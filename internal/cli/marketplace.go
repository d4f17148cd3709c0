package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vmssd/vmssd/internal/marketplace"
)

// vmssctl marketplace: syndication from an upstream marketplace
// (docs/marketplace.md). register, products, download, list, remove,
// export and import are operator commands; deploy is a tenant's.

const apiGallery = "2015-04-01"

func newMarketplaceCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("marketplace", "Marketplace syndication and gallery items (operator; deploy is for tenants)")
	cmd.AddCommand(newMPRegisterCommand(root), newMPProductsCommand(root), newMPDownloadCommand(root, false),
		newMPDownloadCommand(root, true), newMPListCommand(root), newMPRemoveCommand(root),
		newMPExportCommand(root), newMPDeployCommand(root))
	return cmd
}

// simple is a runner whose Complete and Validate do nothing more.
type simple struct {
	run  func(ctx context.Context) error
	args []string
}

func (s *simple) Complete(_ context.Context, args []string) error { s.args = args; return nil }
func (s *simple) Validate() error                                 { return nil }
func (s *simple) Run(ctx context.Context) error                   { return s.run(ctx) }

func newMPRegisterCommand(root *rootOptions) *cobra.Command {
	var endpoint, cred, caFile string
	o := &simple{}
	cmd := &cobra.Command{Use: "register --endpoint URL [--credential KEY] [--ca FILE]", Short: "Register this cloud with an upstream marketplace (required before downloads)", Args: noArgs}
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "the upstream catalog's base URL (https://host:port/marketplace/v1/ for a vmssd, or a static server's directory URL)")
	cmd.Flags().StringVar(&cred, "credential", "", "the upstream's credential (its --marketplace-key)")
	cmd.Flags().StringVar(&caFile, "ca", "", "a PEM file with the upstream's CA (default: the system's CAs)")
	o.run = func(ctx context.Context) error {
		if endpoint == "" {
			return usageErrorf("--endpoint is required")
		}
		var ca []byte
		if caFile != "" {
			var err error
			if ca, err = os.ReadFile(caFile); err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
		}
		c, err := root.connect()
		if err != nil {
			return err
		}
		var out map[string]any
		if _, err := c.do(ctx, adminCall{method: http.MethodPut, path: "/providers/vmssd.Admin/marketplace/registration", apiVersion: apiVMSSDAdmin,
			body: map[string]any{"properties": map[string]any{"endpoint": endpoint, "credential": cred, "caPem": string(ca)}},
			ok:   []int{http.StatusOK}, out: &out}); err != nil {
			return err
		}
		return root.print(out, func() table {
			return table{header: []string{"Endpoint", "Registered"}, rows: [][]string{{endpoint, "true"}}}
		})
	}
	return bind(root, cmd, o)
}

func newMPProductsCommand(root *rootOptions) *cobra.Command {
	o := &simple{}
	cmd := &cobra.Command{Use: "products", Short: "List what the registered upstream marketplace offers", Args: noArgs}
	o.run = func(ctx context.Context) error {
		c, err := root.connect()
		if err != nil {
			return err
		}
		var out struct {
			Value []marketplace.Product `json:"value"`
		}
		if _, err := c.do(ctx, adminCall{method: http.MethodGet, path: "/providers/vmssd.Admin/marketplace/products", apiVersion: apiVMSSDAdmin,
			ok: []int{http.StatusOK}, out: &out}); err != nil {
			return err
		}
		return root.print(out.Value, func() table {
			t := table{header: []string{"Kind", "Name", "Version", "OsType", "Size"}}
			for _, p := range out.Value {
				t.rows = append(t.rows, []string{p.Kind, p.Name, p.Version, p.OSType, humanBytes(p.SizeBytes)})
			}
			return t
		})
	}
	return bind(root, cmd, o)
}

// newMPDownloadCommand is download (from the registered upstream) or
// import (from a directory an export wrote).
func newMPDownloadCommand(root *rootOptions, imp bool) *cobra.Command {
	var noWait bool
	var dir string
	o := &simple{}
	cmd := &cobra.Command{Use: "download PRODUCT...", Short: "Download products from the upstream marketplace, verified, with a progress bar"}
	if imp {
		cmd = &cobra.Command{Use: "import --dir DIR [PRODUCT...]", Short: "Import products from a directory written by export (disconnected mode; the server reads DIR)"}
		cmd.Flags().StringVar(&dir, "dir", "", "the exported directory, as the server sees it")
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "start and return the operation without waiting")
	o.run = func(ctx context.Context) error {
		c, err := root.connect()
		if err != nil {
			return err
		}
		call := adminCall{method: http.MethodPost, path: "/providers/vmssd.Admin/marketplace/downloads", apiVersion: apiVMSSDAdmin,
			body: map[string]any{"products": o.args}, ok: []int{http.StatusAccepted}}
		if imp {
			if dir == "" {
				return usageErrorf("--dir is required")
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			call.path, call.body = "/providers/vmssd.Admin/marketplace/imports", map[string]any{"products": o.args, "directory": abs}
		} else if len(o.args) == 0 {
			return usageErrorf("name at least one product (vmssctl marketplace products lists them)")
		}
		var job map[string]any
		call.out = &job
		if _, err := c.do(ctx, call); err != nil {
			return err
		}
		id, _ := job["name"].(string)
		if !noWait {
			bar := newBar(root.streams.ErrOut)
			for {
				st, _ := job["status"].(string)
				props, _ := job["properties"].(map[string]any)
				done, _ := props["bytesDone"].(float64)
				total, _ := props["bytesTotal"].(float64)
				rate, _ := props["bytesPerSecond"].(float64)
				eta, _ := props["etaSeconds"].(float64)
				bar.draw(int64(done), int64(total), rate, eta)
				if st != marketplace.JobRunning {
					bar.finish()
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(250 * time.Millisecond):
				}
				job = nil
				if _, err := c.do(ctx, adminCall{method: http.MethodGet, path: "/providers/vmssd.Admin/marketplace/downloads/" + id,
					apiVersion: apiVMSSDAdmin, ok: []int{http.StatusOK}, out: &job}); err != nil {
					return err
				}
			}
			if st := job["status"]; st != marketplace.JobSucceeded {
				e, _ := job["error"].(map[string]any)
				return fmt.Errorf("download %s: %v: %v", st, e["code"], e["message"])
			}
		}
		return root.print(job, func() table {
			t := table{header: []string{"Id", "Status", "PercentComplete"}}
			t.rows = append(t.rows, []string{id, fmt.Sprint(job["status"]), fmt.Sprint(job["percentComplete"])})
			return t
		})
	}
	return bind(root, cmd, o)
}

func galleryAdminPath(sub string) string {
	return "/subscriptions/" + sub + "/providers/Microsoft.Gallery.Admin/galleryItems"
}

func newMPListCommand(root *rootOptions) *cobra.Command {
	o := &simple{}
	cmd := &cobra.Command{Use: "list", Short: "List the gallery items this marketplace offers", Args: noArgs}
	o.run = func(ctx context.Context) error {
		c, err := root.connect()
		if err != nil {
			return err
		}
		sub, err := c.sub()
		if err != nil {
			return err
		}
		var out struct {
			Value []map[string]any `json:"value"`
		}
		// The tenant view: what is offered (operators see the same).
		if _, err := c.do(ctx, adminCall{method: http.MethodGet, path: "/subscriptions/" + sub + "/providers/Microsoft.Gallery/galleryitems",
			apiVersion: apiGallery, ok: []int{http.StatusOK}, out: &out}); err != nil {
			return err
		}
		return root.print(out.Value, func() table {
			t := table{header: []string{"Name", "DisplayName", "Publisher", "Version"}}
			for _, it := range out.Value {
				p, _ := it["properties"].(map[string]any)
				t.rows = append(t.rows, []string{fmt.Sprint(it["name"]), fmt.Sprint(p["itemDisplayName"]), fmt.Sprint(p["publisher"]), fmt.Sprint(p["version"])})
			}
			return t
		})
	}
	return bind(root, cmd, o)
}

func newMPRemoveCommand(root *rootOptions) *cobra.Command {
	o := &simple{}
	cmd := &cobra.Command{Use: "remove NAME", Short: "Remove a gallery item at once (Remove-AzsGalleryItem); deployed scale sets keep running", Args: cobra.ExactArgs(1)}
	o.run = func(ctx context.Context) error {
		c, err := root.connect()
		if err != nil {
			return err
		}
		sub, err := c.sub()
		if err != nil {
			return err
		}
		_, err = c.do(ctx, adminCall{method: http.MethodDelete, path: galleryAdminPath(sub) + "/" + o.args[0], apiVersion: apiGallery,
			ok: []int{http.StatusOK, http.StatusNoContent}})
		return err
	}
	return bind(root, cmd, o)
}

func newMPExportCommand(root *rootOptions) *cobra.Command {
	var endpoint, cred, caFile, dir string
	o := &simple{}
	cmd := &cobra.Command{Use: "export --endpoint URL --dir DIR [PRODUCT...]",
		Short: "Export products of an upstream catalog into a directory (disconnected mode; runs here, not on the server)"}
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "the upstream catalog's base URL")
	cmd.Flags().StringVar(&cred, "credential", "", "the upstream's credential")
	cmd.Flags().StringVar(&caFile, "ca", "", "a PEM file with the upstream's CA")
	cmd.Flags().StringVar(&dir, "dir", "", "the directory to write (index.json + blobs/); an existing export is added to")
	o.run = func(ctx context.Context) error {
		if endpoint == "" || dir == "" {
			return usageErrorf("--endpoint and --dir are required")
		}
		var ca []byte
		if caFile != "" {
			var err error
			if ca, err = os.ReadFile(caFile); err != nil {
				return fmt.Errorf("--ca: %w", err)
			}
		}
		bar := newBar(root.streams.ErrOut)
		start := time.Now()
		cur := ""
		ix, err := marketplace.Export(ctx, marketplace.HTTPClient(string(ca)), endpoint, cred, dir, o.args, func(name string, done, total int64) {
			if name != cur {
				if cur != "" {
					bar.finish()
				}
				cur, start = name, time.Now()
				fmt.Fprintln(root.streams.ErrOut, name)
			}
			rate := float64(done) / max(time.Since(start).Seconds(), 0.001)
			bar.draw(done, total, rate, float64(total-done)/max(rate, 1))
		})
		bar.finish()
		if err != nil {
			return err
		}
		return root.print(ix.Products, func() table {
			t := table{header: []string{"Kind", "Name", "Size"}}
			for _, p := range ix.Products {
				t.rows = append(t.rows, []string{p.Kind, p.Name, humanBytes(p.SizeBytes)})
			}
			return t
		})
	}
	return bind(root, cmd, o)
}

func newMPDeployCommand(root *rootOptions) *cobra.Command {
	var rg, name string
	var params []string
	var noWait bool
	o := &simple{}
	cmd := &cobra.Command{Use: "deploy ITEM -g GROUP [-n DEPLOYMENT] [-p k=v|@file|json]...",
		Short: "Deploy a gallery item: its default template runs with your parameters", Args: cobra.ExactArgs(1)}
	cmd.Flags().StringVarP(&rg, "resource-group", "g", "", "the resource group")
	cmd.Flags().StringVarP(&name, "name", "n", "", "the deployment's name (default: the item's)")
	cmd.Flags().StringArrayVarP(&params, "parameters", "p", nil, "parameters: key=value, @file or a JSON object (repeatable)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "start the deployment and return")
	o.run = func(ctx context.Context) error {
		if rg == "" {
			return usageErrorf("--resource-group is required")
		}
		c, err := root.connect()
		if err != nil {
			return err
		}
		sub, err := c.sub()
		if err != nil {
			return err
		}
		var item struct {
			Properties struct {
				Template json.RawMessage `json:"template"`
				ItemName string          `json:"itemName"`
			} `json:"properties"`
		}
		if _, err := c.do(ctx, adminCall{method: http.MethodGet, path: "/subscriptions/" + sub + "/providers/Microsoft.Gallery/galleryitems/" + o.args[0],
			apiVersion: apiGallery, ok: []int{http.StatusOK}, out: &item}); err != nil {
			return err
		}
		var tmpl map[string]any
		_ = json.Unmarshal(item.Properties.Template, &tmpl)
		ps, err := parseDeploymentParameters(params, tmpl, os.ReadFile)
		if err != nil {
			return err
		}
		if name == "" {
			name = item.Properties.ItemName
		}
		if _, err := c.do(ctx, adminCall{method: http.MethodPost, path: "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Gallery/galleryitems/" + o.args[0] + "/deploy",
			apiVersion: apiGallery, body: map[string]any{"deploymentName": name, "parameters": ps}, ok: []int{http.StatusOK, http.StatusCreated}}); err != nil {
			return err
		}
		depPath := "/subscriptions/" + sub + "/resourceGroups/" + rg + "/providers/Microsoft.Resources/deployments/" + name
		var dep map[string]any
		prog := newProgress(root.streams.ErrOut)
		for {
			dep = nil
			if _, err := c.do(ctx, adminCall{method: http.MethodGet, path: depPath, apiVersion: "2019-10-01", ok: []int{http.StatusOK}, out: &dep}); err != nil {
				return err
			}
			p, _ := dep["properties"].(map[string]any)
			st, _ := p["provisioningState"].(string)
			if noWait || st == "Succeeded" || st == "Failed" || st == "Canceled" {
				prog.finish()
				if st == "Failed" || st == "Canceled" {
					b, _ := json.Marshal(p["error"])
					return fmt.Errorf("deployment %s %s: %s", name, st, b)
				}
				break
			}
			prog.update(st)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		return root.print(dep, func() table {
			p, _ := dep["properties"].(map[string]any)
			return table{header: []string{"Name", "ProvisioningState"}, rows: [][]string{{name, fmt.Sprint(p["provisioningState"])}}}
		})
	}
	return bind(root, cmd, o)
}

// bar is a download progress bar on stderr: refreshed in place on a
// terminal, a line per 10% otherwise.
type dlBar struct {
	w       io.Writer
	tty     bool
	lastPct int
	shown   bool
}

func newBar(w io.Writer) *dlBar { return &dlBar{w: w, tty: isTerminal(w), lastPct: -1} }

// renderBar is one line of the bar (pure).
func renderBar(done, total int64, rate, eta float64) string {
	const width = 30
	frac := 0.0
	if total > 0 {
		frac = min(float64(done)/float64(total), 1)
	}
	n := int(frac * width)
	line := fmt.Sprintf("[%s%s] %5.1f%%  %s/%s  %s/s", strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac,
		humanBytes(done), humanBytes(total), humanBytes(int64(rate)))
	if frac < 1 && rate > 0 {
		line += "  ETA " + (time.Duration(eta) * time.Second).String()
	}
	return line
}

func (b *dlBar) draw(done, total int64, rate, eta float64) {
	line := renderBar(done, total, rate, eta)
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", line)
		b.shown = true
		return
	}
	pct := 0
	if total > 0 {
		pct = int(100 * done / total)
	}
	if pct/10 != b.lastPct/10 || b.lastPct < 0 {
		b.lastPct = pct
		fmt.Fprintln(b.w, line)
	}
}

func (b *dlBar) finish() {
	if b.tty && b.shown {
		fmt.Fprintln(b.w)
		b.shown = false
	}
	b.lastPct = -1
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
