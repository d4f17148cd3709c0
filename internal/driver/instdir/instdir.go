// Package instdir is the part of an instance directory's life that the
// drivers share: the names of the files a reimage replaces, valid instance
// IDs, building a directory so that a crash leaves all or nothing
// (Create), and committing a reimage so that a crash at any point is
// completed on recovery (ApplyReimage, Clean).
//
// A driver keeps each instance in <root>/<id>/. Entries of root whose name
// starts with a dot are leftovers of an interrupted Create or deletion, and
// a driver's recovery removes them.
package instdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmssd/vmssd/internal/fsutil"
)

// Entries of an instance directory that this package handles.
const (
	SpecFile     = "spec.json"     // the driver.Spec
	MetadataFile = "metadata.json" // Spec.Metadata
	ManifestFile = "manifest.json" // a copy of the image's manifest
	DiskDir      = "disk"          // what the instance's disks are made of

	// ReimageDir is where a reimage prepares the next DiskDir, SpecFile,
	// ManifestFile and MetadataFile; it is renamed to ReimageReady once
	// complete, which commits the reimage: Clean completes a committed
	// reimage and discards an uncommitted one.
	ReimageDir   = ".reimage"
	ReimageReady = ".reimage.ready"
	// OldDiskDir holds the replaced DiskDir while a reimage is applied.
	OldDiskDir = "disk.old"
)

// ValidID checks that id can name a directory (and a QEMU -name): 1 to 128
// letters, digits, '.', '_' and '-', starting with a letter or digit.
func ValidID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("invalid instance id %q: want 1 to 128 characters", id)
	}
	for i, c := range id {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return fmt.Errorf("invalid instance id %q: character %q not allowed", id, c)
		}
	}
	return nil
}

// Create builds the directory of instance id, root/id: fill writes its
// content into a temporary directory of root (named after a dot), which is
// then renamed into place, so that a crash leaves either a dot-entry or a
// complete directory. On failure nothing is left. A directory that exists
// already makes the rename fail.
func Create(root, id string, fill func(tmp string) error) (err error) {
	tmp, err := os.MkdirTemp(root, ".create-"+id+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := fill(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(root, id)); err != nil {
		return fmt.Errorf("instance directory exists but is unknown (was Recover called?): %w", err)
	}
	return nil
}

// StageReimage prepares a reimage of the instance directory dir: fill
// writes the next disk directory, spec, manifest and metadata into a fresh
// dir/.reimage, whose path it gets. The caller commits the reimage by
// renaming that directory to ReimageReady, then calls ApplyReimage. On
// failure the staging directory is removed.
func StageReimage(dir string, fill func(staging string) error) (err error) {
	staging := filepath.Join(dir, ReimageDir)
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	if err := os.RemoveAll(staging); err != nil {
		return err
	}
	if err := os.Mkdir(staging, 0o700); err != nil {
		return err
	}
	return fill(staging)
}

// Clean readies the instance directory dir after a restart: it removes
// temporary files (fsutil.TempPrefix) and an uncommitted reimage, and
// completes a committed one.
func Clean(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fsutil.TempPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, ReimageDir)); err != nil {
		return err
	}
	if exists(filepath.Join(dir, ReimageReady)) {
		if err := ApplyReimage(dir); err != nil {
			return err
		}
	}
	return os.RemoveAll(filepath.Join(dir, OldDiskDir))
}

// ApplyReimage installs a committed reimage (dir/.reimage.ready): the new
// disk directory replaces disk/, then the new manifest, metadata and spec
// replace the old ones. Every step is idempotent, so a crash at any point
// is completed by running it again.
func ApplyReimage(dir string) error {
	ready := filepath.Join(dir, ReimageReady)
	disk, old := filepath.Join(dir, DiskDir), filepath.Join(dir, OldDiskDir)
	if exists(filepath.Join(ready, DiskDir)) {
		if exists(disk) {
			if err := os.RemoveAll(old); err != nil {
				return err
			}
			if err := os.Rename(disk, old); err != nil {
				return err
			}
		}
		if err := os.Rename(filepath.Join(ready, DiskDir), disk); err != nil {
			return err
		}
	}
	for _, name := range []string{ManifestFile, MetadataFile, SpecFile} {
		err := os.Rename(filepath.Join(ready, name), filepath.Join(dir, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	return os.RemoveAll(ready)
}

// exists reports whether path exists (without following a final symlink).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
