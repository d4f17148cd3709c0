package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/lifecycle"
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
	var scan guestScan
	err := d.tab.Recover(ctx, func(ctx context.Context, id string) error {
		return d.recoverInstance(ctx, id, &scan)
	})
	if errors.Is(err, ErrClosed) {
		return nil, err
	}
	d.collectLayers()
	d.net.SweepExcept(d.tab.IDs())
	return d.list(), err
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
	in, ok, err := d.tab.Load(id)
	if !ok {
		return err
	}
	var problems []string
	m, err := loadInstanceManifest(in)
	if err != nil {
		problems = append(problems, err.Error())
	}
	in.manifest = m
	if !exists(in.Path(diskDir)) {
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
	d.mu.Unlock()
	return d.Ops.RecoverLocked(ctx, in, problems, func() error { return d.reviveLocked(ctx, in, scan) })
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
				d.log.Warn("recover: cannot re-adopt the container", "id", in.ID, "err", err)
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
		p, port = d.adoptOrphan(in, guests[in.Path(diskDir)])
		if p != nil && port != 0 && in.st.Port != port {
			// The spawn was not recorded: take the port from the guest's
			// environment so that its health endpoint is known.
			d.mu.Lock()
			if d.ports.Reserve(port, in.ID) {
				in.update(func(st *state) { st.Port = port })
			}
			d.mu.Unlock()
		}
	}

	switch {
	case p != nil && st.Desired == driver.PowerRunning:
		in.Mu.Lock()
		in.proc = p
		in.st.PID, in.st.StartTime = p.pid, p.start
		in.st.SetPower(driver.PowerRunning, "re-adopted after a restart of vmssd")
		in.Mu.Unlock()
		d.log.Info("recover: guest re-adopted", "id", in.ID, "pid", p.pid)
		if err := in.persist(); err != nil {
			return err
		}
		d.goWatch(in, p)
		return nil

	case p != nil:
		// An interrupted Stop, Deallocate or Delete: finish the job.
		in.Mu.Lock()
		in.proc = p
		in.Mu.Unlock()
		d.goWatch(in, p)
		if err := d.stopProcLocked(ctx, in, false); err != nil {
			return err
		}
		d.log.Info("recover: stopped a guest that should not run", "id", in.ID, "pid", p.pid)
	}

	if st.Desired == driver.PowerRunning {
		restart := st.PID != 0
		if restart {
			in.LastExit = "was not running when vmssd recovered"
			d.log.Info("recover: guest is gone, restarting it", "id", in.ID, "pid", st.PID)
		}
		in.update(func(st *state) {
			st.PID, st.StartTime = 0, 0
			st.SetPower(driver.PowerStarting, "")
		})
		if err := in.persist(); err != nil {
			return err
		}
		if err := d.spawnLocked(in, restart); err != nil {
			delay := in.NextBackoff(d.backoff, 0)
			in.update(func(st *state) {
				st.SetPower(driver.PowerStarting, fmt.Sprintf("start failed: %v; retrying in %s", err, delay))
			})
			if perr := in.persist(); perr != nil {
				d.log.Error("persist instance state", "id", in.ID, "err", perr)
			}
			d.goRestart(in, delay)
		}
		return nil
	}

	return d.Ops.SettleIdle(in)
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
			d.log.Warn("recover: killing a duplicate guest", "id", in.ID, "pid", g.PID)
			_ = unix.Kill(-g.PID, unix.SIGKILL)
		case best == nil || g.Session != best.PID:
			d.log.Warn("recover: killing a stray guest process", "id", in.ID, "pid", g.PID)
			_ = unix.Kill(g.PID, unix.SIGKILL)
		}
	}
	if best == nil {
		return nil, 0
	}
	d.log.Info("recover: found an unrecorded guest", "id", in.ID, "pid", best.PID, "port", best.Port)
	return newProc(best.PID, best.Start), best.Port
}

// loadInstanceManifest reads the instance's copy of its image manifest,
// restoring it from the image directory if it is missing.
func loadInstanceManifest(in *instance) (manifest, error) {
	raw, err := lifecycle.ReadManifest(in.Dir, func() ([]byte, error) {
		_, raw, err := loadImage(in.Spec.ImageDir)
		return raw, err
	})
	if err != nil {
		return manifest{}, fmt.Errorf("process: %w", err)
	}
	return parseManifest(raw)
}

// recreateDisk makes a fresh disk from the instance's image.
func (d *Driver) recreateDisk(ctx context.Context, in *instance) error {
	tmp, err := os.MkdirTemp(in.Dir, fsutil.TempPrefix+"disk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	iso := in.isolation()
	if iso == IsolationRunc && d.sb == nil {
		return fmt.Errorf("%w: %v", driver.ErrSandboxUnavailable, d.sandboxErr)
	}
	if err := d.newDisk(ctx, in.Spec, iso, tmp); err != nil {
		return err
	}
	return os.Rename(filepath.Join(tmp, diskDir), in.Path(diskDir))
}
