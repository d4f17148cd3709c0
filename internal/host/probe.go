package host

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
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

	mu sync.Mutex
	// specs are the Application Health extension probes of instances
	// (SetProbe); fails counts consecutive failed probes after a healthy
	// one (numberOfProbes).
	specs map[string]ProbeSpec
	fails map[string]int
}

// ProbeSpec is an instance's probe from its model's Application Health
// extension (ApplicationHealthLinux/Windows settings).
type ProbeSpec struct {
	// Protocol is http, https or tcp.
	Protocol string
	// Port is the guest port; the probe goes to the host address the
	// driver maps it to (driver.Status.Ports[port]), or to the instance's
	// health address when the driver maps only that one.
	Port int
	// Path is the request path of http and https probes.
	Path string
	// Interval is the probe period once healthy; Probes the number of
	// consecutive failures that make a healthy instance Unhealthy; Grace
	// how long a started instance stays Initializing.
	Interval time.Duration
	Probes   int
	Grace    time.Duration
}

// SetProbe makes the instance's probe follow its model's Application
// Health extension; nil goes back to the image's built-in probe.
func (h *Host) SetProbe(vmid string, spec *ProbeSpec) {
	p := h.prober
	p.mu.Lock()
	defer p.mu.Unlock()
	if spec == nil {
		delete(p.specs, vmid)
		return
	}
	p.specs[vmid] = *spec
}

// Grace is how long an instance started on this host may be unhealthy
// and still be reported Initializing (the built-in probe's grace period).
func (h *Host) Grace() time.Duration { return h.opts.Grace }

func (p *prober) spec(vmid string) (ProbeSpec, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.specs[vmid]
	return s, ok
}

// failed counts a failed probe of vmid (reset by ok) and returns the count.
func (p *prober) failed(vmid string, ok bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ok {
		delete(p.fails, vmid)
		return 0
	}
	p.fails[vmid]++
	return p.fails[vmid]
}

// target is the URL an instance is probed at: the image's health URL, or
// the extension's protocol, port and path on the address the driver maps
// for that port (the instance's own address either way).
func (p *prober) target(vmid, healthURL string, st driver.Status) (string, ProbeSpec, bool) {
	spec, ok := p.spec(vmid)
	if !ok {
		return healthURL, spec, false
	}
	addr := st.Ports[strconv.Itoa(spec.Port)]
	if addr == "" {
		addr = st.Ports["health"]
	}
	if addr == "" {
		return healthURL, spec, false
	}
	if spec.Protocol == "tcp" {
		return "tcp://" + addr, spec, true
	}
	path := spec.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return spec.Protocol + "://" + addr + path, spec, true
}

// probeAddrKey carries the one address a probe may connect to.
type probeAddrKey struct{}

func newProber(timeout time.Duration) *prober {
	d := &net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		Proxy: nil, // never a proxy from the environment
		// https probes, like Azure's extension, do not check the guest's
		// certificate: the address is what the probe trusts.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
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
	return &prober{specs: map[string]ProbeSpec{}, fails: map[string]int{}, client: &http.Client{
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
	if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "tcp" || u.User != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("health URL %q: only http://IP:PORT/PATH, https://IP:PORT/PATH and tcp://IP:PORT are probed", healthURL)
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
	if u.Scheme == "tcp" {
		// A tcp probe is healthy when the connection is accepted.
		conn, err := p.client.Transport.(*http.Transport).DialContext(ctx, "tcp", addr.String())
		if err != nil {
			return probeResult{err: "health probe: " + err.Error()}
		}
		conn.Close()
		return probeResult{ok: true}
	}
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
	h.mu.Lock()
	var st driver.Status
	if o := h.obs[id]; o != nil {
		st = o.Status
	}
	h.mu.Unlock()
	target, spec, ext := h.prober.target(id, url, st)
	grace, slow, probes := h.opts.Grace, h.opts.ProbeSlow, 1
	if ext {
		grace, slow, probes = spec.Grace, spec.Interval, max(1, spec.Probes)
	}
	res := h.prober.get(ctx, target)
	fails := h.prober.failed(id, res.ok)
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
		o.nextProbe = now.Add(slow)
	case !o.everOK && now.Sub(o.started) < grace:
		o.Health = HealthInitializing
		o.nextProbe = now.Add(h.opts.ProbeFast)
	case o.everOK && o.Health == HealthHealthy && fails < probes:
		// numberOfProbes consecutive failures make it Unhealthy.
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
