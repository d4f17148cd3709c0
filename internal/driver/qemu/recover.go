package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/instdir"
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
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	entries, err := os.ReadDir(d.opts.Root)
	if err != nil {
		return nil, fmt.Errorf("qemu: recover: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return d.list(), fmt.Errorf("qemu: recover: %w", err)
		}
		name := e.Name()
		path := filepath.Join(d.opts.Root, name)
		if strings.HasPrefix(name, ".") {
			d.log.Info("recover: removing leftover of an interrupted operation", "path", path)
			if err := os.RemoveAll(path); err != nil {
				errs = append(errs, fmt.Errorf("qemu: recover: %w", err))
			}
			continue
		}
		if !e.IsDir() || validID(name) != nil {
			d.log.Warn("recover: ignoring unexpected entry", "path", path)
			continue
		}
		if err := d.recoverInstance(ctx, name); err != nil {
			d.log.Error("recover instance", "id", name, "err", err)
			errs = append(errs, fmt.Errorf("qemu: recover %s: %w", name, err))
		}
	}
	return d.list(), errors.Join(errs...)
}

// recoverInstance loads and revives the instance in <Root>/<id>.
func (d *Driver) recoverInstance(ctx context.Context, id string) error {
	dir := filepath.Join(d.opts.Root, id)
	d.mu.Lock()
	known := d.instances[id] != nil
	d.mu.Unlock()
	if known {
		return nil
	}
	if !exists(filepath.Join(dir, specFile)) {
		d.log.Info("recover: removing half-created instance", "id", id)
		return os.RemoveAll(dir)
	}
	if err := instdir.Clean(dir); err != nil {
		return err
	}
	var spec driver.Spec
	if err := readJSON(filepath.Join(dir, specFile), &spec); err != nil {
		return err
	}
	if spec.ID != id {
		return fmt.Errorf("spec.json has id %q", spec.ID)
	}
	in := newInstance(id, dir)
	in.created, in.spec = true, spec
	if err := readJSON(in.path(stateFile), &in.st); err != nil {
		d.log.Warn("recover: no usable state, assuming it should run", "id", id, "err", err)
		in.st = state{Desired: driver.PowerRunning, Power: driver.PowerUnknown}
	}
	var problems []string
	img, err := loadInstanceImage(in)
	if err != nil {
		problems = append(problems, err.Error())
	}
	in.img = img
	if in.st.Resources.MemoryMB <= 0 {
		res, err := resolveSize(d.opts.Sizes, spec, img)
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
	d.instances[id] = in
	d.mu.Unlock()

	if err := in.op.lock(ctx); err != nil {
		return err
	}
	defer in.op.unlock()
	err = d.reviveLocked(ctx, in)
	if len(problems) > 0 {
		in.update(func(st *state) { st.Message = strings.Join(problems, "; ") })
		if perr := in.persist(); perr != nil {
			d.log.Error("persist instance state", "id", id, "err", perr)
		}
	}
	return err
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
		_ = d.admitMemory(in.id, st.Resources, true)
		in.mu.Lock()
		in.vm = v
		in.st.PID, in.st.StartTime, in.st.Accel = v.pid, v.start, v.accel
		if booted {
			in.st.setPower(driver.PowerRunning, "re-adopted after a restart of vmssd")
		} else {
			if in.st.BootStarted.IsZero() || st.PID != v.pid {
				// Started but not recorded: its boot began about now, and
				// the console it printed so far is unknown.
				in.st.BootStarted = time.Now().UTC()
				v.began = time.Now()
				in.st.ConsoleOffset = 0
				if fi, err := os.Stat(in.path(consoleFile)); err == nil {
					in.st.ConsoleOffset = fi.Size()
				}
			}
			in.st.Booted = false
			in.st.setPower(driver.PowerStarting, "re-adopted while booting after a restart of vmssd")
		}
		deadline := in.st.BootStarted.Add(d.opts.BootDeadline)
		consoleOff := in.st.ConsoleOffset
		in.mu.Unlock()
		d.log.Info("recover: VM re-adopted", "id", in.id, "pid", v.pid, "booted", booted)
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
		in.mu.Lock()
		in.vm = v
		in.mu.Unlock()
		d.goWatch(in, v)
		if _, err := d.stopVMLocked(ctx, in, false); err != nil {
			return err
		}
		d.log.Info("recover: stopped a VM that should not run", "id", in.id, "pid", v.pid)
	}

	if st.Desired == driver.PowerRunning {
		restart := st.PID != 0
		if restart {
			in.lastExit = "was gone when vmssd recovered"
			d.log.Info("recover: QEMU is gone, restarting it", "id", in.id, "pid", st.PID)
		}
		_ = d.admitMemory(in.id, st.Resources, true)
		in.update(func(st *state) {
			st.PID, st.StartTime, st.Booted = 0, 0, false
			st.setPower(driver.PowerStarting, "waiting to be started after a restart of vmssd")
		})
		if err := in.persist(); err != nil {
			return err
		}
		d.goRestart(in, 0, restart)
		return nil
	}

	if st.Desired == driver.PowerDeallocated {
		d.releasePortsLocked(in)
	} else if st.Desired != driver.PowerStopped {
		in.update(func(st *state) { st.Desired = driver.PowerStopped })
	}
	in.update(func(s *state) {
		s.PID, s.StartTime, s.Booted = 0, 0, false
		msg := s.Message
		if s.Power != s.Desired {
			msg = ""
		}
		s.setPower(s.Desired, msg)
	})
	return in.persist()
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
	if p := readPidfile(in.path(pidFile)); p != 0 {
		cands = append(cands, cand{p, 0})
	}
	for _, c := range cands {
		start, ok := isInstanceQEMU(c.pid, in.dir)
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
			d.log.Warn("recover: QEMU does not answer on QMP, killing it", "id", in.id, "pid", c.pid, "err", err)
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
	raw, err := os.ReadFile(in.path(manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		img, raw, err := loadImage(in.spec.ImageDir)
		if err != nil {
			return image{}, err
		}
		if err := writeFileAtomic(in.path(manifestFile), raw, 0o644); err != nil {
			return image{}, err
		}
		return img, nil
	}
	if err != nil {
		return image{}, fmt.Errorf("qemu: %w", err)
	}
	return parseImage(in.spec.ImageDir, raw)
}
