#!/usr/bin/env bash
# Command-mode benchmark (issue 12's target): `flint run --kernel <Debian cloud kernel>
# -- true`, end to end, against QEMU -M microvm booting the same kernel with a busybox
# initramfs that loads the same modules and runs the same command, interleaved in one
# run inside the nested test host. Prints a Markdown report (machine, commands, the
# tables of internal/benchreport -command) to stdout, the form BENCHMARKS.md's
# "Command mode against QEMU" section records.
#
# Usage: scripts/bench-command.sh [--runs N] [--out FILE] [--log FILE] [--timeout S]
#
#   --runs N      timed rounds (default 5), after one warm-up round; each round runs
#                 flint --no-host-root, flint with the host root and QEMU (in a
#                 rotating order), then flint's two phase runs
#   --out FILE    also write the report to FILE
#   --log FILE    keep the nested host's console (every BENCHCMD line) in FILE
#   --timeout S   the nested host's timeout (default 2400)
#
# What runs in the nested host (scripts/bench-command-job.sh, one L1 for all runs):
#   flint run --kernel vmlinuz --memory 256 --cpus 1 --modules DIR --fail-on all,-warn \
#       --report R --timing \
#       [--no-host-root --initrd busybox.cpio] -- true
#   qemu-system-x86_64 -M microvm,acpi=on -enable-kvm -cpu host -m 256 -smp 1 -nodefaults \
#       -no-user-config -display none -serial stdio -no-reboot \
#       -global virtio-mmio.force-legacy=false \
#       3x(-device virtio-serial-device,max_ports=1 + virtconsole on a null chardev) \
#       -kernel vmlinuz -initrd qemu-guest.cpio \
#       -append "console=ttyS0 reboot=k panic=-1 loglevel=5 printk.time=1 rdinit=/init"
# QEMU's guest is scripts/mkinitramfs-guest.sh --script (uncompressed, as flint's
# archive is) with virtio_mmio and virtio_console (and their dependencies, what
# flint's command mode loads for --no-host-root) and its own /init: it mounts what
# flint's agent mounts (proc, sysfs, devtmpfs, two tmpfs), loads the modules, brings
# lo up, waits for the three consoles, runs /bin/true with its stdin, stdout and
# stderr on them, and powers off; it prints /proc/uptime at /init, after the module
# loads, and right before and after the command. flint's busybox.cpio only gives
# --no-host-root's command a `true` (flint replaces its /init).
#
# Needs: go, qemu-system-x86_64 (apt-get install -y qemu-system-x86), cpio, busybox-static,
# the cloud kernel (scripts/fetch-kernels.sh; fetched when missing). Takes ~10-20 minutes
# under emulation.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

runs=5 out='' log='' timeout_s=2400
while (($#)); do
	case $1 in
	--runs) runs=${2:?--runs needs N}; shift ;;
	--out) out=${2:?--out needs a FILE}; shift ;;
	--log) log=${2:?--log needs a FILE}; shift ;;
	--timeout) timeout_s=${2:?--timeout needs SECONDS}; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) flint_die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
[[ $runs =~ ^[1-9][0-9]*$ ]] || flint_die "--runs must be a positive number"
root=$(flint_repo_root)
cd "$root"
flint_need_tools go qemu-system-x86_64 cpio
cache=$(flint_cache_dir)
kdir=$cache/kernels/cloud
if [[ ! -e $kdir/vmlinuz || ! -e $kdir/modules/modules.dep ]]; then
	flint_log "cloud kernel not in $cache; fetching"
	bash "$here/fetch-kernels.sh" "$cache" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/flint-benchcmd.XXXXXX")
trap 'rm -rf "$work"' EXIT
pl=$work/payload
mkdir -p "$pl"

flint_log "building flint (make build) and benchreport"
make -s build >&2
go build -o "$work/benchreport" ./internal/benchreport

cp -L "$kdir/vmlinuz" "$pl/vmlinuz"
echo "RUNS=$runs" >"$pl/bench.conf"

# The module tree flint gets (--modules): what command mode loads for both runs
# (virtio_mmio, virtio_console; virtiofs and overlay for the host root), with
# depmod's files; L1 keeps its root in memory, the whole tree does not fit.
mods=$(cd "$kdir/modules" && pwd -P)
mkdir -p "$pl/modules"
for f in modules.dep modules.order modules.builtin modules.builtin.modinfo; do
	cp "$mods/$f" "$pl/modules/$f"
done
while IFS= read -r rel; do
	mkdir -p "$pl/modules/$(dirname "$rel")"
	cp "$mods/$rel" "$pl/modules/$rel"
done < <(flint_resolve_modules "$mods" virtio_mmio virtio_console virtiofs overlay)

# flint --no-host-root's userland (its /init is replaced by flint's agent).
bash "$here/mkinitramfs-guest.sh" --marker --no-compress -o "$pl/busybox.cpio" 2>/dev/null

# QEMU's guest: the command part is --script's file, the rest its own /init.
g=$work/guest
mkdir -p "$g/extra"
cat >"$g/job.sh" <<'JOB'
# The command, as flint's agent runs it: once the three consoles exist, with its
# stdin, stdout and stderr on them.
n=0
while [ ! -c /dev/hvc0 ] || [ ! -c /dev/hvc1 ] || [ ! -c /dev/hvc2 ]; do
	n=$((n + 1))
	[ $n -gt 2000 ] && { echo "BENCHCMD-GUEST at=error what=no-consoles"; break; }
	usleep 1000
done
read -r up _ </proc/uptime
echo "BENCHCMD-GUEST at=cmd0 up=$up"
/bin/true </dev/hvc2 >/dev/hvc0 2>/dev/hvc1
rc=$?
read -r up _ </proc/uptime
echo "BENCHCMD-GUEST at=cmd1 up=$up rc=$rc"
JOB
cat >"$g/extra/init" <<'INIT'
#!/bin/sh
# bench-command.sh's QEMU guest: what flint's agent does for `-- true`, with the
# guest's uptime printed at /init, after the module loads, and around the command.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
read -r up _ </proc/uptime
echo "BENCHCMD-GUEST at=init up=$up"
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
while read -r ko; do
	[ -n "$ko" ] || continue
	insmod "$ko" || echo "BENCHCMD-GUEST at=error what=insmod-$ko"
done </etc/modules.order
read -r up _ </proc/uptime
echo "BENCHCMD-GUEST at=modules up=$up"
ip link set lo up
. /job.sh
poweroff -f
while :; do sleep 3600; done
INIT
chmod 0755 "$g/extra/init"
bash "$here/mkinitramfs-guest.sh" --script "$g/job.sh" --no-compress --modules "$mods" \
	--load "virtio_mmio virtio_console" --extra "$g/extra" -o "$pl/qemu-guest.cpio" 2>/dev/null

flint_log "copying QEMU and its firmware for L1 (mknet-tools.sh)"
bash "$here/mknet-tools.sh" -o "$pl/qemu" qemu-system-x86_64 >/dev/null

load0=$(cut -d' ' -f1-3 /proc/loadavg)
flint_log "nested host: warm-up + $runs rounds (flint --no-host-root, flint host root, QEMU, 2 phase runs)"
console=$work/console.log
nrc=0
bash "$here/nested-host.sh" --flint bin/flint --payload "$pl" --script "$here/bench-command-job.sh" \
	--timeout "$timeout_s" >"$console" || nrc=$?
load1=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ -n $log ]]; then cp "$console" "$log"; fi
tr -d '\r' <"$console" | grep -a '^BENCHCMD' >"$work/lines" || true
if ((nrc != 0)) || ! grep -q '^BENCHCMD-END' "$work/lines"; then
	flint_log "the nested host ended with status $nrc before the last round; the report covers what finished"
fi

report=$work/report.md
{
	echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')  "
	dirty=$(git status --porcelain --untracked-files=no -- cmd vmm agent boot devices virtio 2>/dev/null | grep -v '_test\.go$' || true)
	echo "Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)${dirty:+ (with uncommitted changes to Flint code)}  "
	echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sort -u | paste -sd, -)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)  "
	echo "Nested host: scripts/nested-host.sh (QEMU $(qemu-system-x86_64 --version | head -1 | awk '{print $4}') TCG, 2 vCPUs, 2 GiB, kvm_amd on emulated SVM); guest kernel $(cat "$kdir/kver" 2>/dev/null || basename "$(readlink -f "$kdir/vmlinuz")")  "
	echo "Load average: $load0 at the start, $load1 at the end"
	echo
	echo "\`scripts/bench-command.sh --runs $runs\`: one warm-up round, then $runs rounds, configurations interleaved; seconds, median (min-max):"
	echo
	"$work/benchreport" -command <"$work/lines"
} >"$report"
cat "$report"
if [[ -n $out ]]; then cp "$report" "$out"; fi
