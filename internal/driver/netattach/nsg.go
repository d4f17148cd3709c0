package netattach

import (
	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/nsg"
)

// enforceNSG hands instance id's namespace (that of process pid) to the
// network security group enforcer (internal/nsg), which applies the rules
// the network manager wants for n's NIC there now and whenever they change.
// An error means rules are wanted and could not be applied: the attachment
// fails rather than leave the instance unprotected.
func enforceNSG(id string, pid int, n driver.Network, fresh bool) error {
	return nsg.Default.Attach(id, nsg.Key{NetworkID: n.NetworkID, IP: n.PrivateIP}, pid, fresh)
}

// Track hands the namespace of a recovered container (process pid) that
// kept its link to the enforcer (see AttachNetns), logging a failure.
func (a *Attacher) Track(id string, pid int, n driver.Network) {
	if !a.Wants(n) {
		return
	}
	if err := enforceNSG(id, pid, n, false); err != nil {
		a.log.Error("recover: network security rules not applied", "id", id, "err", err)
	}
}
