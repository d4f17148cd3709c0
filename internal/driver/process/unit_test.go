package process

import (
	"testing"
	"time"
)

func TestNextBackoff(t *testing.T) {
	o := Options{RestartBackoff: 100 * time.Millisecond, MaxRestartBackoff: time.Second}
	in := &instance{}
	var got []time.Duration
	for range 6 {
		got = append(got, in.NextBackoff(backoffOf(o), time.Second))
	}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoffs = %v, want %v ms", got, want)
		}
	}
	if d := in.NextBackoff(backoffOf(o), stableAfter); d != o.RestartBackoff {
		t.Errorf("after a stable run: %s, want %s", d, o.RestartBackoff)
	}
}
