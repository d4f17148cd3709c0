package lb

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// udpSessions are a UDP listener's flows, by client address.
type udpSessions struct {
	mu sync.Mutex
	m  map[string]*udpSession
}

func (s *udpSessions) closeAll() {
	s.mu.Lock()
	all := make([]*udpSession, 0, len(s.m))
	for _, x := range s.m {
		all = append(all, x)
	}
	s.mu.Unlock()
	for _, x := range all {
		x.forceClose()
	}
}

// udpSession is one UDP flow: datagrams from a client go to one member over
// a connected socket; the member's answers go back out of the listener's
// socket. It ends after the idle timeout.
type udpSession struct {
	l      *listener
	client netip.AddrPort
	up     *net.UDPConn
	b      *backend
	last   atomic.Int64
	once   sync.Once
}

func (s *udpSession) forceClose() {
	s.once.Do(func() {
		_ = s.up.Close()
		s.l.udp.mu.Lock()
		if s.l.udp.m[s.client.String()] == s {
			delete(s.l.udp.m, s.client.String())
		}
		s.l.udp.mu.Unlock()
		s.l.stats.active.Add(-1)
		s.b.release(s)
	})
}

func (l *listener) udpLoop() {
	defer l.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, from, err := l.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s := l.udpSession(from)
		if s == nil {
			continue
		}
		s.last.Store(time.Now().UnixNano())
		if _, err := s.up.Write(buf[:n]); err != nil {
			s.b.stats.failures.Add(1)
			s.forceClose()
			continue
		}
		l.stats.bytesIn.Add(int64(n))
		s.b.stats.bytesIn.Add(int64(n))
	}
}

// udpSession finds or starts the flow of a client.
func (l *listener) udpSession(from netip.AddrPort) *udpSession {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	key := from.String()
	l.udp.mu.Lock()
	s := l.udp.m[key]
	l.udp.mu.Unlock()
	if s != nil {
		return s
	}
	rt := l.route()
	l.stats.conns.Add(1)
	if rt == nil || len(rt.backends) == 0 {
		l.stats.failures.Add(1)
		return nil
	}
	flow := flowHash(rt.Distribution, UDP, from, l.key.Addr)
	for b := range rt.candidates(flow) {
		addr, ok := b.target(rt.BackendPort)
		if !ok {
			continue
		}
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			b.stats.failures.Add(1)
			continue
		}
		up, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			b.stats.failures.Add(1)
			continue
		}
		s = &udpSession{l: l, client: from, up: up, b: b}
		if !b.acquire(s) {
			_ = up.Close()
			continue
		}
		l.stats.active.Add(1)
		l.udp.mu.Lock()
		l.udp.m[key] = s
		l.udp.mu.Unlock()
		go s.replies(rt.IdleTimeout)
		return s
	}
	l.stats.failures.Add(1)
	return nil
}

func (s *udpSession) replies(idle time.Duration) {
	defer s.forceClose()
	buf := make([]byte, 64<<10)
	s.last.Store(time.Now().UnixNano())
	_ = s.up.SetReadDeadline(time.Now().Add(idle))
	for {
		n, err := s.up.Read(buf)
		if n > 0 {
			s.last.Store(time.Now().UnixNano())
			if _, werr := s.l.pc.WriteToUDPAddrPort(buf[:n], s.client); werr == nil {
				s.l.stats.bytesOut.Add(int64(n))
				s.b.stats.bytesOut.Add(int64(n))
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			last := time.Unix(0, s.last.Load())
			if time.Since(last) < idle {
				_ = s.up.SetReadDeadline(last.Add(idle))
				continue
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
		// ICMP unreachable and the like: the member is not there (yet);
		// keep the session until it idles out.
	}
}
