package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

func TestBuildDemoDeterministic(t *testing.T) {
	base := DemoOptions{Version: "1.0.0", Healthy: true, StartupDelay: 2 * time.Second}
	a, b := demo(t, base), demo(t, base)
	if !bytes.Equal(a, b) {
		t.Fatal("two builds with the same options differ")
	}
	variants := []struct {
		name string
		opts DemoOptions
	}{
		{"unhealthy", DemoOptions{Version: "1.0.0", Healthy: false, StartupDelay: 2 * time.Second}},
		{"other version", DemoOptions{Version: "1.0.1", Healthy: true, StartupDelay: 2 * time.Second}},
		{"no delay", DemoOptions{Version: "1.0.0", Healthy: true}},
	}
	for _, v := range variants {
		if bytes.Equal(a, demo(t, v.opts)) {
			t.Errorf("%s: same bytes as the base demo", v.name)
		}
	}
}

func TestBuildDemoContent(t *testing.T) {
	tests := []struct {
		opts DemoOptions
		want GuestConfig
	}{
		{DemoOptions{Version: "1.0.0", Healthy: true}, GuestConfig{Version: "1.0.0", Healthy: true, StartupDelay: "0s"}},
		{DemoOptions{Version: "2.0.0-rc.1+b~2", StartupDelay: 1500 * time.Millisecond},
			GuestConfig{Version: "2.0.0-rc.1+b~2", StartupDelay: "1.5s"}},
	}
	for _, tt := range tests {
		t.Run(tt.opts.Version, func(t *testing.T) {
			files := map[string]string{}
			var names []string
			m, _, _, err := walkArchive(context.Background(), bytes.NewReader(demo(t, tt.opts)), DefaultLimits(),
				func(e entry, content io.Reader) error {
					names = append(names, e.name)
					data, err := io.ReadAll(content)
					files[e.name] = string(data)
					return err
				})
			if err != nil {
				t.Fatal(err)
			}
			if m.Format != FormatProcessV1 || m.Version != tt.opts.Version || m.HealthProbe.Path != "/health" ||
				strings.Join(m.Entrypoint, " ") != "${VMSSD_GUEST} guest" {
				t.Errorf("manifest = %+v", m)
			}
			wantNames := "rootfs rootfs/etc rootfs/etc/os-release rootfs/etc/vmssd-guest.json"
			if got := strings.Join(names, " "); got != wantNames {
				t.Errorf("entries = %s, want %s", got, wantNames)
			}
			var gc GuestConfig
			if err := json.Unmarshal([]byte(files["rootfs/"+GuestConfigPath]), &gc); err != nil {
				t.Fatal(err)
			}
			if gc != tt.want {
				t.Errorf("guest config = %+v, want %+v", gc, tt.want)
			}
			if d, err := gc.Delay(); err != nil || d != tt.opts.StartupDelay {
				t.Errorf("Delay() = %v, %v, want %v", d, err, tt.opts.StartupDelay)
			}
			if osr := files["rootfs/etc/os-release"]; !strings.Contains(osr, `VERSION_ID="`+tt.opts.Version+`"`) {
				t.Errorf("os-release does not name the version:\n%s", osr)
			}
		})
	}
}

func TestBuildDemoRejects(t *testing.T) {
	tests := []DemoOptions{
		{Version: ""},
		{Version: "1.0 beta"},
		{Version: `1"; rm -rf /`},
		{Version: "1\n2"},
		{Version: strings.Repeat("1", 65)},
		{Version: "1.0.0", StartupDelay: -time.Second},
	}
	for _, opts := range tests {
		if err := BuildDemo(io.Discard, opts); err == nil {
			t.Errorf("BuildDemo(%+v) = nil, want an error", opts)
		}
	}
}

func TestGuestConfigDelay(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, true},
		{"0s", 0, true},
		{"250ms", 250 * time.Millisecond, true},
		{"-1s", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, err := GuestConfig{StartupDelay: tt.in}.Delay()
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("Delay(%q) = %v, %v, want %v (ok=%v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
