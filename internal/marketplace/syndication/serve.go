package syndication

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"os"
	"strings"

	"github.com/vmssd/vmssd/internal/marketplace"
)

// CatalogPrefix is where a vmssd serves its catalog (--serve-marketplace).
const CatalogPrefix = marketplace.CatalogPrefix

// CatalogHandler serves this cloud's catalog read-only under CatalogPrefix:
// index.json (LocalIndex) and blobs/sha256/<hex> (with Range support). A
// non-empty key must be presented as a bearer token.
func (s *Service) CatalogHandler(key string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "read-only catalog", http.StatusMethodNotAllowed)
			return
		}
		if key != "" {
			got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if subtle.ConstantTimeCompare([]byte(got), []byte(key)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="vmssd-marketplace"`)
				http.Error(w, "a marketplace credential is required", http.StatusUnauthorized)
				return
			}
		}
		rest := strings.TrimPrefix(r.URL.Path, CatalogPrefix)
		switch {
		case rest == "index.json":
			ix, err := s.LocalIndex(r.Context())
			if err != nil {
				s.o.Logger.Warn("marketplace index", "err", err)
				http.Error(w, "catalog unavailable", http.StatusInternalServerError)
				return
			}
			for i := range ix.Products {
				ix.Products[i].OnDiskBytes = 0 // this store's detail, not the catalog's
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			_ = json.NewEncoder(w).Encode(ix)
		case strings.HasPrefix(rest, "blobs/sha256/"):
			h := strings.TrimPrefix(rest, "blobs/sha256/")
			path, ok := s.blobFile(h)
			if !ok {
				http.NotFound(w, r)
				return
			}
			f, err := os.Open(path)
			if err != nil {
				http.NotFound(w, r)
				return
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				http.Error(w, "blob unavailable", http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("ETag", `"sha256:`+h+`"`)
			http.ServeContent(w, r, "", fi.ModTime(), f)
		default:
			http.NotFound(w, r)
		}
	})
}
