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
// Networking: the first NIC is QEMU user networking (restrict=on): the
// guest's health port (the image's guestPort, default 80) and ssh port (22)
// are forwarded from ports on 127.0.0.1, reported in Status.Ports. When the
// spec asks for a virtual network (driver.Spec.Network) and the host can
// attach it (root, netlink: package netattach), a second NIC (virtio, the
// spec's MAC) is a TAP on the network's bridge, created by vmssd for each
// QEMU and handed to it as a descriptor; it vanishes when QEMU exits. A
// direct-boot guest is told its address with vmssd.netip=CIDR and
// vmssd.netgw=ADDR on the kernel command line (for its second NIC);
// Status.Network says "bridge" or "loopback".
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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/driver/lifecycle"
	"github.com/vmssd/vmssd/internal/driver/netattach"
	"github.com/vmssd/vmssd/internal/driver/portpool"
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
// different instances run in parallel). The lifecycle (instance table,
// locking, state files, the operations' skeleton, Recover's walk) is
// package lifecycle's; this driver is its Guest. A graceful Stop presses
// the ACPI power button and waits up to StopTimeout (or until ctx is done)
// for the guest to power off, then quits QEMU; a stopped VM keeps its ports
// but not its memory reservation; Start, Restart and Reimage fail with
// ErrInsufficientMemory when the host cannot give the VM its memory.
type Driver struct {
	opts    Options
	log     *slog.Logger
	accel   string
	backoff hostproc.Backoff

	tab *lifecycle.Table[*instance]
	// Ops gives the driver its Start, Stop, Deallocate, Restart, Delete,
	// Inspect, List and Console.
	*lifecycle.Ops[*instance]
	// ctx is the table's: cancelled by Close, it bounds every goroutine of
	// the driver (started with tab.Go).
	ctx context.Context

	// boots holds one token per booting VM.
	boots chan struct{}

	// uidMu serializes the allocation of VM users.
	uidMu sync.Mutex

	// mu guards ports and mem. Lock order: an instance's Op, then mu, then
	// its Mu.
	mu    sync.Mutex
	ports *portpool.Pool
	mem   *memoryBook

	// net gives VMs a TAP on their virtual network's bridge (nil where the
	// host cannot: not root, no netlink).
	net *netattach.Attacher
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
	tab := lifecycle.NewTable(Name, opts.Root, ErrClosed, log, newInstance)
	d := &Driver{
		opts:    opts,
		log:     log,
		accel:   accel,
		backoff: hostproc.Backoff{Initial: opts.RestartBackoff, Max: opts.MaxRestartBackoff, StableAfter: stableAfter},
		tab:     tab,
		ctx:     tab.Ctx(),
		boots:   make(chan struct{}, opts.MaxConcurrentBoots),
		ports:   portpool.New(portpool.Range{}),
		mem: &memoryBook{
			allowedMB:  int(float64(opts.HostMemoryMB) * opts.MemoryOvercommit),
			overheadMB: opts.VMOverheadMB,
			held:       make(map[string]int),
		},
	}
	var err error
	if d.net, err = netattach.NewAttacher(opts.Root, true, log); err != nil {
		log.Info("VMs get no virtual network here: user networking only", "err", err)
	}
	d.Ops = &lifecycle.Ops[*instance]{Tab: tab, Guest: guest{d}, Log: log, Backoff: d.backoff, ErrConflict: ErrConflict, ConsoleMaxBytes: opts.ConsoleMaxBytes}
	tab.Go(func() { tab.Housekeep(opts.ConsoleCheckInterval, d.housekeep) })
	return d, nil
}

// Name returns "qemu".
func (d *Driver) Name() string { return Name }

// Accel returns the acceleration the driver gives new VMs ("kvm" or "tcg").
func (d *Driver) Accel() string { return d.accel }

// Close stops supervising and waits for the driver's goroutines. VMs keep
// running; a new Driver's Recover re-adopts them. Close is idempotent.
func (d *Driver) Close() error {
	d.tab.Close()
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
	return d.Ops.Create(ctx, spec, lifecycle.CreateSteps[*instance]{
		Admit:   func() error { return d.admitMemory(spec.ID, res, false) },
		Unadmit: func() { d.releaseMemory(spec.ID) },
		Build: func(ctx context.Context, dir string) error {
			return d.writeInstanceFiles(ctx, dir, spec, img, raw)
		},
		State:   func(in *instance) { in.st.Resources, in.st.Accel = res, d.accel },
		Install: func(in *instance) { in.img = img },
	})
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
		if err := writeSeed(filepath.Join(disk, seedFile), spec, d.net.Wants(spec.Network)); err != nil {
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

// checkSpec validates a spec for op ("create", "reimage"): its id, its image
// and its size.
func (d *Driver) checkSpec(op string, spec driver.Spec) (driver.Spec, image, []byte, resources, error) {
	if err := d.tab.ValidID(spec.ID); err != nil {
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
	if err := netattach.Validate(spec.Network); err != nil {
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
	return d.Ops.Reimage(ctx, spec, lifecycle.ReimageSteps[*instance]{
		Build: func(ctx context.Context, dir string) error {
			return d.writeInstanceFiles(ctx, dir, spec, img, raw)
		},
		Admit:   func() error { return d.admitMemory(spec.ID, res, false) },
		Install: func(in *instance) { in.img, in.st.Resources = img, res },
	})
}

func (d *Driver) list() []driver.Status { return d.tab.Statuses(d.statusLocked) }

func (d *Driver) statusLocked(in *instance) driver.Status { return in.statusLocked(d.accel) }

// admitMemory reserves the memory of a VM that is to run.
func (d *Driver) admitMemory(id string, res resources, force bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.mem.admit(id, res.MemoryMB, force)
}

// releaseMemory frees the memory reservation of id.
func (d *Driver) releaseMemory(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mem.release(id)
}

// housekeep bounds the logs of in. Called with Op held.
func (d *Driver) housekeep(in *instance) {
	if _, err := rotateLog(in.Path(consoleFile), d.opts.ConsoleMaxBytes); err != nil {
		d.log.Warn("rotate console", "id", in.ID, "err", err)
	}
	if _, err := rotateLog(in.Path(qemuLogFile), qemuLogMaxBytes); err != nil {
		d.log.Warn("rotate QEMU log", "id", in.ID, "err", err)
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

// guest is the driver's lifecycle.Guest.
type guest struct{ d *Driver }

func (g guest) Running(in *instance) bool               { return in.vm != nil }
func (g guest) StatusLocked(in *instance) driver.Status { return in.statusLocked(g.d.accel) }
func (g guest) Retry(in *instance, delay time.Duration) { g.d.goRestart(in, delay, false) }

func (g guest) Admit(in *instance) error {
	in.Mu.Lock()
	res := in.st.Resources
	in.Mu.Unlock()
	return g.d.admitMemory(in.ID, res, false)
}

// Launch waits for a boot slot and starts QEMU.
func (g guest) Launch(ctx context.Context, in *instance) error {
	if err := g.d.acquireBoot(ctx, in); err != nil {
		return &lifecycle.WaitError{Msg: "waiting for a boot slot", Err: err}
	}
	return g.d.spawnLocked(ctx, in, false)
}

func (g guest) StopGuest(ctx context.Context, in *instance, graceful bool) (string, error) {
	return g.d.stopVMLocked(ctx, in, graceful)
}

// Release frees the memory of a VM that stopped, and its ports too once it
// is deallocated or deleted; its network's bridge goes once unused (its TAP
// went with QEMU).
func (g guest) Release(in *instance, power driver.Power) {
	g.d.releaseMemory(in.ID)
	if power != driver.PowerStopped {
		g.d.releasePortsLocked(in)
	}
	g.d.net.Release(in.ID, in.Spec.Network)
}
