package process

import (
	"fmt"
	"os"

	"github.com/vmssd/vmssd/internal/fsutil"
)

// The helpers below are those of package fsutil with this package's error
// prefix.

// writeFileAtomic replaces path with data (fsutil.WriteFile), so that a
// reader (or a vmssd restarted after a crash) sees either the old or the new
// content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := fsutil.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("process: write %s: %w", path, err)
	}
	return nil
}

// writeJSONAtomic writes v as indented JSON with fsutil.WriteJSON.
func writeJSONAtomic(path string, v any) error {
	if err := fsutil.WriteJSON(path, v); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	return nil
}

// readJSON decodes the JSON file at path into v.
func readJSON(path string, v any) error {
	if err := fsutil.ReadJSON(path, v); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	return nil
}

// exists reports whether path exists (without following a final symlink).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// rotateConsole bounds a console log that a guest appends to
// (fsutil.RotateLog).
func rotateConsole(path string, limit int64) (bool, error) {
	rotated, err := fsutil.RotateLog(path, limit)
	if err != nil {
		return false, fmt.Errorf("process: rotate console: %w", err)
	}
	return rotated, nil
}
