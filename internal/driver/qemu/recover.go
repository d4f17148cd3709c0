package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/lifecycle"
	"github.com/vmssd/vmssd/internal/driver/netattach"
)

// recoverQMPTimeout bounds the wait for a found QEMU to answer on QMP.
const recoverQMPTimeout = 5 * time.Second

// Recover rebuilds the driver's state from Root after a restart of vmssd:
//
//   - dot-entries of Root (an interrupted Create or Delete) and instance
//     directories without spec.json are removed;
//   - in an instance directory, temporary files and an uncommitted reimage
//     are removed, a committed reimage is completed;
//   - a QEMU that is still alive is re-adopted, supervised again and not
//     restarted: the pid recorded in state.json (with the same start time)
//     or in QEMU's pid file (vmssd died between starting QEMU and recording
//     it), running in the instance directory and answering query-status on
//     its QMP socket. A QEMU that does not answer is killed. A VM that was
//     still booting gets a boot monitor with what is left of its deadline;
//   - an instance whose desired power is running but whose QEMU is gone is
//     started again by the supervisor (counted in Restarts when a QEMU had
//     been running), in the background: Recover does not wait for boot
//     slots;
//   - a QEMU that should not run (an interrupted Stop or Delete) is killed.
//
// Memory is reserved for every VM that runs or should run, even beyond the
// allowance. Recover returns the status of every instance, and the errors
// of instances it could not load (joined), which it leaves alone on disk.
func (d *Driver) Recover(ctx context.Context) ([]driver.Status, error) {
	err := d.tab.Recover(ctx, d.recoverInstance)
	if errors.Is(err, ErrClosed) {
		return nil, err
	}
	d.net.SweepExcept(d.tab.IDs())
	return d.list(), err
}

// recoverInstance loads and revives the instance in <Root>/<id>.
func (d *Driver) recoverInstance(ctx context.Context, id string) error {
	in, ok, err := d.tab.Load(id)
	if !ok {
		return err
	}
	var problems []string
	img, err := loadInstanceImage(in)
	if err != nil {
		problems = append(problems, err.Error())
	}
	in.img = img
	if in.st.Resources.MemoryMB <= 0 {
		res, err := resolveSize(d.opts.Sizes, in.Spec, img)
		if err != nil {
			problems = append(problems, err.Error())
			res = resources{VCPUs: 1, MemoryMB: max(d.opts.Sizes[DefaultSize].MemoryMB, 128)}
		}
		in.st.Resources = res
	}
	d.mu.Lock()
	for _, p := range []*int{&in.st.HealthPort, &in.st.SSHPort} {
		if *p != 0 && !d.ports.Reserve(*p, id) {
			d.log.Warn("recover: port held by another instance, dropping it", "id", id, "port", *p)
			*p = 0
		}
	}
	d.mu.Unlock()
	return d.Ops.RecoverLocked(ctx, in, problems, func() error { return d.reviveLocked(ctx, in) })
}

// reviveLocked re-adopts, restarts or stops the VM of a recovered instance
// according to its desired power. Called with op held.
func (d *Driver) reviveLocked(ctx context.Context, in *instance) error {
	st := in.st
	v := d.findQEMU(ctx, in, st)

	switch {
	case v != nil && st.Desired == driver.PowerRunning:
		booted := st.Booted && st.PID == v.pid
		if !st.BootStarted.IsZero() {
			v.began = st.BootStarted
		}
		v.booted = booted
		_ = d.admitMemory(in.ID, st.Resources, true)
		mode := ""
		if d.net.Wants(in.Spec.Network) && d.net.Attached(in.ID, in.Spec.Network, true) {
			mode = netattach.ModeBridge // a TAP lives as long as QEMU holds it
		}
		in.Mu.Lock()
		in.vm = v
		in.st.PID, in.st.StartTime, in.st.Accel, in.st.Network = v.pid, v.start, v.accel, mode
		if booted {
			in.st.SetPower(driver.PowerRunning, "re-adopted after a restart of vmssd")
		} else {
			if in.st.BootStarted.IsZero() || st.PID != v.pid {
				// Started but not recorded: its boot began about now, and
				// the console it printed so far is unknown.
				in.st.BootStarted = time.Now().UTC()
				v.began = time.Now()
				in.st.ConsoleOffset = 0
				if fi, err := os.Stat(in.Path(consoleFile)); err == nil {
					in.st.ConsoleOffset = fi.Size()
				}
			}
			in.st.Booted = false
			in.st.SetPower(driver.PowerStarting, "re-adopted while booting after a restart of vmssd")
		}
		deadline := in.st.BootStarted.Add(d.opts.BootDeadline)
		consoleOff := in.st.ConsoleOffset
		in.Mu.Unlock()
		d.log.Info("recover: VM re-adopted", "id", in.ID, "pid", v.pid, "booted", booted)
		if err := in.persist(); err != nil {
			return err
		}
		d.goWatch(in, v)
		if !booted {
			// The boot is already under way: take a slot if one is free,
			// never wait for one.
			slot := false
			select {
			case d.boots <- struct{}{}:
				slot = true
			default:
			}
			if !d.goBoot(in, v, deadline, slot, consoleOff) && slot {
				d.releaseBoot()
			}
		}
		return nil

	case v != nil:
		// An interrupted Stop, Deallocate or Delete: finish the job.
		in.Mu.Lock()
		in.vm = v
		in.Mu.Unlock()
		d.goWatch(in, v)
		if _, err := d.stopVMLocked(ctx, in, false); err != nil {
			return err
		}
		d.log.Info("recover: stopped a VM that should not run", "id", in.ID, "pid", v.pid)
	}

	if st.Desired == driver.PowerRunning {
		restart := st.PID != 0
		if restart {
			in.LastExit = "was gone when vmssd recovered"
			d.log.Info("recover: QEMU is gone, restarting it", "id", in.ID, "pid", st.PID)
		}
		_ = d.admitMemory(in.ID, st.Resources, true)
		in.update(func(st *state) {
			st.PID, st.StartTime, st.Booted = 0, 0, false
			st.SetPower(driver.PowerStarting, "waiting to be started after a restart of vmssd")
		})
		if err := in.persist(); err != nil {
			return err
		}
		d.goRestart(in, 0, restart)
		return nil
	}

	in.update(func(s *state) { s.Booted = false })
	return d.Ops.SettleIdle(in)
}

// findQEMU returns the live QEMU of in, connected to its QMP socket, or nil.
// Candidates are the recorded pid (with the recorded start time) and the pid
// in QEMU's pid file (vmssd may have died before recording it); either must
// be a QEMU whose working directory is the instance directory. A candidate
// that does not answer on QMP is killed.
func (d *Driver) findQEMU(ctx context.Context, in *instance, st state) *vm {
	type cand struct {
		pid   int
		start uint64 // 0: any
	}
	cands := []cand{{st.PID, st.StartTime}}
	if p := readPidfile(in.Path(pidFile)); p != 0 {
		cands = append(cands, cand{p, 0})
	}
	for _, c := range cands {
		start, ok := isInstanceQEMU(c.pid, in.Dir)
		if !ok || (c.start != 0 && start != c.start) {
			continue
		}
		accel := st.Accel
		if accel == "" {
			accel = d.accel
		}
		v := newVM(c.pid, start, accel)
		qc, err := d.connectQMP(ctx, in, v, recoverQMPTimeout)
		if err != nil {
			d.log.Warn("recover: QEMU does not answer on QMP, killing it", "id", in.ID, "pid", c.pid, "err", err)
			unix.Kill(c.pid, unix.SIGKILL)
			kctx, cancel := context.WithTimeout(ctx, killTimeout)
			hostproc.WaitExit(kctx, c.pid, start, d.opts.PollInterval)
			cancel()
			continue
		}
		v.qmp = qc
		return v
	}
	return nil
}

// loadInstanceImage loads the image of a recovered instance from its copy
// of the manifest (restored from the image directory if missing).
func loadInstanceImage(in *instance) (image, error) {
	raw, err := lifecycle.ReadManifest(in.Dir, func() ([]byte, error) {
		_, raw, err := loadImage(in.Spec.ImageDir)
		return raw, err
	})
	if err != nil {
		return image{}, fmt.Errorf("qemu: %w", err)
	}
	return parseImage(in.Spec.ImageDir, raw)
}
