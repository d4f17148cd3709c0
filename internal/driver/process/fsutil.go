package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
		return fmt.Errorf("process: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("process: write %s: %w", path, err)
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("process: write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("process: write %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("process: write %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("process: write %s: %w", path, err)
	}
	return nil
}

// writeJSONAtomic writes v as indented JSON with writeFileAtomic.
func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("process: encode %s: %w", filepath.Base(path), err)
	}
	return writeFileAtomic(path, append(data, '\n'), 0o644)
}

// readJSON decodes the JSON file at path into v.
func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("process: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("process: decode %s: %w", path, err)
	}
	return nil
}

// exists reports whether path exists (without following a final symlink).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// copyTree copies the directory src to dst, which must not exist. Regular
// files, directories, symlinks, FIFOs and device nodes are copied with their
// permission bits (including setuid, setgid and sticky), their modification
// time and, when running as root, their owner. Sockets are skipped. Hard
// links become separate files. ctx is checked between entries.
func copyTree(ctx context.Context, src, dst string) error {
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("process: copy %s: %w", src, err)
	}
	type dirAttrs struct {
		path string
		info fs.FileInfo
	}
	var dirs []dirAttrs
	root := os.Geteuid() == 0
	err = filepath.WalkDir(src, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := de.Info()
		if err != nil {
			return err
		}
		mode := info.Mode()
		switch {
		case mode.IsDir():
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			// Directories get their attributes once filled (a read-only
			// directory could not be filled otherwise).
			dirs = append(dirs, dirAttrs{target, info})
			return nil
		case mode.IsRegular():
			if err := copyFile(path, target); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
		case mode&(fs.ModeNamedPipe|fs.ModeDevice) != 0:
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok {
				return fmt.Errorf("%s: no stat information", path)
			}
			if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
				return &fs.PathError{Op: "mknod", Path: target, Err: err}
			}
		default:
			return nil // sockets and other special files
		}
		return setAttrs(target, info, root)
	})
	if err != nil {
		return fmt.Errorf("process: copy %s to %s: %w", src, dst, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setAttrs(dirs[i].path, dirs[i].info, root); err != nil {
			return fmt.Errorf("process: copy %s to %s: %w", src, dst, err)
		}
	}
	return nil
}

// copyFile copies the content of the regular file src to the new file dst.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// setAttrs gives path the owner (when chown is true), mode and modification
// time described by info. The owner is set first: chown clears setuid bits.
func setAttrs(path string, info fs.FileInfo, chown bool) error {
	if st, ok := info.Sys().(*syscall.Stat_t); ok && chown {
		if err := os.Lchown(path, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	mtime := unix.NsecToTimespec(info.ModTime().UnixNano())
	if info.Mode()&fs.ModeSymlink != 0 {
		ts := []unix.Timespec{mtime, mtime}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &fs.PathError{Op: "utimes", Path: path, Err: err}
		}
		return nil
	}
	if err := os.Chmod(path, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return os.Chtimes(path, time.Time{}, info.ModTime())
}

// rotateConsole bounds a console log that a guest appends to through an
// O_APPEND descriptor: when it is larger than limit, its last limit bytes are
// saved as path.1 and the file is truncated in place (renaming it would not
// help: the guest keeps writing to the same inode). Bytes written between the
// copy and the truncation are lost.
func rotateConsole(path string, limit int64) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("process: rotate console: %w", err)
	}
	if fi.Size() <= limit {
		return false, nil
	}
	in, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("process: rotate console: %w", err)
	}
	defer in.Close()
	size := fi.Size()
	tail := io.NewSectionReader(in, size-limit, limit)
	dir, name := filepath.Split(path)
	out, err := os.CreateTemp(dir, tmpPrefix+name+".1-*")
	if err != nil {
		return false, fmt.Errorf("process: rotate console: %w", err)
	}
	if _, err := io.Copy(out, tail); err != nil {
		out.Close()
		os.Remove(out.Name())
		return false, fmt.Errorf("process: rotate console: %w", err)
	}
	if err := out.Close(); err != nil {
		os.Remove(out.Name())
		return false, fmt.Errorf("process: rotate console: %w", err)
	}
	if err := os.Rename(out.Name(), path+".1"); err != nil {
		os.Remove(out.Name())
		return false, fmt.Errorf("process: rotate console: %w", err)
	}
	if err := os.Truncate(path, 0); err != nil {
		return false, fmt.Errorf("process: rotate console: %w", err)
	}
	return true, nil
}
