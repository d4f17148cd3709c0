package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/fsutil"
)

// Table is a driver's set of instances, keyed by ID, and the life of the
// driver's goroutines: its context ends with Close, which waits for them.
type Table[T Entry] struct {
	name      string // the driver's name, prefix of errors
	root      string
	errClosed error
	newEntry  func(id, dir string) T
	log       *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	m      map[string]T
}

// NewTable returns the table of a driver named name keeping its instances
// in root. errClosed is returned by every method after Close; newEntry makes
// the in-memory instance of id (with Base.Init called).
func NewTable[T Entry](name, root string, errClosed error, log *slog.Logger, newEntry func(id, dir string) T) *Table[T] {
	ctx, cancel := context.WithCancel(context.Background())
	return &Table[T]{
		name: name, root: root, errClosed: errClosed, newEntry: newEntry, log: log,
		ctx: ctx, cancel: cancel, m: make(map[string]T),
	}
}

// Root is the directory holding the instance directories.
func (t *Table[T]) Root() string { return t.root }

// Ctx is cancelled by Close.
func (t *Table[T]) Ctx() context.Context { return t.ctx }

// Go runs f in a goroutine Close waits for; it returns false (and does not
// run f) once the table is closed.
func (t *Table[T]) Go(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
	return true
}

// Close cancels Ctx and waits for the goroutines started by Go. It returns
// false when the table was already closed.
func (t *Table[T]) Close() bool {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false
	}
	t.closed = true
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	return true
}

// Closed says Close was called.
func (t *Table[T]) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

// Len is the number of instances known (including ones being created).
func (t *Table[T]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// NotFound is the error for an unknown id.
func (t *Table[T]) NotFound(id string) error {
	return fmt.Errorf("%s: instance %q: %w", t.name, id, driver.ErrNotFound)
}

// Errorf formats an error with the driver's prefix.
func (t *Table[T]) Errorf(format string, args ...any) error {
	return fmt.Errorf(t.name+": "+format, args...)
}

// Get returns instance id (possibly still being created).
func (t *Table[T]) Get(id string) (T, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var zero T
	if t.closed {
		return zero, t.errClosed
	}
	in, ok := t.m[id]
	if !ok {
		return zero, t.NotFound(id)
	}
	return in, nil
}

// GetLive returns instance id if it exists (created, not removed).
func (t *Table[T]) GetLive(id string) (T, error) {
	in, err := t.Get(id)
	if err != nil {
		return in, err
	}
	b := in.base()
	b.Mu.Lock()
	live := b.Live()
	b.Mu.Unlock()
	if !live {
		var zero T
		return zero, t.NotFound(id)
	}
	return in, nil
}

// Lock returns the created instance id with its Op lock held. The wait for
// the lock ends with ctx.
func (t *Table[T]) Lock(ctx context.Context, id string) (T, error) {
	var zero T
	for {
		in, err := t.Get(id)
		if err != nil {
			return zero, err
		}
		b := in.base()
		if err := b.Op.Lock(ctx); err != nil {
			return zero, fmt.Errorf("%s: %s: %w", t.name, id, err)
		}
		b.Mu.Lock()
		removed, created := b.Removed, b.Created
		b.Mu.Unlock()
		switch {
		case removed:
			b.Op.Unlock()
			continue // look again: it was deleted or its Create failed
		case !created:
			b.Op.Unlock()
			return zero, t.NotFound(id)
		}
		return in, nil
	}
}

// LockOrAdd returns instance id, added if unknown (not created yet), with
// its Op lock held.
func (t *Table[T]) LockOrAdd(ctx context.Context, id string) (T, error) {
	var zero T
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return zero, t.errClosed
		}
		in, ok := t.m[id]
		if !ok {
			in = t.newEntry(id, filepath.Join(t.root, id))
			t.m[id] = in
		}
		t.mu.Unlock()
		b := in.base()
		if err := b.Op.Lock(ctx); err != nil {
			return zero, fmt.Errorf("%s: %s: %w", t.name, id, err)
		}
		b.Mu.Lock()
		removed := b.Removed
		b.Mu.Unlock()
		if removed {
			b.Op.Unlock()
			continue
		}
		return in, nil
	}
}

// IDs returns the ids of the known instances.
func (t *Table[T]) IDs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.m))
	for id := range t.m {
		out = append(out, id)
	}
	return out
}

// Known says whether id is in the table.
func (t *Table[T]) Known(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.m[id]
	return ok
}

// Put adds a recovered instance.
func (t *Table[T]) Put(in T) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.m[in.base().ID] = in
}

// Drop forgets in. Called with Op held.
func (t *Table[T]) Drop(in T) {
	b := in.base()
	b.Mu.Lock()
	b.Removed = true
	b.Mu.Unlock()
	t.mu.Lock()
	if cur, ok := t.m[b.ID]; ok && cur.base() == b {
		delete(t.m, b.ID)
	}
	t.mu.Unlock()
}

// Snapshot returns the known instances.
func (t *Table[T]) Snapshot() []T {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]T, 0, len(t.m))
	for _, in := range t.m {
		out = append(out, in)
	}
	return out
}

// Statuses returns the status of every live instance, sorted by ID.
// statusLocked is called with the instance's Mu held.
func (t *Table[T]) Statuses(statusLocked func(T) driver.Status) []driver.Status {
	out := make([]driver.Status, 0, 16)
	for _, in := range t.Snapshot() {
		b := in.base()
		b.Mu.Lock()
		if b.Live() {
			out = append(out, statusLocked(in))
		}
		b.Mu.Unlock()
	}
	slices.SortFunc(out, func(a, b driver.Status) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// List is Driver.List.
func (t *Table[T]) List(statusLocked func(T) driver.Status) ([]driver.Status, error) {
	if t.Closed() {
		return nil, t.errClosed
	}
	return t.Statuses(statusLocked), nil
}

// Inspect is Driver.Inspect.
func (t *Table[T]) Inspect(id string, statusLocked func(T) driver.Status) (driver.Status, error) {
	in, err := t.Get(id)
	if err != nil {
		return driver.Status{}, err
	}
	b := in.base()
	b.Mu.Lock()
	defer b.Mu.Unlock()
	if !b.Live() {
		return driver.Status{}, t.NotFound(id)
	}
	return statusLocked(in), nil
}

// Console returns the newest bytes of the instance's console.log (after
// the rotated console.log.1), at most limit.
func (t *Table[T]) Console(id string, limit int64) ([]byte, error) {
	in, err := t.GetLive(id)
	if err != nil {
		return nil, err
	}
	b, err := fsutil.TailLog(in.base().Path(ConsoleFile), limit)
	if err != nil {
		return nil, fmt.Errorf("%s: console of %s: %w", t.name, id, err)
	}
	return b, nil
}

// OpContext returns ctx, also cancelled by Close.
func (t *Table[T]) OpContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(t.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// Housekeep calls each, every interval until Close, for every live instance
// whose Op lock is free (it is held during the call). Run it with Go.
func (t *Table[T]) Housekeep(interval time.Duration, each func(T)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		for _, in := range t.Snapshot() {
			b := in.base()
			// Skip an instance busy with an operation (it may be moving
			// its directory); the next round gets it.
			if !b.Op.TryLock() {
				continue
			}
			b.Mu.Lock()
			live := b.Live()
			b.Mu.Unlock()
			if live {
				each(in)
			}
			b.Op.Unlock()
		}
	}
}

// ValidID checks that id can name an instance directory (instdir.ValidID).
func (t *Table[T]) ValidID(id string) error {
	if err := instdir.ValidID(id); err != nil {
		return fmt.Errorf("%s: %w", t.name, err)
	}
	return nil
}

// Recover walks Root after a restart: dot-entries (an interrupted Create or
// Delete) are removed, unexpected entries ignored, and one is called for
// each instance directory. It returns the errors of one, joined.
func (t *Table[T]) Recover(ctx context.Context, one func(ctx context.Context, id string) error) error {
	if t.Closed() {
		return t.errClosed
	}
	entries, err := os.ReadDir(t.root)
	if err != nil {
		return fmt.Errorf("%s: recover: %w", t.name, err)
	}
	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, fmt.Errorf("%s: recover: %w", t.name, err))...)
		}
		name := e.Name()
		path := filepath.Join(t.root, name)
		if strings.HasPrefix(name, ".") {
			t.log.Info("recover: removing leftover of an interrupted operation", "path", path)
			if err := os.RemoveAll(path); err != nil {
				errs = append(errs, fmt.Errorf("%s: recover: %w", t.name, err))
			}
			continue
		}
		if !e.IsDir() || instdir.ValidID(name) != nil {
			t.log.Warn("recover: ignoring unexpected entry", "path", path)
			continue
		}
		if err := one(ctx, name); err != nil {
			t.log.Error("recover instance", "id", name, "err", err)
			errs = append(errs, fmt.Errorf("%s: recover %s: %w", t.name, name, err))
		}
	}
	return errors.Join(errs...)
}

// Load reads the instance directory of id for Recover: it removes a
// half-created one (no spec.json), cleans up after an interrupted reimage
// (instdir.Clean), and returns a new created instance holding its spec and
// its state.json (or, when that is unusable, a state that should run).
// ok is false when there is nothing to recover (known already, removed).
func (t *Table[T]) Load(id string) (in T, ok bool, err error) {
	dir := filepath.Join(t.root, id)
	if t.Known(id) {
		return in, false, nil
	}
	if _, err := os.Lstat(filepath.Join(dir, instdir.SpecFile)); err != nil {
		t.log.Info("recover: removing half-created instance", "id", id)
		return in, false, os.RemoveAll(dir)
	}
	if err := instdir.Clean(dir); err != nil {
		return in, false, err
	}
	var spec driver.Spec
	if err := fsutil.ReadJSON(filepath.Join(dir, instdir.SpecFile), &spec); err != nil {
		return in, false, fmt.Errorf("%s: %w", t.name, err)
	}
	if spec.ID != id {
		return in, false, fmt.Errorf("spec.json has id %q", spec.ID)
	}
	in = t.newEntry(id, dir)
	if err := fsutil.ReadJSON(filepath.Join(dir, StateFile), in.StatePtr()); err != nil {
		t.log.Warn("recover: no usable state, assuming it should run", "id", id, "err", err)
		in = t.newEntry(id, dir)
		*in.Common() = State{Desired: driver.PowerRunning, Power: driver.PowerUnknown}
	}
	b := in.base()
	b.Created, b.Spec = true, spec
	return in, true, nil
}

// ReadManifest returns the instance's copy of its image manifest,
// restoring it from the image (load returns the image's raw manifest) when
// it is missing.
func ReadManifest(dir string, load func() ([]byte, error)) ([]byte, error) {
	path := filepath.Join(dir, instdir.ManifestFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if raw, err = load(); err != nil {
			return nil, err
		}
		if err := fsutil.WriteFile(path, raw, 0o644); err != nil {
			return nil, err
		}
		return raw, nil
	}
	return raw, err
}

// trashName is where Delete moves an instance directory before removing
// it: a crash during the removal leaves a dot-directory that Recover
// removes, never a half-deleted instance.
func (t *Table[T]) trashName(id string) string {
	return filepath.Join(t.root, ".delete-"+id+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
}
