package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// serveMetrics starts the plain-HTTP metrics listener when
// Config.MetricsAddr is set: /metrics only, no authentication (bind it to
// loopback or a monitoring network).
func (s *Server) serveMetrics() error {
	if s.cfg.MetricsAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("server: metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.Metrics.Handler())
	s.metSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: DefaultIdleTimeout}
	s.MetricsURL = "http://" + ln.Addr().String() + "/metrics"
	s.wg.Go(func() {
		if err := s.metSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.fail(err)
		}
	})
	s.cfg.Logger.Info("metrics listening (plain HTTP, no authentication)", "url", s.MetricsURL)
	return nil
}
