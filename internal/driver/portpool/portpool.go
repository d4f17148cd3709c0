// Package portpool hands out the TCP ports on 127.0.0.1 that the drivers
// reserve for their instances (health endpoints, forwarded guest ports),
// and records which instance holds which port.
package portpool

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// Range is an inclusive range of TCP ports on 127.0.0.1. The zero Range
// lets the kernel pick free ports.
type Range struct {
	First, Last int
}

// Validate checks that r is the zero Range or a range of valid ports.
func (r Range) Validate() error {
	switch {
	case r == Range{}:
		return nil
	case r.First < 1 || r.Last > 65535 || r.First > r.Last:
		return fmt.Errorf("invalid port range %d-%d", r.First, r.Last)
	}
	return nil
}

// errNoPort is wrapped by the errors of Allocate when no free port is left.
var errNoPort = errors.New("no free port")

// Pool tracks which instance holds which port. A port stays reserved until
// it is released, whether or not something listens on it. Not safe for
// concurrent use.
type Pool struct {
	r    Range
	next int            // next port to try in r
	used map[int]string // port -> instance ID
}

// New returns an empty pool allocating from r (validated by the caller).
func New(r Range) *Pool {
	return &Pool{r: r, next: r.First, used: make(map[int]string)}
}

// Reserve records that id holds port. It reports false when another
// instance holds it.
func (p *Pool) Reserve(port int, id string) bool {
	if owner, ok := p.used[port]; ok && owner != id {
		return false
	}
	p.used[port] = id
	return true
}

// Release frees port if id holds it. Port 0 (none) is ignored.
func (p *Pool) Release(port int, id string) {
	if port != 0 && p.used[port] == id {
		delete(p.used, port)
	}
}

// Owner returns the instance holding port ("" if none).
func (p *Pool) Owner(port int) string { return p.used[port] }

// Allocate reserves for id a port that no instance holds: with the zero
// Range one the kernel picks, otherwise the next one of the range (round
// robin) that can be bound on 127.0.0.1 right now. The error says "no free
// port" when none is left.
func (p *Pool) Allocate(id string) (int, error) {
	if p.r == (Range{}) {
		for range 64 {
			port, err := kernelPort()
			if err != nil {
				return 0, err
			}
			if _, taken := p.used[port]; !taken {
				p.used[port] = id
				return port, nil
			}
		}
		return 0, errNoPort
	}
	n := p.r.Last - p.r.First + 1
	for range n {
		port := p.next
		p.next++
		if p.next > p.r.Last {
			p.next = p.r.First
		}
		if _, taken := p.used[port]; taken || !Free(port) {
			continue
		}
		p.used[port] = id
		return port, nil
	}
	return 0, fmt.Errorf("%w in %d-%d", errNoPort, p.r.First, p.r.Last)
}

// kernelPort asks the kernel for a free port on 127.0.0.1.
func kernelPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Free reports whether port can be bound on 127.0.0.1 right now.
func Free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
