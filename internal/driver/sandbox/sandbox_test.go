package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vmssd/vmssd/internal/fsutil"
)

// requireRunc skips without runc or root, unless VMSSD_E2E=1 (then it
// fails).
func requireRunc(t *testing.T) string {
	t.Helper()
	p, err := Check("")
	if err != nil {
		if os.Getenv("VMSSD_E2E") == "1" {
			t.Fatalf("VMSSD_E2E=1: %v", err)
		}
		t.Skip(err)
	}
	return p
}

func TestSpecDefaults(t *testing.T) {
	s, err := Spec(Config{Rootfs: "/r", Args: []string{"/bin/sh"}, CgroupsPath: "/vmssd/x", VCPUs: 2, MemoryMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Process.NoNewPrivileges {
		t.Error("no_new_privs not set")
	}
	if m := s.Linux.UIDMappings; len(m) != 1 || m[0].HostID != DefaultHostID || m[0].ContainerID != 0 || m[0].Size != DefaultIDs {
		t.Errorf("uid map %+v", m)
	}
	var ns []string
	for _, n := range s.Linux.Namespaces {
		ns = append(ns, string(n.Type))
	}
	for _, want := range []string{"user", "mount", "pid", "ipc", "uts", "network"} {
		if !slices.Contains(ns, want) {
			t.Errorf("namespace %s missing from %v", want, ns)
		}
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 256<<20 || *r.CPU.Quota != 200_000 || *r.CPU.Period != 100_000 || r.Pids.Limit != DefaultPids {
		t.Errorf("resources: mem %d quota %d/%d pids %d", *r.Memory.Limit, *r.CPU.Quota, *r.CPU.Period, r.Pids.Limit)
	}
	if s.Linux.Seccomp == nil || len(s.Linux.Seccomp.Syscalls) == 0 {
		t.Error("no seccomp profile")
	}
	if slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") || slices.Contains(s.Process.Capabilities.Bounding, "CAP_NET_ADMIN") {
		t.Error("CAP_SYS_ADMIN or CAP_NET_ADMIN granted")
	}
	if len(s.Linux.Sysctl) != 0 {
		t.Errorf("sysctls without a network: %v", s.Linux.Sysctl)
	}
	// On a shared network: no raw sockets, ping through ICMP sockets.
	a, err := Spec(Config{Rootfs: "/r", Args: []string{"/bin/sh"}, CgroupsPath: "/vmssd/x", Attached: true})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(a.Process.Capabilities.Bounding, "CAP_NET_RAW") || slices.Contains(a.Process.Capabilities.Effective, "CAP_NET_RAW") ||
		!slices.Contains(a.Process.Capabilities.Bounding, "CAP_NET_BIND_SERVICE") {
		t.Errorf("attached capabilities: %v", a.Process.Capabilities.Bounding)
	}
	if got := a.Linux.Sysctl["net.ipv4.ping_group_range"]; got != "0 65535" {
		t.Errorf("ping_group_range %q", got)
	}
	d, err := Spec(Config{Rootfs: "/r", Args: []string{"x"}, CgroupsPath: "/c"})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Linux.Resources.Memory.Limit != DefaultMemoryMB<<20 || *d.Linux.Resources.CPU.Quota != DefaultVCPUs*cpuPeriod {
		t.Error("defaults not applied to a size without vCPUs or memory")
	}
	for _, bad := range []Config{
		{Rootfs: "r", Args: []string{"x"}, CgroupsPath: "/c"},
		{Rootfs: "/r", CgroupsPath: "/c"},
		{Rootfs: "/r", Args: []string{"x"}},
		{Rootfs: "/r", Args: []string{"x"}, CgroupsPath: "/c", Binds: []Bind{{Source: "rel", Dest: "/x"}}},
		{Rootfs: "/r", Args: []string{"x"}, CgroupsPath: "/c", IDs: IDMap{HostID: 1<<32 - 10, Size: 100}},
	} {
		if _, err := Spec(bad); err == nil {
			t.Errorf("Spec(%+v) accepted", bad)
		}
	}
}

func TestGuestBindsStatic(t *testing.T) {
	b, err := GuestBinds("/bin/busybox", "/.vmssd/guest")
	if errors.Is(err, fs.ErrNotExist) && os.Getenv("VMSSD_E2E") != "1" {
		t.Skip("no static busybox (apt-get install busybox-static):", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1 || b[0].Dest != "/.vmssd/guest" {
		t.Errorf("static binary binds %v, want only itself", b)
	}
}

func TestGuestBindsSelf(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GuestBinds(exe, "/g")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range b[1:] {
		if !strings.HasPrefix(x.Dest, "/lib") && !strings.HasPrefix(x.Dest, "/usr/lib") {
			t.Errorf("unexpected bind %v", x)
		}
	}
}

// TestRunContainer runs busybox in a container and checks what it sees.
func TestRunContainer(t *testing.T) {
	requireRunc(t)
	ctx := t.Context()
	dir := t.TempDir()
	// The path to the root file system must be searchable by the mapped
	// root, and only by it; bind sources need not be.
	os.Chmod(filepath.Dir(dir), 0o711)
	if err := GuardDir(dir, IDMap{}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "private"), 0o700)
	os.WriteFile(filepath.Join(dir, "private", "meta"), []byte("meta"), 0o644)
	rt, err := NewRuntime("", filepath.Join(dir, "runc"))
	if err != nil {
		t.Fatal(err)
	}
	lower := filepath.Join(dir, "lower")
	if err := os.MkdirAll(filepath.Join(lower, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsutil.WriteFile(filepath.Join(lower, "hostfile"), []byte("image file"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids := IDMap{}
	if err := ShiftOwner(ctx, lower, ids); err != nil {
		t.Fatal(err)
	}
	upper, work, rootfs := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "bundle", "rootfs")
	if err := PrepareUpper(upper, ids); err != nil {
		t.Fatal(err)
	}
	if err := MountOverlay(lower, upper, work, rootfs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Unmount(rootfs) })
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("host secret"), 0o600)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf(`cat /proc/self/uid_map; cat /hostfile; echo; echo written > /hostfile && echo wrote-image-file;
cat %s || echo no-secret; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /sys/fs/cgroup/pids/pids.max;
echo ok > /index.html; echo ready; exec httpd -f -p 127.0.0.1:%d -h /`, secret, port)
	spec, err := Spec(Config{
		Rootfs: rootfs, Args: []string{"/bin/busybox", "sh", "-c", script},
		Env: []string{"PATH=/bin"}, Hostname: "box", CgroupsPath: "/vmssd-test/" + filepath.Base(dir),
		MemoryMB: 64, Pids: 50,
		Binds: []Bind{{Source: "/bin/busybox", Dest: "/bin/busybox"}, {Source: filepath.Join(dir, "private", "meta"), Dest: "/meta"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle")
	if err := GuardDir(bundle, IDMap{}); err != nil {
		t.Fatal(err)
	}
	if err := WriteBundle(bundle, spec); err != nil {
		t.Fatal(err)
	}
	console, err := os.Create(filepath.Join(dir, "console"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	id := "t-" + filepath.Base(dir)
	start := time.Now()
	pid, err := rt.Run(ctx, id, bundle, console)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("runc run took %s", time.Since(start))
	t.Cleanup(func() { rt.Delete(context.Background(), id) })
	st, err := rt.State(ctx, id)
	if err != nil || st.Pid != pid || st.Status != "running" {
		t.Fatalf("state %+v %v, want running pid %d", st, err, pid)
	}
	ns, err := OpenNetns(pid)
	if err != nil {
		t.Fatal(err)
	}
	fw := Forward(ln, ns, fmt.Sprintf("127.0.0.1:%d", port))
	defer fw.Close()

	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(console.Name())
			t.Fatalf("no answer through the forward: %v; console:\n%s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "ok\n" {
		t.Errorf("through the forward: %q", body)
	}
	out, _ := os.ReadFile(console.Name())
	con := string(out)
	t.Logf("console:\n%s", con)
	for _, want := range []string{"0    1000000      65536", "image file", "wrote-image-file", "no-secret", "67108864", "50"} {
		if !strings.Contains(strings.Join(strings.Fields(con), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("console lacks %q", want)
		}
	}
	if strings.Contains(con, "host secret") {
		t.Error("the container read a host file")
	}
	if b, _ := os.ReadFile(filepath.Join(lower, "hostfile")); string(b) != "image file" {
		t.Errorf("the lower layer changed: %q", b)
	}
	if err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.State(ctx, id); err == nil {
		t.Error("container still known after Delete")
	}
}

// TestRunAfterKilledRun runs a container over what a runc killed with
// vmssd (SIGKILL, through Pdeathsig) leaves: the temporary pid file it
// writes before renaming it (a new run failed with ".init.pid: file
// exists"), a stale pid file, and a state directory without a state file.
func TestRunAfterKilledRun(t *testing.T) {
	requireRunc(t)
	ctx := t.Context()
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o711)
	if err := GuardDir(dir, IDMap{}); err != nil {
		t.Fatal(err)
	}
	rt, err := NewRuntime("", filepath.Join(dir, "runc"))
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(dir, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	if err := GuardDir(bundle, IDMap{}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ShiftOwner(ctx, rootfs, IDMap{}); err != nil {
		t.Fatal(err)
	}
	spec, err := Spec(Config{
		Rootfs: rootfs, Args: []string{"/bin/busybox", "sleep", "60"}, Env: []string{"PATH=/bin"},
		CgroupsPath: "/vmssd-test/" + filepath.Base(dir),
		Binds:       []Bind{{Source: "/bin/busybox", Dest: "/bin/busybox"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteBundle(bundle, spec); err != nil {
		t.Fatal(err)
	}
	id := "t-" + filepath.Base(dir)
	t.Cleanup(func() { rt.Delete(context.Background(), id) })
	for _, f := range []string{".init.pid", "init.pid"} {
		if err := os.WriteFile(filepath.Join(bundle, f), []byte("4194304"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "runc", id), 0o711); err != nil {
		t.Fatal(err)
	}
	// What the process driver does before every start.
	if err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	console, err := os.Create(filepath.Join(dir, "console"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	pid, err := rt.Run(ctx, id, bundle, console)
	if err != nil {
		t.Fatalf("run over a killed run's leftovers: %v", err)
	}
	if st, err := rt.State(ctx, id); err != nil || st.Pid != pid || st.Status != "running" {
		t.Fatalf("state %+v %v, want running pid %d", st, err, pid)
	}
	if _, err := os.Stat(filepath.Join(bundle, ".init.pid")); !os.IsNotExist(err) {
		t.Errorf("temporary pid file left: %v", err)
	}
	if err := rt.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}
