#!/usr/bin/env bash
# Boot a stock Debian kernel with Flint into an interactive busybox shell (`make run`).
#
# Usage: scripts/run-nested-shell.sh [--kernel cloud|amd64] [--cpus N] [--memory MiB]
#            [--load "mod ..."] [--flint PATH] [--cache DIR] [--direct | --nested]
#
# Fetches the kernels (cached), builds flint (CGO_ENABLED=0) unless --flint is given,
# builds the --shell initramfs, then runs flint with the guest console on this
# terminal. On a machine with hardware virtualization flint runs here; otherwise (no
# vmx/svm, or /dev/kvm is PVM) it runs inside the nested test host (nested-host.sh
# --interactive). `exit` in the guest shell reboots the guest, flint exits, and the
# nested host powers off. Ctrl-A x quits the nested host at any time.
#   --kernel F    kernel flavour (default cloud)
#   --cpus N      guest vCPUs (default 2)         --memory MiB  guest memory (default 512)
#   --load "M"    guest modules to insmod at start (e.g. "virtio_mmio virtio_net")
#   --cmdline S   guest kernel command line (default "console=ttyS0 reboot=k panic=-1")
#   --direct / --nested   force where flint runs
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

flavour=cloud cpus=2 memory=512 load='' flint='' cache='' force=''
cmdline='console=ttyS0 reboot=k panic=-1'
while (($#)); do
	case $1 in
	--kernel) flavour=${2:?--kernel needs cloud or amd64}; shift ;;
	--cpus) cpus=${2:?--cpus needs N}; shift ;;
	--memory) memory=${2:?--memory needs MiB}; shift ;;
	--load) load=${2?--load needs a list}; shift ;;
	--cmdline) cmdline=${2?--cmdline needs a string}; shift ;;
	--flint) flint=${2:?--flint needs a PATH}; shift ;;
	--cache) cache=${2:?--cache needs a DIR}; shift ;;
	--direct) force=direct ;;
	--nested) force=nested ;;
	-h | --help) usage 0 ;;
	*) flint_die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
[[ $flavour == cloud || $flavour == amd64 ]] || flint_die "--kernel must be cloud or amd64"

repo=$(flint_repo_root)
cache=$(flint_cache_dir "$cache")
bash "$here/fetch-kernels.sh" "$cache" >/dev/null
kdir=$cache/kernels/$flavour

work=$(mktemp -d "${TMPDIR:-/tmp}/flint-run.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ -z $flint ]]; then
	flint_need_tools go
	flint_log "building flint (CGO_ENABLED=0 go build ./cmd/flint)"
	(cd "$repo" && CGO_ENABLED=0 go build -o "$work/flint" ./cmd/flint) ||
		flint_die "building ./cmd/flint failed"
	flint=$work/flint
fi
[[ -x $flint ]] || flint_die "flint binary $flint not found or not executable"

initrd=$cache/initramfs/shell-$flavour.cpio.gz
mkargs=(--shell -o "$initrd")
if [[ -n $load ]]; then
	mkargs+=(--modules "$kdir/modules" --load "$load")
fi
bash "$here/mkinitramfs-guest.sh" "${mkargs[@]}"

mode=$force
reason=''
if [[ -z $mode ]]; then
	if reason=$(flint_nested_reason); then mode=direct; else mode=nested; fi
fi

if [[ $mode == direct ]]; then
	flint_log "running flint directly on /dev/kvm (hardware virtualization); 'exit' in the guest ends it"
	"$flint" run --kernel "$kdir/vmlinuz" --initrd "$initrd" --cpus "$cpus" \
		--memory "$memory" --console stdio --cmdline "$cmdline"
	exit
fi

flint_log "NOTE: this machine cannot boot stock kernels on its own /dev/kvm (${reason:-forced with --nested})."
flint_log "NOTE: flint runs inside the nested test host (QEMU TCG emulating AMD SVM); the guest is slow there."
mkdir -p "$work/payload"
ln -s "$(readlink -f "$kdir/vmlinuz")" "$work/payload/vmlinuz"
ln -s "$initrd" "$work/payload/initrd.cpio.gz"
# The job runs in L1 with L1's serial console (this terminal) as its controlling tty.
# Raw mode keeps L1's tty from echoing and line-buffering keys meant for the guest.
cat >"$work/job.sh" <<JOB
echo "nested-host(L1): starting flint: $flavour kernel, $cpus vCPUs, $memory MiB"
stty raw -echo 2>/dev/null
/usr/bin/flint run --kernel /payload/vmlinuz --initrd /payload/initrd.cpio.gz \\
	--cpus $cpus --memory $memory --console stdio --cmdline '${cmdline//\'/\'\\\'\'}'
rc=\$?
stty sane 2>/dev/null
echo
echo "nested-host(L1): flint exited with status \$rc"
exit \$rc
JOB
bash "$here/nested-host.sh" --interactive --cache "$cache" --flint "$flint" \
	--payload "$work/payload" --script "$work/job.sh"
