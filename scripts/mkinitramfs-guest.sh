#!/usr/bin/env bash
# Build a busybox initramfs (newc cpio, gzip) for a Flint test guest.
#
# Usage: scripts/mkinitramfs-guest.sh (--marker | --shell | --script FILE) -o OUT
#            [--modules DIR [--kver V] --load "mod1 mod2 ..."] [--extra DIR]
#
# Modes (the init mounts /proc, /sys, /dev (devtmpfs), /tmp and loads modules first):
#   --marker       print "FLINT-BOOT-OK cpus=N kernel=<release>" (N = processor lines
#                  in /proc/cpuinfo), then `reboot -f`.
#   --shell        print a banner, run an interactive sh on the console (setsid
#                  cttyhack sh); `reboot -f` when the shell exits.
#   --script FILE  run FILE with sh; print "FLINT-SCRIPT-EXIT=<rc>"; then `reboot -f`.
# Options:
#   -o, --output OUT  where to write the image (written atomically)
#   --modules DIR     the kernel's module directory (lib/modules/<kver>, with
#                     modules.dep, e.g. CACHE/kernels/cloud/modules)
#   --kver V          kernel release of DIR (default: the name DIR resolves to)
#   --load "M ..."    modules to insmod at start, in this order; each one's
#                     dependencies (from modules.dep) are added and loaded before it
#   --extra DIR       copy DIR's contents into the image root (after everything else);
#                     its etc/flint-init.d/*.sh are sourced by init after the modules load
#   --no-compress     write a plain cpio instead of gzip
# The kernel command line should contain console=ttyS0 (or the console in use); a
# `reboot -f` needs reboot=k (or acpi/triple-fault reset support) in the VMM to end it.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

mode='' out='' moddir='' kver='' load='' extra='' script='' comp=gzip
while (($#)); do
	case $1 in
	--marker) mode=marker ;;
	--shell) mode=shell ;;
	--script)
		mode=script
		script=${2:?--script needs a FILE}
		shift
		;;
	-o | --output)
		out=${2:?$1 needs a path}
		shift
		;;
	--modules)
		moddir=${2:?--modules needs a DIR}
		shift
		;;
	--kver)
		kver=${2:?--kver needs a version}
		shift
		;;
	--load)
		load=${2?--load needs a list}
		shift
		;;
	--extra)
		extra=${2:?--extra needs a DIR}
		shift
		;;
	--no-compress) comp=none ;;
	-h | --help) usage 0 ;;
	*) flint_die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
[[ -n $mode ]] || flint_die "choose a mode: --marker, --shell or --script FILE (see --help)"
[[ -n $out ]] || flint_die "missing -o OUT"
[[ -z $script || -f $script ]] || flint_die "script $script not found"
[[ -z $extra || -d $extra ]] || flint_die "extra directory $extra not found"
if [[ -n $load && -z $moddir ]]; then
	flint_die "--load needs --modules DIR"
fi
if [[ -n $moddir ]]; then
	[[ -d $moddir ]] || flint_die "module directory $moddir not found"
	real=$(cd "$moddir" && pwd -P)
	if [[ -n $kver && ${real##*/} != "$kver" ]]; then
		# Accept a module tree root too: DIR/lib/modules/<kver>.
		if [[ -d $moddir/lib/modules/$kver ]]; then
			moddir=$moddir/lib/modules/$kver
		else
			flint_die "--modules $moddir is not lib/modules/$kver"
		fi
	fi
fi
flint_need_tools cpio gzip find sort

work=$(mktemp -d "${TMPDIR:-/tmp}/flint-initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
flint_rootfs_skeleton "$root"
: >"$root/etc/modules.order"
if [[ -n $load ]]; then
	# shellcheck disable=SC2086 # the list is whitespace separated on purpose
	flint_install_modules "$moddir" "$root" etc/modules.order $load
fi

# The common start of every init.
cat >"$root/init" <<'INIT'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=${TERM:-linux} FLINT_GUEST=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
# Re-open the console in case the kernel found no /dev/console in the image.
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
while read -r ko; do
	[ -n "$ko" ] || continue
	insmod "$ko" || echo "flint-init: insmod $ko failed"
done </etc/modules.order
# Start-up hooks an --extra directory may add, sourced in name order.
for hook in /etc/flint-init.d/*.sh; do
	[ -f "$hook" ] && . "$hook"
done
INIT

case $mode in
marker)
	cat >>"$root/init" <<'INIT'
n=$(grep -c '^processor' /proc/cpuinfo)
echo "FLINT-BOOT-OK cpus=$n kernel=$(uname -r)"
INIT
	;;
shell)
	cat >>"$root/init" <<'INIT'
echo
echo "=== Flint guest: $(uname -r), $(grep -c '^processor' /proc/cpuinfo) vCPU(s), $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
echo "=== busybox shell; 'exit' (or Ctrl-D) reboots the guest, which ends flint"
export PS1='flint-guest:\w# '
setsid cttyhack sh -l
echo "flint-init: shell exited, rebooting"
INIT
	;;
script)
	cp "$script" "$root/job.sh"
	cat >>"$root/init" <<'INIT'
sh /job.sh
echo "FLINT-SCRIPT-EXIT=$?"
INIT
	;;
esac
cat >>"$root/init" <<'INIT'
sync
reboot -f
# reboot -f only returns if the reboot syscall failed; keep init alive instead of
# panicking so the failure is visible.
echo "flint-init: reboot -f failed"
while :; do sleep 3600; done
INIT
chmod 0755 "$root/init"

if [[ -n $extra ]]; then
	cp -a "$extra/." "$root/"
fi

flint_pack_cpio "$root" "$out" "$comp"
flint_log "wrote $out ($(du -h "$out" | cut -f1), mode $mode${load:+, modules: $load})"
