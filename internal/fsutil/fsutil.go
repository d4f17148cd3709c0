// Package fsutil holds the file-system helpers shared by vmssd's packages:
// atomic file writes (WriteFile, CreateFile, WriteJSON), directory syncs,
// tree copies (CopyTree) and bounded logs that a process appends to
// (RotateLog, TailLog).
//
// Every temporary file these helpers create is named TempPrefix followed by
// the name of the file it stands in for, in the same directory, so that a
// caller recovering from a crash can recognise and remove leftovers.
//
// Errors are not prefixed with the package name: most come straight from
// package os (and name the path); callers add their own context.
package fsutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// TempPrefix starts the name of every temporary file of this package.
const TempPrefix = ".tmp-"

// WriteFile replaces path with data: it writes a temporary file in the same
// directory with mode perm, syncs it and renames it over path, so that a
// reader (or a process restarted after a crash) sees either the old or the
// new content, never a torn file. The directory is not synced: call SyncDir
// when the rename itself must survive a power loss.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// CreateFile creates path with data and mode perm unless it exists: the
// content is written and synced to a temporary file in the same directory
// first, then linked into place, so path never holds partial content and an
// existing file is never replaced. It reports whether it created the file;
// the new directory entry is synced (SyncDir).
func CreateFile(path string, data []byte, perm fs.FileMode) (created bool, err error) {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		// No hard links on this file system: fall back to a rename, which
		// is atomic but may replace a file created concurrently.
		if err := os.Rename(tmp, path); err != nil {
			return false, err
		}
	}
	return true, SyncDir(filepath.Dir(path))
}

// writeTemp writes data with mode perm to a new temporary file beside path,
// syncs and closes it, and returns its name. It leaves nothing behind when
// it fails.
func writeTemp(path string, data []byte, perm fs.FileMode) (name string, err error) {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, TempPrefix+base+"-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return "", err
	}
	if err = f.Chmod(perm); err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		return "", err
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// SyncDir makes the entries of dir (a file created or renamed in it)
// durable. Windows cannot sync a directory; the error is ignored there.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && runtime.GOOS != "windows" {
		return err
	}
	return nil
}

// WriteJSON writes v as indented JSON, followed by a newline, with
// WriteFile and mode 0644. Its errors say "encode <name>" or
// "write <path>".
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if err := WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadJSON decodes the JSON file at path into v. A read error is returned
// as is (it wraps fs.ErrNotExist for a missing file); a decoding error says
// "decode <path>".
func ReadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	return nil
}
