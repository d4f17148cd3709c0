// Package watchhub fans store events out to watchers. It is shared by the
// in-process backends (memstore, boltstore): the backend publishes the events
// of every committed revision, in revision order, and the hub gives each
// watcher its own queue and goroutine so that a slow watcher never blocks a
// writer. A watcher whose queue grows past a bound is cancelled (its channel
// is closed) and must re-list and re-watch.
package watchhub

import (
	"bytes"
	"context"
	"fmt"
	"sync"

	"github.com/vmssd/vmssd/internal/store"
)

// DefaultMaxPending is the default bound on undelivered events per watcher.
const DefaultMaxPending = 10000

// ReplayFunc reads past events for a watcher that starts at an old revision.
// It returns, in revision order, the events of every revision in [from, next),
// where from < next <= to+1, so that the hub can read a long history in
// chunks. It wraps store.ErrCompacted when from is no longer replayable and
// store.ErrClosed when the store is closed. The hub calls it from a watcher
// goroutine without holding any hub lock.
type ReplayFunc func(from, to int64) (events []store.Event, next int64, err error)

// Hub is a set of watchers. Its zero value is not usable; use New.
type Hub struct {
	maxPending int

	mu       sync.Mutex
	watchers map[*watcher]struct{}
	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
}

// New returns a hub that cancels a watcher once more than maxPending events
// are queued for it (maxPending <= 0 means DefaultMaxPending).
func New(maxPending int) *Hub {
	if maxPending <= 0 {
		maxPending = DefaultMaxPending
	}
	return &Hub{
		maxPending: maxPending,
		watchers:   make(map[*watcher]struct{}),
		done:       make(chan struct{}),
	}
}

type watcher struct {
	prefix []byte
	minRev int64 // live events below this revision are not delivered
	out    chan store.Event

	mu      sync.Mutex
	queue   []store.Event
	head    int
	notify  chan struct{} // capacity 1: "queue is not empty"
	cancel  chan struct{} // closed when the watcher overflows
	stopped bool
}

// Watch registers a watcher for keys with prefix. curRev is the store
// revision at the time of the call: events up to curRev are read through
// replay (only when 0 < fromRev <= curRev), later ones arrive through
// Publish. The caller must make sure no Publish runs concurrently with
// Watch (typically by holding the lock that serializes its writers), so that
// no revision is missed or delivered twice. The returned channel is closed
// when ctx ends, the hub closes, the watcher overflows or replay fails.
func (h *Hub) Watch(ctx context.Context, prefix []byte, fromRev, curRev int64, replay ReplayFunc) (<-chan store.Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("watch: %w", store.ErrClosed)
	}
	w := &watcher{
		prefix: bytes.Clone(prefix),
		minRev: max(fromRev, curRev+1),
		out:    make(chan store.Event),
		notify: make(chan struct{}, 1),
		cancel: make(chan struct{}),
	}
	if w.prefix == nil {
		w.prefix = []byte{}
	}
	h.watchers[w] = struct{}{}
	replayFrom, replayTo := fromRev, curRev
	if fromRev <= 0 || replay == nil {
		replayFrom, replayTo = 1, 0 // nothing to replay
	}
	h.wg.Add(1)
	go h.run(ctx, w, replayFrom, replayTo, replay)
	return w.out, nil
}

// Publish queues the events of one or more committed revisions for every
// matching watcher. Calls must be made in revision order, and never
// concurrently with Watch. Publish never blocks on a watcher: a watcher
// whose queue exceeds the bound is cancelled.
func (h *Hub) Publish(events []store.Event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for w := range h.watchers {
		n := 0
		w.mu.Lock()
		if w.stopped {
			w.mu.Unlock()
			continue
		}
		for _, ev := range events {
			if ev.KV.ModRevision < w.minRev || !bytes.HasPrefix(ev.KV.Key, w.prefix) {
				continue
			}
			w.queue = append(w.queue, ev)
			n++
		}
		overflow := len(w.queue)-w.head > h.maxPending
		if overflow {
			w.stopped = true
			w.queue, w.head = nil, 0
			close(w.cancel)
		}
		w.mu.Unlock()
		if overflow {
			delete(h.watchers, w)
			continue
		}
		if n > 0 {
			select {
			case w.notify <- struct{}{}:
			default:
			}
		}
	}
}

// Close closes every watcher channel and waits for the watcher goroutines
// to end. Later calls to Watch fail with store.ErrClosed; later calls to
// Publish do nothing. Close must not be called while holding a lock that a
// ReplayFunc takes.
func (h *Hub) Close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
	h.mu.Unlock()
	h.wg.Wait()
}

// run is the goroutine that owns one watcher: it replays history, then
// delivers queued live events, until ctx ends, the hub closes or the watcher
// is cancelled.
func (h *Hub) run(ctx context.Context, w *watcher, from, to int64, replay ReplayFunc) {
	defer h.wg.Done()
	defer close(w.out)
	defer h.remove(w)

	for from <= to {
		events, next, err := replay(from, to)
		if err != nil || next <= from {
			return // compacted or closed meanwhile: the caller re-lists
		}
		for _, ev := range events {
			if ev.KV.ModRevision < from || ev.KV.ModRevision > to || !bytes.HasPrefix(ev.KV.Key, w.prefix) {
				continue
			}
			if !h.send(ctx, w, ev) {
				return
			}
		}
		from = next
	}

	for {
		ev, ok := w.pop()
		if ok {
			if !h.send(ctx, w, ev) {
				return
			}
			continue
		}
		select {
		case <-w.notify:
		case <-w.cancel:
			return
		case <-ctx.Done():
			return
		case <-h.done:
			return
		}
	}
}

func (w *watcher) pop() (store.Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.head == len(w.queue) {
		return store.Event{}, false
	}
	ev := w.queue[w.head]
	w.queue[w.head] = store.Event{}
	w.head++
	if w.head == len(w.queue) {
		w.queue, w.head = w.queue[:0], 0
	} else if w.head > 1024 && w.head*2 > len(w.queue) {
		n := copy(w.queue, w.queue[w.head:])
		clear(w.queue[n:])
		w.queue, w.head = w.queue[:n], 0
	}
	return ev, true
}

// send delivers a private copy of ev: events are shared between watchers and
// with the backend's history, and callers own what they receive.
func (h *Hub) send(ctx context.Context, w *watcher, ev store.Event) bool {
	ev.KV.Key = bytes.Clone(ev.KV.Key)
	if ev.Type == store.EventDelete {
		ev.KV.Value = nil
	} else {
		ev.KV.Value = cloneValue(ev.KV.Value)
	}
	select {
	case w.out <- ev:
		return true
	case <-w.cancel:
	case <-ctx.Done():
	case <-h.done:
	}
	return false
}

func (h *Hub) remove(w *watcher) {
	h.mu.Lock()
	delete(h.watchers, w)
	h.mu.Unlock()
	w.mu.Lock()
	w.stopped = true
	w.queue, w.head = nil, 0
	w.mu.Unlock()
}

// cloneValue copies v, returning a non-nil slice even for an empty value.
func cloneValue(v []byte) []byte {
	return append(make([]byte, 0, len(v)), v...)
}
