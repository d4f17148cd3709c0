package lb

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// prober runs one probe against one member in its own loop: one success
// makes the member Healthy, Threshold consecutive failures Unhealthy. It
// only ever dials its member's address, sends no proxy's way and never
// follows a redirect (a 3xx is a failure, as only 200 is healthy).
type prober struct {
	t      ProbeTarget
	now    func() time.Time
	notify func()
	cancel context.CancelFunc
	done   chan struct{}
	client *http.Client

	mu     sync.Mutex
	res    ProbeResult
	fails  int
	gen    uint64 // bumped by reset; results of older rounds are dropped
	resetC chan struct{}
}

func startProber(t ProbeTarget, now func() time.Time, notify func()) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{t: t, now: now, notify: notify, cancel: cancel, done: make(chan struct{}),
		res: ProbeResult{Health: Unknown, Message: "not probed yet", Since: now()}, resetC: make(chan struct{}, 1)}
	if t.Spec.Protocol != ProbeTCP {
		d := &net.Dialer{}
		tr := &http.Transport{
			Proxy: nil, // never a proxy from the environment
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, t.Target) // only ever the member
			},
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // Azure's Https probes do not validate certificates
			DisableKeepAlives: true,
		}
		p.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	go p.loop(ctx)
	return p
}

func (p *prober) stop() {
	p.cancel()
	<-p.done
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
}

// result is the current verdict.
func (p *prober) result() ProbeResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.res
}

// reset forgets the verdict (Unknown until the next success) and probes at
// once; an answer to a probe sent before the reset is ignored.
func (p *prober) reset() {
	p.mu.Lock()
	p.gen++
	p.fails = 0
	p.res = ProbeResult{Health: Unknown, Message: "not probed since undrain", Since: p.now()}
	p.mu.Unlock()
	select {
	case p.resetC <- struct{}{}:
	default:
	}
}

// timeout bounds one probe: the interval, but never less than 2 s, so that
// a member slow to answer on a busy machine is not mistaken for a dead one
// (a refused connection or a non-200 answer fails at once anyway).
func (p *prober) timeout() time.Duration {
	return min(max(p.t.Spec.Interval, 2*time.Second), 30*time.Second)
}

func (p *prober) loop(ctx context.Context) {
	defer close(p.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.resetC:
		}
		p.mu.Lock()
		gen := p.gen
		p.mu.Unlock()
		err := p.once(ctx)
		if ctx.Err() != nil {
			return
		}
		if p.record(gen, err) {
			p.notify()
		}
		timer.Reset(p.t.Spec.Interval)
	}
}

// record folds one answer into the verdict; it reports a change of Health.
func (p *prober) record(gen uint64, err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if gen != p.gen {
		return false
	}
	old := p.res.Health
	if err == nil {
		p.fails = 0
		if old != Healthy {
			p.res = ProbeResult{Health: Healthy, Message: "probe succeeded", Since: p.now()}
		}
		return old != Healthy
	}
	p.fails++
	if p.fails >= p.t.Spec.Threshold && old != Unhealthy {
		p.res = ProbeResult{Health: Unhealthy, Message: err.Error(), Since: p.now()}
		return true
	}
	if old != Healthy {
		p.res.Message = err.Error() // still Unknown or Unhealthy: the latest reason
	}
	return false
}

func (p *prober) once(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	if p.t.Spec.Protocol == ProbeTCP {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", p.t.Target)
		if err != nil {
			return fmt.Errorf("tcp probe: %w", err)
		}
		return c.Close()
	}
	scheme := "http"
	if p.t.Spec.Protocol == ProbeHTTPS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+p.t.Target+p.t.Spec.RequestPath, nil)
	if err != nil {
		return fmt.Errorf("%s probe: %w", scheme, err)
	}
	req.Header.Set("User-Agent", "Load Balancer Agent")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s probe: %w", scheme, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return fmt.Errorf("%s probe answered %s redirecting to %q: probes do not follow redirects", scheme, resp.Status, loc)
		}
		return fmt.Errorf("%s probe answered %s, only 200 is healthy", scheme, resp.Status)
	}
	return nil
}
