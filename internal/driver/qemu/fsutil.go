package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// tmpPrefix starts the name of every temporary file of an atomic write;
// Recover removes leftovers.
const tmpPrefix = ".tmp-"

// writeFileAtomic replaces path with data: it writes a temporary file in the
// same directory, syncs it and renames it over path, so that a reader (or a
// vmssd restarted after a crash) sees either the old or the new content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, name := filepath.Split(path)
	f, err := os.CreateTemp(dir, tmpPrefix+name+"-*")
	if err != nil {
		return fmt.Errorf("qemu: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("qemu: write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// writeJSONAtomic writes v as indented JSON with writeFileAtomic.
func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("qemu: encode %s: %w", filepath.Base(path), err)
	}
	return writeFileAtomic(path, append(data, '\n'), 0o644)
}

// readJSON decodes the JSON file at path into v.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("qemu: decode %s: %w", path, err)
	}
	return nil
}

// exists reports whether path exists (without following a final symlink).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// rotateLog bounds a log that QEMU appends to through an O_APPEND
// descriptor: when it is larger than limit, its last limit bytes are saved
// as path.1 and the file is truncated in place (renaming it would not help:
// QEMU keeps writing to the same inode). Bytes written between the copy and
// the truncation are lost.
func rotateLog(path string, limit int64) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("qemu: rotate %s: %w", filepath.Base(path), err)
	}
	if fi.Size() <= limit {
		return false, nil
	}
	in, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("qemu: rotate %s: %w", filepath.Base(path), err)
	}
	defer in.Close()
	tail := io.NewSectionReader(in, fi.Size()-limit, limit)
	dir, name := filepath.Split(path)
	out, err := os.CreateTemp(dir, tmpPrefix+name+".1-*")
	if err != nil {
		return false, fmt.Errorf("qemu: rotate %s: %w", name, err)
	}
	_, err = io.Copy(out, tail)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(out.Name(), path+".1")
	}
	if err != nil {
		os.Remove(out.Name())
		return false, fmt.Errorf("qemu: rotate %s: %w", name, err)
	}
	if err := os.Truncate(path, 0); err != nil {
		return false, fmt.Errorf("qemu: rotate %s: %w", name, err)
	}
	return true, nil
}

// readTail returns the newest limit bytes of path.1 followed by path (a log
// rotated by rotateLog). Missing files read as empty.
func readTail(path string, limit int64) ([]byte, error) {
	var out []byte
	for _, p := range []string{path + ".1", path} {
		b, err := readLast(p, limit)
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
	}
	if int64(len(out)) > limit {
		out = out[int64(len(out))-limit:]
	}
	return out, nil
}

// readLast returns the last limit bytes of path (nothing if it is missing).
func readLast(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	off := max(fi.Size()-limit, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, fmt.Errorf("qemu: read %s: %w", path, err)
	}
	return b, nil
}

// lastLines returns the last n non-empty lines of b, joined with " | ", for
// messages. Control characters are dropped.
func lastLines(b []byte, n int) string {
	var lines []string
	for l := range strings.SplitSeq(string(b), "\n") {
		l = strings.TrimSpace(strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, l))
		if l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
