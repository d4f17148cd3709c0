package security

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/vmssd/vmssd/internal/testenv"
)

// TestConcurrentUnconditionalWrites (S3): clients that send no If-Match
// and race on one scale set (PUT-merge and PATCH of tags, as az vmss
// update does) never get 412 PreconditionFailed — they set no precondition
// (RFC 9110 §13.1) — nor a 5xx; a write the server cannot serialise is a
// 409 Conflict (arm-api.md §6), and at least one write wins.
func TestConcurrentUnconditionalWrites(t *testing.T) {

	e := start(t, testenv.Options{Store: "memory"})
	e.CreateRG("rg1")
	set := e.VMSSPath("rg1", "web")
	waitOp(t, e, send(t, e, e.Token, call{method: http.MethodPut, path: set, body: testenv.VMSSBody(0, "latest", "Manual")}))
	deleteAtEnd(t, e, e.Token, set)

	const writers = 16
	var wg sync.WaitGroup
	results := make([]*testenv.Response, writers)
	for i := range writers {
		wg.Go(func() {
			c := call{method: http.MethodPatch, path: set, body: map[string]any{"tags": map[string]string{"writer": fmt.Sprint(i)}}}
			if i%2 == 1 {
				c = call{method: http.MethodPut, path: set, body: map[string]any{"location": "local", "tags": map[string]string{"writer": fmt.Sprint(i)}}}
			}
			results[i] = send(t, e, e.Token, c)
		})
	}
	wg.Wait()
	ok := 0
	for i, r := range results {
		switch {
		case r.Status == http.StatusOK:
			ok++
		case r.Status == http.StatusConflict:
			if _, err := wellFormedError(r); err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		default:
			t.Errorf("writer %d (no If-Match): %d %s, want 200 or 409", i, r.Status, r.Body)
		}
	}
	if ok == 0 {
		t.Errorf("no concurrent write succeeded")
	}
}
