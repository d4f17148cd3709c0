package server

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"golang.org/x/net/netutil"

	"github.com/vmssd/vmssd/api/arm"
)

// Connection limits: defaults of the Config fields.
const (
	// DefaultMaxConnections caps the API listener's open connections.
	DefaultMaxConnections = 1000
	// DefaultHeaderTimeout bounds the TLS handshake and the request
	// headers: a connection that says nothing is closed after it.
	DefaultHeaderTimeout = 10 * time.Second
	// DefaultIdleTimeout closes keep-alive connections idle that long.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultReadTimeout bounds reading a whole request (headers and body),
	// except artifact uploads, which may be large.
	DefaultReadTimeout = 60 * time.Second
)

// limitListener caps ln at max open connections (max <= 0: no cap). The
// excess waits in the kernel's accept queue; the header and idle timeouts
// make room by closing connections that do nothing.
func limitListener(ln net.Listener, max int) net.Listener {
	if max <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, max)
}

// isUpload reports whether r sends an artifact (a body that may take long).
func isUpload(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	p := strings.ToLower(strings.TrimRight(r.URL.Path, "/"))
	return strings.HasSuffix(p, "/providers/vmssd.admin/artifacts") || strings.HasSuffix(p, "/providers/vmssd.storage/artifacts")
}

// guardHandler bounds the time to read a request that is not an upload and
// turns a handler panic into an ARM 500 error (logged with its stack)
// instead of a dropped connection.
func guardHandler(next http.Handler, readTimeout time.Duration, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if readTimeout > 0 && r.Body != nil && r.Body != http.NoBody && !isUpload(r) {
			// The body must arrive within readTimeout; once it has, the
			// deadline is lifted so that it cannot cancel a handler that
			// takes long after reading (net/http's background read would).
			// Errors only mean the connection cannot take deadlines.
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Now().Add(readTimeout))
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
		rw := &recordingWriter{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil || v == http.ErrAbortHandler {
				if v != nil {
					panic(v)
				}
				return
			}
			log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if rw.wrote {
				panic(http.ErrAbortHandler) // too late for an error body: drop the connection
			}
			h := w.Header()
			h.Set("Content-Type", "application/json; charset=utf-8")
			h.Set("x-ms-error-code", "InternalServerError")
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(arm.ErrorResponse{Error: arm.ErrorDetail{
				Code: "InternalServerError", Message: "The server encountered an internal error. Please retry the request.",
			}})
		}()
		next.ServeHTTP(rw, r)
	})
}

// deadlineBody lifts the read deadline when the body has been read.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// recordingWriter notes whether the response has started.
type recordingWriter struct {
	http.ResponseWriter
	wrote bool
}

func (w *recordingWriter) WriteHeader(code int) {
	w.wrote = true
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes flushes on (streamed responses).
func (w *recordingWriter) Flush() {
	w.wrote = true
	http.NewResponseController(w.ResponseWriter).Flush()
}
