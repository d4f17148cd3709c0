package host

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
)

// counting is a real HTTP server that counts the requests it gets.
func counting(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s, &n
}

func healthy(version string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"Healthy","imageVersion":"` + version + `"}`))
	}
}

// TestProbeNeverLeavesTheInstance: an instance whose health endpoint
// redirects, to another tenant's instance or to itself, fails its probe and
// says why; the redirect target is never contacted.
func TestProbeNeverLeavesTheInstance(t *testing.T) {
	other, otherHits := counting(t, healthy("other"))
	for _, tc := range []struct {
		name   string
		code   int
		target string
	}{
		{"302 to another server", http.StatusFound, other.URL + "/health"},
		{"307 to another server", http.StatusTemporaryRedirect, other.URL + "/health"},
		{"301 to another server", http.StatusMovedPermanently, other.URL + "/"},
		{"308 to the metadata address", http.StatusPermanentRedirect, "http://169.254.169.254/metadata/instance"},
		{"302 to its own other path", http.StatusFound, "/elsewhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst, instHits := counting(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					healthy("self")(w, r)
					return
				}
				http.Redirect(w, r, tc.target, tc.code)
			})
			h := New(nil, Options{Grace: time.Nanosecond})
			url := inst.URL + "/health"
			h.obs["vm"] = &Observed{Status: driver.Status{ID: "vm", Power: driver.PowerRunning, HealthURL: url}}
			h.probe(context.Background(), "vm", url)
			o, _ := h.Get("vm")
			if o.Health != HealthUnhealthy || !strings.Contains(o.ProbeErr, "probes do not follow redirects") ||
				!strings.Contains(o.ProbeErr, http.StatusText(tc.code)) || !strings.Contains(o.ProbeErr, tc.target) {
				t.Errorf("health %s, probe error %q", o.Health, o.ProbeErr)
			}
			if o.Version != "" {
				t.Errorf("version %q recorded from a redirect", o.Version)
			}
			if n := instHits.Load(); n != 1 {
				t.Errorf("instance got %d requests, want 1", n)
			}
		})
	}
	if n := otherHits.Load(); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
}

// TestProbeAnswers: what a probe makes of its instance's answers.
func TestProbeAnswers(t *testing.T) {
	ok, _ := counting(t, healthy("1.2.3"))
	unhealthy, _ := counting(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"Unhealthy","imageVersion":"2.0.0"}`))
	})
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	p := newProber(time.Second)
	for _, tc := range []struct {
		name, url string
		ok        bool
		version   string
		err       string
	}{
		{"healthy", ok.URL + "/health", true, "1.2.3", ""},
		{"unhealthy", unhealthy.URL + "/health", false, "2.0.0", `health probe answered 503 Service Unavailable (status "Unhealthy")`},
		{"nothing listens", closedURL + "/health", false, "", "connection refused"},
		{"a name, not an address", strings.Replace(ok.URL, "127.0.0.1", "localhost", 1) + "/health", false, "", "must be an IP address and port"},
		{"https to a plain http server", strings.Replace(ok.URL, "http:", "https:", 1), false, "", "server gave HTTP response to HTTPS client"},
		{"another scheme", strings.Replace(ok.URL, "http:", "ftp:", 1), false, "", "only http://IP:PORT/PATH"},
	} {
		r := p.get(context.Background(), tc.url)
		if r.ok != tc.ok || r.version != tc.version || !strings.Contains(r.err, tc.err) || (tc.err == "") != (r.err == "") {
			t.Errorf("%s: %+v", tc.name, r)
		}
	}
}

// TestProbeDialerRefusesOtherAddresses: even a request the prober did not
// build cannot make its transport connect anywhere but the probed address.
func TestProbeDialerRefusesOtherAddresses(t *testing.T) {
	inst, _ := counting(t, healthy("1.0.0"))
	other, otherHits := counting(t, healthy("other"))
	_, addr, err := healthAddr(inst.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := newProber(time.Second)
	for _, ctx := range []context.Context{
		context.WithValue(context.Background(), probeAddrKey{}, addr), // another instance's address
		context.Background(), // no address at all
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, other.URL+"/health", nil)
		resp, err := p.client.Do(req)
		if err == nil {
			resp.Body.Close()
			t.Errorf("request to %s allowed", other.URL)
		} else if !strings.Contains(err.Error(), "refusing to connect") {
			t.Errorf("error %v", err)
		}
	}
	if n := otherHits.Load(); n != 0 {
		t.Errorf("the other server got %d requests", n)
	}
}
