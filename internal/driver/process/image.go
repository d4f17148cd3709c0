package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vmssd/vmssd/internal/driver"
)

// Names and values of the image layout (see package artifact, which this
// package deliberately does not import: it only needs a few manifest fields).
const (
	manifestFile      = "manifest.json"
	rootfsDir         = "rootfs"
	formatProcessV1   = "vmssd.process/v1"
	guestToken        = "${VMSSD_GUEST}"
	envPort           = "VMSSD_PORT"
	envMetadata       = "VMSSD_METADATA"
	envDisk           = "VMSSD_DISK"
	envReservedPrefix = "VMSSD_"
	maxManifestBytes  = 1 << 20
	defaultHealthPath = "/"
)

// manifest is the part of an image's manifest.json this driver uses. Unknown
// fields are ignored: validating the whole manifest is package artifact's job.
type manifest struct {
	Format      string            `json:"format"`
	Entrypoint  []string          `json:"entrypoint"`
	Env         map[string]string `json:"env"`
	HealthProbe struct {
		Path string `json:"path"`
	} `json:"healthProbe"`
}

// healthPath is the request path of the health probe ("/" when the manifest
// names none).
func (m manifest) healthPath() string {
	if m.HealthProbe.Path == "" {
		return defaultHealthPath
	}
	return m.HealthProbe.Path
}

// command returns the entrypoint with the guest token replaced by guest.
func (m manifest) command(guest string) []string {
	out := make([]string, len(m.Entrypoint))
	for i, a := range m.Entrypoint {
		out[i] = strings.ReplaceAll(a, guestToken, guest)
	}
	return out
}

// parseManifest decodes and checks the fields this driver relies on. Errors
// wrap driver.ErrImageInvalid.
func parseManifest(data []byte) (manifest, error) {
	var m manifest
	bad := func(format string, args ...any) (manifest, error) {
		return manifest{}, fmt.Errorf("%w: manifest: %s", driver.ErrImageInvalid, fmt.Sprintf(format, args...))
	}
	if len(data) > maxManifestBytes {
		return bad("%d bytes (max %d)", len(data), maxManifestBytes)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return bad("%v", err)
	}
	if m.Format != formatProcessV1 {
		return bad("format %q: want %q", m.Format, formatProcessV1)
	}
	if len(m.Entrypoint) == 0 || m.Entrypoint[0] == "" {
		return bad("empty entrypoint")
	}
	for i, a := range m.Entrypoint {
		if strings.IndexByte(a, 0) >= 0 {
			return bad("entrypoint[%d] contains a NUL byte", i)
		}
	}
	for k, v := range m.Env {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			return bad("env key %q is not a valid variable name", k)
		case strings.HasPrefix(strings.ToUpper(k), envReservedPrefix):
			return bad("env key %q: the %s prefix is reserved", k, envReservedPrefix)
		case strings.IndexByte(v, 0) >= 0:
			return bad("env %q: value contains a NUL byte", k)
		}
	}
	if p := m.HealthProbe.Path; p != "" && !strings.HasPrefix(p, "/") {
		return bad("healthProbe.path %q does not start with /", p)
	}
	return m, nil
}

// loadImage reads and checks an image directory. It returns the parsed
// manifest and its raw bytes (kept next to the instance so that the instance
// does not depend on the image directory once its disk exists). Errors wrap
// driver.ErrImageInvalid when the directory is not a usable image.
func loadImage(dir string) (manifest, []byte, error) {
	if dir == "" {
		return manifest{}, nil, fmt.Errorf("%w: empty image directory", driver.ErrImageInvalid)
	}
	data, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return manifest{}, nil, fmt.Errorf("%w: %s: no %s", driver.ErrImageInvalid, dir, manifestFile)
		}
		return manifest{}, nil, fmt.Errorf("process: read image manifest: %w", err)
	}
	m, err := parseManifest(data)
	if err != nil {
		return manifest{}, nil, fmt.Errorf("%s: %w", dir, err)
	}
	fi, err := os.Stat(filepath.Join(dir, rootfsDir))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return manifest{}, nil, fmt.Errorf("%w: %s: no %s directory", driver.ErrImageInvalid, dir, rootfsDir)
	case err != nil:
		return manifest{}, nil, fmt.Errorf("process: image rootfs: %w", err)
	case !fi.IsDir():
		return manifest{}, nil, fmt.Errorf("%w: %s: %s is not a directory", driver.ErrImageInvalid, dir, rootfsDir)
	}
	return m, data, nil
}

// sameImage reports whether two specs name the same image: by digest when
// both have one, else by directory.
func sameImage(a, b driver.Spec) bool {
	if a.ImageDigest != "" && b.ImageDigest != "" {
		return a.ImageDigest == b.ImageDigest
	}
	return filepath.Clean(a.ImageDir) == filepath.Clean(b.ImageDir)
}
