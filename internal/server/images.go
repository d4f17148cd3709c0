package server

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/apiserver"
	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// images adapts the artifact store to what the API and the controller need,
// and collects the artifacts nothing uses any more (see runGC).
type images struct {
	store *artifact.Store
	st    store.Store // grants and the records that reference artifacts
	mu    sync.Mutex
	files map[string]fileImport // custom image files already imported

	// gc tunes runGC (zero values: gcInterval, gcGrace, gcAfterDelete).
	gc struct{ interval, grace, afterDelete time.Duration }
}

type fileImport struct {
	size   int64
	mtime  time.Time
	digest artifact.Digest
}

// invalidArtifact maps an artifact store failure: an artifact too large
// once unpacked is the client's 413, a malformed one the client's 400;
// anything else (a full disk, a dropped upload) is not.
func invalidArtifact(err error) error {
	if errors.Is(err, artifact.ErrTooLarge) {
		return errs.New(errs.TooLarge, apiserver.CodeImageTooLarge, "The image artifact is too large: %s.", reason(err, artifact.ErrTooLarge)).Wrap(err)
	}
	if errors.Is(err, artifact.ErrInvalid) || errors.Is(err, artifact.ErrInvalidManifest) {
		why := reason(err, artifact.ErrInvalidManifest)
		if !errors.Is(err, artifact.ErrInvalidManifest) {
			why = reason(err, artifact.ErrInvalid)
		}
		return errs.New(errs.Invalid, "InvalidImageArtifact", "The image artifact is not a valid vmssd image (a gzip'd tar with manifest.json and rootfs/): %s.", why).Wrap(err)
	}
	return err
}

// reason is the part of an artifact error after the text of kind (one of
// the package's sentinels), without the package's prefixes and digests:
// "unpacked files exceed N bytes", "disk: it names a backing file", ...
func reason(err, kind error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, kind.Error()+": "); i >= 0 {
		msg = msg[i+len(kind.Error())+2:]
	}
	return strings.TrimSuffix(msg, ".")
}

// Import stores an uploaded artifact within lim.
func (im *images) Import(ctx context.Context, r io.Reader, lim apiserver.UploadLimits) (apiserver.Upload, error) {
	opts := artifact.ImportOptions{MaxUnpackedBytes: lim.MaxUnpackedBytes, MaxDiskBytes: lim.MaxDiskBytes}
	if lim.Owned != nil {
		opts.Exempt = func(d artifact.Digest) bool { return lim.Owned(string(d)) }
	}
	got, err := im.store.ImportWith(ctx, r, opts)
	if err != nil {
		return apiserver.Upload{}, invalidArtifact(err)
	}
	return apiserver.Upload{Digest: string(got.Digest), SizeBytes: got.Size, UnpackedBytes: got.UnpackedBytes, OSType: got.Manifest.OSType}, nil
}

// StorageUsage is the storage usage of sub (state.StorageUsage).
func (im *images) StorageUsage(ctx context.Context, sub string) (int64, error) {
	n, _, err := state.StorageUsage(ctx, im.st, sub)
	return n, err
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
		if err == nil {
			// Marks it used: the collector keeps it (runGC).
			err = im.store.Touch(ctx, d)
		}
		if errors.Is(err, artifact.ErrNotFound) || err != nil && d == "" {
			return "", 0, errs.New(errs.NotFound, "ImageNotFound", "The image artifact '%s' is not available.", uri).WithTarget("uri")
		}
		if err != nil {
			return "", 0, err
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
	if ok && c.size == fi.Size() && c.mtime.Equal(fi.ModTime()) && im.store.Touch(ctx, c.digest) == nil {
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

// Garbage collection of artifacts.
const (
	// gcInterval is how often unused artifacts are collected.
	gcInterval = 10 * time.Minute
	// gcGrace is how long an artifact is kept after its last use (import,
	// resolution of a URI naming it): a scale set being created with it
	// is recorded well within it.
	gcGrace = time.Hour
	// gcAfterDelete delays the sweep that follows an image's deletion,
	// so that a burst of deletions costs one sweep.
	gcAfterDelete = 5 * time.Second
)

// digestRE finds artifact digests in any record.
var digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)

// referenced returns the digests that records of the store name: image
// versions, scale sets (custom image URIs), instances (the image they were
// built from), and whatever else names one. Grants do not count: an upload
// nothing uses is collected after the grace period, and its grants with it.
func referenced(ctx context.Context, st store.Store) (map[artifact.Digest]bool, error) {
	kvs, _, err := st.List(ctx, "/")
	if err != nil {
		return nil, err
	}
	refs := map[artifact.Digest]bool{}
	for _, kv := range kvs {
		if strings.HasPrefix(string(kv.Key), state.ArtifactGrantsPrefix) {
			continue
		}
		for _, m := range digestRE.FindAll(kv.Value, -1) {
			refs[artifact.Digest(m)] = true
		}
	}
	return refs, nil
}

// collect deletes the artifacts no record names and nothing used for
// grace, and the grants of the deleted ones. The reference scan happens
// after the sweep began and the store re-checks each artifact's last use
// under its lock before deleting it (artifact.Store.Collect), so an
// artifact that a scale set being created resolved (Touch) is kept.
func (im *images) collect(ctx context.Context, now time.Time, grace time.Duration) ([]artifact.Digest, error) {
	before := now.Add(-grace)
	refs, err := referenced(ctx, im.st)
	if err != nil {
		return nil, err
	}
	deleted, err := im.store.Collect(ctx, before, func(d artifact.Digest) bool { return refs[d] })
	if len(deleted) > 0 {
		gone := make(map[string]bool, len(deleted))
		for _, d := range deleted {
			gone[string(d)] = true
		}
		kvs, _, lerr := im.st.List(ctx, state.ArtifactGrantsPrefix)
		if lerr != nil {
			return deleted, errors.Join(err, lerr)
		}
		var ops []store.Op
		for _, kv := range kvs {
			if gone[state.ParseArtifactGrant(string(kv.Key), kv.Value).Digest] {
				ops = append(ops, store.Delete(string(kv.Key)))
			}
		}
		if len(ops) > 0 {
			if _, terr := im.st.Txn(ctx, nil, ops...); terr != nil {
				return deleted, errors.Join(err, terr)
			}
		}
		im.mu.Lock()
		for p, f := range im.files {
			if gone[string(f.digest)] {
				delete(im.files, p)
			}
		}
		im.mu.Unlock()
	}
	return deleted, err
}

// runGC collects unused artifacts every gcInterval, and shortly after an
// image version is deleted, until ctx is done.
func (im *images) runGC(ctx context.Context, log *slog.Logger) error {
	rev, err := im.st.Revision(ctx)
	if err != nil {
		return err
	}
	events, err := im.st.Watch(ctx, model.PrefixImages, rev+1)
	if err != nil {
		return err
	}
	interval, grace, afterDelete := cmp.Or(im.gc.interval, gcInterval), cmp.Or(im.gc.grace, gcGrace), cmp.Or(im.gc.afterDelete, gcAfterDelete)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	sweep := func() {
		deleted, err := im.collect(ctx, time.Now(), grace)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			log.Warn("artifact garbage collection", "err", err)
		case len(deleted) > 0:
			log.Info("unused artifacts deleted", "count", len(deleted), "digests", deleted)
		}
	}
	sweep()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				// The watch ended (compaction): watch again from now.
				if rev, err = im.st.Revision(ctx); err == nil {
					events, err = im.st.Watch(ctx, model.PrefixImages, rev+1)
				}
				if err != nil {
					return err
				}
				continue
			}
			if ev.Type == store.EventDelete {
				soon.Reset(afterDelete)
			}
		case <-soon.C:
			sweep()
		case <-tick.C:
			sweep()
		}
	}
}
