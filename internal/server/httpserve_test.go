package server

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/api/arm"
)

// TestGuardHandlerPanic: a handler panic is an ARM 500 error, and the
// server goes on serving.
func TestGuardHandlerPanic(t *testing.T) {
	h := guardHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			var m map[string]int
			m["x"]++ // nil map: panics
		}
		w.WriteHeader(http.StatusNoContent)
	}), time.Second, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body arm.ErrorResponse
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInternalServerError || body.Error.Code != "InternalServerError" || resp.Header.Get("x-ms-error-code") != "InternalServerError" {
		t.Errorf("panic: %d %+v", resp.StatusCode, body)
	}
	if resp, err := http.Get(srv.URL + "/fine"); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Errorf("after a panic: %v %v", resp, err)
	}
}

// TestReadTimeout: a request body that does not arrive in time ends the
// connection, except for uploads; a body that arrived lifts the deadline.
func TestReadTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := guardHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return // the connection is gone
		}
		time.Sleep(2 * timeout) // a slow handler after its body: unaffected
		if r.Context().Err() != nil {
			t.Errorf("%s: request context ended after the body arrived", r.URL.Path)
		}
		w.WriteHeader(http.StatusNoContent)
	}), timeout, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	slowBody := func(path string) (closedAfter time.Duration) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		_, _ = io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part of it")
		_ = c.SetReadDeadline(time.Now().Add(5 * timeout))
		_, _ = io.Copy(io.Discard, c)
		return time.Since(start)
	}
	if d := slowBody("/subscriptions/s/resourcegroups/rg"); d >= 5*timeout {
		t.Errorf("a stalled body was not cut (connection open %v)", d)
	}
	if d := slowBody("/providers/vmssd.Admin/artifacts"); d < 5*timeout {
		t.Errorf("a stalled upload was cut after %v", d)
	}
	resp, err := http.Post(srv.URL+"/x", "application/json", strings.NewReader(`{}`))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Errorf("a complete body and a slow handler: %v %v", resp, err)
	}
}
