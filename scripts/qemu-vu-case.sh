#!/usr/bin/env bash
# Host side of one QEMU vhost-user case: Debian's qemu-system-x86_64 (TCG) as the vhost-user
# frontend of `flint net-backend --queues N`, with a virtio-net-pci device (mq=on) in front of
# the stock cloud kernel's virtio_net driver. The TAP (multi-queue) is in a network namespace
# this script creates; no traffic leaves it: the TAP has 10.0.4.1/24, the guest 10.0.4.2/24.
#
# Usage: scripts/qemu-vu-case.sh [options]
#
#   --queues N       queue pairs of the backend and of QEMU's netdev [2]
#   --size MiB       bytes of each TCP flow [4]
#   --flows F        parallel flows each way in every phase (flow k pinned to guest CPU k mod 2,
#                    so that both pairs carry traffic) [2]
#   --phases LIST    the guest's pair counts, one phase each (ethtool -L eth0 combined P) [2,1,2];
#                    RP: unbind and bind virtio_net first (QEMU stops the vhost-user device and
#                    sets it up again, as across a guest reboot), then P pairs; DP: P pairs set a
#                    second after the guest-to-host flows started, while they run
#   --flint BIN      [<repo>/bin/flint]
#   --kernel FILE    [CACHE/kernels/cloud/vmlinuz]   --modules DIR [CACHE/kernels/cloud/modules]
#   --initrd FILE    a guest image made by this script earlier (--make-initrd) [made in a temp dir]
#   --make-initrd FILE  only build the guest image into FILE and exit
#   --vectors V      virtio-net-pci's MSI-X vectors [0: none, INTx]. Debian's QEMU 7.2 under TCG
#                    segfaults with MSI-X as soon as a vhost-user net device starts (even with one
#                    queue pair, before it sends SET_FEATURES): virtio_pci's vector unmask takes the
#                    KVM irqfd path (kvm_virtio_pci_irqfd_use) with no irqfd state. 2N+2 to try it.
#   --packed on|off  packed virtqueues (VIRTIO_F_RING_PACKED): the backend's --packed and
#                    virtio-net-pci's packed= [off]
#   --timeout S      the QEMU run [150]          --log-lines N  backend log lines at the end [80]
#   --name NAME      names the namespace (qemuvu-PID-NAME) [case]
#   --log-level L    the backend's --log-level (debug lists every vhost-user request) [info]
#
# The guest script (written into the image) goes through the phases; in each it sets the pair
# count, pings the host, sends F flows of SIZE MiB to the host at once and receives F flows
# from it at once, each checksummed (SHA-256) at both ends, and prints the per-queue counters.
#
# Output: facts only, as key=value lines; tests/qemu_vu_test.go judges them.
#   QVU-CASE-START queues= size= flows= phases= ns=
#   QVU-GUEST-* ...                          the guest's lines (console), see the guest script:
#     QVU-GUEST-IF features= (the driver's negotiated feature bits, bit 0 first)
#     QVU-GUEST-REBIND phase= device= operstate=   (an R phase: the driver was bound again)
#     QVU-GUEST-MQ phase= want= combined= rc= when=before|during
#     QVU-GUEST-PING phase= result=ok|fail
#     QVU-GUEST-G2H phase= flow= rc= bytes= sha256=   (what the guest sent)
#     QVU-GUEST-H2G phase= flow= rc= bytes= sha256=   (what the guest received)
#     QVU-GUEST-QSTATS phase= rx_queue_0_packets= ... tx_queue_1_packets=   (ethtool -S, cumulative)
#     QVU-GUEST-DONE
#   QVU-HOST-QEMU rc= secs= timeout=0|1
#   QVU-CONSOLE ...                          the console's last 40 lines
#   QVU-HOST-H2G bytes= sha256=              the file the host sent on every h2g flow
#   QVU-HOST-G2H phase= flow= bytes= sha256= what the host received
#   QVU-HOST-BACKEND running=yes|no connections= warnings= errors=
#   QVU-BACKEND-LOG ...                      the backend log's last --log-lines lines
#   QVU-HOST-ABORT reason=                   the case could not be set up (exit status 1)
#   QVU-CASE-END
# Needs root, /dev/net/tun, iproute2, busybox, qemu-system-x86 (no KVM: TCG), ethtool.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=$(flint_cache_dir)
queues=2 size=4 flows=2 phases=2,1,2 flint=$here/../bin/flint kernel=$cache/kernels/cloud/vmlinuz
modules=$cache/kernels/cloud/modules vectors=0 initrd='' make_initrd='' timeout=150 log_lines=80 name=case log_level=info
packed=off
while (($#)); do
	case $1 in
	--queues | --size | --flows | --phases | --vectors | --flint | --kernel | --modules | --initrd | --make-initrd | --timeout | --log-lines | --name | --log-level | --packed)
		[[ $# -ge 2 ]] || flint_die "$1 needs a value"
		v=${1#--}
		printf -v "${v//-/_}" '%s' "$2"
		shift
		;;
	-h | --help) usage 0 ;;
	*) flint_die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
[[ $vectors =~ ^[0-9]+$ ]] || flint_die "--vectors $vectors: want a number"
[[ $packed == on || $packed == off ]] || flint_die "--packed $packed: want on or off"
for v in queues size flows timeout; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || flint_die "--$v ${!v}: want a positive number"
done
[[ $phases =~ ^[RD]?[1-9][0-9]*(,[RD]?[1-9][0-9]*)*$ ]] || flint_die "--phases $phases: want counts like 2,1,R2"
PATH=$PATH:/usr/sbin:/sbin

# The guest: busybox sh, run by mkinitramfs-guest.sh's init.
guest_script() {
	cat <<'GUEST'
#!/bin/sh
T=/usr/local/bin
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^qvu\.$1=//p" | tail -n1; }
size=$(arg size) flows=$(arg flows) phases=$(arg phases) host=10.0.4.1 dev=eth0
dmesg -n 4 2>/dev/null
i=0
while [ ! -e /sys/class/net/$dev ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
d=/sys/class/net/$dev
echo "QVU-GUEST-IF result=$([ -e $d ] && echo ok || echo fail) features=$(cat $d/device/features 2>/dev/null) cpus=$(grep -c ^processor /proc/cpuinfo)"
# channels N WHEN: ethtool -L eth0 combined N, and what is in use after it.
channels() {
	out=$($T/ethtool -L $dev combined "$1" 2>&1)
	rc=$?
	case $out in *"no channel parameters changed"*) rc=0 ;; esac
	cur=$($T/ethtool -l $dev 2>/dev/null | awk '/^Current/ { c = 1 } c && /^Combined:/ { print $2; exit }')
	echo "QVU-GUEST-MQ phase=$p want=$1 combined=${cur:-none} rc=$rc when=$2"
}
# up: eth0 configured and running.
up() {
	i=0
	while [ ! -e $d ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
	ip addr add 10.0.4.2/24 dev $dev 2>/dev/null
	ip link set $dev up
	i=0
	while [ "$(cat $d/operstate 2>/dev/null)" != up ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
}
up
dd if=/dev/urandom of=/tmp/g2h bs=1048576 count="$size" 2>/dev/null
gsum=$(sha256sum /tmp/g2h | cut -d' ' -f1)
# /tmp/connect PORT CMD...: nc to the host, retried while the host's listener is not there yet.
cat >/tmp/connect <<'CONNECT'
port=$1
shift
n=0
until timeout -k 5 300 nc 10.0.4.1 "$port" -e "$@"; do
	n=$((n + 1))
	[ $n -lt 20 ] || exit 1
	sleep 0.5
done
CONNECT
# Flow k runs on CPU k mod CPUs: the driver picks its transmit queue by CPU, and the TAP
# steers a flow's frames to the queue it last sent from, so both pairs carry traffic.
ncpu=$(grep -c ^processor /proc/cpuinfo)
p=0
for ph in $(echo "$phases" | tr , ' '); do
	p=$((p + 1))
	want=${ph#[RD]}
	if [ "${ph#R}" != "$ph" ]; then
		# The driver unbound and bound again (as across a guest reboot): QEMU stops the
		# vhost-user device (GET_VRING_BASE) and sets it up again.
		vdev=$(basename "$(readlink -f $d/device)")
		echo "$vdev" >/sys/bus/virtio/drivers/virtio_net/unbind
		echo "$vdev" >/sys/bus/virtio/drivers/virtio_net/bind
		up
		echo "QVU-GUEST-REBIND phase=$p device=$vdev operstate=$(cat $d/operstate 2>/dev/null)"
	fi
	if [ "${ph#D}" != "$ph" ]; then
		(sleep 1 && channels "$want" during) &
	else
		channels "$want" before
	fi
	if ping -c 3 -W 5 "$host" >/tmp/ping.out 2>&1; then r=ok; else r=fail; fi
	echo "QVU-GUEST-PING phase=$p result=$r $(grep -o '[0-9]* packets received' /tmp/ping.out | tr ' ' _)"
	k=0
	while [ $k -lt "$flows" ]; do
		(
			taskset -c $((k % ncpu)) sh /tmp/connect $((5000 + p * 100 + k)) cat /tmp/g2h
			echo "QVU-GUEST-G2H phase=$p flow=$k rc=$? bytes=$(wc -c </tmp/g2h) sha256=$gsum"
		) &
		k=$((k + 1))
	done
	wait
	k=0
	while [ $k -lt "$flows" ]; do
		(
			f=/tmp/h2g.$k
			taskset -c $((k % ncpu)) sh /tmp/connect $((5050 + p * 100 + k)) sh -c "cat >$f"
			rc=$?
			echo "QVU-GUEST-H2G phase=$p flow=$k rc=$rc bytes=$(wc -c <$f) sha256=$(sha256sum $f | cut -d' ' -f1)"
			rm -f $f
		) &
		k=$((k + 1))
	done
	wait
	$T/ethtool -S $dev 2>&1 | awk -v p=$p '/_queue_[0-9]+_(packets|drops):/ { sub(":", "", $1); s = s " " $1 "=" $2 } END { print "QVU-GUEST-QSTATS phase=" p s }'
done
echo "QVU-GUEST-DONE"
GUEST
}

build_initrd() { # OUT
	local d
	d=$(mktemp -d "${TMPDIR:-/tmp}/flint-qvu-img.XXXXXX")
	guest_script >"$d/guest.sh"
	bash "$here/mknet-tools.sh" -o "$d/tools" ethtool >/dev/null
	bash "$here/mkinitramfs-guest.sh" --script "$d/guest.sh" --modules "$modules" --load "virtio_pci virtio_net" \
		--extra "$d/tools" -o "$1" >/dev/null
	rm -rf "$d"
}
if [[ -n $make_initrd ]]; then
	build_initrd "$make_initrd"
	exit 0
fi

[[ $(id -u) == 0 ]] || flint_die "needs root (network namespaces, TAP devices)"
[[ -c /dev/net/tun ]] || flint_die "no /dev/net/tun"
flint_need_tools ip busybox qemu-system-x86_64 sha256sum setsid
[[ -x $flint ]] || flint_die "no flint binary at $flint (run: make build)"
[[ -f $kernel ]] || flint_die "no kernel at $kernel (scripts/fetch-kernels.sh)"

ns=qemuvu-$$-$(tr -c 'A-Za-z0-9_.\n-' _ <<<"$name" | cut -c1-40)
tap=qvutap0
host=10.0.4.1
w=$(mktemp -d "${TMPDIR:-/tmp}/flint-qvu.XXXXXX")
bepid='' qpid='' pids=() ns_made=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { flint_net_case_cleanup "$qpid" "$bepid" "$ns" "$tap" "$ns_made" "$w" "${pids[@]}"; }
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
nsx=(ip netns exec "$ns")
aborted=0
finish() {
	if [[ -f $w/backend.log ]]; then
		echo "QVU-HOST-BACKEND running=$(kill -0 "$bepid" 2>/dev/null && echo yes || echo no)" \
			"connections=$(grep -c 'frontend connected' "$w/backend.log")" \
			"warnings=$(grep -c 'level=WARN' "$w/backend.log")" "errors=$(grep -c 'level=ERROR' "$w/backend.log")"
		sed 's/^/QVU-BACKEND-LOG /' "$w/backend.log" | tail -n "$log_lines"
	fi
	echo "QVU-CASE-END"
	exit "$aborted"
}
abort() {
	echo "QVU-HOST-ABORT reason=$1"
	aborted=1
	finish
}

echo "QVU-CASE-START queues=$queues size=$size flows=$flows phases=$phases vectors=$vectors packed=$packed ns=$ns"
if [[ -z $initrd ]]; then
	initrd=$w/guest.cpio.gz
	build_initrd "$initrd" || abort initrd-build-failed
fi
ip netns add "$ns" || flint_die "ip netns add $ns failed"
ns_made=1
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev "$tap" mode tap vnet_hdr multi_queue
sock=$w/vhost.sock
"${nsx[@]}" "$flint" net-backend --socket "$sock" --tap "$tap" --queues "$queues" --log-level "$log_level" \
	--packed "$packed" </dev/null 2>"$w/backend.log" &
bepid=$!
i=0
until [[ -S $sock ]]; do
	kill -0 "$bepid" 2>/dev/null || abort backend-exited
	((i++ < 300)) || abort backend-not-ready
	sleep 0.1
done
ip -n "$ns" addr add "$host/24" dev "$tap"
ip -n "$ns" link set "$tap" up

# The host's listeners, one connection each: g2h into a file, h2g from one file.
dd if=/dev/urandom of="$w/h2g" bs=1048576 count="$size" 2>/dev/null
echo "QVU-HOST-H2G bytes=$(wc -c <"$w/h2g") sha256=$(sha256sum "$w/h2g" | cut -d' ' -f1)"
np=$(tr , '\n' <<<"$phases" | wc -l)
for ((p = 1; p <= np; p++)); do
	for ((k = 0; k < flows; k++)); do
		"${nsx[@]}" busybox nc -l -p $((5000 + p * 100 + k)) -e sh -c "cat >'$w/g2h.$p.$k'" </dev/null >/dev/null 2>&1 &
		pids+=($!)
		"${nsx[@]}" busybox nc -l -p $((5050 + p * 100 + k)) -e cat "$w/h2g" </dev/null >/dev/null 2>&1 &
		pids+=($!)
	done
done

t0=$SECONDS
setsid qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 512 \
	-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem \
	-chardev socket,id=vu,path="$sock" -netdev vhost-user,id=n0,chardev=vu,queues="$queues" \
	-device virtio-net-pci,netdev=n0,mq=on,vectors=$vectors,packed=$packed \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 reboot=k panic=-1 qvu.size=$size qvu.flows=$flows qvu.phases=$phases" \
	-nographic -serial mon:stdio -no-reboot -nodefaults </dev/null >"$w/console" 2>"$w/qemu.err" &
qpid=$!
while kill -0 "$qpid" 2>/dev/null && ((SECONDS - t0 < timeout)); do
	sleep 0.5
	grep -q 'FLINT-SCRIPT-EXIT\|Kernel panic' "$w/console" 2>/dev/null && sleep 2 && break
done
to=0
((SECONDS - t0 < timeout)) || to=1
kill -KILL -- "-$qpid" 2>/dev/null || true
rc=0
wait "$qpid" 2>/dev/null || rc=$?
qpid=''
echo "QVU-HOST-QEMU rc=$rc secs=$((SECONDS - t0)) timeout=$to"
tr -d '\r' <"$w/console" | grep -o 'QVU-GUEST-.*' || true
tr -d '\r' <"$w/console" | tail -n 40 | sed 's/^/QVU-CONSOLE /'
sed 's/^/QVU-QEMU-STDERR /' "$w/qemu.err" | head -n 20
for ((p = 1; p <= np; p++)); do
	for ((k = 0; k < flows; k++)); do
		f=$w/g2h.$p.$k
		if [[ -f $f ]]; then
			echo "QVU-HOST-G2H phase=$p flow=$k bytes=$(wc -c <"$f") sha256=$(sha256sum "$f" | cut -d' ' -f1)"
		else
			echo "QVU-HOST-G2H phase=$p flow=$k bytes=0 sha256=none"
		fi
	done
done
finish
