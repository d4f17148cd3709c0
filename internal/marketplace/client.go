package marketplace

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmssd/vmssd/internal/errs"
)

// HTTPClient is a client for an upstream trusting caPEM (the system's CAs
// when empty).
func HTTPClient(caPEM string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caPEM != "" {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM([]byte(caPEM))
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}
}

func indexURL(endpoint string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(endpoint, "/") + "/index.json")
	if err != nil {
		return nil, err
	}
	return u, nil
}

// FetchIndex reads index.json under endpoint (http(s), or a directory path).
func FetchIndex(ctx context.Context, client *http.Client, endpoint, credential string) (*Index, *url.URL, error) {
	if !strings.HasPrefix(endpoint, "http://") && !strings.HasPrefix(endpoint, "https://") {
		dir := strings.TrimPrefix(endpoint, "file://")
		b, err := os.ReadFile(filepath.Join(dir, "index.json"))
		if err != nil {
			return nil, nil, errs.InvalidParameter("directory", "The directory '%s' holds no marketplace catalog: %v.", dir, err)
		}
		ix, err := ParseIndex(b)
		if err != nil {
			return nil, nil, errs.New(errs.Invalid, "InvalidMarketplaceCatalog", "%v", err)
		}
		abs, _ := filepath.Abs(dir)
		return ix, &url.URL{Scheme: "file", Path: abs + "/index.json"}, nil
	}
	u, err := indexURL(endpoint)
	if err != nil {
		return nil, nil, errs.InvalidParameter("endpoint", "The endpoint '%s' is not a URL.", endpoint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	if credential != "" {
		req.Header.Set("Authorization", "Bearer "+credential)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, errs.New(errs.Conflict, "MarketplaceUnreachable", "The upstream marketplace %s cannot be reached: %v.", u.Redacted(), err).Wrap(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return nil, nil, errs.New(errs.Conflict, "MarketplaceCredentialRejected", "The upstream marketplace %s refused the credential (%s); register again with the right one.", u.Redacted(), resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, errs.New(errs.Conflict, "MarketplaceUnreachable", "The upstream marketplace %s answered %s for index.json.", u.Redacted(), resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, nil, errs.New(errs.Conflict, "MarketplaceUnreachable", "Reading the upstream catalog: %v.", err).Wrap(err)
	}
	ix, err := ParseIndex(b)
	if err != nil {
		return nil, nil, errs.New(errs.Conflict, "InvalidMarketplaceCatalog", "The upstream catalog is not valid: %v.", err).Wrap(err)
	}
	return ix, u, nil
}

func writeIndex(dir string, ix *Index) error {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "index.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "index.json"))
}
