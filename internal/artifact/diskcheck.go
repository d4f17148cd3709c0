package artifact

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// DiskInfo is what vmssd keeps of `qemu-img info` for one image of a disk's
// chain.
type DiskInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	// BackingFilename and FullBackingFilename name the image's backing
	// file, if its header has one.
	BackingFilename     string `json:"backing-filename"`
	FullBackingFilename string `json:"full-backing-filename"`
	BackingFormat       string `json:"backing-filename-format"`
	FormatSpecific      *struct {
		Type string `json:"type"`
		Data struct {
			// DataFile is a qcow2 external data file.
			DataFile string `json:"data-file"`
			Corrupt  bool   `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
}

// ParseDiskInfo checks the output of
// `qemu-img info --output=json --backing-chain -f <declared> <disk>` for a
// disk whose manifest declares format declared (DiskFormatQCOW2 or
// DiskFormatRaw): exactly one image (no backing chain), of the declared
// format, with no backing file, no external data file, not marked corrupt,
// and a virtual size of at most maxVirtual bytes (0: no bound). Errors wrap
// ErrInvalid; a virtual size beyond maxVirtual also wraps ErrTooLarge.
func ParseDiskInfo(out []byte, declared string, maxVirtual int64) (DiskInfo, error) {
	bad := func(format string, args ...any) (DiskInfo, error) {
		return DiskInfo{}, fmt.Errorf("%w: disk: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch declared {
	case DiskFormatQCOW2, DiskFormatRaw:
	default:
		return bad("format %q: only %s and %s disks are accepted", truncate(declared), DiskFormatQCOW2, DiskFormatRaw)
	}
	var chain []DiskInfo
	out = bytes.TrimSpace(out)
	if len(out) > 0 && out[0] == '{' { // qemu-img without --backing-chain
		out = append(append([]byte{'['}, out...), ']')
	}
	if err := json.Unmarshal(out, &chain); err != nil {
		return bad("cannot read qemu-img's description: %v", err)
	}
	if len(chain) == 0 {
		return bad("qemu-img described no image")
	}
	for _, img := range chain {
		if img.BackingFilename != "" || img.FullBackingFilename != "" || img.BackingFormat != "" {
			return bad("it names a backing file (%q): disks must be self-contained", truncate(cmp.Or(img.BackingFilename, img.FullBackingFilename)))
		}
		if fs := img.FormatSpecific; fs != nil && fs.Data.DataFile != "" {
			return bad("it names an external data file (%q): disks must be self-contained", truncate(fs.Data.DataFile))
		}
	}
	if len(chain) > 1 {
		return bad("it has a backing chain of %d images: disks must be self-contained", len(chain))
	}
	img := chain[0]
	switch img.Format {
	case DiskFormatQCOW2, DiskFormatRaw:
	default:
		return bad("format %q: only %s and %s disks are accepted", truncate(img.Format), DiskFormatQCOW2, DiskFormatRaw)
	}
	if img.Format != declared {
		return bad("the manifest says %s but the disk is %s", declared, img.Format)
	}
	if fs := img.FormatSpecific; fs != nil && fs.Data.Corrupt {
		return bad("the qcow2 image is marked corrupt")
	}
	if img.VirtualSize < 0 {
		return bad("negative virtual size %d", img.VirtualSize)
	}
	if maxVirtual > 0 && img.VirtualSize > maxVirtual {
		return DiskInfo{}, fmt.Errorf("%w: %w: disk: virtual size %d bytes exceeds %d bytes", ErrInvalid, ErrTooLarge, img.VirtualSize, maxVirtual)
	}
	return img, nil
}

// diskInspectTimeout bounds one qemu-img info.
const diskInspectTimeout = 30 * time.Second

// ErrNoQEMUImg is wrapped when a disk cannot be inspected because qemu-img
// is not installed. It also wraps ErrInvalid: the image is refused.
var ErrNoQEMUImg = errors.New("qemu-img is not installed: virtual machine disks cannot be checked on this host")

// inspectDisk runs qemu-img info on the disk at path (a file of vmssd's own,
// not yet visible to anything) and checks it with ParseDiskInfo. qemu-img
// reads the disk through an inherited descriptor and, when vmssd runs as
// root, as the unprivileged user nobody: whatever a header names, it can
// open nothing of the host that nobody cannot.
func inspectDisk(ctx context.Context, qemuImg, path, declared string, maxVirtual int64) (DiskInfo, error) {
	if qemuImg == "" {
		p, err := exec.LookPath("qemu-img")
		if err != nil {
			return DiskInfo{}, fmt.Errorf("%w: %w", ErrInvalid, ErrNoQEMUImg)
		}
		qemuImg = p
	}
	switch declared {
	case DiskFormatQCOW2, DiskFormatRaw:
	default: // never hand qemu-img a format name from outside
		return ParseDiskInfo(nil, declared, maxVirtual)
	}
	if err := os.Chmod(path, 0o444); err != nil {
		return DiskInfo{}, fmt.Errorf("artifact: inspect disk: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return DiskInfo{}, fmt.Errorf("artifact: inspect disk: %w", err)
	}
	defer f.Close()
	// The format is given: qemu-img never probes. --backing-chain reports
	// whatever a header would chain to; if that fails (a backing file
	// nobody may open), the image alone says why.
	out, qerr := qemuImgInfo(ctx, qemuImg, f, declared, true)
	if qerr != nil {
		var err error
		if out, err = qemuImgInfo(ctx, qemuImg, f, declared, false); err != nil {
			if ctx.Err() != nil {
				return DiskInfo{}, fmt.Errorf("artifact: inspect disk: %w", ctx.Err())
			}
			return DiskInfo{}, qerr
		}
		if _, err := ParseDiskInfo(out, declared, maxVirtual); err != nil {
			return DiskInfo{}, err
		}
		return DiskInfo{}, qerr
	}
	return ParseDiskInfo(out, declared, maxVirtual)
}

// qemuImgInfo runs qemu-img info on f as /dev/fd/3.
func qemuImgInfo(ctx context.Context, qemuImg string, f *os.File, format string, chain bool) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, diskInspectTimeout)
	defer cancel()
	args := []string{"info", "--output=json", "-U", "-f", format}
	if chain {
		args = append(args, "--backing-chain")
	}
	cmd := exec.CommandContext(ctx, qemuImg, append(args, "--", "/dev/fd/3")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limitedBuffer{buf: &stdout, max: 1 << 20}
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4 << 10}
	cmd.Env = []string{"LC_ALL=C", "PATH=" + os.Getenv("PATH")}
	cmd.ExtraFiles = []*os.File{f}
	cmd.Dir = "/"
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	}
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("artifact: inspect disk: %w", ctx.Err())
		}
		msg := strings.TrimSpace(strings.ReplaceAll(stderr.String(), "/dev/fd/3", "disk"))
		return nil, fmt.Errorf("%w: disk: qemu-img cannot read it as %s: %s", ErrInvalid, format, truncate(msg))
	}
	return stdout.Bytes(), nil
}

// nobody is the uid and gid qemu-img runs as when vmssd is root.
const nobody = 65534

// limitedBuffer keeps at most max bytes and discards the rest.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

var _ io.Writer = (*limitedBuffer)(nil)
