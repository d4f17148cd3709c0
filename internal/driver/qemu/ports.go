package qemu

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// errNoPort is returned when no free port is left.
var errNoPort = errors.New("qemu: no free port")

// portPool tracks which instance holds which host port. Ports stay reserved
// while an instance is running or stopped; deallocation releases them. Not
// safe for concurrent use (the Driver guards it).
type portPool struct {
	used map[int]string // port -> instance ID
}

func newPortPool() *portPool { return &portPool{used: make(map[int]string)} }

// reserve records that id holds port; false when another instance holds it.
func (p *portPool) reserve(port int, id string) bool {
	if owner, ok := p.used[port]; ok && owner != id {
		return false
	}
	p.used[port] = id
	return true
}

// release frees port if id holds it.
func (p *portPool) release(port int, id string) {
	if port != 0 && p.used[port] == id {
		delete(p.used, port)
	}
}

func (p *portPool) owner(port int) string { return p.used[port] }

// allocate reserves a port that no instance holds, picked by the kernel.
func (p *portPool) allocate(id string) (int, error) {
	for range 64 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("qemu: pick a port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if _, taken := p.used[port]; !taken {
			p.used[port] = id
			return port, nil
		}
	}
	return 0, errNoPort
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
