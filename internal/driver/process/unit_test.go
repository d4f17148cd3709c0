package process

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseProcStat(t *testing.T) {
	tail := " 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 987654 23 24"
	tests := []struct {
		name string
		in   string
		want procStat
		ok   bool
	}{
		{"plain", "42 (guest) S 1 42 42" + tail, procStat{State: 'S', Session: 42, Start: 987654}, true},
		{"spaces and parens", "42 (a) b (c)) Z 1 7 9" + tail, procStat{State: 'Z', Session: 9, Start: 987654}, true},
		{"no name", "42 guest S 1 42 42" + tail, procStat{}, false},
		{"short", "42 (guest) S 1 42 42 0 0", procStat{}, false},
		{"bad start", "42 (guest) S 1 42 42" + strings.Replace(tail, "987654", "x", 1), procStat{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat([]byte(tc.in))
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseProcStat = %+v, %v; want %+v, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
	self, err := readProcStat(os.Getpid())
	if err != nil || self.Start == 0 || self.zombie() {
		t.Errorf("readProcStat(self) = %+v, %v", self, err)
	}
	if !alive(os.Getpid(), self.Start) || alive(os.Getpid(), self.Start+1) {
		t.Error("alive does not check the start time")
	}
}

func TestNextBackoff(t *testing.T) {
	o := Options{RestartBackoff: 100 * time.Millisecond, MaxRestartBackoff: time.Second}
	in := &instance{}
	var got []time.Duration
	for range 6 {
		got = append(got, in.nextBackoff(o, time.Second))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoffs = %v, want %v ms", got, want)
		}
	}
	if d := in.nextBackoff(o, stableAfter); d != o.RestartBackoff {
		t.Errorf("after a stable run: %s, want %s", d, o.RestartBackoff)
	}
}

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
	if err := copyTree(t.Context(), src, dst); err != nil {
		t.Fatalf("copyTree: %v", err)
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
	if err := copyTree(t.Context(), src, dst); err == nil {
		t.Error("copyTree onto an existing directory succeeded")
	}
}

func TestRotateConsole(t *testing.T) {
	p := filepath.Join(t.TempDir(), consoleFile)
	if rotated, err := rotateConsole(p, 10); rotated || err != nil {
		t.Errorf("missing console: %v %v", rotated, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("0123456789abcdef")
	rotated, err := rotateConsole(p, 10)
	if !rotated || err != nil {
		t.Fatalf("rotateConsole = %v, %v", rotated, err)
	}
	f.WriteString("new") // the guest's O_APPEND descriptor keeps working
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("console after rotation = %q, want new", b)
	}
	if b, _ := os.ReadFile(p + ".1"); string(b) != "6789abcdef" {
		t.Errorf("console.1 = %q, want the last 10 bytes", b)
	}
}

func TestWaitExitInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	st, err := readProcStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool)
	go func() { done <- waitExit(ctx, os.Getpid(), st.Start, 10*time.Millisecond) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case exited := <-done:
		if exited {
			t.Error("waitExit reported this process as exited")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitExit ignored the cancellation")
	}
	if !waitExit(t.Context(), os.Getpid(), st.Start+1, 10*time.Millisecond) {
		t.Error("waitExit does not treat another start time as exited")
	}
}

// TestExitDetection checks both ways of waiting for a guest: the pidfd and
// the polling fallback, on a child that has not been reaped (a zombie).
func TestExitDetection(t *testing.T) {
	waiters := []struct {
		name string
		wait func(ctx context.Context, pid int, start uint64) bool
	}{
		{"pidfd", func(ctx context.Context, pid int, start uint64) bool {
			exited, ok := waitPidfd(ctx, pid, start)
			return exited && ok
		}},
		{"poll", func(ctx context.Context, pid int, start uint64) bool {
			return pollExit(ctx, pid, start, 10*time.Millisecond)
		}},
	}
	for _, w := range waiters {
		t.Run(w.name, func(t *testing.T) {
			if w.name == "pidfd" {
				fd, err := unix.PidfdOpen(os.Getpid(), unix.PIDFD_NONBLOCK)
				if err != nil {
					t.Skipf("no pidfd support: %v", err)
				}
				unix.Close(fd)
			}
			cmd := exec.Command("/bin/sleep", "60")
			if err := cmd.Start(); err != nil {
				t.Skip(err)
			}
			defer cmd.Wait()
			st, err := readProcStat(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan bool, 1)
			go func() { done <- w.wait(t.Context(), cmd.Process.Pid, st.Start) }()
			select {
			case <-done:
				t.Fatal("reported a live process as exited")
			case <-time.After(100 * time.Millisecond):
			}
			cmd.Process.Kill()
			select {
			case exited := <-done:
				if !exited {
					t.Error("exit not reported")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("exit not detected")
			}
		})
	}
}
