package instdir

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vmssd/vmssd/internal/fsutil"
)

func TestValidID(t *testing.T) {
	for _, id := range []string{"a", "0", "vm-1.x_y", strings.Repeat("a", 128)} {
		if err := ValidID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"", ".a", "-a", "_a", "a/b", "a b", "é", strings.Repeat("a", 129)} {
		if err := ValidID(id); err == nil {
			t.Errorf("%q is valid", id)
		}
	}
}

// tree returns the paths below dir, with a trailing / for directories.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if de.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(dir, rel string) string {
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func TestCreate(t *testing.T) {
	root := t.TempDir()
	err := Create(root, "a", func(tmp string) error {
		if !strings.HasPrefix(filepath.Base(tmp), ".") || filepath.Dir(tmp) != root {
			t.Errorf("filled in %s, want a dot-entry of root", tmp)
		}
		write(t, tmp, SpecFile, "spec")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := tree(t, root); !slices.Equal(got, []string{"a/", "a/spec.json"}) {
		t.Errorf("root holds %q", got)
	}

	boom := errors.New("boom")
	if err := Create(root, "b", func(tmp string) error { write(t, tmp, "x", "x"); return boom }); !errors.Is(err, boom) {
		t.Errorf("failed fill: %v", err)
	}
	if err := Create(root, "a", func(string) error { return nil }); err == nil || !strings.Contains(err.Error(), "exists but is unknown") {
		t.Errorf("creating over an existing directory: %v", err)
	}
	if got := tree(t, root); !slices.Equal(got, []string{"a/", "a/spec.json"}) {
		t.Errorf("failures left %q", got)
	}
}

func TestReimage(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{SpecFile, MetadataFile, ManifestFile, "state.json", DiskDir + "/v"} {
		write(t, dir, f, "old")
	}
	boom := errors.New("boom")
	if err := StageReimage(dir, func(staging string) error { write(t, staging, SpecFile, "x"); return boom }); !errors.Is(err, boom) {
		t.Errorf("failed staging: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ReimageDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed staging left %s: %v", ReimageDir, err)
	}
	write(t, dir, ReimageDir+"/stale", "from an earlier attempt")
	err := StageReimage(dir, func(staging string) error {
		if staging != filepath.Join(dir, ReimageDir) {
			t.Errorf("staging in %s", staging)
		}
		for _, f := range []string{SpecFile, MetadataFile, ManifestFile, DiskDir + "/v"} {
			write(t, staging, f, "new")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ReimageDir, "stale")); err == nil {
		t.Error("staging kept an earlier attempt")
	}
	if err := os.Rename(filepath.Join(dir, ReimageDir), filepath.Join(dir, ReimageReady)); err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of ApplyReimage: the disk is moved aside and
	// the new one in, the files are not.
	os.Rename(filepath.Join(dir, DiskDir), filepath.Join(dir, OldDiskDir))
	os.Rename(filepath.Join(dir, ReimageReady, DiskDir), filepath.Join(dir, DiskDir))
	write(t, dir, fsutil.TempPrefix+"state.json-1", "torn")
	if err := Clean(dir); err != nil {
		t.Fatal(err)
	}
	want := []string{"disk/", "disk/v", "manifest.json", "metadata.json", "spec.json", "state.json"}
	if got := tree(t, dir); !slices.Equal(got, want) {
		t.Errorf("after Clean: %q, want %q", got, want)
	}
	for _, f := range []string{SpecFile, MetadataFile, ManifestFile, DiskDir + "/v"} {
		if got := read(dir, f); got != "new" {
			t.Errorf("%s = %q, want new", f, got)
		}
	}
	if got := read(dir, "state.json"); got != "old" {
		t.Errorf("state.json = %q: not part of a reimage", got)
	}
}

func TestCleanDiscardsUncommitted(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, SpecFile, "old")
	write(t, dir, DiskDir+"/v", "old")
	write(t, dir, ReimageDir+"/"+SpecFile, "new")
	write(t, dir, OldDiskDir+"/v", "older")
	if err := Clean(dir); err != nil {
		t.Fatal(err)
	}
	if got, want := tree(t, dir), []string{"disk/", "disk/v", "spec.json"}; !slices.Equal(got, want) {
		t.Errorf("after Clean: %q, want %q", got, want)
	}
	if read(dir, SpecFile) != "old" || read(dir, DiskDir+"/v") != "old" {
		t.Error("an uncommitted reimage was applied")
	}
	if err := Clean(filepath.Join(dir, "missing")); err == nil {
		t.Error("cleaning a missing directory succeeded")
	}
}
