package fsutil

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CopyTree copies the directory src to dst, which must not exist. Regular
// files, directories, symlinks, FIFOs and device nodes are copied with their
// permission bits (including setuid, setgid and sticky), their modification
// time and, when running as root, their owner. Sockets are skipped. Hard
// links become separate files. ctx is checked between entries. Errors say
// "copy <src> to <dst>" (or "copy <src>" when src cannot be resolved).
func CopyTree(ctx context.Context, src, dst string) error {
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
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
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setAttrs(dirs[i].path, dirs[i].info, root); err != nil {
			return fmt.Errorf("copy %s to %s: %w", src, dst, err)
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
