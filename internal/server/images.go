package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
)

// images adapts the artifact store to what the API and the controller need.
type images struct {
	store *artifact.Store
	mu    sync.Mutex
	files map[string]fileImport // custom image files already imported
}

type fileImport struct {
	size   int64
	mtime  time.Time
	digest artifact.Digest
}

// invalidArtifact maps an artifact store failure: a malformed artifact is
// the client's 400; anything else (a full disk, a dropped upload) is not.
func invalidArtifact(err error) error {
	if errors.Is(err, artifact.ErrInvalid) || errors.Is(err, artifact.ErrInvalidManifest) {
		return errs.New(errs.Invalid, "InvalidImageArtifact", "The image artifact is not a valid vmssd image (a gzip'd tar with manifest.json and rootfs/).").Wrap(err)
	}
	return err
}

func (im *images) Import(ctx context.Context, r io.Reader) (string, int64, string, error) {
	d, n, err := im.store.Import(ctx, r)
	if err != nil {
		return "", 0, "", invalidArtifact(err)
	}
	m, err := im.store.Manifest(ctx, d)
	if err != nil {
		return "", 0, "", err
	}
	return string(d), n, m.OSType, nil
}

// path turns a file URI or absolute path into a local path.
func localPath(uri string) (string, bool) {
	if strings.HasPrefix(uri, "file://") {
		u, err := url.Parse(uri)
		if err != nil {
			return "", false
		}
		return u.Path, true
	}
	if filepath.IsAbs(uri) {
		return uri, true
	}
	return "", false
}

func (im *images) digestOf(ctx context.Context, uri string) (artifact.Digest, int64, error) {
	if rest, ok := strings.CutPrefix(uri, "artifact:"); ok {
		d, err := artifact.ParseDigest(rest)
		if err != nil || !im.store.Has(d) {
			return "", 0, errs.New(errs.NotFound, "ImageNotFound", "The image artifact '%s' is not available.", uri).WithTarget("uri")
		}
		size, err := im.store.Size(d)
		if err != nil {
			return "", 0, err
		}
		return d, size, nil
	}
	p, ok := localPath(uri)
	if !ok {
		return "", 0, errs.InvalidParameter("uri", "The image URI '%s' is not supported: use an absolute path, a file:// URI or artifact:sha256:<digest>.", uri)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", 0, errs.New(errs.NotFound, "ImageNotFound", "The image '%s' is not available.", uri).WithTarget("uri").Wrap(err)
	}
	if !fi.Mode().IsRegular() {
		return "", 0, errs.InvalidParameter("uri", "The image '%s' is not a regular file.", uri)
	}
	im.mu.Lock()
	c, ok := im.files[p]
	im.mu.Unlock()
	if ok && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) && im.store.Has(c.digest) {
		return c.digest, c.size, nil
	}
	d, n, err := im.store.ImportFile(ctx, p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", 0, errs.New(errs.NotFound, "ImageNotFound", "The image '%s' is not available.", uri).WithTarget("uri")
		}
		return "", 0, invalidArtifact(err)
	}
	im.mu.Lock()
	im.files[p] = fileImport{size: fi.Size(), mtime: fi.ModTime(), digest: d}
	im.mu.Unlock()
	return d, n, nil
}

func (im *images) ImportURI(ctx context.Context, uri string) (string, int64, string, error) {
	d, n, err := im.digestOf(ctx, uri)
	if err != nil {
		return "", 0, "", err
	}
	m, err := im.store.Manifest(ctx, d)
	if err != nil {
		return "", 0, "", invalidArtifact(err)
	}
	// Unpack now, at publish time, rather than at the first placement.
	if _, err := im.store.Unpack(ctx, d); err != nil {
		return "", 0, "", invalidArtifact(err)
	}
	return string(d), n, m.OSType, nil
}

func (im *images) ResolveURI(ctx context.Context, uri string) (model.ResolvedImage, error) {
	d, _, err := im.digestOf(ctx, uri)
	if err != nil {
		if e := errs.From(err); e.Kind == errs.NotFound {
			e.Target = "properties.virtualMachineProfile.storageProfile.osDisk.image.uri"
		}
		return model.ResolvedImage{}, err
	}
	m, err := im.store.Manifest(ctx, d)
	if err != nil {
		return model.ResolvedImage{}, invalidArtifact(err)
	}
	return model.ResolvedImage{URI: uri, Digest: string(d), OSType: m.OSType, ExactVersion: m.Version}, nil
}

func (im *images) Unpack(ctx context.Context, digest string) (string, error) {
	d, err := artifact.ParseDigest(digest)
	if err != nil {
		return "", err
	}
	return im.store.Unpack(ctx, d)
}

// importDemo builds and imports a demo artifact.
func (im *images) importDemo(ctx context.Context, opts artifact.DemoOptions) (artifact.Digest, int64, error) {
	var buf bytes.Buffer
	if err := artifact.BuildDemo(&buf, opts); err != nil {
		return "", 0, err
	}
	return im.store.Import(ctx, &buf)
}
