package artifact

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseDigest(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	tests := []struct {
		in string
		ok bool
	}{
		{"sha256:" + hex, true},
		{"sha256:" + strings.ToUpper(hex), false},
		{"sha512:" + hex, false},
		{hex, false},
		{"sha256:" + hex[:63], false},
		{"sha256:" + hex + "0", false},
		{"sha256:../../../../etc/passwd", false},
		{"sha256:" + hex[:62] + "/.", false},
		{"sha256:" + hex[:63] + "\x00", false},
		{" sha256:" + hex, false},
		{"", false},
	}
	for _, tt := range tests {
		d, err := ParseDigest(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseDigest(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && (d.String() != tt.in || d.Hex() != hex || d.Validate() != nil) {
			t.Errorf("ParseDigest(%q) = %q (hex %q)", tt.in, d, d.Hex())
		}
		if !tt.ok && Digest(tt.in).Validate() == nil {
			t.Errorf("Digest(%q).Validate() = nil", tt.in)
		}
	}
}

func TestParseManifest(t *testing.T) {
	const (
		entry = `"entrypoint":["${VMSSD_GUEST}","guest"]`
		probe = `"healthProbe":{"protocol":"http","path":"/health"}`
	)
	obj := func(fields ...string) string { return "{" + strings.Join(fields, ",") + "}" }
	tests := []struct {
		name string
		in   string
		want *Manifest // nil: must fail
	}{
		{
			name: "minimal",
			in:   obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, probe),
			want: &Manifest{Format: FormatProcessV1, OSType: OSTypeLinux, Entrypoint: []string{GuestToken, "guest"},
				HealthProbe: HealthProbe{Protocol: "http", Path: "/health"}},
		},
		{
			name: "full",
			in: obj(`"format":"vmssd.process/v1"`, `"osType":"Windows"`, `"name":"web"`, `"version":"2.1.0"`,
				`"entrypoint":["./server","--port","x"]`, `"env":{"MODE":"prod","EMPTY":""}`,
				`"healthProbe":{"protocol":"http","path":"/healthz?full=1"}`),
			want: &Manifest{Format: FormatProcessV1, OSType: OSTypeWindows, Name: "web", Version: "2.1.0",
				Entrypoint: []string{"./server", "--port", "x"}, Env: map[string]string{"MODE": "prod", "EMPTY": ""},
				HealthProbe: HealthProbe{Protocol: "http", Path: "/healthz?full=1"}},
		},
		{name: "trailing whitespace", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, probe) + "\n\t ",
			want: &Manifest{Format: FormatProcessV1, OSType: OSTypeLinux, Entrypoint: []string{GuestToken, "guest"},
				HealthProbe: HealthProbe{Protocol: "http", Path: "/health"}}},
		{name: "empty", in: ``},
		{name: "not an object", in: `[]`},
		{name: "missing format", in: obj(`"osType":"Linux"`, entry, probe)},
		{name: "unknown format", in: obj(`"format":"vmssd.process/v9"`, `"osType":"Linux"`, entry, probe)},
		{name: "qemu with an entrypoint", in: obj(`"format":"vmssd.qemu/v1"`, `"osType":"Linux"`, entry, probe)},
		{
			name: "qemu direct boot",
			in: obj(`"format":"vmssd.qemu/v1"`, `"osType":"Linux"`, `"name":"vmssd-guest"`, `"version":"1.0.0"`, probe,
				`"qemu":{"kernel":"vmlinuz","initrd":"initrd.img","cmdline":"console=ttyS0 quiet","minMemoryMB":96,"guestPort":80}`),
			want: &Manifest{Format: FormatQEMUV1, OSType: OSTypeLinux, Name: "vmssd-guest", Version: "1.0.0",
				HealthProbe: HealthProbe{Protocol: "http", Path: "/health"},
				QEMU:        &QEMUImage{Kernel: "vmlinuz", Initrd: "initrd.img", Cmdline: "console=ttyS0 quiet", MinMemoryMB: 96, GuestPort: 80}},
		},
		{
			name: "qemu disk",
			in:   obj(`"format":"vmssd.qemu/v1"`, `"osType":"Windows"`, probe, `"qemu":{"disk":"disk/os.qcow2","cloudInit":true}`),
			want: &Manifest{Format: FormatQEMUV1, OSType: OSTypeWindows, HealthProbe: HealthProbe{Protocol: "http", Path: "/health"},
				QEMU: &QEMUImage{Disk: "disk/os.qcow2", CloudInit: true}},
		},
		{name: "qemu unknown field", in: obj(`"format":"vmssd.qemu/v1"`, `"osType":"Linux"`, probe, `"qemu":{"kernel":"k","bios":"x"}`)},
		{name: "qemu without qemu", in: obj(`"format":"vmssd.qemu/v1"`, `"osType":"Linux"`, probe)},
		{name: "qemu null", in: obj(`"format":"vmssd.qemu/v1"`, `"osType":"Linux"`, probe, `"qemu":null`)},
		{name: "process with qemu", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, probe, `"qemu":{"kernel":"k"}`)},
		{name: "bad os type", in: obj(`"format":"vmssd.process/v1"`, `"osType":"linux"`, entry, probe)},
		{name: "no entrypoint", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, probe)},
		{name: "empty entrypoint", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, `"entrypoint":[]`, probe)},
		{name: "empty argv0", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, `"entrypoint":[""]`, probe)},
		{name: "no probe", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry)},
		{name: "tcp probe", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, `"healthProbe":{"protocol":"tcp","path":"/health"}`)},
		{name: "relative path", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, `"healthProbe":{"protocol":"http","path":"health"}`)},
		{name: "host in path", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, `"healthProbe":{"protocol":"http","path":"//evil.example/"}`)},
		{name: "reserved env", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, probe, `"env":{"VMSSD_PORT":"1"}`)},
		{name: "bad env key", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, probe, `"env":{"A=B":"1"}`)},
		{name: "unknown field", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, probe, `"command":["x"]`)},
		{name: "trailing data", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, probe) + `{}`},
		{name: "too large", in: obj(`"format":"vmssd.process/v1"`, `"osType":"Linux"`, entry, probe) + strings.Repeat(" ", maxManifestBytes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(tt.in))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("ParseManifest = %+v, want an error", m)
				}
				if !errors.Is(err, ErrInvalidManifest) {
					t.Fatalf("error %v does not wrap ErrInvalidManifest", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, *tt.want) {
				t.Fatalf("ParseManifest = %+v, want %+v", m, *tt.want)
			}
		})
	}
}

func TestManifestCommand(t *testing.T) {
	m := Manifest{Entrypoint: []string{GuestToken, "guest", "--self=" + GuestToken}}
	got := m.Command("/usr/bin/vmssd")
	want := []string{"/usr/bin/vmssd", "guest", "--self=/usr/bin/vmssd"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Command = %q, want %q", got, want)
	}
	if m.Entrypoint[0] != GuestToken {
		t.Fatal("Command modified the manifest")
	}
}

// validQEMU returns a valid direct-boot qemu manifest.
func validQEMU() Manifest {
	return Manifest{
		Format:      FormatQEMUV1,
		OSType:      OSTypeLinux,
		Name:        "vmssd-guest",
		Version:     "1.0.0",
		HealthProbe: HealthProbe{Protocol: "http", Path: "/health"},
		QEMU: &QEMUImage{Kernel: "vmlinuz", Initrd: "initrd.img",
			Cmdline: "console=ttyS0 quiet panic=-1 nokaslr", MinMemoryMB: 96, GuestPort: 80},
	}
}

func TestValidateQEMU(t *testing.T) {
	type testCase struct {
		name string
		edit func(m *Manifest)
		ok   bool
	}
	disk := func(m *Manifest) { m.QEMU = &QEMUImage{Disk: "os.qcow2"} }
	tests := []testCase{
		{"valid", func(m *Manifest) {}, true},
		{"kernel only", func(m *Manifest) { m.QEMU = &QEMUImage{Kernel: "boot/vmlinuz"} }, true},
		{"disk", disk, true},
		{"raw disk", func(m *Manifest) { disk(m); m.QEMU.DiskFormat = DiskFormatRaw }, true},
		{"qcow2 disk", func(m *Manifest) { disk(m); m.QEMU.DiskFormat = DiskFormatQCOW2 }, true},
		{"cloud-init", func(m *Manifest) { disk(m); m.QEMU.CloudInit = true }, true},
		{"windows", func(m *Manifest) { disk(m); m.OSType = OSTypeWindows }, true},
		{"zero port and memory", func(m *Manifest) { m.QEMU.GuestPort, m.QEMU.MinMemoryMB = 0, 0 }, true},
		{"max port and memory", func(m *Manifest) { m.QEMU.GuestPort, m.QEMU.MinMemoryMB = 65535, MaxMinMemoryMB }, true},
		{"empty env and entrypoint", func(m *Manifest) { m.Env, m.Entrypoint = map[string]string{}, []string{} }, true},
		{"longest cmdline", func(m *Manifest) { m.QEMU.Cmdline = strings.Repeat("x", MaxCmdlineBytes) }, true},
		{"probe path with query", func(m *Manifest) { m.HealthProbe.Path = "/health?full=1" }, true},

		{"no qemu", func(m *Manifest) { m.QEMU = nil }, false},
		{"empty qemu", func(m *Manifest) { m.QEMU = &QEMUImage{} }, false},
		{"initrd only", func(m *Manifest) { m.QEMU = &QEMUImage{Initrd: "initrd.img"} }, false},
		{"kernel and disk", func(m *Manifest) { m.QEMU.Disk = "os.qcow2" }, false},
		{"initrd with disk", func(m *Manifest) { disk(m); m.QEMU.Initrd = "initrd.img" }, false},
		{"cmdline with disk", func(m *Manifest) { disk(m); m.QEMU.Cmdline = "quiet" }, false},
		{"diskFormat with kernel", func(m *Manifest) { m.QEMU.DiskFormat = DiskFormatRaw }, false},
		{"unknown diskFormat", func(m *Manifest) { disk(m); m.QEMU.DiskFormat = "vmdk" }, false},
		{"diskFormat case", func(m *Manifest) { disk(m); m.QEMU.DiskFormat = "QCOW2" }, false},
		{"entrypoint", func(m *Manifest) { m.Entrypoint = []string{"/bin/sh"} }, false},
		{"env", func(m *Manifest) { m.Env = map[string]string{"A": "b"} }, false},
		{"bad os type", func(m *Manifest) { m.OSType = "linux" }, false},
		{"tcp probe", func(m *Manifest) { m.HealthProbe.Protocol = "tcp" }, false},
		{"relative probe path", func(m *Manifest) { m.HealthProbe.Path = "health" }, false},
		{"host in probe path", func(m *Manifest) { m.HealthProbe.Path = "//evil.example/" }, false},
		{"negative port", func(m *Manifest) { m.QEMU.GuestPort = -1 }, false},
		{"port too large", func(m *Manifest) { m.QEMU.GuestPort = 65536 }, false},
		{"negative memory", func(m *Manifest) { m.QEMU.MinMemoryMB = -1 }, false},
		{"memory too large", func(m *Manifest) { m.QEMU.MinMemoryMB = MaxMinMemoryMB + 1 }, false},
		{"cmdline with NUL", func(m *Manifest) { m.QEMU.Cmdline = "quiet\x00init=/bin/sh" }, false},
		{"cmdline with newline", func(m *Manifest) { m.QEMU.Cmdline = "quiet\ninit=/bin/sh" }, false},
		{"cmdline with CR", func(m *Manifest) { m.QEMU.Cmdline = "quiet\r" }, false},
		{"cmdline too long", func(m *Manifest) { m.QEMU.Cmdline = strings.Repeat("x", MaxCmdlineBytes+1) }, false},
	}
	for _, p := range []string{
		"", ".", "..", "../vmlinuz", "a/../vmlinuz", "/vmlinuz", "./vmlinuz", "boot/", "boot//vmlinuz",
		"boot/./vmlinuz", `boot\vmlinuz`, "a,b", "vm\x00linuz", "vm\nlinuz", "vm\x7flinuz",
		strings.Repeat("a", maxPathBytes+1),
	} {
		tests = append(tests,
			testCase{"kernel " + strconv.Quote(p), func(m *Manifest) { m.QEMU.Kernel = p }, false},
			testCase{"disk " + strconv.Quote(p), func(m *Manifest) { m.QEMU = &QEMUImage{Disk: p} }, false},
		)
		if p != "" { // an empty initrd is no initrd
			tests = append(tests, testCase{"initrd " + strconv.Quote(p), func(m *Manifest) { m.QEMU.Initrd = p }, false})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validQEMU()
			tt.edit(&m)
			err := m.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("error %v does not wrap ErrInvalidManifest", err)
			}
			// What Validate accepts survives a JSON round trip.
			if err == nil {
				data, err := json.Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				back, err := ParseManifest(data)
				if err != nil {
					t.Fatalf("ParseManifest(%s): %v", data, err)
				}
				if !reflect.DeepEqual(back.QEMU, m.QEMU) {
					t.Fatalf("round trip: %+v, want %+v", back.QEMU, m.QEMU)
				}
			}
		})
	}
}

func TestQEMUImageDefaults(t *testing.T) {
	var q QEMUImage
	if q.Port() != DefaultGuestPort || q.Format() != DiskFormatQCOW2 || q.Files() != nil {
		t.Fatalf("zero QEMUImage: port %d, format %q, files %q", q.Port(), q.Format(), q.Files())
	}
	q = QEMUImage{Kernel: "k", Initrd: "i", GuestPort: 8080, DiskFormat: DiskFormatRaw}
	if q.Port() != 8080 || q.Format() != DiskFormatRaw || !reflect.DeepEqual(q.Files(), []string{"k", "i"}) {
		t.Fatalf("QEMUImage %+v: port %d, format %q, files %q", q, q.Port(), q.Format(), q.Files())
	}
	if got := (QEMUImage{Disk: "d"}).Files(); !reflect.DeepEqual(got, []string{"d"}) {
		t.Fatalf("Files = %q", got)
	}
}

func TestProcessManifestUnchanged(t *testing.T) {
	m, err := ParseManifest([]byte(testManifest))
	if err != nil {
		t.Fatal(err)
	}
	m.QEMU = &QEMUImage{Kernel: "vmlinuz"}
	if err := m.Validate(); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("process manifest with a qemu section: Validate = %v", err)
	}
}
