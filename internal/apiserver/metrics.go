package apiserver

import (
	"net/http"

	"github.com/vmssd/vmssd/internal/errs"
	"github.com/vmssd/vmssd/internal/metrics"
)

// serveMetrics serves Options.Metrics at /metrics to operators only. As
// for the admin APIs, the path does not exist for a tenant (404), and a
// request without a valid token is 401. Prometheus sends no api-version,
// so none is asked for.
func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) {
	metrics.SetRoute(r.Context(), metrics.RouteMetrics)
	c, err := s.authenticate(r)
	if err == nil && !c.IsOperator() {
		err = errs.New(errs.NotFound, "NotFound", "The requested resource does not exist.")
	}
	if err == nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		err = errs.New(errs.MethodNotAllowed, "MethodNotAllowed", "The requested method %s is not allowed for this resource.", r.Method)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.opts.Metrics.ServeHTTP(w, r)
}
