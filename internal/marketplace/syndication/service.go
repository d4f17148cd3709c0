// Package syndication is the marketplace of one cloud (docs/marketplace.md):
// its registration with an upstream, download jobs that install verified
// images into the artifact store and image records, gallery item records,
// the default scale-set item, and the catalog it serves with
// --serve-marketplace. The format, fetcher and packages are in
// internal/marketplace, which the CLI links without the store.
package syndication

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/catalog"
	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/marketplace"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/state"
	"github.com/vmssd/vmssd/internal/store"
)

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Store keys.
const (
	keyRegistration = "/marketplace/registration"
	keyPreloaded    = "/marketplace/preloaded"
	// PrefixItems holds gallery item records.
	PrefixItems = "/gallery/items/"
)

// ItemKey is the key of gallery item name.
func ItemKey(name string) string { return PrefixItems + strings.ToLower(name) }

// Registration is the local cloud's registration with an upstream.
type Registration struct {
	// Endpoint is the catalog's base URL (index.json is under it).
	Endpoint string `json:"endpoint"`
	// Credential is sent as a bearer token (never returned by the API).
	Credential string `json:"credential,omitempty"`
	// CAPEM, if set, is the only CA trusted for the upstream.
	CAPEM      string    `json:"caPem,omitempty"`
	Registered time.Time `json:"registered"`
}

// Options configures a Service.
type Options struct {
	Store     store.Store
	Artifacts *artifact.Store
	// Dir holds partial downloads and gallery packages.
	Dir      string
	Location string
	// MaxConcurrent bounds product downloads in progress (default 2).
	MaxConcurrent int
	Logger        *slog.Logger
	Now           func() time.Time
	// Retries and Backoff tune the fetcher (see marketplace.Fetcher).
	Retries int
	Backoff time.Duration
}

// Service runs the marketplace of one cloud.
type Service struct {
	o      Options
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*Job
}

// New returns a Service; Close stops its downloads.
func New(o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 2
	}
	if o.Location == "" {
		o.Location = "local"
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{o: o, sem: make(chan struct{}, o.MaxConcurrent), ctx: ctx, cancel: cancel, jobs: map[string]*Job{}}
}

// Close cancels running downloads (their partial files stay: the next
// download of the same product resumes them) and waits for them.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

func (s *Service) partialDir() string { return filepath.Join(s.o.Dir, "partial") }
func (s *Service) galleryDir() string { return filepath.Join(s.o.Dir, "gallery") }

// PackagePath is where the package of sha256 hex h is kept.
func (s *Service) PackagePath(h string) string { return filepath.Join(s.galleryDir(), h+".azpkg") }

// ErrNotRegistered: downloads need a registration first.
func notRegistered() error {
	return errs.New(errs.Conflict, "MarketplaceNotRegistered",
		"This cloud is not registered with an upstream marketplace. Register it first: PUT /providers/vmssd.Admin/marketplace/registration (vmssctl marketplace register --endpoint URL --credential KEY [--ca FILE]).")
}

// Registration returns the current registration.
func (s *Service) Registration(ctx context.Context) (*Registration, error) {
	r, _, err := state.Get[Registration](ctx, s.o.Store, keyRegistration)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notRegistered()
	}
	return r, err
}

// Register checks that the upstream answers with a valid catalog and
// records the registration.
func (s *Service) Register(ctx context.Context, r Registration) (*Registration, error) {
	u, err := url.Parse(r.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errs.InvalidParameter("properties.endpoint", "The endpoint '%s' is not an http(s) URL.", r.Endpoint)
	}
	if r.CAPEM != "" && !x509.NewCertPool().AppendCertsFromPEM([]byte(r.CAPEM)) {
		return nil, errs.InvalidParameter("properties.caPem", "The CA certificate is not PEM.")
	}
	r.Registered = s.o.Now().UTC()
	if _, err := s.fetchIndex(ctx, &r); err != nil {
		return nil, err
	}
	if _, err := s.o.Store.Txn(ctx, nil, state.PutOp(keyRegistration, r)); err != nil {
		return nil, err
	}
	return &r, nil
}

// Unregister forgets the registration.
func (s *Service) Unregister(ctx context.Context) error {
	_, err := s.o.Store.Txn(ctx, nil, store.Delete(keyRegistration))
	return err
}

func (s *Service) fetchIndex(ctx context.Context, r *Registration) (*marketplace.Index, error) {
	ix, _, err := marketplace.FetchIndex(ctx, marketplace.HTTPClient(r.CAPEM), r.Endpoint, r.Credential)
	return ix, err
}

// Products is what the registered upstream offers.
func (s *Service) Products(ctx context.Context) (*marketplace.Index, error) {
	r, err := s.Registration(ctx)
	if err != nil {
		return nil, err
	}
	ix, err := s.fetchIndex(ctx, r)
	if err != nil {
		return nil, err
	}
	for i := range ix.Products {
		ix.Products[i].OnDiskBytes = s.onDisk(ix.Products[i].SHA256)
	}
	return ix, nil
}

// onDisk is the space the local copy of sha256 hex h takes (0 if none).
func (s *Service) onDisk(h string) int64 {
	path, ok := s.blobFile(h)
	if !ok {
		return 0
	}
	n, err := artifact.OnDiskBytes(path)
	if err != nil {
		return 0
	}
	return n
}

// Job is a download (or import) of products, followed through the API.
type Job struct {
	mu       sync.Mutex
	id       string
	started  time.Time
	ended    time.Time
	status   string
	err      error
	products []*jobProduct
	cancel   context.CancelFunc
}

type jobProduct struct {
	p      marketplace.Product
	done   int64
	status string
	err    string
}

// ProductStatus is one product of a job.
type ProductStatus struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Status    string `json:"status"`
	BytesDone int64  `json:"bytesDone"`
	SizeBytes int64  `json:"sizeBytes"`
	Error     string `json:"error,omitempty"`
}

// JobStatus is a job's state.
type JobStatus struct {
	ID              string          `json:"id"`
	Status          string          `json:"status"`
	StartTime       time.Time       `json:"startTime"`
	EndTime         *time.Time      `json:"endTime,omitempty"`
	PercentComplete float64         `json:"percentComplete"`
	BytesDone       int64           `json:"bytesDone"`
	BytesTotal      int64           `json:"bytesTotal"`
	BytesPerSecond  float64         `json:"bytesPerSecond"`
	ETASeconds      float64         `json:"etaSeconds"`
	Products        []ProductStatus `json:"products"`
	Error           error           `json:"-"`
}

// Status returns the job's state at now.
func (j *Job) Status(now time.Time) JobStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	st := JobStatus{ID: j.id, Status: j.status, StartTime: j.started, Error: j.err}
	for _, p := range j.products {
		st.BytesDone += p.done
		st.BytesTotal += p.p.SizeBytes
		st.Products = append(st.Products, ProductStatus{Name: p.p.Name, Kind: p.p.Kind, Status: p.status, BytesDone: p.done, SizeBytes: p.p.SizeBytes, Error: p.err})
	}
	end := now
	if !j.ended.IsZero() {
		e := j.ended
		st.EndTime, end = &e, e
	}
	if st.BytesTotal > 0 {
		st.PercentComplete = float64(int(1000*float64(st.BytesDone)/float64(st.BytesTotal))) / 10
	}
	if j.status == marketplace.JobSucceeded {
		st.PercentComplete = 100
	}
	if el := end.Sub(j.started).Seconds(); el > 0 {
		st.BytesPerSecond = float64(st.BytesDone) / el
		if st.BytesPerSecond > 0 && j.status == marketplace.JobRunning {
			st.ETASeconds = float64(st.BytesTotal-st.BytesDone) / st.BytesPerSecond
		}
	}
	return st
}

// Job returns job id.
func (s *Service) Job(id string) (*Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[strings.ToLower(id)]
	return j, ok
}

// Cancel cancels job id; its partial files are removed.
func (s *Service) Cancel(id string) bool {
	j, ok := s.Job(id)
	if ok {
		j.cancel()
	}
	return ok
}

// Download starts downloading the named products from the registered
// upstream (every product when names is empty).
func (s *Service) Download(ctx context.Context, names []string) (*Job, error) {
	r, err := s.Registration(ctx)
	if err != nil {
		return nil, err
	}
	ix, iu, err := marketplace.FetchIndex(ctx, marketplace.HTTPClient(r.CAPEM), r.Endpoint, r.Credential)
	if err != nil {
		return nil, err
	}
	f := &marketplace.Fetcher{Client: marketplace.HTTPClient(r.CAPEM), Credential: r.Credential, Dir: s.partialDir(), Retries: s.o.Retries, Backoff: s.o.Backoff, Logger: s.o.Logger}
	return s.start(ix, iu, names, f)
}

// Import starts importing the named products (all when empty) from a
// directory written by Export (disconnected mode: no registration).
func (s *Service) Import(ctx context.Context, dir string, names []string) (*Job, error) {
	if !filepath.IsAbs(dir) {
		return nil, errs.InvalidParameter("properties.directory", "The directory '%s' must be an absolute path on the server.", dir)
	}
	ix, iu, err := marketplace.FetchIndex(ctx, nil, dir, "")
	if err != nil {
		return nil, err
	}
	f := &marketplace.Fetcher{Dir: s.partialDir(), Logger: s.o.Logger}
	return s.start(ix, iu, names, f)
}

func (s *Service) start(ix *marketplace.Index, iu *url.URL, names []string, f *marketplace.Fetcher) (*Job, error) {
	var ps []marketplace.Product
	if len(names) == 0 {
		ps = ix.Products
	}
	for _, n := range names {
		p, ok := ix.Find(n)
		if !ok {
			return nil, errs.New(errs.NotFound, "MarketplaceProductNotFound", "The upstream marketplace offers no product '%s'; list them with vmssctl marketplace products.", n).WithTarget("products")
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return nil, errs.InvalidParameter("products", "No product to download.")
	}
	ctx, cancel := context.WithCancel(s.ctx)
	j := &Job{id: state.NewID(), started: s.o.Now(), status: marketplace.JobRunning, cancel: cancel}
	for _, p := range ps {
		j.products = append(j.products, &jobProduct{p: p, status: "Queued"})
	}
	s.mu.Lock()
	s.jobs[j.id] = j
	s.mu.Unlock()
	s.wg.Go(func() { s.run(ctx, j, iu, f) })
	return j, nil
}

func (s *Service) run(ctx context.Context, j *Job, iu *url.URL, f *marketplace.Fetcher) {
	defer j.cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(j.products))
	for _, jp := range j.products {
		wg.Go(func() {
			select {
			case s.sem <- struct{}{}:
				defer func() { <-s.sem }()
			case <-ctx.Done():
				errc <- ctx.Err()
				return
			}
			j.mu.Lock()
			jp.status = marketplace.JobRunning
			j.mu.Unlock()
			err := s.one(ctx, iu, f, jp.p, func(n int64) {
				j.mu.Lock()
				jp.done = n
				j.mu.Unlock()
			})
			j.mu.Lock()
			if err != nil {
				jp.status, jp.err = marketplace.JobFailed, err.Error()
			} else {
				jp.status, jp.done = marketplace.JobSucceeded, jp.p.SizeBytes
			}
			j.mu.Unlock()
			errc <- err
		})
	}
	wg.Wait()
	close(errc)
	var first error
	for err := range errc {
		if err != nil && first == nil {
			first = err
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.ended = s.o.Now()
	switch {
	case ctx.Err() != nil && s.ctx.Err() == nil:
		j.status, j.err = marketplace.JobCanceled, errs.New(errs.Conflict, "OperationCanceled", "The download was canceled.")
		for _, jp := range j.products {
			_ = os.Remove(f.PartialPath(jp.p))
		}
	case first != nil:
		j.status, j.err = marketplace.JobFailed, first
	default:
		j.status = marketplace.JobSucceeded
	}
	s.o.Logger.Info("marketplace download finished", "job", j.id, "status", j.status, "err", j.err)
}

// one downloads, verifies and installs one product.
func (s *Service) one(ctx context.Context, iu *url.URL, f *marketplace.Fetcher, p marketplace.Product, progress marketplace.Progress) error {
	u, err := marketplace.ResolveURL(iu, p.URL)
	if err != nil {
		return err
	}
	if p.Kind == marketplace.KindImage && s.o.Artifacts.Has(artifact.Digest(p.Digest())) {
		// Same bytes already stored (content-addressed): nothing to fetch.
		progress(p.SizeBytes)
		return s.installImage(ctx, p)
	}
	path, err := f.Fetch(ctx, u, p, progress)
	if err != nil {
		if errors.Is(err, marketplace.ErrChecksum) {
			return errs.New(errs.Conflict, "MarketplaceChecksumMismatch", "The download of %s was rejected and nothing was kept: %v.", p.Name, err).Wrap(err)
		}
		return err
	}
	if path == f.PartialPath(p) {
		defer os.Remove(path)
	}
	switch p.Kind {
	case marketplace.KindImage:
		d, _, err := s.o.Artifacts.ImportFile(ctx, path)
		if err != nil {
			return fmt.Errorf("marketplace: import %s: %w", p.Name, err)
		}
		if string(d) != p.Digest() {
			return fmt.Errorf("marketplace: import %s: stored as %s, want %s", p.Name, d, p.Digest())
		}
		return s.installImage(ctx, p)
	default:
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = s.AddItem(ctx, b)
		return err
	}
}

// installImage records the platform image version of p (its artifact is
// stored). A version that exists with other bytes is refused: the
// operator deletes it first (V2).
func (s *Service) installImage(ctx context.Context, p marketplace.Product) error {
	key := model.ImageKey(p.Publisher, p.Offer, p.SKU, p.Version)
	v := &model.ImageVersion{Publisher: p.Publisher, Offer: p.Offer, SKU: p.SKU, Version: p.Version, Location: s.o.Location,
		OSType: p.OSType, Digest: p.Digest(), Size: p.SizeBytes, Created: s.o.Now().UTC()}
	if cur, _, err := state.Get[model.ImageVersion](ctx, s.o.Store, key); err == nil {
		if cur.Digest == v.Digest {
			return nil
		}
		return errs.New(errs.Conflict, "Conflict", "Image version %s already exists with other content; delete it first (vmssctl image delete).", p.Name)
	}
	_, err := s.o.Store.Txn(ctx, []store.Cond{store.ModRevisionIs(key, 0)}, state.PutOp(key, v))
	return err
}

// AddItem parses and stores a gallery item package; adding the same
// package again is a no-op, another package with the same name replaces it.
func (s *Service) AddItem(ctx context.Context, pkg []byte) (*marketplace.Item, error) {
	it, err := marketplace.ParsePackage(pkg)
	if err != nil {
		return nil, errs.New(errs.Invalid, "InvalidGalleryItemPackage", "%v.", err).Wrap(err)
	}
	sum := sha256.Sum256(pkg)
	it.SHA256, it.SizeBytes, it.Created = hex.EncodeToString(sum[:]), int64(len(pkg)), s.o.Now().UTC()
	if err := os.MkdirAll(s.galleryDir(), 0o700); err != nil {
		return nil, err
	}
	dst := s.PackagePath(it.SHA256)
	if _, err := os.Stat(dst); err != nil {
		tmp := dst + ".tmp"
		if err := os.WriteFile(tmp, pkg, 0o600); err != nil {
			return nil, err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return nil, err
		}
	}
	if _, err := s.o.Store.Txn(ctx, nil, state.PutOp(ItemKey(it.Name), it)); err != nil {
		return nil, err
	}
	return it, nil
}

// Items lists the gallery items.
func (s *Service) Items(ctx context.Context) ([]*marketplace.Item, error) {
	its, _, err := state.List[marketplace.Item](ctx, s.o.Store, PrefixItems)
	return its, err
}

// marketplace.Item returns gallery item name.
func (s *Service) Item(ctx context.Context, name string) (*marketplace.Item, error) {
	it, _, err := state.Get[marketplace.Item](ctx, s.o.Store, ItemKey(name))
	if errors.Is(err, store.ErrNotFound) {
		return nil, errs.New(errs.NotFound, "GalleryItemNotFound", "The gallery item '%s' is not offered by this marketplace.", name)
	}
	return it, err
}

// DeleteItem removes gallery item name at once (false if there was none).
func (s *Service) DeleteItem(ctx context.Context, name string) (bool, error) {
	key := ItemKey(name)
	if _, err := s.o.Store.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	_, err := s.o.Store.Txn(ctx, nil, store.Delete(key))
	return err == nil, err
}

// Preload adds the default scale-set item at first start (once: an
// operator's removal is not undone by the next start).
func (s *Service) Preload(ctx context.Context) error {
	if _, err := s.o.Store.Get(ctx, keyPreloaded); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if _, err := s.AddItem(ctx, marketplace.DefaultItemPackage()); err != nil {
		return fmt.Errorf("marketplace: preload default item: %w", err)
	}
	_, err := s.o.Store.Txn(ctx, nil, state.PutOp(keyPreloaded, map[string]any{"at": s.o.Now().UTC()}))
	return err
}

// LocalIndex is this cloud's own catalog (what --serve-marketplace
// serves): its platform images and gallery items, with blob URLs relative
// to index.json.
func (s *Service) LocalIndex(ctx context.Context) (*marketplace.Index, error) {
	ix := &marketplace.Index{Format: marketplace.FormatV1, Products: []marketplace.Product{}}
	vs, _, err := state.List[model.ImageVersion](ctx, s.o.Store, model.PrefixImages)
	if err != nil {
		return nil, err
	}
	imgs := make([]model.ImageVersion, 0, len(vs))
	for _, v := range vs {
		imgs = append(imgs, *v)
	}
	catalog.SortVersions(imgs)
	for _, v := range imgs {
		d, err := artifact.ParseDigest(v.Digest)
		if err != nil {
			continue
		}
		size, err := s.o.Artifacts.Size(d)
		if err != nil {
			continue
		}
		ix.Products = append(ix.Products, marketplace.Product{Kind: marketplace.KindImage, Name: marketplace.ImageName(v.Publisher, v.Offer, v.SKU, v.Version),
			Publisher: v.Publisher, Offer: v.Offer, SKU: v.SKU, Version: v.Version, OSType: v.OSType,
			SizeBytes: size, OnDiskBytes: s.onDisk(d.Hex()), SHA256: d.Hex(), URL: marketplace.BlobPath(d.Hex())})
	}
	its, err := s.Items(ctx)
	if err != nil {
		return nil, err
	}
	for _, it := range its {
		ix.Products = append(ix.Products, marketplace.Product{Kind: marketplace.KindGalleryItem, Name: it.Name, DisplayName: it.DisplayName,
			Publisher: it.Publisher, Offer: it.Offer, Version: it.Version, SizeBytes: it.SizeBytes, OnDiskBytes: s.onDisk(it.SHA256), SHA256: it.SHA256, URL: marketplace.BlobPath(it.SHA256)})
	}
	slices.SortStableFunc(ix.Products, func(a, b marketplace.Product) int { return strings.Compare(a.Kind, b.Kind) })
	return ix, nil
}

// blobFile is the local file holding sha256 hex h (an artifact or a
// gallery package).
func (s *Service) blobFile(h string) (string, bool) {
	if !hexRE.MatchString(h) {
		return "", false
	}
	for _, p := range []string{filepath.Join(s.o.Artifacts.Dir(), "blobs", "sha256", h), s.PackagePath(h)} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, true
		}
	}
	return "", false
}
