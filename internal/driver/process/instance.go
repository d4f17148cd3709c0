package process

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

// Files of an instance directory <Root>/<ID>/ (see package instdir).
const (
	specFile     = instdir.SpecFile     // the driver.Spec
	stateFile    = "state.json"         // the persisted state
	metadataFile = instdir.MetadataFile // Spec.Metadata, read by the guest
	consoleFile  = "console.log"        // the guest's stdout and stderr
	diskDir      = instdir.DiskDir      // the OS disk: a copy of the image's rootfs
	// manifestFile (manifest.json) is a copy of the image's manifest.

	// reimageDir is where Reimage prepares the next disk, spec, manifest and
	// metadata; it is renamed to reimageReady once complete, which commits
	// the reimage: Recover finishes a committed reimage and discards an
	// uncommitted one.
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
	// Port is the reserved health port on 127.0.0.1 (0 when deallocated).
	Port int `json:"port,omitempty"`
	// PID and StartTime identify the guest process: StartTime is field 22 of
	// /proc/<pid>/stat, so a recycled pid is not mistaken for the guest.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"startTime,omitempty"`
	Restarts  int    `json:"restarts,omitempty"`
	Message   string `json:"message,omitempty"`
	// Isolation is how the guest runs (empty: IsolationNone, instances of
	// older versions).
	Isolation Isolation `json:"isolation,omitempty"`
}

// instance is the driver's view of one instance.
//
// Locking: op serializes the operations on the instance (it is held across
// slow steps: copying a disk, waiting for a guest to stop). mu guards the
// fields below it and is held only briefly, so Inspect and List never wait
// for an operation. Fields are written with both held and read with either.
// Lock order: op, then Driver.mu, then mu.
type instance struct {
	id  string
	dir string

	op sync.Mutex

	mu       sync.Mutex
	created  bool // the instance directory exists (false: Create in progress)
	removed  bool // deleted, or a failed Create: look the ID up again
	spec     driver.Spec
	manifest manifest
	st       state
	proc     *proc // the supervised guest process, nil when none

	// Guarded by op only.
	restartCancel context.CancelFunc // cancels a pending supervisor restart
	failures      int                // consecutive short-lived guests, for backoff
	lastExit      string             // how the last guest ended
}

func (in *instance) path(name string) string { return filepath.Join(in.dir, name) }

// isolation returns how the guest runs. Called with mu or op held.
func (in *instance) isolation() Isolation {
	if in.st.Isolation == "" {
		return IsolationNone
	}
	return in.st.Isolation
}

// status returns the instance's Status.
func (in *instance) status() driver.Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.statusLocked()
}

func (in *instance) statusLocked() driver.Status {
	s := driver.Status{
		ID:          in.id,
		Power:       in.st.Power,
		ImageDigest: in.spec.ImageDigest,
		PID:         in.st.PID,
		Since:       in.st.Since,
		Message:     in.st.Message,
		Restarts:    in.st.Restarts,
		Isolation:   string(in.isolation()),
	}
	if in.st.Port != 0 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(in.st.Port))
		s.Ports = map[string]string{"health": addr}
		if s.Power == driver.PowerRunning {
			s.HealthURL = "http://" + addr + in.manifest.healthPath()
		}
	}
	return s
}

// update changes the state under mu. set is called with mu held.
func (in *instance) update(set func(st *state)) {
	in.mu.Lock()
	defer in.mu.Unlock()
	set(&in.st)
}

// setPower sets the observed power (and Since when it changes) and the
// message. Called with mu held.
func (st *state) setPower(p driver.Power, msg string) {
	if st.Power != p {
		st.Power = p
		st.Since = time.Now().UTC()
	}
	st.Message = msg
}

// persist writes state.json. Called with op held, so writes are ordered.
func (in *instance) persist() error {
	in.mu.Lock()
	st := in.st
	in.mu.Unlock()
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
