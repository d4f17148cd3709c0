package process

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/fsutil"
)

// Recover rebuilds the driver's state from Root after a restart of vmssd:
//
//   - dot-entries of Root (an interrupted Create or Delete) and instance
//     directories without spec.json are removed;
//   - in an instance directory, temporary files and an uncommitted reimage
//     are removed, a committed reimage is completed;
//   - a guest that is still alive (same pid and same start time) is
//     re-adopted: supervised again, not restarted;
//   - a guest that vmssd started but did not record (killed in between) is
//     found by its VMSSD_DISK environment variable and re-adopted;
//   - an instance whose desired power is running but whose guest is gone is
//     started again (counted in Restarts when a guest had been running);
//   - a guest that should not run (an interrupted Stop) is killed.
//
// It returns the status of every instance, and the errors of instances it
// could not load (joined), which it leaves alone on disk.
func (d *Driver) Recover(ctx context.Context) ([]driver.Status, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	entries, err := os.ReadDir(d.opts.Root)
	if err != nil {
		return nil, fmt.Errorf("process: recover: %w", err)
	}
	var (
		errs []error
		scan guestScan
	)
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return d.list(), fmt.Errorf("process: recover: %w", err)
		}
		name := e.Name()
		path := filepath.Join(d.opts.Root, name)
		if strings.HasPrefix(name, ".") {
			d.log.Info("recover: removing leftover of an interrupted operation", "path", path)
			if err := os.RemoveAll(path); err != nil {
				errs = append(errs, fmt.Errorf("process: recover: %w", err))
			}
			continue
		}
		if !e.IsDir() || validID(name) != nil {
			d.log.Warn("recover: ignoring unexpected entry", "path", path)
			continue
		}
		if err := d.recoverInstance(ctx, name, &scan); err != nil {
			d.log.Error("recover instance", "id", name, "err", err)
			errs = append(errs, fmt.Errorf("process: recover %s: %w", name, err))
		}
	}
	d.collectLayers()
	return d.list(), errors.Join(errs...)
}

// guestScan runs scanGuests at most once, when first needed.
type guestScan struct {
	done   bool
	guests map[string][]guestProc
	err    error
}

func (s *guestScan) get() (map[string][]guestProc, error) {
	if !s.done {
		s.guests, s.err = scanGuests()
		s.done = true
	}
	return s.guests, s.err
}

// recoverInstance loads and revives the instance in <Root>/<id>.
func (d *Driver) recoverInstance(ctx context.Context, id string, scan *guestScan) error {
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
	in := &instance{id: id, dir: dir, created: true, spec: spec}
	if err := readJSON(in.path(stateFile), &in.st); err != nil {
		d.log.Warn("recover: no usable state, assuming it should run", "id", id, "err", err)
		in.st = state{Desired: driver.PowerRunning, Power: driver.PowerUnknown}
	}
	var problems []string
	m, err := loadInstanceManifest(in)
	if err != nil {
		problems = append(problems, err.Error())
	}
	in.manifest = m
	if !exists(in.path(diskDir)) {
		d.log.Warn("recover: disk missing, recreating it from the image", "id", id)
		if err := d.recreateDisk(ctx, in); err != nil {
			problems = append(problems, err.Error())
		}
	}
	d.mu.Lock()
	if in.st.Port != 0 && !d.ports.Reserve(in.st.Port, id) {
		d.log.Warn("recover: port held by another instance, dropping it", "id", id, "port", in.st.Port)
		in.st.Port = 0
	}
	d.instances[id] = in
	d.mu.Unlock()

	in.op.Lock()
	defer in.op.Unlock()
	err = d.reviveLocked(ctx, in, scan)
	if len(problems) > 0 {
		in.update(func(st *state) { st.Message = strings.Join(problems, "; ") })
		if perr := in.persist(); perr != nil {
			d.log.Error("persist instance state", "id", id, "err", perr)
		}
	}
	return err
}

// reviveLocked re-adopts, restarts or stops the guest of a recovered
// instance according to its desired power. Called with op held.
func (d *Driver) reviveLocked(ctx context.Context, in *instance, scan *guestScan) error {
	st := in.st
	var p *proc
	if in.isolation() == IsolationRunc {
		if d.sb != nil {
			var err error
			if p, err = d.adoptContainer(ctx, in); err != nil {
				d.log.Warn("recover: cannot re-adopt the container", "id", in.id, "err", err)
			}
		}
	} else if st.PID != 0 && hostproc.Alive(st.PID, st.StartTime) {
		p = newProc(st.PID, st.StartTime)
	} else if st.Desired == driver.PowerRunning {
		// vmssd may have died between spawning the guest and recording it.
		guests, err := scan.get()
		if err != nil {
			d.log.Warn("recover: cannot scan for unrecorded guests", "err", err)
		}
		var port int
		p, port = d.adoptOrphan(in, guests[in.path(diskDir)])
		if p != nil && port != 0 && in.st.Port != port {
			// The spawn was not recorded: take the port from the guest's
			// environment so that its health endpoint is known.
			d.mu.Lock()
			if d.ports.Reserve(port, in.id) {
				in.update(func(st *state) { st.Port = port })
			}
			d.mu.Unlock()
		}
	}

	switch {
	case p != nil && st.Desired == driver.PowerRunning:
		in.mu.Lock()
		in.proc = p
		in.st.PID, in.st.StartTime = p.pid, p.start
		in.st.setPower(driver.PowerRunning, "re-adopted after a restart of vmssd")
		in.mu.Unlock()
		d.log.Info("recover: guest re-adopted", "id", in.id, "pid", p.pid)
		if err := in.persist(); err != nil {
			return err
		}
		d.goWatch(in, p)
		return nil

	case p != nil:
		// An interrupted Stop, Deallocate or Delete: finish the job.
		in.mu.Lock()
		in.proc = p
		in.mu.Unlock()
		d.goWatch(in, p)
		if err := d.stopProcLocked(ctx, in, false); err != nil {
			return err
		}
		d.log.Info("recover: stopped a guest that should not run", "id", in.id, "pid", p.pid)
	}

	if st.Desired == driver.PowerRunning {
		restart := st.PID != 0
		if restart {
			in.lastExit = "was not running when vmssd recovered"
			d.log.Info("recover: guest is gone, restarting it", "id", in.id, "pid", st.PID)
		}
		in.update(func(st *state) {
			st.PID, st.StartTime = 0, 0
			st.setPower(driver.PowerStarting, "")
		})
		if err := in.persist(); err != nil {
			return err
		}
		if err := d.spawnLocked(in, restart); err != nil {
			delay := in.nextBackoff(d.opts, 0)
			in.update(func(st *state) {
				st.setPower(driver.PowerStarting, fmt.Sprintf("start failed: %v; retrying in %s", err, delay))
			})
			if perr := in.persist(); perr != nil {
				d.log.Error("persist instance state", "id", in.id, "err", perr)
			}
			d.goRestart(in, delay)
		}
		return nil
	}

	if st.Desired == driver.PowerDeallocated {
		d.releasePortLocked(in)
	} else if st.Desired != driver.PowerStopped {
		in.update(func(st *state) { st.Desired = driver.PowerStopped })
	}
	in.update(func(s *state) {
		s.PID, s.StartTime = 0, 0
		msg := s.Message
		if s.Power != s.Desired {
			msg = ""
		}
		s.setPower(s.Desired, msg)
	})
	return in.persist()
}

// adoptOrphan picks, among the unrecorded guests of an instance, the newest
// session leader to adopt and kills the others.
func (d *Driver) adoptOrphan(in *instance, guests []guestProc) (*proc, int) {
	var best *guestProc
	for i, g := range guests {
		if g.Leader && (best == nil || g.Start > best.Start) {
			best = &guests[i]
		}
	}
	for _, g := range guests {
		switch {
		case best != nil && g.PID == best.PID:
		case g.Leader:
			d.log.Warn("recover: killing a duplicate guest", "id", in.id, "pid", g.PID)
			_ = unix.Kill(-g.PID, unix.SIGKILL)
		case best == nil || g.Session != best.PID:
			d.log.Warn("recover: killing a stray guest process", "id", in.id, "pid", g.PID)
			_ = unix.Kill(g.PID, unix.SIGKILL)
		}
	}
	if best == nil {
		return nil, 0
	}
	d.log.Info("recover: found an unrecorded guest", "id", in.id, "pid", best.PID, "port", best.Port)
	return newProc(best.PID, best.Start), best.Port
}

// loadInstanceManifest reads the instance's copy of its image manifest,
// restoring it from the image directory if it is missing.
func loadInstanceManifest(in *instance) (manifest, error) {
	raw, err := os.ReadFile(in.path(manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		var m manifest
		m, raw, err = loadImage(in.spec.ImageDir)
		if err != nil {
			return manifest{}, err
		}
		if err := writeFileAtomic(in.path(manifestFile), raw, 0o644); err != nil {
			return manifest{}, err
		}
		return m, nil
	}
	if err != nil {
		return manifest{}, fmt.Errorf("process: %w", err)
	}
	return parseManifest(raw)
}

// recreateDisk makes a fresh disk from the instance's image.
func (d *Driver) recreateDisk(ctx context.Context, in *instance) error {
	tmp, err := os.MkdirTemp(in.dir, fsutil.TempPrefix+"disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	iso := in.isolation()
	if iso == IsolationRunc && d.sb == nil {
		return fmt.Errorf("%w: %v", driver.ErrSandboxUnavailable, d.sandboxErr)
	}
	if err := d.newDisk(ctx, in.spec, iso, tmp); err != nil {
		return err
	}
	return os.Rename(filepath.Join(tmp, diskDir), in.path(diskDir))
}
