package qemu

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/netattach"
)

func fakeHost(pvm, kvmIntel bool, cpuFlags string, openErr error) hostProbe {
	return hostProbe{
		openKVM: func() error { return openErr },
		cpuinfo: func() ([]byte, error) {
			return []byte("processor\t: 0\nflags\t\t: fpu vme " + cpuFlags + " sse2\n\nprocessor\t: 1\n"), nil
		},
		module: func(name string) bool {
			return name == "kvm_pvm" && pvm || name == "kvm_intel" && kvmIntel
		},
	}
}

func TestDetectAccel(t *testing.T) {
	tests := []struct {
		name       string
		host       hostProbe
		want       string
		wantReason []string
	}{
		{"pvm", fakeHost(true, false, "", nil), AccelTCG,
			[]string{"KVM is not usable here (kvm_pvm;", "no vmx/svm", "using TCG software emulation"}},
		{"intel", fakeHost(false, true, "vmx", nil), AccelKVM, []string{"KVM is usable (kvm_intel)"}},
		{"no-module", fakeHost(false, false, "svm", nil), AccelTCG, []string{"neither kvm_intel nor kvm_amd"}},
		{"no-dev", fakeHost(false, true, "vmx", os.ErrNotExist), AccelTCG, []string{"no /dev/kvm"}},
		{"denied", fakeHost(false, true, "vmx", os.ErrPermission), AccelTCG, []string{"/dev/kvm: permission denied"}},
	}
	for _, tc := range tests {
		got, reason := detectAccel(tc.host)
		if got != tc.want {
			t.Errorf("%s: accel %q, want %q (%s)", tc.name, got, tc.want, reason)
		}
		for _, w := range tc.wantReason {
			if !strings.Contains(reason, w) {
				t.Errorf("%s: reason %q lacks %q", tc.name, reason, w)
			}
		}
	}
	accel, reason := DetectAccel()
	t.Logf("this host: %s: %s", accel, reason)
	if exists("/sys/module/kvm_pvm") && accel != AccelTCG {
		t.Errorf("a kvm_pvm host got %s", accel)
	}
	if a2, r2 := DetectAccel(); a2 != accel || r2 != reason {
		t.Error("DetectAccel is not stable")
	}
}

func TestParseMemTotal(t *testing.T) {
	mb, err := parseMemTotal([]byte("MemTotal:       24684096 kB\nMemFree: 1 kB\n"))
	if err != nil || mb != 24105 {
		t.Errorf("parseMemTotal = %d, %v", mb, err)
	}
	if _, err := parseMemTotal([]byte("MemFree: 1 kB\n")); err == nil {
		t.Error("no MemTotal: no error")
	}
	if mb, err := hostMemoryMB(); err != nil || mb <= 0 {
		t.Errorf("hostMemoryMB = %d, %v", mb, err)
	}
}

func TestKernelParams(t *testing.T) {
	spec := testSpec("vm-1", "/img")
	spec.Metadata.ComputerName = "web 1\x00x"
	spec.Metadata.ImageVersion = ""
	got := kernelParams(spec, image{Version: "1.2.3"})
	want := "vmssd.hostname=web%201%00x vmssd.instance=3 vmssd.vmid=vm-1 vmssd.fd=1 vmssd.ud=4 vmssd.vmss=web vmssd.version=1.2.3"
	if got != want {
		t.Errorf("kernelParams =\n%s\nwant\n%s", got, want)
	}
}

func TestQEMUArgs(t *testing.T) {
	d := &Driver{accel: AccelTCG}
	in := newInstance("vm-1", "/root/vm-1")
	img := image{Kernel: "/img/rootfs/vmlinuz", Initrd: "/img/rootfs/initrd.img", Cmdline: "console=ttyS0",
		Disk: "/img/rootfs/disk.qcow2", DiskFormat: "qcow2", CloudInit: true, GuestPort: 8080, HealthPath: "/health"}
	st := state{HealthPort: 40000, SSHPort: 40001, Resources: resources{VCPUs: 2, MemoryMB: 256}}
	args := d.qemuArgs(in, testSpec("vm-1", "/img"), img, st, false)
	line := strings.Join(args, " ")
	if strings.Contains(line, "tap") || strings.Contains(line, "vmssd.netip") {
		t.Errorf("a VM without a network has a TAP: %s", line)
	}
	for _, want := range []string{
		"-machine pc", "-accel tcg,thread=single,tb-size=16 -cpu qemu64", "-m 256", "-smp 2",
		"-nodefaults -no-user-config -nographic -no-reboot -monitor none",
		"-chardev file,id=serial0,path=console.log,append=on -serial chardev:serial0",
		"-qmp unix:run/qmp.sock,server=on,wait=off",
		"-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
		"-fw_cfg name=opt/vmssd/metadata,file=metadata.json",
		"-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40000-:8080,hostfwd=tcp:127.0.0.1:40001-:22,hostname=web000003",
		"-device virtio-net-pci,netdev=net0,romfile=",
		// The image's files, linked into the instance's disk directory.
		"-kernel disk/kernel -initrd disk/initrd",
		// Explicit block options: no header chooses a file or a format.
		`-blockdev {"backing":{"backing":null,"driver":"qcow2","file":{"driver":"file","filename":"disk/base.img","read-only":true},"node-name":"base0","read-only":true},` +
			`"discard":"unmap","driver":"qcow2","file":{"discard":"unmap","driver":"file","filename":"disk/overlay.qcow2"},"node-name":"disk0"} -device virtio-blk-pci,drive=disk0`,
		`-blockdev {"driver":"raw","file":{"driver":"file","filename":"disk/seed.iso","read-only":true},"node-name":"seed0","read-only":true} -device virtio-blk-pci,drive=seed0`,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("args lack %q:\n%s", want, line)
		}
	}
	i := slices.Index(args, "-append")
	if i < 0 || !strings.HasPrefix(args[i+1], "console=ttyS0 vmssd.hostname=web000003 ") {
		t.Errorf("-append: %q", args)
	}
	d.accel = AccelKVM
	img = image{Disk: "/img/rootfs/disk.raw", DiskFormat: "raw", GuestPort: 80}
	// On a virtual network: a second NIC on the TAP (descriptor 3) with the
	// spec's MAC, its address on the kernel command line.
	spec := testSpec("vm-1", "/img")
	spec.Network = driver.Network{NetworkID: "n", PrivateIP: "10.0.0.4", PrefixLen: 24, Gateway: "10.0.0.1", MAC: "02:00:00:00:00:0a"}
	args = d.qemuArgs(in, spec, image{Kernel: "k", GuestPort: 80}, st, true)
	line = strings.Join(args, " ")
	for _, want := range []string{
		"-device virtio-net-pci,netdev=net0,romfile=,mac=52:54:00:12:34:56 -netdev tap,id=net1,fd=3 -device virtio-net-pci,netdev=net1,romfile=,mac=02:00:00:00:00:0a",
		"vmssd.netip=10.0.0.4/24 vmssd.netgw=10.0.0.1",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("network args lack %q:\n%s", want, line)
		}
	}
	line = strings.Join(d.qemuArgs(in, testSpec("vm-1", "/img"), img, st, false), " ")
	if !strings.Contains(line, "-accel kvm -cpu host") || strings.Contains(line, "-kernel") || strings.Contains(line, "-append") || strings.Contains(line, "seed.iso") {
		t.Errorf("disk-only kvm args: %s", line)
	}
	// A raw base has no backing of its own to disable.
	if want := `{"backing":{"driver":"raw","file":{"driver":"file","filename":"disk/base.img","read-only":true},"node-name":"base0","read-only":true},`; !strings.Contains(line, want) {
		t.Errorf("raw disk args lack %s: %s", want, line)
	}
	for _, bad := range []string{"-drive", "/img/", "-pidfile"} {
		if strings.Contains(line, bad) {
			t.Errorf("args contain %q: %s", bad, line)
		}
	}
}

func writeImage(t *testing.T, manifest string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, "rootfs", f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadImage(t *testing.T) {
	ok := `{"format":"vmssd.qemu/v1","osType":"Linux","version":"1.0.0","healthProbe":{"protocol":"http","path":"/health"},
		"qemu":{"kernel":"vmlinuz","initrd":"initrd.img","cmdline":"console=ttyS0","minMemoryMB":96}}`
	dir := writeImage(t, ok, "vmlinuz", "initrd.img")
	img, raw, err := loadImage(dir)
	if err != nil {
		t.Fatalf("loadImage: %v", err)
	}
	if img.Kernel != filepath.Join(dir, "rootfs", "vmlinuz") || img.GuestPort != 80 || img.HealthPath != "/health" ||
		img.DiskFormat != "qcow2" || img.MinMemoryMB != 96 || !img.directBoot() || len(raw) == 0 {
		t.Errorf("loadImage = %+v", img)
	}
	bad := []struct{ name, manifest string }{
		{"process format", `{"format":"vmssd.process/v1","entrypoint":["x"]}`},
		{"no qemu section", `{"format":"vmssd.qemu/v1"}`},
		{"nothing to boot", `{"format":"vmssd.qemu/v1","qemu":{}}`},
		{"missing kernel", `{"format":"vmssd.qemu/v1","qemu":{"kernel":"nope"}}`},
		{"escaping path", `{"format":"vmssd.qemu/v1","qemu":{"kernel":"../manifest.json"}}`},
		{"initrd without kernel", `{"format":"vmssd.qemu/v1","qemu":{"disk":"vmlinuz","initrd":"initrd.img"}}`},
		{"bad disk format", `{"format":"vmssd.qemu/v1","qemu":{"disk":"vmlinuz","diskFormat":"vmdk"}}`},
		{"ssh port", `{"format":"vmssd.qemu/v1","qemu":{"kernel":"vmlinuz","guestPort":22}}`},
		{"bad health path", `{"format":"vmssd.qemu/v1","healthProbe":{"path":"health"},"qemu":{"kernel":"vmlinuz"}}`},
		{"not json", `{`},
	}
	for _, tc := range bad {
		dir := writeImage(t, tc.manifest, "vmlinuz", "initrd.img")
		if _, _, err := loadImage(dir); !errors.Is(err, driver.ErrImageInvalid) {
			t.Errorf("%s: %v, want ErrImageInvalid", tc.name, err)
		}
	}
	if _, _, err := loadImage(t.TempDir()); !errors.Is(err, driver.ErrImageInvalid) {
		t.Errorf("empty directory: %v", err)
	}
}

func TestResolveSize(t *testing.T) {
	sizes := DefaultSizes()
	img := image{MinMemoryMB: 96}
	spec := driver.Spec{Size: "standard_d2_v2"}
	if r, err := resolveSize(sizes, spec, img); err != nil || r != (resources{2, 512}) {
		t.Errorf("table size: %+v %v", r, err)
	}
	spec = driver.Spec{Size: "Custom", VCPUs: 0, MemoryMB: 200}
	if r, err := resolveSize(sizes, spec, img); err != nil || r != (resources{1, 200}) {
		t.Errorf("spec size: %+v %v", r, err)
	}
	if r, err := resolveSize(sizes, driver.Spec{}, img); err != nil || r != (resources{1, 128}) {
		t.Errorf("default size: %+v %v", r, err)
	}
	if _, err := resolveSize(sizes, driver.Spec{Size: "Standard_Huge"}, img); !errors.Is(err, ErrUnknownSize) ||
		!strings.Contains(err.Error(), "Standard_A1") {
		t.Errorf("unknown size: %v", err)
	}
	if _, err := resolveSize(sizes, driver.Spec{MemoryMB: 64}, img); !errors.Is(err, ErrSizeTooSmall) {
		t.Errorf("too small: %v", err)
	}
}

func TestMemoryBook(t *testing.T) {
	b := &memoryBook{allowedMB: 500, overheadMB: 50, held: map[string]int{}}
	if err := b.admit("a", 128, false); err != nil {
		t.Fatal(err)
	}
	if err := b.admit("b", 128, false); err != nil {
		t.Fatal(err)
	}
	err := b.admit("c", 200, false)
	var me *InsufficientMemoryError
	if !errors.As(err, &me) || !errors.Is(err, ErrInsufficientMemory) || me.RequestedMB != 250 || me.UsedMB != 356 || me.AllowedMB != 500 {
		t.Fatalf("admit beyond the allowance: %v", err)
	}
	for _, w := range []string{"requested 250 MB", "356 MB used", "500 MB allowed"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message %q lacks %q", err, w)
		}
	}
	// Re-admitting an instance replaces what it held.
	if err := b.admit("a", 250, false); err != nil {
		t.Errorf("re-admit a bigger a: %v", err)
	}
	if err := b.admit("c", 200, true); err != nil || b.used("") != 300+178+250 {
		t.Errorf("forced admit: %v, used %d", err, b.used(""))
	}
	b.release("c")
	b.release("a")
	if b.used("") != 178 {
		t.Errorf("used after release = %d", b.used(""))
	}
}

// isoFile finds a file in the root directory of an ISO 9660 image.
func isoFile(t *testing.T, img []byte, name string) ([]byte, bool) {
	t.Helper()
	pvd := img[isoSector*16:]
	rootSector := binary.LittleEndian.Uint32(pvd[156+2:])
	rootSize := binary.LittleEndian.Uint32(pvd[156+10:])
	dir := img[int(rootSector)*isoSector:][:rootSize]
	for len(dir) > 0 && dir[0] != 0 {
		n := int(dir[0])
		rec := dir[:n]
		id := string(rec[33 : 33+int(rec[32])])
		if id == name {
			at := binary.LittleEndian.Uint32(rec[2:])
			size := binary.BigEndian.Uint32(rec[14:])
			return img[int(at)*isoSector:][:size], true
		}
		dir = dir[n:]
	}
	return nil, false
}

func TestBuildISO(t *testing.T) {
	files := map[string][]byte{"meta-data": []byte("instance-id: x\n"), "user-data": bytes.Repeat([]byte("y"), 5000)}
	img, err := buildISO("cidata", files, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if len(img)%isoSector != 0 || len(img) != (isoFirstFile+1+3)*isoSector {
		t.Errorf("image has %d bytes", len(img))
	}
	pvd := img[isoSector*16:]
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" || strings.TrimSpace(string(pvd[40:72])) != "cidata" {
		t.Errorf("primary volume descriptor: type %d id %q label %q", pvd[0], pvd[1:6], pvd[40:72])
	}
	if got := binary.LittleEndian.Uint32(pvd[80:]); got != uint32(len(img)/isoSector) {
		t.Errorf("volume space size %d", got)
	}
	if term := img[isoSector*17:]; term[0] != 255 || string(term[1:6]) != "CD001" {
		t.Error("no volume descriptor set terminator")
	}
	for name, want := range map[string][]byte{"META-DATA;1": files["meta-data"], "USER-DATA;1": files["user-data"]} {
		got, ok := isoFile(t, img, name)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("%s: found %v, %d bytes", name, ok, len(got))
		}
	}
	if _, err := buildISO("x", map[string][]byte{"Upper": nil}, time.Now()); err == nil {
		t.Error("upper-case name accepted")
	}
	seed := seedFiles(testSpec("vm-1", "/img"), false)
	if string(seed["meta-data"]) != "instance-id: \"vm-1\"\nlocal-hostname: \"web000003\"\n" ||
		!strings.HasPrefix(string(seed["user-data"]), "#cloud-config\nhostname: \"web000003\"\n") {
		t.Errorf("seed files: %q", seed)
	}
	if _, ok := seed["network-config"]; ok {
		t.Error("a VM without a virtual network gets a network-config")
	}
}

// TestSeedNetworkConfig: a VM with a TAP gets a cloud-init network-config
// giving its second NIC (by MAC) the private address.
func TestSeedNetworkConfig(t *testing.T) {
	spec := testSpec("vm-1", "/img")
	spec.Network = driver.Network{NetworkID: "n", PrivateIP: "10.0.0.4", PrefixLen: 24}
	files := seedFiles(spec, true)
	var nc struct {
		Version   int `yaml:"version"`
		Ethernets map[string]struct {
			Match struct {
				MACAddress string `yaml:"macaddress"`
			} `yaml:"match"`
			DHCP4     bool     `yaml:"dhcp4"`
			Addresses []string `yaml:"addresses"`
		} `yaml:"ethernets"`
	}
	if err := yaml.Unmarshal(files["network-config"], &nc); err != nil {
		t.Fatalf("network-config: %v\n%s", err, files["network-config"])
	}
	mac, _ := netattach.MAC("vm-1", spec.Network)
	user, vnet := nc.Ethernets["user0"], nc.Ethernets["vnet0"]
	if nc.Version != 2 || user.Match.MACAddress != userNetMAC || !user.DHCP4 ||
		vnet.Match.MACAddress != mac.String() || !slices.Equal(vnet.Addresses, []string{"10.0.0.4/24"}) || vnet.DHCP4 {
		t.Errorf("network-config: %+v", nc)
	}
	img, err := buildISO(seedLabel, files, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := isoFile(t, img, "NETWORK-CONFIG;1"); !ok || !bytes.Equal(got, files["network-config"]) {
		t.Errorf("seed ISO lacks network-config: %v", ok)
	}
}

func TestLastLines(t *testing.T) {
	if got := lastLines([]byte("a\n\n b \x1b[2J\nc\r\n"), 2); got != "b [2J | c" {
		t.Errorf("lastLines = %q", got)
	}
}

func TestConsoleWatch(t *testing.T) {
	p := filepath.Join(t.TempDir(), "console.log")
	os.WriteFile(p, []byte("old boot: GUEST-READY\n"), 0o644)
	fi, _ := os.Stat(p)
	c := consoleWatch{path: p, off: fi.Size(), markers: []string{"GUEST-READY"}}
	if c.ready() {
		t.Error("a marker from an earlier boot counts")
	}
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("booting... GUEST-")
	if c.ready() {
		t.Error("half a marker counts")
	}
	f.WriteString("READY version=1\n")
	f.Close()
	if !c.ready() {
		t.Error("a marker split across reads is missed")
	}
}

func TestValidIDAndHostname(t *testing.T) {
	for _, id := range []string{"a", "vm-1.x_y", strings.Repeat("a", 128)} {
		if err := validID(id); err != nil {
			t.Errorf("validID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "-a", "a/b", "a,b", strings.Repeat("a", 129)} {
		if validID(id) == nil {
			t.Errorf("validID(%q) accepted", id)
		}
	}
	if !validHostname("web000003") || validHostname("a,b") || validHostname("-a") || validHostname("") {
		t.Error("validHostname")
	}
}

func TestQMPPath(t *testing.T) {
	if got := qmpPath("/r/vm", 42); got != "/r/vm/run/qmp.sock" {
		t.Errorf("short: %q", got)
	}
	if got := qmpPath("/"+strings.Repeat("d", 120), 42); got != "/proc/42/cwd/run/qmp.sock" {
		t.Errorf("long: %q", got)
	}
}

func TestOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without Root")
	}
	if _, err := New(Options{Root: t.TempDir(), QEMU: "/nonexistent/qemu"}); err == nil {
		t.Error("New with a missing QEMU")
	}
	requireQEMU(t)
	if _, err := New(Options{Root: t.TempDir(), Accel: "hvf"}); err == nil {
		t.Error("New with an unknown accelerator")
	}
	d, err := New(Options{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	o := d.opts
	if o.BootDeadline != 180*time.Second || o.MaxConcurrentBoots <= 0 || o.HostMemoryMB <= 0 || o.MemoryOvercommit != 1 ||
		o.VMOverheadMB != 64 || o.StopTimeout != 30*time.Second || len(o.Sizes) == 0 || d.Accel() == "" {
		t.Errorf("defaults: %+v accel %q", o, d.Accel())
	}
}

// TestNoVM checks the errors that need no VM: unknown instances, invalid
// images, a closed driver.
func TestNoVM(t *testing.T) {
	requireQEMU(t)
	d := newTestDriver(t, t.TempDir())
	if _, err := d.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const id = "no-such-vm"
	spec := testSpec(id, writeImage(t, `{"format":"vmssd.qemu/v1","qemu":{"kernel":"k"}}`, "k"))
	ops := map[string]func() error{
		"Inspect":    func() error { _, err := d.Inspect(ctx, id); return err },
		"Start":      func() error { _, err := d.Start(ctx, id); return err },
		"Stop":       func() error { _, err := d.Stop(ctx, id, true); return err },
		"Deallocate": func() error { _, err := d.Deallocate(ctx, id); return err },
		"Restart":    func() error { _, err := d.Restart(ctx, id); return err },
		"Reimage":    func() error { _, err := d.Reimage(ctx, spec); return err },
		"Delete":     func() error { return d.Delete(ctx, id) },
		"Console":    func() error { _, err := d.Console(ctx, id); return err },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, driver.ErrNotFound) {
			t.Errorf("%s of an unknown instance: %v", name, err)
		}
	}
	bad := testSpec("bad-image", t.TempDir())
	if _, err := d.Create(ctx, bad); !errors.Is(err, driver.ErrImageInvalid) {
		t.Errorf("Create with an empty image directory: %v", err)
	}
	if _, err := d.Inspect(ctx, bad.ID); !errors.Is(err, driver.ErrNotFound) {
		t.Errorf("Inspect after a failed Create: %v", err)
	}
	bad.ID = "../escape"
	if _, err := d.Create(ctx, bad); err == nil {
		t.Error("Create with an invalid id")
	}
	if list, err := d.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List = %v %v", list, err)
	}
	d.Close()
	if _, err := d.List(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("List after Close: %v", err)
	}
	if _, err := d.Create(ctx, spec); !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close: %v", err)
	}
}

func TestSeedFilesProvisioning(t *testing.T) {
	spec := driver.Spec{ID: "id1", Metadata: driver.Metadata{VMID: "vm-1", ComputerName: "web000001"}}
	plain := string(seedFiles(spec, false)["user-data"])
	if !strings.HasPrefix(plain, "#cloud-config\n") || strings.Contains(plain, "users:") {
		t.Fatalf("user-data without provisioning: %q", plain)
	}
	spec.Provisioning = driver.Provisioning{
		AdminUsername: "azureuser",
		SSHKeys:       []string{"ssh-ed25519 AAAAC3Nza key1\n"},
		CustomData:    []byte("#!/bin/sh\necho hello > /tmp/custom\n"),
	}
	files := seedFiles(spec, false)
	user := string(files["user-data"])
	for _, want := range []string{
		"Content-Type: multipart/mixed; boundary=",
		"Content-Type: text/cloud-config",
		"default_user:\n    name: \"azureuser\"",
		"ssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza key1\"",
		"Content-Type: text/x-shellscript",
		"Content-Transfer-Encoding: base64",
	} {
		if !strings.Contains(user, want) {
			t.Errorf("user-data lacks %q:\n%s", want, user)
		}
	}
	// It is a well-formed MIME document with both parts.
	msg, err := mail.ReadMessage(strings.NewReader(user))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var custom []byte
	for {
		p, err := mr.NextPart()
		if err != nil {
			break
		}
		types = append(types, p.Header.Get("Content-Type"))
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			custom, _ = io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
		}
	}
	if string(custom) != "#!/bin/sh\necho hello > /tmp/custom\n" {
		t.Errorf("customData part decodes to %q", custom)
	}
	if len(types) != 2 || !strings.HasPrefix(types[0], "text/cloud-config") || !strings.HasPrefix(types[1], "text/x-shellscript") {
		t.Errorf("parts %v", types)
	}
	if !strings.Contains(string(files["meta-data"]), `local-hostname: "web000001"`) {
		t.Errorf("meta-data: %s", files["meta-data"])
	}
}
