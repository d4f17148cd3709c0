package qemu

import (
	"net"
	"strconv"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/driver/lifecycle"
	"github.com/vmssd/vmssd/internal/driver/netattach"
)

// Files of an instance directory <Root>/<ID>/. QEMU runs with the instance
// directory as its working directory and is given relative paths, so that
// its unix socket path stays short and no path needs QEMU option escaping.
// See package instdir for what both drivers share.
const (
	specFile     = instdir.SpecFile      // the driver.Spec
	stateFile    = lifecycle.StateFile   // the persisted state
	metadataFile = instdir.MetadataFile  // Spec.Metadata, handed to the guest over fw_cfg
	manifestFile = instdir.ManifestFile  // a copy of the image's manifest
	consoleFile  = lifecycle.ConsoleFile // the serial console, bounded
	qemuLogFile  = "qemu.log"            // QEMU's own stdout and stderr, bounded
	pidFile      = "qemu.pid"            // QEMU's pid, written by vmssd as it starts QEMU
	qmpSocket    = runDir + "/qmp.sock"  // QMP, served by QEMU
	// diskDir holds what the VM's disks are made of: overlayFile (a qcow2
	// copy-on-write overlay of the image's disk) and seedFile (a NoCloud
	// cloud-init seed). It is empty for a direct-boot image without disk.
	diskDir     = instdir.DiskDir
	overlayFile = "overlay.qcow2"
	seedFile    = "seed.iso"
)

// state is what state.json holds: the shared lifecycle.State (desired and
// observed power, pid and start time, restarts, message, failure) and the
// driver's own fields.
type state struct {
	lifecycle.State
	// HealthPort and SSHPort are the reserved host ports on 127.0.0.1
	// forwarded to the guest (0 when deallocated).
	HealthPort int `json:"healthPort,omitempty"`
	SSHPort    int `json:"sshPort,omitempty"`
	// UID is the user (and group) QEMU runs as (0: vmssd's own).
	UID int `json:"uid,omitempty"`
	// Accel is how the current (or last) QEMU accelerates the guest.
	Accel string `json:"accel,omitempty"`
	// BootStarted is when the current QEMU was started; Booted says its
	// guest finished booting.
	BootStarted time.Time `json:"bootStarted,omitzero"`
	Booted      bool      `json:"booted,omitempty"`
	// ConsoleOffset is the size of console.log when the current QEMU
	// started: ready markers are looked for after it.
	ConsoleOffset int64 `json:"consoleOffset,omitempty"`
	// Resources are the VM's vCPUs and memory.
	Resources resources `json:"resources"`
	// Network is how the current (or last) QEMU is addressed:
	// netattach.ModeBridge (a TAP on its virtual network's bridge) or empty
	// (user networking only).
	Network string `json:"network,omitempty"`
}

// instance is the driver's view of one instance (see lifecycle.Base for the
// locking; Mu guards the fields below too). The boot monitor changes the
// power from starting to running under Mu alone; every other change is made
// with Op held too.
type instance struct {
	lifecycle.Base

	img image
	st  state
	vm  *vm // the QEMU process, nil when none
}

func newInstance(id, dir string) *instance {
	in := &instance{}
	in.Init(id, dir)
	return in
}

func (in *instance) Common() *lifecycle.State { return &in.st.State }
func (in *instance) StateSnapshot() any       { return in.st }
func (in *instance) StatePtr() any            { return &in.st }

// status returns the instance's Status.
func (in *instance) status(defaultAccel string) driver.Status {
	in.Mu.Lock()
	defer in.Mu.Unlock()
	return in.statusLocked(defaultAccel)
}

func (in *instance) statusLocked(defaultAccel string) driver.Status {
	s := driver.Status{
		ID:          in.ID,
		Power:       in.st.Power,
		ImageDigest: in.Spec.ImageDigest,
		PID:         in.st.PID,
		Since:       in.st.Since,
		Message:     in.st.Message,
		Restarts:    in.st.Restarts,
		Accel:       in.st.Accel,
		Failure:     in.st.Failure,
	}
	s.Network, s.PrivateIP = netattach.Addressing(in.st.Network, in.Spec.Network)
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

// update changes the state under Mu.
func (in *instance) update(set func(st *state)) {
	in.Mu.Lock()
	defer in.Mu.Unlock()
	set(&in.st)
}

// persist writes state.json.
func (in *instance) persist() error { return lifecycle.Persist(in) }
