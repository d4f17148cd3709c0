package fsutil

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCopyTree(t *testing.T) {
	src := t.TempDir()
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	mk := func(rel string, mode os.FileMode, data string) {
		p := filepath.Join(src, rel)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mtime, mtime)
	}
	os.MkdirAll(filepath.Join(src, "ro/sub"), 0o755)
	mk("ro/sub/file", 0o644, "deep")
	mk("exec", 0o755, "#!/bin/sh\n")
	mk("setuid", 0o4755|os.ModeSetuid, "s")
	os.Symlink("exec", filepath.Join(src, "link"))
	os.Symlink("/nonexistent", filepath.Join(src, "dangling"))
	if err := unix.Mkfifo(filepath.Join(src, "fifo"), 0o640); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(src, "ro"), 0o555) // filled before it becomes read-only
	os.Chmod(filepath.Join(src, "ro/sub"), 0o1777|os.ModeSticky)
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "ro"), 0o755) })

	dst := filepath.Join(t.TempDir(), "disk")
	if err := CopyTree(t.Context(), src, dst); err != nil {
		t.Fatalf("CopyTree: %v", err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(dst, "ro"), 0o755) })

	err := filepath.Walk(src, func(p string, want os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		got, err := os.Lstat(filepath.Join(dst, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			return nil
		}
		if got.Mode() != want.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, got.Mode(), want.Mode())
		}
		if want.Mode().IsRegular() {
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(filepath.Join(dst, rel))
			if string(a) != string(b) {
				t.Errorf("%s: content %q, want %q", rel, b, a)
			}
		}
		if want.Mode()&os.ModeSymlink != 0 {
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(filepath.Join(dst, rel))
			if a != b {
				t.Errorf("%s: link %q, want %q", rel, b, a)
			}
		}
		if !got.ModTime().Equal(want.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", rel, got.ModTime(), want.ModTime())
		}
		ws, gs := want.Sys().(*syscall.Stat_t), got.Sys().(*syscall.Stat_t)
		if os.Geteuid() == 0 && (ws.Uid != gs.Uid || ws.Gid != gs.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, gs.Uid, gs.Gid, ws.Uid, ws.Gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := CopyTree(t.Context(), src, dst); err == nil {
		t.Error("CopyTree onto an existing directory succeeded")
	}
}

func TestCopyTreeCancelled(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := CopyTree(ctx, src, filepath.Join(t.TempDir(), "dst")); err == nil {
		t.Error("a cancelled copy succeeded")
	}
	if err := CopyTree(t.Context(), filepath.Join(src, "missing"), filepath.Join(t.TempDir(), "dst")); err == nil {
		t.Error("copying a missing tree succeeded")
	}
}
