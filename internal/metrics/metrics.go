// Package metrics is vmssd's Prometheus instrumentation: one private
// registry per server (never the global default registry), the collectors
// that read the state store and the hosts' observations at scrape time
// (instances by power, health and provisioning state, rollouts), the
// controller's reconcile and queue latency hooks, operation durations
// (observed from the store's watch when an operation record completes),
// HTTP request counters labelled by route template (never raw paths), the
// Go runtime and process collectors, and the handler that serves the text
// exposition. Every label has a bounded set of values; docs/metrics.md
// lists the metrics.
package metrics

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vmssd/vmssd/internal/store"
)

// Namespace prefixes every vmssd metric.
const Namespace = "vmssd"

// DefaultMaxScaleSets bounds the scale sets the per-set collectors report
// in one scrape (the first ones in key order; the rest are counted in
// vmssd_metrics_scale_sets_omitted).
const DefaultMaxScaleSets = 2000

// Options configures the metrics of one server.
type Options struct {
	// Store is read at scrape time and watched for operation completions.
	Store store.Store
	// Logger receives collection and watch errors.
	Logger *slog.Logger
	// MaxScaleSets bounds the scale sets reported per scrape
	// (DefaultMaxScaleSets when 0).
	MaxScaleSets int
	// NoRuntime leaves out the Go runtime and process collectors.
	NoRuntime bool
}

// Metrics holds a server's registry and its instruments.
type Metrics struct {
	// Registry holds every collector below; it is not the default registry.
	Registry *prometheus.Registry

	opts Options
	log  *slog.Logger

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	reconcileDuration *prometheus.HistogramVec
	queueWait         prometheus.Histogram

	ops *opWatcher
}

// New builds the registry with the HTTP, controller, operation and runtime
// metrics. Call RegisterState once the controller exists, and Run to follow
// operation completions.
func New(opts Options) *Metrics {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.MaxScaleSets = cmp.Or(opts.MaxScaleSets, DefaultMaxScaleSets)
	m := &Metrics{Registry: prometheus.NewRegistry(), opts: opts, log: opts.Logger}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "http", Name: "requests_total",
		Help: "API requests served, by method, route template and status code.",
	}, []string{"method", "route", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time to serve an API request, by method and route template.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"method", "route"})
	m.reconcileDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "controller", Name: "reconcile_duration_seconds",
		Help:    "Time of one reconcile of a scale set (plan, persist, host actions, settle), by result (success or error).",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"result"})
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Subsystem: "controller", Name: "queue_wait_seconds",
		Help:    "Time a scale set waited in the controller's work queue before a worker took it.",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	m.ops = newOpWatcher(opts.Store, opts.Logger)
	m.Registry.MustRegister(m.httpRequests, m.httpDuration, m.reconcileDuration, m.queueWait, m.ops)
	if !opts.NoRuntime {
		m.Registry.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			collectors.NewBuildInfoCollector(),
		)
	}
	return m
}

// Handler serves the registry's exposition (text or, when asked for,
// OpenMetrics). It does no authentication: the API server puts it behind
// an operator token; the separate metrics listener is plain HTTP.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		ErrorLog:            slogPrintln{m.log},
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.Registry,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
}

// slogPrintln adapts slog to promhttp's Logger.
type slogPrintln struct{ log *slog.Logger }

func (l slogPrintln) Println(v ...any) {
	l.log.Warn("metrics collection", "err", fmt.Sprint(v...))
}

// QueueWait records how long a key waited in the controller's queue
// (controller.Metrics).
func (m *Metrics) QueueWait(d time.Duration) { m.queueWait.Observe(d.Seconds()) }

// Reconciled records one reconcile and whether it failed
// (controller.Metrics).
func (m *Metrics) Reconciled(d time.Duration, err error) {
	result := "success"
	if err != nil {
		result = "error"
	}
	m.reconcileDuration.WithLabelValues(result).Observe(d.Seconds())
}

// Run follows operation records until ctx ends, observing the duration of
// each one that completes.
func (m *Metrics) Run(ctx context.Context) error {
	return m.ops.run(ctx)
}
