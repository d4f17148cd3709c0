package server_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/backup"
	"github.com/vmssd/vmssd/internal/server"
	"github.com/vmssd/vmssd/internal/testenv"
)

// TestBackupRestore: a hot backup of a running server, restored into a new
// data directory, starts as the same cloud: records, credentials, images
// and the scale set's instance (recreated from its record and the restored
// image artifact).
func TestBackupRestore(t *testing.T) {
	ctx := t.Context()
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg1")
	if st, m := e.Wait(e.Do(http.MethodPut, e.VMSSPath("rg1", "web"), testenv.VMSSBody(1, "1.0.0", "Manual")), 90*time.Second); st != "Succeeded" {
		t.Fatalf("create scale set: %s %v", st, m)
	}
	tenant := putPrincipal(t, e, "tenant1", "", map[string]any{"role": "tenant", "subscriptions": []string{e.Sub}})

	var buf bytes.Buffer
	if err := server.Backup(ctx, e.Config.DataDir, &buf); err != nil {
		t.Fatalf("hot backup: %v", err)
	}
	t.Logf("backup: %d bytes", buf.Len())
	// Writes go on while and after the backup; they are not in it.
	e.CreateRG("rg-after")

	// Never over a live data directory.
	if err := server.Restore(ctx, e.Config.DataDir, bytes.NewReader(buf.Bytes())); !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("restore over the live data dir: %v, want ErrNotEmpty", err)
	}
	e.Stop()

	dir := filepath.Join(t.TempDir(), "restored")
	if err := server.Restore(ctx, dir, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "hosts")); err == nil {
		t.Error("instance directories were restored")
	}
	r := testenv.Start(t, testenv.Options{DataDir: dir})
	if got := r.Do(http.MethodGet, r.RGPath("rg1")+"?api-version=2019-10-01", nil); got.Status != http.StatusOK {
		t.Errorf("rg1 after restore: %d %s", got.Status, got.Body)
	}
	if got := r.Do(http.MethodGet, r.RGPath("rg-after")+"?api-version=2019-10-01", nil); got.Status != http.StatusNotFound {
		t.Errorf("a group created after the backup: %d, want 404", got.Status)
	}
	// The restored credentials: the operator's file, the tenant's secret.
	opSecret := readJSONField(t, filepath.Join(dir, "operator.json"), "clientSecret")
	if token(t, r, "operator", opSecret) == "" {
		t.Error("the restored operator.json gets no token")
	}
	if token(t, r, "tenant1", tenant["clientSecret"].(string)) == "" {
		t.Error("the tenant's secret gets no token after restore")
	}
	// The instance is recreated from its record and the restored image.
	testenv.Eventually(t, 90*time.Second, "the restored scale set's instance running", func() bool {
		got := r.Do(http.MethodGet, r.VMSSPath("rg1", "web")+"/virtualMachines/0/instanceView", nil)
		return got.Status == http.StatusOK && bytes.Contains(got.Body, []byte("PowerState/running"))
	})
}

func TestBackupWithoutServerAndBadRestores(t *testing.T) {
	ctx := t.Context()
	e := testenv.Start(t, testenv.Options{})
	e.CreateRG("rg1")
	e.Stop()
	var buf bytes.Buffer
	if err := server.Backup(ctx, e.Config.DataDir, &buf); err != nil {
		t.Fatalf("backup of a stopped server's data dir: %v", err)
	}
	if err := server.Backup(ctx, t.TempDir(), &bytes.Buffer{}); err == nil {
		t.Error("backup of a directory without a store succeeded")
	}
	for name, data := range map[string][]byte{
		"truncated": buf.Bytes()[:buf.Len()/2],
		"not gzip":  []byte("hello"),
	} {
		dir := t.TempDir()
		if err := server.Restore(ctx, dir, bytes.NewReader(data)); err == nil {
			t.Errorf("restore of a %s backup succeeded", name)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("a failed restore (%s) left %d entries", name, len(ents))
		}
	}
	dir := t.TempDir()
	if err := server.Restore(ctx, dir, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restore: %v", err)
	}
	r := testenv.Start(t, testenv.Options{DataDir: dir})
	if got := r.Do(http.MethodGet, r.RGPath("rg1")+"?api-version=2019-10-01", nil); got.Status != http.StatusOK {
		t.Errorf("rg1 after restore: %d %s", got.Status, got.Body)
	}
}

func readJSONField(t *testing.T, path, field string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[field].(string)
	return s
}
