package marketplace

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// Export downloads the named products (all when empty) of the catalog at
// endpoint into dir, in the catalog layout (index.json + blobs/sha256/),
// verified, resumable: dir can be carried to a disconnected cloud and
// imported there, or served by any static file server as an upstream.
// progress is told each product's name and bytes present.
func Export(ctx context.Context, client *http.Client, endpoint, credential, dir string, names []string, progress func(name string, done, total int64)) (*Index, error) {
	ix, iu, err := FetchIndex(ctx, client, endpoint, credential)
	if err != nil {
		return nil, err
	}
	out := &Index{Format: FormatV1}
	if len(names) == 0 {
		out.Products = append(out.Products, ix.Products...)
	}
	for _, n := range names {
		p, ok := ix.Find(n)
		if !ok {
			return nil, fmt.Errorf("marketplace: the catalog offers no product %q", n)
		}
		out.Products = append(out.Products, p)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	f := &Fetcher{Client: client, Credential: credential, Dir: blobs}
	for i, p := range out.Products {
		final := filepath.Join(blobs, p.SHA256)
		if verifyFile(final, p) == nil {
			if progress != nil {
				progress(p.Name, p.SizeBytes, p.SizeBytes)
			}
		} else {
			u, err := ResolveURL(iu, p.URL)
			if err != nil {
				return nil, err
			}
			path, err := f.Fetch(ctx, u, p, func(n int64) {
				if progress != nil {
					progress(p.Name, n, p.SizeBytes)
				}
			})
			if err != nil {
				return nil, err
			}
			if err := os.Rename(path, final); err != nil {
				return nil, err
			}
		}
		out.Products[i].URL = BlobPath(p.SHA256)
	}
	// A later export into the same directory adds to it.
	if prev, _, err := FetchIndex(ctx, nil, dir, ""); err == nil {
		for _, p := range prev.Products {
			if _, ok := out.Find(p.Name); !ok {
				out.Products = append(out.Products, p)
			}
		}
	}
	if err := writeIndex(dir, out); err != nil {
		return nil, err
	}
	return out, nil
}
