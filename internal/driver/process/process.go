// Package process is the "process" driver: every instance is a supervised
// guest process started from a "vmssd.process/v1" image (see package
// artifact), in its own runc sandbox (package sandbox) by default.
//
// Isolation. With IsolationRunc (the default) the guest is the init process
// of an OCI container: its root file system is an overlay of the image's
// rootfs (copied once per image into Root+".layers" with its owners
// shifted into the container's mapped id range, read-only, shared) and the
// instance's disk/ (its writable layer); the guest binary, its ELF
// libraries and metadata.json are read-only binds (/.vmssd/guest,
// /.vmssd/metadata.json); VMSSD_DISK is "/". Its network namespace has only
// loopback: vmssd listens on the instance's port on the host's loopback and
// forwards each connection into the namespace (Recover opens the forward
// again). Bundles (config.json, the mounted rootfs) and runc's state live
// in RunDir, so that nothing of the data directory is on a path the
// container's mapped root must traverse. A host that cannot sandbox (no
// runc, not root) refuses every instance, or with AllowUnsandboxed runs
// operator images (driver.Spec.OperatorImage) as plain processes; tenant
// images never run unsandboxed (driver.ErrSandboxUnavailable).
// IsolationNone runs plain processes (operator images only), as described
// below.
//
// Each instance lives in <Root>/<ID>/:
//
//	spec.json      the driver.Spec
//	manifest.json  a copy of the image's manifest
//	metadata.json  Spec.Metadata, for the guest (VMSSD_METADATA)
//	state.json     desired power, port, pid and start time, restarts, ...
//	console.log    the guest's stdout and stderr, bounded (console.log.1
//	               holds the previous tail)
//	disk/          the OS disk: a fresh copy of the image's rootfs/, the
//	               guest's working directory (VMSSD_DISK); for a container,
//	               the writable layer above the image's
//	work/          overlayfs's work directory (containers)
//
// State files are replaced atomically (write a temporary file, rename). The
// guest runs in its own session and process group, with the image's
// environment plus VMSSD_PORT, VMSSD_METADATA and VMSSD_DISK and nothing
// else, and outlives vmssd: Recover re-adopts it.
//
// A supervisor goroutine per guest waits for the guest to exit (through a
// pidfd registered with the Go netpoller, so idle instances cost no threads
// and no polling) and restarts it with exponential backoff while its desired
// power is running.
//
// Crash safety: an instance directory is built under a temporary name and
// renamed into place, a reimage prepares the new disk beside the old one and
// commits with a rename, a deletion renames the directory away before
// removing it. Recover removes whatever an interrupted operation left and
// finishes committed reimages, so vmssd may be killed at any point.
package process

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
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/driver/portpool"
	"github.com/vmssd/vmssd/internal/driver/sandbox"
	"github.com/vmssd/vmssd/internal/fsutil"
)

// Name is the driver's name.
const Name = "process"

// Errors of this driver, besides driver.ErrNotFound and
// driver.ErrImageInvalid. Errors are wrapped: test them with errors.Is.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("process: driver closed")
	// ErrConflict is returned by Create for an existing ID whose image
	// differs from the requested one (use Reimage to change it).
	ErrConflict = errors.New("process: instance exists with another image")
)

// Options configures a Driver. Zero values select the defaults.
type Options struct {
	// Root is the directory holding one directory per instance. Required.
	Root string
	// GuestBinary replaces ${VMSSD_GUEST} in entrypoints. Default: the
	// running executable (os.Executable).
	GuestBinary string
	// Logger receives the driver's logs. Default: discard.
	Logger *slog.Logger
	// Ports is the range instance ports are taken from. Default: ports
	// picked by the kernel (listen on 127.0.0.1:0).
	Ports PortRange
	// RestartBackoff is the delay before restarting a crashed guest; it
	// doubles with each consecutive crash up to MaxRestartBackoff and resets
	// once a guest ran for 10s. Defaults: 1s and 1m.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// StopTimeout is how long a graceful stop waits after SIGTERM before
	// SIGKILL. Default: 10s.
	StopTimeout time.Duration
	// ConsoleMaxBytes bounds console.log. Default: 1 MiB.
	ConsoleMaxBytes int64
	// ConsoleCheckInterval is how often console sizes are checked (and
	// console.log is rotated when a guest is started). Default: 10s.
	ConsoleCheckInterval time.Duration
	// PollInterval is how often a guest's liveness is polled when the
	// kernel offers no pidfd. Default: 250ms.
	PollInterval time.Duration

	// Isolation is how guests run: IsolationRunc (the default) in runc
	// containers, IsolationNone as plain processes (operator images only).
	Isolation Isolation
	// AllowUnsandboxed lets operator images run as plain processes when
	// Isolation is IsolationRunc but this host cannot sandbox (no runc, not
	// root). Without it nothing runs there. Tenant images never run
	// unsandboxed.
	AllowUnsandboxed bool
	// Runc is the runc binary. Default: "runc" in PATH.
	Runc string
	// RunDir holds the containers' bundles (their root file system mount
	// points) and runc's state; every directory on its path must be
	// searchable by others (the containers' mapped root reaches its root
	// file system through it). Default: /run/vmssd/<hash of Root>.
	RunDir string
	// IDs is the host id range container ids map to. Default: 1000000,
	// 65536 ids.
	IDs sandbox.IDMap
	// Pids bounds the processes of one container. Default: 1024.
	Pids int64
}

func (o *Options) setDefaults() error {
	if o.Root == "" {
		return errors.New("process: Options.Root is required")
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return fmt.Errorf("process: root: %w", err)
	}
	o.Root = root
	if o.GuestBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("process: guest binary: %w", err)
		}
		o.GuestBinary = exe
	}
	if abs, err := filepath.Abs(o.GuestBinary); err == nil {
		o.GuestBinary = abs
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := o.Ports.Validate(); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.RestartBackoff, time.Second)
	def(&o.MaxRestartBackoff, time.Minute)
	o.MaxRestartBackoff = max(o.MaxRestartBackoff, o.RestartBackoff)
	def(&o.StopTimeout, 10*time.Second)
	def(&o.ConsoleCheckInterval, 10*time.Second)
	def(&o.PollInterval, 250*time.Millisecond)
	if o.ConsoleMaxBytes <= 0 {
		o.ConsoleMaxBytes = 1 << 20
	}
	return nil
}

// Driver runs instances as supervised host processes. It implements
// driver.Driver; its methods are safe for concurrent use (operations on one
// instance are serialized, operations on different instances run in
// parallel).
type Driver struct {
	opts Options
	log  *slog.Logger

	// ctx is cancelled by Close; it bounds every goroutine of the driver,
	// and wg counts them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	instances map[string]*instance
	ports     *portpool.Pool
	forwards  map[*sandbox.Forwarder]struct{} // loopback forwards into containers

	// sb runs containers (nil when guests run as plain processes);
	// sandboxErr says why a host that should sandbox cannot.
	sb         *sandboxed
	sandboxErr error
}

var _ driver.Driver = (*Driver)(nil)

// New returns a driver keeping its instances under opts.Root (created if
// needed). Call Recover before anything else when Root may hold instances.
func New(opts Options) (*Driver, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Root, 0o700); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Driver{
		opts:      opts,
		log:       opts.Logger.With("driver", Name),
		ctx:       ctx,
		cancel:    cancel,
		instances: make(map[string]*instance),
		ports:     portpool.New(opts.Ports),
		forwards:  make(map[*sandbox.Forwarder]struct{}),
	}
	if err := d.setupIsolation(); err != nil {
		cancel()
		return nil, err
	}
	d.wg.Add(1)
	go d.housekeep()
	return d, nil
}

// Name returns "process".
func (d *Driver) Name() string { return Name }

// Close stops supervising and waits for the driver's goroutines. Guests keep
// running; a new Driver's Recover re-adopts them. Close is idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	// The guests keep running; their forwards end with this process (the
	// next Recover opens them again).
	d.mu.Lock()
	fws := make([]*sandbox.Forwarder, 0, len(d.forwards))
	for fw := range d.forwards {
		fws = append(fws, fw)
	}
	clear(d.forwards)
	d.mu.Unlock()
	for _, fw := range fws {
		fw.Close()
	}
	d.removeIdleRunDir()
	return nil
}

// Create builds the instance directory (a fresh disk from the image) and
// starts the guest. Creating an existing ID with the same image (same
// digest, or same directory when a digest is missing) returns its status
// and does nothing else; with another image it fails with ErrConflict. If
// the guest cannot be started, Create returns the error but the instance
// exists and the supervisor keeps retrying (Status.Message says why).
func (d *Driver) Create(ctx context.Context, spec driver.Spec) (driver.Status, error) {
	if err := validID(spec.ID); err != nil {
		return driver.Status{}, err
	}
	spec, m, raw, err := d.prepareSpec(spec)
	if err != nil {
		return driver.Status{}, fmt.Errorf("process: create %s: %w", spec.ID, err)
	}
	iso, err := d.isolationFor(spec)
	if err != nil {
		return driver.Status{}, fmt.Errorf("process: create %s: %w", spec.ID, err)
	}
	in, err := d.lockOrAdd(spec.ID)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.Unlock()
	if in.created {
		in.mu.Lock()
		cur := in.spec
		in.mu.Unlock()
		if sameImage(cur, spec) {
			return in.status(), nil
		}
		return in.status(), fmt.Errorf("process: create %s with image %s: %w (it has %s)",
			spec.ID, spec.ImageDigest, ErrConflict, cur.ImageDigest)
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	now := time.Now().UTC()
	st := state{Desired: driver.PowerRunning, Power: driver.PowerStarting, Since: now, Message: "creating", Isolation: iso}
	if iso == IsolationRunc {
		unpin, err := d.pinLayer(ctx, spec)
		if err != nil {
			d.drop(in)
			return driver.Status{}, fmt.Errorf("process: create %s: %w", spec.ID, err)
		}
		defer unpin()
	}
	if err := d.buildInstanceDir(ctx, spec, raw, st); err != nil {
		d.drop(in)
		return driver.Status{}, fmt.Errorf("process: create %s: %w", spec.ID, err)
	}
	in.mu.Lock()
	in.created, in.spec, in.manifest, in.st = true, spec, m, st
	in.mu.Unlock()
	d.log.Info("instance created", "id", spec.ID, "image", spec.ImageDigest)
	return d.startLocked(in)
}

// prepareSpec makes spec.ImageDir absolute and loads the image.
func (d *Driver) prepareSpec(spec driver.Spec) (driver.Spec, manifest, []byte, error) {
	if spec.ImageDir != "" {
		abs, err := filepath.Abs(spec.ImageDir)
		if err != nil {
			return spec, manifest{}, nil, err
		}
		spec.ImageDir = abs
	}
	m, raw, err := loadImage(spec.ImageDir)
	return spec, m, raw, err
}

// buildInstanceDir builds the instance directory under a temporary name in
// Root and renames it into place: a crash leaves either nothing or a
// complete directory.
func (d *Driver) buildInstanceDir(ctx context.Context, spec driver.Spec, rawManifest []byte, st state) error {
	return instdir.Create(d.opts.Root, spec.ID, func(tmp string) error {
		if err := d.newDisk(ctx, spec, st.Isolation, tmp); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(tmp, manifestFile), rawManifest, 0o644); err != nil {
			return err
		}
		if err := writeJSONAtomic(filepath.Join(tmp, metadataFile), spec.Metadata); err != nil {
			return err
		}
		if err := writeJSONAtomic(filepath.Join(tmp, stateFile), st); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(tmp, consoleFile), nil, 0o640); err != nil {
			return err
		}
		return writeJSONAtomic(filepath.Join(tmp, specFile), spec)
	})
}

// newDisk makes dir/disk: a copy of the rootfs of spec's image for a plain
// process, an empty writable layer above the image's for a container.
func (d *Driver) newDisk(ctx context.Context, spec driver.Spec, iso Isolation, dir string) error {
	if iso == IsolationRunc {
		return d.prepareUpper(filepath.Join(dir, diskDir))
	}
	return copyDisk(ctx, spec, dir)
}

// copyDisk copies the rootfs of spec's image to dir/disk.
func copyDisk(ctx context.Context, spec driver.Spec, dir string) error {
	if err := fsutil.CopyTree(ctx, filepath.Join(spec.ImageDir, rootfsDir), filepath.Join(dir, diskDir)); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	return nil
}

// Start boots a stopped or deallocated instance on its existing disk (a
// deallocated instance gets a new port). Starting a running instance does
// nothing; starting one whose guest is between crash restarts restarts it
// now.
func (d *Driver) Start(ctx context.Context, id string) (driver.Status, error) {
	in, err := d.lockInstance(id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.Unlock()
	in.cancelRestart()
	in.mu.Lock()
	running, desired := in.proc != nil, in.st.Desired
	in.mu.Unlock()
	if running {
		if desired != driver.PowerRunning {
			in.update(func(st *state) { st.Desired = driver.PowerRunning })
			if err := in.persist(); err != nil {
				return in.status(), err
			}
		}
		return in.status(), nil
	}
	return d.startLocked(in)
}

// startLocked starts the guest of an instance that has none. If it cannot,
// the supervisor retries with backoff. Called with op held.
func (d *Driver) startLocked(in *instance) (driver.Status, error) {
	in.failures = 0
	in.update(func(st *state) {
		st.Desired = driver.PowerRunning
		st.setPower(driver.PowerStarting, "")
	})
	if err := in.persist(); err != nil {
		return in.status(), err
	}
	if err := d.spawnLocked(in, false); err != nil {
		delay := in.nextBackoff(d.opts, 0)
		in.update(func(st *state) {
			st.setPower(driver.PowerStarting, fmt.Sprintf("start failed: %v; retrying in %s", err, delay))
		})
		if perr := in.persist(); perr != nil {
			d.log.Error("persist instance state", "id", in.id, "err", perr)
		}
		d.goRestart(in, delay)
		return in.status(), fmt.Errorf("process: start %s: %w", in.id, err)
	}
	return in.status(), nil
}

// Stop powers the instance off and keeps its disk and its port. graceful
// sends SIGTERM to the guest's process group and waits up to StopTimeout
// (or until ctx is done) before SIGKILL; otherwise SIGKILL at once. Stopping
// a stopped or deallocated instance does nothing.
func (d *Driver) Stop(ctx context.Context, id string, graceful bool) (driver.Status, error) {
	in, err := d.lockInstance(id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.Unlock()
	in.cancelRestart()
	in.mu.Lock()
	idle := in.proc == nil && in.st.Desired != driver.PowerRunning
	in.mu.Unlock()
	if idle {
		return in.status(), nil
	}
	if err := d.powerOffLocked(ctx, in, driver.PowerStopped, driver.PowerStopping, graceful); err != nil {
		return in.status(), err
	}
	d.log.Info("instance stopped", "id", id, "graceful", graceful)
	return in.status(), nil
}

// Deallocate stops the instance gracefully and releases its port; the disk
// is kept.
func (d *Driver) Deallocate(ctx context.Context, id string) (driver.Status, error) {
	in, err := d.lockInstance(id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.Unlock()
	in.cancelRestart()
	in.mu.Lock()
	done := in.proc == nil && in.st.Desired == driver.PowerDeallocated
	in.mu.Unlock()
	if done {
		return in.status(), nil
	}
	if err := d.powerOffLocked(ctx, in, driver.PowerDeallocated, driver.PowerDeallocating, true); err != nil {
		return in.status(), err
	}
	d.log.Info("instance deallocated", "id", id)
	return in.status(), nil
}

// powerOffLocked records the desired power target, stops the guest while
// showing transient, and settles on target (releasing the port for
// deallocated). Called with op held.
func (d *Driver) powerOffLocked(ctx context.Context, in *instance, target, transient driver.Power, graceful bool) error {
	in.update(func(st *state) {
		st.Desired = target
		st.setPower(transient, "")
	})
	if err := in.persist(); err != nil {
		return err
	}
	if err := d.stopProcLocked(ctx, in, graceful); err != nil {
		in.update(func(st *state) { st.Message = "stop failed: " + err.Error() })
		if perr := in.persist(); perr != nil {
			d.log.Error("persist instance state", "id", in.id, "err", perr)
		}
		return fmt.Errorf("process: stop %s: %w", in.id, err)
	}
	if target == driver.PowerDeallocated {
		d.releasePortLocked(in)
	}
	in.update(func(st *state) { st.setPower(target, "") })
	return in.persist()
}

// Restart stops the instance gracefully and starts it again (a stopped
// instance is just started).
func (d *Driver) Restart(ctx context.Context, id string) (driver.Status, error) {
	in, err := d.lockInstance(id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.Unlock()
	in.cancelRestart()
	in.update(func(st *state) {
		if in.proc != nil {
			st.setPower(driver.PowerStopping, "restarting")
		}
	})
	if err := d.stopProcLocked(ctx, in, true); err != nil {
		return in.status(), fmt.Errorf("process: restart %s: %w", id, err)
	}
	return d.startLocked(in)
}

// Reimage replaces the OS disk with a fresh copy of spec's image (possibly a
// new one), updates spec.json and metadata.json and starts the instance,
// whatever its power was. The new disk is prepared before the guest is
// stopped, so the downtime is a stop, two renames and a start.
func (d *Driver) Reimage(ctx context.Context, spec driver.Spec) (driver.Status, error) {
	if err := validID(spec.ID); err != nil {
		return driver.Status{}, err
	}
	spec, m, raw, err := d.prepareSpec(spec)
	if err != nil {
		return driver.Status{}, fmt.Errorf("process: reimage %s: %w", spec.ID, err)
	}
	iso, err := d.isolationFor(spec)
	if err != nil {
		return driver.Status{}, fmt.Errorf("process: reimage %s: %w", spec.ID, err)
	}
	in, err := d.lockInstance(spec.ID)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.Unlock()
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	if iso == IsolationRunc {
		unpin, err := d.pinLayer(ctx, spec)
		if err != nil {
			return in.status(), fmt.Errorf("process: reimage %s: %w", spec.ID, err)
		}
		defer unpin()
	}

	staging := in.path(reimageDir)
	if err := d.stageReimage(ctx, in.dir, spec, raw, iso); err != nil {
		return in.status(), fmt.Errorf("process: reimage %s: %w", spec.ID, err)
	}
	in.cancelRestart()
	in.update(func(st *state) {
		st.Desired = driver.PowerRunning
		st.setPower(driver.PowerStopping, "reimaging")
	})
	if err := in.persist(); err != nil {
		os.RemoveAll(staging)
		return in.status(), err
	}
	if err := d.stopProcLocked(ctx, in, true); err != nil {
		os.RemoveAll(staging)
		return in.status(), fmt.Errorf("process: reimage %s: %w", spec.ID, err)
	}
	// Commit: from here on Recover completes the reimage.
	if err := os.Rename(staging, in.path(reimageReady)); err != nil {
		os.RemoveAll(staging)
		return in.status(), fmt.Errorf("process: reimage %s: %w", spec.ID, err)
	}
	if err := instdir.ApplyReimage(in.dir); err != nil {
		in.update(func(st *state) { st.setPower(driver.PowerUnknown, "reimage failed: "+err.Error()) })
		return in.status(), fmt.Errorf("process: reimage %s: %w", spec.ID, err)
	}
	in.mu.Lock()
	in.spec, in.manifest, in.st.Isolation = spec, m, iso
	in.mu.Unlock()
	d.log.Info("instance reimaged", "id", spec.ID, "image", spec.ImageDigest)
	d.collectLayers()
	return d.startLocked(in)
}

// stageReimage prepares, in the instance directory dir, what
// instdir.ApplyReimage installs.
func (d *Driver) stageReimage(ctx context.Context, dir string, spec driver.Spec, rawManifest []byte, iso Isolation) error {
	return instdir.StageReimage(dir, func(staging string) error {
		if err := d.newDisk(ctx, spec, iso, staging); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(staging, manifestFile), rawManifest, 0o644); err != nil {
			return err
		}
		if err := writeJSONAtomic(filepath.Join(staging, metadataFile), spec.Metadata); err != nil {
			return err
		}
		return writeJSONAtomic(filepath.Join(staging, specFile), spec)
	})
}

// Delete kills the guest (SIGKILL) and removes the instance directory. The
// port is released. Deleting an unknown ID returns an error wrapping
// driver.ErrNotFound, which callers treat as "already deleted".
func (d *Driver) Delete(ctx context.Context, id string) error {
	in, err := d.lockInstance(id)
	if err != nil {
		return err
	}
	defer in.op.Unlock()
	in.cancelRestart()
	// Record the intent first: if vmssd dies before the directory is gone,
	// Recover must not start the guest again.
	in.update(func(st *state) {
		st.Desired = driver.PowerStopped
		if in.proc != nil {
			st.setPower(driver.PowerStopping, "deleting")
		}
	})
	if err := in.persist(); err != nil {
		return fmt.Errorf("process: delete %s: %w", id, err)
	}
	if err := d.stopProcLocked(ctx, in, false); err != nil {
		return fmt.Errorf("process: delete %s: %w", id, err)
	}
	// Rename first: a crash during the removal leaves a dot-directory that
	// Recover removes, never a half-deleted instance.
	trash := filepath.Join(d.opts.Root, ".delete-"+id+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(in.dir, trash); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("process: delete %s: %w", id, err)
	}
	d.releasePortLocked(in)
	d.drop(in)
	d.removeBundle(id)
	d.log.Info("instance deleted", "id", id)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("process: delete %s: remove files: %w", id, err)
	}
	d.collectLayers()
	return nil
}

// Inspect returns the status of one instance, or an error wrapping
// driver.ErrNotFound.
func (d *Driver) Inspect(ctx context.Context, id string) (driver.Status, error) {
	d.mu.Lock()
	closed, in := d.closed, d.instances[id]
	d.mu.Unlock()
	if closed {
		return driver.Status{}, ErrClosed
	}
	if in != nil {
		in.mu.Lock()
		defer in.mu.Unlock()
		if in.created && !in.removed {
			return in.statusLocked(), nil
		}
	}
	return driver.Status{}, notFound(id)
}

// List returns the status of every instance, sorted by ID.
func (d *Driver) List(ctx context.Context) ([]driver.Status, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	return d.list(), nil
}

func (d *Driver) list() []driver.Status {
	out := make([]driver.Status, 0, 16)
	for _, in := range d.snapshot() {
		in.mu.Lock()
		if in.created && !in.removed {
			out = append(out, in.statusLocked())
		}
		in.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b driver.Status) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// snapshot returns the known instances.
func (d *Driver) snapshot() []*instance {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*instance, 0, len(d.instances))
	for _, in := range d.instances {
		out = append(out, in)
	}
	return out
}

func notFound(id string) error {
	return fmt.Errorf("process: instance %q: %w", id, driver.ErrNotFound)
}

// lockInstance returns the created instance id with its op lock held.
func (d *Driver) lockInstance(id string) (*instance, error) {
	for {
		d.mu.Lock()
		closed, in := d.closed, d.instances[id]
		d.mu.Unlock()
		switch {
		case closed:
			return nil, ErrClosed
		case in == nil:
			return nil, notFound(id)
		}
		in.op.Lock()
		in.mu.Lock()
		removed, created := in.removed, in.created
		in.mu.Unlock()
		switch {
		case removed:
			in.op.Unlock()
			continue // look again: it was deleted or its Create failed
		case !created:
			in.op.Unlock()
			return nil, notFound(id)
		}
		return in, nil
	}
}

// lockOrAdd returns instance id, added if unknown (not created yet), with
// its op lock held.
func (d *Driver) lockOrAdd(id string) (*instance, error) {
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, ErrClosed
		}
		in := d.instances[id]
		if in == nil {
			in = &instance{id: id, dir: filepath.Join(d.opts.Root, id)}
			d.instances[id] = in
		}
		d.mu.Unlock()
		in.op.Lock()
		in.mu.Lock()
		removed := in.removed
		in.mu.Unlock()
		if removed {
			in.op.Unlock()
			continue
		}
		return in, nil
	}
}

// drop forgets in. Called with op held.
func (d *Driver) drop(in *instance) {
	in.mu.Lock()
	in.removed = true
	in.mu.Unlock()
	d.mu.Lock()
	if d.instances[in.id] == in {
		delete(d.instances, in.id)
	}
	d.mu.Unlock()
}

// opContext returns ctx, also cancelled by Close.
func (d *Driver) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(d.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// housekeep bounds the console logs and repairs instances whose directory
// vanished.
func (d *Driver) housekeep() {
	defer d.wg.Done()
	t := time.NewTicker(d.opts.ConsoleCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		for _, in := range d.snapshot() {
			// Skip an instance busy with an operation (it may be moving
			// its directory); the next round gets it.
			if !in.op.TryLock() {
				continue
			}
			in.mu.Lock()
			live := in.created && !in.removed
			in.mu.Unlock()
			if live {
				if _, err := d.repairLocked(d.ctx, in); err != nil {
					d.log.Error("repair instance", "id", in.id, "err", err)
				}
				if _, err := rotateConsole(in.path(consoleFile), d.opts.ConsoleMaxBytes); err != nil {
					d.log.Warn("rotate console", "id", in.id, "err", err)
				}
			}
			in.op.Unlock()
		}
	}
}

// validID checks that id can name a directory (instdir.ValidID).
func validID(id string) error {
	if err := instdir.ValidID(id); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	return nil
}

// Console returns the newest bytes of the guest's stdout and stderr (the
// rotated console.log.1 followed by console.log), at most ConsoleMaxBytes.
func (d *Driver) Console(ctx context.Context, id string) ([]byte, error) {
	d.mu.Lock()
	closed, in := d.closed, d.instances[id]
	d.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if in == nil {
		return nil, notFound(id)
	}
	in.mu.Lock()
	gone := !in.created || in.removed
	in.mu.Unlock()
	if gone {
		return nil, notFound(id)
	}
	b, err := fsutil.TailLog(in.path(consoleFile), d.opts.ConsoleMaxBytes)
	if err != nil {
		return nil, fmt.Errorf("process: console of %s: %w", id, err)
	}
	return b, nil
}
