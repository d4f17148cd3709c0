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
// /.vmssd/metadata.json); VMSSD_DISK is "/". vmssd listens on the
// instance's port on the host's loopback and forwards each connection into
// the container's network namespace (Recover opens the forward again).
// That namespace has only loopback, unless the spec asks for a virtual
// network (driver.Spec.Network) and the host can attach it (root, netlink:
// package netattach): then a veth on the network's bridge is its eth0, with
// the spec's private IP, MAC and route, the guest loses CAP_NET_RAW (it
// cannot put forged addresses on the bridge, and has no CAP_NET_ADMIN to
// change its own; ping works through ICMP sockets), and it gets
// VMSSD_PRIVATE_IP (it should listen there, or on every address, to be
// reached by its neighbours). The attachment is renewed with every
// container, checked by Recover (re-attached when a crash lost it) and
// removed with the container; Recover sweeps the links of instances it
// does not know. Status.Network says "bridge" or "loopback". Bundles (config.json, the mounted rootfs) and runc's state live
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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/driver/lifecycle"
	"github.com/vmssd/vmssd/internal/driver/netattach"
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
// parallel). The lifecycle (instance table, locking, state files, the
// operations' skeleton, Recover's walk) is package lifecycle's; this
// driver is its Guest. A graceful Stop sends SIGTERM to the guest's process
// group and waits up to StopTimeout (or until ctx is done) before SIGKILL;
// a Stop keeps the port, Deallocate releases it.
type Driver struct {
	opts    Options
	log     *slog.Logger
	backoff hostproc.Backoff

	tab *lifecycle.Table[*instance]
	// Ops gives the driver its Start, Stop, Deallocate, Restart, Delete,
	// Inspect, List and Console.
	*lifecycle.Ops[*instance]
	// ctx is the table's: cancelled by Close, it bounds every goroutine of
	// the driver (started with tab.Go).
	ctx context.Context

	// mu guards ports and forwards. Lock order: an instance's Op, then mu,
	// then its Mu.
	mu       sync.Mutex
	ports    *portpool.Pool
	forwards map[*sandbox.Forwarder]struct{} // loopback forwards into containers

	// sb runs containers (nil when guests run as plain processes);
	// sandboxErr says why a host that should sandbox cannot.
	sb         *sandboxed
	sandboxErr error
	// net attaches containers to virtual networks (nil where the host
	// cannot: not root, no sandbox).
	net *netattach.Attacher
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
	log := opts.Logger.With("driver", Name)
	tab := lifecycle.NewTable(Name, opts.Root, ErrClosed, log, newInstance)
	d := &Driver{
		opts:     opts,
		log:      log,
		backoff:  backoffOf(opts),
		tab:      tab,
		ctx:      tab.Ctx(),
		ports:    portpool.New(opts.Ports),
		forwards: make(map[*sandbox.Forwarder]struct{}),
	}
	d.Ops = &lifecycle.Ops[*instance]{Tab: tab, Guest: guest{d}, Log: log, Backoff: d.backoff, ErrConflict: ErrConflict, ConsoleMaxBytes: opts.ConsoleMaxBytes}
	if err := d.setupIsolation(); err != nil {
		tab.Close()
		return nil, err
	}
	tab.Go(func() { tab.Housekeep(opts.ConsoleCheckInterval, d.housekeep) })
	return d, nil
}

// backoffOf is the restart backoff of opts.
func backoffOf(o Options) hostproc.Backoff {
	return hostproc.Backoff{Initial: o.RestartBackoff, Max: o.MaxRestartBackoff, StableAfter: stableAfter}
}

// Name returns "process".
func (d *Driver) Name() string { return Name }

// Close stops supervising and waits for the driver's goroutines. Guests keep
// running; a new Driver's Recover re-adopts them. Close is idempotent.
func (d *Driver) Close() error {
	if !d.tab.Close() {
		return nil
	}
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

// checkSpec validates a spec for op ("create", "reimage"): its id, its
// image, how it may run.
func (d *Driver) checkSpec(op string, spec driver.Spec) (driver.Spec, manifest, []byte, Isolation, error) {
	if err := d.tab.ValidID(spec.ID); err != nil {
		return spec, manifest{}, nil, "", err
	}
	spec, m, raw, err := d.prepareSpec(spec)
	if err != nil {
		return spec, m, nil, "", fmt.Errorf("process: %s %s: %w", op, spec.ID, err)
	}
	iso, err := d.isolationFor(spec)
	if err != nil {
		return spec, m, nil, "", fmt.Errorf("process: %s %s: %w", op, spec.ID, err)
	}
	if err := netattach.Validate(spec.Network); err != nil {
		return spec, m, nil, "", fmt.Errorf("process: %s %s: %w", op, spec.ID, err)
	}
	return spec, m, raw, iso, nil
}

// Create builds the instance directory (a fresh disk from the image) and
// starts the guest. Creating an existing ID with the same image (same
// digest, or same directory when a digest is missing) returns its status
// and does nothing else; with another image it fails with ErrConflict. If
// the guest cannot be started, Create returns the error but the instance
// exists and the supervisor keeps retrying (Status.Message says why).
func (d *Driver) Create(ctx context.Context, spec driver.Spec) (driver.Status, error) {
	spec, m, raw, iso, err := d.checkSpec("create", spec)
	if err != nil {
		return driver.Status{}, err
	}
	ctx, cancel := d.tab.OpContext(ctx)
	defer cancel()
	if iso == IsolationRunc {
		unpin, err := d.pinLayer(ctx, spec)
		if err != nil {
			return driver.Status{}, fmt.Errorf("process: create %s: %w", spec.ID, err)
		}
		defer unpin()
	}
	return d.Ops.Create(ctx, spec, lifecycle.CreateSteps[*instance]{
		Build: func(ctx context.Context, dir string) error {
			return d.writeInstanceFiles(ctx, dir, spec, raw, iso)
		},
		State:   func(in *instance) { in.st.Isolation = iso },
		Install: func(in *instance) { in.manifest = m },
	})
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

// writeInstanceFiles writes what an image gives an instance into dir: the
// disk, the manifest and the metadata (not spec.json or state.json).
func (d *Driver) writeInstanceFiles(ctx context.Context, dir string, spec driver.Spec, rawManifest []byte, iso Isolation) error {
	if err := d.newDisk(ctx, spec, iso, dir); err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(dir, manifestFile), rawManifest, 0o644); err != nil {
		return err
	}
	return writeJSONAtomic(filepath.Join(dir, metadataFile), spec.Metadata)
}

// buildInstanceDir builds the instance directory with state st under a
// temporary name in Root and renames it into place (repairs use it).
func (d *Driver) buildInstanceDir(ctx context.Context, spec driver.Spec, rawManifest []byte, st state) error {
	return instdir.Create(d.opts.Root, spec.ID, func(tmp string) error {
		if err := d.writeInstanceFiles(ctx, tmp, spec, rawManifest, st.Isolation); err != nil {
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

// Reimage replaces the OS disk with a fresh copy of spec's image (possibly a
// new one), updates spec.json and metadata.json and starts the instance,
// whatever its power was. The new disk is prepared before the guest is
// stopped, so the downtime is a stop, two renames and a start.
func (d *Driver) Reimage(ctx context.Context, spec driver.Spec) (driver.Status, error) {
	spec, m, raw, iso, err := d.checkSpec("reimage", spec)
	if err != nil {
		return driver.Status{}, err
	}
	ctx, cancel := d.tab.OpContext(ctx)
	defer cancel()
	if iso == IsolationRunc {
		unpin, err := d.pinLayer(ctx, spec)
		if err != nil {
			return driver.Status{}, fmt.Errorf("process: reimage %s: %w", spec.ID, err)
		}
		defer unpin()
	}
	st, err := d.Ops.Reimage(ctx, spec, lifecycle.ReimageSteps[*instance]{
		Build: func(ctx context.Context, dir string) error {
			return d.writeInstanceFiles(ctx, dir, spec, raw, iso)
		},
		Install: func(in *instance) { in.manifest, in.st.Isolation = m, iso },
	})
	d.collectLayers()
	return st, err
}

// Delete kills the guest (SIGKILL) and removes the instance directory. The
// port is released. Deleting an unknown ID returns an error wrapping
// driver.ErrNotFound, which callers treat as "already deleted".
func (d *Driver) Delete(ctx context.Context, id string) error {
	if err := d.Ops.Delete(ctx, id); err != nil {
		return err
	}
	d.collectLayers()
	return nil
}

func (d *Driver) list() []driver.Status { return d.tab.Statuses((*instance).statusLocked) }

// housekeep bounds the console log of in and repairs it when its directory
// vanished. Called with Op held.
func (d *Driver) housekeep(in *instance) {
	if _, err := d.repairLocked(d.ctx, in); err != nil {
		d.log.Error("repair instance", "id", in.ID, "err", err)
	}
	if _, err := rotateConsole(in.Path(consoleFile), d.opts.ConsoleMaxBytes); err != nil {
		d.log.Warn("rotate console", "id", in.ID, "err", err)
	}
}

// guest is the driver's lifecycle.Guest.
type guest struct{ d *Driver }

func (g guest) Running(in *instance) bool                    { return in.proc != nil }
func (g guest) StatusLocked(in *instance) driver.Status      { return in.statusLocked() }
func (g guest) Admit(*instance) error                        { return nil }
func (g guest) Retry(in *instance, delay time.Duration)      { g.d.goRestart(in, delay) }
func (g guest) Launch(_ context.Context, in *instance) error { return g.d.spawnLocked(in, false) }

func (g guest) StopGuest(ctx context.Context, in *instance, graceful bool) (string, error) {
	return "", g.d.stopProcLocked(ctx, in, graceful)
}

func (g guest) Release(in *instance, power driver.Power) {
	switch power {
	case driver.PowerDeallocated:
		g.d.releasePortLocked(in)
	case "":
		g.d.releasePortLocked(in)
		g.d.removeBundle(in.ID)
		g.d.net.Release(in.ID, in.Spec.Network)
	}
}
