package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// procStat is what this package reads from /proc/<pid>/stat.
type procStat struct {
	State   byte   // field 3: R, S, D, Z, X, ...
	Session int    // field 6: session id
	Start   uint64 // field 22: start time, clock ticks after boot
}

// zombie reports whether the process has exited (but is not reaped yet).
func (s procStat) zombie() bool {
	return s.State == 'Z' || s.State == 'X' || s.State == 'x'
}

// parseProcStat parses the content of /proc/<pid>/stat. The command name
// (field 2) is parenthesized and may contain spaces and parentheses, so
// fields are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("process: malformed /proc stat: no command name")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3
	const (
		stateField   = 3
		sessionField = 6
		startField   = 22
	)
	if len(f) < startField-2 {
		return procStat{}, fmt.Errorf("process: malformed /proc stat: %d fields", len(f)+2)
	}
	if len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("process: malformed /proc stat state %q", f[0])
	}
	sid, err := strconv.Atoi(string(f[sessionField-3]))
	if err != nil {
		return procStat{}, fmt.Errorf("process: malformed /proc stat session: %w", err)
	}
	start, err := strconv.ParseUint(string(f[startField-3]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("process: malformed /proc stat start time: %w", err)
	}
	return procStat{State: f[0][0], Session: sid, Start: start}, nil
}

// readProcStat reads /proc/<pid>/stat.
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

// waitExit blocks until the process pid (with start time start) has exited,
// and reports true, or until ctx is done, and reports false. It uses a pidfd
// registered with the Go netpoller, so that a thousand waiting instances
// cost a thousand idle goroutines and no threads; where pidfds are not
// available it polls /proc every interval.
func waitExit(ctx context.Context, pid int, start uint64, interval time.Duration) bool {
	if exited, ok := waitPidfd(ctx, pid, start); ok {
		return exited
	}
	return pollExit(ctx, pid, start, interval)
}

// pollExit is waitExit by polling /proc every interval.
func pollExit(ctx context.Context, pid int, start uint64, interval time.Duration) bool {
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

// waitPidfd is waitExit with a pidfd. ok is false when pidfds cannot be used
// (old kernel, seccomp, no netpoller support), and the caller must poll.
func waitPidfd(ctx context.Context, pid int, start uint64) (exited, ok bool) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return true, true
	}
	if err != nil {
		return false, false
	}
	// The pid may have been reused before pidfd_open: check that the pidfd
	// refers to our process. If it exited after the open, the pidfd reports
	// it, so checking after the open is enough.
	if !alive(pid, start) {
		unix.Close(fd)
		return true, true
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	// SetReadDeadline fails unless the file was registered with the
	// netpoller; deadlines are also how ctx interrupts the wait.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		return false, false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false, false
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool { return pidfdReadable(int(fd)) })
	switch {
	case err == nil:
		return true, true
	case ctx.Err() != nil:
		return false, true
	default:
		return false, false
	}
}

// pidfdReadable reports whether a pidfd is readable, that is whether its
// process has exited.
func pidfdReadable(fd int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		// On an unexpected error, report readiness: the caller then
		// double-checks liveness through /proc.
		return err != nil || (n > 0 && fds[0].Revents != 0)
	}
}

// guestProc is a process found by scanGuests.
type guestProc struct {
	PID   int
	Start uint64
	// Leader is true for a session leader: the process vmssd spawned (the
	// guest's own children are in its session but do not lead it).
	Leader bool
	// Session is the process's session id.
	Session int
	// Port is the VMSSD_PORT the guest was started with (0 if unknown).
	Port int
}

// scanGuests finds the live processes whose environment has
// VMSSD_DISK=<disk>, keyed by disk. It finds guests that vmssd spawned but
// did not record (vmssd was killed between the spawn and the state write).
func scanGuests() (map[string][]guestProc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("process: scan /proc: %w", err)
	}
	prefix := []byte(envDisk + "=")
	portPrefix := []byte(envPort + "=")
	self := os.Getpid()
	out := make(map[string][]guestProc)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		var disk string
		port := 0
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, prefix); ok {
				disk = string(v)
			} else if v, ok := bytes.CutPrefix(kv, portPrefix); ok {
				port, _ = strconv.Atoi(string(v))
			}
		}
		if disk == "" {
			continue
		}
		st, err := readProcStat(pid)
		if err != nil || st.zombie() {
			continue
		}
		out[disk] = append(out[disk], guestProc{PID: pid, Start: st.Start, Leader: st.Session == pid, Session: st.Session, Port: port})
	}
	return out, nil
}
