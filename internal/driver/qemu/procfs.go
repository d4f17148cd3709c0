package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// procStat is what this package reads from /proc/<pid>/stat.
type procStat struct {
	State byte   // field 3: R, S, D, Z, X, ...
	Start uint64 // field 22: start time, clock ticks after boot
}

func (s procStat) zombie() bool {
	return s.State == 'Z' || s.State == 'X' || s.State == 'x'
}

// parseProcStat parses /proc/<pid>/stat. The command name (field 2) is
// parenthesized and may contain spaces and parentheses, so fields are
// counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("qemu: malformed /proc stat: no command name")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3
	const startField = 22
	if len(f) < startField-2 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("qemu: malformed /proc stat (%d fields)", len(f)+2)
	}
	start, err := strconv.ParseUint(string(f[startField-3]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("qemu: malformed /proc stat start time: %w", err)
	}
	return procStat{State: f[0][0], Start: start}, nil
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(b)
}

// alive reports whether pid is a live (not zombie) process started at start
// (a start of 0 matches any process).
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readProcStat(pid)
	if err != nil {
		return false
	}
	return (start == 0 || st.Start == start) && !st.zombie()
}

// isInstanceQEMU reports whether pid is a live QEMU running in dir (the
// driver starts QEMU with the instance directory as its working directory),
// and returns its start time.
func isInstanceQEMU(pid int, dir string) (uint64, bool) {
	if pid <= 0 {
		return 0, false
	}
	st, err := readProcStat(pid)
	if err != nil || st.zombie() {
		return 0, false
	}
	p := "/proc/" + strconv.Itoa(pid)
	cwd, err := os.Readlink(p + "/cwd")
	if err != nil || filepath.Clean(cwd) != filepath.Clean(dir) {
		return 0, false
	}
	exe, err := os.Readlink(p + "/exe")
	if err != nil || !strings.Contains(filepath.Base(exe), "qemu") {
		return 0, false
	}
	return st.Start, true
}

// readPidfile reads a pid file QEMU wrote (0 if there is none).
func readPidfile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// waitExit blocks until the process pid (with start time start) has exited,
// and reports true, or until ctx is done, and reports false. It uses a pidfd
// registered with the Go netpoller, so waiting costs no thread; where pidfds
// are not available it polls /proc every interval.
func waitExit(ctx context.Context, pid int, start uint64, interval time.Duration) bool {
	if exited, ok := waitPidfd(ctx, pid, start); ok {
		return exited
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if !alive(pid, start) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// waitPidfd is waitExit with a pidfd. ok is false when pidfds cannot be used.
func waitPidfd(ctx context.Context, pid int, start uint64) (exited, ok bool) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return true, true
	}
	if err != nil {
		return false, false
	}
	// The pid may have been reused before pidfd_open: check that the pidfd
	// refers to our process (if it exited after the open, the pidfd says
	// so).
	if !alive(pid, start) {
		unix.Close(fd)
		return true, true
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return false, false // not pollable
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, false
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 0)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err != nil || (n > 0 && fds[0].Revents != 0)
		}
	})
	switch {
	case err == nil:
		return true, true
	case ctx.Err() != nil:
		return false, true
	default:
		return false, false
	}
}
