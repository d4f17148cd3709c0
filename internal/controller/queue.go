package controller

import (
	"sync"
	"time"
)

// queue is a work queue keyed by scale set: a key is queued at most once,
// handed to at most one worker at a time, retried with exponential backoff
// after failures, and can be scheduled for later.
type queue struct {
	mu       sync.Mutex
	cond     *sync.Cond
	items    []string
	queued   map[string]bool
	active   map[string]bool
	dirty    map[string]bool // re-added while active
	failures map[string]int
	timers   map[string]delayed
	closed   bool
	base     time.Duration
	max      time.Duration

	// since is when each queued key was queued; waited, if set, is told
	// how long a key waited when a worker takes it (queue latency).
	since  map[string]time.Time
	waited func(time.Duration)
}

func newQueue(base, max time.Duration) *queue {
	q := &queue{
		queued: map[string]bool{}, active: map[string]bool{}, dirty: map[string]bool{},
		failures: map[string]int{}, timers: map[string]delayed{}, base: base, max: max,
		since: map[string]time.Time{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key now.
func (q *queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *queue) addLocked(key string) {
	if q.closed {
		return
	}
	if q.active[key] {
		q.dirty[key] = true
		return
	}
	if q.queued[key] {
		return
	}
	q.queued[key] = true
	q.since[key] = time.Now()
	q.items = append(q.items, key)
	q.cond.Signal()
}

// AddAfter queues key after d (the earliest pending time wins).
func (q *queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	at := time.Now().Add(d)
	if t, ok := q.timers[key]; ok {
		if !at.Before(t.at) {
			return // an earlier wake-up is already scheduled
		}
		t.timer.Stop()
	}
	q.timers[key] = delayed{at: at, timer: time.AfterFunc(d, func() {
		q.mu.Lock()
		delete(q.timers, key)
		q.addLocked(key)
		q.mu.Unlock()
	})}
}

// delayed is a scheduled wake-up of a key.
type delayed struct {
	at    time.Time
	timer *time.Timer
}

// Retry queues key after a backoff that doubles with each consecutive
// failure.
func (q *queue) Retry(key string) time.Duration {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	d := q.base << min(n, 16)
	if d > q.max || d <= 0 {
		d = q.max
	}
	q.AddAfter(key, d)
	return d
}

// Forget resets key's failure count.
func (q *queue) Forget(key string) {
	q.mu.Lock()
	delete(q.failures, key)
	q.mu.Unlock()
}

// Get blocks until a key is available or the queue is closed.
func (q *queue) Get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	key := q.items[0]
	q.items = q.items[1:]
	delete(q.queued, key)
	q.active[key] = true
	if t, ok := q.since[key]; ok {
		delete(q.since, key)
		if q.waited != nil {
			q.waited(time.Since(t))
		}
	}
	return key, true
}

// Done marks key finished; if it was re-added meanwhile it is queued again.
func (q *queue) Done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.active, key)
	if q.dirty[key] {
		delete(q.dirty, key)
		q.addLocked(key)
	}
}

// Len is the number of keys waiting for a worker.
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Close wakes every waiter; Get returns false from then on.
func (q *queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, t := range q.timers {
		t.timer.Stop()
	}
	q.cond.Broadcast()
}
