package fsutil

import (
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entries returns the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	for _, content := range []string{"one", "two"} {
		if err := WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(p); string(b) != content {
			t.Errorf("content %q, want %q", b, content)
		}
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode())
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Errorf("leftovers: %q", got)
	}
	// A failed rename (onto a non-empty directory) leaves no temporary file.
	os.MkdirAll(filepath.Join(dir, "d", "x"), 0o700)
	if err := WriteFile(filepath.Join(dir, "d"), []byte("x"), 0o600); err == nil {
		t.Error("replacing a directory succeeded")
	}
	if got := entries(t, dir); len(got) != 2 {
		t.Errorf("leftovers after a failure: %q", got)
	}
	if err := WriteFile(filepath.Join(dir, "missing", "f"), nil, 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("write into a missing directory: %v", err)
	}
}

func TestCreateFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	created, err := CreateFile(p, []byte("first"), 0o600)
	if err != nil || !created {
		t.Fatalf("CreateFile = %v, %v", created, err)
	}
	created, err = CreateFile(p, []byte("second"), 0o600)
	if err != nil || created {
		t.Fatalf("CreateFile over an existing file = %v, %v", created, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "first" {
		t.Errorf("content %q: an existing file was replaced", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
	if got := entries(t, dir); len(got) != 1 {
		t.Errorf("leftovers: %q", got)
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Error(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("syncing a missing directory succeeded")
	}
}

func TestJSON(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	type doc struct {
		A string `json:"a"`
		B int    `json:"b"`
	}
	if err := WriteJSON(p, doc{"x", 2}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "{\n  \"a\": \"x\",\n  \"b\": 2\n}\n" {
		t.Errorf("content %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode())
	}
	var got doc
	if err := ReadJSON(p, &got); err != nil || got != (doc{"x", 2}) {
		t.Errorf("ReadJSON = %+v, %v", got, err)
	}

	if err := WriteJSON(p, math.NaN()); err == nil || !strings.HasPrefix(err.Error(), "encode state.json: ") {
		t.Errorf("encoding error: %v", err)
	}
	missing := filepath.Join(dir, "missing", "x.json")
	if err := WriteJSON(missing, 1); err == nil || !strings.HasPrefix(err.Error(), "write "+missing+": ") {
		t.Errorf("write error: %v", err)
	}
	if err := ReadJSON(missing, &got); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reading a missing file: %v", err)
	}
	os.WriteFile(p, []byte("{"), 0o644)
	if err := ReadJSON(p, &got); err == nil || !strings.HasPrefix(err.Error(), "decode "+p+": ") {
		t.Errorf("decoding error: %v", err)
	}
}
