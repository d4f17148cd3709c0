// Package hostproc is what the drivers share about the host processes they
// run (guests, QEMU): identifying a process by its pid and start time in
// /proc/<pid>/stat, so that a recycled pid is never mistaken for it;
// starting one in its own session, so that it outlives vmssd; waiting for
// it to exit without a thread per process; reaping it; and spacing the
// restarts of one that keeps failing.
package hostproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Stat is what this package reads from /proc/<pid>/stat.
type Stat struct {
	State   byte   // field 3: R, S, D, Z, X, ...
	Session int    // field 6: session id
	Start   uint64 // field 22: start time, clock ticks after boot
}

// Zombie reports whether the process has exited (but is not reaped yet).
func (s Stat) Zombie() bool {
	return s.State == 'Z' || s.State == 'X' || s.State == 'x'
}

// parseStat parses the content of /proc/<pid>/stat. The command name
// (field 2) is parenthesized and may contain spaces and parentheses, so
// fields are counted from the last ')'.
func parseStat(b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, errors.New("hostproc: malformed /proc stat: no command name")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3
	const (
		stateField   = 3
		sessionField = 6
		startField   = 22
	)
	if len(f) < startField-2 {
		return Stat{}, fmt.Errorf("hostproc: malformed /proc stat: %d fields", len(f)+2)
	}
	if len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("hostproc: malformed /proc stat state %q", f[0])
	}
	sid, err := strconv.Atoi(string(f[sessionField-3]))
	if err != nil {
		return Stat{}, fmt.Errorf("hostproc: malformed /proc stat session: %w", err)
	}
	start, err := strconv.ParseUint(string(f[startField-3]), 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("hostproc: malformed /proc stat start time: %w", err)
	}
	return Stat{State: f[0][0], Session: sid, Start: start}, nil
}

// ReadStat reads /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	return parseStat(b)
}

// Alive reports whether pid is a live (not zombie) process started at start
// (a start of 0 matches any process).
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := ReadStat(pid)
	if err != nil {
		return false
	}
	return (start == 0 || st.Start == start) && !st.Zombie()
}

// Spawn starts name with argv in dir, with environment env, standard input
// from /dev/null, standard output and error to out and extra as its
// descriptors 3, 4, ... (a TAP device for QEMU). The process leads
// its own session and process group: it outlives vmssd, and a signal to
// the group reaches whatever it starts. Spawn returns its pid and start
// time (0 if it could not be read) and releases it: the caller waits with
// WaitExit and reaps it with Reap.
func Spawn(name string, argv []string, dir string, env []string, out *os.File, extra ...*os.File) (pid int, start uint64, err error) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		return 0, 0, err
	}
	defer null.Close()
	p, err := os.StartProcess(name, argv, &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: append([]*os.File{null, out, out}, extra...),
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return 0, 0, err
	}
	pid = p.Pid
	// The child is not reaped before it is waited for, so its stat is
	// readable even if it already exited.
	if st, err := ReadStat(pid); err == nil {
		start = st.Start
	}
	p.Release()
	return pid, start, nil
}

// Reap is called once the process pid has exited (WaitExit): when it is a
// child of this process it reaps it, waiting up to about a second for it to
// become waitable, and says how it ended ("exited with status 1", "was
// killed by SIGKILL"); otherwise (a process adopted from a previous vmssd,
// whose status is unknown) it says "exited".
func Reap(pid int) string {
	for range 100 {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil { // ECHILD: not a child of this process
			break
		}
		if wpid == pid {
			return describeWait(ws)
		}
		time.Sleep(10 * time.Millisecond) // exited, not yet waitable
	}
	return "exited"
}

// describeWait says how a process ended.
func describeWait(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exited with status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		return "was killed by " + unix.SignalName(ws.Signal())
	default:
		return "exited"
	}
}
