package lb

import (
	"errors"
	"io"
	"iter"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// maxAttempts bounds how many members a new connection tries.
const maxAttempts = 3

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (l *listener) acceptLoop() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // EMFILE and the like
			continue
		}
		go l.serveTCP(c.(*net.TCPConn))
	}
}

// tcpFlow is one proxied connection.
type tcpFlow struct {
	client *net.TCPConn
	mu     sync.Mutex
	server *net.TCPConn
	closed bool
	last   atomic.Int64 // unix nanos of the last byte either way
}

func (f *tcpFlow) setServer(s *net.TCPConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.server = s
	return true
}

// close closes both ends; reset sends RSTs instead of FINs.
func (f *tcpFlow) close(reset bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, c := range []*net.TCPConn{f.client, f.server} {
		if c == nil {
			continue
		}
		if reset {
			_ = c.SetLinger(0)
		}
		_ = c.Close()
	}
}

func (f *tcpFlow) forceClose() { f.close(false) }

// candidates yields the members a new flow tries, at most maxAttempts, in
// the order the flow's hash picks them; each of the first 64 is yielded once.
func (rt *liveRoute) candidates(flow uint64) iter.Seq[*backend] {
	return func(yield func(*backend) bool) {
		var tried uint64 // bit i: candidate i tried (only the first 64 are retried)
		for range maxAttempts {
			i := pick(flow, rt.hashes, func(i int) bool { return i < 64 && tried&(1<<i) != 0 })
			if i < 0 {
				return
			}
			if i < 64 {
				tried |= 1 << i
			}
			if !yield(rt.backends[i]) {
				return
			}
		}
	}
}

func (l *listener) serveTCP(c *net.TCPConn) {
	rt := l.route()
	l.stats.conns.Add(1)
	if rt == nil || len(rt.backends) == 0 {
		l.stats.failures.Add(1)
		_ = c.SetLinger(0)
		_ = c.Close()
		return
	}
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	flow := flowHash(rt.Distribution, TCP, src, l.key.Addr)
	f := &tcpFlow{client: c}
	for b := range rt.candidates(flow) {
		addr, ok := b.target(rt.BackendPort)
		if !ok || !b.acquire(f) {
			continue
		}
		d := net.Dialer{Timeout: l.lb.opts.DialTimeout}
		sc, err := d.Dial("tcp", addr)
		if err != nil {
			b.stats.failures.Add(1)
			b.release(f)
			continue
		}
		if !f.setServer(sc.(*net.TCPConn)) { // drained while dialling
			_ = sc.Close()
			b.release(f)
			return
		}
		l.stats.active.Add(1)
		f.proxy(rt, &l.stats, &b.stats)
		l.stats.active.Add(-1)
		b.release(f)
		return
	}
	l.stats.failures.Add(1)
	_ = c.SetLinger(0)
	_ = c.Close()
}

var errIdle = errors.New("idle timeout")

// proxy copies both ways until both are done, an error, or the idle
// timeout (no byte either way for rt.IdleTimeout).
func (f *tcpFlow) proxy(rt *liveRoute, fe, be *counters) {
	f.last.Store(time.Now().UnixNano())
	errc := make(chan error, 1)
	go func() {
		err := f.copy(f.server, f.client, rt.IdleTimeout, &fe.bytesIn, &be.bytesIn)
		if err != nil {
			f.close(rt.TCPReset && errors.Is(err, errIdle)) // ends the other direction too
		}
		errc <- err
	}()
	err := f.copy(f.client, f.server, rt.IdleTimeout, &fe.bytesOut, &be.bytesOut)
	if err != nil {
		// Closing both ends also ends the other direction.
		f.close(rt.TCPReset && errors.Is(err, errIdle))
		<-errc
		return
	}
	<-errc
	f.close(false)
}

// copy moves bytes from src to dst. At src's end of stream it half-closes
// dst and returns nil.
func (f *tcpFlow) copy(dst, src *net.TCPConn, idle time.Duration, n1, n2 *atomic.Int64) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	_ = src.SetReadDeadline(time.Now().Add(idle))
	for {
		n, err := src.Read(buf)
		if n > 0 {
			f.last.Store(time.Now().UnixNano())
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
			n1.Add(int64(n))
			n2.Add(int64(n))
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			last := time.Unix(0, f.last.Load())
			if time.Since(last) < idle {
				_ = src.SetReadDeadline(last.Add(idle))
				continue
			}
			return errIdle
		}
		if errors.Is(err, io.EOF) {
			_ = dst.CloseWrite()
			return nil
		}
		return err
	}
}
