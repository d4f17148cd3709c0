package drivertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Environment of the test guest.
const (
	// GuestEnv set to "1" turns a test binary into the test guest (see
	// MaybeGuest).
	GuestEnv = "DRIVERTEST_GUEST"
	// GuestTTLEnv bounds the life of a test guest (a time.Duration, default
	// 10m), so that a failed test does not leak guests forever.
	GuestTTLEnv = "DRIVERTEST_GUEST_TTL"
	// PrivateIPEnv is set by a driver that attached the guest to a virtual
	// network (its private IP): the test guest then listens on every
	// address instead of loopback only.
	PrivateIPEnv = "VMSSD_PRIVATE_IP"
)

// Files the test guest uses on its disk.
const (
	// VersionFile is read by GET /health.
	VersionFile = "version"
	// IgnoreTermFile makes the guest ignore SIGTERM while it exists.
	IgnoreTermFile = "ignore-term"
)

// MaybeGuest runs the test guest and exits when the process was started as
// one (GuestEnv=1); otherwise it returns at once. Call it first in the
// TestMain of a package whose tests start guests:
//
//	func TestMain(m *testing.M) {
//		drivertest.MaybeGuest()
//		os.Exit(m.Run())
//	}
//
// The test guest serves, on 127.0.0.1:$VMSSD_PORT (every address when
// $VMSSD_PRIVATE_IP is set):
//
//	GET  /health        200, the content of $VMSSD_DISK/version
//	GET  /pid           its pid
//	GET  /metadata      the content of $VMSSD_METADATA
//	GET  /env           its VMSSD_* environment as a JSON object
//	GET  /files/{name}  the content of $VMSSD_DISK/<name> (404 if absent)
//	PUT  /files/{name}  writes the body to $VMSSD_DISK/<name>
//	POST /console?n=N   writes N bytes to stdout
//
// It exits with status 0 on SIGTERM (unless $VMSSD_DISK/ignore-term exists)
// and with status 3 after its TTL.
func MaybeGuest() {
	if os.Getenv(GuestEnv) != "1" {
		return
	}
	os.Exit(runGuest())
}

func runGuest() int {
	port, disk, meta := os.Getenv("VMSSD_PORT"), os.Getenv("VMSSD_DISK"), os.Getenv("VMSSD_METADATA")
	ttl := 10 * time.Minute
	if v := os.Getenv(GuestTTLEnv); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			ttl = d
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	addr := "127.0.0.1"
	if os.Getenv(PrivateIPEnv) != "" {
		addr = "0.0.0.0" // on a virtual network: reachable by its neighbours too
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "test guest: %v\n", err)
		return 1
	}
	fmt.Printf("test guest %d listening on %s\n", os.Getpid(), ln.Addr())
	srv := &http.Server{Handler: guestMux(disk, meta), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)

	deadline := time.NewTimer(ttl)
	for {
		select {
		case sig := <-sigs:
			if _, err := os.Stat(filepath.Join(disk, IgnoreTermFile)); err == nil {
				fmt.Printf("test guest: ignoring %v\n", sig)
				continue
			}
			fmt.Printf("test guest: %v, shutting down\n", sig)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.Shutdown(ctx)
			cancel()
			return 0
		case <-deadline.C:
			fmt.Fprintln(os.Stderr, "test guest: TTL expired")
			return 3
		}
	}
}

func guestMux(disk, meta string) *http.ServeMux {
	mux := http.NewServeMux()
	serveFile := func(w http.ResponseWriter, path string) {
		b, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(b)
	}
	localName := func(w http.ResponseWriter, r *http.Request) (string, bool) {
		name := r.PathValue("name")
		if !filepath.IsLocal(name) || strings.ContainsRune(name, '/') {
			http.Error(w, "bad name", http.StatusBadRequest)
			return "", false
		}
		return filepath.Join(disk, name), true
	}
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(filepath.Join(disk, VersionFile))
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("GET /pid", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strconv.Itoa(os.Getpid()))
	})
	mux.HandleFunc("GET /metadata", func(w http.ResponseWriter, r *http.Request) {
		serveFile(w, meta)
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "VMSSD_") {
				env[k] = v
			}
		}
		json.NewEncoder(w).Encode(env)
	})
	mux.HandleFunc("GET /files/{name}", func(w http.ResponseWriter, r *http.Request) {
		if path, ok := localName(w, r); ok {
			serveFile(w, path)
		}
	})
	mux.HandleFunc("PUT /files/{name}", func(w http.ResponseWriter, r *http.Request) {
		path, ok := localName(w, r)
		if !ok {
			return
		}
		b, err := io.ReadAll(r.Body)
		if err == nil {
			err = os.WriteFile(path, b, 0o644)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /console", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("n"))
		if err != nil || n < 0 {
			http.Error(w, "bad n", http.StatusBadRequest)
			return
		}
		line := []byte(strings.Repeat("x", 63) + "\n")
		for n > 0 {
			k := min(n, len(line))
			os.Stdout.Write(line[len(line)-k:])
			n -= k
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// ProcessImage writes a "vmssd.process/v1" image into a new temporary
// directory and returns it. Its entrypoint is "${VMSSD_GUEST}" with
// GuestEnv=1: a driver whose guest program is the running test binary (whose
// TestMain calls MaybeGuest) runs the test guest. Its rootfs holds
//
//	version        version (served by GET /health)
//	bin/hello      a 0755 shell script
//	etc/secret     a 0600 file
//	etc/link       a symlink to ../version
//	var/empty/     an empty 0700 directory
func ProcessImage(t testing.TB, version string) string {
	t.Helper()
	dir := t.TempDir()
	manifest := map[string]any{
		"format":      "vmssd.process/v1",
		"osType":      "Linux",
		"name":        "drivertest",
		"version":     version,
		"entrypoint":  []string{"${VMSSD_GUEST}"},
		"env":         map[string]string{GuestEnv: "1", GuestTTLEnv: "10m"},
		"healthProbe": map[string]string{"protocol": "http", "path": "/health"},
	}
	b, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	files := []struct {
		path string
		mode os.FileMode
		data string
	}{
		{"manifest.json", 0o644, string(b)},
		{"rootfs/" + VersionFile, 0o644, version},
		{"rootfs/bin/hello", 0o755, "#!/bin/sh\necho hello\n"},
		{"rootfs/etc/secret", 0o600, "secret\n"},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("../"+VersionFile, filepath.Join(dir, "rootfs/etc/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "rootfs/var/empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "rootfs/var/empty"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}
