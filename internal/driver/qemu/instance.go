package qemu

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/instdir"
)

// Files of an instance directory <Root>/<ID>/. QEMU runs with the instance
// directory as its working directory and is given relative paths, so that
// its unix socket path stays short and no path needs QEMU option escaping.
// See package instdir for what both drivers share.
const (
	specFile     = instdir.SpecFile     // the driver.Spec
	stateFile    = "state.json"         // the persisted state
	metadataFile = instdir.MetadataFile // Spec.Metadata, handed to the guest over fw_cfg
	manifestFile = instdir.ManifestFile // a copy of the image's manifest
	consoleFile  = "console.log"        // the serial console, bounded
	qemuLogFile  = "qemu.log"           // QEMU's own stdout and stderr, bounded
	pidFile      = "qemu.pid"           // QEMU's pid, written by vmssd as it starts QEMU
	qmpSocket    = runDir + "/qmp.sock" // QMP, served by QEMU
	// diskDir holds what the VM's disks are made of: overlayFile (a qcow2
	// copy-on-write overlay of the image's disk) and seedFile (a NoCloud
	// cloud-init seed). It is empty for a direct-boot image without disk.
	diskDir     = instdir.DiskDir
	overlayFile = "overlay.qcow2"
	seedFile    = "seed.iso"

	// reimageDir is where Reimage prepares the next disk directory, spec,
	// manifest and metadata; it is renamed to reimageReady once complete,
	// which commits the reimage: Recover finishes a committed reimage and
	// discards an uncommitted one.
	reimageDir   = instdir.ReimageDir
	reimageReady = instdir.ReimageReady
)

// state is what state.json holds.
type state struct {
	// Desired is the power the instance should have: running, stopped or
	// deallocated.
	Desired driver.Power `json:"desired"`
	// Power and Since are the last observed power and when it changed.
	Power driver.Power `json:"power"`
	Since time.Time    `json:"since"`
	// HealthPort and SSHPort are the reserved host ports on 127.0.0.1
	// forwarded to the guest (0 when deallocated).
	HealthPort int `json:"healthPort,omitempty"`
	SSHPort    int `json:"sshPort,omitempty"`
	// PID and StartTime identify the QEMU process: StartTime is field 22
	// of /proc/<pid>/stat, so a recycled pid is not mistaken for it.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	// UID is the user (and group) QEMU runs as (0: vmssd's own).
	UID int `json:"uid,omitempty"`
	// Accel is how the current (or last) QEMU accelerates the guest.
	Accel string `json:"accel,omitempty"`
	// Failure is the ARM code of why the VM stopped by itself, if it failed
	// (driver.Status.Failure).
	Failure string `json:"failure,omitempty"`
	// BootStarted is when the current QEMU was started; Booted says its
	// guest finished booting.
	BootStarted time.Time `json:"bootStarted,omitzero"`
	Booted      bool      `json:"booted,omitempty"`
	// ConsoleOffset is the size of console.log when the current QEMU
	// started: ready markers are looked for after it.
	ConsoleOffset int64 `json:"consoleOffset,omitempty"`
	// Resources are the VM's vCPUs and memory.
	Resources resources `json:"resources"`
	Restarts  int       `json:"restarts,omitempty"`
	Message   string    `json:"message,omitempty"`
}

// setPower sets the observed power (and Since when it changes) and the
// message.
func (st *state) setPower(p driver.Power, msg string) {
	if st.Power != p {
		st.Power = p
		st.Since = time.Now().UTC()
	}
	st.Message = msg
	if p == driver.PowerStarting || p == driver.PowerRunning {
		st.Failure = ""
	}
}

// opLock is a mutex whose Lock can be abandoned when a context ends.
type opLock chan struct{}

func newOpLock() opLock { return make(opLock, 1) }

func (l opLock) lock(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l opLock) tryLock() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l opLock) unlock() { <-l }

// instance is the driver's view of one instance.
//
// Locking: op serializes the operations on the instance (it is held across
// slow steps: creating disks, waiting for a boot slot, waiting for a guest
// to shut down). mu guards the fields below it and is held only briefly, so
// Inspect and List never wait for an operation. The boot monitor changes
// the power from starting to running under mu alone; every other change is
// made with op held too. Lock order: op, then Driver.mu, then mu.
type instance struct {
	id  string
	dir string

	op opLock
	// pmu orders the writes of state.json: each write takes a snapshot of
	// the state after the previous write finished.
	pmu sync.Mutex

	mu      sync.Mutex
	created bool // the instance directory exists (false: Create in progress)
	removed bool // deleted, or a failed Create: look the ID up again
	spec    driver.Spec
	img     image
	st      state
	vm      *vm // the QEMU process, nil when none

	// Guarded by op only.
	restartCancel context.CancelFunc // cancels a pending supervisor restart
	failures      int                // consecutive short-lived VMs, for backoff
	lastExit      string             // how the last VM ended
}

func newInstance(id, dir string) *instance {
	return &instance{id: id, dir: dir, op: newOpLock()}
}

func (in *instance) path(name string) string { return filepath.Join(in.dir, name) }

// status returns the instance's Status.
func (in *instance) status(defaultAccel string) driver.Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.statusLocked(defaultAccel)
}

func (in *instance) statusLocked(defaultAccel string) driver.Status {
	s := driver.Status{
		ID:          in.id,
		Power:       in.st.Power,
		ImageDigest: in.spec.ImageDigest,
		PID:         in.st.PID,
		Since:       in.st.Since,
		Message:     in.st.Message,
		Restarts:    in.st.Restarts,
		Accel:       in.st.Accel,
		Failure:     in.st.Failure,
	}
	if s.Accel == "" {
		s.Accel = defaultAccel
	}
	if in.st.HealthPort != 0 || in.st.SSHPort != 0 {
		s.Ports = map[string]string{}
		if in.st.HealthPort != 0 {
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(in.st.HealthPort))
			s.Ports["health"] = addr
			if s.Power == driver.PowerRunning {
				s.HealthURL = "http://" + addr + in.img.HealthPath
			}
		}
		if in.st.SSHPort != 0 {
			s.Ports["ssh"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(in.st.SSHPort))
		}
	}
	return s
}

// update changes the state under mu.
func (in *instance) update(set func(st *state)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	set(&in.st)
}

// persist writes state.json.
func (in *instance) persist() error {
	in.pmu.Lock()
	defer in.pmu.Unlock()
	in.mu.Lock()
	st, gone := in.st, in.removed
	in.mu.Unlock()
	if gone {
		return nil
	}
	return writeJSONAtomic(in.path(stateFile), st)
}

// cancelRestart cancels a pending supervisor restart. Every operation calls
// it first: an operation takes over from the supervisor. Called with op held.
func (in *instance) cancelRestart() {
	if in.restartCancel != nil {
		in.restartCancel()
		in.restartCancel = nil
	}
}
