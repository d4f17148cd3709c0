// Package guard holds tests that keep the repository's shape: every package
// documents itself, and binaries do not link what they must not.
package guard

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

type pkg struct {
	ImportPath string
	Doc        string
	Name       string
	Deps       []string
	GoFiles    []string
}

func goList(t *testing.T, args ...string) []pkg {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return pkgs
}

// TestPackageDocs: every package with Go files has a doc comment.
func TestPackageDocs(t *testing.T) {
	for _, p := range goList(t, "github.com/vmssd/vmssd/...") {
		if len(p.GoFiles) > 0 && strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", p.ImportPath)
		}
	}
}

// TestDependencies pins what each binary may link.
func TestDependencies(t *testing.T) {
	forbidden := map[string][]string{
		// The CLI talks to the API only.
		"github.com/vmssd/vmssd/cmd/vmssctl": {
			"github.com/vmssd/vmssd/internal/controller",
			"github.com/vmssd/vmssd/internal/apiserver",
			"github.com/vmssd/vmssd/internal/store",
			"github.com/vmssd/vmssd/internal/driver",
		},
		// Product binaries never link test harnesses.
		"github.com/vmssd/vmssd/cmd/vmssd": {
			"github.com/vmssd/vmssd/internal/testenv",
			"github.com/vmssd/vmssd/internal/store/storetest",
			"github.com/vmssd/vmssd/internal/driver/drivertest",
			"testing",
		},
	}
	for bin, bad := range forbidden {
		ps := goList(t, "-deps=false", bin)
		if len(ps) != 1 {
			t.Fatalf("go list %s: %d packages", bin, len(ps))
		}
		for _, dep := range ps[0].Deps {
			for _, b := range bad {
				if dep == b || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s links %s", bin, dep)
				}
			}
		}
	}
}
