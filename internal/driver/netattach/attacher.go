package netattach

import (
	"log/slog"

	"github.com/vmssd/vmssd/internal/driver"
)

// Addressing modes (driver.Status.Network).
const (
	ModeBridge   = "bridge"   // attached to its virtual network's bridge
	ModeLoopback = "loopback" // loopback forwards only
)

// Addressing returns what a status says of an instance whose current (or
// last) guest had mode (ModeBridge, or empty) on network n: the mode and
// the private IP.
func Addressing(mode string, n driver.Network) (string, string) {
	if mode == ModeBridge {
		return ModeBridge, n.PrivateIP
	}
	return ModeLoopback, ""
}

// Attacher is a driver's use of this package: the names of its scope and
// its kind of link (veths for containers, TAPs for VMs). A nil Attacher
// (a host that cannot attach) attaches nothing: instances keep loopback
// forwards only.
type Attacher struct {
	Names
	vm  bool
	log *slog.Logger
}

// NewAttacher returns the attacher of a driver keeping its instances under
// root (vm: its links are TAPs), or nil and the reason where this host
// cannot attach (see Available).
func NewAttacher(root string, vm bool, log *slog.Logger) (*Attacher, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	return &Attacher{Names: NewNames(Scope(root)), vm: vm, log: log}, nil
}

// Wants says whether an instance on n is attached here.
func (a *Attacher) Wants(n driver.Network) bool { return a != nil && n.NetworkID != "" }

// Release removes what attaches instance id to n (its link, the bridge once
// unused), logging a failure.
func (a *Attacher) Release(id string, n driver.Network) {
	if !a.Wants(n) {
		return
	}
	if err := a.Detach(id, n); err != nil {
		a.log.Warn("detach from network", "id", id, "err", err)
	}
}

// SweepExcept removes the links of instances other than keep and unused
// bridges (after Recover), logging what it removed.
func (a *Attacher) SweepExcept(keep []string) {
	if a == nil {
		return
	}
	removed, err := a.Sweep(keep, a.vm)
	if len(removed) > 0 {
		a.log.Info("recover: removed orphaned network links", "links", removed)
	}
	if err != nil {
		a.log.Warn("recover: sweep network links", "err", err)
	}
}
