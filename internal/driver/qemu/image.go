package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vmssd/vmssd/internal/artifact"
	"github.com/vmssd/vmssd/internal/driver"
)

// Defaults of a vmssd.qemu/v1 image.
const (
	defaultGuestPort  = 80
	defaultHealthPath = "/"
	maxManifestBytes  = 1 << 20
)

// image is a usable vmssd.qemu/v1 image: the manifest's fields with absolute
// paths into the image directory.
type image struct {
	Version    string
	HealthPath string
	// Kernel, Initrd and Disk are absolute paths (empty when unused).
	Kernel, Initrd, Cmdline string
	Disk                    string
	DiskFormat              string
	CloudInit               bool
	MinMemoryMB             int
	GuestPort               int
}

// directBoot reports whether the image boots a kernel directly.
func (img image) directBoot() bool { return img.Kernel != "" }

// loadImage reads and checks the image in dir. It returns the image and the
// raw manifest (kept next to the instance). Errors wrap
// driver.ErrImageInvalid when dir is not a usable image.
func loadImage(dir string) (image, []byte, error) {
	if dir == "" {
		return image{}, nil, fmt.Errorf("%w: empty image directory", driver.ErrImageInvalid)
	}
	raw, err := os.ReadFile(filepath.Join(dir, artifact.ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return image{}, nil, fmt.Errorf("%w: %s: no %s", driver.ErrImageInvalid, dir, artifact.ManifestFile)
	}
	if err != nil {
		return image{}, nil, fmt.Errorf("qemu: read image manifest: %w", err)
	}
	img, err := parseImage(dir, raw)
	if err != nil {
		return image{}, nil, err
	}
	return img, raw, nil
}

// parseImage checks a manifest of the image in dir. Validating the whole
// manifest is package artifact's job: this checks what the driver relies
// on, and that the files it names exist.
func parseImage(dir string, raw []byte) (image, error) {
	bad := func(format string, args ...any) (image, error) {
		return image{}, fmt.Errorf("%w: %s: %s", driver.ErrImageInvalid, dir, fmt.Sprintf(format, args...))
	}
	if len(raw) > maxManifestBytes {
		return bad("manifest has %d bytes (max %d)", len(raw), maxManifestBytes)
	}
	var m artifact.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return bad("manifest: %v", err)
	}
	if m.Format != artifact.FormatQEMUV1 {
		return bad("format %q: the qemu driver runs %q images", m.Format, artifact.FormatQEMUV1)
	}
	q := m.QEMU
	if q == nil {
		return bad("no \"qemu\" section")
	}
	img := image{
		Version:     m.Version,
		HealthPath:  m.HealthProbe.Path,
		Cmdline:     q.Cmdline,
		DiskFormat:  q.DiskFormat,
		CloudInit:   q.CloudInit,
		MinMemoryMB: q.MinMemoryMB,
		GuestPort:   q.GuestPort,
	}
	if img.HealthPath == "" {
		img.HealthPath = defaultHealthPath
	}
	if !strings.HasPrefix(img.HealthPath, "/") || strings.ContainsAny(img.HealthPath, " \t\r\n\x00#") {
		return bad("healthProbe.path %q is not an absolute request path", img.HealthPath)
	}
	if img.GuestPort == 0 {
		img.GuestPort = defaultGuestPort
	}
	if img.GuestPort < 1 || img.GuestPort > 65535 || img.GuestPort == sshGuestPort {
		return bad("qemu.guestPort %d: want 1-65535, not %d", img.GuestPort, sshGuestPort)
	}
	if img.MinMemoryMB < 0 {
		return bad("qemu.minMemoryMB %d is negative", img.MinMemoryMB)
	}
	if strings.ContainsAny(img.Cmdline, "\x00\n") {
		return bad("qemu.cmdline contains a NUL or newline")
	}
	switch img.DiskFormat {
	case "":
		img.DiskFormat = "qcow2"
	case "qcow2", "raw":
	default:
		return bad("qemu.diskFormat %q: want qcow2 or raw", img.DiskFormat)
	}
	rootfs := filepath.Join(dir, artifact.RootfsDir)
	file := func(field, rel string) (string, error) {
		if rel == "" {
			return "", nil
		}
		if !filepath.IsLocal(rel) {
			return "", fmt.Errorf("%w: %s: qemu.%s %q is not a path inside %s/", driver.ErrImageInvalid, dir, field, rel, artifact.RootfsDir)
		}
		p := filepath.Join(rootfs, rel)
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("%w: %s: qemu.%s: %v", driver.ErrImageInvalid, dir, field, err)
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%w: %s: qemu.%s %q is not a regular file", driver.ErrImageInvalid, dir, field, rel)
		}
		return p, nil
	}
	var err error
	if img.Kernel, err = file("kernel", q.Kernel); err != nil {
		return image{}, err
	}
	if img.Initrd, err = file("initrd", q.Initrd); err != nil {
		return image{}, err
	}
	if img.Disk, err = file("disk", q.Disk); err != nil {
		return image{}, err
	}
	switch {
	case img.Kernel == "" && img.Disk == "":
		return bad("qemu: needs a kernel (direct boot) or a disk")
	case img.Kernel == "" && (img.Initrd != "" || img.Cmdline != ""):
		return bad("qemu: initrd and cmdline need a kernel")
	}
	return img, nil
}

// sameImage reports whether two specs name the same image: by digest when
// both have one, else by directory.
func sameImage(a, b driver.Spec) bool {
	if a.ImageDigest != "" && b.ImageDigest != "" {
		return a.ImageDigest == b.ImageDigest
	}
	return filepath.Clean(a.ImageDir) == filepath.Clean(b.ImageDir)
}

// Guest-facing names.
const (
	sshGuestPort = 22
	// fwCfgMetadata is the fw_cfg file carrying the instance metadata
	// (driver.Metadata as JSON); a Linux guest with qemu_fw_cfg loaded reads
	// it at /sys/firmware/qemu_fw_cfg/by_name/opt/vmssd/metadata/raw.
	fwCfgMetadata = "opt/vmssd/metadata"
)

// kernelParams returns the vmssd.* kernel parameters of a direct-boot VM.
// Values are percent-encoded outside [A-Za-z0-9._:@+-], so that a value
// cannot end a parameter or inject another.
func kernelParams(spec driver.Spec, img image) string {
	md := spec.Metadata
	version := md.ImageVersion
	if version == "" {
		version = img.Version
	}
	params := []struct{ k, v string }{
		{"hostname", md.ComputerName},
		{"instance", md.InstanceID},
		{"vmid", md.VMID},
		{"fd", strconv.Itoa(md.FaultDomain)},
		{"ud", strconv.Itoa(md.UpdateDomain)},
		{"vmss", md.VMScaleSetName},
		{"version", version},
	}
	var b strings.Builder
	for i, p := range params {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("vmssd." + p.k + "=" + paramEscape(p.v))
	}
	return b.String()
}

// networkParams tells a direct-boot guest the address of its NIC on a
// virtual network (its second NIC): vmssd.netip=CIDR and, when set,
// vmssd.netgw=ADDR (validated IPv4 values: nothing to escape).
func networkParams(n driver.Network) string {
	s := "vmssd.netip=" + n.PrivateIP + "/" + strconv.Itoa(n.PrefixLen)
	if n.Gateway != "" {
		s += " vmssd.netgw=" + n.Gateway
	}
	return s
}

func paramEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			c == '.', c == '_', c == ':', c == '@', c == '+', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// validHostname reports whether s can be handed to QEMU's DHCP server as a
// hostname (it would otherwise need option escaping).
func validHostname(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}
