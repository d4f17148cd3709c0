package qemu

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// The test guest: Debian's cloud kernel (extracted from its .deb, cached in
// $VMSSD_QEMU_TEST_CACHE or the user cache directory) and a busybox
// initramfs built here. Its /init loads virtio-net, virtio-blk, isofs,
// qemu_fw_cfg and the ACPI button, configures eth0 for QEMU user
// networking and serves on port 80:
//
//	/health         {"status":"Healthy","imageVersion":VERSION}
//	/cmdline        the kernel command line
//	/metadata       the fw_cfg file opt/vmssd/metadata
//	/meta-data      meta-data of a cloud-init seed, if one is attached
//	/cgi-bin/disk   GET: the first sector of /dev/vda; POST: writes it
//	/cgi-bin/poweroff  powers the guest off a second later
//	/cgi-bin/reach?PORT  tries to fetch http://10.0.2.2:PORT/ (the host)
//	/cgi-bin/fetch?ADDR  fetches http://ADDR/cmdline (a neighbour)
//
// With vmssd.netip=CIDR on the command line it gives that address to eth1
// (its NIC on a virtual network).
// then prints GUEST-READY on the console. The ACPI power button powers it
// off. "test.nohttp" on the command line skips the HTTP server and the
// ready line (a guest that never boots, for deadline tests).

const guestPoweroffCGI = `#!/bin/sh
echo "Content-Type: text/plain"
echo
echo bye
(sleep 1; echo "test guest: powering off on request" > /dev/console; poweroff -f) </dev/null >/dev/null 2>&1 &
`

// kernelModules are loaded in this order (dependencies first).
var kernelModules = []string{
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
	"drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci",
	"net/core/failover", "drivers/net/net_failover", "drivers/net/virtio_net",
	"drivers/block/virtio_blk", "drivers/cdrom/cdrom", "fs/isofs/isofs",
	"drivers/firmware/qemu_fw_cfg", "drivers/acpi/button", "drivers/input/evdev",
}

const guestInit = `#!/bin/busybox sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do insmod /lib/modules/$m.ko 2>/dev/null; done
CMDLINE=" $(cat /proc/cmdline) "
param() { for a in $CMDLINE; do case $a in "$1"=*) echo "${a#*=}"; return;; esac; done; }
V=$(cat /etc/version)
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do usleep 50000; i=$((i+1)); done
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
NETIP=$(param vmssd.netip)
if [ -n "$NETIP" ]; then
  i=0; while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 100 ]; do usleep 50000; i=$((i+1)); done
  ip link set eth1 up
  ip addr add "$NETIP" dev eth1
fi
hostname "$(param vmssd.hostname)"
printf '{"status":"Healthy","imageVersion":"%s"}\n' "$V" > /www/health
cat /proc/cmdline > /www/cmdline
md=/sys/firmware/qemu_fw_cfg/by_name/opt/vmssd/metadata/raw
[ -r $md ] && cat $md > /www/metadata
for b in /dev/vd?; do
  if mount -t iso9660 -o ro "$b" /mnt 2>/dev/null; then
    cp /mnt/meta-data /www/meta-data; cp /mnt/user-data /www/user-data; umount /mnt
  fi
done
acpid -c /etc/acpi -l /dev/console
case $CMDLINE in
*" test.nohttp "*) echo "test guest $V: no HTTP" ;;
*) httpd -p 80 -h /www; echo "GUEST-READY version=$V" ;;
esac
while :; do sleep 3600; done
`

const guestPowerButton = `#!/bin/sh
echo "test guest: ACPI power button, powering off" > /dev/console
sync
poweroff -f
`

// guestReachCGI tries to fetch http://10.0.2.2:<query>/ (the host, through
// QEMU user networking) and says whether it got the host's "host-secret".
const guestReachCGI = `#!/bin/sh
echo "Content-Type: text/plain"
echo
printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 10.0.2.2 "$QUERY_STRING" >/tmp/reach 2>/tmp/reach.err
if grep -q host-secret /tmp/reach; then
  echo "reached: $(cat /tmp/reach)"
else
  echo "unreachable: $(cat /tmp/reach.err)"
fi
`

// guestFetchCGI fetches http://<query>/cmdline (another guest, by its
// private IP) and prints it, or nc's error.
const guestFetchCGI = `#!/bin/sh
echo "Content-Type: text/plain"
echo
printf 'GET /cmdline HTTP/1.0\r\n\r\n' | nc -w 3 "$QUERY_STRING" 80 2>&1
`

const guestDiskCGI = `#!/bin/sh
echo "Content-Type: text/plain"
echo
if [ "$REQUEST_METHOD" = POST ]; then
  head -c "${CONTENT_LENGTH:-0}" > /tmp/body
  dd if=/tmp/body of=/dev/vda bs=512 count=1 conv=sync,notrunc 2>/dev/null
  sync
  echo ok
else
  dd if=/dev/vda bs=512 count=1 2>/dev/null | tr -d '\000'
fi
`

// requireQEMU skips the test when QEMU is not installed, unless
// VMSSD_E2E=1 (then it fails).
func requireQEMU(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(bin); err != nil {
			skipOrFail(t, "%s not installed: %v", bin, err)
		}
	}
}

func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("VMSSD_E2E") == "1" {
		t.Fatalf("VMSSD_E2E=1: "+format, args...)
	}
	t.Skipf(format, args...)
}

var (
	kernelOnce          sync.Once
	kernelPath, modPath string
	kernelErr           error
)

// testKernel returns the path of the cached Debian cloud kernel and of its
// modules directory, downloading and extracting the package once.
func testKernel(t testing.TB) (vmlinuz, moddir string) {
	t.Helper()
	kernelOnce.Do(func() { kernelPath, modPath, kernelErr = fetchKernel() })
	if kernelErr != nil {
		skipOrFail(t, "no test kernel: %v", kernelErr)
	}
	return kernelPath, modPath
}

func fetchKernel() (string, string, error) {
	cache := os.Getenv("VMSSD_QEMU_TEST_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", "", err
		}
		cache = filepath.Join(base, "vmssd-qemu-test")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", "", err
	}
	lock, err := os.OpenFile(filepath.Join(cache, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", "", err
	}
	debs, _ := filepath.Glob(filepath.Join(cache, "linux-image-*-cloud-amd64_*.deb"))
	if len(debs) == 0 {
		out, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("apt-cache depends: %v: %s", err, out)
		}
		pkg := ""
		for line := range strings.SplitSeq(string(out), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				pkg = f[1]
				break
			}
		}
		if pkg == "" {
			return "", "", fmt.Errorf("linux-image-cloud-amd64 depends on no kernel package: %s", out)
		}
		cmd := exec.Command("apt-get", "download", pkg)
		cmd.Dir = cache
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("apt-get download %s: %v: %s", pkg, err, out)
		}
		debs, _ = filepath.Glob(filepath.Join(cache, "linux-image-*-cloud-amd64_*.deb"))
		if len(debs) == 0 {
			return "", "", fmt.Errorf("apt-get download %s left no .deb in %s", pkg, cache)
		}
	}
	deb := debs[len(debs)-1]
	x := filepath.Join(cache, "x-"+strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if !exists(filepath.Join(x, ".done")) {
		os.RemoveAll(x)
		if out, err := exec.Command("dpkg", "-x", deb, x).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("dpkg -x: %v: %s", err, out)
		}
		if err := os.WriteFile(filepath.Join(x, ".done"), nil, 0o644); err != nil {
			return "", "", err
		}
	}
	kernels, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		return "", "", fmt.Errorf("no vmlinuz in %s", deb)
	}
	rel := strings.TrimPrefix(filepath.Base(kernels[0]), "vmlinuz-")
	return kernels[0], filepath.Join(x, "lib", "modules", rel, "kernel"), nil
}

// cpioWriter writes a newc cpio archive.
type cpioWriter struct {
	w   io.Writer
	ino int
	err error
}

func (c *cpioWriter) entry(name string, mode uint32, data []byte, rdevMajor, rdevMinor int) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	var b bytes.Buffer
	b.WriteString(hdr)
	b.WriteString(name)
	b.WriteByte(0)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	b.Write(data)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	_, c.err = c.w.Write(b.Bytes())
}

func (c *cpioWriter) dir(name string)                      { c.entry(name, unix.S_IFDIR|0o755, nil, 0, 0) }
func (c *cpioWriter) file(name string, m uint32, b []byte) { c.entry(name, unix.S_IFREG|m, b, 0, 0) }

func (c *cpioWriter) close() error {
	c.entry("TRAILER!!!", 0, nil, 0, 0)
	return c.err
}

var (
	initrdMu    sync.Mutex
	initrdCache = map[string][]byte{}
)

// testInitrd returns the gzipped initramfs of the test guest of version.
func testInitrd(t testing.TB, version, moddir string) []byte {
	t.Helper()
	initrdMu.Lock()
	defer initrdMu.Unlock()
	if b, ok := initrdCache[version]; ok {
		return b
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		skipOrFail(t, "busybox not installed: %v", err)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(bb[:min(len(bb), 4096)], []byte("ELF")) {
		t.Fatalf("%s is not an ELF binary", busybox)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	c := &cpioWriter{w: zw}
	for _, d := range []string{"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/acpi", "etc/acpi/PWRF",
		"lib", "lib/modules", "proc", "sys", "dev", "tmp", "mnt", "run", "var", "var/log", "www", "www/cgi-bin"} {
		c.dir(d)
	}
	c.entry("dev/console", unix.S_IFCHR|0o600, nil, 5, 1)
	c.file("bin/busybox", 0o755, bb)
	c.file("init", 0o755, []byte(guestInit))
	c.file("etc/version", 0o644, []byte(version+"\n"))
	c.file("etc/acpi/PWRF/00000080", 0o755, []byte(guestPowerButton))
	c.file("www/cgi-bin/disk", 0o755, []byte(guestDiskCGI))
	c.file("www/cgi-bin/poweroff", 0o755, []byte(guestPoweroffCGI))
	c.file("www/cgi-bin/reach", 0o755, []byte(guestReachCGI))
	c.file("www/cgi-bin/fetch", 0o755, []byte(guestFetchCGI))
	var names []string
	for _, m := range kernelModules {
		ko, err := os.ReadFile(filepath.Join(moddir, m+".ko"))
		if err != nil {
			t.Fatalf("test kernel module: %v", err)
		}
		name := filepath.Base(m)
		c.file("lib/modules/"+name+".ko", 0o644, ko)
		names = append(names, name)
	}
	c.file("etc/modules", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	initrdCache[version] = buf.Bytes()
	return buf.Bytes()
}

// imageOpts describe a test image.
type imageOpts struct {
	version   string
	disk      bool   // add a 1 MiB raw disk (the VM gets a qcow2 overlay of it)
	cloudInit bool   // ask for a NoCloud seed
	noKernel  bool   // disk only: nothing bootable on it
	cmdline   string // added to the kernel command line
}

// testImage writes a vmssd.qemu/v1 image directory and returns it.
func testImage(t testing.TB, o imageOpts) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	q := map[string]any{"minMemoryMB": 96, "guestPort": 80}
	if !o.noKernel {
		vmlinuz, moddir := testKernel(t)
		if err := os.Link(vmlinuz, filepath.Join(rootfs, "vmlinuz")); err != nil {
			b, err := os.ReadFile(vmlinuz)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(rootfs, "vmlinuz"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(rootfs, "initrd.img"), testInitrd(t, o.version, moddir), 0o644); err != nil {
			t.Fatal(err)
		}
		q["kernel"], q["initrd"] = "vmlinuz", "initrd.img"
		q["cmdline"] = strings.TrimSpace("console=ttyS0 quiet panic=-1 nokaslr " + o.cmdline)
	}
	if o.disk || o.noKernel {
		if err := os.WriteFile(filepath.Join(rootfs, "disk.raw"), make([]byte, 1<<20), 0o644); err != nil {
			t.Fatal(err)
		}
		q["disk"], q["diskFormat"] = "disk.raw", "raw"
	}
	q["cloudInit"] = o.cloudInit
	m := map[string]any{
		"format":      "vmssd.qemu/v1",
		"osType":      "Linux",
		"name":        "qemu-test",
		"version":     o.version,
		"healthProbe": map[string]string{"protocol": "http", "path": "/health"},
		"qemu":        q,
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
