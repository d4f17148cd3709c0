package artifact

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"
)

// GuestConfigPath is where the demo guest's configuration lives, relative to
// rootfs/ (and so to the instance's disk).
const GuestConfigPath = "etc/vmssd-guest.json"

// GuestConfig is the demo guest's configuration file (GuestConfigPath).
type GuestConfig struct {
	// Version is the image version the guest reports.
	Version string `json:"version"`
	// Healthy makes the guest answer its health probe with 200 (else 503).
	Healthy bool `json:"healthy"`
	// StartupDelay is a time.Duration string ("0s", "1.5s"): the guest
	// reports "Initializing" for that long after it starts listening.
	StartupDelay string `json:"startupDelay"`
}

// Delay parses StartupDelay. An empty string means no delay.
func (c GuestConfig) Delay() (time.Duration, error) {
	if c.StartupDelay == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.StartupDelay)
	if err != nil {
		return 0, fmt.Errorf("artifact: guest config startupDelay: %w", err)
	}
	if d < 0 {
		return 0, fmt.Errorf("artifact: guest config startupDelay %s is negative", d)
	}
	return d, nil
}

// DemoOptions parameterises BuildDemo.
type DemoOptions struct {
	// Version is the image version (e.g. "1.0.0"): letters, digits and
	// ".-_+~", at most 64 characters.
	Version string
	// Healthy makes the guest's health probe succeed.
	Healthy bool
	// StartupDelay is how long the guest reports "Initializing".
	StartupDelay time.Duration
}

// demoModTime is the modification time of every entry of a demo artifact.
var demoModTime = time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC)

// DemoName is the manifest name of demo artifacts.
const DemoName = "vmssd-demo"

// BuildDemo writes a demo artifact to w: a FormatProcessV1 image whose
// entrypoint is the host's guest program ("${VMSSD_GUEST} guest") and whose
// rootfs holds etc/vmssd-guest.json and etc/os-release. The output is
// reproducible: the same options always give the same bytes (sorted entries,
// fixed times and owners, no gzip name or time).
func BuildDemo(w io.Writer, opts DemoOptions) error {
	if err := validDemoVersion(opts.Version); err != nil {
		return err
	}
	if opts.StartupDelay < 0 {
		return fmt.Errorf("artifact: demo startup delay %s is negative", opts.StartupDelay)
	}
	m := Manifest{
		Format:      FormatProcessV1,
		OSType:      OSTypeLinux,
		Name:        DemoName,
		Version:     opts.Version,
		Entrypoint:  []string{GuestToken, "guest"},
		HealthProbe: HealthProbe{Protocol: "http", Path: "/health"},
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("artifact: encode demo manifest: %w", err)
	}
	guest, err := json.MarshalIndent(GuestConfig{
		Version:      opts.Version,
		Healthy:      opts.Healthy,
		StartupDelay: opts.StartupDelay.String(),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("artifact: encode demo guest config: %w", err)
	}
	osRelease := fmt.Sprintf("NAME=\"vmssd demo\"\nID=%s\nVERSION_ID=%q\nVERSION=%q\nPRETTY_NAME=\"vmssd demo %s\"\n",
		DemoName, opts.Version, opts.Version, opts.Version)

	type entry struct {
		name string
		dir  bool
		data []byte
	}
	entries := []entry{
		{name: ManifestFile, data: append(manifest, '\n')},
		{name: RootfsDir + "/", dir: true},
		{name: RootfsDir + "/etc/", dir: true},
		{name: RootfsDir + "/etc/os-release", data: []byte(osRelease)},
		{name: RootfsDir + "/" + GuestConfigPath, data: append(guest, '\n')},
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })

	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("artifact: gzip: %w", err)
	}
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			ModTime: demoModTime,
			Format:  tar.FormatUSTAR,
		}
		if e.dir {
			hdr.Typeflag, hdr.Mode = tar.TypeDir, 0o755
		} else {
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("artifact: write demo entry %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("artifact: write demo entry %s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("artifact: finish demo tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("artifact: finish demo gzip: %w", err)
	}
	return nil
}

func validDemoVersion(v string) error {
	if v == "" {
		return errors.New("artifact: demo version is empty")
	}
	if len(v) > 64 {
		return fmt.Errorf("artifact: demo version %q is longer than 64 characters", truncate(v))
	}
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == '_', c == '+', c == '~':
		default:
			return fmt.Errorf("artifact: demo version %q: character %q not allowed", v, c)
		}
	}
	return nil
}
