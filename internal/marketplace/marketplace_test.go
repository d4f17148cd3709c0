package marketplace

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/vmssd/vmssd/internal/artifact"
)

func validImage() Product {
	return Product{Kind: KindImage, Name: "p:o:s:1.0.0", Publisher: "p", Offer: "o", SKU: "s", Version: "1.0.0", OSType: "Linux",
		SizeBytes: 10, SHA256: strings.Repeat("a", 64), URL: "blobs/sha256/" + strings.Repeat("a", 64)}
}

func TestParseIndex(t *testing.T) {
	item := Product{Kind: KindGalleryItem, Name: "P.O.1.0.0", Publisher: "P", Offer: "O", Version: "1.0.0", SizeBytes: 5, SHA256: strings.Repeat("b", 64), URL: "x.azpkg"}
	mod := func(f func(*Product)) Product { p := validImage(); f(&p); return p }
	for _, c := range []struct {
		name    string
		format  string
		ps      []Product
		wantErr string
	}{
		{"ok", FormatV1, []Product{validImage(), item}, ""},
		{"empty", FormatV1, nil, ""},
		{"format", "vmssd.marketplace/v0", nil, "format"},
		{"kind", FormatV1, []Product{mod(func(p *Product) { p.Kind = "vm" })}, "kind"},
		{"name", FormatV1, []Product{mod(func(p *Product) { p.Name = "other" })}, "name must be"},
		{"version", FormatV1, []Product{mod(func(p *Product) { p.Version, p.Name = "latest", "p:o:s:latest" })}, "Major.Minor.Build"},
		{"os", FormatV1, []Product{mod(func(p *Product) { p.OSType = "" })}, "osType"},
		{"sha", FormatV1, []Product{mod(func(p *Product) { p.SHA256 = strings.Repeat("A", 64) })}, "sha256"},
		{"size", FormatV1, []Product{mod(func(p *Product) { p.SizeBytes = 0 })}, "sizeBytes"},
		{"url", FormatV1, []Product{mod(func(p *Product) { p.URL = "" })}, "url"},
		{"publisher", FormatV1, []Product{mod(func(p *Product) { p.Publisher, p.Name = "../x", "../x:o:s:1.0.0" })}, "publisher"},
		{"twice", FormatV1, []Product{validImage(), mod(func(p *Product) { p.Name, p.Publisher = "P:o:s:1.0.0", "P" })}, "twice"},
	} {
		b, _ := json.Marshal(Index{Format: c.format, Products: c.ps})
		_, err := ParseIndex(b)
		if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrInvalidIndex)) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.wantErr)
		}
	}
	if _, err := ParseIndex([]byte("{")); !errors.Is(err, ErrInvalidIndex) {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestResolveURL(t *testing.T) {
	base, _ := url.Parse("https://up:8443/marketplace/v1/index.json")
	for ref, want := range map[string]string{
		"blobs/sha256/ab": "https://up:8443/marketplace/v1/blobs/sha256/ab",
		"https://cdn/x":   "https://cdn/x",
		"/other/y":        "https://up:8443/other/y",
	} {
		u, err := ResolveURL(base, ref)
		if err != nil || u.String() != want {
			t.Errorf("ResolveURL(%q) = %v, %v; want %s", ref, u, err, want)
		}
	}
}

func TestValidateParameters(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int) *int { return &v }
	defs := map[string]ParamDef{
		"name":  {Type: "string", MinLength: i(3), MaxLength: i(5)},
		"count": {Type: "Int", DefaultValue: json.RawMessage("2"), MinValue: f(1), MaxValue: f(10)},
		"mode":  {Type: "string", DefaultValue: json.RawMessage(`"A"`), AllowedValues: []any{"A", "B"}},
		"on":    {Type: "bool", DefaultValue: json.RawMessage("true")},
		"pw":    {Type: "securestring", DefaultValue: json.RawMessage(`""`)},
	}
	for _, c := range []struct {
		given map[string]any
		bad   string // the parameter in error, "" for none
	}{
		{map[string]any{"name": "abc"}, ""},
		{map[string]any{"NAME": map[string]any{"value": "abcd"}, "count": 3.0, "mode": "B", "on": false}, ""},
		{map[string]any{}, "name"},
		{map[string]any{"name": "ab"}, "name"},
		{map[string]any{"name": "abcdef"}, "name"},
		{map[string]any{"name": 5.0}, "name"},
		{map[string]any{"name": "abc", "count": 0.0}, "count"},
		{map[string]any{"name": "abc", "count": 2.5}, "count"},
		{map[string]any{"name": "abc", "count": "3"}, "count"},
		{map[string]any{"name": "abc", "mode": "C"}, "mode"},
		{map[string]any{"name": "abc", "on": "yes"}, "on"},
		{map[string]any{"name": "abc", "extra": 1.0}, "extra"},
	} {
		out, err := ValidateParameters(defs, c.given)
		var pe *ParamError
		switch {
		case c.bad == "" && err != nil:
			t.Errorf("%v: %v", c.given, err)
		case c.bad != "" && (!errors.As(err, &pe) || !strings.EqualFold(pe.Param, c.bad)):
			t.Errorf("%v: err = %v, want one about %s", c.given, err, c.bad)
		case c.bad == "":
			for k := range out {
				if _, ok := defs[k]; !ok {
					t.Errorf("%v: output key %q is not the declared spelling", c.given, k)
				}
				if _, ok := out[k].(map[string]any)["value"]; !ok {
					t.Errorf("%v: output %q not in ARM form", c.given, k)
				}
			}
		}
	}
}

func TestDefaultItemPackage(t *testing.T) {
	a, b := DefaultItemPackage(), DefaultItemPackage()
	if !bytes.Equal(a, b) {
		t.Fatal("the default package is not reproducible")
	}
	it, err := ParsePackage(a)
	if err != nil {
		t.Fatal(err)
	}
	if it.Name != "vmssd.VMScaleSet.1.0.0" || it.DisplayName != "Virtual machine scale set" || len(it.Icons) != 4 {
		t.Fatalf("item %+v", it)
	}
	for _, p := range []string{"osImagePublisher", "osImageOffer", "osImageSku", "vmssName", "instanceCount"} {
		if _, ok := it.Parameters[p]; !ok {
			t.Errorf("no parameter %s", p)
		}
	}
	if !strings.Contains(string(it.Template), `"version": "latest"`) {
		t.Error("the template does not deploy version latest")
	}
}

func TestParsePackageRejects(t *testing.T) {
	good := map[string]string{
		"Manifest.json":              `{"name":"X","publisher":"P","version":"1.0.0","artifacts":[{"name":"D","type":"Template","path":"DeploymentTemplates\\D.json","isDefault":true}]}`,
		"DeploymentTemplates/D.json": `{"parameters":{},"resources":[]}`,
	}
	build := func(mod func(m map[string]string)) []byte {
		m := map[string]string{}
		for k, v := range good {
			m[k] = v
		}
		mod(m)
		fsys := fstest.MapFS{}
		for k, v := range m {
			fsys[k] = &fstest.MapFile{Data: []byte(v)}
		}
		b, err := BuildPackage(fsys)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if it, err := ParsePackage(build(func(map[string]string) {})); err != nil || it.Name != "P.X.1.0.0" {
		t.Fatalf("good package: %v %v", it, err)
	}
	for name, pkg := range map[string][]byte{
		"not a zip":      []byte("hello"),
		"no manifest":    build(func(m map[string]string) { delete(m, "Manifest.json") }),
		"bad version":    build(func(m map[string]string) { m["Manifest.json"] = strings.Replace(m["Manifest.json"], "1.0.0", "1.0", 1) }),
		"no template":    build(func(m map[string]string) { delete(m, "DeploymentTemplates/D.json") }),
		"not a template": build(func(m map[string]string) { m["DeploymentTemplates/D.json"] = `{"a":1}` }),
		"missing icon": build(func(m map[string]string) {
			m["Manifest.json"] = strings.Replace(m["Manifest.json"], `"artifacts"`, `"icons":{"small":"Icons\\S.png"},"artifacts"`, 1)
		}),
	} {
		if _, err := ParsePackage(pkg); !errors.Is(err, ErrInvalidPackage) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// rangeServer serves body with Range support; it can cut the first
// response after cut bytes, and records Range headers.
type rangeServer struct {
	mu      sync.Mutex
	body    []byte
	cut     int
	ranges  []string
	noRange bool
}

func (s *rangeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	cut := s.cut
	s.cut = 0
	s.mu.Unlock()
	if s.noRange {
		r.Header.Del("Range")
	}
	if cut > 0 {
		w.Header().Set("Content-Length", "999999")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(s.body[:cut])
		panic(http.ErrAbortHandler)
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.body))
}

func product(body []byte) Product {
	sum := sha256.Sum256(body)
	p := validImage()
	p.SHA256, p.SizeBytes = hex.EncodeToString(sum[:]), int64(len(body))
	return p
}

func TestFetchResumesAndVerifies(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	rs := &rangeServer{body: body, cut: 300 << 10}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/blob")
	f := &Fetcher{Dir: t.TempDir(), Backoff: 1}
	p := product(body)
	var last int64
	path, err := f.Fetch(context.Background(), u, p, func(n int64) { last = n })
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, body) || last != p.SizeBytes {
		t.Fatalf("fetched %d bytes, progress %d", len(got), last)
	}
	if len(rs.ranges) != 2 || rs.ranges[0] != "" || rs.ranges[1] != "bytes=307200-" {
		t.Fatalf("ranges %q", rs.ranges)
	}

	// A partial file left by a killed process is resumed.
	os.Remove(path)
	if err := os.WriteFile(f.PartialPath(p), body[:500<<10], 0o600); err != nil {
		t.Fatal(err)
	}
	rs.ranges = nil
	if _, err := f.Fetch(context.Background(), u, p, nil); err != nil || len(rs.ranges) != 1 || rs.ranges[0] != "bytes=512000-" {
		t.Fatalf("resume: %v %q", err, rs.ranges)
	}

	// A server without Range support: starts over, still correct.
	os.Remove(f.PartialPath(p))
	os.WriteFile(f.PartialPath(p), body[:100], 0o600)
	rs.noRange = true
	if path, err := f.Fetch(context.Background(), u, p, nil); err != nil {
		t.Fatal(err)
	} else if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
		t.Fatal("restart without Range: wrong bytes")
	}
	rs.noRange = false

	// Corrupted or truncated: ErrChecksum, nothing left behind.
	for name, q := range map[string]Product{
		"corrupt":   func() Product { q := p; q.SHA256 = strings.Repeat("0", 64); return q }(),
		"truncated": func() Product { q := product(append(bytes.Clone(body), 'x')); return q }(),
	} {
		_, err := f.Fetch(context.Background(), u, q, nil)
		if name == "corrupt" && !errors.Is(err, ErrChecksum) || name == "truncated" && err == nil {
			t.Errorf("%s: %v", name, err)
		}
		if ents, _ := os.ReadDir(f.Dir); name == "corrupt" && len(ents) > 1 {
			t.Errorf("%s: left %v", name, ents)
		}
	}

	// Cancelled.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	os.RemoveAll(f.Dir)
	if _, err := f.Fetch(ctx, u, p, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}

	// Refused by the upstream: no retries.
	u404, _ := url.Parse(srv.URL + "/x")
	srv404 := httptest.NewServer(http.NotFoundHandler())
	defer srv404.Close()
	u404, _ = url.Parse(srv404.URL + "/x")
	if _, err := f.Fetch(context.Background(), u404, p, nil); !errors.Is(err, ErrUpstream) {
		t.Errorf("404: %v", err)
	}
	_ = filepath.Join
}

// TestFetchWritesHoles: a mostly zero download, interrupted at an
// unaligned offset and resumed, is stored sparse and reads back identical.
func TestFetchWritesHoles(t *testing.T) {
	body := make([]byte, 16<<20)
	copy(body, "header")
	copy(body[9<<20:], bytes.Repeat([]byte{0x5A}, 10<<10))
	body[len(body)-1] = 1
	rs := &rangeServer{body: body, cut: 300<<10 + 7}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/blob")
	f := &Fetcher{Dir: t.TempDir(), Backoff: 1}
	p := product(body)
	path, err := f.Fetch(context.Background(), u, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.ranges) != 2 {
		t.Fatalf("ranges %q: want an interrupted and a resumed request", rs.ranges)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, body) {
		t.Fatal("fetched bytes differ")
	}
	disk, err := artifact.OnDiskBytes(path)
	if err != nil {
		t.Fatal(err)
	}
	if disk > 1<<20 {
		t.Fatalf("%d logical bytes take %d on disk: not sparse", len(body), disk)
	}
}
