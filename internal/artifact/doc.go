// Package artifact is the image artifact format of vmssd and its
// content-addressed store.
//
// An image version (publisher/offer/sku/version, or a custom image URI) points
// at one artifact: a gzip-compressed tar archive holding
//
//	manifest.json   the Manifest (format, os type, entrypoint, health probe)
//	rootfs/...      the files of the image; a process instance's "OS disk"
//	                is a fresh copy of this tree
//
// and nothing else. Entries are regular files, directories and symlinks only,
// with canonical relative names (an optional leading "./" is accepted; no
// "..", no absolute names, no duplicates, nothing below a symlink); symlink
// targets are relative and, resolved through the archive's other symlinks,
// stay inside rootfs/. Owners, times and special permission bits are ignored.
//
// Artifacts are stored once, by the sha256 of their bytes
// ("sha256:<hex>", see Digest), under the data directory (see Store), and
// unpacked once into a directory that drivers use, read-only, as
// Spec.ImageDir: manifest.json and rootfs/.
//
// Manifest formats:
//   - "vmssd.process/v1": the entrypoint is a command run with its working
//     directory set to the instance's disk. The token ${VMSSD_GUEST} in the
//     entrypoint is replaced by the host's guest program (vmssd's hidden
//     "guest" mode; see Manifest.Command). The instance gets VMSSD_PORT (the
//     port it must serve its health probe on, on 127.0.0.1), VMSSD_METADATA
//     (path of its instance-metadata JSON, a driver.Metadata) and VMSSD_DISK
//     (its disk directory).
//   - "vmssd.qemu/v1": a virtual machine image (Manifest.QEMU): a kernel with
//     an optional initrd and command line for direct boot, or a boot disk
//     (qcow2 or raw), each a regular file under rootfs/. No entrypoint and
//     no env; the health probe is served inside the VM on QEMUImage.Port().
//
// BuildDemo writes the demo image: a process image running the guest program
// (package guest) configured by rootfs/etc/vmssd-guest.json (GuestConfig).
// The demo virtual machine image is built by scripts/build-guest.sh (which
// documents its guest: kernel parameters, endpoints).
package artifact
