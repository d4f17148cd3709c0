// Package qemu is the "qemu" driver: every instance is a virtual machine,
// one qemu-system-x86_64 process per instance, started from a
// "vmssd.qemu/v1" image (see package artifact): a kernel and initrd booted
// directly, or a boot disk, or both.
//
// Each instance lives in <Root>/<ID>/, which is also QEMU's working
// directory:
//
//	spec.json      the driver.Spec
//	manifest.json  a copy of the image's manifest
//	metadata.json  Spec.Metadata, given to the guest as the fw_cfg file
//	               opt/vmssd/metadata
//	state.json     desired power, ports, pid and start time, restarts, ...
//	console.log    the serial console (ttyS0), bounded (console.log.1 holds
//	               the previous tail)
//	qemu.log       QEMU's own output, bounded
//	qemu.pid       QEMU's pid, written by vmssd when it starts QEMU
//	run/qmp.sock   QEMU's QMP socket (run/ is QEMU's user's)
//	disk/          kernel, initrd and base.img, links to (or copies of) the
//	               image's files; overlay.qcow2, a copy-on-write overlay
//	               of base.img, and seed.iso, a NoCloud cloud-init seed,
//	               when the image has them
//
// An instance does not use its image directory once created: the image's
// files are linked into disk/. See confine.go for how QEMU is confined
// (explicit block options, seccomp, its own user, restricted networking).
//
// A direct-boot guest gets its identity on the kernel command line, after
// the image's own parameters: vmssd.hostname= (the computer name)
// vmssd.instance= vmssd.vmid= vmssd.fd= vmssd.ud= vmssd.vmss= and
// vmssd.version= (the image version), percent-encoded outside
// [A-Za-z0-9._:@+-]. Every guest also gets the whole metadata document over
// fw_cfg, and a cloud-init image a NoCloud seed.
//
// Networking is QEMU user networking (no root, no bridge): the guest's
// health port (the image's guestPort, default 80) and ssh port (22) are
// forwarded from ports on 127.0.0.1, reported in Status.Ports.
//
// Power states: Create, Start, Restart and Reimage return once QEMU runs and
// answers on QMP, with Power "starting". The driver watches the boot: the
// instance becomes "running" (with a HealthURL) once the guest answers HTTP
// on its health port, with any status, or prints a ready marker on its
// console. A guest that has not booted after Options.BootDeadline is killed
// and reported "stopped" with the message "boot deadline exceeded: ...";
// it stays stopped until the next Start. At most MaxConcurrentBoots VMs
// boot at once: a start waits (its ctx allowing) for a boot slot, its
// message saying so.
//
// Memory admission: a VM holds its size's memory plus VMOverheadMB from the
// moment it is to run (Create, Start, Restart, Reimage) until it is
// stopped, deallocated or deleted, or stops by itself (boot deadline, guest
// power-off); a VM the supervisor restarts keeps holding it. Starting a VM
// that would take the total beyond HostMemoryMB × MemoryOvercommit fails
// with an *InsufficientMemoryError (ErrInsufficientMemory) and changes
// nothing. Unlike Azure, a stopped VM holds no memory here, so Start of a
// stopped VM can be refused.
//
// Acceleration: with Accel "auto", KVM is used only when DetectAccel proves
// it usable; Status.Accel says what each VM got. TCG runs all vCPUs of a VM
// on one host thread with a 16 MiB translation cache.
//
// QEMU runs in its own session and outlives vmssd (even a SIGKILL of
// vmssd); Recover re-adopts it. A supervisor per VM follows its QMP events
// and waits for it to exit (through a pidfd); a VM that ends while it should
// run is restarted with exponential backoff and counted in Restarts, except
// a guest that powered itself off, which is reported stopped.
//
// Crash safety follows the process driver: an instance directory is built
// under a temporary name and renamed into place, a reimage prepares the new
// disk beside the old one and commits with a rename, a deletion renames the
// directory away before removing it, and Recover cleans up after any
// interrupted operation.
package qemu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/driver/portpool"
	"github.com/vmssd/vmssd/internal/fsutil"
)

// FailureBootTimeout is the Status.Failure of a VM killed at its boot
// deadline: Azure's code for a VM whose OS did not finish provisioning.
const FailureBootTimeout = "OSProvisioningTimedOut"

// Name is the driver's name.
const Name = "qemu"

// Errors of this driver, besides driver.ErrNotFound, driver.ErrImageInvalid
// and the size and memory errors. Errors are wrapped: test them with
// errors.Is.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("qemu: driver closed")
	// ErrConflict is returned by Create for an existing ID whose image
	// differs from the requested one (use Reimage to change it).
	ErrConflict = errors.New("qemu: instance exists with another image")
)

// DefaultReadyMarkers are the console lines that say a guest has booted
// even if nothing answers on its health port: the vmssd guest images print
// GUEST-READY, a distribution image a login prompt on its serial console.
var DefaultReadyMarkers = []string{"GUEST-READY", "login: "}

// Options configures a Driver. Zero values select the defaults.
type Options struct {
	// Root is the directory holding one directory per instance. Required.
	Root string
	// QEMU and QEMUImg are the qemu-system-x86_64 and qemu-img binaries.
	// Defaults: looked up in PATH.
	QEMU, QEMUImg string
	// Accel is "auto" (default: KVM when DetectAccel proves it usable, TCG
	// otherwise), "kvm" or "tcg".
	Accel string
	// BootDeadline bounds a boot, from QEMU's start until the guest has
	// booted. Default: 180s.
	BootDeadline time.Duration
	// MaxConcurrentBoots bounds the VMs booting at once (booting is
	// CPU-bound under TCG). Default: runtime.NumCPU().
	MaxConcurrentBoots int
	// Sizes maps a VM size name to its vCPUs and memory, for specs that do
	// not carry VCPUs and MemoryMB. Default: DefaultSizes().
	Sizes map[string]Size
	// HostMemoryMB is the memory VMs may use, before overcommit. Default:
	// MemTotal of /proc/meminfo.
	HostMemoryMB int
	// MemoryOvercommit multiplies HostMemoryMB into the allowance. Default:
	// 1.0.
	MemoryOvercommit float64
	// VMOverheadMB is added to each VM's memory in the admission: what QEMU
	// itself uses (measured ~40-60 MB under TCG with a 16 MiB translation
	// cache). Default: 64. Negative means 0.
	VMOverheadMB int
	// StopTimeout is how long a graceful stop waits for the guest to power
	// off after the ACPI power button. Default: 30s.
	StopTimeout time.Duration
	// RestartBackoff is the delay before restarting a crashed VM; it doubles
	// with each consecutive crash up to MaxRestartBackoff and resets once a
	// VM ran for 30s. Defaults: 1s and 1m.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration
	// ConsoleMaxBytes bounds console.log. Default: 1 MiB.
	ConsoleMaxBytes int64
	// ConsoleCheckInterval is how often console sizes are checked.
	// Default: 10s.
	ConsoleCheckInterval time.Duration
	// BootPollInterval is how often a booting VM's health port and console
	// are checked. Default: 150ms.
	BootPollInterval time.Duration
	// ReadyMarkers are the console strings that mean "booted". Default:
	// DefaultReadyMarkers; an empty non-nil slice disables console
	// readiness.
	ReadyMarkers []string
	// PollInterval is how often a VM's liveness is polled when the kernel
	// offers no pidfd. Default: 250ms.
	PollInterval time.Duration
	// UIDBase is the first uid (and gid) of the users VMs run as when vmssd
	// runs as root: each VM gets its own, UIDBase plus a slot. Default:
	// DefaultUIDBase; negative runs QEMU as vmssd's user.
	UIDBase int
	// Setpriv is the setpriv(1) binary that starts QEMU as its user.
	// Default: looked up in PATH (needed only when privileges are dropped).
	Setpriv string
	// Logger receives the driver's logs. Default: discard.
	Logger *slog.Logger
}

func (o *Options) setDefaults() error {
	if o.Root == "" {
		return errors.New("qemu: Options.Root is required")
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return fmt.Errorf("qemu: root: %w", err)
	}
	o.Root = root
	look := func(p *string, name string) error {
		if *p == "" {
			*p = name
		}
		path, err := exec.LookPath(*p)
		if err != nil {
			return fmt.Errorf("qemu: %w", err)
		}
		*p = path
		return nil
	}
	if err := look(&o.QEMU, "qemu-system-x86_64"); err != nil {
		return err
	}
	if err := look(&o.QEMUImg, "qemu-img"); err != nil {
		return err
	}
	if o.UIDBase == 0 {
		o.UIDBase = DefaultUIDBase
	}
	if o.UIDBase >= 0 && os.Geteuid() == 0 {
		if err := look(&o.Setpriv, "setpriv"); err != nil {
			return fmt.Errorf("%w (VMs run as their own users; install util-linux or set UIDBase to -1)", err)
		}
	}
	switch o.Accel {
	case "":
		o.Accel = AccelAuto
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		return fmt.Errorf("qemu: Options.Accel %q: want auto, kvm or tcg", o.Accel)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&o.BootDeadline, 180*time.Second)
	def(&o.StopTimeout, 30*time.Second)
	def(&o.RestartBackoff, time.Second)
	def(&o.MaxRestartBackoff, time.Minute)
	o.MaxRestartBackoff = max(o.MaxRestartBackoff, o.RestartBackoff)
	def(&o.ConsoleCheckInterval, 10*time.Second)
	def(&o.BootPollInterval, 150*time.Millisecond)
	def(&o.PollInterval, 250*time.Millisecond)
	if o.MaxConcurrentBoots <= 0 {
		o.MaxConcurrentBoots = runtime.NumCPU()
	}
	if o.Sizes == nil {
		o.Sizes = DefaultSizes()
	}
	if o.HostMemoryMB <= 0 {
		mb, err := hostMemoryMB()
		if err != nil {
			return err
		}
		o.HostMemoryMB = mb
	}
	if o.MemoryOvercommit <= 0 {
		o.MemoryOvercommit = 1
	}
	switch {
	case o.VMOverheadMB == 0:
		o.VMOverheadMB = 64
	case o.VMOverheadMB < 0:
		o.VMOverheadMB = 0
	}
	if o.ConsoleMaxBytes <= 0 {
		o.ConsoleMaxBytes = 1 << 20
	}
	if o.ReadyMarkers == nil {
		o.ReadyMarkers = DefaultReadyMarkers
	}
	return nil
}

// Driver runs instances as QEMU virtual machines. It implements
// driver.Driver and driver.ConsoleReader; its methods are safe for
// concurrent use (operations on one instance are serialized, operations on
// different instances run in parallel).
type Driver struct {
	opts  Options
	log   *slog.Logger
	accel string

	// ctx is cancelled by Close; it bounds every goroutine of the driver,
	// and wg counts them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// boots holds one token per booting VM.
	boots chan struct{}

	// uidMu serializes the allocation of VM users.
	uidMu sync.Mutex

	mu        sync.Mutex
	closed    bool
	instances map[string]*instance
	ports     *portpool.Pool
	mem       *memoryBook
}

var (
	_ driver.Driver        = (*Driver)(nil)
	_ driver.ConsoleReader = (*Driver)(nil)
)

// New returns a driver keeping its instances under opts.Root (created if
// needed). It fails when QEMU or qemu-img is missing. Call Recover before
// anything else when Root may hold instances.
func New(opts Options) (*Driver, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Root, 0o700); err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	log := opts.Logger.With("driver", Name)
	accel := opts.Accel
	if accel == AccelAuto {
		var reason string
		accel, reason = DetectAccel()
		log.Info(reason)
	} else {
		log.Info("acceleration set by configuration", "accel", accel)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &Driver{
		opts:      opts,
		log:       log,
		accel:     accel,
		ctx:       ctx,
		cancel:    cancel,
		boots:     make(chan struct{}, opts.MaxConcurrentBoots),
		instances: make(map[string]*instance),
		ports:     portpool.New(portpool.Range{}),
		mem: &memoryBook{
			allowedMB:  int(float64(opts.HostMemoryMB) * opts.MemoryOvercommit),
			overheadMB: opts.VMOverheadMB,
			held:       make(map[string]int),
		},
	}
	d.wg.Add(1)
	go d.housekeep()
	return d, nil
}

// Name returns "qemu".
func (d *Driver) Name() string { return Name }

// Accel returns the acceleration the driver gives new VMs ("kvm" or "tcg").
func (d *Driver) Accel() string { return d.accel }

// Close stops supervising and waits for the driver's goroutines. VMs keep
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
	return nil
}

// Create builds the instance directory (a fresh overlay disk and cloud-init
// seed when the image has a disk) and starts the VM. It refuses, creating
// nothing, a size it does not know (ErrUnknownSize), too small for the
// image (ErrSizeTooSmall), or whose memory the host cannot give
// (ErrInsufficientMemory). Creating an existing ID with the same image
// returns its status and does nothing else; with another image it fails
// with ErrConflict. If QEMU cannot be started, Create returns the error but
// the instance exists and the supervisor keeps retrying.
func (d *Driver) Create(ctx context.Context, spec driver.Spec) (driver.Status, error) {
	spec, img, raw, res, err := d.checkSpec("create", spec)
	if err != nil {
		return driver.Status{}, err
	}
	in, err := d.lockOrAdd(ctx, spec.ID)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.unlock()
	if in.created {
		in.mu.Lock()
		cur := in.spec
		in.mu.Unlock()
		if sameImage(cur, spec) {
			return in.status(d.accel), nil
		}
		return in.status(d.accel), fmt.Errorf("qemu: create %s with image %s: %w (it has %s)",
			spec.ID, spec.ImageDigest, ErrConflict, cur.ImageDigest)
	}
	if err := d.admitMemory(spec.ID, res, false); err != nil {
		d.drop(in)
		return driver.Status{}, err
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	st := state{
		Desired: driver.PowerRunning, Power: driver.PowerStarting, Since: time.Now().UTC(),
		Message: "creating", Resources: res, Accel: d.accel,
	}
	if err := d.buildInstanceDir(ctx, spec, img, raw, st); err != nil {
		d.releaseMemory(spec.ID)
		d.drop(in)
		return driver.Status{}, fmt.Errorf("qemu: create %s: %w", spec.ID, err)
	}
	in.mu.Lock()
	in.created, in.spec, in.img, in.st = true, spec, img, st
	in.mu.Unlock()
	d.log.Info("instance created", "id", spec.ID, "image", spec.ImageDigest, "vcpus", res.VCPUs, "memoryMB", res.MemoryMB)
	return d.startLocked(ctx, in)
}

// prepareSpec makes spec.ImageDir absolute and loads the image.
func prepareSpec(spec driver.Spec) (driver.Spec, image, []byte, error) {
	if spec.ImageDir != "" {
		abs, err := filepath.Abs(spec.ImageDir)
		if err != nil {
			return spec, image{}, nil, err
		}
		spec.ImageDir = abs
	}
	img, raw, err := loadImage(spec.ImageDir)
	return spec, img, raw, err
}

// buildInstanceDir builds the instance directory under a temporary name in
// Root and renames it into place: a crash leaves either nothing or a
// complete directory.
func (d *Driver) buildInstanceDir(ctx context.Context, spec driver.Spec, img image, rawManifest []byte, st state) error {
	return instdir.Create(d.opts.Root, spec.ID, func(tmp string) error {
		if err := d.writeInstanceFiles(ctx, tmp, spec, img, rawManifest); err != nil {
			return err
		}
		if err := writeJSONAtomic(filepath.Join(tmp, stateFile), st); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(tmp, consoleFile), nil, 0o640); err != nil {
			return err
		}
		// spec.json last: Recover removes a directory without it.
		return writeJSONAtomic(filepath.Join(tmp, specFile), spec)
	})
}

// writeInstanceFiles writes what an image gives an instance into dir: the
// disk directory, the manifest and the metadata (not spec.json).
func (d *Driver) writeInstanceFiles(ctx context.Context, dir string, spec driver.Spec, img image, rawManifest []byte) error {
	disk := filepath.Join(dir, diskDir)
	if err := os.Mkdir(disk, 0o700); err != nil {
		return err
	}
	if err := linkImageFiles(disk, img); err != nil {
		return err
	}
	if img.Disk != "" {
		if err := d.createOverlay(ctx, filepath.Join(disk, overlayFile), img); err != nil {
			return err
		}
	}
	if img.CloudInit {
		if err := writeSeed(filepath.Join(disk, seedFile), spec); err != nil {
			return err
		}
	}
	if err := writeFileAtomic(filepath.Join(dir, manifestFile), rawManifest, 0o644); err != nil {
		return err
	}
	return writeJSONAtomic(filepath.Join(dir, metadataFile), spec.Metadata)
}

// createOverlay creates a qcow2 overlay at path backed by the image's disk,
// linked beside it (baseLink, a relative name). QEMU opens the backing with
// explicit options anyway (imageArgs).
func (d *Driver) createOverlay(ctx context.Context, path string, img image) error {
	cmd := exec.CommandContext(ctx, d.opts.QEMUImg, "create", "-q", "-f", "qcow2",
		"-F", img.DiskFormat, "-b", baseLink, path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu: qemu-img create: %w: %s", err, lastLines(out, 3))
	}
	return nil
}

// Start boots a stopped or deallocated instance on its existing disk (a
// deallocated instance gets new ports). Starting a running instance does
// nothing; starting one whose VM is between crash restarts restarts it now.
// It fails with ErrInsufficientMemory when the host cannot give the VM its
// memory.
func (d *Driver) Start(ctx context.Context, id string) (driver.Status, error) {
	in, err := d.lockInstance(ctx, id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.unlock()
	in.cancelRestart()
	in.mu.Lock()
	running, desired, res := in.vm != nil, in.st.Desired, in.st.Resources
	in.mu.Unlock()
	if running {
		if desired != driver.PowerRunning {
			in.update(func(st *state) { st.Desired = driver.PowerRunning })
			if err := in.persist(); err != nil {
				return in.status(d.accel), err
			}
		}
		return in.status(d.accel), nil
	}
	if err := d.admitMemory(id, res, false); err != nil {
		return in.status(d.accel), err
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	return d.startLocked(ctx, in)
}

// startLocked starts the VM of an instance that has none: it waits for a
// boot slot and starts QEMU. If it cannot, the supervisor retries. Called
// with op held and the memory admitted.
func (d *Driver) startLocked(ctx context.Context, in *instance) (driver.Status, error) {
	in.failures = 0
	in.update(func(st *state) {
		st.Desired = driver.PowerRunning
		st.setPower(driver.PowerStarting, "")
	})
	if err := in.persist(); err != nil {
		return in.status(d.accel), err
	}
	if err := d.acquireBoot(ctx, in); err != nil {
		// The instance should run: the supervisor starts it.
		in.update(func(st *state) { st.setPower(driver.PowerStarting, "waiting for a boot slot") })
		d.goRestart(in, 0, false)
		return in.status(d.accel), fmt.Errorf("qemu: start %s: waiting for a boot slot: %w", in.id, err)
	}
	if err := d.spawnLocked(ctx, in, false); err != nil {
		delay := in.nextBackoff(d.opts, 0)
		in.update(func(st *state) {
			st.setPower(driver.PowerStarting, fmt.Sprintf("start failed: %v; retrying in %s", err, delay))
		})
		if perr := in.persist(); perr != nil {
			d.log.Error("persist instance state", "id", in.id, "err", perr)
		}
		d.goRestart(in, delay, false)
		return in.status(d.accel), err
	}
	return in.status(d.accel), nil
}

// Stop powers the instance off and keeps its disk and its ports; its memory
// is no longer reserved. graceful presses the ACPI power button and waits
// up to StopTimeout (or until ctx is done) for the guest to power off, then
// quits QEMU; otherwise QEMU quits at once. Stopping a stopped or
// deallocated instance does nothing.
func (d *Driver) Stop(ctx context.Context, id string, graceful bool) (driver.Status, error) {
	in, err := d.lockInstance(ctx, id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.unlock()
	in.cancelRestart()
	in.mu.Lock()
	idle := in.vm == nil && in.st.Desired != driver.PowerRunning
	in.mu.Unlock()
	if idle {
		return in.status(d.accel), nil
	}
	if err := d.powerOffLocked(ctx, in, driver.PowerStopped, driver.PowerStopping, graceful); err != nil {
		return in.status(d.accel), err
	}
	return in.status(d.accel), nil
}

// Deallocate stops the instance gracefully and releases its host resources
// (QEMU process, memory, ports); the disk is kept.
func (d *Driver) Deallocate(ctx context.Context, id string) (driver.Status, error) {
	in, err := d.lockInstance(ctx, id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.unlock()
	in.cancelRestart()
	in.mu.Lock()
	done := in.vm == nil && in.st.Desired == driver.PowerDeallocated
	in.mu.Unlock()
	if done {
		return in.status(d.accel), nil
	}
	if err := d.powerOffLocked(ctx, in, driver.PowerDeallocated, driver.PowerDeallocating, true); err != nil {
		return in.status(d.accel), err
	}
	return in.status(d.accel), nil
}

// powerOffLocked records the desired power target, stops the VM while
// showing transient, and settles on target (releasing the ports for
// deallocated). Called with op held.
func (d *Driver) powerOffLocked(ctx context.Context, in *instance, target, transient driver.Power, graceful bool) error {
	in.update(func(st *state) {
		st.Desired = target
		st.setPower(transient, "")
	})
	if err := in.persist(); err != nil {
		return err
	}
	how, err := d.stopVMLocked(ctx, in, graceful)
	if err != nil {
		in.update(func(st *state) { st.Message = "stop failed: " + err.Error() })
		if perr := in.persist(); perr != nil {
			d.log.Error("persist instance state", "id", in.id, "err", perr)
		}
		return fmt.Errorf("qemu: stop %s: %w", in.id, err)
	}
	d.releaseMemory(in.id)
	if target == driver.PowerDeallocated {
		d.releasePortsLocked(in)
	}
	in.update(func(st *state) { st.setPower(target, how) })
	d.log.Info("instance powered off", "id", in.id, "power", target, "how", how)
	return in.persist()
}

// Restart stops the instance gracefully and starts it again (a stopped
// instance is just started): a new QEMU process, the same disk.
func (d *Driver) Restart(ctx context.Context, id string) (driver.Status, error) {
	in, err := d.lockInstance(ctx, id)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.unlock()
	in.cancelRestart()
	in.mu.Lock()
	running, res := in.vm != nil, in.st.Resources
	in.mu.Unlock()
	if err := d.admitMemory(id, res, false); err != nil {
		return in.status(d.accel), err
	}
	ctx, cancel := d.opContext(ctx)
	defer cancel()
	if running {
		in.update(func(st *state) { st.setPower(driver.PowerStopping, "restarting") })
		if _, err := d.stopVMLocked(ctx, in, true); err != nil {
			return in.status(d.accel), fmt.Errorf("qemu: restart %s: %w", id, err)
		}
	}
	return d.startLocked(ctx, in)
}

// checkSpec validates a spec for op ("create", "reimage"): its id, its image
// and its size.
func (d *Driver) checkSpec(op string, spec driver.Spec) (driver.Spec, image, []byte, resources, error) {
	if err := validID(spec.ID); err != nil {
		return spec, image{}, nil, resources{}, err
	}
	spec, img, raw, err := prepareSpec(spec)
	if err != nil {
		return spec, image{}, nil, resources{}, fmt.Errorf("qemu: %s %s: %w", op, spec.ID, err)
	}
	res, err := resolveSize(d.opts.Sizes, spec, img)
	if err != nil {
		return spec, image{}, nil, resources{}, fmt.Errorf("qemu: %s %s: %w", op, spec.ID, err)
	}
	return spec, img, raw, res, nil
}

// Reimage gives the instance a fresh disk from spec's image (possibly a new
// one: this is how upgrades apply), updates its spec and metadata and starts
// it, whatever its power was. The new overlay is prepared before the VM is
// stopped, so the downtime is a shutdown, a few renames and a boot.
func (d *Driver) Reimage(ctx context.Context, spec driver.Spec) (driver.Status, error) {
	spec, img, raw, res, err := d.checkSpec("reimage", spec)
	if err != nil {
		return driver.Status{}, err
	}
	in, err := d.lockInstance(ctx, spec.ID)
	if err != nil {
		return driver.Status{}, err
	}
	defer in.op.unlock()
	ctx, cancel := d.opContext(ctx)
	defer cancel()

	staging := in.path(reimageDir)
	if err := d.stageReimage(ctx, in.dir, spec, img, raw); err != nil {
		return in.status(d.accel), fmt.Errorf("qemu: reimage %s: %w", spec.ID, err)
	}
	if err := d.admitMemory(spec.ID, res, false); err != nil {
		os.RemoveAll(staging)
		return in.status(d.accel), err
	}
	in.cancelRestart()
	in.update(func(st *state) {
		st.Desired = driver.PowerRunning
		st.setPower(driver.PowerStopping, "reimaging")
	})
	if err := in.persist(); err != nil {
		os.RemoveAll(staging)
		return in.status(d.accel), err
	}
	if _, err := d.stopVMLocked(ctx, in, true); err != nil {
		os.RemoveAll(staging)
		return in.status(d.accel), fmt.Errorf("qemu: reimage %s: %w", spec.ID, err)
	}
	// Commit: from here on Recover completes the reimage.
	if err := os.Rename(staging, in.path(reimageReady)); err != nil {
		os.RemoveAll(staging)
		return in.status(d.accel), fmt.Errorf("qemu: reimage %s: %w", spec.ID, err)
	}
	if err := instdir.ApplyReimage(in.dir); err != nil {
		in.update(func(st *state) { st.setPower(driver.PowerUnknown, "reimage failed: "+err.Error()) })
		return in.status(d.accel), fmt.Errorf("qemu: reimage %s: %w", spec.ID, err)
	}
	in.mu.Lock()
	in.spec, in.img, in.st.Resources = spec, img, res
	in.mu.Unlock()
	d.log.Info("instance reimaged", "id", spec.ID, "image", spec.ImageDigest)
	return d.startLocked(ctx, in)
}

// stageReimage prepares, in the instance directory dir, what
// instdir.ApplyReimage installs.
func (d *Driver) stageReimage(ctx context.Context, dir string, spec driver.Spec, img image, rawManifest []byte) error {
	return instdir.StageReimage(dir, func(staging string) error {
		if err := d.writeInstanceFiles(ctx, staging, spec, img, rawManifest); err != nil {
			return err
		}
		return writeJSONAtomic(filepath.Join(staging, specFile), spec)
	})
}

// Delete kills the VM (QMP quit, then SIGKILL) and removes the instance
// directory; its ports and memory are released. Deleting an unknown ID
// returns an error wrapping driver.ErrNotFound.
func (d *Driver) Delete(ctx context.Context, id string) error {
	in, err := d.lockInstance(ctx, id)
	if err != nil {
		return err
	}
	defer in.op.unlock()
	in.cancelRestart()
	// Record the intent first: if vmssd dies before the directory is gone,
	// Recover must not start the VM again.
	in.update(func(st *state) {
		st.Desired = driver.PowerStopped
		if in.vm != nil {
			st.setPower(driver.PowerStopping, "deleting")
		}
	})
	if err := in.persist(); err != nil {
		return fmt.Errorf("qemu: delete %s: %w", id, err)
	}
	if _, err := d.stopVMLocked(ctx, in, false); err != nil {
		return fmt.Errorf("qemu: delete %s: %w", id, err)
	}
	// Rename first: a crash during the removal leaves a dot-directory that
	// Recover removes, never a half-deleted instance.
	trash := filepath.Join(d.opts.Root, ".delete-"+id+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	if err := os.Rename(in.dir, trash); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("qemu: delete %s: %w", id, err)
	}
	d.releasePortsLocked(in)
	d.releaseMemory(id)
	d.drop(in)
	d.log.Info("instance deleted", "id", id)
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("qemu: delete %s: remove files: %w", id, err)
	}
	return nil
}

// Inspect returns the status of one instance, or an error wrapping
// driver.ErrNotFound.
func (d *Driver) Inspect(ctx context.Context, id string) (driver.Status, error) {
	in, err := d.get(id)
	if err != nil {
		return driver.Status{}, err
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.created || in.removed {
		return driver.Status{}, notFound(id)
	}
	return in.statusLocked(d.accel), nil
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
			out = append(out, in.statusLocked(d.accel))
		}
		in.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b driver.Status) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Console returns the newest bytes of the instance's serial console (the
// rotated console.log.1 followed by console.log), at most ConsoleMaxBytes.
func (d *Driver) Console(ctx context.Context, id string) ([]byte, error) {
	in, err := d.get(id)
	if err != nil {
		return nil, err
	}
	in.mu.Lock()
	gone := !in.created || in.removed
	in.mu.Unlock()
	if gone {
		return nil, notFound(id)
	}
	b, err := fsutil.TailLog(in.path(consoleFile), d.opts.ConsoleMaxBytes)
	if err != nil {
		return nil, fmt.Errorf("qemu: console of %s: %w", id, err)
	}
	return b, nil
}

// get returns the instance id (possibly still being created).
func (d *Driver) get(id string) (*instance, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, ErrClosed
	}
	in := d.instances[id]
	if in == nil {
		return nil, notFound(id)
	}
	return in, nil
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
	return fmt.Errorf("qemu: instance %q: %w", id, driver.ErrNotFound)
}

// lockInstance returns the created instance id with its op lock held.
func (d *Driver) lockInstance(ctx context.Context, id string) (*instance, error) {
	for {
		in, err := d.get(id)
		if err != nil {
			return nil, err
		}
		if err := in.op.lock(ctx); err != nil {
			return nil, fmt.Errorf("qemu: %s: %w", id, err)
		}
		in.mu.Lock()
		removed, created := in.removed, in.created
		in.mu.Unlock()
		switch {
		case removed:
			in.op.unlock()
			continue // look again: it was deleted or its Create failed
		case !created:
			in.op.unlock()
			return nil, notFound(id)
		}
		return in, nil
	}
}

// lockOrAdd returns instance id, added if unknown (not created yet), with
// its op lock held.
func (d *Driver) lockOrAdd(ctx context.Context, id string) (*instance, error) {
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return nil, ErrClosed
		}
		in := d.instances[id]
		if in == nil {
			in = newInstance(id, filepath.Join(d.opts.Root, id))
			d.instances[id] = in
		}
		d.mu.Unlock()
		if err := in.op.lock(ctx); err != nil {
			return nil, fmt.Errorf("qemu: %s: %w", id, err)
		}
		in.mu.Lock()
		removed := in.removed
		in.mu.Unlock()
		if removed {
			in.op.unlock()
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

// admitMemory reserves the memory of a VM that is to run.
func (d *Driver) admitMemory(id string, res resources, force bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.mem.admit(id, res.MemoryMB, force); err != nil {
		return err
	}
	return nil
}

// releaseMemory frees the memory reservation of id.
func (d *Driver) releaseMemory(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mem.release(id)
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

// housekeep bounds the logs.
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
			if !in.op.tryLock() {
				continue
			}
			in.mu.Lock()
			live := in.created && !in.removed
			in.mu.Unlock()
			if live {
				if _, err := rotateLog(in.path(consoleFile), d.opts.ConsoleMaxBytes); err != nil {
					d.log.Warn("rotate console", "id", in.id, "err", err)
				}
				if _, err := rotateLog(in.path(qemuLogFile), qemuLogMaxBytes); err != nil {
					d.log.Warn("rotate QEMU log", "id", in.id, "err", err)
				}
			}
			in.op.unlock()
		}
	}
}

// validID checks that id can name a directory and a QEMU -name
// (instdir.ValidID).
func validID(id string) error {
	if err := instdir.ValidID(id); err != nil {
		return fmt.Errorf("qemu: %w", err)
	}
	return nil
}
