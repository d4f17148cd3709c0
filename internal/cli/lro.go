package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// Polling pauses: the first poll comes quickly, later ones at most every
// maxPollDelay.
const (
	firstPollDelay = 250 * time.Millisecond
	maxPollDelay   = time.Second
	// plainRepeat is how often an unchanged status is repeated when stderr
	// is not a terminal.
	plainRepeat = 10 * time.Second
)

// await finishes a long-running operation: with --no-wait it returns at once
// (done false); otherwise it polls until the operation ends, showing
// progress on stderr, and returns the result.
func await[T any](ctx context.Context, r *rootOptions, p *runtime.Poller[T]) (res T, done bool, err error) {
	if r.noWait {
		return res, false, nil
	}
	prog := newProgress(r.streams.ErrOut)
	defer prog.finish()
	delay := firstPollDelay
	for !p.Done() {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return res, false, ctx.Err()
		case <-t.C:
		}
		delay = min(delay+firstPollDelay, maxPollDelay)
		resp, err := p.Poll(ctx)
		if err != nil {
			return res, false, err
		}
		prog.update(pollStatus(resp))
	}
	res, err = p.Result(ctx)
	return res, err == nil, err
}

// pollStatus extracts the status of a polling response: the operation
// status resource's "status", a resource's provisioningState, or
// InProgress for a bare 202.
func pollStatus(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	var body struct {
		Status     string `json:"status"`
		Properties struct {
			ProvisioningState string `json:"provisioningState"`
		} `json:"properties"`
	}
	if b, err := runtime.Payload(resp); err == nil && len(b) > 0 {
		_ = json.Unmarshal(b, &body)
	}
	switch {
	case body.Status != "":
		return body.Status
	case body.Properties.ProvisioningState != "":
		return body.Properties.ProvisioningState
	case resp.StatusCode == http.StatusAccepted:
		return "InProgress"
	}
	return http.StatusText(resp.StatusCode)
}

// progress shows "Running .. (3s) InProgress" on stderr: one refreshed line
// on a terminal, plain lines (on change, or every plainRepeat) otherwise.
type progress struct {
	w         io.Writer
	tty       bool
	start     time.Time
	last      string
	lastPrint time.Time
	shown     bool
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTerminal(w), start: time.Now()}
}

func (p *progress) update(status string) {
	if status == "" {
		status = "Running"
	}
	line := fmt.Sprintf("Running .. (%ds) %s", int(time.Since(p.start).Seconds()), status)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.shown = true
		return
	}
	if status == p.last && time.Since(p.lastPrint) < plainRepeat {
		return
	}
	p.last, p.lastPrint = status, time.Now()
	fmt.Fprintln(p.w, line)
}

// finish clears the refreshed line.
func (p *progress) finish() {
	if p.tty && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// isTerminal reports whether w is a character device.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
