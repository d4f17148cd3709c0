package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/vmssd/vmssd/internal/fsutil"
)

// The helpers below are those of package fsutil with this package's error
// prefix.

// writeFileAtomic replaces path with data (fsutil.WriteFile), so that a
// reader (or a vmssd restarted after a crash) sees either the old or the new
// content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := fsutil.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("qemu: write %s: %w", path, err)
	}
	return nil
}

// writeJSONAtomic writes v as indented JSON with fsutil.WriteJSON.
func writeJSONAtomic(path string, v any) error {
	if err := fsutil.WriteJSON(path, v); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}

// readJSON decodes the JSON file at path into v.
func readJSON(path string, v any) error {
	if err := fsutil.ReadJSON(path, v); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}

// exists reports whether path exists (without following a final symlink).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// rotateLog bounds a log that QEMU appends to (fsutil.RotateLog).
func rotateLog(path string, limit int64) (bool, error) {
	rotated, err := fsutil.RotateLog(path, limit)
	if err != nil {
		return false, fmt.Errorf("qemu: rotate %s: %w", filepath.Base(path), err)
	}
	return rotated, nil
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
