package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/netattach"
	"github.com/vmssd/vmssd/internal/driver/portpool"
	"github.com/vmssd/vmssd/internal/fsutil"
	"github.com/vmssd/vmssd/internal/qmp"
)

// Timing constants of a VM's life.
const (
	// qmpTimeout bounds the wait for a new QEMU's QMP socket to answer.
	qmpTimeout = 15 * time.Second
	// commandTimeout bounds one QMP command.
	commandTimeout = 5 * time.Second
	// quitTimeout is how long QEMU gets to exit after "quit" (or SIGTERM).
	quitTimeout = 5 * time.Second
	// killTimeout bounds the wait for QEMU to exit after SIGKILL.
	killTimeout = 10 * time.Second
	// stableAfter is how long a VM must run for its next crash to restart
	// it without accumulated backoff.
	stableAfter = 30 * time.Second
	// probeTimeout bounds one boot probe of the health port.
	probeTimeout = 500 * time.Millisecond
)

// vm is one QEMU process: started by this driver or adopted by Recover.
type vm struct {
	pid   int
	start uint64    // /proc/<pid>/stat start time
	began time.Time // when it was started (or adopted)
	accel string
	qmp   *qmp.Client // owned by the watch goroutine; nil if unreachable

	// done is closed once QEMU has exited (and was reaped when it is a
	// child); exit says how it ended.
	done chan struct{}
	exit string

	sigMu  sync.Mutex // orders signals before the reap, so a recycled pid is never signalled
	reaped bool

	// Guarded by instance.mu.
	booted      bool
	deadlineHit bool

	// Owned by the watch goroutine.
	shutdownReason string
}

func newVM(pid int, start uint64, accel string) *vm {
	return &vm{pid: pid, start: start, began: time.Now(), accel: accel, done: make(chan struct{})}
}

func (v *vm) exited() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// signal sends sig to QEMU unless it has been reaped.
func (v *vm) signal(sig syscall.Signal) error {
	v.sigMu.Lock()
	defer v.sigMu.Unlock()
	if v.reaped {
		return nil
	}
	if err := unix.Kill(v.pid, sig); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("qemu: signal %d: %w", v.pid, err)
	}
	return nil
}

// reap is called once QEMU has exited: it reaps it if it is a child of this
// process, records how it ended and closes done.
func (v *vm) reap() {
	v.sigMu.Lock()
	v.reaped = true
	v.exit = hostproc.Reap(v.pid)
	if v.shutdownReason != "" {
		v.exit += " (" + v.shutdownReason + ")"
	}
	v.sigMu.Unlock()
	close(v.done)
}

// execute runs a QMP command with commandTimeout.
func (v *vm) execute(ctx context.Context, command string) error {
	if v.qmp == nil {
		return fmt.Errorf("qemu: %s: no QMP connection", command)
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return v.qmp.Execute(ctx, command, nil, nil)
}

// acquireBoot takes a boot slot, waiting for one (and saying so in the
// instance's message) while MaxConcurrentBoots VMs are booting.
func (d *Driver) acquireBoot(ctx context.Context, in *instance) error {
	select {
	case d.boots <- struct{}{}:
		return nil
	default:
	}
	in.update(func(st *state) {
		st.SetPower(driver.PowerStarting, fmt.Sprintf("waiting for a boot slot (%d VMs booting)", cap(d.boots)))
	})
	select {
	case d.boots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.ctx.Done():
		return ErrClosed
	}
}

func (d *Driver) releaseBoot() { <-d.boots }

// spawnLocked starts QEMU for in and supervises it. The caller holds a boot
// slot, which spawnLocked hands to the boot monitor (or releases on error).
// restart says the supervisor restarts a VM that ended (counted in
// Restarts). It returns once QEMU answers on its QMP socket. Called with op
// held, the desired power already running and persisted.
func (d *Driver) spawnLocked(ctx context.Context, in *instance, restart bool) (err error) {
	handed := false
	defer func() {
		if !handed {
			d.releaseBoot()
		}
	}()
	if err := d.ensurePortsLocked(in); err != nil {
		return err
	}
	in.Mu.Lock()
	spec, img, st := in.Spec, in.img, in.st
	in.Mu.Unlock()

	if err := writeJSONAtomic(in.Path(metadataFile), spec.Metadata); err != nil {
		return err
	}
	// Instances created before the image files were linked get them now.
	if err := linkImageFiles(in.Path(diskDir), img); err != nil {
		return err
	}
	argv := []string{d.opts.QEMU}
	if d.dropsPrivileges() {
		uid, err := d.allocUID(in)
		if err != nil {
			return err
		}
		if err := confine(in.Dir, uid); err != nil {
			return err
		}
		kvm := -1
		if d.accel == AccelKVM {
			kvm = kvmGroup()
		}
		argv = append(setprivArgs(d.opts.Setpriv, uid, kvm), d.opts.QEMU)
	}
	for name, limit := range map[string]int64{consoleFile: d.opts.ConsoleMaxBytes, qemuLogFile: qemuLogMaxBytes} {
		if _, err := rotateLog(in.Path(name), limit); err != nil {
			d.log.Warn("rotate log", "id", in.ID, "err", err)
		}
	}
	if err := os.Remove(in.Path(qmpSocket)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("qemu: remove stale QMP socket: %w", err)
	}
	var consoleOff int64
	if fi, err := os.Stat(in.Path(consoleFile)); err == nil {
		consoleOff = fi.Size()
	}
	accel := d.accel
	// A TAP on the virtual network's bridge, handed to QEMU as descriptor
	// 3; closed here once QEMU has it, it lives as long as QEMU.
	var extra []*os.File
	mode := ""
	if d.net.Wants(spec.Network) {
		tap, err := d.net.CreateTap(in.ID, spec.Network)
		if err != nil {
			return fmt.Errorf("qemu: %w", err)
		}
		defer tap.Close()
		extra, mode = []*os.File{tap}, netattach.ModeBridge
	}
	args := d.qemuArgs(in, spec, img, st, mode != "")

	logf, err := os.OpenFile(in.Path(qemuLogFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("qemu: open QEMU log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "--- %s vmssd starts %q %q\n", time.Now().UTC().Format(time.RFC3339Nano), argv, args)
	// Own session and process group: QEMU survives vmssd (even a SIGKILL
	// of vmssd) and is re-adopted by Recover.
	pid, start, err := hostproc.Spawn(argv[0], append(argv, args...), in.Dir,
		[]string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C"}, logf, extra...)
	if err != nil {
		return fmt.Errorf("qemu: start QEMU: %w", err)
	}
	// The pid file is vmssd's (QEMU's own -pidfile needs a path QEMU's
	// user can resolve from /): Recover finds QEMU by it if vmssd dies
	// before persisting the state below.
	if err := writeFileAtomic(in.Path(pidFile), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		d.log.Error("write pid file", "id", in.ID, "err", err)
	}
	v := newVM(pid, start, accel)
	now := time.Now().UTC()
	msg := "booting (" + accel + ")"
	if restart {
		msg = "restarted after QEMU " + in.LastExit + "; booting (" + accel + ")"
	}
	in.update(func(st *state) {
		st.PID, st.StartTime, st.Accel, st.Network = pid, start, accel, mode
		st.BootStarted, st.Booted, st.ConsoleOffset = now, false, consoleOff
		if restart {
			st.Restarts++
		}
		st.SetPower(driver.PowerStarting, msg)
	})
	if err := in.persist(); err != nil {
		// QEMU runs; Recover finds it through its pid file if needed.
		d.log.Error("persist instance state", "id", in.ID, "err", err)
	}

	c, err := d.connectQMP(ctx, in, v, qmpTimeout)
	if err != nil {
		v.signal(unix.SIGKILL)
		v.reap()
		in.update(func(st *state) { st.PID, st.StartTime = 0, 0 })
		logTail, _ := fsutil.TailFile(in.Path(qemuLogFile), 2048)
		if t := lastLines(logTail, 3); t != "" {
			err = fmt.Errorf("%w; QEMU said: %s", err, t)
		}
		return fmt.Errorf("qemu: start %s: %w", in.ID, err)
	}
	v.qmp = c
	in.Mu.Lock()
	in.vm = v
	in.Mu.Unlock()
	d.log.Info("QEMU started", "id", in.ID, "pid", pid, "accel", accel, "vcpus", st.Resources.VCPUs,
		"memoryMB", st.Resources.MemoryMB, "healthPort", st.HealthPort, "restart", restart)
	d.goWatch(in, v)
	handed = d.goBoot(in, v, now.Add(d.opts.BootDeadline), true, consoleOff)
	return nil
}

// qmpPath returns the path to dial for the QMP socket of the QEMU pid
// running in dir: the socket's own path, or (when that is too long for a
// unix socket address) the same file through QEMU's working directory.
func qmpPath(dir string, pid int) string {
	p := dir + "/" + qmpSocket
	if len(p) < 108 {
		return p
	}
	return "/proc/" + strconv.Itoa(pid) + "/cwd/" + qmpSocket
}

// connectQMP waits for the QMP socket of v to answer query-status.
func (d *Driver) connectQMP(ctx context.Context, in *instance, v *vm, timeout time.Duration) (*qmp.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	path := qmpPath(in.Dir, v.pid)
	for {
		if !hostproc.Alive(v.pid, v.start) {
			return nil, errors.New("QEMU exited at once")
		}
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := qmp.Dial(dctx, path)
		dcancel()
		if err == nil {
			var st struct {
				Status string `json:"status"`
			}
			if err = c.Execute(ctx, "query-status", nil, &st); err == nil {
				return c, nil
			}
			c.Close()
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("QMP did not answer: %w", err)
		case <-t.C:
		}
	}
}

// ensurePortsLocked reserves the instance's health and ssh ports, moving a
// port that another program took meanwhile. Called with op held.
func (d *Driver) ensurePortsLocked(in *instance) error {
	in.Mu.Lock()
	ports := []int{in.st.HealthPort, in.st.SSHPort}
	in.Mu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, port := range ports {
		if port != 0 && d.ports.Owner(port) == in.ID && portpool.Free(port) {
			continue
		}
		if port != 0 {
			d.log.Warn("reserved port is not free, moving the instance", "id", in.ID, "port", port)
			d.ports.Release(port, in.ID)
		}
		p, err := d.ports.Allocate(in.ID)
		if err != nil {
			return fmt.Errorf("qemu: %w", err)
		}
		ports[i] = p
	}
	in.update(func(st *state) { st.HealthPort, st.SSHPort = ports[0], ports[1] })
	return nil
}

// releasePortsLocked gives the instance's ports back. Called with op held.
func (d *Driver) releasePortsLocked(in *instance) {
	in.Mu.Lock()
	hp, sp := in.st.HealthPort, in.st.SSHPort
	in.st.HealthPort, in.st.SSHPort = 0, 0
	in.Mu.Unlock()
	d.mu.Lock()
	d.ports.Release(hp, in.ID)
	d.ports.Release(sp, in.ID)
	d.mu.Unlock()
}

// goWatch starts supervising v; false (and it does not) once the driver is
// closed.
func (d *Driver) goWatch(in *instance, v *vm) bool {
	return d.tab.Go(func() { d.watch(in, v) })
}

// goBoot starts the boot monitor of v, which releases the boot slot (if
// slot) when it ends; false (and it does not) once the driver is closed.
func (d *Driver) goBoot(in *instance, v *vm, deadline time.Time, slot bool, consoleOff int64) bool {
	return d.tab.Go(func() { d.bootMonitor(in, v, deadline, slot, consoleOff) })
}

// bootMonitor watches a booting VM until its guest has booted: it answers
// HTTP on the health port (any status: an unhealthy application is the
// health prober's business, not the driver's) or prints one of
// ReadyMarkers on its serial console. It then reports the instance running.
// A VM that has not booted by deadline is killed.
func (d *Driver) bootMonitor(in *instance, v *vm, deadline time.Time, slot bool, consoleOff int64) {
	if slot {
		defer d.releaseBoot()
	}
	in.Mu.Lock()
	url := fmt.Sprintf("http://127.0.0.1:%d%s", in.st.HealthPort, in.img.HealthPath)
	in.Mu.Unlock()
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: probeTimeout}
	console := consoleWatch{path: in.Path(consoleFile), off: consoleOff, markers: d.opts.ReadyMarkers}

	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	tick := time.NewTicker(d.opts.BootPollInterval)
	defer tick.Stop()
	for {
		how := ""
		if console.ready() {
			how = "console"
		} else if probeHTTP(d.ctx, client, url) {
			how = "http"
		}
		if how != "" {
			d.markBooted(in, v, how)
			return
		}
		select {
		case <-v.done:
			return
		case <-d.ctx.Done():
			return
		case <-timer.C:
			d.bootDeadline(in, v)
			return
		case <-tick.C:
		}
	}
}

// probeHTTP reports whether something answers HTTP at url.
func probeHTTP(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return true
}

// consoleWatch looks for ready markers in what a console log gains.
type consoleWatch struct {
	path    string
	off     int64
	carry   []byte // the end of the previous read, for markers split across reads
	markers []string
}

func (c *consoleWatch) ready() bool {
	if len(c.markers) == 0 {
		return false
	}
	f, err := os.Open(c.path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	if fi.Size() < c.off { // rotated
		c.off, c.carry = 0, nil
	}
	b, err := io.ReadAll(io.NewSectionReader(f, c.off, min(fi.Size()-c.off, 1<<20)))
	if err != nil || len(b) == 0 {
		return false
	}
	c.off += int64(len(b))
	buf := append(c.carry, b...)
	for _, m := range c.markers {
		if m != "" && bytes.Contains(buf, []byte(m)) {
			return true
		}
	}
	keep := min(len(buf), 256)
	c.carry = append([]byte(nil), buf[len(buf)-keep:]...)
	return false
}

// markBooted reports a booted VM running.
func (d *Driver) markBooted(in *instance, v *vm, how string) {
	elapsed := time.Since(v.began)
	in.Mu.Lock()
	if in.vm != v || in.st.Power != driver.PowerStarting {
		if in.vm == v {
			v.booted = true
			in.st.Booted = true
		}
		in.Mu.Unlock()
		return
	}
	v.booted = true
	in.st.Booted = true
	in.st.SetPower(driver.PowerRunning, fmt.Sprintf("booted in %.1fs (%s)", elapsed.Seconds(), v.accel))
	in.Mu.Unlock()
	if err := in.persist(); err != nil {
		d.log.Error("persist instance state", "id", in.ID, "err", err)
	}
	d.log.Info("guest booted", "id", in.ID, "pid", v.pid, "elapsed", elapsed.Round(time.Millisecond), "accel", v.accel, "by", how)
}

// bootDeadline kills a VM that did not boot in time; watch reports it.
func (d *Driver) bootDeadline(in *instance, v *vm) {
	in.Mu.Lock()
	mine := in.vm == v && !v.booted
	if mine {
		v.deadlineHit = true
	}
	in.Mu.Unlock()
	if !mine {
		return
	}
	d.log.Warn("boot deadline exceeded, killing the VM", "id", in.ID, "pid", v.pid, "deadline", d.opts.BootDeadline)
	if err := v.signal(unix.SIGKILL); err != nil {
		d.log.Error("kill VM", "id", in.ID, "err", err)
	}
}

// watch is the supervisor of one QEMU: it follows its QMP events, waits for
// it to exit and, if the instance should still be running, restarts it.
func (d *Driver) watch(in *instance, v *vm) {
	if v.qmp != nil {
		events := v.qmp.Events()
	loop:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					break loop
				}
				d.onEvent(in, v, ev)
			case <-d.ctx.Done():
				v.qmp.Close() // QEMU keeps running: the next Recover dials again
				return
			}
		}
		v.qmp.Close()
	}
	if !hostproc.WaitExit(d.ctx, v.pid, v.start, d.opts.PollInterval) {
		return // driver closed
	}
	v.reap()

	if in.Op.Lock(d.ctx) != nil {
		return
	}
	locked := true
	defer func() {
		if locked {
			in.Op.Unlock()
		}
	}()
	in.Mu.Lock()
	if in.vm != v {
		// An operation (Stop, Delete, ...) owns the exit.
		in.Mu.Unlock()
		return
	}
	in.LastExit = v.exit
	in.vm = nil
	in.st.PID, in.st.StartTime, in.st.Booted = 0, 0, false
	var (
		restart   bool
		delay     time.Duration
		free      bool
		freePorts bool
	)
	switch {
	case v.deadlineHit:
		in.st.Desired = driver.PowerStopped
		tail, _ := fsutil.TailFile(in.Path(consoleFile), 4096)
		msg := fmt.Sprintf("boot deadline exceeded: the guest did not boot within %s", d.opts.BootDeadline)
		if t := lastLines(tail, 2); t != "" {
			msg += "; console: " + t
		}
		in.st.SetPower(driver.PowerStopped, msg)
		in.st.Failure = FailureBootTimeout
		free = true
	case in.st.Desired == driver.PowerRunning && v.shutdownReason == "guest-shutdown":
		in.st.Desired = driver.PowerStopped
		in.st.SetPower(driver.PowerStopped, "the guest powered itself off")
		free = true
	case in.st.Desired == driver.PowerRunning:
		restart = true
		delay = in.NextBackoff(d.backoff, time.Since(v.began))
		in.st.SetPower(driver.PowerStarting, fmt.Sprintf("QEMU %s unexpectedly; restarting it in %s", v.exit, delay))
	default:
		// An operation gave up waiting but QEMU has now exited as asked.
		in.st.SetPower(in.st.Desired, "QEMU "+v.exit)
		free = true
		freePorts = in.st.Desired == driver.PowerDeallocated
	}
	in.Mu.Unlock()
	if free {
		d.releaseMemory(in.ID)
	}
	if freePorts {
		d.releasePortsLocked(in)
	}
	if err := in.persist(); err != nil {
		d.log.Error("persist instance state", "id", in.ID, "err", err)
	}
	if !restart {
		d.log.Info("VM ended", "id", in.ID, "pid", v.pid, "exit", v.exit)
		return
	}
	d.log.Warn("QEMU exited unexpectedly", "id", in.ID, "pid", v.pid, "exit", v.exit, "restartIn", delay)
	ctx := in.ArmRestart(d.ctx)
	in.Op.Unlock()
	locked = false
	d.restartLoop(ctx, in, delay, true)
}

// onEvent records what the supervisor needs from a QMP event.
func (d *Driver) onEvent(in *instance, v *vm, ev qmp.Event) {
	d.log.Debug("QMP event", "id", in.ID, "pid", v.pid, "event", ev.Event, "data", string(ev.Data))
	if ev.Event == "SHUTDOWN" {
		var data struct {
			Reason string `json:"reason"`
		}
		if json.Unmarshal(ev.Data, &data) == nil {
			v.shutdownReason = data.Reason
		}
	}
}

// goRestart schedules a supervisor (re)start of in after delay. Called with
// op held.
func (d *Driver) goRestart(in *instance, delay time.Duration, countRestart bool) {
	ctx := in.ArmRestart(d.ctx)
	d.tab.Go(func() { d.restartLoop(ctx, in, delay, countRestart) })
}

// restartLoop waits delay, then starts QEMU again, retrying with backoff
// until it starts or ctx is cancelled (by an operation or Close). The boot
// slot is taken before the instance's op lock, so that an operation on the
// instance can cancel the wait.
func (d *Driver) restartLoop(ctx context.Context, in *instance, delay time.Duration, countRestart bool) {
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if d.acquireBoot(ctx, in) != nil {
			return
		}
		if in.Op.Lock(ctx) != nil {
			d.releaseBoot()
			return
		}
		if ctx.Err() != nil {
			in.Op.Unlock()
			d.releaseBoot()
			return
		}
		err := d.spawnLocked(ctx, in, countRestart)
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
		d.log.Error("restart VM", "id", in.ID, "err", err, "retryIn", delay)
		in.Op.Unlock()
	}
}

// stopVMLocked stops the QEMU of in, if any, and says how. graceful sends
// an ACPI power-button press (QMP system_powerdown) and gives the guest
// StopTimeout to power off (cut short by ctx); a guest that has not finished
// booting skips this step, having nothing to shut down yet. Then QMP quit
// (SIGTERM without QMP) and quitTimeout, then SIGKILL. Called with op held.
func (d *Driver) stopVMLocked(ctx context.Context, in *instance, graceful bool) (string, error) {
	in.CancelRestart()
	in.Mu.Lock()
	v := in.vm
	booted := v != nil && v.booted
	in.Mu.Unlock()
	if v == nil {
		return "", nil
	}
	began := time.Now()
	how := ""
	wait := func(ctx context.Context, limit time.Duration) error {
		t := time.NewTimer(limit)
		defer t.Stop()
		select {
		case <-v.done:
		case <-t.C:
		case <-ctx.Done():
		case <-d.ctx.Done():
			return ErrClosed
		}
		return nil
	}
	if graceful && booted && !v.exited() {
		if err := v.execute(ctx, "system_powerdown"); err != nil {
			d.log.Warn("ACPI powerdown failed", "id", in.ID, "err", err)
		} else {
			if err := wait(ctx, d.opts.StopTimeout); err != nil {
				return "", err
			}
			if v.exited() {
				how = fmt.Sprintf("the guest powered off (ACPI) in %.1fs", time.Since(began).Seconds())
			} else {
				d.log.Warn("guest ignored the ACPI power button, quitting QEMU", "id", in.ID, "timeout", d.opts.StopTimeout)
			}
		}
	}
	if !v.exited() {
		if err := v.execute(context.WithoutCancel(ctx), "quit"); err != nil {
			if err := v.signal(unix.SIGTERM); err != nil {
				return "", err
			}
		}
		if err := wait(context.Background(), quitTimeout); err != nil {
			return "", err
		}
		if v.exited() {
			how = "QEMU quit"
		}
	}
	if !v.exited() {
		if err := v.signal(unix.SIGKILL); err != nil {
			return "", err
		}
		if err := wait(context.Background(), killTimeout); err != nil {
			return "", err
		}
		if !v.exited() {
			return "", fmt.Errorf("qemu: QEMU %d did not exit %s after SIGKILL", v.pid, killTimeout)
		}
		how = "QEMU killed"
	}
	in.LastExit = v.exit
	in.Mu.Lock()
	in.vm = nil
	in.st.PID, in.st.StartTime, in.st.Booted = 0, 0, false
	in.Mu.Unlock()
	return how, nil
}

// qemuLogMaxBytes bounds qemu.log.
const qemuLogMaxBytes = 256 << 10

// userNetMAC is the MAC of the user networking NIC (QEMU's default for a
// first NIC), set explicitly when the VM has a second one.
const userNetMAC = "52:54:00:12:34:56"

// machineType is the QEMU machine: "pc" (i440fx). microvm has no
// PIT/HPET reference clock and hangs under TCG; q35 boots slower.
const machineType = "pc"

// qemuArgs returns QEMU's arguments for in. Paths inside the instance
// directory are relative: QEMU runs there.
// tap adds a second NIC on the TAP given as descriptor 3.
func (d *Driver) qemuArgs(in *instance, spec driver.Spec, img image, st state, tap bool) []string {
	res := st.Resources
	args := []string{
		"-name", "vmssd-" + in.ID,
		"-machine", machineType,
	}
	switch d.accel {
	case AccelKVM:
		args = append(args, "-accel", "kvm", "-cpu", "host")
	default:
		// One host thread for all vCPUs, a 16 MiB translation cache (the
		// default 1 GiB cap costs ~37 MB RSS per VM, for no measurable
		// speed-up).
		args = append(args, "-accel", "tcg,thread=single,tb-size=16", "-cpu", "qemu64")
	}
	args = append(args,
		"-m", strconv.Itoa(res.MemoryMB),
		"-smp", strconv.Itoa(max(res.VCPUs, 1)),
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-monitor", "none",
		"-chardev", "file,id=serial0,path="+consoleFile+",append=on",
		"-serial", "chardev:serial0",
		"-qmp", "unix:"+qmpSocket+",server=on,wait=off",
		"-fw_cfg", "name="+fwCfgMetadata+",file="+metadataFile,
	)
	args = append(args, sandboxArgs...)
	// restrict=on: the guest reaches nothing outside (not the host through
	// 10.0.2.2 either); the loopback forwards still reach the guest.
	netdev := fmt.Sprintf("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:%d,hostfwd=tcp:127.0.0.1:%d-:%d",
		st.HealthPort, img.GuestPort, st.SSHPort, sshGuestPort)
	if h := spec.Metadata.ComputerName; validHostname(h) {
		netdev += ",hostname=" + h
	}
	nic0 := "virtio-net-pci,netdev=net0,romfile="
	if tap {
		nic0 += ",mac=" + userNetMAC // matched by a cloud-init network-config
	}
	args = append(args, "-netdev", netdev, "-device", nic0)
	if tap {
		mac, _ := netattach.MAC(in.ID, spec.Network) // validated with the spec
		args = append(args, "-netdev", "tap,id=net1,fd=3",
			"-device", "virtio-net-pci,netdev=net1,romfile=,mac="+mac.String())
	}
	cmdline := ""
	if img.directBoot() {
		cmdline = kernelParams(spec, img)
		if tap {
			cmdline += " " + networkParams(spec.Network)
		}
		if img.Cmdline != "" {
			cmdline = img.Cmdline + " " + cmdline
		}
	}
	return append(args, imageArgs(img, cmdline, img.CloudInit)...)
}
