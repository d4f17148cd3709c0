package hostproc

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseStat(t *testing.T) {
	tail := " 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 987654 23 24"
	tests := []struct {
		name string
		in   string
		want Stat
		ok   bool
	}{
		{"plain", "42 (guest) S 1 42 42" + tail, Stat{State: 'S', Session: 42, Start: 987654}, true},
		{"spaces and parens", "42 (a) b (c)) Z 1 7 9" + tail, Stat{State: 'Z', Session: 9, Start: 987654}, true},
		{"no name", "42 guest S 1 42 42" + tail, Stat{}, false},
		{"short", "42 (guest) S 1 42 42 0 0", Stat{}, false},
		{"bad start", "42 (guest) S 1 42 42" + strings.Replace(tail, "987654", "x", 1), Stat{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.in))
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseStat = %+v, %v; want %+v, ok %v", got, err, tc.want, tc.ok)
			}
		})
	}
	self, err := ReadStat(os.Getpid())
	if err != nil || self.Start == 0 || self.Zombie() {
		t.Errorf("ReadStat(self) = %+v, %v", self, err)
	}
	if !Alive(os.Getpid(), self.Start) || Alive(os.Getpid(), self.Start+1) {
		t.Error("Alive does not check the start time")
	}
}

func TestWaitExitInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan bool)
	go func() { done <- WaitExit(ctx, os.Getpid(), st.Start, 10*time.Millisecond) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case exited := <-done:
		if exited {
			t.Error("WaitExit reported this process as exited")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitExit ignored the cancellation")
	}
	if !WaitExit(t.Context(), os.Getpid(), st.Start+1, 10*time.Millisecond) {
		t.Error("WaitExit does not treat another start time as exited")
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
			st, err := ReadStat(cmd.Process.Pid)
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

// spawn starts a shell running script with Spawn, its output in a file.
func spawn(t *testing.T, script string) (pid int, start uint64, out string) {
	t.Helper()
	dir := t.TempDir()
	out = filepath.Join(dir, "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pid, start, err = Spawn("/bin/sh", []string{"sh", "-c", script}, dir, []string{"X=from-env"}, f)
	if err != nil {
		t.Skip(err)
	}
	return pid, start, out
}

func TestSpawnAndReap(t *testing.T) {
	pid, start, out := spawn(t, `echo "$X $(pwd)"; echo oops >&2; read line; exit 3`)
	st, err := ReadStat(pid)
	if err != nil || start == 0 || st.Start != start {
		t.Fatalf("start time %d, stat %+v, %v", start, st, err)
	}
	if !WaitExit(t.Context(), pid, start, 10*time.Millisecond) {
		t.Fatal("WaitExit: not exited")
	}
	if got := Reap(pid); got != "exited with status 3" {
		t.Errorf("Reap = %q", got)
	}
	b, _ := os.ReadFile(out)
	if want := "from-env " + filepath.Dir(out) + "\noops\n"; string(b) != want {
		t.Errorf("output %q, want %q (stdin must be empty)", b, want)
	}
	if _, err := ReadStat(pid); err == nil {
		t.Error("a reaped process still has a stat")
	}

	pid, start, _ = spawn(t, "exec sleep 60")
	st, err = ReadStat(pid)
	if err != nil || st.Session != pid {
		t.Errorf("session of the spawned process: %+v %v, want %d", st, err, pid)
	}
	unix.Kill(pid, unix.SIGKILL)
	if !WaitExit(t.Context(), pid, start, 10*time.Millisecond) {
		t.Fatal("WaitExit: not exited")
	}
	if got := Reap(pid); got != "was killed by SIGKILL" {
		t.Errorf("Reap = %q", got)
	}
	// Not a child (or already reaped): the status is unknown.
	if got := Reap(pid); got != "exited" {
		t.Errorf("Reap of a non-child = %q", got)
	}
	if _, _, err := Spawn(filepath.Join(t.TempDir(), "missing"), []string{"x"}, "", nil, os.Stderr); err == nil {
		t.Error("spawning a missing program succeeded")
	}
}

func TestAliveNoProcess(t *testing.T) {
	for _, pid := range []int{0, -1} {
		if Alive(pid, 0) {
			t.Errorf("Alive(%d)", pid)
		}
	}
	if got := describeWait(0); got != "exited with status 0" {
		t.Errorf("describeWait(0) = %q", got)
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second, StableAfter: 10 * time.Second}
	failures := 0
	var got []time.Duration
	for range 6 {
		got = append(got, b.Next(&failures, time.Second))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoffs = %v, want %v ms", got, want)
		}
	}
	if failures != 6 {
		t.Errorf("failures = %d, want 6", failures)
	}
	if d := b.Next(&failures, b.StableAfter); d != b.Initial || failures != 1 {
		t.Errorf("after a stable run: %s (failures %d), want %s (1)", d, failures, b.Initial)
	}
	failures = 0
	if d := b.Next(&failures, 0); d != b.Initial {
		t.Errorf("after a reset: %s, want %s", d, b.Initial)
	}
}
