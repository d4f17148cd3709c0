package process

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// PortRange is an inclusive range of TCP ports on 127.0.0.1 handed to
// instances. The zero PortRange lets the kernel pick free ports.
type PortRange struct {
	First, Last int
}

func (r PortRange) valid() error {
	switch {
	case r == PortRange{}:
		return nil
	case r.First < 1 || r.Last > 65535 || r.First > r.Last:
		return fmt.Errorf("process: invalid port range %d-%d", r.First, r.Last)
	}
	return nil
}

// errNoPort is returned when no free port is left.
var errNoPort = errors.New("process: no free port")

// portPool tracks which instance holds which port. A port stays reserved
// while its instance is running or stopped; deallocation releases it. Not
// safe for concurrent use (the Driver guards it).
type portPool struct {
	r    PortRange
	next int            // next port to try in r
	used map[int]string // port -> instance ID
}

func newPortPool(r PortRange) *portPool {
	return &portPool{r: r, next: r.First, used: make(map[int]string)}
}

// reserve records that id holds port. It reports false when another instance
// holds it.
func (p *portPool) reserve(port int, id string) bool {
	if owner, ok := p.used[port]; ok && owner != id {
		return false
	}
	p.used[port] = id
	return true
}

// release frees port if id holds it.
func (p *portPool) release(port int, id string) {
	if p.used[port] == id {
		delete(p.used, port)
	}
}

// owner returns the instance holding port.
func (p *portPool) owner(port int) string { return p.used[port] }

// allocate reserves a port that no instance holds and that can be bound on
// 127.0.0.1 right now.
func (p *portPool) allocate(id string) (int, error) {
	if p.r == (PortRange{}) {
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
		if _, taken := p.used[port]; taken || !portFree(port) {
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
		return 0, fmt.Errorf("process: pick a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portFree reports whether port can be bound on 127.0.0.1.
func portFree(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
