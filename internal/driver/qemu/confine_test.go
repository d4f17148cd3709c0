package qemu

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestConfine: the VM's user owns only run/, disk/, the overlay and the
// console; the instance directory stays root's; a symlink planted where
// the overlay should be is refused, not followed.
func TestConfine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	const uid = DefaultUIDBase + 7
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Mkdir(filepath.Join(dir, diskDir), 0o700))
	for _, f := range []string{consoleFile, metadataFile, specFile, filepath.Join(diskDir, overlayFile), filepath.Join(diskDir, seedFile)} {
		must(os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644))
	}
	must(confine(dir, uid))
	for _, c := range []struct {
		path     string
		uid, gid int
		mode     os.FileMode
	}{
		{".", 0, uid, 0o710},
		{runDir, uid, uid, 0o700},
		{consoleFile, uid, uid, 0o600},
		{metadataFile, 0, uid, 0o640},
		{specFile, 0, 0, 0o644},
		{diskDir, uid, uid, 0o700},
		{filepath.Join(diskDir, overlayFile), uid, uid, 0o600},
		{filepath.Join(diskDir, seedFile), 0, uid, 0o440},
	} {
		fi, err := os.Lstat(filepath.Join(dir, c.path))
		must(err)
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != c.uid || int(st.Gid) != c.gid || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: %d:%d %v, want %d:%d %v", c.path, st.Uid, st.Gid, fi.Mode().Perm(), c.uid, c.gid, c.mode)
		}
	}

	// The VM's user may write into disk/: a link to a host file there is
	// never chowned nor chmodded through.
	victim := filepath.Join(t.TempDir(), "operator.json")
	must(os.WriteFile(victim, []byte("secret"), 0o600))
	overlay := filepath.Join(dir, diskDir, overlayFile)
	must(os.Remove(overlay))
	must(os.Symlink(victim, overlay))
	if err := confine(dir, uid); err == nil {
		t.Error("confine followed or accepted a symlink in place of the overlay")
	}
	fi, err := os.Stat(victim)
	must(err)
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("the link's target became %d %v", st.Uid, fi.Mode().Perm())
	}
}
