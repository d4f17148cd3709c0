package fsutil

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// RotateLog bounds a log that a process appends to through an O_APPEND
// descriptor: when it is larger than limit, its last limit bytes are saved
// as path.1 (replacing the previous one) and the file is truncated in place
// (renaming it would not help: the writer keeps writing to the same inode).
// Bytes written between the copy and the truncation are lost. It reports
// whether it rotated; a missing log is not an error.
func RotateLog(path string, limit int64) (rotated bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fi.Size() <= limit {
		return false, nil
	}
	in, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer in.Close()
	tail := io.NewSectionReader(in, fi.Size()-limit, limit)
	dir, name := filepath.Split(path)
	out, err := os.CreateTemp(dir, TempPrefix+name+".1-*")
	if err != nil {
		return false, err
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
		return false, err
	}
	if err := os.Truncate(path, 0); err != nil {
		return false, err
	}
	return true, nil
}

// TailLog returns the newest limit bytes of a log rotated by RotateLog:
// the end of path.1 followed by path. Missing files read as empty.
func TailLog(path string, limit int64) ([]byte, error) {
	var out []byte
	for _, p := range []string{path + ".1", path} {
		b, err := TailFile(p, limit)
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

// TailFile returns the last limit bytes of path (nothing if it is missing).
func TailFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(fi.Size()-limit, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil, err
	}
	return b, nil
}
