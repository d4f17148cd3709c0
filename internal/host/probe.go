package host

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// A health probe is a request the control plane makes on a tenant's behalf
// to an address the tenant's workload answers, so it must not become a way
// to reach anything else: probes never follow redirects (a 3xx answer is a
// failed probe that says so), never use a proxy from the environment, and
// connect only to the instance's own health address (an IP and port, no
// name to resolve): the dialer refuses every other address.

// probeTimeout bounds one probe, from dial to the end of the body.
const probeTimeout = time.Second

// prober makes health probes.
type prober struct {
	client *http.Client
}

// probeAddrKey carries the one address a probe may connect to.
type probeAddrKey struct{}

func newProber(timeout time.Duration) *prober {
	d := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		Proxy: nil, // never a proxy from the environment
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			allowed, _ := ctx.Value(probeAddrKey{}).(netip.AddrPort)
			got, err := netip.ParseAddrPort(addr)
			if !allowed.IsValid() || err != nil || got != allowed {
				return nil, fmt.Errorf("probe: refusing to connect to %s: only the instance's health address %s may be probed", addr, allowed)
			}
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if ra, err := netip.ParseAddrPort(conn.RemoteAddr().String()); err != nil || ra != allowed {
				conn.Close()
				return nil, fmt.Errorf("probe: connected to %s, not the instance's health address %s", conn.RemoteAddr(), allowed)
			}
			return conn, nil
		},
		MaxIdleConnsPerHost:   4,
		ResponseHeaderTimeout: timeout,
	}
	return &prober{client: &http.Client{
		Timeout:   timeout,
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// healthAddr checks a health URL: plain http to an IP literal and port.
func healthAddr(healthURL string) (*url.URL, netip.AddrPort, error) {
	u, err := url.Parse(healthURL)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("health URL: %w", err)
	}
	if u.Scheme != "http" || u.User != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("health URL %q: only http://IP:PORT/PATH is probed", healthURL)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("health URL %q: the host must be an IP address and port: %w", healthURL, err)
	}
	return u, ap, nil
}

// probeResult is one probe's answer.
type probeResult struct {
	ok      bool
	version string // the image version the guest reported
	err     string // why the probe failed
}

type healthBody struct {
	Status       string `json:"status"`
	ImageVersion string `json:"imageVersion"`
}

// get probes healthURL once. Only a 200 answer is healthy.
func (p *prober) get(ctx context.Context, healthURL string) probeResult {
	u, addr, err := healthAddr(healthURL)
	if err != nil {
		return probeResult{err: err.Error()}
	}
	ctx = context.WithValue(ctx, probeAddrKey{}, addr)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return probeResult{err: err.Error()}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return probeResult{err: "health probe: " + err.Error()}
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return probeResult{err: fmt.Sprintf("health probe answered %s redirecting to %q: probes do not follow redirects", resp.Status, resp.Header.Get("Location"))}
	}
	var b healthBody
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&b)
	r := probeResult{ok: resp.StatusCode == http.StatusOK, version: b.ImageVersion}
	if !r.ok {
		r.err = "health probe answered " + resp.Status
		if b.Status != "" {
			r.err += fmt.Sprintf(" (status %q)", b.Status)
		}
	}
	return r
}

// probe probes one instance and records the answer.
func (h *Host) probe(ctx context.Context, id, url string) {
	res := h.prober.get(ctx, url)
	now := time.Now()
	changed := false
	h.mu.Lock()
	o := h.obs[id]
	if o == nil || o.HealthURL != url {
		h.mu.Unlock()
		return
	}
	prev, prevVersion, prevErr := o.Health, o.Version, o.ProbeErr
	o.LastProbe, o.ProbeErr = now, res.err
	if res.version != "" {
		o.Version = res.version
	}
	switch {
	case res.ok:
		o.everOK = true
		o.Health = HealthHealthy
		o.nextProbe = now.Add(h.opts.ProbeSlow)
	case !o.everOK && now.Sub(o.started) < h.opts.Grace:
		o.Health = HealthInitializing
		o.nextProbe = now.Add(h.opts.ProbeFast)
	default:
		o.Health = HealthUnhealthy
		o.nextProbe = now.Add(h.opts.ProbeFast * 10)
	}
	if o.Health != prev {
		o.HealthSince = now
		changed = true
	}
	if changed || o.Version != prevVersion || o.ProbeErr != prevErr {
		o.Gen++
	}
	h.mu.Unlock()
	if changed && h.opts.OnChange != nil {
		h.opts.OnChange(id)
	}
}
