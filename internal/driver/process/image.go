package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/driver"
)

// Names and values of the image layout (package artifact defines the format).
const (
	manifestFile      = artifact.ManifestFile
	rootfsDir         = artifact.RootfsDir
	guestToken        = artifact.GuestToken
	envPort           = artifact.EnvPort
	envPrivateIP      = "VMSSD_PRIVATE_IP" // the instance's private IP, in bridge mode
	envMetadata       = artifact.EnvMetadata
	envDisk           = artifact.EnvDisk
	envReservedPrefix = artifact.EnvReservedPrefix
)

// manifest is an image's manifest.json.
type manifest struct{ artifact.Manifest }

// healthPath is the request path of the health probe.
func (m manifest) healthPath() string { return m.HealthProbe.Path }

// command returns the entrypoint with the guest token replaced by guest.
func (m manifest) command(guest string) []string { return m.Command(guest) }

// parseManifest decodes and validates a process image's manifest with
// package artifact's rules. Errors wrap driver.ErrImageInvalid.
func parseManifest(data []byte) (manifest, error) {
	m, err := artifact.ParseManifest(data)
	if err != nil {
		return manifest{}, fmt.Errorf("%w: %w", driver.ErrImageInvalid, err)
	}
	if m.Format != artifact.FormatProcessV1 {
		return manifest{}, fmt.Errorf("%w: manifest: format %q: want %q", driver.ErrImageInvalid, m.Format, artifact.FormatProcessV1)
	}
	return manifest{m}, nil
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
