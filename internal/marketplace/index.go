// Package marketplace syndicates gallery items and platform images from an
// upstream marketplace into the local cloud (docs/marketplace.md): the
// versioned upstream catalog format (index.json of products), the
// resumable and verified downloader, the gallery item package (azpkg), the
// registration record and the service that ties them to the store and the
// artifact store.
package marketplace

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// CatalogPrefix is the path under which a vmssd serves its catalog
// (--serve-marketplace): index.json and blobs/sha256/<hex>.
const CatalogPrefix = "/marketplace/v1/"

// FormatV1 is the catalog format this package reads and writes.
const FormatV1 = "vmssd.marketplace/v1"

// Product kinds.
const (
	KindImage       = "image"
	KindGalleryItem = "galleryItem"
)

// Index is an upstream catalog: index.json at the catalog's root.
type Index struct {
	Format   string    `json:"format"`
	Products []Product `json:"products"`
}

// Product is one downloadable thing: a platform image version or a gallery
// item package.
type Product struct {
	Kind string `json:"kind"`
	// Name identifies the product in the catalog: "publisher:offer:sku:version"
	// for an image, "Publisher.Offer.Version" for a gallery item.
	Name        string `json:"name"`
	DisplayName string `json:"displayName,omitempty"`
	Publisher   string `json:"publisher"`
	Offer       string `json:"offer"`
	SKU         string `json:"sku,omitempty"`
	Version     string `json:"version"`
	OSType      string `json:"osType,omitempty"`
	// SizeBytes is the logical size of the bytes (what is downloaded).
	SizeBytes int64 `json:"sizeBytes"`
	// OnDiskBytes, in views of a local store (never in an upstream's
	// catalog), is the space the stored bytes take: less than SizeBytes
	// where zero blocks are holes of a sparse file; zero when not stored.
	OnDiskBytes int64 `json:"onDiskBytes,omitempty"`
	// SHA256 is the lowercase hex sha256 of the downloaded bytes.
	SHA256 string `json:"sha256"`
	// URL is where the bytes are, absolute or relative to index.json.
	URL string `json:"url"`
}

// ErrInvalidIndex marks a catalog that does not follow the format.
var ErrInvalidIndex = errors.New("marketplace: invalid catalog index")

var (
	hexRE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	verRE  = regexp.MustCompile(`^\d{1,9}\.\d{1,9}\.\d{1,9}$`)
)

// ImageName is an image product's name.
func ImageName(pub, offer, sku, ver string) string {
	return pub + ":" + offer + ":" + sku + ":" + ver
}

// ItemName is a gallery item's name (Azure Stack's Publisher.Offer.Version).
func ItemName(pub, offer, ver string) string { return pub + "." + offer + "." + ver }

// Validate checks a product.
func (p Product) Validate() error {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: product %q: %s", ErrInvalidIndex, p.Name, fmt.Sprintf(f, a...))
	}
	for _, f := range []struct{ n, v string }{{"publisher", p.Publisher}, {"offer", p.Offer}} {
		if !nameRE.MatchString(f.v) {
			return bad("%s %q is not valid", f.n, f.v)
		}
	}
	if !verRE.MatchString(p.Version) {
		return bad("version %q is not Major.Minor.Build", p.Version)
	}
	switch p.Kind {
	case KindImage:
		if !nameRE.MatchString(p.SKU) {
			return bad("sku %q is not valid", p.SKU)
		}
		if p.OSType != "Linux" && p.OSType != "Windows" {
			return bad("osType %q is not Linux or Windows", p.OSType)
		}
		if p.Name != ImageName(p.Publisher, p.Offer, p.SKU, p.Version) {
			return bad("name must be %q", ImageName(p.Publisher, p.Offer, p.SKU, p.Version))
		}
	case KindGalleryItem:
		if p.Name != ItemName(p.Publisher, p.Offer, p.Version) {
			return bad("name must be %q", ItemName(p.Publisher, p.Offer, p.Version))
		}
	default:
		return bad("kind %q is not %q or %q", p.Kind, KindImage, KindGalleryItem)
	}
	if !hexRE.MatchString(p.SHA256) {
		return bad("sha256 must be 64 lowercase hex digits")
	}
	if p.SizeBytes <= 0 {
		return bad("sizeBytes must be positive")
	}
	if p.URL == "" {
		return bad("url is required")
	}
	if _, err := url.Parse(p.URL); err != nil {
		return bad("url: %v", err)
	}
	return nil
}

// ParseIndex decodes and validates index.json.
func ParseIndex(b []byte) (*Index, error) {
	var ix Index
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidIndex, err)
	}
	if ix.Format != FormatV1 {
		return nil, fmt.Errorf("%w: format %q is not %q", ErrInvalidIndex, ix.Format, FormatV1)
	}
	seen := map[string]bool{}
	for _, p := range ix.Products {
		if err := p.Validate(); err != nil {
			return nil, err
		}
		k := strings.ToLower(p.Name)
		if seen[k] {
			return nil, fmt.Errorf("%w: product %q is listed twice", ErrInvalidIndex, p.Name)
		}
		seen[k] = true
	}
	return &ix, nil
}

// Find returns the product named name (case-insensitive).
func (ix *Index) Find(name string) (Product, bool) {
	for _, p := range ix.Products {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Product{}, false
}

// BlobPath is where a catalog keeps the bytes of sha256 hex h, relative to
// index.json (exports and served catalogs use it).
func BlobPath(h string) string { return "blobs/sha256/" + h }

// ResolveURL resolves a product's URL against the index's URL.
func ResolveURL(index *url.URL, ref string) (*url.URL, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: url %q: %v", ErrInvalidIndex, ref, err)
	}
	return index.ResolveReference(u), nil
}

// Digest is the artifact digest of a product ("sha256:<hex>").
func (p Product) Digest() string { return "sha256:" + p.SHA256 }

func hexOf(sum []byte) string { return hex.EncodeToString(sum) }

// Job states.
const (
	JobRunning   = "InProgress"
	JobSucceeded = "Succeeded"
	JobFailed    = "Failed"
	JobCanceled  = "Canceled"
)
