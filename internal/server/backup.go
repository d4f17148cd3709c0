package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vmssd/vmssd/internal/backup"
	"github.com/vmssd/vmssd/internal/store/boltstore"
)

// ControlSocket is the server's control socket in the data directory: a
// Unix socket only the data directory's owner can reach, through which
// "vmssd backup" takes a hot backup of a running server.
const ControlSocket = "control.sock"

// backupStatusTrailer is sent after a complete backup stream, so that a
// client can tell a complete backup from one cut short.
const backupStatusTrailer = "Vmssd-Backup-Status"

// serveControl serves the control socket (GET /backup) while the server
// runs. Without it (a memory store, a data dir path too long for a socket)
// hot backups are unavailable, which is logged.
func (s *Server) serveControl() {
	st, ok := s.Store.(*boltstore.Store)
	if !ok {
		return
	}
	path := filepath.Join(s.cfg.DataDir, ControlSocket)
	_ = os.Remove(path) // stale: this process holds the store's lock
	ln, err := net.Listen("unix", path)
	if err != nil {
		s.cfg.Logger.Warn("control socket unavailable: vmssd backup cannot take hot backups", "path", path, "err", err)
		return
	}
	_ = os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/gzip")
		w.Header().Set("Trailer", backupStatusTrailer)
		if err := backup.Write(r.Context(), w, s.cfg.DataDir, st, time.Now()); err != nil {
			s.cfg.Logger.Error("backup failed", "err", err)
			w.Header().Set(backupStatusTrailer, "failed: "+err.Error())
			return
		}
		w.Header().Set(backupStatusTrailer, "ok")
		s.cfg.Logger.Info("backup taken")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug)}
	go func() { _ = srv.Serve(ln) }()
	s.closers = append(s.closers, func() error {
		err := srv.Close()
		_ = os.Remove(path)
		return err
	})
}

// Backup writes a backup of the data directory dataDir to w: through the
// control socket of the vmssd serving it (a hot backup), or from the store
// file directly when no vmssd runs there.
func Backup(ctx context.Context, dataDir string, w io.Writer) error {
	sock := filepath.Join(dataDir, ControlSocket)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vmssd/backup", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	switch {
	case err == nil:
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("backup: the running vmssd answered %s", resp.Status)
		}
		if _, err := io.Copy(w, resp.Body); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		if st := resp.Trailer.Get(backupStatusTrailer); st != "ok" {
			return fmt.Errorf("backup: the running vmssd did not complete it: %s", st)
		}
		return nil
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
		// No server: copy the store file ourselves.
	default:
		return fmt.Errorf("backup: control socket %s: %w", sock, err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, backup.StateFile)); err != nil {
		return fmt.Errorf("backup: no state store in %s: %w", dataDir, err)
	}
	st, err := boltstore.Open(filepath.Join(dataDir, backup.StateFile), boltstore.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("backup: no vmssd answers on %s, and the store cannot be opened: %w", sock, err)
	}
	defer st.Close()
	return backup.Write(ctx, w, dataDir, st, time.Now())
}

// Restore restores the backup read from r into dataDir, which must be
// absent or empty (backup.ErrNotEmpty otherwise).
func Restore(ctx context.Context, dataDir string, r io.Reader) error {
	return backup.Restore(ctx, r, dataDir, boltstore.Verify)
}
