package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startQEMU starts a machine-less QEMU with a QMP socket and returns the
// socket's path and a channel closed once QEMU has exited (it is killed at
// the end of the test). It skips the test when QEMU is not installed,
// unless VMSSD_E2E=1.
func startQEMU(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1 but QEMU is missing: %v", err)
		}
		t.Skipf("qemu-system-x86_64 not installed: %v", err)
	}
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qmp.sock")
	cmd := exec.Command(bin, "-machine", "none", "-nodefaults", "-nographic", "-no-user-config",
		"-monitor", "none", "-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(waited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-waited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			return sock, waited
		}
		if time.Now().After(deadline) {
			t.Fatal("QMP socket did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dial connects to sock, retrying while QEMU has created the socket but
// does not listen yet.
func dial(t *testing.T, sock string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		c, err := Dial(ctx, sock)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if ctx.Err() != nil {
			t.Fatalf("Dial: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type status struct {
	Status  string `json:"status"`
	Running bool   `json:"running"`
}

func TestQueryStatusAndVersion(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	if g := c.Greeting(); g.Version.QEMU.Major == 0 {
		t.Errorf("greeting without a version: %+v", g)
	}
	var st status
	if err := c.Execute(t.Context(), "query-status", nil, &st); err != nil {
		t.Fatalf("query-status: %v", err)
	}
	if st.Status != "running" || !st.Running {
		t.Errorf("query-status = %+v, want running", st)
	}
	var v Version
	if err := c.Execute(t.Context(), "query-version", nil, &v); err != nil {
		t.Fatalf("query-version: %v", err)
	}
	if v.String() != c.Greeting().Version.String() {
		t.Errorf("query-version %s, greeting says %s", v, c.Greeting().Version)
	}
	// Arguments are passed.
	var hm string
	err := c.Execute(t.Context(), "human-monitor-command", map[string]string{"command-line": "info version"}, &hm)
	if err != nil || !strings.Contains(hm, v.String()) {
		t.Errorf("human-monitor-command info version = %q, %v", hm, err)
	}
}

func TestErrors(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	err := c.Execute(t.Context(), "no-such-command", nil, nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "no-such-command" || qe.Desc == "" {
		t.Fatalf("unknown command: %v (%#v), want a CommandNotFound *Error", err, qe)
	}
	err = c.Execute(t.Context(), "query-status", map[string]int{"bogus": 1}, nil)
	if !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Errorf("bad argument: %v, want a GenericError", err)
	}
	// The connection is still usable.
	if err := c.Execute(t.Context(), "query-status", nil, nil); err != nil {
		t.Errorf("query-status after errors: %v", err)
	}
	// Arguments that do not encode.
	if err := c.Execute(t.Context(), "query-status", map[string]any{"f": func() {}}, nil); err == nil {
		t.Error("unencodable arguments: no error")
	}
}

func TestEventsBetweenReplies(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	ctx := t.Context()
	if err := c.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatalf("stop: %v", err)
	}
	var st status
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil || st.Running || st.Status != "paused" {
		t.Errorf("after stop: %+v %v, want paused", st, err)
	}
	if err := c.Execute(ctx, "cont", nil, nil); err != nil {
		t.Fatalf("cont: %v", err)
	}
	for _, want := range []string{"STOP", "RESUME"} {
		select {
		case ev := <-c.Events():
			if ev.Event != want {
				t.Errorf("event %q, want %q", ev.Event, want)
			}
			if ev.Timestamp.IsZero() || time.Since(ev.Timestamp) > time.Minute {
				t.Errorf("event %s timestamp %v", ev.Event, ev.Timestamp)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
}

func TestConcurrentExecute(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 8 {
		wg.Go(func() {
			for range 25 {
				var err error
				if i%2 == 0 {
					var st status
					err = c.Execute(t.Context(), "query-status", nil, &st)
					if err == nil && st.Status == "" {
						err = errors.New("query-status reply decoded into nothing")
					}
				} else {
					var v Version
					err = c.Execute(t.Context(), "query-version", nil, &v)
					if err == nil && v.QEMU.Major == 0 {
						err = errors.New("query-version reply decoded into nothing")
					}
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	// Events interleave with replies.
	wg.Go(func() {
		for range 10 {
			if err := c.Execute(t.Context(), "stop", nil, nil); err != nil {
				errs <- err
			}
			if err := c.Execute(t.Context(), "cont", nil, nil); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestQuit(t *testing.T) {
	sock, exited := startQEMU(t)
	c := dial(t, sock)
	if err := c.Execute(t.Context(), "quit", nil, nil); err != nil {
		t.Fatalf("quit: %v", err)
	}
	var shutdown *Event
	for ev := range c.Events() { // closed when QEMU closes the socket
		if ev.Event == "SHUTDOWN" {
			shutdown = &ev
		}
	}
	if shutdown == nil {
		t.Fatal("no SHUTDOWN event before the socket closed")
	}
	var data struct {
		Guest  bool   `json:"guest"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(shutdown.Data, &data); err != nil || data.Reason != "host-qmp-quit" || data.Guest {
		t.Errorf("SHUTDOWN data %s (%v), want reason host-qmp-quit", shutdown.Data, err)
	}
	<-c.Done()
	if err := c.Err(); !errors.Is(err, io.EOF) {
		t.Errorf("Err after QEMU quit = %v, want EOF", err)
	}
	if err := c.Execute(t.Context(), "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Execute after quit: %v, want ErrClosed", err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Error("QEMU did not exit after quit")
	}
}

func TestContextAndClose(t *testing.T) {
	sock, _ := startQEMU(t)
	c := dial(t, sock)

	// A cancelled context fails at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Execute with a cancelled context: %v", err)
	}

	// QEMU serves one client at a time: a second client waits for the
	// greeting until its deadline.
	ctx, cancel = context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := Dial(ctx, sock); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Dial: %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("second Dial took %s, the deadline was 300ms", d)
	}

	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Execute(t.Context(), "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Execute after Close: %v, want ErrClosed", err)
	}
	if _, ok := <-c.Events(); ok {
		t.Error("Events not closed after Close")
	}
	// Once the first client is gone, a new one is served.
	c2 := dial(t, sock)
	if err := c2.Execute(t.Context(), "query-status", nil, nil); err != nil {
		t.Errorf("query-status on a new client: %v", err)
	}
}

// TestReplyTimeout checks that ctx bounds the wait for a reply, with a fake
// server that never answers commands.
func TestReplyTimeout(t *testing.T) {
	srv, cli := net.Pipe()
	defer srv.Close()
	go func() {
		io.WriteString(srv, `{"QMP": {"version": {"qemu": {"major": 9, "minor": 0, "micro": 1}, "package": ""}, "capabilities": []}}`+"\r\n")
		dec := json.NewDecoder(srv)
		var req map[string]any
		if dec.Decode(&req) != nil {
			return
		}
		// An event, then the reply to qmp_capabilities (ids are numbers),
		// then a reply nobody asked for; ignore everything after.
		io.WriteString(srv, `{"event": "RESUME", "timestamp": {"seconds": 1, "microseconds": 2}}`+"\r\n")
		b, _ := json.Marshal(map[string]any{"return": map[string]any{}, "id": req["id"]})
		srv.Write(append(b, '\n'))
		io.WriteString(srv, `{"return": {}, "id": "someone-else"}`+"\n")
		for dec.Decode(&req) == nil {
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	c, err := NewClient(ctx, cli)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	defer c.Close()
	if c.Greeting().Version.String() != "9.0.1" {
		t.Errorf("greeting version %s", c.Greeting().Version)
	}
	ev := <-c.Events()
	if ev.Event != "RESUME" || !ev.Timestamp.Equal(time.Unix(1, 2000)) {
		t.Errorf("event %+v", ev)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Execute without a reply: %v, want DeadlineExceeded", err)
	}
}

// TestNotQMP checks that a server that does not greet is refused.
func TestNotQMP(t *testing.T) {
	srv, cli := net.Pipe()
	defer srv.Close()
	go io.WriteString(srv, `{"hello": 1}`+"\n")
	if _, err := NewClient(t.Context(), cli); err == nil {
		t.Error("NewClient accepted a server without a greeting")
	}
}
