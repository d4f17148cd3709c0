package artifact

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// Names inside an artifact and inside an unpacked image directory.
const (
	// ManifestFile is the manifest's name at the root of the archive and of
	// an unpacked image directory.
	ManifestFile = "manifest.json"
	// RootfsDir is the directory holding the image's files.
	RootfsDir = "rootfs"
)

// Manifest formats.
const (
	// FormatProcessV1 is a host process image: the entrypoint runs with its
	// working directory set to the instance's disk (a copy of rootfs/).
	FormatProcessV1 = "vmssd.process/v1"
)

// OS types, spelled as ARM spells storageProfile.osDisk.osType.
const (
	OSTypeLinux   = "Linux"
	OSTypeWindows = "Windows"
)

// GuestToken in an entrypoint argument is replaced by the path of the host's
// guest program (see Manifest.Command).
const GuestToken = "${VMSSD_GUEST}"

// Environment variables a process-format instance is started with.
const (
	// EnvPort is the port the instance serves its health probe on, on
	// 127.0.0.1.
	EnvPort = "VMSSD_PORT"
	// EnvMetadata is the path of the instance-metadata JSON document
	// (a driver.Metadata).
	EnvMetadata = "VMSSD_METADATA"
	// EnvDisk is the instance's disk directory (a fresh copy of rootfs/).
	EnvDisk = "VMSSD_DISK"
	// EnvReservedPrefix prefixes every variable vmssd sets; a manifest may
	// not set variables with this prefix.
	EnvReservedPrefix = "VMSSD_"
)

// maxManifestBytes bounds manifest.json.
const maxManifestBytes = 1 << 20

// ErrInvalidManifest is wrapped by every ParseManifest error.
var ErrInvalidManifest = errors.New("artifact: invalid manifest")

// Manifest describes an artifact: manifest.json at its root.
type Manifest struct {
	// Format is the artifact format, FormatProcessV1 or FormatQEMUV1.
	Format string `json:"format"`
	// OSType is OSTypeLinux or OSTypeWindows.
	OSType string `json:"osType"`
	// Name and Version are informative (the image's own idea of itself).
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// Entrypoint is the command (argv) the instance runs. Arguments may
	// contain GuestToken. Process format only.
	Entrypoint []string `json:"entrypoint,omitempty"`
	// Env is added to the instance's environment. Keys may not start with
	// EnvReservedPrefix. Process format only.
	Env map[string]string `json:"env,omitempty"`
	// HealthProbe is what the host probes once the instance runs.
	HealthProbe HealthProbe `json:"healthProbe"`
	// QEMU describes a virtual machine image: required by FormatQEMUV1,
	// refused by FormatProcessV1.
	QEMU *QEMUImage `json:"qemu,omitempty"`
}

// FormatQEMUV1 is the format of virtual machine images run by the qemu
// driver: a kernel+initrd pair (direct boot) or a boot disk, under rootfs/.
const FormatQEMUV1 = "vmssd.qemu/v1"

// QEMUImage is the virtual machine part of a FormatQEMUV1 manifest. Paths are
// relative to the artifact's rootfs/ directory: canonical (no "..", "." or
// empty components, no leading "/"), without control bytes, "\" or ",", and
// naming regular files of the archive (Store.Import checks that). An image
// boots either a kernel (with an optional initrd and command line) or a
// disk (with an optional disk format), never both.
type QEMUImage struct {
	// Kernel and Initrd boot the VM directly (no disk): every boot starts
	// from the pristine initramfs, so a "disk" is only the instance's
	// overlay state, if any.
	Kernel string `json:"kernel,omitempty"`
	Initrd string `json:"initrd,omitempty"`
	// Cmdline is the kernel command line for direct boot.
	Cmdline string `json:"cmdline,omitempty"`
	// Disk is a boot disk image; each instance boots a copy-on-write
	// overlay of it.
	Disk string `json:"disk,omitempty"`
	// DiskFormat is DiskFormatQCOW2 (the default, when empty) or
	// DiskFormatRaw. Only with Disk.
	DiskFormat string `json:"diskFormat,omitempty"`
	// CloudInit asks for a NoCloud seed (hostname, admin user, ssh keys,
	// customData).
	CloudInit bool `json:"cloudInit,omitempty"`
	// MinMemoryMB is the least memory the image boots with.
	MinMemoryMB int `json:"minMemoryMB,omitempty"`
	// GuestPort is the port the health probe is served on inside the VM
	// (0 means DefaultGuestPort); the host forwards a loopback port to it.
	GuestPort int `json:"guestPort,omitempty"`
}

// QEMU image limits and defaults (see QEMUImage).
const (
	// DefaultGuestPort is the guest port of a QEMUImage with GuestPort 0.
	DefaultGuestPort = 80
	// MaxMinMemoryMB bounds QEMUImage.MinMemoryMB (64 GiB).
	MaxMinMemoryMB = 65536
	// MaxCmdlineBytes bounds QEMUImage.Cmdline, leaving room in the
	// kernel's 2048-byte command line for what the driver appends.
	MaxCmdlineBytes = 1024
	// DiskFormatQCOW2 and DiskFormatRaw are the accepted disk formats.
	DiskFormatQCOW2 = "qcow2"
	DiskFormatRaw   = "raw"
)

// Port returns the guest port of the health probe: GuestPort, or
// DefaultGuestPort when it is 0.
func (q QEMUImage) Port() int {
	if q.GuestPort == 0 {
		return DefaultGuestPort
	}
	return q.GuestPort
}

// Format returns the disk format: DiskFormat, or DiskFormatQCOW2 when it is
// empty. It is meaningless for direct kernel boot.
func (q QEMUImage) Format() string {
	if q.DiskFormat == "" {
		return DiskFormatQCOW2
	}
	return q.DiskFormat
}

// Files returns the paths, relative to rootfs/, of the files the image
// names (kernel, initrd, disk), in that order, without empty ones. An
// artifact must hold each of them as a regular file.
func (q QEMUImage) Files() []string {
	var out []string
	for _, p := range []string{q.Kernel, q.Initrd, q.Disk} {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// validate checks q on its own (not against an archive's files).
func (q QEMUImage) validate() error {
	switch {
	case q.Kernel == "" && q.Disk == "":
		return errors.New("qemu needs a kernel (direct boot) or a disk")
	case q.Kernel != "" && q.Disk != "":
		return errors.New("qemu.kernel and qemu.disk are exclusive: boot a kernel or a disk, not both")
	}
	for _, f := range []struct{ field, path string }{
		{"kernel", q.Kernel}, {"initrd", q.Initrd}, {"disk", q.Disk},
	} {
		if f.path == "" {
			continue
		}
		if err := checkImagePath(f.path); err != nil {
			return fmt.Errorf("qemu.%s %q: %w", f.field, truncate(f.path), err)
		}
	}
	if q.Kernel == "" {
		// Disk boot: the kernel, its initrd and its command line come
		// from the disk; refuse fields that would be silently ignored.
		if q.Initrd != "" {
			return errors.New("qemu.initrd needs qemu.kernel")
		}
		if q.Cmdline != "" {
			return errors.New("qemu.cmdline needs qemu.kernel")
		}
	} else if q.DiskFormat != "" {
		return errors.New("qemu.diskFormat needs qemu.disk")
	}
	switch q.DiskFormat {
	case "", DiskFormatQCOW2, DiskFormatRaw:
	default:
		return fmt.Errorf("qemu.diskFormat %q: want %q or %q", truncate(q.DiskFormat), DiskFormatQCOW2, DiskFormatRaw)
	}
	if len(q.Cmdline) > MaxCmdlineBytes {
		return fmt.Errorf("qemu.cmdline is %d bytes (max %d)", len(q.Cmdline), MaxCmdlineBytes)
	}
	if strings.ContainsAny(q.Cmdline, "\x00\r\n") {
		return errors.New("qemu.cmdline contains a NUL byte or a line break")
	}
	if q.MinMemoryMB < 0 || q.MinMemoryMB > MaxMinMemoryMB {
		return fmt.Errorf("qemu.minMemoryMB %d: want 0 to %d", q.MinMemoryMB, MaxMinMemoryMB)
	}
	if q.GuestPort < 0 || q.GuestPort > 65535 {
		return fmt.Errorf("qemu.guestPort %d: want 0 (meaning %d) to 65535", q.GuestPort, DefaultGuestPort)
	}
	return nil
}

// checkImagePath checks a path a QEMUImage names: canonical and relative
// (no "..", "." or empty components, no leading or trailing "/"), not the
// rootfs itself, without NUL or other control bytes, backslashes or commas
// (QEMU's option syntax would split a path at a comma).
func checkImagePath(p string) error {
	switch {
	case len(p) > maxPathBytes:
		return fmt.Errorf("longer than %d bytes", maxPathBytes)
	case p == "." || !fs.ValidPath(p):
		return errors.New("want a canonical path relative to rootfs/ (no \"..\", \".\" or empty components, no leading \"/\")")
	case strings.ContainsAny(p, `\,`):
		return errors.New(`"\" and "," are not allowed`)
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] == 0x7f {
			return errors.New("contains a control character")
		}
	}
	return nil
}

// HealthProbe is the application health probe of an image, served on
// 127.0.0.1:$VMSSD_PORT by a process image and on QEMUImage.Port() inside
// a virtual machine.
type HealthProbe struct {
	// Protocol is "http".
	Protocol string `json:"protocol"`
	// Path is the request path, starting with "/" (e.g. "/health").
	Path string `json:"path"`
}

// ParseManifest decodes and validates a manifest. Unknown fields and trailing
// data are rejected. Errors wrap ErrInvalidManifest.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	if len(data) > maxManifestBytes {
		return m, fmt.Errorf("%w: %d bytes (max %d)", ErrInvalidManifest, len(data), maxManifestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %w", ErrInvalidManifest, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidManifest)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Validate checks m against its format. Errors wrap ErrInvalidManifest.
func (m Manifest) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidManifest, fmt.Sprintf(format, args...))
	}
	switch m.Format {
	case FormatProcessV1, FormatQEMUV1:
	case "":
		return bad("format is missing")
	default:
		return bad("unknown format %q", truncate(m.Format))
	}
	switch m.OSType {
	case OSTypeLinux, OSTypeWindows:
	default:
		return bad("osType %q: want %q or %q", truncate(m.OSType), OSTypeLinux, OSTypeWindows)
	}
	switch m.Format {
	case FormatProcessV1:
		if m.QEMU != nil {
			return bad("format %s cannot have a qemu section", m.Format)
		}
		if len(m.Entrypoint) == 0 || m.Entrypoint[0] == "" {
			return bad("format %s needs a non-empty entrypoint", m.Format)
		}
		for i, a := range m.Entrypoint {
			if strings.IndexByte(a, 0) >= 0 {
				return bad("entrypoint[%d] contains a NUL byte", i)
			}
		}
		for k, v := range m.Env {
			switch {
			case k == "" || strings.ContainsAny(k, "=\x00"):
				return bad("env key %q is not a valid variable name", truncate(k))
			case strings.HasPrefix(strings.ToUpper(k), EnvReservedPrefix):
				return bad("env key %q: the %s prefix is reserved", truncate(k), EnvReservedPrefix)
			case strings.IndexByte(v, 0) >= 0:
				return bad("env %q: value contains a NUL byte", truncate(k))
			}
		}
	case FormatQEMUV1:
		if len(m.Entrypoint) > 0 {
			return bad("format %s has no entrypoint (the VM boots its kernel or disk)", m.Format)
		}
		if len(m.Env) > 0 {
			return bad("format %s has no env", m.Format)
		}
		if m.QEMU == nil {
			return bad("format %s needs a qemu section", m.Format)
		}
		if err := m.QEMU.validate(); err != nil {
			return bad("%v", err)
		}
	}
	if m.HealthProbe.Protocol != "http" {
		return bad("healthProbe.protocol %q: want \"http\"", truncate(m.HealthProbe.Protocol))
	}
	if !strings.HasPrefix(m.HealthProbe.Path, "/") || strings.HasPrefix(m.HealthProbe.Path, "//") ||
		strings.ContainsAny(m.HealthProbe.Path, " \t\r\n\x00#") {
		return bad("healthProbe.path %q: want an absolute request path such as \"/health\"", truncate(m.HealthProbe.Path))
	}
	return nil
}

// Command returns the entrypoint with every GuestToken replaced by guest (the
// path of the host's guest program).
func (m Manifest) Command(guest string) []string {
	out := make([]string, len(m.Entrypoint))
	for i, a := range m.Entrypoint {
		out[i] = strings.ReplaceAll(a, GuestToken, guest)
	}
	return out
}
