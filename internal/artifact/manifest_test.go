package artifact

import (
	"errors"
	"reflect"
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
		{name: "qemu not yet", in: obj(`"format":"vmssd.qemu/v1"`, `"osType":"Linux"`, entry, probe)},
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
