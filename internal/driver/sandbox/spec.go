// Package sandbox runs an instance's guest in an OCI container started by
// the runc binary (Debian's runc 1.1; libcontainer in-process would need cgo).
//
// What a container gets (Spec builds its config.json):
//
//   - its own user namespace: container uid/gid 0..Size-1 map to an
//     unprivileged host range (HostID...), so container root is nobody on
//     the host and has no power over host-owned files;
//   - its own mount, pid, ipc, uts, network and cgroup namespaces (the
//     network namespace has only loopback; Forwarder carries the host's
//     loopback port into it);
//   - cgroup limits: memory and pids, and a CPU quota of the size's vCPUs;
//   - Docker's default capability set, no_new_privs, Docker's default
//     seccomp profile (github.com/moby/profiles/seccomp), and runc's masked
//     and read-only /proc and /sys paths;
//   - a root filesystem the caller prepares (an overlay: a read-only lower
//     layer shared by every instance of an image, chowned into the mapped
//     range once by ShiftOwner, and the instance's own writable layer), plus
//     read-only bind mounts of single files (the guest binary and its ELF
//     interpreter and libraries: GuestBinds; the instance metadata).
//
// Runtime drives runc (run --detach, state, kill, delete) with its own state
// root, so several vmssd (or test processes) never see each other's
// containers. Containers outlive vmssd: Runtime.State finds them again.
package sandbox

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Defaults of Config.
const (
	// DefaultHostID is the first host uid (and gid) the container's ids map
	// to, and DefaultIDs how many ids are mapped.
	DefaultHostID = 1_000_000
	DefaultIDs    = 65536
	// DefaultVCPUs and DefaultMemoryMB apply when the size gives none.
	DefaultVCPUs    = 1
	DefaultMemoryMB = 512
	// DefaultPids bounds the processes (and threads) of a container.
	DefaultPids = 1024
	// cpuPeriod is the CFS period of the CPU quota (100ms, like Docker).
	cpuPeriod = 100_000
)

// IDMap maps container ids 0..Size-1 to host ids HostID..HostID+Size-1.
type IDMap struct {
	HostID uint32
	Size   uint32
}

// withDefaults fills a zero IDMap.
func (m IDMap) withDefaults() IDMap {
	if m.Size == 0 {
		m.Size = DefaultIDs
	}
	if m.HostID == 0 {
		m.HostID = DefaultHostID
	}
	return m
}

// Validate rejects a map that would give container ids to host root or
// overflow.
func (m IDMap) Validate() error {
	m = m.withDefaults()
	if uint64(m.HostID)+uint64(m.Size) > 1<<32-1 {
		return fmt.Errorf("sandbox: id map %d+%d overflows", m.HostID, m.Size)
	}
	return nil
}

// Bind is a read-only bind mount of a host file or directory.
type Bind struct {
	Source string // host path
	Dest   string // absolute path in the container
}

// Config is what Spec needs.
type Config struct {
	// Rootfs is the absolute host path of the container's root filesystem.
	Rootfs   string
	Args     []string
	Env      []string
	Cwd      string // default "/"
	Hostname string
	Binds    []Bind
	IDs      IDMap
	// VCPUs, MemoryMB and Pids are the cgroup limits (defaults when 0).
	VCPUs    int
	MemoryMB int
	Pids     int64
	// CgroupsPath is the container's cgroup, relative to each hierarchy's
	// root (runc's cgroupfs driver). Required.
	CgroupsPath string
	// Attached says the network namespace will join a shared virtual
	// network (package netattach): CAP_NET_RAW is dropped, so the guest
	// opens no packet or raw socket and cannot put forged addresses on the
	// bridge (it has no CAP_NET_ADMIN to change its own either), and ICMP
	// echo sockets are allowed instead (net.ipv4.ping_group_range), so
	// ping keeps working.
	Attached bool
}

// DefaultCapabilities is Docker's default capability set: container root
// may chown, bind low ports, and so on, inside its own user namespace only.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// maskedPaths and readonlyPaths are runc's defaults (runc spec).
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/sys/firmware", "/proc/scsi",
	}
	readonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// Spec returns the OCI runtime spec of a container (pure, apart from the
// seccomp profile's kernel-version checks).
func Spec(c Config) (*specs.Spec, error) {
	if !path.IsAbs(c.Rootfs) {
		return nil, fmt.Errorf("sandbox: rootfs %q is not absolute", c.Rootfs)
	}
	if len(c.Args) == 0 {
		return nil, errors.New("sandbox: no command")
	}
	if c.CgroupsPath == "" {
		return nil, errors.New("sandbox: no cgroups path")
	}
	if err := c.IDs.Validate(); err != nil {
		return nil, err
	}
	ids := c.IDs.withDefaults()
	if c.Cwd == "" {
		c.Cwd = "/"
	}
	vcpus, mem, pids := c.VCPUs, c.MemoryMB, c.Pids
	if vcpus <= 0 {
		vcpus = DefaultVCPUs
	}
	if mem <= 0 {
		mem = DefaultMemoryMB
	}
	if pids <= 0 {
		pids = DefaultPids
	}
	memBytes := int64(mem) << 20
	quota := int64(vcpus) * cpuPeriod
	period := uint64(cpuPeriod)
	noNew := true

	caps := append([]string(nil), DefaultCapabilities...)
	var sysctl map[string]string
	if c.Attached {
		caps = slices.DeleteFunc(caps, func(c string) bool { return c == "CAP_NET_RAW" })
		sysctl = map[string]string{"net.ipv4.ping_group_range": fmt.Sprintf("0 %d", ids.Size-1)}
	}
	s := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: c.Args,
			Env:  c.Env,
			Cwd:  c.Cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096}},
			NoNewPrivileges: noNew,
		},
		Root:     &specs.Root{Path: c.Rootfs},
		Hostname: c.Hostname,
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", "size=65536k"}},
		},
		Linux: &specs.Linux{
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: ids.HostID, Size: ids.Size}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: ids.HostID, Size: ids.Size}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.UserNamespace},
				{Type: specs.CgroupNamespace},
			},
			CgroupsPath: c.CgroupsPath,
			Sysctl:      sysctl,
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
				Memory:  &specs.LinuxMemory{Limit: &memBytes},
				CPU:     &specs.LinuxCPU{Quota: &quota, Period: &period},
				Pids:    &specs.LinuxPids{Limit: pids},
			},
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
		},
	}
	for _, b := range c.Binds {
		if !path.IsAbs(b.Dest) || !path.IsAbs(b.Source) {
			return nil, fmt.Errorf("sandbox: bind %s -> %s: paths must be absolute", b.Source, b.Dest)
		}
		s.Mounts = append(s.Mounts, specs.Mount{
			Destination: b.Dest, Type: "bind", Source: b.Source,
			Options: []string{"bind", "ro", "nosuid", "nodev"},
		})
	}
	sc, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp profile: %w", err)
	}
	s.Linux.Seccomp = sc
	return s, nil
}

// ValidContainerID reports whether id is usable as a runc container id.
func ValidContainerID(id string) bool {
	if id == "" || len(id) > 1024 {
		return false
	}
	return strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_+-.", r))
	}) < 0
}
