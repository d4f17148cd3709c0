// Package lifecycle is what the process and qemu drivers share of an
// instance's life: the instance table and its locking, the state both
// persist in state.json, the create / start / stop / deallocate / restart /
// reimage / delete skeleton with its crash-safe directory moves, and the
// skeleton of Recover. A driver implements Guest for what really differs:
// how a guest is launched, stopped and observed, and what host resources
// (ports, memory, network links) it holds.
//
// Locking: an instance's Op lock serializes the operations on it (it is
// held across slow steps: building disks, waiting for a guest to stop); its
// Mu guards the fields the driver keeps in it and is held only briefly, so
// Inspect and List never wait for an operation. Lock order: Op, then the
// driver's own mutex, then the table's, then Mu.
package lifecycle

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/fsutil"
)

// Files of an instance directory both drivers have (see package instdir for
// the others).
const (
	StateFile   = "state.json"  // the persisted State (and the driver's own fields)
	ConsoleFile = "console.log" // the guest's console, bounded
)

// State is the part of state.json both drivers persist; a driver embeds it
// in its own state (JSON flattens it, so the file keeps one level).
type State struct {
	// Desired is the power the instance should have: running, stopped or
	// deallocated.
	Desired driver.Power `json:"desired"`
	// Power and Since are the last observed power and when it changed.
	Power driver.Power `json:"power"`
	Since time.Time    `json:"since"`
	// PID and StartTime identify the guest's process: StartTime is field
	// 22 of /proc/<pid>/stat, so a recycled pid is not mistaken for it.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	Restarts  int    `json:"restarts,omitempty"`
	Message   string `json:"message,omitempty"`
	// Failure is the ARM code of why the guest stopped by itself, if it
	// failed (driver.Status.Failure).
	Failure string `json:"failure,omitempty"`
}

// SetPower sets the observed power (and Since when it changes) and the
// message; starting or running clears Failure.
func (st *State) SetPower(p driver.Power, msg string) {
	if st.Power != p {
		st.Power = p
		st.Since = time.Now().UTC()
	}
	st.Message = msg
	if p == driver.PowerStarting || p == driver.PowerRunning {
		st.Failure = ""
	}
}

// OpLock is a mutex whose Lock can be abandoned when a context ends.
type OpLock chan struct{}

// Lock takes the lock, or returns ctx's error once ctx is done.
func (l OpLock) Lock(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryLock takes the lock if it is free.
func (l OpLock) TryLock() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

// Unlock releases the lock.
func (l OpLock) Unlock() { <-l }

// Base is what every instance has; a driver's instance type embeds it.
type Base struct {
	ID  string
	Dir string

	Op OpLock
	// pmu orders the writes of state.json: each write takes a snapshot of
	// the state after the previous write finished.
	pmu sync.Mutex

	// Mu guards the fields below and the driver's own fields.
	Mu      sync.Mutex
	Created bool // the instance directory exists (false: Create in progress)
	Removed bool // deleted, or a failed Create: look the ID up again
	Spec    driver.Spec

	// Guarded by Op only.
	RestartCancel context.CancelFunc // cancels a pending supervisor restart
	Failures      int                // consecutive short-lived guests, for backoff
	LastExit      string             // how the last guest ended
}

// Init sets the identity of a new instance. A driver's constructor calls it.
func (b *Base) Init(id, dir string) {
	b.ID, b.Dir, b.Op = id, dir, make(OpLock, 1)
}

func (b *Base) base() *Base { return b }

// Path returns the path of name in the instance directory.
func (b *Base) Path(name string) string { return filepath.Join(b.Dir, name) }

// Live says the instance exists (created, not removed). Called with Mu held.
func (b *Base) Live() bool { return b.Created && !b.Removed }

// CancelRestart cancels a pending supervisor restart. Every operation calls
// it first: an operation takes over from the supervisor. Called with Op
// held.
func (b *Base) CancelRestart() {
	if b.RestartCancel != nil {
		b.RestartCancel()
		b.RestartCancel = nil
	}
}

// ArmRestart returns the context of a new pending restart, cancelled by the
// next operation on the instance or when parent ends. Called with Op held.
func (b *Base) ArmRestart(parent context.Context) context.Context {
	b.CancelRestart()
	ctx, cancel := context.WithCancel(parent)
	b.RestartCancel = cancel
	return ctx
}

// NextBackoff returns the delay before the next restart and counts the
// failure; a guest that ran for bo.StableAfter resets it. Called with Op
// held.
func (b *Base) NextBackoff(bo hostproc.Backoff, uptime time.Duration) time.Duration {
	return bo.Next(&b.Failures, uptime)
}

// Entry is a driver's instance: a pointer to a struct embedding Base.
type Entry interface {
	base() *Base
	// Common returns the shared part of the instance's state. Called with
	// Mu held.
	Common() *State
	// StateSnapshot returns a copy of the whole state, as state.json holds
	// it. Called with Mu held.
	StateSnapshot() any
	// StatePtr returns a pointer to the whole state, for decoding
	// state.json.
	StatePtr() any
}

// Update changes the instance's shared state under Mu.
func Update[T Entry](in T, set func(st *State)) {
	b := in.base()
	b.Mu.Lock()
	defer b.Mu.Unlock()
	set(in.Common())
}

// Persist writes state.json (nothing once the instance is removed). Writes
// are ordered: each writes the state as it is after the previous one.
func Persist[T Entry](in T) error {
	b := in.base()
	b.pmu.Lock()
	defer b.pmu.Unlock()
	b.Mu.Lock()
	st, gone := in.StateSnapshot(), b.Removed
	b.Mu.Unlock()
	if gone {
		return nil
	}
	return fsutil.WriteJSON(b.Path(StateFile), st)
}

// SpecFile is re-exported for the drivers' convenience.
const SpecFile = instdir.SpecFile
