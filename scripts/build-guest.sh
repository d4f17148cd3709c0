#!/bin/bash
# build-guest.sh OUTDIR VERSION [--unhealthy] [--publish PUBLISHER:OFFER:SKU]
#
# Builds vmssd's demo virtual machine image, a small x86_64 Linux guest made
# from Debian packages only, as a vmssd artifact (format vmssd.qemu/v1):
#
#   OUTDIR/vmssd-guest-VERSION.tar.gz
#     manifest.json        format, osType, name, version, healthProbe, qemu
#     rootfs/vmlinuz       Debian's cloud kernel (linux-image-cloud-amd64)
#     rootfs/initrd.img    gzip'd newc cpio: busybox-static, /init, modules
#
# The guest's /init (busybox sh, PID 1, never exits) loads virtio-net,
# virtio-balloon, the ACPI power button and qemu_fw_cfg, configures eth0
# for QEMU user networking (10.0.2.15/24, gateway 10.0.2.2) and eth1 for
# a virtual network when told to (vmssd.netip=), sets the hostname, serves
# HTTP on port 80 (every address) with busybox httpd, runs acpid (so that
# QMP system_powerdown powers it off with "poweroff -f") and prints
# "GUEST-READY version=VERSION hostname=... ip=... port=80 health=..." on
# the console (ttyS0).
#
# Kernel command-line parameters it reads (all optional). Values may be
# percent-encoded (%XX); after decoding they keep [A-Za-z0-9._:@+-] only
# (the hostname [A-Za-z0-9-], at most 63 bytes), other bytes are dropped:
#   vmssd.hostname=NAME   hostname (default vmssd-guest)
#   vmssd.instance=ID     instance id      \
#   vmssd.vmid=GUID       vm id             | served in /metadata/instance,
#   vmssd.vmss=NAME       scale set name    | the ids also in /health
#   vmssd.fd=N            fault domain      | (fd, ud: digits, default 0)
#   vmssd.ud=N            update domain    /
#   vmssd.ip=CIDR vmssd.gw=ADDR   override the static address and gateway
#   vmssd.netip=CIDR      address of the second NIC (eth1), on the instance's
#                         virtual network (internal/driver/qemu passes it
#                         with a TAP on the network's bridge); without it
#                         eth1 stays down
#   vmssd.netgw=ADDR      the virtual network's gateway: with vmssd.netip,
#                         the default route goes through it on eth1 (eth0's
#                         10.0.2.0/24 stays on-link for the host's forwards)
# The image version always comes from the image (VERSION), never from the
# command line, so /health reports what actually booted.
#
# HTTP endpoints (port 80; bodies are JSON, served without a Content-Type):
#   GET /health             200 {"status":"Healthy","applicationHealthState":
#                           "Healthy","imageVersion":V,"instanceId":I,"vmId":X}
#                           With --unhealthy there is no /health: it answers
#                           404 with {"status":"Unhealthy",...} as body (the
#                           404 page, so any unknown path answers the same).
#   GET /status             200 {"status":"Healthy"|"Unhealthy","imageVersion":
#                           V,"health":"...why..."}, in both variants.
#   GET /metadata/instance  200 {"compute":{"computerName","name" (VMSS_ID),
#                           "osType","platformFaultDomain",
#                           "platformUpdateDomain","version","vmId",
#                           "vmScaleSetName","osProfile":{"computerName"}},
#                           "instanceId"}: an IMDS-like subset built from the
#                           parameters above; every value is a string.
#   GET /metadata/vmssd     the fw_cfg file opt/vmssd/metadata, verbatim,
#                           when QEMU passes one (-fw_cfg name=...,file=...);
#                           404 otherwise.
#
# Reproducible: the same inputs (this script, VERSION, the flag, the kernel
# and busybox package versions, SOURCE_DATE_EPOCH) give byte-identical
# output: fixed mtimes, sorted entries, owner 0:0, gzip -n. The output is
# replaced atomically (written next to it, then renamed).
#
# Host requirements: Debian (bookworm) amd64 with apt; busybox-static, cpio
# and qemu-utils are installed with apt-get when missing and running as root
# (qemu-utils is not used by the build: it provides qemu-img, which hosts
# running these images need). The kernel .deb is fetched once with
# "apt-get download" and extracted with "dpkg -x" into the cache; nothing
# is installed from it.
#
# Environment:
#   VMSSD_GUEST_CACHE  cache directory (default
#                      ${XDG_CACHE_HOME:-$HOME/.cache}/vmssd/guest-build)
#   VMSSD_KERNEL_PKG   kernel package (default linux-image-cloud-amd64; a
#                      metapackage is resolved to the versioned package)
#   SOURCE_DATE_EPOCH  mtime of every entry (default 1704067200, 2024-01-01)
#
# Exit status: 0 built, 1 failed, 2 usage, 3 a prerequisite is missing and
# cannot be installed or downloaded (not root, no network, not amd64).
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
missing() { echo "$prog: missing prerequisite: $*" >&2; exit 3; }
usage() { echo "usage: $prog OUTDIR VERSION [--unhealthy] [--publish PUBLISHER:OFFER:SKU]" >&2; exit 2; }

unhealthy=0
publish=""
pos=()
while [ $# -gt 0 ]; do
	case $1 in
	--unhealthy) unhealthy=1 ;;
	--publish)
		[ $# -ge 2 ] || usage
		publish=$2
		shift
		;;
	--) ;;
	-*) echo "$prog: unknown option $1" >&2; usage ;;
	*) pos+=("$1") ;;
	esac
	shift
done
if [ -n "$publish" ] && [[ ! $publish =~ ^[A-Za-z0-9._-]+:[A-Za-z0-9._-]+:[A-Za-z0-9._-]+$ ]]; then
	echo "$prog: --publish wants PUBLISHER:OFFER:SKU" >&2
	exit 2
fi
[ ${#pos[@]} -eq 2 ] || usage
outdir=${pos[0]}
version=${pos[1]}
# The same rule as artifact.DemoOptions.Version; it also keeps VERSION safe
# to embed in JSON and shell without quoting.
[[ $version =~ ^[A-Za-z0-9._+~-]{1,64}$ ]] ||
	{ echo "$prog: VERSION must be 1 to 64 of [A-Za-z0-9._+~-]" >&2; exit 2; }

cache=${VMSSD_GUEST_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/vmssd/guest-build}
kernel_pkg=${VMSSD_KERNEL_PKG:-linux-image-cloud-amd64}
epoch=${SOURCE_DATE_EPOCH:-1704067200}
[[ $epoch =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds"

# Names under rootfs/, and the manifest's qemu settings.
readonly kernel_name=vmlinuz initrd_name=initrd.img
readonly cmdline="console=ttyS0 quiet panic=-1 nokaslr"
readonly min_memory_mb=96 guest_port=80
# Modules the guest loads (with their dependencies, found at build time).
readonly root_modules="virtio_pci virtio_net virtio_balloon button evdev qemu_fw_cfg"

# --- host tools ---------------------------------------------------------------

for cmd in apt-get apt-cache dpkg dpkg-deb dpkg-query tar gzip find sort flock sha256sum; do
	command -v "$cmd" >/dev/null || missing "$cmd (this script needs a Debian host)"
done
[ "$(dpkg --print-architecture)" = amd64 ] || missing "an amd64 host (the guest is x86_64)"

is_installed() {
	[ "$(dpkg-query -W -f '${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}
need=()
for p in busybox-static cpio qemu-utils; do
	is_installed "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || missing "packages ${need[*]} (run as root to install them)"
	echo "$prog: installing ${need[*]}" >&2
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2; then
		DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2 ||
			missing "packages ${need[*]} (apt-get install failed)"
	fi
fi
busybox=$(dpkg-query -L busybox-static | awk '/^(\/usr)?\/bin\/busybox$/ && !p { print; p = 1 }')
[ -x "$busybox" ] || die "busybox-static ships no bin/busybox"
busybox_version=$(dpkg-query -W -f '${Version}' busybox-static)

# --- kernel: resolve, download and extract once (cached, shared, locked) -----

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9 # concurrent builds share the cache: one fetches, the others wait

resolve_kernel() {
	local pkg=$kernel_pkg dep
	# A metapackage depends on the versioned package; awk reads all input
	# so that apt-cache never dies of SIGPIPE under pipefail.
	dep=$(apt-cache depends "$pkg" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-/ && d == "" { d = $2 } END { print d }')
	[ -n "$dep" ] && pkg=$dep
	kver=$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { v = $2 } END { print v }')
	kpkg=$pkg
	[ -n "$kver" ] && [ "$kver" != "(none)" ]
}
kpkg="" kver=""
if ! resolve_kernel && [ "$(id -u)" = 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || true
	resolve_kernel || true
fi
if [ -z "$kver" ] || [ "$kver" = "(none)" ]; then
	# No apt lists (offline): use the newest cached .deb of the same
	# flavour (linux-image-cloud-amd64 -> linux-image-*cloud-amd64), if any.
	# shellcheck disable=SC2012 # names are ours: no newlines
	deb=$(ls "$cache"/debs/linux-image-*"${kernel_pkg#linux-image-}"_*_amd64.deb 2>/dev/null | sort -V | tail -n 1) ||
		true
	[ -n "$deb" ] || missing "kernel package $kernel_pkg (apt knows no candidate and the cache has no such .deb)"
	echo "$prog: warning: apt cannot resolve $kernel_pkg; using cached ${deb##*/}" >&2
	kpkg=$(dpkg-deb -f "$deb" Package)
	kver=$(dpkg-deb -f "$deb" Version)
else
	deb="$cache/debs/${kpkg}_${kver//:/%3a}_amd64.deb"
fi

if [ ! -f "$deb" ]; then
	mkdir -p "$cache/debs"
	dl=$(mktemp -d "$cache/debs/.download.XXXXXX")
	sandbox=()
	[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root) # no _apt warning
	if ! (cd "$dl" && apt-get download -q "${sandbox[@]}" "$kpkg=$kver" >&2); then
		rm -rf "$dl"
		missing "download of $kpkg=$kver (no network or mirror?)"
	fi
	got=("$dl"/*.deb)
	[ -f "${got[0]}" ] || { rm -rf "$dl"; die "apt-get download left no .deb"; }
	mv -f "${got[0]}" "$deb"
	rm -rf "$dl"
fi

kx="$cache/x/$(basename "$deb" .deb)"
if [ ! -d "$kx" ]; then
	mkdir -p "$cache/x"
	tmpx=$(mktemp -d "$cache/x/.extract.XXXXXX")
	dpkg -x "$deb" "$tmpx" || { rm -rf "$tmpx"; die "dpkg -x $deb failed"; }
	mv "$tmpx" "$kx"
fi
flock -u 9

vmlinuzs=("$kx"/boot/vmlinuz-*)
[ -f "${vmlinuzs[0]}" ] || die "no boot/vmlinuz-* in ${deb##*/}"
vmlinuz=${vmlinuzs[0]}
krel=${vmlinuz##*/vmlinuz-}
kmods="$kx/lib/modules/$krel"
[ -d "$kmods/kernel" ] || die "no lib/modules/$krel/kernel in ${deb##*/}"

# --- modules: the closure of root_modules, dependencies first ------------------
# The .deb has no modules.dep (depmod runs at install time), so each
# module's dependencies come from the "depends=" field of its .modinfo.

declare -A modfile=() builtin=() state=()
while IFS= read -r -d '' f; do
	n=${f##*/}
	n=${n%.ko}
	modfile[${n//-/_}]=$f
done < <(find "$kmods/kernel" -name '*.ko' -print0)
if [ -f "$kmods/modules.builtin" ]; then
	while IFS= read -r line; do
		n=${line##*/}
		n=${n%.ko}
		builtin[${n//-/_}]=1
	done <"$kmods/modules.builtin"
fi
modorder=()

module_depends() {
	tr '\0' '\n' <"$1" | awk 'index($0, "depends=") == 1 && !done { print substr($0, 9); done = 1 }'
}

add_module() {
	local name=$1 deps dep
	case ${state[$name]:-} in
	built) return ;;
	visiting) die "module dependency cycle through $name" ;;
	esac
	if [ -z "${modfile[$name]:-}" ]; then
		[ -n "${builtin[$name]:-}" ] || die "module $name is neither in $kpkg nor built in"
		state[$name]=built
		return
	fi
	state[$name]=visiting
	deps=$(module_depends "${modfile[$name]}")
	local -a list=()
	IFS=, read -r -a list <<<"$deps"
	for dep in "${list[@]}"; do
		[ -n "$dep" ] && add_module "${dep//-/_}"
	done
	state[$name]=built
	modorder+=("$name")
}
for m in $root_modules; do
	add_module "$m"
done

# --- initramfs tree ----------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/vmssd-guest-build.XXXXXX")
tmpout=""
cleanup() {
	rm -rf "$work"
	[ -z "$tmpout" ] || rm -f "$tmpout"
}
trap cleanup EXIT
root=$work/initramfs
mkdir -p "$root"
for d in bin sbin usr/bin usr/sbin dev etc/acpi etc/vmssd lib/modules proc root run sys tmp var/log www; do
	mkdir -p "$root/$d"
done
chmod 1777 "$root/tmp"
ln -s ../run "$root/var/run"

install -m 0755 "$busybox" "$root/bin/busybox"
# One symlink per applet, where busybox would install it.
for applet in $("$busybox" --list-full); do
	case $applet in bin/busybox) continue ;; esac
	dir=${applet%/*}
	up=${dir//[^\/]/}               # one "/" per directory level below the first
	rel=${up//\//../}               # ... becomes one "../"
	if [ "$dir" = bin ]; then target=busybox; else target="../${rel}bin/busybox"; fi
	[ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s "$target" "$root/$applet"
done
applets=$'\n'$("$busybox" --list)$'\n' # no "| grep -q": SIGPIPE under pipefail
for applet in sh mount insmod ip hostname httpd acpid poweroff sleep usleep tr head cat sync; do
	[[ $applets == *$'\n'"$applet"$'\n'* ]] || die "busybox-static lacks the $applet applet"
done

for m in "${modorder[@]}"; do
	install -m 0644 "${modfile[$m]}" "$root/lib/modules/$m.ko"
	echo "$m"
done >"$root/etc/vmssd/modules"

if [ "$unhealthy" = 1 ]; then health=unhealthy; name=vmssd-guest-unhealthy; else health=healthy; name=vmssd-guest; fi
printf '%s\n' "$version" >"$root/etc/vmssd/version"
printf '%s\n' "$health" >"$root/etc/vmssd/health"
cat >"$root/etc/os-release" <<EOF
NAME="vmssd guest"
ID=vmssd-guest
VERSION_ID="$version"
PRETTY_NAME="vmssd guest $version"
VMSSD_HEALTH=$health
VMSSD_KERNEL="$kpkg=$kver"
VMSSD_BUSYBOX="busybox-static=$busybox_version"
EOF
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"

# busybox acpid: the input layer's power button event ("PWRF" for QEMU's
# ACPI fixed power button) runs /etc/acpi/power (relative to -c).
printf 'PWRF power\nPWRB power\n' >"$root/etc/acpid.conf"
cat >"$root/etc/acpi/power" <<'EOF'
#!/bin/sh
# Run by acpid on the ACPI power button (QMP system_powerdown).
exec >/dev/console 2>&1
echo "GUEST-POWEROFF reason=acpi-power-button"
sync
# PID 1 is a shell, which would ignore a plain poweroff: force it.
poweroff -f
EOF
chmod 0755 "$root/etc/acpi/power"

write_init() {
	cat <<'EOF'
#!/bin/busybox sh
# /init of the vmssd demo guest: PID 1, it must never exit (the kernel
# panics, and with panic=-1 and QEMU's -no-reboot the VM stops).
# Built by scripts/build-guest.sh, which documents the parameters and
# endpoints.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t devtmpfs devtmpfs /dev
# A failed redirection would make this shell, PID 1, exit: check first.
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755,size=4m tmpfs /run

VERSION=$(cat /etc/vmssd/version)
HEALTH=$(cat /etc/vmssd/health)

# keep CHARS MAX VALUE: VALUE, percent-decoded, without other characters,
# at most MAX bytes. The result is safe in JSON strings and file names.
keep() {
	printf '%b' "$(printf '%s' "$3" | sed 's/%\([0-9A-Fa-f][0-9A-Fa-f]\)/\\x\1/g')" |
		tr -cd "$1" | head -c "$2"
}
word() { keep 'A-Za-z0-9._:@+-' 64 "$1"; }

HOST=vmssd-guest INSTANCE="" VMID="" VMSS="" FD=0 UD=0
IP=10.0.2.15/24 GW=10.0.2.2 NETIP="" NETGW=""
set -f # no globbing of command-line words
read -r CMDLINE </proc/cmdline
for w in $CMDLINE; do
	case $w in
	vmssd.hostname=*) HOST=$(keep 'A-Za-z0-9-' 63 "${w#*=}") ;;
	vmssd.instance=*) INSTANCE=$(word "${w#*=}") ;;
	vmssd.vmid=*) VMID=$(word "${w#*=}") ;;
	vmssd.vmss=*) VMSS=$(word "${w#*=}") ;;
	vmssd.fd=*) FD=$(keep 0-9 9 "${w#*=}") ;;
	vmssd.ud=*) UD=$(keep 0-9 9 "${w#*=}") ;;
	vmssd.ip=*) IP=$(keep '0-9./' 18 "${w#*=}") ;;
	vmssd.gw=*) GW=$(keep '0-9.' 15 "${w#*=}") ;;
	vmssd.netip=*) NETIP=$(keep '0-9./' 18 "${w#*=}") ;;
	vmssd.netgw=*) NETGW=$(keep '0-9.' 15 "${w#*=}") ;;
	esac
done
set +f
[ -n "$HOST" ] || HOST=vmssd-guest
[ -n "$FD" ] || FD=0
[ -n "$UD" ] || UD=0
NAME=""
[ -z "$VMSS" ] || [ -z "$INSTANCE" ] || NAME="${VMSS}_${INSTANCE}"

hostname "$HOST"
echo "$HOST" >/etc/hostname
printf '127.0.0.1 localhost\n10.0.2.15 %s\n' "$HOST" >/etc/hosts

while read -r m; do
	insmod "/lib/modules/$m.ko" || echo "vmssd-guest: insmod $m failed"
done </etc/vmssd/modules

ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
	usleep 50000
	i=$((i + 1))
done
if [ -e /sys/class/net/eth0 ]; then
	ip addr add "$IP" dev eth0
	ip link set eth0 up
	ip route add default via "$GW"
else
	echo "vmssd-guest: no eth0 after 5 s: serving on lo only"
fi
# The virtual network (a second NIC), as the host's command line says.
if [ -n "$NETIP" ]; then
	i=0
	while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 100 ]; do
		usleep 50000
		i=$((i + 1))
	done
	if [ -e /sys/class/net/eth1 ]; then
		ip addr add "$NETIP" dev eth1
		ip link set eth1 up
		[ -z "$NETGW" ] || ip route replace default via "$NETGW" dev eth1
		echo "vmssd-guest: eth1 $NETIP gateway ${NETGW:-none}"
	else
		echo "vmssd-guest: no eth1 after 5 s: not on the virtual network"
	fi
fi

mkdir -p /www/metadata
if [ "$HEALTH" = healthy ]; then
	STATUS=Healthy WHY="healthy image"
else
	STATUS=Unhealthy WHY="built with --unhealthy: /health answers 404"
fi
BODY="{\"status\":\"$STATUS\",\"applicationHealthState\":\"$STATUS\",\"imageVersion\":\"$VERSION\",\"instanceId\":\"$INSTANCE\",\"vmId\":\"$VMID\"}"
if [ "$HEALTH" = healthy ]; then
	echo "$BODY" >/www/health
	: >/etc/httpd.conf
else
	# No /www/health: busybox httpd answers 404 with this page as body.
	echo "$BODY" >/etc/vmssd/unhealthy.json
	echo "E404:/etc/vmssd/unhealthy.json" >/etc/httpd.conf
fi
echo "{\"status\":\"$STATUS\",\"imageVersion\":\"$VERSION\",\"health\":\"$WHY\"}" >/www/status
# An IMDS-like subset; as in IMDS, every value is a string.
FWCFG=/sys/firmware/qemu_fw_cfg/by_name/opt/vmssd/metadata/raw
[ ! -r "$FWCFG" ] || cp "$FWCFG" /www/metadata/vmssd
echo "{\"compute\":{\"computerName\":\"$HOST\",\"name\":\"$NAME\",\"osType\":\"Linux\",\"platformFaultDomain\":\"$FD\",\"platformUpdateDomain\":\"$UD\",\"version\":\"$VERSION\",\"vmId\":\"$VMID\",\"vmScaleSetName\":\"$VMSS\",\"osProfile\":{\"computerName\":\"$HOST\"}},\"instanceId\":\"$INSTANCE\"}" >/www/metadata/instance

httpd -p 80 -h /www -c /etc/httpd.conf # listens before it daemonizes
# -l: without a log file acpid would open /var/log/acpid.log.
acpid -c /etc/acpi -a /etc/acpid.conf -l /dev/console

echo "GUEST-READY version=$VERSION hostname=$HOST ip=$IP port=80 health=$HEALTH"
# Reap orphans (the shell waits for any child) and never exit.
while :; do
	sleep 3600
done
EOF
}
write_init >"$root/init"
chmod 0755 "$root/init"

# Fixed mtimes everywhere (-h: the symlinks themselves), then a sorted newc
# archive with owner 0:0 and renumbered inodes, gzip'd without name or time.
find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -mindepth 1 -printf '%P\0' | sort -z |
	cpio --quiet --null -o -H newc -R 0:0 --reproducible) | gzip -9 -n >"$work/initrd.img"

# --- the artifact ------------------------------------------------------------

stage=$work/artifact
mkdir -p "$stage/rootfs"
install -m 0644 "$vmlinuz" "$stage/rootfs/$kernel_name"
install -m 0644 "$work/initrd.img" "$stage/rootfs/$initrd_name"
cat >"$stage/manifest.json" <<EOF
{
  "format": "vmssd.qemu/v1",
  "osType": "Linux",
  "name": "$name",
  "version": "$version",
  "healthProbe": {
    "protocol": "http",
    "path": "/health"
  },
  "qemu": {
    "kernel": "$kernel_name",
    "initrd": "$initrd_name",
    "cmdline": "$cmdline",
    "minMemoryMB": $min_memory_mb,
    "guestPort": $guest_port
  }
}
EOF
chmod 0644 "$stage/manifest.json"
chmod 0755 "$stage/rootfs"
find "$stage" -exec touch -h -d "@$epoch" {} +

mkdir -p "$outdir"
final="$outdir/vmssd-guest-$version.tar.gz"
tmpout=$(mktemp "$outdir/.vmssd-guest-$version.tar.gz.XXXXXX")
tar -C "$stage" --sort=name --format=ustar --owner=0 --group=0 --numeric-owner \
	--mtime="@$epoch" -cf - manifest.json rootfs | gzip -9 -n >"$tmpout"
chmod 0644 "$tmpout"
mv -f "$tmpout" "$final"
tmpout=""

sum=$(sha256sum "$final")
echo "built $final sha256:${sum%% *} ($health; $kpkg=$kver, busybox-static=$busybox_version, modules: ${modorder[*]})"

# --publish: add the artifact to a running vmssd's catalog with vmssctl
# (on PATH, or built from this checkout), as the operator whose vmssctl
# config is in effect.
if [ -n "$publish" ]; then
	IFS=: read -r pub_publisher pub_offer pub_sku <<<"$publish"
	abs_final=$(cd "$(dirname "$final")" && pwd)/$(basename "$final")
	args=(image add --publisher "$pub_publisher" --offer "$pub_offer" --sku "$pub_sku" --version "$version" --file "$abs_final")
	if command -v vmssctl >/dev/null 2>&1; then
		vmssctl "${args[@]}"
	else
		(cd "$(dirname "$0")/.." && go run ./cmd/vmssctl "${args[@]}")
	fi
fi
