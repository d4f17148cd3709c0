package qemu

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vmssd/vmssd/internal/driver"
	"github.com/vmssd/vmssd/internal/driver/netattach"
)

// seedLabel is the volume label cloud-init's NoCloud datasource looks for.
const seedLabel = "cidata"

// seedFiles returns the NoCloud files of an instance: meta-data (instance
// id and hostname) and user-data: a #cloud-config setting the hostname and
// creating the admin user with its ssh keys, followed, when the model has
// customData, by that customData as a second part of a MIME multipart
// document (cloud-init runs both, as on Azure). With vnet (the VM gets a
// TAP on spec.Network) it adds a network-config (version 2): DHCP on the
// user networking NIC, the private address on the virtual network's NIC,
// both matched by MAC.
func seedFiles(spec driver.Spec, vnet bool) map[string][]byte {
	q := func(s string) string {
		b, _ := json.Marshal(s) // a JSON string is a YAML scalar
		return string(b)
	}
	md := spec.Metadata
	instanceID := md.VMID
	if instanceID == "" {
		instanceID = spec.ID
	}
	host := md.ComputerName
	if host == "" {
		host = spec.ID
	}
	meta := "instance-id: " + q(instanceID) + "\nlocal-hostname: " + q(host) + "\n"
	var cfg strings.Builder
	cfg.WriteString("#cloud-config\nhostname: " + q(host) + "\npreserve_hostname: false\n")
	if p := spec.Provisioning; p.AdminUsername != "" {
		// The admin is the image's default user (as on Azure), so a
		// customData cloud-config with its own "users:" list, which
		// replaces ours when cloud-init merges, still keeps it.
		cfg.WriteString("ssh_pwauth: false\nsystem_info:\n  default_user:\n    name: " + q(p.AdminUsername) + "\n")
		cfg.WriteString("    shell: /bin/bash\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    lock_passwd: true\n")
		if len(p.SSHKeys) > 0 {
			cfg.WriteString("ssh_authorized_keys:\n")
			for _, k := range p.SSHKeys {
				cfg.WriteString("  - " + q(strings.TrimSpace(k)) + "\n")
			}
		}
	}
	user := []byte(cfg.String())
	if len(spec.Provisioning.CustomData) > 0 {
		user = multipartUserData(user, spec.Provisioning.CustomData)
	}
	files := map[string][]byte{"meta-data": []byte(meta), "user-data": user}
	if vnet {
		mac, _ := netattach.MAC(spec.ID, spec.Network) // validated with the spec
		n := spec.Network
		nc := "version: 2\nethernets:\n" +
			"  user0:\n    match:\n      macaddress: " + q(userNetMAC) + "\n    dhcp4: true\n" +
			"  vnet0:\n    match:\n      macaddress: " + q(mac.String()) + "\n" +
			"    addresses:\n      - " + q(n.PrivateIP+"/"+strconv.Itoa(n.PrefixLen)) + "\n"
		files["network-config"] = []byte(nc)
	}
	return files
}

// multipartUserData joins vmssd's cloud-config and the user's customData
// into one MIME multipart user-data document.
func multipartUserData(cloudConfig, custom []byte) []byte {
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	h := textproto.MIMEHeader{}
	h.Set("Content-Type", `text/cloud-config; charset="utf-8"`)
	pw, _ := w.CreatePart(h) // writes to a bytes.Buffer cannot fail
	_, _ = pw.Write(cloudConfig)
	// customData may be binary (gzip): it travels base64-encoded so that
	// the document stays valid text.
	h = textproto.MIMEHeader{}
	h.Set("Content-Type", customDataType(custom))
	h.Set("Content-Transfer-Encoding", "base64")
	pw, _ = w.CreatePart(h)
	enc := base64.StdEncoding.EncodeToString(custom)
	for len(enc) > 76 {
		_, _ = pw.Write([]byte(enc[:76] + "\n"))
		enc = enc[76:]
	}
	_, _ = pw.Write([]byte(enc + "\n"))
	_ = w.Close()
	head := "Content-Type: multipart/mixed; boundary=\"" + w.Boundary() + "\"\nMIME-Version: 1.0\n\n"
	return append([]byte(head), body.Bytes()...)
}

// customDataType is the cloud-init part type customData's first line asks for.
func customDataType(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return "application/x-gzip"
	case bytes.HasPrefix(b, []byte("#cloud-config")):
		return "text/cloud-config"
	case bytes.HasPrefix(b, []byte("#!")):
		return "text/x-shellscript"
	case bytes.HasPrefix(b, []byte("#cloud-boothook")):
		return "text/cloud-boothook"
	case bytes.HasPrefix(b, []byte("#include")):
		return "text/x-include-url"
	}
	return "text/plain"
}

// writeSeed writes the instance's NoCloud seed, an ISO 9660 image labelled
// "cidata", to path.
func writeSeed(path string, spec driver.Spec, vnet bool) error {
	img, err := buildISO(seedLabel, seedFiles(spec, vnet), time.Now())
	if err != nil {
		return fmt.Errorf("qemu: cloud-init seed: %w", err)
	}
	return writeFileAtomic(path, img, 0o600)
}

// ISO 9660 layout of buildISO: 16 empty system sectors, the primary volume
// descriptor, the set terminator, the two path tables, the root directory,
// then the files, each from a sector boundary.
const (
	isoSector     = 2048
	isoPVD        = 16
	isoTerminator = 17
	isoLPath      = 18
	isoMPath      = 19
	isoRoot       = 20
	isoFirstFile  = 21
)

// buildISO returns an ISO 9660 image with files in its root directory.
// Names are stored as given, upper-cased, with the ";1" version suffix; a
// Linux guest mounting it without Rock Ridge sees them lower-cased, so they
// must be lower-case and unique ignoring case. It is small by design: one
// directory sector (about 40 files), files of at most 4 GiB.
func buildISO(label string, files map[string][]byte, now time.Time) ([]byte, error) {
	names := make([]string, 0, len(files))
	for name := range files {
		if name == "" || len(name) > 30 || strings.ContainsAny(name, "/;\x00") || strings.ToLower(name) != name {
			return nil, fmt.Errorf("iso9660: file name %q: want 1 to 30 lower-case characters without / or ;", name)
		}
		names = append(names, name)
	}
	// Directory records are sorted by identifier.
	slices.SortFunc(names, func(a, b string) int { return strings.Compare(strings.ToUpper(a), strings.ToUpper(b)) })

	type entry struct {
		id     []byte
		sector uint32
		size   uint32
	}
	entries := make([]entry, 0, len(names))
	sector := uint32(isoFirstFile)
	for _, name := range names {
		n := uint32(len(files[name]))
		entries = append(entries, entry{id: []byte(strings.ToUpper(name) + ";1"), sector: sector, size: n})
		sector += (n + isoSector - 1) / isoSector
	}
	total := sector

	// Root directory: ".", "..", the files.
	var dir bytes.Buffer
	dirRecord(&dir, []byte{0}, isoRoot, isoSector, true, now)
	dirRecord(&dir, []byte{1}, isoRoot, isoSector, true, now)
	for _, e := range entries {
		dirRecord(&dir, e.id, e.sector, e.size, false, now)
	}
	if dir.Len() > isoSector {
		return nil, fmt.Errorf("iso9660: %d files do not fit in one directory sector", len(entries))
	}

	img := make([]byte, int(total)*isoSector)
	sec := func(n int) []byte { return img[n*isoSector : (n+1)*isoSector] }

	// Primary volume descriptor.
	pvd := sec(isoPVD)
	pvd[0], pvd[6] = 1, 1
	copy(pvd[1:6], "CD001")
	padCopy(pvd[8:40], "LINUX")
	padCopy(pvd[40:72], label)
	bothEndian32(pvd[80:88], total)
	bothEndian16(pvd[120:124], 1) // volume set size
	bothEndian16(pvd[124:128], 1) // volume sequence number
	bothEndian16(pvd[128:132], isoSector)
	const pathTableSize = 10 // the root's record only
	bothEndian32(pvd[132:140], pathTableSize)
	binary.LittleEndian.PutUint32(pvd[140:144], isoLPath)
	binary.BigEndian.PutUint32(pvd[148:152], isoMPath)
	var root bytes.Buffer
	dirRecord(&root, []byte{0}, isoRoot, isoSector, true, now)
	copy(pvd[156:190], root.Bytes())
	for _, f := range [][2]int{{190, 318}, {318, 446}, {446, 574}, {574, 702}, {702, 739}, {739, 776}, {776, 813}} {
		padCopy(pvd[f[0]:f[1]], "")
	}
	padCopy(pvd[574:702], "VMSSD")
	stamp := []byte(now.UTC().Format("20060102150405") + "00")
	copy(pvd[813:829], stamp) // creation
	copy(pvd[830:846], stamp) // modification
	copy(pvd[847:863], "0000000000000000")
	copy(pvd[864:880], stamp) // effective
	pvd[881] = 1              // file structure version

	// Set terminator.
	term := sec(isoTerminator)
	term[0], term[6] = 255, 1
	copy(term[1:6], "CD001")

	// Path tables: the root directory only.
	l := sec(isoLPath)
	l[0] = 1
	binary.LittleEndian.PutUint32(l[2:6], isoRoot)
	binary.LittleEndian.PutUint16(l[6:8], 1)
	m := sec(isoMPath)
	m[0] = 1
	binary.BigEndian.PutUint32(m[2:6], isoRoot)
	binary.BigEndian.PutUint16(m[6:8], 1)

	copy(sec(isoRoot), dir.Bytes())
	for i, name := range names {
		copy(img[int(entries[i].sector)*isoSector:], files[name])
	}
	return img, nil
}

// dirRecord appends an ISO 9660 directory record.
func dirRecord(b *bytes.Buffer, id []byte, sector, size uint32, isDir bool, t time.Time) {
	n := 33 + len(id)
	if n%2 == 1 {
		n++
	}
	r := make([]byte, n)
	r[0] = byte(n)
	bothEndian32(r[2:10], sector)
	bothEndian32(r[10:18], size)
	t = t.UTC()
	r[18] = byte(t.Year() - 1900)
	r[19] = byte(t.Month())
	r[20] = byte(t.Day())
	r[21] = byte(t.Hour())
	r[22] = byte(t.Minute())
	r[23] = byte(t.Second())
	if isDir {
		r[25] = 2
	}
	bothEndian16(r[28:32], 1)
	r[32] = byte(len(id))
	copy(r[33:], id)
	b.Write(r)
}

func bothEndian32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:4], v)
	binary.BigEndian.PutUint32(b[4:8], v)
}

func bothEndian16(b []byte, v uint16) {
	binary.LittleEndian.PutUint16(b[0:2], v)
	binary.BigEndian.PutUint16(b[2:4], v)
}

// padCopy fills b with s followed by spaces.
func padCopy(b []byte, s string) {
	n := copy(b, s)
	for i := n; i < len(b); i++ {
		b[i] = ' '
	}
}
