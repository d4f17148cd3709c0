package artifact

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Store errors. Methods wrap them with %w; test with errors.Is.
var (
	// ErrNotFound is returned for a digest the store does not hold.
	ErrNotFound = errors.New("artifact: not found")
	// ErrCorrupt is returned when a stored blob no longer matches its digest.
	ErrCorrupt = errors.New("artifact: stored blob does not match its digest")
)

// staleTemp is how old a leftover in tmp/ must be before Open removes it
// (younger ones may belong to another process using the same directory).
const staleTemp = time.Hour

// Store is a content-addressed artifact store rooted at a directory:
//
//	blobs/sha256/<hex>           the artifacts, exactly as imported (read-only)
//	images/sha256/<hex>/         unpacked artifacts: manifest.json + rootfs/
//	tmp/                         work area (same file system, for atomic renames)
//
// Blobs and image directories appear atomically (written under tmp/, synced,
// then renamed), so one that exists is complete. A Store is safe for
// concurrent use.
type Store struct {
	dir    string
	limits Limits

	// qemuImg is the qemu-img binary that inspects disks ("": looked up
	// in PATH when needed).
	qemuImg string

	mu        sync.Mutex
	locks     map[Digest]*digestLock
	manifests map[Digest]Manifest
	stats     map[Digest]Stats
}

type digestLock struct {
	ch   chan struct{} // holds a token while locked
	refs int           // holders and waiters; the entry is dropped at 0
}

// Open opens (creating it if needed) the store rooted at dir, with
// DefaultLimits.
func Open(dir string) (*Store, error) {
	return OpenWithLimits(dir, DefaultLimits())
}

// OpenWithLimits is Open with explicit limits (zero fields take defaults).
func OpenWithLimits(dir string, lim Limits) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("artifact: open store %s: %w", dir, err)
	}
	s := &Store{
		dir:       abs,
		limits:    lim.withDefaults(),
		locks:     map[Digest]*digestLock{},
		manifests: map[Digest]Manifest{},
		stats:     map[Digest]Stats{},
	}
	for _, d := range []string{s.blobDir(), s.imageDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("artifact: open store %s: %w", abs, err)
		}
	}
	if err := s.removeStaleTemp(time.Now().Add(-staleTemp)); err != nil {
		return nil, fmt.Errorf("artifact: open store %s: %w", abs, err)
	}
	return s, nil
}

// Dir returns the store's root directory (absolute).
func (s *Store) Dir() string { return s.dir }

func (s *Store) blobDir() string  { return filepath.Join(s.dir, "blobs", "sha256") }
func (s *Store) imageDir() string { return filepath.Join(s.dir, "images", "sha256") }
func (s *Store) tmpDir() string   { return filepath.Join(s.dir, "tmp") }

// blobPath and imagePath must only be called with validated digests.
func (s *Store) blobPath(d Digest) string  { return filepath.Join(s.blobDir(), d.Hex()) }
func (s *Store) imagePath(d Digest) string { return filepath.Join(s.imageDir(), d.Hex()) }

func (s *Store) removeStaleTemp(before time.Time) error {
	ents, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return err
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || info.ModTime().After(before) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// ImportOptions bound one import further than the store's Limits.
type ImportOptions struct {
	// MaxUnpackedBytes bounds the sum of the sizes of the artifact's files
	// (0: the store's Limits.MaxUnpackedBytes; never more than it).
	MaxUnpackedBytes int64
	// MaxDiskBytes bounds the virtual size of a virtual machine image's
	// disk (0: the store's Limits.MaxDiskBytes; never more than it).
	MaxDiskBytes int64
	// Exempt, if set, is asked about an artifact the store already holds:
	// true exempts it from MaxUnpackedBytes (the caller already pays for
	// it).
	Exempt func(Digest) bool
}

// Imported describes an imported artifact.
type Imported struct {
	Digest Digest
	// Size is the artifact's size in bytes (compressed).
	Size int64
	// Stats are what it costs unpacked.
	Stats
	Manifest Manifest
}

// Stats are the sizes of an artifact once unpacked.
type Stats struct {
	// UnpackedBytes is the sum of the sizes of its files (manifest
	// excluded): what unpacking it costs, and what storage quotas count.
	UnpackedBytes int64
	// DiskVirtualBytes is the virtual size of a virtual machine image's
	// disk (0 without one): what each instance's overlay may grow to.
	DiskVirtualBytes int64
}

// Import reads an artifact from r, validates it and stores it. It returns
// the artifact's digest and size. Importing bytes the store already holds is
// a no-op that returns the same digest. Invalid artifacts are refused with an
// error wrapping ErrInvalid and leave nothing behind.
func (s *Store) Import(ctx context.Context, r io.Reader) (Digest, int64, error) {
	im, err := s.ImportWith(ctx, r, ImportOptions{})
	return im.Digest, im.Size, err
}

// limitsFor returns the store's limits lowered by opts.
func (s *Store) limitsFor(opts ImportOptions) Limits {
	lim := s.limits
	if opts.MaxUnpackedBytes > 0 {
		lim.MaxUnpackedBytes = min(lim.MaxUnpackedBytes, opts.MaxUnpackedBytes)
	}
	if opts.MaxDiskBytes > 0 {
		lim.MaxDiskBytes = min(lim.MaxDiskBytes, opts.MaxDiskBytes)
	}
	return lim
}

// ImportWith is Import with per-import bounds; it also returns the
// artifact's unpacked sizes and manifest. Unpacked bytes are counted while
// the archive is read, so an archive that unpacks beyond the bound (a "zip
// bomb") is refused early, with an error wrapping ErrTooLarge and
// ErrInvalid, and leaves nothing behind. A virtual machine image's disk is
// inspected with qemu-img (see ParseDiskInfo): a disk naming a backing file
// or an external data file, of another format than the manifest's, or of a
// virtual size beyond the bound is refused. Importing an artifact the store
// holds checks it against the bounds and marks it used (see Touch).
func (s *Store) ImportWith(ctx context.Context, r io.Reader, opts ImportOptions) (Imported, error) {
	lim := s.limitsFor(opts)
	f, err := os.CreateTemp(s.tmpDir(), "import-*")
	if err != nil {
		return Imported{}, fmt.Errorf("artifact: import: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		os.Remove(tmp) // no-op once renamed
	}()

	h := sha256.New()
	src := &boundedReader{ctx: ctx, r: r, max: s.limits.MaxArtifactBytes}
	sw, err := NewSparseWriter(f)
	if err != nil {
		return Imported{}, err
	}
	n, err := io.Copy(io.MultiWriter(sw, h), src)
	if err != nil {
		if errors.Is(err, errStreamTooLarge) {
			return Imported{}, fmt.Errorf("%w: %w: artifact exceeds %d bytes", ErrInvalid, ErrTooLarge, s.limits.MaxArtifactBytes)
		}
		return Imported{}, fmt.Errorf("artifact: import: %w", err)
	}
	if err := sw.Finish(); err != nil {
		return Imported{}, err
	}
	d := digestFromHash(h)
	if s.Has(d) {
		// Same bytes, already validated: check them against this
		// import's bounds.
		st, err := s.Stats(ctx, d)
		if err != nil {
			return Imported{}, err
		}
		if opts.Exempt != nil && opts.Exempt(d) {
			lim.MaxUnpackedBytes = s.limits.MaxUnpackedBytes
		}
		if err := st.check(lim); err != nil {
			return Imported{}, fmt.Errorf("artifact: import %s: %w", d, err)
		}
		m, err := s.Manifest(ctx, d)
		if err != nil {
			return Imported{}, err
		}
		if err := s.Touch(ctx, d); err != nil {
			return Imported{}, err
		}
		return Imported{Digest: d, Size: n, Stats: st, Manifest: m}, nil
	}

	m, st, err := s.validate(ctx, f, lim)
	if err != nil {
		return Imported{}, fmt.Errorf("artifact: import %s: %w", d, err)
	}
	if runtime.GOOS != "windows" {
		if err := f.Chmod(0o444); err != nil {
			return Imported{}, fmt.Errorf("artifact: import %s: %w", d, err)
		}
	}
	if err := f.Sync(); err != nil {
		return Imported{}, fmt.Errorf("artifact: import %s: %w", d, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return Imported{}, fmt.Errorf("artifact: import %s: %w", d, err)
	}
	unlock, err := s.lock(ctx, d)
	if err != nil {
		return Imported{}, fmt.Errorf("artifact: import %s: %w", d, err)
	}
	defer unlock()
	if err := os.Rename(tmp, s.blobPath(d)); err != nil {
		return Imported{}, fmt.Errorf("artifact: import %s: %w", d, err)
	}
	if err := syncDir(s.blobDir()); err != nil {
		return Imported{}, fmt.Errorf("artifact: import %s: %w", d, err)
	}
	s.mu.Lock()
	s.manifests[d] = m
	s.stats[d] = st
	s.mu.Unlock()
	return Imported{Digest: d, Size: n, Stats: st, Manifest: m}, nil
}

func (st Stats) check(lim Limits) error {
	if st.UnpackedBytes > lim.MaxUnpackedBytes {
		return fmt.Errorf("%w: %w: unpacked files are %d bytes, more than %d", ErrInvalid, ErrTooLarge, st.UnpackedBytes, lim.MaxUnpackedBytes)
	}
	if st.DiskVirtualBytes > lim.MaxDiskBytes {
		return fmt.Errorf("%w: %w: disk: virtual size %d bytes exceeds %d bytes", ErrInvalid, ErrTooLarge, st.DiskVirtualBytes, lim.MaxDiskBytes)
	}
	return nil
}

// validate reads the artifact in f from its start, validates it within lim
// and returns its manifest and sizes. A virtual machine image's disk is
// extracted into tmp/ (a second pass: the manifest may follow the files)
// and inspected.
func (s *Store) validate(ctx context.Context, f io.ReadSeeker, lim Limits) (Manifest, Stats, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, Stats{}, err
	}
	m, _, total, err := walkArchive(ctx, f, lim, nil)
	if err != nil {
		return Manifest{}, Stats{}, err
	}
	st := Stats{UnpackedBytes: total}
	if m.QEMU == nil || m.QEMU.Disk == "" {
		return m, st, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Manifest{}, Stats{}, err
	}
	disk, err := os.CreateTemp(s.tmpDir(), "disk-*")
	if err != nil {
		return Manifest{}, Stats{}, err
	}
	defer os.Remove(disk.Name())
	defer disk.Close()
	want := RootfsDir + "/" + m.QEMU.Disk
	_, _, _, err = walkArchive(ctx, f, lim, func(e entry, content io.Reader) error {
		if e.name != want || e.kind != kindFile {
			return nil
		}
		sw, err := NewSparseWriter(disk)
		if err != nil {
			return err
		}
		if _, err := io.Copy(sw, content); err != nil {
			return err
		}
		return sw.Finish()
	})
	if err != nil {
		return Manifest{}, Stats{}, err
	}
	if err := disk.Close(); err != nil {
		return Manifest{}, Stats{}, err
	}
	info, err := inspectDisk(ctx, s.qemuImg, disk.Name(), m.QEMU.Format(), lim.MaxDiskBytes)
	if err != nil {
		return Manifest{}, Stats{}, err
	}
	st.DiskVirtualBytes = info.VirtualSize
	return m, st, nil
}

// Stats returns the unpacked sizes of the stored artifact d (computed once
// by reading it, then remembered).
func (s *Store) Stats(ctx context.Context, d Digest) (Stats, error) {
	if err := d.Validate(); err != nil {
		return Stats{}, err
	}
	s.mu.Lock()
	st, ok := s.stats[d]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return Stats{}, fmt.Errorf("artifact: stats of %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return Stats{}, fmt.Errorf("artifact: stats of %s: %w", d, err)
	}
	defer f.Close()
	m, st, err := s.validate(ctx, f, s.limits)
	if err != nil {
		return Stats{}, fmt.Errorf("artifact: stats of %s: %w", d, err)
	}
	s.mu.Lock()
	s.manifests[d] = m
	s.stats[d] = st
	s.mu.Unlock()
	return st, nil
}

// Touch marks the stored artifact d as used now (its blob's modification
// time), which keeps Collect from deleting it for the grace period; it
// fails with ErrNotFound when the store no longer holds d. Touch and
// Collect exclude each other, so an artifact a caller touched is either
// kept or was already gone.
func (s *Store) Touch(ctx context.Context, d Digest) error {
	if err := d.Validate(); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, d)
	if err != nil {
		return fmt.Errorf("artifact: touch %s: %w", d, err)
	}
	defer unlock()
	now := time.Now()
	if err := os.Chtimes(s.blobPath(d), now, now); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("artifact: touch %s: %w", d, ErrNotFound)
		}
		return fmt.Errorf("artifact: touch %s: %w", d, err)
	}
	return nil
}

// Collect deletes every stored artifact that was not used (imported or
// touched) since before and that keep does not claim. keep is asked under
// the artifact's lock, after the use time was checked, so an artifact
// touched concurrently is never deleted. It returns the deleted digests.
func (s *Store) Collect(ctx context.Context, before time.Time, keep func(Digest) bool) ([]Digest, error) {
	ds, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	var deleted []Digest
	for _, d := range ds {
		gone, err := s.collectOne(ctx, d, before, keep)
		if err != nil {
			return deleted, err
		}
		if gone {
			deleted = append(deleted, d)
		}
	}
	return deleted, nil
}

func (s *Store) collectOne(ctx context.Context, d Digest, before time.Time, keep func(Digest) bool) (bool, error) {
	unlock, err := s.lock(ctx, d)
	if err != nil {
		return false, fmt.Errorf("artifact: collect %s: %w", d, err)
	}
	defer unlock()
	fi, err := os.Lstat(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("artifact: collect %s: %w", d, err)
	}
	if !fi.ModTime().Before(before) || keep(d) {
		return false, nil
	}
	if err := s.deleteLocked(d); err != nil {
		return false, err
	}
	return true, nil
}

// ImportFile imports the artifact in the file at name (see Import).
func (s *Store) ImportFile(ctx context.Context, name string) (Digest, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", 0, fmt.Errorf("artifact: import: %w", err)
	}
	defer f.Close()
	return s.Import(ctx, f)
}

// Has reports whether the store holds the artifact d. It is false for a
// malformed digest.
func (s *Store) Has(d Digest) bool {
	if d.Validate() != nil {
		return false
	}
	fi, err := os.Lstat(s.blobPath(d))
	return err == nil && fi.Mode().IsRegular()
}

// Size returns the size of a stored artifact without reading it.
func (s *Store) Size(d Digest) (int64, error) {
	if err := d.Validate(); err != nil {
		return 0, err
	}
	fi, err := os.Lstat(s.blobPath(d))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%w: %s", ErrNotFound, d)
		}
		return 0, err
	}
	return fi.Size(), nil
}

// List returns the digests of every stored artifact, sorted.
func (s *Store) List(ctx context.Context) ([]Digest, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(s.blobDir())
	if err != nil {
		return nil, fmt.Errorf("artifact: list: %w", err)
	}
	var out []Digest
	for _, e := range ents {
		d, err := ParseDigest(digestPrefix + e.Name())
		if err == nil && e.Type().IsRegular() {
			out = append(out, d)
		}
	}
	return out, nil
}

// Open returns the artifact's bytes. Reading them to the end verifies them:
// the final Read fails with ErrCorrupt if they do not match d.
func (s *Store) Open(d Digest) (io.ReadCloser, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("artifact: open %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("artifact: open %s: %w", d, err)
	}
	return &verifyingReader{f: f, h: sha256.New(), want: d}, nil
}

// Manifest returns the manifest of the stored artifact d.
func (s *Store) Manifest(ctx context.Context, d Digest) (Manifest, error) {
	if err := d.Validate(); err != nil {
		return Manifest{}, err
	}
	s.mu.Lock()
	m, ok := s.manifests[d]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	if data, err := os.ReadFile(filepath.Join(s.imagePath(d), ManifestFile)); err == nil {
		m, err = ParseManifest(data)
		if err != nil {
			return Manifest{}, fmt.Errorf("artifact: manifest of %s: %w", d, err)
		}
	} else {
		rc, err := s.Open(d)
		if err != nil {
			return Manifest{}, err
		}
		defer rc.Close()
		m, _, _, err = walkArchive(ctx, rc, s.limits, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, rc) // the digest check
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("artifact: manifest of %s: %w", d, err)
		}
	}
	s.mu.Lock()
	s.manifests[d] = m
	s.mu.Unlock()
	return m, nil
}

// Unpack unpacks the stored artifact d into images/sha256/<hex>/ (its
// manifest.json and rootfs/) and returns that directory. It unpacks at most
// once: later calls, and calls racing with the first, return the same
// directory. The blob is verified against d while it is read; nothing is
// left behind on error. The directory is meant to be read-only: drivers copy
// rootfs/, they never write into it.
//
// File and directory permissions come from the archive, with the owner
// always allowed to read and write (directories: also search), so that the
// store can delete them; owners, times and special bits are not kept.
func (s *Store) Unpack(ctx context.Context, d Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", err
	}
	dst := s.imagePath(d)
	if isDir(dst) {
		return dst, nil
	}
	unlock, err := s.lock(ctx, d)
	if err != nil {
		return "", fmt.Errorf("artifact: unpack %s: %w", d, err)
	}
	defer unlock()
	if isDir(dst) {
		return dst, nil
	}
	if err := s.unpack(ctx, d, dst); err != nil {
		return "", fmt.Errorf("artifact: unpack %s: %w", d, err)
	}
	return dst, nil
}

func (s *Store) unpack(ctx context.Context, d Digest, dst string) (err error) {
	f, err := os.Open(s.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	defer f.Close()

	tmp, err := os.MkdirTemp(s.tmpDir(), "unpack-"+d.Hex()[:12]+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Mkdir(RootfsDir, 0o755); err != nil {
		return err
	}
	rootfs, err := root.OpenRoot(RootfsDir)
	if err != nil {
		return err
	}
	defer rootfs.Close()

	x := &extractor{root: rootfs, dirs: map[string]bool{".": true}}
	h := sha256.New()
	m, manifest, total, err := walkArchive(ctx, io.TeeReader(f, h), s.limits, x.extract)
	if err != nil {
		// A blob that fails validation now was valid when imported: say
		// so if its bytes changed.
		if ctx.Err() == nil {
			if _, cerr := io.Copy(h, f); cerr == nil && digestFromHash(h) != d {
				return fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
		}
		return err
	}
	if _, err := io.Copy(h, f); err != nil { // what gzip did not need
		return err
	}
	if got := digestFromHash(h); got != d {
		return fmt.Errorf("%w: read %s", ErrCorrupt, got)
	}
	st := Stats{UnpackedBytes: total}
	if q := m.QEMU; q != nil {
		// A blob imported before disks were inspected is inspected now.
		if q.Disk != "" {
			info, err := inspectDisk(ctx, s.qemuImg, filepath.Join(tmp, RootfsDir, filepath.FromSlash(q.Disk)), q.Format(), s.limits.MaxDiskBytes)
			if err != nil {
				return err
			}
			st.DiskVirtualBytes = info.VirtualSize
		}
		// QEMU may run as another, unprivileged user: what it boots is
		// readable by everyone (and written by no one).
		for _, name := range q.Files() {
			if err := rootfs.Chmod(name, 0o444); err != nil {
				return err
			}
		}
	}
	if err := writeFileSync(root, ManifestFile, manifest); err != nil {
		return err
	}
	if err := x.syncDirs(); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		if isDir(dst) { // another process unpacked it first
			os.RemoveAll(tmp)
			return nil
		}
		return err
	}
	if err := syncDir(s.imageDir()); err != nil {
		return err
	}
	s.mu.Lock()
	s.manifests[d] = m
	s.stats[d] = st
	s.mu.Unlock()
	return nil
}

// Delete removes the artifact d and its unpacked directory. Deleting an
// artifact the store does not hold is not an error. Callers make sure no
// instance still uses the unpacked directory.
func (s *Store) Delete(ctx context.Context, d Digest) error {
	if err := d.Validate(); err != nil {
		return err
	}
	unlock, err := s.lock(ctx, d)
	if err != nil {
		return fmt.Errorf("artifact: delete %s: %w", d, err)
	}
	defer unlock()
	return s.deleteLocked(d)
}

// deleteLocked deletes d; the caller holds d's lock.
func (s *Store) deleteLocked(d Digest) error {
	s.mu.Lock()
	delete(s.manifests, d)
	delete(s.stats, d)
	s.mu.Unlock()

	// Move the image out of images/ first so that a half-deleted directory
	// is never taken for a complete one.
	if isDir(s.imagePath(d)) {
		trash, err := os.MkdirTemp(s.tmpDir(), "delete-*")
		if err != nil {
			return fmt.Errorf("artifact: delete %s: %w", d, err)
		}
		if err := os.Rename(s.imagePath(d), filepath.Join(trash, "image")); err != nil {
			os.Remove(trash)
			return fmt.Errorf("artifact: delete %s: %w", d, err)
		}
		if err := os.RemoveAll(trash); err != nil {
			return fmt.Errorf("artifact: delete %s: %w", d, err)
		}
	}
	if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("artifact: delete %s: %w", d, err)
	}
	return nil
}

// lock takes the per-digest lock of d; the returned func releases it.
func (s *Store) lock(ctx context.Context, d Digest) (func(), error) {
	s.mu.Lock()
	l := s.locks[d]
	if l == nil {
		l = &digestLock{ch: make(chan struct{}, 1)}
		s.locks[d] = l
	}
	l.refs++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.locks, d)
		}
		s.mu.Unlock()
	}
	select {
	case l.ch <- struct{}{}:
		return func() { <-l.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// extractor writes validated rootfs entries under root.
type extractor struct {
	root *os.Root
	dirs map[string]bool // directories created, to sync at the end
}

func (x *extractor) extract(e entry, content io.Reader) error {
	rel := "."
	if e.name != RootfsDir {
		rel = strings.TrimPrefix(e.name, RootfsDir+"/")
	}
	if err := x.mkdirAll(path.Dir(rel)); err != nil {
		return err
	}
	switch e.kind {
	case kindDir:
		perm := e.perm | 0o700
		if x.dirs[rel] {
			return x.root.Chmod(rel, perm) // implied by an earlier entry
		}
		if err := x.root.Mkdir(rel, perm); err != nil {
			return err
		}
		x.dirs[rel] = true
		return nil
	case kindSymlink:
		return x.root.Symlink(e.target, rel)
	case kindFile:
		f, err := x.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, e.perm|0o600)
		if err != nil {
			return err
		}
		n, err := copySparse(f, content)
		if err == nil && n != e.size {
			err = fmt.Errorf("%w: %s: short file (%d of %d bytes)", ErrInvalid, e.name, n, e.size)
		}
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	return fmt.Errorf("artifact: entry %s: unknown kind %d", e.name, e.kind)
}

// mkdirAll creates dir and its missing parents, remembering them.
func (x *extractor) mkdirAll(dir string) error {
	if x.dirs[dir] {
		return nil
	}
	if err := x.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	if err := x.root.Mkdir(dir, 0o755); err != nil {
		return err
	}
	x.dirs[dir] = true
	return nil
}

func (x *extractor) syncDirs() error {
	if runtime.GOOS == "windows" {
		return nil
	}
	for dir := range x.dirs {
		f, err := x.root.Open(dir)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func writeFileSync(root *os.Root, name string, data []byte) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a directory's entries (renames, creations) durable.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there
	}
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func isDir(name string) bool {
	fi, err := os.Lstat(name)
	return err == nil && fi.IsDir()
}

// verifyingReader reads a blob and checks its digest at EOF.
type verifyingReader struct {
	f    *os.File
	h    hash.Hash
	want Digest
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := digestFromHash(v.h); got != v.want {
			return n, fmt.Errorf("%w: %s read as %s", ErrCorrupt, v.want, got)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.f.Close() }
