package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// What confines a VM's QEMU, besides the guest being a guest:
//
//   - Disks are opened with explicit block options (-blockdev: the format
//     driver over a "file" node, the overlay's backing given as a node of
//     the image's declared format, a qcow2 image's own backing disabled),
//     so that no image header can name another file or format. Package
//     artifact refuses disks with backing or external data files at import.
//   - The image's files (kernel, initrd, disk) are hard links (copies across
//     file systems) inside the instance's disk directory: QEMU reaches
//     nothing outside its instance directory, and the image may be
//     garbage-collected while instances use it.
//   - QEMU runs under a seccomp filter (sandboxArgs): no obsolete system
//     calls, no set*uid, no fork/exec, no scheduler or cgroup changes.
//   - When vmssd runs as root, each QEMU runs as its own unprivileged user
//     and group (Options.UIDBase plus a slot, no supplementary groups but
//     kvm when it uses KVM, no capabilities, no_new_privs), started through
//     setpriv(1) so that the seccomp filter can forbid set*uid. That user
//     owns only the VM's run/ directory (QMP socket, pid file), its disk/
//     directory and overlay, and its console log; the instance directory
//     is root's, searchable by the VM's group only.
//   - User networking is restricted (restrict=on): the guest reaches
//     nothing on the host or beyond, not even 10.0.2.2; the host reaches
//     the guest only through the loopback port forwards (health, ssh).

// sandboxArgs is QEMU's seccomp filter.
var sandboxArgs = []string{"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"}

// Names inside diskDir of the image's files, linked from the image
// directory.
const (
	kernelLink = "kernel"
	initrdLink = "initrd"
	baseLink   = "base.img"
	// runDir holds what QEMU creates: its QMP socket and pid file.
	runDir = "run"
)

// DefaultUIDBase is the first uid (and gid) of the VMs' users.
const DefaultUIDBase = 1_900_000_000

// maxVMUsers bounds the uids handed out above UIDBase.
const maxVMUsers = 1 << 20

// linkImageFiles links (or copies) the image's kernel, initrd and disk into
// the disk directory dir. Links that exist are kept.
func linkImageFiles(dir string, img image) error {
	for _, f := range []struct{ src, name string }{
		{img.Kernel, kernelLink}, {img.Initrd, initrdLink}, {img.Disk, baseLink},
	} {
		if f.src == "" {
			continue
		}
		dst := filepath.Join(dir, f.name)
		if exists(dst) {
			continue
		}
		if err := os.Link(f.src, dst); err == nil {
			continue
		}
		if err := copyReadOnly(f.src, dst); err != nil {
			return fmt.Errorf("qemu: image file %s: %w", f.name, err)
		}
	}
	return nil
}

// copyReadOnly copies src to a new file dst, mode 0444.
func copyReadOnly(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o444)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// imageArgs returns the QEMU arguments for the image's kernel and disks:
// paths relative to the instance directory, explicit block options.
func imageArgs(img image, cmdline string, cloudInit bool) []string {
	var args []string
	if img.directBoot() {
		args = append(args, "-kernel", diskDir+"/"+kernelLink)
		if img.Initrd != "" {
			args = append(args, "-initrd", diskDir+"/"+initrdLink)
		}
		args = append(args, "-append", cmdline)
	}
	if img.Disk != "" {
		base := map[string]any{
			"driver": img.DiskFormat, "node-name": "base0", "read-only": true,
			"file": fileNode(diskDir+"/"+baseLink, true),
		}
		if img.DiskFormat == "qcow2" {
			base["backing"] = nil // never follow the image's header
		}
		overlay := map[string]any{
			"driver": "qcow2", "node-name": "disk0", "discard": "unmap",
			"file":    fileNode(diskDir+"/"+overlayFile, false),
			"backing": base,
		}
		args = append(args, "-blockdev", mustJSON(overlay), "-device", "virtio-blk-pci,drive=disk0")
	}
	if cloudInit {
		seed := map[string]any{
			"driver": "raw", "node-name": "seed0", "read-only": true,
			"file": fileNode(diskDir+"/"+seedFile, true),
		}
		args = append(args, "-blockdev", mustJSON(seed), "-device", "virtio-blk-pci,drive=seed0")
	}
	return args
}

func fileNode(path string, readOnly bool) map[string]any {
	n := map[string]any{"driver": "file", "filename": path}
	if readOnly {
		n["read-only"] = true
	} else {
		n["discard"] = "unmap"
	}
	return n
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings and bools
	}
	return string(b)
}

// dropsPrivileges reports whether QEMU runs as its own user: when vmssd
// runs as root and UIDBase is not negative.
func (d *Driver) dropsPrivileges() bool {
	return d.opts.UIDBase >= 0 && os.Geteuid() == 0
}

// allocUID returns the uid of in's QEMU: the one it has, or the lowest slot
// above UIDBase that no other instance holds. Called with in's op held.
func (d *Driver) allocUID(in *instance) (int, error) {
	in.Mu.Lock()
	uid := in.st.UID
	in.Mu.Unlock()
	if uid != 0 {
		return uid, nil
	}
	d.uidMu.Lock()
	defer d.uidMu.Unlock()
	others := make([]*instance, 0, d.tab.Len())
	for _, o := range d.tab.Snapshot() {
		if o != in {
			others = append(others, o)
		}
	}
	used := make(map[int]bool, len(others))
	for _, o := range others {
		o.Mu.Lock()
		used[o.st.UID] = true
		o.Mu.Unlock()
	}
	for slot := range maxVMUsers {
		if u := d.opts.UIDBase + slot; !used[u] {
			in.update(func(st *state) { st.UID = u })
			return u, nil
		}
	}
	return 0, errors.New("qemu: no free VM user")
}

// confine gives the VM's user uid what its QEMU must reach in the instance
// directory, and nothing else (see the comment at the top of this file).
// Entries in the directories that user may write are changed without
// following symlinks.
func confine(dir string, uid int) error {
	type step struct {
		path       string
		uid, gid   int
		mode       os.FileMode
		dir, maybe bool
	}
	steps := []step{
		{path: dir, uid: 0, gid: uid, mode: 0o710, dir: true},
		{path: filepath.Join(dir, runDir), uid: uid, gid: uid, mode: 0o700, dir: true},
		{path: filepath.Join(dir, consoleFile), uid: uid, gid: uid, mode: 0o600},
		{path: filepath.Join(dir, metadataFile), uid: 0, gid: uid, mode: 0o640},
		{path: filepath.Join(dir, diskDir), uid: uid, gid: uid, mode: 0o700, dir: true},
		{path: filepath.Join(dir, diskDir, overlayFile), uid: uid, gid: uid, mode: 0o600, maybe: true},
		{path: filepath.Join(dir, diskDir, seedFile), uid: 0, gid: uid, mode: 0o440, maybe: true},
	}
	for _, s := range steps {
		if err := confineOne(s.path, s.uid, s.gid, s.mode, s.dir, s.maybe); err != nil {
			return fmt.Errorf("qemu: confine: %w", err)
		}
	}
	return nil
}

// confineOne sets the owner and mode of path through a descriptor opened
// without following a symlink (nor blocking on a fifo), after checking its
// type. A missing directory is created; a missing file is skipped if maybe.
func confineOne(path string, uid, gid int, mode os.FileMode, dir, maybe bool) error {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		switch {
		case maybe:
			return nil
		case dir:
			if err := os.Mkdir(path, 0o700); err != nil {
				return err
			}
			f, err = os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		}
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if dir && !fi.IsDir() || !dir && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: unexpected file type %s", path, fi.Mode().Type())
	}
	if err := f.Chown(uid, gid); err != nil {
		return err
	}
	return f.Chmod(mode)
}

// setprivArgs returns the setpriv(1) command line that runs QEMU as uid
// (and gid uid), without supplementary groups but kvmGID (when >= 0), with
// no capabilities and no_new_privs.
func setprivArgs(setpriv string, uid, kvmGID int) []string {
	groups := "--clear-groups"
	if kvmGID >= 0 {
		groups = "--groups=" + strconv.Itoa(kvmGID)
	}
	return []string{setpriv, "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(uid), groups,
		"--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"}
}

// kvmGroup returns the group owning /dev/kvm, or -1.
func kvmGroup() int {
	fi, err := os.Stat("/dev/kvm")
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}
