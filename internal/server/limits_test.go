package server_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/store"
	"github.com/vmssd/vmssd/internal/testenv"
)

func startServer(t *testing.T, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.NoDemoImages, cfg.VMs, cfg.GuestBinary = true, "off", os.Args[0]
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := server.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestIdleConnectionsAreCut: connections that never send a request (or
// send their headers too slowly) are closed after the header timeout, and
// with more of them than the connection cap the API still answers.
func TestIdleConnectionsAreCut(t *testing.T) {
	const (
		idle    = 300
		maxConn = 50
		timeout = 300 * time.Millisecond
	)
	s := startServer(t, server.Config{MaxConnections: maxConn, HeaderTimeout: timeout, IdleTimeout: timeout})
	addr := strings.TrimPrefix(s.URL, "https://")
	var conns []net.Conn
	for range idle {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
	}
	// One that starts a request and then stalls (slowloris).
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = slow.Write([]byte{0x16, 0x03, 0x01}) // the first bytes of a TLS handshake
	conns = append(conns, slow)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	start := time.Now()
	client := testenv.Client(s.CAPEM)
	client.Timeout = 60 * time.Second
	resp, err := client.Get(s.URL + "/metadata/endpoints?api-version=2022-09-01")
	if err != nil {
		t.Fatalf("API with %d idle connections and a cap of %d: %v", idle, maxConn, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata/endpoints: %d", resp.StatusCode)
	}
	t.Logf("API answered after %v with %d idle connections queued before it (cap %d, header timeout %v)", time.Since(start).Round(time.Millisecond), idle, maxConn, timeout)

	// Every idle connection is closed by the server: reads end with EOF or
	// a reset, not with our own deadline.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			t.Fatalf("connection %d still open after 30s", i)
		}
	}

	// A keep-alive connection idle longer than the idle timeout is closed
	// too; the client transparently dials again.
	resp, err = client.Get(s.URL + "/metadata/endpoints?api-version=2022-09-01")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestStartRefusesDamagedStore: a truncated state.db is a clear error
// before the server listens, not a crash.
func TestStartRefusesDamagedStore(t *testing.T) {
	dir := t.TempDir()
	s := startServer(t, server.Config{DataDir: dir})
	s.Close()
	path := filepath.Join(dir, "state.db")
	// Keep the meta pages, cut the data pages.
	if err := os.Truncate(path, 2*4096+100); err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{DataDir: dir, Listen: "127.0.0.1:0", NoDemoImages: true, VMs: "off", GuestBinary: os.Args[0]}
	s2, err := server.Start(t.Context(), cfg)
	if err == nil {
		s2.Close()
		t.Fatal("Start with a truncated state.db succeeded")
	}
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("Start: %v, want a store.ErrCorrupt error saying truncated", err)
	}
	t.Logf("Start: %v", err)
}
