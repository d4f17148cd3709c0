package vmimage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBootVirtualNetwork boots the demo guest in QEMU with a second NIC,
// as internal/driver/qemu attaches one to a virtual network, and the
// kernel parameters vmssd.netip= and vmssd.netgw=. Both NICs are QEMU user
// networks (restricted) here, each with a forward from 127.0.0.1: the one
// to eth1 reaches the guest's HTTP server only if /init gave eth1 its
// address and brought it up, and the one to eth0 must keep working with
// the default route moved to eth1.
func TestBootVirtualNetwork(t *testing.T) {
	requireBuild(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		SkipOrFail(t, fmt.Errorf("%w: qemu-system-x86_64 (apt-get install qemu-system-x86)", err))
	}
	const version = "1.0.0"
	dir := unpackArtifact(t, Build(t, version, false))
	eth0, eth1 := freePort(t), freePort(t)
	console := filepath.Join(t.TempDir(), "console")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// TCG, as on hosts without (nested) KVM: it boots in seconds.
	args := []string{
		"-machine", "pc", "-accel", "tcg,thread=single,tb-size=16", "-cpu", "qemu64", "-m", "128", "-nographic", "-no-reboot", "-nodefaults", "-serial", "file:" + console,
		"-kernel", filepath.Join(dir, "rootfs", "vmlinuz"), "-initrd", filepath.Join(dir, "rootfs", "initrd.img"),
		"-append", "console=ttyS0 quiet panic=-1 nokaslr vmssd.hostname=net-test vmssd.netip=10.0.5.4/24 vmssd.netgw=10.0.5.2",
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:80", eth0),
		"-device", "virtio-net-pci,netdev=n0,romfile=",
		"-netdev", fmt.Sprintf("user,id=n1,restrict=on,net=10.0.5.0/24,hostfwd=tcp:127.0.0.1:%d-10.0.5.4:80", eth1),
		"-device", "virtio-net-pci,netdev=n1,romfile=,mac=52:54:00:12:34:57",
	}
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	for _, port := range []int{eth0, eth1} {
		body, err := waitHealth(ctx, port)
		if err != nil {
			out, _ := os.ReadFile(console)
			t.Fatalf("/health through the forward to port %d: %v\nconsole:\n%s", port, err, out)
		}
		if !strings.Contains(body, `"imageVersion":"`+version+`"`) {
			t.Errorf("/health through port %d: %s", port, body)
		}
	}
	if out, _ := os.ReadFile(console); !strings.Contains(string(out), "vmssd-guest: eth1 10.0.5.4/24 gateway 10.0.5.2") {
		t.Errorf("console does not report eth1:\n%s", out)
	}
}

// waitHealth GETs http://127.0.0.1:port/health until it answers 200.
func waitHealth(ctx context.Context, port int) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	var last error
	for {
		resp, err := c.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && rerr == nil {
				return string(b), nil
			}
			err = fmt.Errorf("status %d, %v", resp.StatusCode, rerr)
		}
		last = err
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// unpackArtifact extracts an artifact's regular files into a directory.
func unpackArtifact(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		dst := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(dst, dir+string(filepath.Separator)) {
			t.Fatalf("artifact entry %q escapes", h.Name)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
