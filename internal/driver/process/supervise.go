package process

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/portpool"
	"github.com/vmssd/vmssd/internal/driver/sandbox"
)

// killTimeout bounds the wait for a guest to exit after SIGKILL.
const killTimeout = 10 * time.Second

// stableAfter is how long a guest must run for its next crash to restart it
// without accumulated backoff.
const stableAfter = 10 * time.Second

// proc is one guest process: a child vmssd spawned or a process it adopted
// after a restart. The guest leads its own session and process group, so its
// pid is also its process group id.
type proc struct {
	pid   int
	start uint64    // /proc/<pid>/stat start time
	began time.Time // when vmssd spawned or adopted it

	// done is closed once the process has exited (and was reaped when it is
	// a child); exit describes how it ended.
	done chan struct{}
	exit string

	// For a container's init process: cleanup removes the container and
	// its forward once it ended (reap calls it); fw is the forward.
	cleanup func()
	fw      *sandbox.Forwarder
}

func newProc(pid int, start uint64) *proc {
	return &proc{pid: pid, start: start, began: time.Now(), done: make(chan struct{})}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the guest's process group (the guest and whatever it
// started). While the guest has not been seen exiting, its zombie or live
// leader pins the group id, so the group cannot be somebody else's.
func (p *proc) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	err := unix.Kill(-p.pid, sig)
	if errors.Is(err, unix.ESRCH) {
		// The leader moved to another group: signal it alone.
		err = nil
		if hostproc.Alive(p.pid, p.start) {
			err = unix.Kill(p.pid, sig)
		}
	}
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("process: signal %d: %w", p.pid, err)
	}
	return nil
}

// reap is called once the guest has exited: it kills what is left of its
// process group (so that a leftover child does not keep the port), reaps the
// guest if it is a child of this process, records how it ended and closes
// done.
func (p *proc) reap() {
	// Skip the group kill if the pid was recycled by a new group leader
	// (possible only for a non-child reaped by init in the meantime).
	if st, err := hostproc.ReadStat(p.pid); err != nil || st.Start == p.start {
		_ = unix.Kill(-p.pid, unix.SIGKILL)
	}
	p.exit = hostproc.Reap(p.pid)
	if p.cleanup != nil {
		p.cleanup()
	}
	close(p.done)
}

// goWatch starts supervising p. It returns false (and does not) once the
// driver is closed: the guest then runs unsupervised until the next Recover.
func (d *Driver) goWatch(in *instance, p *proc) bool {
	return d.tab.Go(func() { d.watch(in, p) })
}

// goRestart schedules a supervisor restart of in after delay. Called with
// Op held.
func (d *Driver) goRestart(in *instance, delay time.Duration) {
	ctx := in.ArmRestart(d.ctx)
	d.tab.Go(func() { d.restartLoop(in, ctx, delay) })
}

// watch is the supervisor of one guest process: it waits for the process to
// exit and, if the instance should still be running, restarts it.
func (d *Driver) watch(in *instance, p *proc) {
	if !hostproc.WaitExit(d.ctx, p.pid, p.start, d.opts.PollInterval) {
		return // driver closed
	}
	p.reap()

	in.Op.Lock(context.Background())
	if d.ctx.Err() != nil || in.proc != p {
		// Closed, or an operation (Stop, Delete, ...) owns the exit.
		in.Op.Unlock()
		return
	}
	in.LastExit = p.exit
	uptime := time.Since(p.began)
	var (
		restart bool
		delay   time.Duration
	)
	in.Mu.Lock()
	in.proc = nil
	in.st.PID, in.st.StartTime = 0, 0
	switch in.st.Desired {
	case driver.PowerRunning:
		restart = true
		delay = in.NextBackoff(d.backoff, uptime)
		in.st.SetPower(driver.PowerStarting, fmt.Sprintf("guest %s unexpectedly; restarting it in %s", p.exit, delay))
	default:
		// An operation gave up waiting (cancelled context) but the guest
		// has now exited as asked.
		in.st.SetPower(in.st.Desired, "guest "+p.exit)
	}
	in.Mu.Unlock()
	if err := in.persist(); err != nil {
		d.log.Error("persist instance state", "id", in.ID, "err", err)
	}
	var ctx context.Context
	if restart {
		d.log.Warn("guest exited unexpectedly", "id", in.ID, "pid", p.pid, "exit", p.exit, "restartIn", delay)
		ctx = in.ArmRestart(d.ctx)
	}
	in.Op.Unlock()
	if restart {
		d.restartLoop(in, ctx, delay)
	}
}

// restartLoop waits delay, then starts the guest again, retrying with
// backoff until it starts or ctx is cancelled (by an operation or Close).
func (d *Driver) restartLoop(in *instance, ctx context.Context, delay time.Duration) {
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		in.Op.Lock(context.Background())
		if ctx.Err() != nil {
			in.Op.Unlock()
			return
		}
		err := d.spawnLocked(in, true)
		if err == nil {
			in.Op.Unlock()
			return
		}
		delay = in.NextBackoff(d.backoff, 0)
		in.update(func(st *state) {
			st.SetPower(driver.PowerStarting, fmt.Sprintf("start failed: %v; retrying in %s", err, delay))
		})
		if perr := in.persist(); perr != nil {
			d.log.Error("persist instance state", "id", in.ID, "err", perr)
		}
		d.log.Error("restart guest", "id", in.ID, "err", err, "retryIn", delay)
		in.Op.Unlock()
	}
}

// spawnLocked starts the guest of in and supervises it. restart says the
// supervisor restarts a guest that ended (counted in Restarts). Called with
// op held, the desired power already running and persisted.
func (d *Driver) spawnLocked(in *instance, restart bool) error {
	if in.lostDir() {
		// Rebuild it first (repairLocked starts nothing: no guest runs).
		if _, err := d.repairLocked(d.ctx, in); err != nil {
			return err
		}
	}
	port, err := d.ensurePortLocked(in)
	if err != nil {
		return err
	}
	in.Mu.Lock()
	spec, m := in.Spec, in.manifest
	in.Mu.Unlock()

	if err := writeJSONAtomic(in.Path(metadataFile), spec.Metadata); err != nil {
		return err
	}
	var (
		pid   int
		start uint64
		p     *proc
	)
	if in.isolation() == IsolationRunc {
		if d.sb == nil {
			return fmt.Errorf("%w: the instance runs in a container and %v", driver.ErrSandboxUnavailable, cmp.Or(d.sandboxErr, errors.New("this driver runs plain processes")))
		}
		console, err := d.openConsole(in)
		if err != nil {
			return err
		}
		p, err = d.spawnContainer(in, port, spec, m, console)
		console.Close()
		if err != nil {
			return err
		}
		pid, start = p.pid, p.start
	} else {
		var err error
		if pid, start, err = d.spawnPlain(in, port, m); err != nil {
			return err
		}
		p = newProc(pid, start)
		in.update(func(st *state) { st.Network = "" }) // loopback only
	}

	msg := ""
	if restart {
		msg = "restarted by the supervisor after the guest " + in.LastExit
	}
	in.Mu.Lock()
	in.proc = p
	in.st.PID, in.st.StartTime = pid, start
	if restart {
		in.st.Restarts++
	}
	in.st.SetPower(driver.PowerRunning, msg)
	in.Mu.Unlock()
	if err := in.persist(); err != nil {
		// The guest runs; Recover finds it by its environment if needed.
		d.log.Error("persist instance state", "id", in.ID, "err", err)
	}
	d.log.Info("guest started", "id", in.ID, "pid", pid, "port", port, "restart", restart, "isolation", in.isolation())
	d.goWatch(in, p)
	return nil
}

// openConsole rotates console.log if needed and opens it for appending.
func (d *Driver) openConsole(in *instance) (*os.File, error) {
	if _, err := rotateConsole(in.Path(consoleFile), d.opts.ConsoleMaxBytes); err != nil {
		d.log.Warn("rotate console", "id", in.ID, "err", err)
	}
	console, err := os.OpenFile(in.Path(consoleFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("process: open console: %w", err)
	}
	return console, nil
}

// spawnPlain starts the guest of in as a plain host process.
func (d *Driver) spawnPlain(in *instance, port int, m manifest) (int, uint64, error) {
	disk := in.Path(diskDir)
	argv := m.command(d.opts.GuestBinary)
	if len(argv) == 0 {
		return 0, 0, fmt.Errorf("%w: no entrypoint", driver.ErrImageInvalid)
	}
	name, err := resolveCommand(argv[0], disk, m.Env)
	if err != nil {
		return 0, 0, err
	}
	env := make([]string, 0, len(m.Env)+3)
	for _, k := range slices.Sorted(maps.Keys(m.Env)) {
		env = append(env, k+"="+m.Env[k])
	}
	env = append(env,
		envPort+"="+strconv.Itoa(port),
		envMetadata+"="+in.Path(metadataFile),
		envDisk+"="+disk,
	)

	console, err := d.openConsole(in)
	if err != nil {
		return 0, 0, err
	}
	defer console.Close()
	// Own session and process group: the guest outlives vmssd, and signals
	// reach everything it starts.
	pid, start, err := hostproc.Spawn(name, argv, disk, env, console)
	if err != nil {
		return 0, 0, fmt.Errorf("process: start guest: %w", err)
	}
	return pid, start, nil
}

// ensurePortLocked returns the instance's port, allocating one when it has
// none or when its reserved port was taken by another program meanwhile.
// Called with op held.
func (d *Driver) ensurePortLocked(in *instance) (int, error) {
	in.Mu.Lock()
	port := in.st.Port
	in.Mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	if port != 0 {
		if d.ports.Owner(port) == in.ID && portpool.Free(port) {
			return port, nil
		}
		d.log.Warn("reserved port is not free, moving the instance", "id", in.ID, "port", port)
		d.ports.Release(port, in.ID)
	}
	port, err := d.ports.Allocate(in.ID)
	if err != nil {
		return 0, fmt.Errorf("process: %w", err)
	}
	in.Mu.Lock()
	in.st.Port = port
	in.Mu.Unlock()
	return port, nil
}

// releasePortLocked gives the instance's port back. Called with op held.
func (d *Driver) releasePortLocked(in *instance) {
	in.Mu.Lock()
	port := in.st.Port
	in.st.Port = 0
	in.Mu.Unlock()
	if port != 0 {
		d.mu.Lock()
		d.ports.Release(port, in.ID)
		d.mu.Unlock()
	}
}

// stopProcLocked stops the guest of in, if any: SIGTERM to its process
// group and up to StopTimeout for it to exit when graceful (cut short by ctx),
// then SIGKILL. Called with op held.
func (d *Driver) stopProcLocked(ctx context.Context, in *instance, graceful bool) error {
	in.CancelRestart()
	in.Mu.Lock()
	p := in.proc
	in.Mu.Unlock()
	if p == nil {
		return nil
	}
	if graceful && !p.exited() {
		if err := p.signal(unix.SIGTERM); err != nil {
			return err
		}
		t := time.NewTimer(d.opts.StopTimeout)
		select {
		case <-p.done:
		case <-t.C:
			d.log.Warn("guest ignored SIGTERM, killing it", "id", in.ID, "pid", p.pid, "timeout", d.opts.StopTimeout)
		case <-ctx.Done():
		case <-d.ctx.Done():
			t.Stop()
			return ErrClosed
		}
		t.Stop()
	}
	if !p.exited() {
		if err := p.signal(unix.SIGKILL); err != nil {
			return err
		}
		t := time.NewTimer(killTimeout)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			return fmt.Errorf("process: guest %d did not exit %s after SIGKILL", p.pid, killTimeout)
		case <-d.ctx.Done():
			return ErrClosed
		}
	}
	in.LastExit = p.exit
	in.Mu.Lock()
	in.proc = nil
	in.st.PID, in.st.StartTime = 0, 0
	in.Mu.Unlock()
	return nil
}

// resolveCommand finds the program to run: an absolute path as is, a path
// with a slash relative to the disk, a bare name in the PATH of the image's
// environment (or of vmssd when the image sets none).
func resolveCommand(name, disk string, env map[string]string) (string, error) {
	switch {
	case filepath.IsAbs(name):
		return name, nil
	case strings.Contains(name, "/"):
		return filepath.Join(disk, name), nil
	}
	path, ok := env["PATH"]
	if !ok {
		path = os.Getenv("PATH")
	}
	for dir := range strings.SplitSeq(path, ":") {
		if dir == "" {
			dir = "."
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(disk, dir)
		}
		cand := filepath.Join(dir, name)
		if fi, err := os.Stat(cand); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return cand, nil
		}
	}
	return "", fmt.Errorf("process: entrypoint %q: %w", name, fs.ErrNotExist)
}
