package sandbox

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// dialTimeout bounds a connection attempt into a container.
const dialTimeout = 5 * time.Second

// Netns is an open handle on a process's network namespace: it stays valid
// (and names the same namespace) after the process is gone.
type Netns struct{ f *os.File }

// OpenNetns opens the network namespace of process pid.
func OpenNetns(pid int) (*Netns, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("sandbox: network namespace of %d: %w", pid, err)
	}
	return &Netns{f: f}, nil
}

// Close releases the handle.
func (n *Netns) Close() error { return n.f.Close() }

// Dial connects to addr (tcp) from inside the namespace.
func (n *Netns) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() (err error) {
		d := net.Dialer{Timeout: dialTimeout}
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// Listen listens on addr (tcp) inside the namespace.
func (n *Netns) Listen(ctx context.Context, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.do(func() (err error) {
		var lc net.ListenConfig
		ln, err = lc.Listen(ctx, "tcp", addr)
		return err
	})
	return ln, err
}

// do runs f on a thread that entered the namespace and goes back
// afterwards (a thread that cannot go back is retired with its goroutine):
// the sockets f creates belong to the namespace.
func (n *Netns) do(f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- err
			return
		}
		defer back.Close()
		if err := unix.Setns(int(n.f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("setns: %w", err)
			return
		}
		err = f()
		if unix.Setns(int(back.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the locked thread exits with this goroutine
		ch <- err
	}()
	return <-ch
}

// Forwarder carries the connections a host listener accepts to an address
// inside a network namespace (the instance's loopback forward).
type Forwarder struct {
	ln     net.Listener
	ns     *Netns
	target string

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Forward serves ln, connecting each accepted connection to target (host:port)
// in ns. The Forwarder owns ln and ns.
func Forward(ln net.Listener, ns *Netns, target string) *Forwarder {
	f := &Forwarder{ln: ln, ns: ns, target: target, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.proxy(c)
		}()
	}
}

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// proxy copies between c and a new connection to the target.
func (f *Forwarder) proxy(c net.Conn) {
	in, err := f.ns.Dial(context.Background(), f.target)
	if err != nil {
		return
	}
	if !f.track(in) {
		in.Close()
		return
	}
	defer f.untrack(in)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(in, c)
	go pipe(c, in)
	<-done
	<-done
}

// Addr is the host address the forwarder listens on.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

// Close stops listening, cuts the open connections, waits for the
// forwarder's goroutines and releases the namespace handle.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	err := f.ln.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	f.ns.Close()
	return err
}
