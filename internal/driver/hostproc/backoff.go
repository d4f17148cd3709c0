package hostproc

import "time"

// Backoff spaces the restarts of a supervised process that keeps failing:
// the first restart waits Initial, each consecutive failure doubles the
// delay, up to Max. A process that ran for StableAfter or longer before it
// failed starts the count again.
type Backoff struct {
	Initial, Max, StableAfter time.Duration
}

// Next returns the delay before the next restart of a process that failed
// after running for uptime (0 for a failed start). failures is the count of
// consecutive failures so far, which Next updates: the caller keeps it per
// process and sets it to 0 when an operation starts the process afresh.
func (b Backoff) Next(failures *int, uptime time.Duration) time.Duration {
	if uptime >= b.StableAfter {
		*failures = 0
	}
	delay := b.Initial
	for i := 0; i < *failures && delay < b.Max; i++ {
		delay *= 2
	}
	*failures++
	return min(delay, b.Max)
}
