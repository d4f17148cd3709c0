package process

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/hostproc"
	"github.com/vmssd/vmssd/internal/driver/netattach"
	"github.com/vmssd/vmssd/internal/driver/sandbox"
	"github.com/vmssd/vmssd/internal/fsutil"
)

// Isolation is how the driver runs guests.
type Isolation string

const (
	// IsolationRunc runs every guest in its own runc container (package
	// sandbox). It needs the runc binary and root.
	IsolationRunc Isolation = "runc"
	// IsolationNone runs guests as plain host processes. Only operator
	// images (driver.Spec.OperatorImage) may run so.
	IsolationNone Isolation = "none"
)

// Paths of a sandboxed instance.
const (
	// workDir (in the instance directory) is overlayfs's work directory;
	// diskDir is the instance's writable layer.
	workDir = "work"
	// layersSuffix names the directory beside Root (Root+layersSuffix)
	// holding the read-only lower layers: one copy of each image's rootfs,
	// owned by the container's mapped root, shared by the image's
	// instances.
	layersSuffix = ".layers"
	// guestPath is where the guest binary is mounted in a container, and
	// metadataPath the instance metadata.
	guestPath    = "/.vmssd/guest"
	metadataPath = "/.vmssd/metadata.json"
	// defaultPath is the PATH of a guest whose image sets none.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// sandboxed is the driver's container machinery (nil fields when the
// driver runs plain processes).
type sandboxed struct {
	rt     *sandbox.Runtime
	runDir string // bundles (rootfs mount points) and runc's state
	scope  string // names this driver's cgroups
	ids    sandbox.IDMap
	pids   int64

	// binds of the guest binary, computed once.
	bindsOnce sync.Once
	binds     []sandbox.Bind
	bindsErr  error

	// layerMu serializes building and collecting lower layers; pins counts
	// the operations using a layer that no instance records yet.
	layerMu sync.Mutex
	pins    map[string]int
}

// setupIsolation decides how the driver runs guests (called by New).
func (d *Driver) setupIsolation() error {
	o := &d.opts
	switch o.Isolation {
	case "":
		o.Isolation = IsolationRunc
	case IsolationRunc, IsolationNone:
	default:
		return fmt.Errorf("process: unknown isolation %q", o.Isolation)
	}
	if o.Isolation == IsolationNone {
		return nil
	}
	scope := cgroupScope(o.Root)
	runDir := o.RunDir
	if runDir == "" {
		runDir = DefaultRunDir(o.Root)
	}
	if err := o.IDs.Validate(); err != nil {
		return fmt.Errorf("process: %w", err)
	}
	rt, err := d.newRuntime(runDir, o.IDs)
	if err != nil {
		if !o.AllowUnsandboxed {
			d.sandboxErr = err
			d.log.Error("process instances cannot run: this host cannot sandbox them", "err", err)
			return nil
		}
		d.log.Warn("this host cannot sandbox process instances: operator images run unsandboxed, tenant images are refused", "err", err)
		o.Isolation = IsolationNone
		return nil
	}
	d.sb = &sandboxed{rt: rt, runDir: runDir, scope: scope, ids: o.IDs, pids: o.Pids, pins: map[string]int{}}
	if d.net, err = netattach.NewAttacher(o.Root, false, d.log); err != nil {
		d.log.Info("containers get no virtual network here: loopback forwards only", "err", err)
	}
	return nil
}

// DefaultRunDir is the run directory (Options.RunDir) of a driver on root.
func DefaultRunDir(root string) string {
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	return filepath.Join("/run/vmssd", cgroupScope(root))
}

// RemoveContainers kills and removes every container of the driver on root
// whose run directory is runDir (DefaultRunDir(root) when empty), unmounts
// their root file systems and removes runDir and the driver's cgroups. The
// instances' directories are left alone. It is for tests and uninstalls:
// containers otherwise outlive vmssd by design.
func RemoveContainers(ctx context.Context, root, runDir string) error {
	if abs, err := filepath.Abs(root); err == nil {
		root = abs
	}
	if runDir == "" {
		runDir = DefaultRunDir(root)
	}
	if !exists(runDir) {
		return nil
	}
	var errs []error
	if rt, err := sandbox.NewRuntime("", filepath.Join(runDir, "runc")); err == nil {
		sts, err := rt.List(ctx)
		errs = append(errs, err)
		for _, st := range sts {
			errs = append(errs, rt.Delete(ctx, st.ID))
		}
	}
	if _, err := sandbox.KillCgroup("/vmssd/"+cgroupScope(root), killTimeout); err != nil {
		errs = append(errs, err)
	}
	bundles, _ := filepath.Glob(filepath.Join(runDir, "bundles", "*", "rootfs"))
	for _, b := range bundles {
		errs = append(errs, sandbox.Unmount(b))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	sandbox.RemoveCgroups("/vmssd/" + cgroupScope(root))
	return os.RemoveAll(runDir)
}

// cgroupScope names the cgroups of the driver on root: its containers are
// in /vmssd/<scope>/<id> of each hierarchy.
func cgroupScope(root string) string {
	sum := sha256.Sum256([]byte(root))
	return hex.EncodeToString(sum[:6])
}

// newRuntime prepares runDir (traversable by the mapped ids, which must
// reach the rootfs mount points in it) and a runc runtime in it.
func (d *Driver) newRuntime(runDir string, ids sandbox.IDMap) (*sandbox.Runtime, error) {
	if _, err := sandbox.Check(d.opts.Runc); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(runDir) {
		return nil, fmt.Errorf("process: run directory %q is not absolute", runDir)
	}
	if err := os.MkdirAll(filepath.Dir(runDir), 0o711); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	// runDir itself: only root and the containers' mapped root.
	if err := sandbox.GuardDir(runDir, ids); err != nil {
		return nil, err
	}
	for p := filepath.Dir(runDir); p != "/" && p != "."; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("process: %w", err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if p != runDir && !strings.HasPrefix(p, "/run/vmssd") {
				return nil, fmt.Errorf("process: run directory %s: %s is not searchable by others (the containers' mapped root must reach their root file systems)", runDir, p)
			}
			if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
				return nil, fmt.Errorf("process: %w", err)
			}
		}
	}
	return sandbox.NewRuntime(d.opts.Runc, filepath.Join(runDir, "runc"))
}

// isolationFor returns how an instance with spec runs, or an error wrapping
// driver.ErrSandboxUnavailable.
func (d *Driver) isolationFor(spec driver.Spec) (Isolation, error) {
	if d.sb != nil {
		return IsolationRunc, nil
	}
	if d.sandboxErr != nil {
		return "", fmt.Errorf("%w: %v (start vmssd with --unsandboxed-process-images to run operator images unsandboxed)", driver.ErrSandboxUnavailable, d.sandboxErr)
	}
	if !spec.OperatorImage {
		return "", fmt.Errorf("%w: images not published by the operator run only in a sandbox, and this host runs process instances unsandboxed", driver.ErrSandboxUnavailable)
	}
	return IsolationNone, nil
}

// layersDir holds the lower layers.
func (d *Driver) layersDir() string { return d.opts.Root + layersSuffix }

// layerKey names the lower layer of an image.
func layerKey(spec driver.Spec) string {
	key := spec.ImageDigest
	if key == "" {
		key = "dir:" + filepath.Clean(spec.ImageDir)
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:16])
}

func (d *Driver) layerPath(spec driver.Spec) string {
	return filepath.Join(d.layersDir(), layerKey(spec))
}

// pinLayer ensures the lower layer of spec's image exists (copying the
// image's rootfs and shifting its owners into the mapped range) and pins it
// against collection until unpin is called.
func (d *Driver) pinLayer(ctx context.Context, spec driver.Spec) (unpin func(), err error) {
	sb := d.sb
	key := layerKey(spec)
	sb.layerMu.Lock()
	defer sb.layerMu.Unlock()
	dir := d.layerPath(spec)
	if !exists(dir) {
		if err := os.MkdirAll(d.layersDir(), 0o700); err != nil {
			return nil, fmt.Errorf("process: %w", err)
		}
		tmp, err := os.MkdirTemp(d.layersDir(), fsutil.TempPrefix+key+"-")
		if err != nil {
			return nil, fmt.Errorf("process: %w", err)
		}
		defer os.RemoveAll(tmp)
		if err := fsutil.CopyTree(ctx, filepath.Join(spec.ImageDir, rootfsDir), filepath.Join(tmp, "rootfs")); err != nil {
			return nil, fmt.Errorf("process: image layer: %w", err)
		}
		if err := sandbox.ShiftOwner(ctx, filepath.Join(tmp, "rootfs"), sb.ids); err != nil {
			return nil, fmt.Errorf("process: image layer: %w", err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			return nil, fmt.Errorf("process: image layer: %w", err)
		}
	}
	sb.pins[key]++
	return func() {
		sb.layerMu.Lock()
		defer sb.layerMu.Unlock()
		if sb.pins[key]--; sb.pins[key] <= 0 {
			delete(sb.pins, key)
		}
	}, nil
}

// collectLayers removes the lower layers no instance uses (and leftovers
// of interrupted copies).
func (d *Driver) collectLayers() {
	sb := d.sb
	if sb == nil {
		return
	}
	used := map[string]bool{}
	for _, in := range d.tab.Snapshot() {
		in.Mu.Lock()
		if !in.Removed && in.Spec.ID != "" {
			used[layerKey(in.Spec)] = true
		}
		in.Mu.Unlock()
	}
	sb.layerMu.Lock()
	defer sb.layerMu.Unlock()
	root := d.layersDir()
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if used[name] || sb.pins[name] > 0 {
			continue
		}
		if strings.HasPrefix(name, fsutil.TempPrefix) && len(sb.pins) > 0 {
			continue // maybe being built
		}
		if err := os.RemoveAll(filepath.Join(root, name)); err != nil {
			d.log.Warn("remove unused image layer", "layer", name, "err", err)
		}
	}
	os.Remove(root) // when empty
}

// cgroupPath is the cgroup of the container of instance id.
func (sb *sandboxed) cgroupPath(id string) string { return "/vmssd/" + sb.scope + "/" + id }

// bundleDir is where the container of instance id has its config.json and
// rootfs mount point.
func (sb *sandboxed) bundleDir(id string) string { return filepath.Join(sb.runDir, "bundles", id) }

func (sb *sandboxed) guestBinds(bin string) ([]sandbox.Bind, error) {
	sb.bindsOnce.Do(func() { sb.binds, sb.bindsErr = sandbox.GuestBinds(bin, guestPath) })
	return sb.binds, sb.bindsErr
}

// prepareUpper makes dir an empty writable layer for a container.
func (d *Driver) prepareUpper(dir string) error {
	return sandbox.PrepareUpper(dir, d.sb.ids)
}

// spawnContainer starts the guest of in in a container listening (through
// the forward) on port, and returns its process. Called with op held.
func (d *Driver) spawnContainer(in *instance, port int, spec driver.Spec, m manifest, console *os.File) (*proc, error) {
	sb := d.sb
	ctx, cancel := d.tab.OpContext(context.Background())
	defer cancel()
	bundle := sb.bundleDir(in.ID)
	rootfs := filepath.Join(bundle, "rootfs")
	// Whatever a previous run left: its container, processes runc lost
	// track of, and its mount.
	if err := sb.rt.Delete(ctx, in.ID); err != nil {
		return nil, err
	}
	if n, err := sandbox.KillCgroup(sb.cgroupPath(in.ID), killTimeout); err != nil {
		return nil, err
	} else if n > 0 {
		d.log.Warn("killed processes left in the instance's cgroup", "id", in.ID, "count", n)
	}
	if err := sandbox.Unmount(rootfs); err != nil {
		return nil, err
	}
	unpin, err := d.pinLayer(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer unpin()
	if !exists(in.Path(diskDir)) {
		if err := d.prepareUpper(in.Path(diskDir)); err != nil {
			return nil, err
		}
	}
	binds, err := sb.guestBinds(d.opts.GuestBinary)
	if err != nil {
		return nil, err
	}
	binds = append(slices.Clone(binds), sandbox.Bind{Source: in.Path(metadataFile), Dest: metadataPath})
	argv := m.command(guestPath)
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: no entrypoint", driver.ErrImageInvalid)
	}
	if !strings.HasPrefix(argv[0], "/") && strings.Contains(argv[0], "/") {
		argv[0] = "/" + argv[0] // relative to the disk, which is /
	}
	env := make([]string, 0, len(m.Env)+4)
	for _, k := range slices.Sorted(maps.Keys(m.Env)) {
		env = append(env, k+"="+m.Env[k])
	}
	if _, ok := m.Env["PATH"]; !ok {
		env = append(env, "PATH="+defaultPath)
	}
	env = append(env, envPort+"="+strconv.Itoa(port), envMetadata+"="+metadataPath, envDisk+"=/")
	if d.net.Wants(spec.Network) {
		env = append(env, envPrivateIP+"="+spec.Network.PrivateIP)
	}
	hostname := spec.Metadata.ComputerName
	if hostname == "" || len(hostname) > 63 {
		hostname = "vm"
	}
	cs, err := sandbox.Spec(sandbox.Config{
		Rootfs: rootfs, Args: argv, Env: env, Cwd: "/", Hostname: hostname, Binds: binds,
		IDs: sb.ids, VCPUs: spec.VCPUs, MemoryMB: spec.MemoryMB, Pids: sb.pids,
		CgroupsPath: sb.cgroupPath(in.ID), Attached: d.net.Wants(spec.Network),
	})
	if err != nil {
		return nil, err
	}
	for _, dir := range []string{filepath.Dir(bundle), bundle} {
		if err := sandbox.GuardDir(dir, sb.ids); err != nil {
			return nil, err
		}
	}
	if err := sandbox.WriteBundle(bundle, cs); err != nil {
		return nil, err
	}
	if err := sandbox.MountOverlay(filepath.Join(d.layerPath(spec), "rootfs"), in.Path(diskDir), in.Path(workDir), rootfs); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		sandbox.Unmount(rootfs)
		return nil, fmt.Errorf("process: forward port: %w", err)
	}
	pid, err := sb.rt.Run(ctx, in.ID, bundle, console)
	if err != nil {
		ln.Close()
		sb.rt.Delete(context.Background(), in.ID)
		sandbox.Unmount(rootfs)
		return nil, fmt.Errorf("process: start guest: %w", err)
	}
	var start uint64
	if st, err := hostproc.ReadStat(pid); err == nil {
		start = st.Start
	}
	p := newProc(pid, start)
	if err := d.attachNetwork(in, pid, spec.Network, true); err != nil {
		ln.Close()
		sb.rt.Delete(context.Background(), in.ID)
		sandbox.Unmount(rootfs)
		d.net.Release(in.ID, spec.Network)
		return nil, err
	}
	if err := d.attachContainer(in.ID, p, ln, port, spec.Network); err != nil {
		ln.Close()
		p.cleanup()
		return nil, err
	}
	return p, nil
}

// attachContainer makes p a container's init process: its loopback forward
// (serving ln, which it takes over) and its cleanup once it ended (which
// also detaches it from virtual network n).
func (d *Driver) attachContainer(id string, p *proc, ln net.Listener, port int, n driver.Network) error {
	sb := d.sb
	rootfs := filepath.Join(sb.bundleDir(id), "rootfs")
	p.cleanup = func() {
		ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
		defer cancel()
		if err := sb.rt.Delete(ctx, id); err != nil {
			d.log.Warn("delete container", "id", id, "err", err)
		}
		if err := sandbox.Unmount(rootfs); err != nil {
			d.log.Warn("unmount container rootfs", "id", id, "err", err)
		}
		d.net.Release(id, n)
	}
	ns, err := sandbox.OpenNetns(p.pid)
	if err != nil {
		return err
	}
	fw := sandbox.Forward(ln, ns, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	d.trackForward(p, fw)
	return nil
}

// adoptContainer re-attaches to the container of instance in after a
// restart of vmssd: the pid recorded in its state if it still lives, else
// what runc says runs (vmssd died before recording it). It returns nil
// when no container runs. Called with op held.
func (d *Driver) adoptContainer(ctx context.Context, in *instance) (*proc, error) {
	sb := d.sb
	pid, start := in.st.PID, in.st.StartTime
	if pid == 0 || !hostproc.Alive(pid, start) {
		pid, start = 0, 0
		cs, err := sb.rt.State(ctx, in.ID)
		switch {
		case errors.Is(err, sandbox.ErrNotExist):
		case err != nil:
			return nil, err
		case cs.Status == "running" && hostproc.Alive(cs.Pid, 0):
			pid = cs.Pid
			if st, err := hostproc.ReadStat(pid); err == nil {
				start = st.Start
			}
		}
	}
	if pid == 0 {
		// Nothing runs: clear what a dead container left.
		if err := sb.rt.Delete(ctx, in.ID); err != nil {
			return nil, err
		}
		if _, err := sandbox.KillCgroup(sb.cgroupPath(in.ID), killTimeout); err != nil {
			return nil, err
		}
		return nil, sandbox.Unmount(filepath.Join(sb.bundleDir(in.ID), "rootfs"))
	}
	port := in.st.Port
	if cfg, err := sandbox.ReadBundle(sb.bundleDir(in.ID)); err == nil && cfg.Process != nil {
		for _, kv := range cfg.Process.Env {
			if v, ok := strings.CutPrefix(kv, envPort+"="); ok {
				if n, err := strconv.Atoi(v); err == nil {
					port = n
				}
			}
		}
	}
	p := newProc(pid, start)
	if port != in.st.Port {
		d.mu.Lock()
		if in.st.Port != 0 {
			d.ports.Release(in.st.Port, in.ID)
		}
		ok := d.ports.Reserve(port, in.ID)
		d.mu.Unlock()
		if !ok {
			port = 0
		}
		in.update(func(st *state) { st.Port = port })
	}
	var ln net.Listener
	if port != 0 {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			d.log.Warn("recover: cannot listen on the instance's port; its health is unknown until it restarts", "id", in.ID, "port", port, "err", err)
		}
	}
	if ln == nil {
		// No forward: the guest cannot be reached; restart it.
		_ = p.signal(9)
		return nil, fmt.Errorf("process: no port to forward to the guest of %s", in.ID)
	}
	if err := d.attachContainer(in.ID, p, ln, port, in.Spec.Network); err != nil {
		ln.Close()
		return nil, err
	}
	if err := d.attachNetwork(in, pid, in.Spec.Network, false); err != nil {
		d.log.Error("recover: cannot attach the container to its network", "id", in.ID, "err", err)
	}
	return p, nil
}

// attachNetwork attaches the network namespace of a container (its init
// pid) to virtual network n when the host can: always when fresh (a new
// container), only when its link is missing otherwise (Recover after a
// crash). It records the addressing mode. Called with Op held.
func (d *Driver) attachNetwork(in *instance, pid int, n driver.Network, fresh bool) error {
	mode := ""
	if d.net.Wants(n) {
		if fresh || !d.net.Attached(in.ID, n, false) {
			if err := d.net.AttachNetns(in.ID, pid, n); err != nil {
				return fmt.Errorf("process: %w", err)
			}
			if !fresh {
				d.log.Warn("recover: container re-attached to its network", "id", in.ID, "link", d.net.Veth(in.ID))
			}
		} else {
			d.net.Track(in.ID, pid, n) // network security rules
		}
		mode = netattach.ModeBridge
	}
	in.update(func(st *state) { st.Network = mode })
	return nil
}

// trackForward registers the forward of p, closed when p is reaped or the
// driver closes.
func (d *Driver) trackForward(p *proc, fw *sandbox.Forwarder) {
	d.mu.Lock()
	d.forwards[fw] = struct{}{}
	d.mu.Unlock()
	prev := p.cleanup
	p.cleanup = func() {
		d.untrackForward(fw)
		if prev != nil {
			prev()
		}
	}
	p.fw = fw
}

func (d *Driver) untrackForward(fw *sandbox.Forwarder) {
	d.mu.Lock()
	delete(d.forwards, fw)
	d.mu.Unlock()
	fw.Close()
}

// removeIdleRunDir removes the run directory and cgroups of a closing
// driver that has no instances (only empty directories go: anything left
// in them stays for the next Recover).
func (d *Driver) removeIdleRunDir() {
	if d.sb == nil {
		return
	}
	idle := d.tab.Len() == 0
	if !idle {
		return
	}
	for _, dir := range []string{filepath.Join(d.sb.runDir, "bundles"), filepath.Join(d.sb.runDir, "runc"), d.sb.runDir} {
		os.Remove(dir)
	}
	sandbox.RemoveCgroups("/vmssd/" + d.sb.scope)
}

// removeBundle removes the run directory of a deleted instance.
func (d *Driver) removeBundle(id string) {
	if d.sb == nil {
		return
	}
	dir := d.sb.bundleDir(id)
	if err := sandbox.Unmount(filepath.Join(dir, "rootfs")); err != nil {
		d.log.Warn("unmount", "id", id, "err", err)
		return
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		d.log.Warn("remove container bundle", "id", id, "err", err)
	}
}
