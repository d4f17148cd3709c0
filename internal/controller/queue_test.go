package controller

import (
	"testing"
	"time"
)

func TestQueueDedupesAndSerializesKeys(t *testing.T) {
	q := newQueue(time.Millisecond, time.Second)
	defer q.Close()
	q.Add("a")
	q.Add("a")
	q.Add("b")
	k1, _ := q.Get()
	k2, _ := q.Get()
	if k1 != "a" || k2 != "b" {
		t.Fatalf("got %q %q, want a then b once each", k1, k2)
	}
	// Re-adding an active key defers it until Done.
	q.Add("a")
	got := make(chan string, 1)
	go func() { k, _ := q.Get(); got <- k }()
	select {
	case k := <-got:
		t.Fatalf("%q handed out while still active", k)
	case <-time.After(50 * time.Millisecond):
	}
	q.Done("a")
	if k := <-got; k != "a" {
		t.Fatalf("got %q after Done, want a", k)
	}
	q.Done("b")
}

func TestQueueAddAfterKeepsEarliest(t *testing.T) {
	q := newQueue(time.Millisecond, time.Second)
	defer q.Close()
	start := time.Now()
	q.AddAfter("k", 30*time.Millisecond)
	q.AddAfter("k", 10*time.Second) // later: must not push the wake-up back
	k, ok := q.Get()
	if !ok || k != "k" {
		t.Fatalf("got %q %v", k, ok)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("woke after %v: the later AddAfter replaced the earlier one", d)
	}
}

func TestQueueRetryBacksOff(t *testing.T) {
	q := newQueue(10*time.Millisecond, 40*time.Millisecond)
	defer q.Close()
	var got []time.Duration
	for range 4 {
		got = append(got, q.Retry("k"))
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("backoff %v, want %v", got, want)
		}
	}
	q.Forget("k")
	if d := q.Retry("k"); d != 10*time.Millisecond {
		t.Fatalf("after Forget: %v", d)
	}
}

func TestQueueCloseWakesGet(t *testing.T) {
	q := newQueue(time.Millisecond, time.Second)
	done := make(chan bool)
	go func() { _, ok := q.Get(); done <- ok }()
	time.Sleep(10 * time.Millisecond)
	q.Close()
	if ok := <-done; ok {
		t.Fatal("Get returned a key after Close")
	}
}
