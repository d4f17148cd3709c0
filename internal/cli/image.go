package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/spf13/cobra"
)

func newImageCommand(root *rootOptions) *cobra.Command {
	cmd := groupCommand("image", "Platform images (az vm image; add/delete are operator commands)")
	cmd.AddCommand(newImageListCommand(root), newImageShowCommand(root), newImageAddCommand(root), newImageDeleteCommand(root))
	return cmd
}

// urn is publisher:offer:sku:version.
type urn struct {
	publisher, offer, sku, version string
}

func (u urn) String() string { return u.publisher + ":" + u.offer + ":" + u.sku + ":" + u.version }

// parseURN parses publisher:offer:sku:version; with allowLatest the version
// may be "latest" or left out.
func parseURN(s string, allowLatest bool) (urn, error) {
	parts := strings.Split(s, ":")
	if len(parts) == 3 && allowLatest {
		parts = append(parts, "latest")
	}
	if len(parts) != 4 {
		return urn{}, usageErrorf("image URN %q: publisher:offer:sku:version expected", s)
	}
	for _, p := range parts {
		if strings.TrimSpace(p) == "" {
			return urn{}, usageErrorf("image URN %q: empty part", s)
		}
	}
	u := urn{parts[0], parts[1], parts[2], parts[3]}
	if !allowLatest && strings.EqualFold(u.version, "latest") {
		return urn{}, usageErrorf("image URN %q: an explicit version is required", s)
	}
	return u, nil
}

func (c *connection) images() (*armcompute.VirtualMachineImagesClient, error) {
	sub, err := c.sub()
	if err != nil {
		return nil, err
	}
	return armcompute.NewVirtualMachineImagesClient(sub, c.cred, c.opts)
}

// location returns flag, else the configured location.
func (c *connection) location(flag string) string {
	if flag != "" {
		return flag
	}
	return c.cfg.Location
}

// ---- list ----

// imageRow is what image list shows (the shape of az vm image list).
type imageRow struct {
	Publisher string `json:"publisher"`
	Offer     string `json:"offer"`
	SKU       string `json:"sku"`
	Version   string `json:"version"`
	URN       string `json:"urn"`
	Location  string `json:"location"`
}

type imageListOptions struct {
	root                  *rootOptions
	location              string
	publisher, offer, sku string
	all                   bool
}

func newImageListCommand(root *rootOptions) *cobra.Command {
	o := &imageListOptions{root: root}
	cmd := &cobra.Command{
		Use:   "list [--publisher P] [--offer O] [--sku S] [--all]",
		Short: "List platform images",
		Long: `List platform images by walking publishers, offers, SKUs and versions.
Filters match case-insensitively on a part of the name, as in az. Without
--all only the latest version of each SKU is shown.`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVarP(&o.location, "location", "l", "", "location (default: the configured one)")
	f.StringVarP(&o.publisher, "publisher", "p", "", "publisher filter")
	f.StringVarP(&o.offer, "offer", "f", "", "offer filter")
	f.StringVarP(&o.sku, "sku", "s", "", "SKU filter")
	f.BoolVar(&o.all, "all", false, "list every version, not only the latest")
	return bind(root, cmd, o)
}

func (o *imageListOptions) Complete(context.Context, []string) error { return nil }
func (o *imageListOptions) Validate() error                          { return nil }

func matches(name, filter string) bool {
	return filter == "" || strings.Contains(strings.ToLower(name), strings.ToLower(filter))
}

func (o *imageListOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	client, err := c.images()
	if err != nil {
		return err
	}
	loc := c.location(o.location)
	rows := []imageRow{}
	pubs, err := client.ListPublishers(ctx, loc, nil)
	if err != nil {
		return err
	}
	for _, pub := range pubs.VirtualMachineImageResourceArray {
		p := str(pub.Name)
		if !matches(p, o.publisher) {
			continue
		}
		offers, err := client.ListOffers(ctx, loc, p, nil)
		if err != nil {
			return err
		}
		for _, offer := range offers.VirtualMachineImageResourceArray {
			of := str(offer.Name)
			if !matches(of, o.offer) {
				continue
			}
			skus, err := client.ListSKUs(ctx, loc, p, of, nil)
			if err != nil {
				return err
			}
			for _, sku := range skus.VirtualMachineImageResourceArray {
				s := str(sku.Name)
				if !matches(s, o.sku) {
					continue
				}
				opts := &armcompute.VirtualMachineImagesClientListOptions{}
				if !o.all {
					opts.Orderby, opts.Top = ptr("name desc"), ptr(int32(1))
				}
				vers, err := client.List(ctx, loc, p, of, s, opts)
				if err != nil {
					return err
				}
				for _, v := range vers.VirtualMachineImageResourceArray {
					u := urn{p, of, s, str(v.Name)}
					rows = append(rows, imageRow{Publisher: p, Offer: of, SKU: s, Version: u.version, URN: u.String(), Location: str(v.Location)})
				}
			}
		}
	}
	return o.root.print(rows, func() table {
		t := table{header: []string{"Publisher", "Offer", "Sku", "Version", "Urn"}}
		for _, r := range rows {
			t.rows = append(t.rows, []string{r.Publisher, r.Offer, r.SKU, r.Version, r.URN})
		}
		return t
	})
}

// ---- show ----

// urnFlags are the --location and --urn flags of commands on one image
// version.
type urnFlags struct {
	location    string
	urnFlag     string
	urn         urn
	allowLatest bool
}

func (u *urnFlags) add(cmd *cobra.Command, usage string) {
	cmd.Flags().StringVarP(&u.location, "location", "l", "", "location (default: the configured one)")
	cmd.Flags().StringVar(&u.urnFlag, "urn", "", usage)
	_ = cmd.MarkFlagRequired("urn")
}

func (u *urnFlags) Complete(context.Context, []string) error {
	var err error
	u.urn, err = parseURN(u.urnFlag, u.allowLatest)
	return err
}

func (u *urnFlags) Validate() error { return nil }

type imageShowOptions struct {
	root *rootOptions
	urnFlags
}

func newImageShowCommand(root *rootOptions) *cobra.Command {
	o := &imageShowOptions{root: root, urnFlags: urnFlags{allowLatest: true}}
	cmd := &cobra.Command{Use: "show --urn publisher:offer:sku:version|latest", Short: "Show a platform image version", Args: noArgs}
	o.add(cmd, "image URN")
	return bind(root, cmd, o)
}

func (o *imageShowOptions) Run(ctx context.Context) error {
	c, err := o.root.connect()
	if err != nil {
		return err
	}
	client, err := c.images()
	if err != nil {
		return err
	}
	res, err := client.Get(ctx, c.location(o.location), o.urn.publisher, o.urn.offer, o.urn.sku, o.urn.version, nil)
	if err != nil {
		return err
	}
	img := res.VirtualMachineImage
	return o.root.print(img, func() table {
		row := []string{urn{o.urn.publisher, o.urn.offer, o.urn.sku, str(img.Name)}.String(), str(img.Location), "", "", ""}
		if p := img.Properties; p != nil {
			if p.OSDiskImage != nil {
				row[2] = str(p.OSDiskImage.OperatingSystem)
			}
			row[3], row[4] = str(p.Architecture), str(p.HyperVGeneration)
		}
		return table{header: []string{"Urn", "Location", "OsType", "Architecture", "HyperVGeneration"}, rows: [][]string{row}}
	})
}

// ---- add / delete (operator) ----

// adminImage is the operator API's platform image.
type adminImage struct {
	ID         string `json:"id,omitempty"`
	Name       string `json:"name,omitempty"`
	Type       string `json:"type,omitempty"`
	Location   string `json:"location,omitempty"`
	Properties struct {
		OSDisk struct {
			OSType string `json:"osType,omitempty"`
			URI    string `json:"uri"`
		} `json:"osDisk"`
		ProvisioningState string `json:"provisioningState,omitempty"`
		Digest            string `json:"digest,omitempty"`
		Size              int64  `json:"sizeBytes,omitempty"`
	} `json:"properties"`
}

func adminImagePath(sub, loc string, u urn) string {
	e := url.PathEscape
	return "/subscriptions/" + e(sub) + "/providers/Microsoft.Compute.Admin/locations/" + e(loc) +
		"/artifactTypes/platformImage/publishers/" + e(u.publisher) + "/offers/" + e(u.offer) +
		"/skus/" + e(u.sku) + "/versions/" + e(u.version)
}

type imageAddOptions struct {
	root                           *rootOptions
	location                       string
	publisher, offer, sku, version string
	file, uri, osType              string
	urn                            urn
}

func newImageAddCommand(root *rootOptions) *cobra.Command {
	o := &imageAddOptions{root: root}
	cmd := &cobra.Command{
		Use:   "add --publisher P --offer O --sku S --version V (--file ARTIFACT | --uri URI)",
		Short: "Publish a platform image version (operator)",
		Long: `Publish a platform image version. With --file the artifact (.tar.gz) is
uploaded first; with --uri the server imports it from a path, file:// URL or
artifact:sha256:... reference.`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVarP(&o.location, "location", "l", "", "location (default: the configured one)")
	f.StringVar(&o.publisher, "publisher", "", "publisher")
	f.StringVar(&o.offer, "offer", "", "offer")
	f.StringVar(&o.sku, "sku", "", "SKU")
	f.StringVar(&o.version, "version", "", "version (Major.Minor.Build)")
	f.StringVar(&o.file, "file", "", "artifact file to upload")
	f.StringVar(&o.uri, "uri", "", "artifact URI the server imports")
	f.StringVar(&o.osType, "os-type", "", "OS type: Linux or Windows (default: from the artifact)")
	for _, n := range []string{"publisher", "offer", "sku", "version"} {
		_ = cmd.MarkFlagRequired(n)
	}
	return bind(root, cmd, o)
}

func (o *imageAddOptions) Complete(context.Context, []string) error {
	o.urn = urn{o.publisher, o.offer, o.sku, o.version}
	if o.osType != "" {
		var err error
		if o.osType, err = canonical("--os-type", o.osType, "Linux", "Windows"); err != nil {
			return err
		}
	}
	return nil
}

func (o *imageAddOptions) Validate() error {
	if (o.file == "") == (o.uri == "") {
		return usageErrorf("exactly one of --file or --uri is required")
	}
	if strings.EqualFold(o.version, "latest") {
		return usageErrorf("--version: an explicit version is required")
	}
	return nil
}

func (o *imageAddOptions) Run(ctx context.Context) error {
	c, sub, err := o.root.connectSub()
	if err != nil {
		return err
	}
	uri := o.uri
	if o.file != "" {
		if uri, err = c.uploadArtifact(ctx, o.file, o.root.streams.ErrOut); err != nil {
			return err
		}
	}
	loc := c.location(o.location)
	var in adminImage
	in.Location = loc
	in.Properties.OSDisk.URI, in.Properties.OSDisk.OSType = uri, o.osType
	var out adminImage
	if err := c.adminPut(ctx, adminImagePath(sub, loc, o.urn), apiComputeAdmin, in, &out); err != nil {
		return err
	}
	return o.root.print(out, func() table {
		return table{
			header: []string{"Urn", "OsType", "Uri", "SizeBytes", "ProvisioningState"},
			rows:   [][]string{{o.urn.String(), out.Properties.OSDisk.OSType, out.Properties.OSDisk.URI, fmt.Sprint(out.Properties.Size), out.Properties.ProvisioningState}},
		}
	})
}

// uploadArtifact sends a file to the artifact store and returns its URI.
func (c *connection) uploadArtifact(ctx context.Context, path string, progress io.Writer) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("artifact: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("artifact: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("artifact %s: not a regular file", path)
	}
	fmt.Fprintf(progress, "Uploading %s (%d bytes) ..\n", path, fi.Size())
	var out struct {
		URI    string `json:"uri"`
		Digest string `json:"digest"`
	}
	_, err = c.do(ctx, adminCall{
		method: http.MethodPost, path: "/providers/vmssd.Admin/artifacts", apiVersion: apiComputeAdmin,
		setBody: func(req *policy.Request) error {
			return req.SetBody(streaming.NopCloser(f), "application/octet-stream")
		},
		ok: []int{http.StatusOK, http.StatusCreated}, out: &out,
	})
	if err != nil {
		return "", err
	}
	if out.URI == "" {
		return "", fmt.Errorf("artifact upload: the server returned no uri")
	}
	return out.URI, nil
}

type imageDeleteOptions struct {
	root *rootOptions
	urnFlags
}

func newImageDeleteCommand(root *rootOptions) *cobra.Command {
	o := &imageDeleteOptions{root: root}
	cmd := &cobra.Command{Use: "delete --urn publisher:offer:sku:version", Short: "Delete a platform image version (operator)", Args: noArgs}
	o.add(cmd, "image URN with an explicit version")
	return bind(root, cmd, o)
}

func (o *imageDeleteOptions) Run(ctx context.Context) error {
	c, sub, err := o.root.connectSub()
	if err != nil {
		return err
	}
	return c.adminDelete(ctx, adminImagePath(sub, c.location(o.location), o.urn), apiComputeAdmin)
}
