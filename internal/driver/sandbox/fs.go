package sandbox

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ShiftOwner gives every entry of the tree dir the owner it would have
// inside a container with map ids: host uid u becomes ids.HostID+u (and the
// same for gids); ids beyond the map become the container's nobody
// (65534). Modes are kept (chown clears setuid and setgid bits, which are
// set again). This is how a copy of an image's rootfs becomes a lower layer
// that container root owns, without an idmapped mount.
func ShiftOwner(ctx context.Context, dir string, ids IDMap) error {
	ids = ids.withDefaults()
	shift := func(id uint32) int {
		if id >= ids.Size {
			id = min(65534, ids.Size-1)
		}
		return int(ids.HostID + id)
	}
	return filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("sandbox: %s: no stat information", path)
		}
		if err := os.Lchown(path, shift(st.Uid), shift(st.Gid)); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		if info.Mode()&fs.ModeSymlink == 0 && info.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			if err := os.Chmod(path, info.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return fmt.Errorf("sandbox: %w", err)
			}
		}
		return nil
	})
}

// PrepareUpper makes dir (created if needed) the root of a writable layer
// owned by container root of map ids.
func PrepareUpper(dir string, ids IDMap) error {
	ids = ids.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := os.Lchown(dir, int(ids.HostID), int(ids.HostID)); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// GuardDir makes dir (created if needed) reachable by the container ids of
// map ids and nobody else on the host: owner root, group the mapped root's
// gid, mode 0710. Directories on the path to a container's root file
// system need it (the container's root is not root on the host).
func GuardDir(dir string, ids IDMap) error {
	ids = ids.withDefaults()
	if err := os.MkdirAll(dir, 0o710); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := os.Lchown(dir, 0, int(ids.HostID)); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := os.Chmod(dir, 0o710); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	return nil
}

// MountOverlay mounts at target (created if needed) an overlay of the
// read-only lower directory and the writable upper one; work is overlayfs's
// work directory (emptied first), on upper's file system. A target that is
// already a mount point is unmounted first.
func MountOverlay(lower, upper, work, target string) error {
	for _, p := range []string{lower, upper, work, target} {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("sandbox: overlay path %q contains ',' or ':'", p)
		}
	}
	if err := Unmount(target); err != nil {
		return err
	}
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := os.MkdirAll(work, 0o700); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	// nosuid: host users who reach the mount point never gain the ids of
	// setuid files a tenant wrote (in the container no_new_privs applies
	// anyway).
	if err := unix.Mount("overlay", target, "overlay", unix.MS_NODEV|unix.MS_NOSUID, opts); err != nil {
		return fmt.Errorf("sandbox: mount overlay on %s: %w", target, err)
	}
	return nil
}

// Unmount detaches the file system mounted on target, if any (lazily:
// whatever still uses it keeps it until it lets go).
func Unmount(target string) error {
	for range 8 {
		err := unix.Unmount(target, unix.MNT_DETACH)
		switch {
		case err == nil:
			continue // stacked mounts: detach them all
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil // not a mount point (any more)
		case errors.Is(err, unix.EINTR):
			continue
		default:
			return fmt.Errorf("sandbox: unmount %s: %w", target, err)
		}
	}
	return nil
}

// libDirs are where the dynamic loader looks for libraries without a
// cache or RUNPATH, on Debian and elsewhere.
var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// GuestBinds returns the read-only binds a container needs to run the host
// program bin at dest: the program itself and, when it is dynamically
// linked, its ELF interpreter and the shared libraries it needs
// (recursively), each at its host path. Nothing else of the host is
// mounted.
func GuestBinds(bin, dest string) ([]Bind, error) {
	binds := []Bind{{Source: bin, Dest: dest}}
	seen := map[string]bool{}
	queue := []string{bin}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		f, err := elf.Open(p)
		if err != nil {
			return nil, fmt.Errorf("sandbox: guest binary: %w", err)
		}
		var deps []string
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				f.Close()
				return nil, fmt.Errorf("sandbox: %s: interpreter: %w", p, err)
			}
			deps = append(deps, strings.TrimRight(string(b), "\x00"))
		}
		libs, err := f.ImportedLibraries()
		f.Close()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return nil, fmt.Errorf("sandbox: %s: libraries: %w", p, err)
		}
		for _, lib := range libs {
			path, err := findLib(lib)
			if err != nil {
				return nil, fmt.Errorf("sandbox: %s: %w", p, err)
			}
			deps = append(deps, path)
		}
		for _, dep := range deps {
			if seen[dep] {
				continue
			}
			seen[dep] = true
			// Bind the file (the kernel resolves symlinks) at the path the
			// loader asks for.
			binds = append(binds, Bind{Source: dep, Dest: dep})
			if real, err := filepath.EvalSymlinks(dep); err == nil {
				queue = append(queue, real)
			}
		}
	}
	return binds, nil
}

// findLib finds a shared library by its DT_NEEDED name.
func findLib(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range libDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, nil
		}
	}
	return "", fmt.Errorf("shared library %s not found", name)
}

// RemoveCgroups removes the empty cgroup rel (a CgroupsPath's parent, say)
// and the empty cgroups below it, in every hierarchy under /sys/fs/cgroup.
// Cgroups still in use are left alone.
func RemoveCgroups(rel string) {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range append(hierarchies, "/sys/fs/cgroup") {
		dir := filepath.Join(h, rel)
		var dirs []string
		filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			unix.Rmdir(dirs[i])
		}
	}
}

// KillCgroup kills (SIGKILL) every process in the cgroup rel and the
// cgroups below it (read from the pids hierarchy, or the unified one), and
// waits up to timeout for them to be gone. It reports how many processes it
// signalled. This catches what runc no longer knows: a container whose
// state was lost.
func KillCgroup(rel string, timeout time.Duration) (int, error) {
	var roots []string
	for _, h := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		if fi, err := os.Stat(filepath.Join(h, rel)); err == nil && fi.IsDir() {
			roots = append(roots, filepath.Join(h, rel))
		}
	}
	procs := func() []int {
		var pids []int
		for _, root := range roots {
			filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
				if err != nil || !de.IsDir() {
					return nil
				}
				b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
				if err != nil {
					return nil
				}
				for f := range strings.FieldsSeq(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
						pids = append(pids, pid)
					}
				}
				return nil
			})
		}
		return pids
	}
	pids := procs()
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	deadline := time.Now().Add(timeout)
	for len(procs()) > 0 {
		if time.Now().After(deadline) {
			return len(pids), fmt.Errorf("sandbox: processes of cgroup %s still alive after %s", rel, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return len(pids), nil
}
