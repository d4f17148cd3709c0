package apiserver

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

// Artifact uploads: POST /subscriptions/{sub}/providers/vmssd.Storage/artifacts
// (a tenant's, granted to that subscription and counted against its storage
// quota) and POST /providers/vmssd.Admin/artifacts (the operator's).
//
// Bounds: the request body (compressed); the unpacked bytes, counted while
// the archive is read, by the artifact store's limit, by the largest OS disk
// of the VM size table and by what the subscription's storage quota has
// left; a VM image disk's virtual size by the largest OS disk; and at most
// MaxConcurrentUploads uploads at once (503 ServerBusy with Retry-After
// beyond).

// UploadLimits bound one upload.
type UploadLimits struct {
	// MaxUnpackedBytes bounds the sum of the sizes of the artifact's files
	// (0: the store's own bound).
	MaxUnpackedBytes int64
	// MaxDiskBytes bounds a VM image disk's virtual size (0: the store's).
	MaxDiskBytes int64
	// Owned, if set, tells the artifacts the uploader already has: those
	// are not held to MaxUnpackedBytes (they cost nothing more).
	Owned func(digest string) bool
}

// Upload is an imported artifact.
type Upload struct {
	Digest        string
	SizeBytes     int64
	UnpackedBytes int64
	OSType        string
}

// Upload body bounds (compressed).
const (
	maxTenantUpload   = 2 << 30
	maxOperatorUpload = 8 << 30
)

// DefaultMaxConcurrentUploads is Options.MaxConcurrentUploads' default.
const DefaultMaxConcurrentUploads = 4

// uploadRetryAfter is the Retry-After of a refused upload, in seconds.
const uploadRetryAfter = 5

// uploadGate counts the uploads in progress; its zero value is ready.
type uploadGate struct {
	mu     sync.Mutex
	active int
}

// enter takes a slot if fewer than max are taken; the func releases it.
func (g *uploadGate) enter(max int) (func(), bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.active >= max {
		return nil, false
	}
	g.active++
	return func() {
		g.mu.Lock()
		g.active--
		g.mu.Unlock()
	}, true
}

// maxOSDiskBytes is the largest OS disk of the VM size table (0 without
// sizes): no size could run a bigger image.
func (s *Server) maxOSDiskBytes(ctx context.Context) (int64, error) {
	szs, _, err := state.List[model.VMSize](ctx, s.opts.Store, model.PrefixSizes)
	if err != nil {
		return 0, err
	}
	var mb int64
	for _, sz := range szs {
		mb = max(mb, int64(sz.OSDiskSizeMB))
	}
	return mb << 20, nil
}

// adminUploadArtifact stores an artifact sent as the request body and
// returns the URI an image version (or osDisk.image.uri) can point at.
func (s *Server) adminUploadArtifact(w http.ResponseWriter, r *http.Request, rc *reqCtx) error {
	ctx := r.Context()
	release, ok := s.uploads.enter(s.maxUploads())
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(uploadRetryAfter))
		return errs.New(errs.Unavailable, "ServerBusy", "Too many image uploads are in progress (at most %d at once); retry after %d seconds.", s.maxUploads(), uploadRetryAfter)
	}
	defer release()

	limit := int64(maxOperatorUpload)
	if !rc.caller.IsOperator() {
		limit = maxTenantUpload
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	disk, err := s.maxOSDiskBytes(ctx)
	if err != nil {
		return err
	}
	lim := UploadLimits{MaxUnpackedBytes: disk, MaxDiskBytes: disk}

	sub := rc.v("sub")
	var (
		quota    model.Quota
		quotaCut bool // the quota's room, not another bound, limits the upload
	)
	if sub != "" {
		if quota, err = s.quotaOf(ctx, sub); err != nil {
			return err
		}
		used, err := s.storageUsage(ctx, sub)
		if err != nil {
			return err
		}
		if quota.StorageBytes >= 0 {
			// What the quota has room for bounds the unpacking; an
			// artifact the subscription has already costs nothing.
			// grantArtifact makes the final count.
			room := max(quota.StorageBytes-used, 1)
			if lim.MaxUnpackedBytes == 0 || room < lim.MaxUnpackedBytes {
				lim.MaxUnpackedBytes, quotaCut = room, true
			}
			lim.Owned = func(digest string) bool {
				_, err := s.opts.Store.Get(ctx, model.ArtifactGrantKey(sub, digest))
				return err == nil
			}
		}
	}
	up, err := s.opts.Artifacts.Import(ctx, r.Body, lim)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return errs.New(errs.TooLarge, "RequestEntityTooLarge", "The image is larger than the %d bytes allowed.", limit)
		case errors.Is(err, io.ErrUnexpectedEOF) && !errs.IsKind(err, errs.Invalid):
			return errs.New(errs.Invalid, "InvalidRequestContent", "The upload ended before the request body did.").Wrap(err)
		case quotaCut && errs.IsKind(err, errs.TooLarge) && errs.From(err).Code == CodeImageTooLarge:
			used, uerr := s.storageUsage(ctx, sub)
			if uerr != nil {
				return uerr
			}
			return s.storageQuotaError(quota, used, lim.MaxUnpackedBytes+1)
		}
		return err
	}
	if sub != "" {
		if err := s.grantArtifact(ctx, sub, up, quota); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"uri": "artifact:" + up.Digest, "digest": up.Digest,
		"sizeBytes": up.SizeBytes, "unpackedBytes": up.UnpackedBytes, "osType": up.OSType})
	return nil
}

// CodeImageTooLarge is the ARM code of an artifact refused for what it
// unpacks to (413).
const CodeImageTooLarge = "ImageTooLarge"

func (s *Server) maxUploads() int {
	if s.opts.MaxConcurrentUploads > 0 {
		return s.opts.MaxConcurrentUploads
	}
	return DefaultMaxConcurrentUploads
}

// grantArtifact lets sub's scale sets use the uploaded artifact, counting
// its unpacked bytes against sub's storage quota. The count and the grant
// are made under the subscription's lock, so concurrent uploads cannot
// overshoot the quota together. Uploading an artifact the subscription
// already has costs nothing.
func (s *Server) grantArtifact(ctx context.Context, sub string, up Upload, quota model.Quota) error {
	unlock := s.subLocks.lock(sub)
	defer unlock()
	key := model.ArtifactGrantKey(sub, up.Digest)
	if _, err := s.opts.Store.Get(ctx, key); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	used, err := s.storageUsage(ctx, sub)
	if err != nil {
		return err
	}
	if ex := quota.Check(model.Usage{StorageBytes: used}, model.Usage{StorageBytes: used + up.UnpackedBytes}); ex != nil {
		return s.quotaError(ex)
	}
	g := state.ArtifactGrant{Digest: up.Digest, UnpackedBytes: up.UnpackedBytes, Created: s.opts.Now()}
	_, err = s.opts.Store.Txn(ctx, nil, state.PutOp(key, g))
	return err
}

// storageQuotaError says that adding at least additional unpacked bytes to
// used exceeds the storage quota.
func (s *Server) storageQuotaError(q model.Quota, used, additional int64) error {
	if ex := q.Check(model.Usage{StorageBytes: used}, model.Usage{StorageBytes: used + additional}); ex != nil {
		return s.quotaError(ex)
	}
	// Over the limit already (the operator lowered it).
	return s.quotaError(&model.QuotaExcess{Name: model.UsageStorage, Title: "Image Storage (bytes)",
		Limit: q.StorageBytes, Current: used, Additional: additional})
}
