package process

import (
	"net"
	"strconv"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/instdir"
	"github.com/vmssd/vmssd/internal/driver/lifecycle"
	"github.com/vmssd/vmssd/internal/driver/netattach"
)

// Files of an instance directory <Root>/<ID>/ (see packages instdir and
// lifecycle).
const (
	specFile     = instdir.SpecFile      // the driver.Spec
	stateFile    = lifecycle.StateFile   // the persisted state
	metadataFile = instdir.MetadataFile  // Spec.Metadata, read by the guest
	consoleFile  = lifecycle.ConsoleFile // the guest's stdout and stderr
	diskDir      = instdir.DiskDir       // the OS disk: a copy of the image's rootfs
	// manifestFile (manifest.json) is a copy of the image's manifest.
)

// state is what state.json holds: the shared lifecycle.State (desired and
// observed power, pid and start time, restarts, message) and the driver's
// own fields.
type state struct {
	lifecycle.State
	// Port is the reserved health port on 127.0.0.1 (0 when deallocated).
	Port int `json:"port,omitempty"`
	// Isolation is how the guest runs (empty: IsolationNone, instances of
	// older versions).
	Isolation Isolation `json:"isolation,omitempty"`
	// Network is how the current (or last) guest is addressed:
	// netattach.ModeBridge or empty (loopback forward only).
	Network string `json:"network,omitempty"`
}

// instance is the driver's view of one instance (see lifecycle.Base for
// the locking): Mu guards the fields below too.
type instance struct {
	lifecycle.Base

	manifest manifest
	st       state
	proc     *proc // the supervised guest process, nil when none
}

func newInstance(id, dir string) *instance {
	in := &instance{}
	in.Init(id, dir)
	return in
}

func (in *instance) Common() *lifecycle.State { return &in.st.State }
func (in *instance) StateSnapshot() any       { return in.st }
func (in *instance) StatePtr() any            { return &in.st }

// isolation returns how the guest runs. Called with Mu or Op held.
func (in *instance) isolation() Isolation {
	if in.st.Isolation == "" {
		return IsolationNone
	}
	return in.st.Isolation
}

// status returns the instance's Status.
func (in *instance) status() driver.Status {
	in.Mu.Lock()
	defer in.Mu.Unlock()
	return in.statusLocked()
}

func (in *instance) statusLocked() driver.Status {
	s := driver.Status{
		ID:          in.ID,
		Power:       in.st.Power,
		ImageDigest: in.Spec.ImageDigest,
		PID:         in.st.PID,
		Since:       in.st.Since,
		Message:     in.st.Message,
		Restarts:    in.st.Restarts,
		Isolation:   string(in.isolation()),
	}
	s.Network, s.PrivateIP = netattach.Addressing(in.st.Network, in.Spec.Network)
	if in.st.Port != 0 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(in.st.Port))
		s.Ports = map[string]string{"health": addr}
		if s.Power == driver.PowerRunning {
			s.HealthURL = "http://" + addr + in.manifest.healthPath()
		}
	}
	return s
}

// update changes the state under Mu. set is called with Mu held.
func (in *instance) update(set func(st *state)) {
	in.Mu.Lock()
	defer in.Mu.Unlock()
	set(&in.st)
}

// persist writes state.json. Called with Op held.
func (in *instance) persist() error { return lifecycle.Persist(in) }
