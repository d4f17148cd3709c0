package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// ErrInvalid is wrapped by every error about a malformed or unacceptable
// artifact (bad gzip or tar, bad manifest, forbidden entry, size limit).
var ErrInvalid = errors.New("artifact: invalid artifact")

// ErrTooLarge is wrapped, besides ErrInvalid, by the errors about a size
// limit: the artifact, its unpacked files or its disk's virtual size.
var ErrTooLarge = errors.New("artifact: too large")

// Limits bounds what a Store accepts. Zero fields take the DefaultLimits
// value.
type Limits struct {
	// MaxArtifactBytes bounds the artifact itself (compressed).
	MaxArtifactBytes int64
	// MaxUnpackedBytes bounds the uncompressed tar stream and the sum of the
	// sizes of its files.
	MaxUnpackedBytes int64
	// MaxEntries bounds the number of tar entries.
	MaxEntries int
	// MaxDiskBytes bounds the virtual size of a virtual machine image's
	// disk (what each instance's overlay may grow to).
	MaxDiskBytes int64
}

// DefaultLimits returns the limits Open uses.
func DefaultLimits() Limits {
	return Limits{
		MaxArtifactBytes: 4 << 30,
		MaxUnpackedBytes: 16 << 30,
		MaxEntries:       200_000,
		MaxDiskBytes:     1 << 40,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxArtifactBytes <= 0 {
		l.MaxArtifactBytes = d.MaxArtifactBytes
	}
	if l.MaxUnpackedBytes <= 0 {
		l.MaxUnpackedBytes = d.MaxUnpackedBytes
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = d.MaxEntries
	}
	if l.MaxDiskBytes <= 0 {
		l.MaxDiskBytes = d.MaxDiskBytes
	}
	return l
}

const (
	// maxPathBytes bounds entry names and symlink targets.
	maxPathBytes = 4096
	// maxSymlinkHops bounds symlink resolution (like Linux's 40).
	maxSymlinkHops = 40
)

// entryKind is the kind of an archive entry; only these three are allowed.
type entryKind int

const (
	kindDir entryKind = iota + 1
	kindFile
	kindSymlink
)

// entry is one validated rootfs entry.
type entry struct {
	// name is the canonical slash-separated path from the archive root:
	// "rootfs" or "rootfs/...".
	name string
	kind entryKind
	// perm holds the permission bits from the archive (no setuid, setgid or
	// sticky bits).
	perm fs.FileMode
	size int64
	// target is a symlink's target (relative, staying inside rootfs).
	target string
}

// walkArchive reads the gzip-compressed tar artifact from r, validates it and
// returns its manifest, the manifest's raw bytes and the sum of the sizes of
// its files (what unpacking it costs, manifest excluded). visit, if not nil, is
// called for every rootfs entry in archive order, with the file's content for
// files; it runs before the archive is known to be entirely valid, so it
// must only act in a scratch place that the caller discards on error.
//
// Rules: only manifest.json (a regular file) and the rootfs tree; only
// regular files, directories and symlinks; canonical relative names (no "..",
// no absolute paths, no duplicates, nothing below a symlink or a file);
// symlinks with relative targets that, resolved through the archive's other
// symlinks, stay inside rootfs; sizes within lim; nothing but zeros after the
// end of the tar stream; the files a qemu manifest names are regular files
// of the rootfs.
func walkArchive(ctx context.Context, r io.Reader, lim Limits, visit func(e entry, content io.Reader) error) (Manifest, []byte, int64, error) {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return Manifest{}, nil, 0, fmt.Errorf("%w: not gzip: %w", ErrInvalid, err)
	}
	defer zr.Close()
	stream := &boundedReader{ctx: ctx, r: zr, max: lim.MaxUnpackedBytes}
	tr := tar.NewReader(stream)

	var (
		seen         = map[string]entryKind{}
		links        = map[string]string{} // path relative to rootfs -> target
		manifestData []byte
		haveManifest bool
		total        int64
		entries      int
	)
	for {
		if err := ctx.Err(); err != nil {
			return Manifest{}, nil, 0, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Manifest{}, nil, 0, stream.wrap(fmt.Errorf("%w: read tar: %w", ErrInvalid, err))
		}
		entries++
		if entries > lim.MaxEntries {
			return Manifest{}, nil, 0, fmt.Errorf("%w: more than %d entries", ErrInvalid, lim.MaxEntries)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue // PAX global header (git archive writes one): no file
		}
		var kind entryKind
		switch hdr.Typeflag {
		case tar.TypeReg:
			kind = kindFile
		case tar.TypeDir:
			kind = kindDir
		case tar.TypeSymlink:
			kind = kindSymlink
		default:
			return Manifest{}, nil, 0, fmt.Errorf("%w: entry %q: type %q not allowed (only regular files, directories and symlinks)",
				ErrInvalid, truncate(hdr.Name), hdr.Typeflag)
		}
		name, err := cleanEntryName(hdr.Name, kind)
		if err != nil {
			return Manifest{}, nil, 0, err
		}
		if name == "" {
			if kind != kindDir {
				return Manifest{}, nil, 0, fmt.Errorf("%w: entry %q: the archive root must be a directory", ErrInvalid, truncate(hdr.Name))
			}
			continue // "./"
		}
		if err := register(seen, name, kind); err != nil {
			return Manifest{}, nil, 0, err
		}

		if name == ManifestFile {
			if kind != kindFile {
				return Manifest{}, nil, 0, fmt.Errorf("%w: %s must be a regular file", ErrInvalid, ManifestFile)
			}
			if hdr.Size > maxManifestBytes {
				return Manifest{}, nil, 0, fmt.Errorf("%w: %s is %d bytes (max %d)", ErrInvalid, ManifestFile, hdr.Size, maxManifestBytes)
			}
			manifestData, err = io.ReadAll(tr)
			if err != nil {
				return Manifest{}, nil, 0, stream.wrap(fmt.Errorf("%w: read %s: %w", ErrInvalid, ManifestFile, err))
			}
			haveManifest = true
			continue
		}
		if name != RootfsDir && !strings.HasPrefix(name, RootfsDir+"/") {
			return Manifest{}, nil, 0, fmt.Errorf("%w: entry %q: only %s and %s/ may be in an artifact", ErrInvalid, truncate(name), ManifestFile, RootfsDir)
		}
		if name == RootfsDir && kind != kindDir {
			return Manifest{}, nil, 0, fmt.Errorf("%w: %s must be a directory", ErrInvalid, RootfsDir)
		}

		e := entry{name: name, kind: kind, perm: fs.FileMode(hdr.Mode) & fs.ModePerm}
		switch kind {
		case kindFile:
			if hdr.Size > lim.MaxUnpackedBytes-total {
				return Manifest{}, nil, 0, fmt.Errorf("%w: %w: entry %q: %d bytes: unpacked files exceed %d bytes", ErrInvalid, ErrTooLarge, truncate(name), hdr.Size, lim.MaxUnpackedBytes)
			}
			total += hdr.Size
			e.size = hdr.Size
		case kindSymlink:
			if err := checkLinkTarget(name, hdr.Linkname); err != nil {
				return Manifest{}, nil, 0, err
			}
			e.target = hdr.Linkname
			links[strings.TrimPrefix(name, RootfsDir+"/")] = hdr.Linkname
		}
		if visit != nil {
			var content io.Reader = eofReader{}
			if kind == kindFile {
				content = tr
			}
			if err := visit(e, content); err != nil {
				return Manifest{}, nil, 0, stream.wrap(err)
			}
		}
	}

	if !haveManifest {
		return Manifest{}, nil, 0, fmt.Errorf("%w: no %s", ErrInvalid, ManifestFile)
	}
	m, err := ParseManifest(manifestData)
	if err != nil {
		return Manifest{}, nil, 0, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := checkLinks(links); err != nil {
		return Manifest{}, nil, 0, err
	}
	if m.QEMU != nil {
		// A VM image must hold what it boots, as regular files (not
		// symlinks: the driver hands these paths to QEMU as they are).
		for _, f := range m.QEMU.Files() {
			if seen[RootfsDir+"/"+f] != kindFile {
				return Manifest{}, nil, 0, fmt.Errorf("%w: the manifest names %s/%s, which is not a regular file in the archive",
					ErrInvalid, RootfsDir, truncate(f))
			}
		}
	}
	// Only zero padding may follow the tar end marker; reading to the end
	// also makes gzip verify its checksum and reject trailing garbage.
	if err := drainZeros(stream); err != nil {
		return Manifest{}, nil, 0, stream.wrap(err)
	}
	return m, manifestData, total, nil
}

// cleanEntryName returns the canonical form of a tar entry name: without a
// leading "./" or a trailing "/" ("" for the archive root itself). It rejects
// absolute names, "..", empty or "." components, NUL bytes and, on Windows,
// names Windows would reinterpret.
func cleanEntryName(raw string, kind entryKind) (string, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w: entry name %q: %s", ErrInvalid, truncate(raw), why)
	}
	if len(raw) > maxPathBytes {
		return "", bad(fmt.Sprintf("longer than %d bytes", maxPathBytes))
	}
	if strings.IndexByte(raw, 0) >= 0 {
		return "", bad("contains a NUL byte")
	}
	n := raw
	for strings.HasPrefix(n, "./") {
		n = n[2:]
	}
	if trimmed, ok := strings.CutSuffix(n, "/"); ok {
		if kind != kindDir {
			return "", bad("trailing slash on a non-directory")
		}
		n = trimmed
	}
	if n == "" || n == "." {
		return "", nil
	}
	if strings.HasPrefix(n, "/") {
		return "", bad("absolute path")
	}
	if !fs.ValidPath(n) {
		return "", bad("not a canonical relative path (no \"..\", \".\" or empty components)")
	}
	if runtime.GOOS == "windows" && strings.ContainsAny(n, `\:`) {
		return "", bad(`"\" and ":" are not allowed on Windows`)
	}
	if !filepath.IsLocal(filepath.FromSlash(n)) {
		return "", bad("not a local path on this system")
	}
	return n, nil
}

// register records name (and its ancestors, as directories) in seen. An
// ancestor must be a directory; a name may appear twice only as a directory.
func register(seen map[string]entryKind, name string, kind entryKind) error {
	for i := 0; i < len(name); i++ {
		if name[i] != '/' {
			continue
		}
		anc := name[:i]
		switch k, ok := seen[anc]; {
		case !ok:
			seen[anc] = kindDir
		case k != kindDir:
			return fmt.Errorf("%w: entry %q is below %q, which is not a directory", ErrInvalid, truncate(name), truncate(anc))
		}
	}
	if k, ok := seen[name]; ok && (k != kindDir || kind != kindDir) {
		return fmt.Errorf("%w: entry %q appears twice", ErrInvalid, truncate(name))
	}
	seen[name] = kind
	return nil
}

// checkLinkTarget checks a symlink's target on its own: relative, short, no
// NUL, and lexically inside rootfs. checkLinks does the full resolution.
func checkLinkTarget(name, target string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w: symlink %q -> %q: %s", ErrInvalid, truncate(name), truncate(target), why)
	}
	switch {
	case name == RootfsDir:
		return bad("rootfs itself cannot be a symlink")
	case target == "":
		return bad("empty target")
	case len(target) > maxPathBytes:
		return bad(fmt.Sprintf("target longer than %d bytes", maxPathBytes))
	case strings.IndexByte(target, 0) >= 0:
		return bad("target contains a NUL byte")
	case path.IsAbs(target), filepath.IsAbs(filepath.FromSlash(target)), filepath.VolumeName(filepath.FromSlash(target)) != "":
		return bad("absolute target")
	case runtime.GOOS == "windows" && strings.ContainsAny(target, `\:`):
		return bad(`"\" and ":" are not allowed on Windows`)
	}
	rel := strings.TrimPrefix(name, RootfsDir+"/")
	if p := path.Join(path.Dir(rel), target); p == ".." || strings.HasPrefix(p, "../") {
		return bad("target is outside rootfs")
	}
	return nil
}

// checkLinks resolves every symlink through the others, component by
// component as the kernel would, and fails if one leads outside rootfs (the
// lexical check alone misses "a/b/../.." when a/b is itself a link).
func checkLinks(links map[string]string) error {
	names := make([]string, 0, len(links))
	for n := range links {
		names = append(names, n)
	}
	sort.Strings(names)
	budget := maxResolveWork
	for _, n := range names {
		if err := resolveInside(links, n, &budget); err != nil {
			return fmt.Errorf("%w: symlink %q -> %q: %w", ErrInvalid, truncate(RootfsDir+"/"+n), truncate(links[n]), err)
		}
	}
	return nil
}

// maxResolveWork bounds the bytes checkLinks may hash in total, so that a
// hostile archive (many deep links) cannot make validation quadratic.
const maxResolveWork = 1 << 28

var (
	errEscapes      = errors.New("resolves outside rootfs")
	errLinkLoops    = errors.New("too many levels of symbolic links")
	errLinksTooDeep = errors.New("symlinks too complex to verify")
)

// resolveInside resolves the symlink at link (relative to rootfs) using
// links for every symlink met on the way. The link's parent directory is not
// looked up: register guarantees that no ancestor of an entry is a symlink.
// budget is decremented by the work done.
func resolveInside(links map[string]string, link string, budget *int) error {
	var (
		cur  []byte // the resolved path so far, relative to rootfs
		ends []int  // len(cur) before each component was appended
	)
	for _, c := range splitPath(path.Dir(link)) {
		ends = append(ends, len(cur))
		cur = appendComponent(cur, c)
	}
	pending := splitPath(links[link])
	hops := 0
	for len(pending) > 0 {
		c := pending[0]
		pending = pending[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(ends) == 0 {
				return errEscapes
			}
			cur, ends = cur[:ends[len(ends)-1]], ends[:len(ends)-1]
			continue
		}
		ends = append(ends, len(cur))
		cur = appendComponent(cur, c)
		if *budget -= len(cur); *budget < 0 {
			return errLinksTooDeep
		}
		target, ok := links[string(cur)]
		if !ok {
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return errLinkLoops
		}
		cur, ends = cur[:ends[len(ends)-1]], ends[:len(ends)-1]
		pending = append(splitPath(target), pending...)
	}
	return nil
}

func appendComponent(p []byte, c string) []byte {
	if len(p) > 0 {
		p = append(p, '/')
	}
	return append(p, c...)
}

func splitPath(p string) []string {
	if p == "" || p == "." {
		return nil
	}
	return strings.Split(p, "/")
}

// drainZeros reads r to its end and fails if it holds anything but zeros.
func drainZeros(r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if !isZero(buf[:n]) {
			return fmt.Errorf("%w: data after the end of the tar archive", ErrInvalid)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: read after the tar archive: %w", ErrInvalid, err)
		}
	}
}

func isZero(b []byte) bool {
	return len(bytes.Trim(b, "\x00")) == 0
}

// errStreamTooLarge is returned by boundedReader past its limit.
var errStreamTooLarge = errors.New("uncompressed stream too large")

// boundedReader fails with errStreamTooLarge once more than max bytes were
// read, and with ctx's error once ctx is done.
type boundedReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
	max int64
	err error // sticky limit or context error
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if err := b.ctx.Err(); err != nil {
		b.err = err
		return 0, err
	}
	if rem := b.max - b.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.n > b.max {
		b.err = errStreamTooLarge
		return 0, b.err
	}
	return n, err
}

// wrap replaces err by the limit or context error that caused it, if any:
// the tar and gzip readers wrap them in their own errors or drop them.
func (b *boundedReader) wrap(err error) error {
	switch {
	case b.err == nil:
		return err
	case errors.Is(b.err, errStreamTooLarge):
		return fmt.Errorf("%w: %w: uncompressed archive exceeds %d bytes", ErrInvalid, ErrTooLarge, b.max)
	default:
		return b.err
	}
}

// eofReader is an empty reader, the content of non-file entries.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
