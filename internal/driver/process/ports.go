package process

import (
	"github.com/vmssd/vmssd/internal/driver/portpool"
)

// PortRange is an inclusive range of TCP ports on 127.0.0.1 handed to
// instances. The zero PortRange lets the kernel pick free ports.
type PortRange = portpool.Range
