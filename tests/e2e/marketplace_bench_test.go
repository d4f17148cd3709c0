package e2e

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/marketplace"
)

// BenchmarkMarketplaceDownload1GiB compares the marketplace fetcher (the
// download path of the service: TLS, bearer credential, Range-capable,
// sha256 computed as the bytes arrive, fsync) with curl fetching the same
// 1 GiB file (sparse on the upstream's disk: 1 GiB with 64 MiB of random
// data in 1 MiB blocks) from the same static HTTPS file server on
// loopback. Run:
//
//	go test ./tests/e2e -run '^$' -bench MarketplaceDownload -benchtime 3x
func BenchmarkMarketplaceDownload1GiB(b *testing.B) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			b.Fatal("VMSSD_E2E=1 and curl is not installed")
		}
		b.Skip("curl is not installed")
	}
	const size = 1 << 30
	src := b.TempDir()
	blob := filepath.Join(src, "image.raw")
	f, err := os.Create(blob)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	block := make([]byte, 1<<20)
	for off := int64(0); off < size; off += 1 << 20 {
		if off%(16<<20) == 0 { // one block in 16 holds data
			_, _ = rand.Read(block)
			if _, err := f.WriteAt(block, off); err != nil {
				b.Fatal(err)
			}
			h.Write(block)
		} else {
			h.Write(make([]byte, 1<<20))
		}
	}
	if err := f.Truncate(size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	p := marketplace.Product{Kind: marketplace.KindImage, Name: "b:b:b:1.0.0", Publisher: "b", Offer: "b", SKU: "b", Version: "1.0.0",
		OSType: "Linux", SizeBytes: size, SHA256: hex.EncodeToString(h.Sum(nil)), URL: "image.raw"}

	fs := http.FileServer(http.Dir(src))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		fs.ServeHTTP(w, r)
	}))
	defer srv.Close()
	ca := filepath.Join(src, "ca.pem")
	if err := os.WriteFile(ca, (&flakyServer{Server: srv}).caPEM(), 0o600); err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(srv.URL + "/image.raw")
	pem, _ := os.ReadFile(ca)
	dst := b.TempDir()

	var ours, theirs time.Duration
	for b.Loop() {
		fetcher := &marketplace.Fetcher{Client: marketplace.HTTPClient(string(pem)), Credential: "k", Dir: dst}
		start := time.Now()
		path, err := fetcher.Fetch(context.Background(), u, p, nil)
		if err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		os.Remove(path)

		out := filepath.Join(dst, "curl.raw")
		start = time.Now()
		cmd := exec.Command(curl, "-sS", "--fail", "--cacert", ca, "-H", "Authorization: Bearer k", "-o", out, u.String())
		cmd.Stderr = io.Discard
		if err := cmd.Run(); err != nil {
			b.Fatalf("curl: %v", err)
		}
		theirs += time.Since(start)
		if fi, err := os.Stat(out); err != nil || fi.Size() != size {
			b.Fatalf("curl wrote %v %v", fi, err)
		}
		os.Remove(out)
	}
	n := float64(b.N)
	mibs := func(d time.Duration) float64 { return float64(size) / (1 << 20) / (d.Seconds() / n) }
	b.ReportMetric(mibs(ours), "fetcher-MiB/s")
	b.ReportMetric(mibs(theirs), "curl-MiB/s")
	b.ReportMetric(mibs(ours)/mibs(theirs), "ratio")
}
