package process

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"github.com/vmssd/vmssd/internal/driver/hostproc"
)

// guestProc is a process found by scanGuests.
type guestProc struct {
	PID   int
	Start uint64
	// Leader is true for a session leader: the process vmssd spawned (the
	// guest's own children are in its session but do not lead it).
	Leader bool
	// Session is the process's session id.
	Session int
	// Port is the VMSSD_PORT the guest was started with (0 if unknown).
	Port int
}

// scanGuests finds the live processes whose environment has
// VMSSD_DISK=<disk>, keyed by disk. It finds guests that vmssd spawned but
// did not record (vmssd was killed between the spawn and the state write).
func scanGuests() (map[string][]guestProc, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("process: scan /proc: %w", err)
	}
	prefix := []byte(envDisk + "=")
	portPrefix := []byte(envPort + "=")
	self := os.Getpid()
	out := make(map[string][]guestProc)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		var disk string
		port := 0
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, prefix); ok {
				disk = string(v)
			} else if v, ok := bytes.CutPrefix(kv, portPrefix); ok {
				port, _ = strconv.Atoi(string(v))
			}
		}
		if disk == "" {
			continue
		}
		st, err := hostproc.ReadStat(pid)
		if err != nil || st.Zombie() {
			continue
		}
		out[disk] = append(out[disk], guestProc{PID: pid, Start: st.Start, Leader: st.Session == pid, Session: st.Session, Port: port})
	}
	return out, nil
}
