package controller

import (
	"testing"
	"time"
)

// TestQueueReportsWaitAndLen: a key's wait is measured from when it was
// queued (not when AddAfter scheduled it) to when a worker takes it, once
// per hand-out; Len counts the keys waiting.
func TestQueueReportsWaitAndLen(t *testing.T) {
	q := newQueue(time.Millisecond, time.Second)
	defer q.Close()
	var waits []time.Duration
	q.waited = func(d time.Duration) { waits = append(waits, d) }

	q.Add("a")
	q.Add("a")
	q.Add("b")
	if n := q.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	time.Sleep(30 * time.Millisecond)
	k, _ := q.Get()
	if k != "a" || len(waits) != 1 || waits[0] < 30*time.Millisecond {
		t.Fatalf("after Get: key %q, waits %v; want a with one wait of at least 30ms", k, waits)
	}
	if n := q.Len(); n != 1 {
		t.Fatalf("Len = %d, want 1", n)
	}
	q.Done("a")
	q.Get()
	q.Done("b")

	q.AddAfter("c", 50*time.Millisecond)
	if n := q.Len(); n != 0 {
		t.Fatalf("Len = %d with only a delayed key, want 0", n)
	}
	q.Get()
	if len(waits) != 3 || waits[2] >= 40*time.Millisecond {
		t.Fatalf("waits %v: a delayed key's wait must start when it is queued, not scheduled", waits)
	}
}
