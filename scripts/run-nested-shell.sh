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
# The guest gets a network (scripts/net-shell-host.sh): a virtio-net interface on a
# TAP in a network namespace that flint runs in (on this machine, or in the nested
# host), eth0 10.0.2.15/24 in the guest, 10.0.2.1 on the host side with a web page
# and an iperf3 server. If that cannot be set up, it says why and boots without.
#   --kernel F    kernel flavour (default cloud)
#   --cpus N      guest vCPUs (default 2)         --memory MiB  guest memory (default 512)
#   --load "M"    guest modules to insmod at start (default, for the network:
#                 "virtio_pci virtio_mmio virtio_net")
#   --no-net      no network interface
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

flavour=cloud cpus=2 memory=512 load='virtio_pci virtio_mmio virtio_net' flint='' cache='' force=''
net=1
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
	--no-net) net=0 ;;
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
# The guest configures eth0 when it has one; iperf3 and iputils ping come along
# when this machine has them.
extra=$work/extra
mkdir -p "$extra/etc/flint-init.d"
cat >"$extra/etc/flint-init.d/50-net.sh" <<'HOOK'
if [ -e /sys/class/net/eth0 ]; then
	ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up && ip route add default via 10.0.2.1
	echo "=== network: eth0 10.0.2.15/24 (virtio-net); host side 10.0.2.1: ping 10.0.2.1, wget -O- http://10.0.2.1/"
	[ -x /usr/local/bin/iperf3 ] && echo "=== iperf3 -c 10.0.2.1 measures the link (iperf3 and iputils ping are in /usr/local/bin)"
	export PATH=$PATH:/usr/local/bin
else
	echo "=== no eth0: this guest has no network"
fi
HOOK
if ((net)); then
	bash "$here/mknet-tools.sh" -o "$extra" iperf3 ping 2>/dev/null ||
		flint_log "note: no iperf3/iputils ping for the guest (apt-get install -y iperf3 iputils-ping)"
fi
mkargs+=(--extra "$extra")
bash "$here/mkinitramfs-guest.sh" "${mkargs[@]}"

mode=$force
reason=''
if [[ -z $mode ]]; then
	if reason=$(flint_nested_reason); then mode=direct; else mode=nested; fi
fi

if [[ $mode == direct ]]; then
	flint_log "running flint directly on /dev/kvm (hardware virtualization); 'exit' in the guest ends it"
	run=("$flint" run --kernel "$kdir/vmlinuz" --initrd "$initrd" --cpus "$cpus"
		--memory "$memory" --console stdio --cmdline "$cmdline")
	if ((net)); then
		if [[ $(id -u) == 0 ]]; then
			sh "$here/net-shell-host.sh" -- "${run[@]}"
			exit
		fi
		flint_log "note: no network for the guest: creating a network namespace and a TAP needs root"
	fi
	"${run[@]}"
	exit
fi

flint_log "NOTE: this machine cannot boot stock kernels on its own /dev/kvm (${reason:-forced with --nested})."
flint_log "NOTE: flint runs inside the nested test host (QEMU TCG emulating AMD SVM); the guest is slow there."
mkdir -p "$work/payload"
ln -s "$(readlink -f "$kdir/vmlinuz")" "$work/payload/vmlinuz"
ln -s "$initrd" "$work/payload/initrd.cpio.gz"
# The network: iproute2 (ip netns) and iperf3 for L1, its TAP driver, the setup script.
wrap=''
if ((net)); then
	tun=$(sed -n 's,^\([^:]*/tun\.ko\):.*,\1,p' "$cache/kernels/amd64/modules/modules.dep" | head -n1)
	if [[ -z $tun ]]; then
		flint_log "note: no network for the guest: no tun.ko in the nested host's kernel modules"
	elif ! bash "$here/mknet-tools.sh" -o "$work/payload/net-tools" ip iperf3 2>"$work/tools.err"; then
		flint_log "note: no network for the guest: $(tail -n1 "$work/tools.err")"
	else
		cp "$cache/kernels/amd64/modules/$tun" "$work/payload/tun.ko"
		cp "$here/net-shell-host.sh" "$work/payload/"
		wrap="sh /payload/net-shell-host.sh --tools /payload/net-tools --tun-ko /payload/tun.ko --"
	fi
fi
# The job runs in L1 with L1's serial console (this terminal) as its controlling tty.
# Raw mode keeps L1's tty from echoing and line-buffering keys meant for the guest.
cat >"$work/job.sh" <<JOB
echo "nested-host(L1): starting flint: $flavour kernel, $cpus vCPUs, $memory MiB"
stty raw -echo 2>/dev/null
$wrap /usr/bin/flint run --kernel /payload/vmlinuz --initrd /payload/initrd.cpio.gz \\
	--cpus $cpus --memory $memory --console stdio --cmdline '${cmdline//\'/\'\\\'\'}'
rc=\$?
stty sane 2>/dev/null
echo
echo "nested-host(L1): flint exited with status \$rc"
exit \$rc
JOB
bash "$here/nested-host.sh" --interactive --cache "$cache" --flint "$flint" \
	--payload "$work/payload" --script "$work/job.sh"
