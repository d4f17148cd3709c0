package marketplace

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
)

// Download errors.
var (
	// ErrChecksum: the bytes downloaded are not the ones the catalog lists
	// (a corrupted or truncated artifact); nothing was kept.
	ErrChecksum = errors.New("marketplace: checksum mismatch")
	// ErrUpstream: the upstream refused or failed the request.
	ErrUpstream = errors.New("marketplace: upstream error")
)

// Fetcher downloads products' bytes into Dir, resuming a partial file with
// HTTP Range requests, and verifies them before handing them over.
type Fetcher struct {
	Client *http.Client
	// Credential is sent as a bearer token to http(s) upstreams.
	Credential string
	// Dir holds partial downloads (<sha256>.part).
	Dir string
	// Retries bounds consecutive failed attempts without progress (a killed
	// upstream is retried until it is back or Retries is spent).
	Retries int
	// Backoff is the wait after the first failed attempt (doubled to 5s).
	Backoff time.Duration
	Logger  *slog.Logger
}

// Progress is told the bytes of a product present so far.
type Progress func(done int64)

// PartialPath is where Fetch keeps the partial download of p.
func (f *Fetcher) PartialPath(p Product) string { return filepath.Join(f.Dir, p.SHA256+".part") }

// Fetch downloads p from u into a verified file and returns its path (the
// caller removes it once imported). A partial file from an earlier attempt
// (a killed download, a killed process) is resumed. Bytes that do not hash
// to p.SHA256 are removed and ErrChecksum returned.
func (f *Fetcher) Fetch(ctx context.Context, u *url.URL, p Product, progress Progress) (string, error) {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return "", fmt.Errorf("marketplace: download dir: %w", err)
	}
	if progress == nil {
		progress = func(int64) {}
	}
	part := f.PartialPath(p)
	if u.Scheme == "file" || u.Scheme == "" {
		// An exported directory: verify the file where it is.
		path := u.Path
		if err := verifyFile(path, p); err != nil {
			return "", err
		}
		progress(p.SizeBytes)
		return path, nil
	}
	backoff := f.Backoff
	if backoff <= 0 {
		backoff = 200 * time.Millisecond
	}
	retries := f.Retries
	if retries <= 0 {
		retries = 20
	}
	failures := 0
	var sum []byte
	for {
		res, err := f.attempt(ctx, u, p, part, progress)
		if err == nil {
			sum = res.sum
			break
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("marketplace: download of %s cancelled: %w", p.Name, ctx.Err())
		}
		if errors.Is(err, ErrChecksum) {
			_ = os.Remove(part)
			return "", err
		}
		if errors.Is(err, ErrUpstream) {
			return "", err
		}
		if res.added > 0 {
			failures = 0
		}
		failures++
		if failures > retries {
			return "", fmt.Errorf("marketplace: download of %s: %w", p.Name, err)
		}
		if f.Logger != nil {
			f.Logger.Info("marketplace download interrupted; resuming", "product", p.Name, "err", err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("marketplace: download of %s cancelled: %w", p.Name, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
	if got := hexOf(sum); got != p.SHA256 {
		_ = os.Remove(part)
		return "", fmt.Errorf("%w: %s: sha256 %s, the catalog lists %s", ErrChecksum, p.Name, got, p.SHA256)
	}
	return part, nil
}

// attemptResult is what one attempt added and, once the file is
// complete, its sha256.
type attemptResult struct {
	added int64
	sum   []byte
}

// attempt continues the download once. The bytes already present are
// hashed first (a resume), the new ones as they arrive, so a download
// from the start reads its bytes once.
func (f *Fetcher) attempt(ctx context.Context, u *url.URL, p Product, part string, progress Progress) (attemptResult, error) {
	var res attemptResult
	fh, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return res, fmt.Errorf("marketplace: %w", err)
	}
	defer fh.Close()
	h := sha256.New()
	have, err := io.Copy(h, fh)
	if err != nil {
		return res, fmt.Errorf("marketplace: %w", err)
	}
	if have > p.SizeBytes {
		// More than the catalog lists: start again.
		if err := fh.Truncate(0); err != nil {
			return res, err
		}
		have, _ = fh.Seek(0, io.SeekStart)
		h.Reset()
	}
	progress(have)
	if have == p.SizeBytes {
		res.sum = h.Sum(nil)
		return res, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return res, fmt.Errorf("%w: %v", ErrUpstream, err)
	}
	if f.Credential != "" {
		req.Header.Set("Authorization", "Bearer "+f.Credential)
	}
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
	}
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
	case resp.StatusCode == http.StatusOK:
		// The upstream ignores Range: start over.
		if err := fh.Truncate(0); err != nil {
			return res, err
		}
		if _, err := fh.Seek(0, io.SeekStart); err != nil {
			return res, err
		}
		have = 0
		h.Reset()
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		// The upstream has fewer bytes than the catalog lists: truncated.
		_ = fh.Truncate(0)
		return res, fmt.Errorf("%w: %s: the upstream has no bytes after %d (Content-Range %q), the catalog lists %d", ErrChecksum, p.Name, have, resp.Header.Get("Content-Range"), p.SizeBytes)
	case resp.StatusCode >= 500:
		return res, fmt.Errorf("marketplace: upstream answered %s", resp.Status)
	default:
		return res, fmt.Errorf("%w: GET %s: %s", ErrUpstream, u.Redacted(), resp.Status)
	}
	// Zero blocks are left as holes; on a failed copy what arrived is
	// still kept (Finish) so that a retry resumes after it.
	sw, err := artifact.NewSparseWriter(fh)
	if err != nil {
		return res, err
	}
	w := &progressWriter{w: io.MultiWriter(sw, h), done: have, progress: progress}
	n, err := io.Copy(w, io.LimitReader(resp.Body, p.SizeBytes-have+1))
	res.added = n
	progress(have + n)
	if ferr := sw.Finish(); err == nil {
		err = ferr
	}
	if err != nil {
		return res, err
	}
	if err := fh.Sync(); err != nil {
		return res, err
	}
	if have+n < p.SizeBytes {
		return res, fmt.Errorf("marketplace: %w: %d of %d bytes", io.ErrUnexpectedEOF, have+n, p.SizeBytes)
	}
	if have+n > p.SizeBytes {
		return res, fmt.Errorf("%w: %s: more than the %d bytes the catalog lists", ErrChecksum, p.Name, p.SizeBytes)
	}
	res.sum = h.Sum(nil)
	return res, nil
}

type progressWriter struct {
	w        io.Writer
	done     int64
	progress Progress
	last     time.Time
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if now := time.Now(); now.Sub(p.last) > 100*time.Millisecond {
		p.last = now
		p.progress(p.done)
	}
	return n, err
}

// verifyFile checks the size and sha256 of the file at path.
func verifyFile(path string, p Product) error {
	fh, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("marketplace: %s: %w", p.Name, err)
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return fmt.Errorf("marketplace: %s: %w", p.Name, err)
	}
	if n != p.SizeBytes {
		return fmt.Errorf("%w: %s: %d bytes, the catalog lists %d", ErrChecksum, p.Name, n, p.SizeBytes)
	}
	if got := hexOf(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("%w: %s: sha256 %s, the catalog lists %s", ErrChecksum, p.Name, got, p.SHA256)
	}
	return nil
}
