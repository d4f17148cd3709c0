package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/fsutil"
)

// Guest is what a driver implements for what differs between its guests.
type Guest[T Entry] interface {
	// Running says the instance has a guest (a process, a VM). Called with
	// Mu held.
	Running(in T) bool
	// StatusLocked returns the instance's status. Called with Mu held.
	StatusLocked(in T) driver.Status
	// Admit reserves what the instance's guest needs to start (a VM's
	// memory). Called with Op held.
	Admit(in T) error
	// Launch starts the guest of an instance whose desired power (running)
	// is recorded, and supervises it. A *WaitError says it cannot start
	// yet: the supervisor retries at once. Called with Op held.
	Launch(ctx context.Context, in T) error
	// Retry has the supervisor start the guest after delay. Called with Op
	// held.
	Retry(in T, delay time.Duration)
	// StopGuest stops the guest, if any; how says how it ended (may be
	// empty). Called with Op held.
	StopGuest(ctx context.Context, in T, graceful bool) (how string, err error)
	// Release gives back what the instance holds once it settled on power:
	// stopped, deallocated, or "" once deleted (its directory is gone).
	// Called with Op held.
	Release(in T, power driver.Power)
}

// WaitError is returned by Guest.Launch for a guest that cannot start yet
// (waiting for a boot slot, ...): Msg is shown as the instance's message.
type WaitError struct {
	Msg string
	Err error
}

func (e *WaitError) Error() string { return e.Msg + ": " + e.Err.Error() }
func (e *WaitError) Unwrap() error { return e.Err }

// Ops is the lifecycle skeleton of a driver: the driver.Driver operations
// over its Table, calling its Guest for what differs.
type Ops[T Entry] struct {
	Tab   *Table[T]
	Guest Guest[T]
	Log   *slog.Logger
	// Backoff paces the supervisor's restarts.
	Backoff hostproc.Backoff
	// ErrConflict is returned by Create for an existing ID with another
	// image.
	ErrConflict error
	// ConsoleMaxBytes bounds what Console returns.
	ConsoleMaxBytes int64
}

// Inspect returns the status of one instance, or an error wrapping
// driver.ErrNotFound.
func (o *Ops[T]) Inspect(ctx context.Context, id string) (driver.Status, error) {
	return o.Tab.Inspect(id, o.Guest.StatusLocked)
}

// List returns the status of every instance, sorted by ID.
func (o *Ops[T]) List(ctx context.Context) ([]driver.Status, error) {
	return o.Tab.List(o.Guest.StatusLocked)
}

// Console returns the newest bytes of the instance's console (the rotated
// console.log.1 followed by console.log), at most ConsoleMaxBytes.
func (o *Ops[T]) Console(ctx context.Context, id string) ([]byte, error) {
	return o.Tab.Console(id, o.ConsoleMaxBytes)
}

// Status returns the instance's status.
func (o *Ops[T]) Status(in T) driver.Status {
	b := in.base()
	b.Mu.Lock()
	defer b.Mu.Unlock()
	return o.Guest.StatusLocked(in)
}

func (o *Ops[T]) persistLogged(in T) {
	if err := Persist(in); err != nil {
		o.Log.Error("persist instance state", "id", in.base().ID, "err", err)
	}
}

// CreateSteps are the driver's parts of a Create.
type CreateSteps[T Entry] struct {
	// Admit reserves what the new instance needs (nil: nothing); Unadmit
	// gives it back when the Create fails.
	Admit   func() error
	Unadmit func()
	// Build writes what the image gives the instance into dir (its disk,
	// manifest, metadata; not spec.json or state.json).
	Build func(ctx context.Context, dir string) error
	// State is the initial state (Init fills the shared part).
	State func(in T)
	// Install records the image in the instance. Called with Mu held.
	Install func(in T)
}

// sameImage says two specs name the same image: the same digest, or the
// same directory when a digest is missing.
func sameImage(a, b driver.Spec) bool {
	if a.ImageDigest != "" && b.ImageDigest != "" {
		return a.ImageDigest == b.ImageDigest
	}
	return filepath.Clean(a.ImageDir) == filepath.Clean(b.ImageDir)
}

// Create builds the instance directory under a temporary name, renames it
// into place (a crash leaves either nothing or a complete directory) and
// starts the guest. Creating an existing ID with the same image returns its
// status; with another image it fails with ErrConflict. If the guest
// cannot start, the instance exists and the supervisor keeps retrying.
func (o *Ops[T]) Create(ctx context.Context, spec driver.Spec, steps CreateSteps[T]) (driver.Status, error) {
	in, err := o.Tab.LockOrAdd(ctx, spec.ID)
	if err != nil {
		return driver.Status{}, err
	}
	b := in.base()
	defer b.Op.Unlock()
	if b.Created {
		b.Mu.Lock()
		cur := b.Spec
		b.Mu.Unlock()
		if sameImage(cur, spec) {
			return o.Status(in), nil
		}
		return o.Status(in), o.Tab.Errorf("create %s with image %s: %w (it has %s)",
			spec.ID, spec.ImageDigest, o.ErrConflict, cur.ImageDigest)
	}
	if steps.Admit != nil {
		if err := steps.Admit(); err != nil {
			o.Tab.Drop(in)
			return driver.Status{}, err
		}
	}
	ctx, cancel := o.Tab.OpContext(ctx)
	defer cancel()
	// The state is prepared on the (not yet listed) instance itself.
	b.Mu.Lock()
	*in.Common() = State{Desired: driver.PowerRunning, Power: driver.PowerStarting, Since: time.Now().UTC(), Message: "creating"}
	if steps.State != nil {
		steps.State(in)
	}
	st := in.StateSnapshot()
	b.Mu.Unlock()
	err = instdir.Create(o.Tab.root, spec.ID, func(tmp string) error {
		if err := steps.Build(ctx, tmp); err != nil {
			return err
		}
		if err := fsutil.WriteJSON(filepath.Join(tmp, StateFile), st); err != nil {
			return err
		}
		if err := fsutil.WriteFile(filepath.Join(tmp, ConsoleFile), nil, 0o640); err != nil {
			return err
		}
		// spec.json last: Recover removes a directory without it.
		return fsutil.WriteJSON(filepath.Join(tmp, instdir.SpecFile), spec)
	})
	if err != nil {
		if steps.Unadmit != nil {
			steps.Unadmit()
		}
		o.Tab.Drop(in)
		return driver.Status{}, o.Tab.Errorf("create %s: %w", spec.ID, err)
	}
	b.Mu.Lock()
	b.Created, b.Spec = true, spec
	steps.Install(in)
	b.Mu.Unlock()
	o.Log.Info("instance created", "id", spec.ID, "image", spec.ImageDigest)
	return o.StartLocked(ctx, in)
}

// lockIdle locks the instance for an operation (the caller unlocks
// in.base().Op) and cancels a pending crash restart.
func (o *Ops[T]) lockIdle(ctx context.Context, id string) (T, error) {
	in, err := o.Tab.Lock(ctx, id)
	if err != nil {
		return in, err
	}
	in.base().CancelRestart()
	return in, nil
}

// guestState reads whether the guest runs and the desired power.
func (o *Ops[T]) guestState(in T) (running bool, desired driver.Power) {
	b := in.base()
	b.Mu.Lock()
	defer b.Mu.Unlock()
	return o.Guest.Running(in), in.Common().Desired
}

// Start boots a stopped or deallocated instance on its existing disk.
// Starting a running instance does nothing; starting one whose guest is
// between crash restarts restarts it now.
func (o *Ops[T]) Start(ctx context.Context, id string) (driver.Status, error) {
	in, err := o.lockIdle(ctx, id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.base().Op.Unlock()
	running, desired := o.guestState(in)
	if running {
		if desired != driver.PowerRunning {
			Update(in, func(st *State) { st.Desired = driver.PowerRunning })
			if err := Persist(in); err != nil {
				return o.Status(in), err
			}
		}
		return o.Status(in), nil
	}
	if err := o.Guest.Admit(in); err != nil {
		return o.Status(in), err
	}
	ctx, cancel := o.Tab.OpContext(ctx)
	defer cancel()
	return o.StartLocked(ctx, in)
}

// StartLocked starts the guest of an instance that has none. If it cannot,
// the supervisor retries with backoff. Called with Op held and the guest
// admitted.
func (o *Ops[T]) StartLocked(ctx context.Context, in T) (driver.Status, error) {
	b := in.base()
	b.Failures = 0
	Update(in, func(st *State) {
		st.Desired = driver.PowerRunning
		st.SetPower(driver.PowerStarting, "")
	})
	if err := Persist(in); err != nil {
		return o.Status(in), err
	}
	err := o.Guest.Launch(ctx, in)
	if err == nil {
		return o.Status(in), nil
	}
	var wait *WaitError
	if errors.As(err, &wait) {
		Update(in, func(st *State) { st.SetPower(driver.PowerStarting, wait.Msg) })
		o.Guest.Retry(in, 0)
		return o.Status(in), o.Tab.Errorf("start %s: %w", b.ID, err)
	}
	delay := b.NextBackoff(o.Backoff, 0)
	Update(in, func(st *State) {
		st.SetPower(driver.PowerStarting, fmt.Sprintf("start failed: %v; retrying in %s", err, delay))
	})
	o.persistLogged(in)
	o.Guest.Retry(in, delay)
	return o.Status(in), o.Tab.Errorf("start %s: %w", b.ID, err)
}

// Stop powers the instance off and keeps its disk and its ports. Stopping a
// stopped or deallocated instance does nothing.
func (o *Ops[T]) Stop(ctx context.Context, id string, graceful bool) (driver.Status, error) {
	return o.powerOff(ctx, id, driver.PowerStopped, driver.PowerStopping, graceful)
}

// Deallocate stops the instance gracefully and releases its host
// resources; the disk is kept.
func (o *Ops[T]) Deallocate(ctx context.Context, id string) (driver.Status, error) {
	return o.powerOff(ctx, id, driver.PowerDeallocated, driver.PowerDeallocating, true)
}

func (o *Ops[T]) powerOff(ctx context.Context, id string, target, transient driver.Power, graceful bool) (driver.Status, error) {
	in, err := o.lockIdle(ctx, id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.base().Op.Unlock()
	running, desired := o.guestState(in)
	done := desired != driver.PowerRunning // stopped: nothing to do
	if target == driver.PowerDeallocated {
		done = desired == driver.PowerDeallocated
	}
	if !running && done {
		return o.Status(in), nil
	}
	if err := o.PowerOffLocked(ctx, in, target, transient, graceful); err != nil {
		return o.Status(in), err
	}
	return o.Status(in), nil
}

// PowerOffLocked records the desired power target, stops the guest while
// showing transient, and settles on target (releasing what the guest held).
// Called with Op held.
func (o *Ops[T]) PowerOffLocked(ctx context.Context, in T, target, transient driver.Power, graceful bool) error {
	b := in.base()
	Update(in, func(st *State) {
		st.Desired = target
		st.SetPower(transient, "")
	})
	if err := Persist(in); err != nil {
		return err
	}
	how, err := o.Guest.StopGuest(ctx, in, graceful)
	if err != nil {
		Update(in, func(st *State) { st.Message = "stop failed: " + err.Error() })
		o.persistLogged(in)
		return o.Tab.Errorf("stop %s: %w", b.ID, err)
	}
	o.Guest.Release(in, target)
	Update(in, func(st *State) { st.SetPower(target, how) })
	o.Log.Info("instance powered off", "id", b.ID, "power", target, "how", how)
	return Persist(in)
}

// Restart stops the instance gracefully and starts it again (a stopped
// instance is just started).
func (o *Ops[T]) Restart(ctx context.Context, id string) (driver.Status, error) {
	in, err := o.lockIdle(ctx, id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.base().Op.Unlock()
	running, _ := o.guestState(in)
	if err := o.Guest.Admit(in); err != nil {
		return o.Status(in), err
	}
	ctx, cancel := o.Tab.OpContext(ctx)
	defer cancel()
	if running {
		Update(in, func(st *State) { st.SetPower(driver.PowerStopping, "restarting") })
		if _, err := o.Guest.StopGuest(ctx, in, true); err != nil {
			return o.Status(in), o.Tab.Errorf("restart %s: %w", id, err)
		}
	}
	return o.StartLocked(ctx, in)
}

// ReimageSteps are the driver's parts of a Reimage.
type ReimageSteps[T Entry] struct {
	// Build writes what the new image gives the instance into dir (as
	// CreateSteps.Build).
	Build func(ctx context.Context, dir string) error
	// Admit reserves what the reimaged guest needs (nil: nothing).
	Admit func() error
	// Install records the new image in the instance. Called with Mu held.
	Install func(in T)
}

// Reimage gives the instance a fresh disk from spec's image (possibly a new
// one), updates spec.json and the metadata and starts it, whatever its
// power was. The new disk is staged before the guest is stopped and
// committed with a rename (instdir.StageReimage, ApplyReimage), so the
// downtime is a stop, a few renames and a start, and Recover finishes a
// committed reimage.
func (o *Ops[T]) Reimage(ctx context.Context, spec driver.Spec, steps ReimageSteps[T]) (driver.Status, error) {
	in, err := o.Tab.Lock(ctx, spec.ID)
	if err != nil {
		return driver.Status{}, err
	}
	b := in.base()
	defer b.Op.Unlock()
	ctx, cancel := o.Tab.OpContext(ctx)
	defer cancel()

	staging := b.Path(instdir.ReimageDir)
	err = instdir.StageReimage(b.Dir, func(dir string) error {
		if err := steps.Build(ctx, dir); err != nil {
			return err
		}
		return fsutil.WriteJSON(filepath.Join(dir, instdir.SpecFile), spec)
	})
	if err != nil {
		return o.Status(in), o.Tab.Errorf("reimage %s: %w", spec.ID, err)
	}
	if steps.Admit != nil {
		if err := steps.Admit(); err != nil {
			os.RemoveAll(staging)
			return o.Status(in), err
		}
	}
	b.CancelRestart()
	Update(in, func(st *State) {
		st.Desired = driver.PowerRunning
		st.SetPower(driver.PowerStopping, "reimaging")
	})
	if err := Persist(in); err != nil {
		os.RemoveAll(staging)
		return o.Status(in), err
	}
	if _, err := o.Guest.StopGuest(ctx, in, true); err != nil {
		os.RemoveAll(staging)
		return o.Status(in), o.Tab.Errorf("reimage %s: %w", spec.ID, err)
	}
	// Commit: from here on Recover completes the reimage.
	if err := os.Rename(staging, b.Path(instdir.ReimageReady)); err != nil {
		os.RemoveAll(staging)
		return o.Status(in), o.Tab.Errorf("reimage %s: %w", spec.ID, err)
	}
	if err := instdir.ApplyReimage(b.Dir); err != nil {
		Update(in, func(st *State) { st.SetPower(driver.PowerUnknown, "reimage failed: "+err.Error()) })
		return o.Status(in), o.Tab.Errorf("reimage %s: %w", spec.ID, err)
	}
	b.Mu.Lock()
	b.Spec = spec
	steps.Install(in)
	b.Mu.Unlock()
	o.Log.Info("instance reimaged", "id", spec.ID, "image", spec.ImageDigest)
	return o.StartLocked(ctx, in)
}

// Delete stops the guest at once and removes the instance directory and
// what the instance held. Deleting an unknown ID returns an error wrapping
// driver.ErrNotFound.
func (o *Ops[T]) Delete(ctx context.Context, id string) error {
	in, err := o.lockIdle(ctx, id)
	if err != nil {
		return err
	}
	b := in.base()
	defer b.Op.Unlock()
	// Record the intent first: if vmssd dies before the directory is gone,
	// Recover must not start the guest again.
	b.Mu.Lock()
	st := in.Common()
	st.Desired = driver.PowerStopped
	if o.Guest.Running(in) {
		st.SetPower(driver.PowerStopping, "deleting")
	}
	b.Mu.Unlock()
	if err := Persist(in); err != nil {
		return o.Tab.Errorf("delete %s: %w", id, err)
	}
	if _, err := o.Guest.StopGuest(ctx, in, false); err != nil {
		return o.Tab.Errorf("delete %s: %w", id, err)
	}
	// Rename first: a crash during the removal leaves a dot-directory that
	// Recover removes, never a half-deleted instance.
	trash := o.Tab.trashName(id)
	if err := os.Rename(b.Dir, trash); err != nil && !errors.Is(err, os.ErrNotExist) {
		return o.Tab.Errorf("delete %s: %w", id, err)
	}
	o.Guest.Release(in, "")
	o.Tab.Drop(in)
	o.Log.Info("instance deleted", "id", id)
	if err := os.RemoveAll(trash); err != nil {
		return o.Tab.Errorf("delete %s: remove files: %w", id, err)
	}
	return nil
}

// SettleIdle ends the recovery of an instance that should not run (its
// guest, if any, already stopped): a deallocated one releases what it
// holds, anything else but stopped becomes stopped, and the observed power
// follows. Called with Op held.
func (o *Ops[T]) SettleIdle(in T) error {
	b := in.base()
	b.Mu.Lock()
	desired := in.Common().Desired
	b.Mu.Unlock()
	if desired == driver.PowerDeallocated {
		o.Guest.Release(in, driver.PowerDeallocated)
	} else if desired != driver.PowerStopped {
		Update(in, func(st *State) { st.Desired = driver.PowerStopped })
	}
	Update(in, func(s *State) {
		s.PID, s.StartTime = 0, 0
		msg := s.Message
		if s.Power != s.Desired {
			msg = ""
		}
		s.SetPower(s.Desired, msg)
	})
	return Persist(in)
}

// RecoverLocked runs revive for a recovered instance with its Op lock
// held, after adding it to the table; problems (from loading it) become its
// message.
func (o *Ops[T]) RecoverLocked(ctx context.Context, in T, problems []string, revive func() error) error {
	o.Tab.Put(in)
	b := in.base()
	if err := b.Op.Lock(ctx); err != nil {
		return err
	}
	defer b.Op.Unlock()
	err := revive()
	if len(problems) > 0 {
		msg := problems[0]
		for _, p := range problems[1:] {
			msg += "; " + p
		}
		Update(in, func(st *State) { st.Message = msg })
		o.persistLogged(in)
	}
	return err
}
