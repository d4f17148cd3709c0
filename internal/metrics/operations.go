package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vmssd/vmssd/api/arm"
	"github.com/vmssd/vmssd/internal/model"
	"github.com/vmssd/vmssd/internal/store"
)

// maxOpTypes bounds the type label of the operation metrics: kinds beyond
// it (none today: kinds are fixed strings in the API) are "other".
const maxOpTypes = 64

// opWatcher follows operation records in the store: when one turns from
// InProgress to a final status it observes its duration (end - start) by
// type (the operation's kind, e.g. "vmss.put") and result (Succeeded,
// Failed, Canceled). Operations that had completed before the watcher
// started are not observed; ones that complete while the watch is down are
// observed at the next re-list. It also counts operations in progress.
type opWatcher struct {
	st       store.Store
	log      *slog.Logger
	duration *prometheus.HistogramVec
	pendDesc *prometheus.Desc

	mu      sync.Mutex
	synced  bool
	pending map[string]string // id -> type label
	done    map[string]bool   // ids of completed operations seen
	types   map[string]bool   // type label values in use
}

func newOpWatcher(st store.Store, log *slog.Logger) *opWatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &opWatcher{
		st: st, log: log,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "operation", Name: "duration_seconds",
			Help:    "Time from acceptance to completion of long-running operations, by type (operation kind) and result (Succeeded, Failed, Canceled).",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600},
		}, []string{"type", "result"}),
		pendDesc: prometheus.NewDesc(Namespace+"_operations_in_progress",
			"Long-running operations accepted and not yet completed, by type.", []string{"type"}, nil),
		pending: map[string]string{}, done: map[string]bool{}, types: map[string]bool{},
	}
}

// Describe implements prometheus.Collector.
func (w *opWatcher) Describe(ch chan<- *prometheus.Desc) {
	w.duration.Describe(ch)
	ch <- w.pendDesc
}

// Collect implements prometheus.Collector.
func (w *opWatcher) Collect(ch chan<- prometheus.Metric) {
	w.duration.Collect(ch)
	w.mu.Lock()
	counts := make(map[string]int, len(w.types))
	for t := range w.types {
		counts[t] = 0
	}
	for _, t := range w.pending {
		counts[t]++
	}
	w.mu.Unlock()
	for t, n := range counts {
		ch <- prometheus.MustNewConstMetric(w.pendDesc, prometheus.GaugeValue, float64(n), t)
	}
}

// typeLabel bounds the type label. Call with w.mu held.
func (w *opWatcher) typeLabel(kind string) string {
	if kind == "" || len(kind) > 48 || strings.IndexFunc(kind, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		return "other"
	}
	if !w.types[kind] && len(w.types) >= maxOpTypes {
		return "other"
	}
	w.types[kind] = true
	return kind
}

func resultLabel(status string) string {
	switch status {
	case arm.StatusSucceeded, arm.StatusFailed, arm.StatusCanceled:
		return status
	}
	return "other"
}

// run lists and watches the operation records until ctx ends.
func (w *opWatcher) run(ctx context.Context) error {
	if w.st == nil {
		return nil
	}
	for ctx.Err() == nil {
		kvs, rev, err := w.st.List(ctx, model.PrefixOperations)
		if err == nil {
			w.resync(kvs)
			var ch <-chan store.Event
			if ch, err = w.st.Watch(ctx, model.PrefixOperations, rev+1); err == nil {
				for ev := range ch {
					w.apply(ev)
				}
				continue // cancelled (too slow) or ctx ended: re-list
			}
		}
		if ctx.Err() != nil || errors.Is(err, store.ErrClosed) {
			return nil
		}
		w.log.Warn("metrics: operation watch", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

// resync takes a full listing: completed operations not seen before are
// observed, except at the first listing (they ended before this process).
func (w *opWatcher) resync(kvs []store.KV) {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := make(map[string]bool, len(kvs))
	pending := make(map[string]string)
	for _, kv := range kvs {
		var op model.Operation
		if json.Unmarshal(kv.Value, &op) != nil {
			continue
		}
		id := strings.TrimPrefix(string(kv.Key), model.PrefixOperations)
		seen[id] = true
		if op.Status == arm.StatusInProgress {
			pending[id] = w.typeLabel(op.Kind)
			continue
		}
		if !w.done[id] {
			w.done[id] = true
			if w.synced {
				w.observe(&op)
			}
		}
	}
	for id := range w.done {
		if !seen[id] {
			delete(w.done, id)
		}
	}
	w.pending, w.synced = pending, true
}

func (w *opWatcher) apply(ev store.Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ev.Type == store.EventDelete {
		id := strings.TrimPrefix(string(ev.KV.Key), model.PrefixOperations)
		delete(w.done, id)
		delete(w.pending, id)
		return
	}
	var op model.Operation
	if json.Unmarshal(ev.KV.Value, &op) != nil {
		return
	}
	id := strings.TrimPrefix(string(ev.KV.Key), model.PrefixOperations)
	if op.Status == arm.StatusInProgress {
		w.pending[id] = w.typeLabel(op.Kind)
		return
	}
	delete(w.pending, id)
	if !w.done[id] {
		w.done[id] = true
		w.observe(&op)
	}
}

// observe records a completed operation. Call with w.mu held.
func (w *opWatcher) observe(op *model.Operation) {
	var d time.Duration
	if op.End != nil {
		d = max(op.End.Sub(op.Start), 0)
	}
	w.duration.WithLabelValues(w.typeLabel(op.Kind), resultLabel(op.Status)).Observe(d.Seconds())
}
