// Package backup writes and restores backups of a vmssd data directory.
//
// A backup is a tar.gz archive: a manifest (vmssd-backup.json), a
// consistent copy of the state store (state.db, taken by the store itself
// inside one read transaction, so writers go on meanwhile), and the files
// the store refers to or the server needs to be the same cloud again: the
// image artifacts (artifacts/blobs), the TLS material (pki), the token
// signing key and the credential files (operator.json, vmssctl.json).
// Left out, because they are rebuilt: the instances' disks and
// directories (hosts/), unpacked images and temporary files
// (artifacts/images, artifacts/tmp), sockets and links.
//
// Restore writes a backup into a data directory that is empty or absent;
// it refuses any other, so that it can never overwrite a live one, and
// checks the restored store before it reports success. The restored
// server recreates the instances its records describe.
package backup

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Names inside an archive and the data directory.
const (
	// ManifestName is the archive's first entry.
	ManifestName = "vmssd-backup.json"
	// StateFile is the state store in the data directory and the archive.
	StateFile = "state.db"
	// Format is the manifest's format tag.
	Format = "vmssd-backup/1"
	// tempPrefix names the temporary files Write makes in the data dir.
	tempPrefix = ".backup-"
)

// excluded are the data directory paths (slash-separated, relative) a
// backup leaves out, with everything under them.
var excluded = []string{"hosts", "artifacts/images", "artifacts/tmp", StateFile, StateFile + ".lock"}

// Manifest describes a backup.
type Manifest struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	// StoreBytes is the size of the state store copy.
	StoreBytes int64 `json:"storeBytes"`
}

// Store is what Write copies the state store from: boltstore.Store.
type Store interface {
	// WriteTo writes a consistent copy of the store file.
	WriteTo(w io.Writer) (int64, error)
}

// Write writes a backup of dataDir to w, with the state store copied from
// st (the store of dataDir, open, perhaps serving).
func Write(ctx context.Context, w io.Writer, dataDir string, st Store, now time.Time) error {
	// The copy goes to a temporary file first: the archive needs its size
	// before its bytes, and the store's read transaction stays short.
	tmp, err := os.CreateTemp(dataDir, tempPrefix+"*.db")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	n, err := st.WriteTo(tmp)
	if err != nil {
		return fmt.Errorf("backup: copy the state store: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: %w", err)
	}

	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	man, _ := json.MarshalIndent(Manifest{Format: Format, Created: now.UTC(), StoreBytes: n}, "", "  ")
	if err := writeEntry(tw, ManifestName, 0o600, now, int64(len(man)), strings.NewReader(string(man))); err != nil {
		return err
	}
	if err := writeEntry(tw, StateFile, 0o600, now, n, tmp); err != nil {
		return err
	}
	err = filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while we walk (a temp file)
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dataDir, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		if skip(name) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: int64(info.Mode().Perm()), ModTime: info.ModTime()})
		case info.Mode().IsRegular():
			f, err := os.Open(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			defer f.Close()
			return writeEntry(tw, name, info.Mode().Perm(), info.ModTime(), info.Size(), f)
		}
		return nil // sockets, links, devices: not part of a backup
	})
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

func skip(name string) bool {
	if strings.HasPrefix(path.Base(name), tempPrefix) {
		return true
	}
	for _, x := range excluded {
		if name == x || strings.HasPrefix(name, x+"/") {
			return true
		}
	}
	return false
}

// writeEntry writes a regular file of exactly size bytes from r (a file
// that changes size meanwhile is an error, not a torn entry).
func writeEntry(tw *tar.Writer, name string, mode fs.FileMode, mtime time.Time, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: int64(mode), Size: size, ModTime: mtime}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, r, size); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// ErrNotEmpty is returned by Restore for a data directory that has files.
var ErrNotEmpty = errors.New("backup: the data directory is not empty")

// Verifier checks a restored state store file (boltstore.Verify).
type Verifier func(path string) error

// Restore extracts the backup read from r into dataDir, which must be
// absent or empty, and checks the restored store with verify. On failure it
// removes what it wrote.
func Restore(ctx context.Context, r io.Reader, dataDir string, verify Verifier) (err error) {
	if ents, err := os.ReadDir(dataDir); err == nil && len(ents) > 0 {
		return fmt.Errorf("%w: %s holds %d entries (a live data directory?); restore into a new or empty directory", ErrNotEmpty, dataDir, len(ents))
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: restore: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("backup: restore: %w", err)
	}
	defer func() {
		if err != nil { // leave the directory as empty as it was
			if ents, _ := os.ReadDir(dataDir); ents != nil {
				for _, e := range ents {
					_ = os.RemoveAll(filepath.Join(dataDir, e.Name()))
				}
			}
		}
	}()
	root, err := os.OpenRoot(dataDir)
	if err != nil {
		return fmt.Errorf("backup: restore: %w", err)
	}
	defer root.Close()
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("backup: restore: not a backup (gzip): %w", err)
	}
	tr := tar.NewReader(gz)
	var man Manifest
	var sawState bool
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("backup: restore: %w", err)
		}
		if i == 0 {
			if h.Name != ManifestName {
				return fmt.Errorf("backup: restore: not a vmssd backup (first entry %q)", h.Name)
			}
			if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&man); err != nil || man.Format != Format {
				return fmt.Errorf("backup: restore: unsupported backup manifest (format %q): %v", man.Format, err)
			}
			continue
		}
		name := strings.TrimSuffix(h.Name, "/")
		if !fs.ValidPath(name) || name == "." {
			return fmt.Errorf("backup: restore: unsafe entry name %q", h.Name)
		}
		if skip(name) && name != StateFile {
			return fmt.Errorf("backup: restore: unexpected entry %q", h.Name)
		}
		mode := fs.FileMode(h.Mode).Perm() & 0o700
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, mode|0o700); err != nil {
				return fmt.Errorf("backup: restore: %w", err)
			}
		case tar.TypeReg:
			if dir := path.Dir(name); dir != "." {
				if err := root.MkdirAll(dir, 0o700); err != nil {
					return fmt.Errorf("backup: restore: %w", err)
				}
			}
			if err := extract(root, name, mode|0o600, tr, h.Size); err != nil {
				return fmt.Errorf("backup: restore: %s: %w", name, err)
			}
			sawState = sawState || name == StateFile
		default:
			return fmt.Errorf("backup: restore: unexpected entry type %q for %q", h.Typeflag, h.Name)
		}
	}
	if man.Format == "" || !sawState {
		return errors.New("backup: restore: incomplete backup (no manifest or no state store)")
	}
	if err := verify(filepath.Join(dataDir, StateFile)); err != nil {
		return fmt.Errorf("backup: restore: the restored state store is damaged: %w", err)
	}
	return nil
}

func extract(root *os.Root, name string, mode fs.FileMode, r io.Reader, size int64) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
