package dashboard

import (
	"sync"
	"time"
)

// Entry is one action in the activity log.
type Entry struct {
	ID      int64
	Time    time.Time
	Who     string
	Sub     string
	Action  string
	Target  string
	OK      bool
	Code    string
	Message string
	// Status is the line the page shows after the action.
	Status string
}

// activity is a bounded in-memory log, newest last.
type activity struct {
	mu      sync.Mutex
	entries []Entry
	max     int
	seq     int64
}

// add records e and returns its id.
func (a *activity) add(e Entry) int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seq++
	e.ID = a.seq
	a.entries = append(a.entries, e)
	if n := len(a.entries) - a.max; n > 0 {
		a.entries = append([]Entry(nil), a.entries[n:]...)
	}
	return e.ID
}

// status returns the status line of entry id if who made it.
func (a *activity) status(id int64, who string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.entries) - 1; i >= 0; i-- {
		if e := a.entries[i]; e.ID == id {
			if e.Who == who {
				return e.Status
			}
			return ""
		}
	}
	return ""
}

// list returns the entries keep accepts, newest first.
func (a *activity) list(keep func(Entry) bool) []Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Entry
	for i := len(a.entries) - 1; i >= 0; i-- {
		if keep(a.entries[i]) {
			out = append(out, a.entries[i])
		}
	}
	return out
}

// timeline keeps, per scale set, samples of instances by image version.
type timeline struct {
	mu  sync.Mutex
	set map[string][]Sample
}

// Sample is the count of instances by version at a time.
type Sample struct {
	T      time.Time
	Counts map[string]int
}

func (tl *timeline) add(key string, now time.Time, counts map[string]int) []Sample {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.set == nil {
		tl.set = map[string][]Sample{}
	}
	s := tl.set[key]
	if n := len(s); n == 0 || !sameCounts(s[n-1].Counts, counts) {
		s = append(s, Sample{T: now, Counts: counts})
		if len(s) > 500 {
			s = s[len(s)-500:]
		}
		tl.set[key] = s
	}
	return append([]Sample(nil), s...)
}

func sameCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
