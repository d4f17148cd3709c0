package metrics

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMiddlewareLabels: requests are counted by bounded method, the route
// template the router set (never the raw path) and the status code.
func TestMiddlewareLabels(t *testing.T) {
	m := New(Options{NoRuntime: true})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/subscriptions/"):
			SetRoute(r.Context(), "/subscriptions/{sub}")
			w.WriteHeader(http.StatusNotFound)
		case r.URL.Path == "/ok":
			SetRoute(r.Context(), "/ok")
			_, _ = w.Write([]byte("fine")) // implicit 200
		default:
			http.Error(w, "no", http.StatusTeapot)
		}
	}))
	for _, req := range []struct{ method, path string }{
		{http.MethodGet, "/subscriptions/a"},
		{http.MethodGet, "/subscriptions/b"},
		{http.MethodGet, "/ok"},
		{"BREW", "/ok"},
		{http.MethodPut, "/some/raw/path/with-id-123"},
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(req.method, req.path, nil))
	}
	for _, c := range []struct {
		method, route, code string
		want                float64
	}{
		{"GET", "/subscriptions/{sub}", "404", 2},
		{"GET", "/ok", "200", 1},
		{"other", "/ok", "200", 1},
		{"PUT", RouteUnmatched, "418", 1},
	} {
		if got := testutil.ToFloat64(m.httpRequests.WithLabelValues(c.method, c.route, c.code)); got != c.want {
			t.Errorf("requests{%s,%s,%s} = %v, want %v", c.method, c.route, c.code, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.httpRequests); n != 4 {
		t.Errorf("%d request series, want 4 (no raw paths)", n)
	}
	if n := testutil.CollectAndCount(m.httpDuration); n != 4 {
		t.Errorf("%d duration series, want 4", n)
	}
}

// TestMiddlewarePanic: a panicking handler that wrote nothing counts as a
// 500 and the panic goes on to the server.
func TestMiddlewarePanic(t *testing.T) {
	m := New(Options{NoRuntime: true})
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetRoute(r.Context(), "/boom")
		panic("boom")
	}))
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want the handler's panic", v)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/boom", nil))
	}()
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("GET", "/boom", "500")); got != 1 {
		t.Errorf("requests{GET,/boom,500} = %v, want 1", got)
	}
}

// TestStatusWriterUnwraps: http.ResponseController reaches the real
// writer through the middleware (flushes of streamed responses).
func TestStatusWriterUnwraps(t *testing.T) {
	m := New(Options{NoRuntime: true})
	rec := httptest.NewRecorder()
	m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
	})).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if !rec.Flushed {
		t.Error("the recorder was not flushed")
	}
}
