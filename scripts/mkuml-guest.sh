#!/usr/bin/env bash
# Build the initramfs of a user-mode Linux (UML) test guest: Debian's stock UML kernel
# (package user-mode-linux, /usr/bin/linux.uml) with the real virtio_net driver, which
# drives a vhost-user backend through UML's virtio_uml frontend.
#
# Usage: scripts/mkuml-guest.sh [-o OUT] [--script FILE] [--modules DIR] [--force]
#
#   -o, --output OUT  image to write [CACHE/uml/guest.cpio.gz]; the path is printed
#                     on stdout. It is rebuilt only when an input changed (the inputs'
#                     checksum is kept next to it in OUT.inputs).
#   --script FILE     guest script baked in as /guest.sh [scripts/uml-guest.sh]
#   --modules DIR     UML module tree [/usr/lib/uml/modules/<the only version>]
#   --force           rebuild even when the cached image is current
# CACHE is $FLINT_CACHE, default <repo>/.cache.
#
# The image: busybox-static, the modules failover, net_failover and virtio_net (from
# DIR's modules.dep), iperf3 with its libraries and loader (scripts/mknet-tools.sh),
# and an init that mounts /proc /sys /dev /tmp, loads the modules, brings up lo and
# the first other interface (eth0 through virtio_uml, or vec0 with UML's own vector
# driver) at flintuml.addr, prints
#   UML-GUEST-IF dev=D driver=V mtu=N mac=M features=BITS
# runs the script flintuml.script names [/guest.sh] (its parameters are on the
# kernel command line too), prints UML-GUEST-EXIT rc=N and powers off (`poweroff -f`:
# in UML a reboot re-executes the kernel).
#
# Kernel command line: flintuml.addr=A/P [10.0.3.2/24], flintuml.script=PATH.
# Debian packages: user-mode-linux busybox-static iperf3 cpio.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out='' script=$here/uml-guest.sh moddir='' force=0
while (($#)); do
	case $1 in
	-o | --output | --script | --modules)
		[[ $# -ge 2 ]] || flint_die "$1 needs a value"
		case $1 in -o | --output) out=$2 ;; --script) script=$2 ;; --modules) moddir=$2 ;; esac
		shift
		;;
	--force) force=1 ;;
	-h | --help) usage 0 ;;
	*) flint_die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
[[ -f $script ]] || flint_die "guest script $script not found"
if [[ -z $moddir ]]; then
	shopt -s nullglob
	trees=(/usr/lib/uml/modules/*/)
	shopt -u nullglob
	((${#trees[@]} == 1)) ||
		flint_die "expected one UML module tree in /usr/lib/uml/modules, found ${#trees[@]} (install with: apt-get install -y user-mode-linux, or pass --modules)"
	moddir=${trees[0]%/}
fi
[[ -f $moddir/modules.dep ]] || flint_die "$moddir/modules.dep not found"
[[ -n $out ]] || out=$(flint_cache_dir "")/uml/guest.cpio.gz
flint_need_tools cpio gzip sha256sum iperf3

# Everything the image is made of: rebuild when any of it changed.
inputs=$(
	cd "$moddir" && sha256sum "$here/mkuml-guest.sh" "$here/lib/common.sh" "$here/mknet-tools.sh" "$script" \
		"$(flint_busybox)" "$(command -v iperf3)" modules.dep \
		kernel/drivers/net/virtio_net.ko* | sed "s|  .*/|  |"
)
if ((!force)) && [[ -f $out && -f $out.inputs ]] && [[ $(cat "$out.inputs") == "$inputs" ]]; then
	printf '%s\n' "$out"
	exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/flint-uml-guest.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
flint_rootfs_skeleton "$root"
: >"$root/etc/modules.order"
flint_install_modules "$moddir" "$root" etc/modules.order virtio_net
bash "$here/mknet-tools.sh" -o "$root" iperf3 2>/dev/null
cp "$script" "$root/guest.sh"

cat >"$root/init" <<'INIT'
#!/bin/sh
export PATH=/usr/local/bin:/bin:/sbin:/usr/bin:/usr/sbin HOME=/root FLINT_GUEST=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
arg() {
	v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^flintuml\.$1=//p" | tail -n1)
	echo "${v:-$2}"
}
while read -r ko; do
	[ -n "$ko" ] && { insmod "$ko" || echo "uml-init: insmod $ko failed"; }
done </etc/modules.order
ip link set lo up
dev=''
i=0
while [ -z "$dev" ] && [ $i -lt 100 ]; do
	for d in /sys/class/net/*; do
		[ "${d##*/}" = lo ] || { dev=${d##*/}; break; }
	done
	[ -n "$dev" ] || sleep 0.05
	i=$((i + 1))
done
if [ -n "$dev" ]; then
	d=/sys/class/net/$dev
	ip addr add "$(arg addr 10.0.3.2/24)" dev "$dev"
	ip link set "$dev" up
	drv=$(basename "$(readlink -f "$d/device/driver" 2>/dev/null)" 2>/dev/null)
	echo "UML-GUEST-IF dev=$dev driver=${drv:-none} mtu=$(cat "$d/mtu") mac=$(cat "$d/address") features=$(cat "$d/device/features" 2>/dev/null || echo none)"
else
	echo "UML-GUEST-IF result=fail reason=no-interface"
fi
export FLINTUML_DEV="$dev"
sh "$(arg script /guest.sh)"
echo "UML-GUEST-EXIT rc=$?"
sync
poweroff -f
INIT
chmod 0755 "$root/init"

mkdir -p "$(dirname "$out")"
flint_pack_cpio "$root" "$out" gzip
printf '%s\n' "$inputs" >"$out.inputs"
flint_log "wrote $out ($(du -h "$out" | cut -f1))"
printf '%s\n' "$out"
