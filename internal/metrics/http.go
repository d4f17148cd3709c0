package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// Route labels that are not route templates.
const (
	// RouteUnmatched labels requests no route matched (404s of unknown
	// paths): raw paths are never labels.
	RouteUnmatched = "unmatched"
	// RouteMetrics labels scrapes of /metrics on the API listener.
	RouteMetrics = "/metrics"
	// RouteAuth labels the OIDC discovery and token endpoints.
	RouteAuth = "auth"
)

type routeKey struct{}

// routeHolder is where the router writes the matched route template.
type routeHolder struct{ route string }

// SetRoute records the route template (e.g.
// "/subscriptions/{sub}/resourceGroups/{rg}") that serves the request of
// ctx, for the HTTP metrics. The router calls it; outside Middleware it
// does nothing.
func SetRoute(ctx context.Context, route string) {
	if h, ok := ctx.Value(routeKey{}).(*routeHolder); ok {
		h.route = route
	}
}

// methods are the method label's values; anything else is "other".
var methods = map[string]string{
	http.MethodGet: http.MethodGet, http.MethodHead: http.MethodHead, http.MethodPost: http.MethodPost,
	http.MethodPut: http.MethodPut, http.MethodPatch: http.MethodPatch, http.MethodDelete: http.MethodDelete,
	http.MethodOptions: http.MethodOptions,
}

// methodLabel bounds the method label.
func methodLabel(m string) string {
	if v, ok := methods[m]; ok {
		return v
	}
	return "other"
}

// codeLabel bounds the code label to real status codes.
func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// Middleware counts and times the requests next serves, labelled by
// method, the route template the router reported with SetRoute
// (RouteUnmatched when none) and the status code. A handler that panics
// is counted as a 500 unless it had already answered.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := &routeHolder{route: RouteUnmatched}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			code := sw.code
			if code == 0 {
				code = http.StatusOK
				if v := recover(); v != nil {
					code = http.StatusInternalServerError
					defer panic(v) // counted, then passed on
				}
			}
			method := methodLabel(r.Method)
			m.httpRequests.WithLabelValues(method, h.route, codeLabel(code)).Inc()
			m.httpDuration.WithLabelValues(method, h.route).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), routeKey{}, h)))
	})
}

// statusWriter remembers the status code of the response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (read
// deadlines, flushes).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes flushes on.
func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}
