package host

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
)

// TestProbeFollowsHealthExtension: an instance with an Application Health
// extension probe is probed with the extension's protocol and path on its
// own mapped address (the port the driver maps, else its health port);
// https does not check the guest's certificate; tcp only connects;
// numberOfProbes failures make a healthy instance unhealthy.
func TestProbeFollowsHealthExtension(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", healthy("ext"))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	plain := httptest.NewServer(mux)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	addr := strings.TrimPrefix(plain.URL, "http://")
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tc := range []struct {
		name  string
		ports map[string]string
		spec  ProbeSpec
		want  Health
	}{
		{"built-in /health answers 503, the extension's /ready 200", map[string]string{"health": addr}, ProbeSpec{Protocol: "http", Port: 80, Path: "/ready"}, HealthHealthy},
		{"the extension's port, mapped by the driver", map[string]string{"health": closedAddr, "8080": addr}, ProbeSpec{Protocol: "http", Port: 8080, Path: "/ready"}, HealthHealthy},
		{"https, self-signed", map[string]string{"health": tlsAddr}, ProbeSpec{Protocol: "https", Port: 443, Path: "/ready"}, HealthHealthy},
		{"tcp accepts", map[string]string{"health": addr}, ProbeSpec{Protocol: "tcp", Port: 80}, HealthHealthy},
		{"tcp refused", map[string]string{"health": closedAddr}, ProbeSpec{Protocol: "tcp", Port: 80}, HealthUnhealthy},
		{"http path the guest lacks", map[string]string{"health": addr}, ProbeSpec{Protocol: "http", Port: 80, Path: "/missing"}, HealthUnhealthy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(nil, Options{Grace: time.Nanosecond})
			url := "http://" + tc.ports["health"] + "/health"
			h.obs["vm"] = &Observed{Status: driver.Status{ID: "vm", Power: driver.PowerRunning, HealthURL: url, Ports: tc.ports}}
			spec := tc.spec
			spec.Interval, spec.Probes, spec.Grace = time.Second, 1, time.Nanosecond
			h.SetProbe("vm", &spec)
			h.probe(context.Background(), "vm", url)
			if o, _ := h.Get("vm"); o.Health != tc.want {
				t.Errorf("health %s (%s), want %s", o.Health, o.ProbeErr, tc.want)
			}
		})
	}

	// numberOfProbes: 3 consecutive failures after a healthy answer.
	h := New(nil, Options{Grace: time.Nanosecond})
	url := "http://" + addr + "/health"
	h.obs["vm"] = &Observed{Status: driver.Status{ID: "vm", Power: driver.PowerRunning, HealthURL: url, Ports: map[string]string{"health": addr}}}
	h.SetProbe("vm", &ProbeSpec{Protocol: "http", Path: "/ready", Interval: time.Second, Probes: 3, Grace: time.Nanosecond})
	h.probe(context.Background(), "vm", url)
	h.SetProbe("vm", &ProbeSpec{Protocol: "http", Path: "/missing", Interval: time.Second, Probes: 3, Grace: time.Nanosecond})
	for i, want := range []Health{HealthHealthy, HealthHealthy, HealthUnhealthy} {
		h.probe(context.Background(), "vm", url)
		if o, _ := h.Get("vm"); o.Health != want {
			t.Errorf("after %d failed probes: %s, want %s", i+1, o.Health, want)
		}
	}
	// Back to the built-in probe.
	h.SetProbe("vm", nil)
	h.probe(context.Background(), "vm", url)
	if o, _ := h.Get("vm"); o.Health != HealthUnhealthy || !strings.Contains(o.ProbeErr, "503") {
		t.Errorf("built-in probe: %s %q", o.Health, o.ProbeErr)
	}
}
