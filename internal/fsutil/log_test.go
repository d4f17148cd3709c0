package fsutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRotateLog(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "console.log")
	if rotated, err := RotateLog(p, 10); rotated || err != nil {
		t.Errorf("missing log: %v %v", rotated, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("0123456789")
	if rotated, err := RotateLog(p, 10); rotated || err != nil {
		t.Errorf("log at the limit: %v %v", rotated, err)
	}
	f.WriteString("abcdef")
	rotated, err := RotateLog(p, 10)
	if !rotated || err != nil {
		t.Fatalf("RotateLog = %v, %v", rotated, err)
	}
	f.WriteString("new") // the writer's O_APPEND descriptor keeps working
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("log after rotation = %q, want new", b)
	}
	if b, _ := os.ReadFile(p + ".1"); string(b) != "6789abcdef" {
		t.Errorf("log.1 = %q, want the last 10 bytes", b)
	}
	for _, name := range entries(t, dir) {
		if strings.HasPrefix(name, TempPrefix) {
			t.Errorf("leftover %s", name)
		}
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	if err := os.WriteFile(p, []byte("0123456789abcdef"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := TailFile(p, 4); err != nil || string(b) != "cdef" {
		t.Errorf("TailFile = %q %v", b, err)
	}
	if b, err := TailFile(p, 100); err != nil || string(b) != "0123456789abcdef" {
		t.Errorf("TailFile of a short file = %q %v", b, err)
	}
	if b, err := TailLog(p, 100); err != nil || string(b) != "0123456789abcdef" {
		t.Errorf("TailLog without a rotated part = %q %v", b, err)
	}
	if rotated, err := RotateLog(p, 6); err != nil || !rotated {
		t.Fatalf("rotate: %v %v", rotated, err)
	}
	os.WriteFile(p, []byte("XYZ"), 0o644)
	if b, err := TailLog(p, 5); err != nil || string(b) != "efXYZ" {
		t.Errorf("TailLog = %q %v", b, err)
	}
	if b, err := TailLog(p, 2); err != nil || string(b) != "YZ" {
		t.Errorf("TailLog within the current part = %q %v", b, err)
	}
	none := filepath.Join(t.TempDir(), "none")
	if b, err := TailLog(none, 5); err != nil || len(b) != 0 {
		t.Errorf("TailLog of nothing = %q %v", b, err)
	}
	if b, err := TailFile(none, 5); err != nil || b != nil {
		t.Errorf("TailFile of nothing = %q %v", b, err)
	}
	if _, err := TailFile(t.TempDir(), 5); err == nil {
		t.Error("TailFile of a directory succeeded")
	}
}
