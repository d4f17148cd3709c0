package hostproc

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// WaitExit blocks until the process pid (with start time start) has exited,
// and reports true, or until ctx is done, and reports false. It uses a pidfd
// registered with the Go netpoller, so that a thousand waiting processes
// cost a thousand idle goroutines and no threads; where pidfds are not
// available it polls /proc every interval.
func WaitExit(ctx context.Context, pid int, start uint64, interval time.Duration) bool {
	if exited, ok := waitPidfd(ctx, pid, start); ok {
		return exited
	}
	return pollExit(ctx, pid, start, interval)
}

// pollExit is WaitExit by polling /proc every interval.
func pollExit(ctx context.Context, pid int, start uint64, interval time.Duration) bool {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if !Alive(pid, start) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// waitPidfd is WaitExit with a pidfd. ok is false when pidfds cannot be used
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
	if !Alive(pid, start) {
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
