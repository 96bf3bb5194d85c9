#!/bin/sh
# Guest side of the virtio-net end-to-end test (busybox sh, run by the initramfs init
# of `mkinitramfs-guest.sh --script`). The host side is scripts/net-case.sh, which
# runs flint in a network namespace with a TAP at the host address and serves the
# ports used below. Everything happens on eth0 in that namespace's 10.0.2.0/24.
#
# Parameters come from the kernel command line (defaults in brackets):
#   flintnet.addr=A/P   guest address [10.0.2.15/24]     flintnet.host=H  host [10.0.2.1]
#   flintnet.size=MiB   bytes sent each way over TCP [64]
#   flintnet.iperf=S    seconds of iperf3 each way [3] (0: none)
#   flintnet.bigping=N  ping payload for the large-MTU ping with DF set [0: none]
#   flintnet.again=MiB  after iperf3, an upload and a download of MiB each [0: none]
#                       (a second pair of streams on a link that has carried
#                       traffic both ways: where one-CPU hosts stalled, issue 9)
#   flintnet.beat=S     print a NET-GUEST-BEAT line (eth0 counters, virtio interrupts)
#                       every S seconds while the steps run [10] (0: none)
#   flintnet.queues=N   the device's queue pairs [1]; with N > 1 (multiqueue):
#                       `ethtool -L eth0 combined N` first, iperf3 with 8 parallel
#                       streams, the second pair of streams (flintnet.again) with
#                       `ethtool -L eth0 combined 1` and back to N while each runs,
#                       and per-queue counters (ethtool -S) at the end
#
# Steps, each reported with a line the test parses (NET-... key=value ...):
#   NET-GUEST-IF     eth0's driver, bus (pci|platform), MTU, MAC, negotiated features
#   NET-GUEST-UP     eth0 configured and running
#   NET-GUEST-HOSTPING   the host pinged us and told us so (TCP port 6000)
#   NET-GUEST-PING   we pinged the host
#   NET-G2H-SENT     guest-to-host TCP stream (port 5001): bytes, sha256, seconds
#   NET-H2G-RECV     host-to-guest TCP stream (port 5002): bytes, sha256, seconds
#   NET-IPERF        iperf3 (port 5201) client, both directions: Mbit/s at the receiver
#   NET-G2H2-SENT, NET-H2G2-RECV   the second pair of streams (ports 5003, 5004)
#   NET-GUEST-BIGPING    ping with DF and a large payload (the MTU case)
#   NET-GUEST-MQ     multiqueue: the channel count after each ethtool -L (step=...)
#   NET-GUEST-QSTATS per-queue packets and drops (ethtool -S), multiqueue only
#   NET-GUEST-STATS  eth0 counters;  NET-GUEST-DONE  the script ended
# A step that fails prints result=fail and the script goes on to the next one.

# The guest side of a test: it changes the network and mounts of the system it runs on, so
# it refuses to run anywhere but inside a test image (whose init exports FLINT_GUEST=1).
[ "${FLINT_GUEST:-}" = 1 ] || { echo "$0: the guest side of a test; it runs inside a test image (scripts/mk*-guest.sh), not on a host" >&2; exit 2; }
T=/usr/local/bin
arg() {
	v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^flintnet\.$1=//p" | tail -n1)
	echo "${v:-$2}"
}
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
addr=$(arg addr 10.0.2.15/24)
host=$(arg host 10.0.2.1)
size=$(arg size 64)
iperf=$(arg iperf 3)
bigping=$(arg bigping 0)
beat=$(arg beat 10)
again=$(arg again 0)
queues=$(arg queues 1)
dev=eth0

# Kernel messages below KERN_ERR (e.g. "hrtimer: interrupt took ...", common under
# emulation) must not land in the middle of the lines the test parses; errors,
# oopses, lockups and panics still reach the console.
dmesg -n 4 2>/dev/null
echo "NET-GUEST-START addr=$addr host=$host size=$size iperf=$iperf bigping=$bigping again=$again queues=$queues"
i=0
while [ ! -e /sys/class/net/$dev ] && [ $i -lt 50 ]; do
	sleep 0.2
	i=$((i + 1))
done
if [ ! -e /sys/class/net/$dev ]; then
	echo "NET-GUEST-IF result=fail reason=no-$dev interfaces=$(cd /sys/class/net && echo * | tr ' ' ,)"
	dmesg | grep -iE 'virtio|pci|LNRO' | tail -n 40 | sed 's/^/NET-GUEST-DMESG /'
	echo "NET-GUEST-DONE"
	exit 1
fi
d=/sys/class/net/$dev
drv=$(basename "$(readlink -f $d/device/driver)")
parent=$(readlink -f $d/device/..)
bus=$(basename "$(readlink -f "$parent/subsystem")")
# Where the modules were loaded: symbolizes guest RIPs in a stall dump.
awk '{ printf "%s%s@%s", sep, $1, $6; sep = "," } END { print "" }' /proc/modules | sed 's/^/NET-GUEST-MODULES /'
echo "NET-GUEST-IF result=ok dev=$dev driver=$drv bus=$bus parent=$(basename "$parent") mtu=$(cat $d/mtu) mac=$(cat $d/address) features=$(cat $d/device/features)"

# A heartbeat: if the steps stall, it tells a stuck guest (no beats) from a stuck
# link (beats with counters that stop moving).
if [ "$beat" != 0 ]; then
	(
		s=$d/statistics
		while sleep "$beat"; do
			irqs=$(awk '/virtio/ { n = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) n += $i; printf "%s%s=%d", sep, $NF, n; sep = "," }' /proc/interrupts)
			echo "NET-GUEST-BEAT t=$(now) rx_packets=$(cat $s/rx_packets) tx_packets=$(cat $s/tx_packets) irqs=$irqs"
		done
	) &
	beatpid=$!
fi

ip addr add "$addr" dev $dev
ip link set $dev up
i=0
while [ "$(cat $d/operstate)" != up ] && [ $i -lt 50 ]; do
	sleep 0.2
	i=$((i + 1))
done
echo "NET-GUEST-UP result=$([ "$(cat $d/operstate)" = up ] && echo ok || echo fail) operstate=$(cat $d/operstate) $(ip -o -4 addr show dev $dev | awk '{print "inet=" $4}')"

# Multiqueue: use every pair (ethtool -L; Linux already picks min(pairs, CPUs)
# at probe) and say how many are in use.
channels() { # STEP COUNT: set the combined channels, report what is in use
	out=$($T/ethtool -L $dev combined "$2" 2>&1)
	rc=$?
	cur=$($T/ethtool -l $dev 2>/dev/null | awk '/^Current/ { c = 1 } c && /^Combined:/ { print $2; exit }')
	case $out in *"no channel parameters changed"*) rc=0 ;; esac
	echo "NET-GUEST-MQ result=$([ "$rc" = 0 ] && [ "$cur" = "$2" ] && echo ok || echo fail) step=$1 want=$2 combined=${cur:-none} rc=$rc $(echo "$out" | tr ' \n' '_ ' | cut -c1-120)"
}
[ "$queues" -gt 1 ] && channels start "$queues"

# The host pings us once we answer, then tells us on port 6000.
t0=$(now)
timeout -k 5 120 nc -l -p 6000 -e sh -c 'cat >/tmp/hostmsg' </dev/null
msg=$(head -n1 /tmp/hostmsg 2>/dev/null)
echo "NET-GUEST-HOSTPING result=$([ -n "$msg" ] && echo ok || echo fail) secs=$(since "$t0") msg=$msg"

if ping -c 3 -W 5 "$host" >/tmp/ping.out 2>&1; then r=ok; else r=fail; fi
sed 's/^/NET-GUEST-PING-OUT /' /tmp/ping.out
echo "NET-GUEST-PING result=$r $(grep -o '[0-9]* packets received' /tmp/ping.out | tr ' ' _)"

# Guest to host: a file of random bytes, its checksum, then the stream.
g2h() { # KIND PORT MiB
	dd if=/dev/urandom of=/tmp/g2h bs=1048576 count="$3" 2>/dev/null
	sum=$(sha256sum /tmp/g2h | cut -d' ' -f1)
	bytes=$(wc -c </tmp/g2h)
	t0=$(now)
	timeout -k 5 900 nc "$host" "$2" -e cat /tmp/g2h
	rc=$?
	echo "$1 result=$([ $rc = 0 ] && echo ok || echo fail) rc=$rc bytes=$bytes sha256=$sum secs=$(since "$t0")"
	rm -f /tmp/g2h
}

# Host to guest: the host's file, checksummed here.
h2g() { # KIND PORT
	t0=$(now)
	timeout -k 5 900 nc "$host" "$2" -e sh -c 'cat >/tmp/h2g'
	rc=$?
	secs=$(since "$t0")
	echo "$1 result=$([ $rc = 0 ] && echo ok || echo fail) rc=$rc bytes=$(wc -c </tmp/h2g) sha256=$(sha256sum /tmp/h2g | cut -d' ' -f1) secs=$secs"
	rm -f /tmp/h2g
}
g2h NET-G2H-SENT 5001 "$size"
h2g NET-H2G-RECV 5002

# iperf3 prints the receiver's rate on the line that ends in "receiver".
iperf_run() {
	name=$1
	shift
	# Streamed (--forceflush), so a stall shows where it happened. The host's
	# iperf3 server takes one test at a time and refuses the next until it has
	# torn the last one down, which a slow host may not have done when the
	# guest's next run connects. The refusal reads "the server is busy", or,
	# when the server closes the control connection before reading the
	# client's cookie, "Connection reset by peer". A run that failed before
	# its data connection came up (no "connected to" line) is tried again, up
	# to 5 times a second apart; one that failed later is not.
	try=1
	while :; do
		{
			timeout -k 5 $((iperf + 60)) $T/iperf3 -c "$host" -t "$iperf" -f m --forceflush "$@" 2>&1
			echo $? >/tmp/iperf.rc
		} | tee /tmp/iperf.out | sed "s/^/NET-IPERF-OUT $name /"
		[ "$(cat /tmp/iperf.rc)" != 0 ] && ! grep -q ' connected to ' /tmp/iperf.out && [ $try -lt 5 ] || break
		try=$((try + 1))
		sleep 1
	done
	if [ "$(cat /tmp/iperf.rc)" = 0 ]; then r=ok; else r=fail; fi
	mbps=$(awk '/receiver$/ { for (i = 1; i < NF; i++) if ($(i+1) == "Mbits/sec") v = $i } END { print v }' /tmp/iperf.out)
	echo "NET-IPERF result=$r dir=$name mbps=${mbps:-none}"
}
# Several flows, so the host's and the guest's hashes spread them over the pairs.
par=''
[ "$queues" -gt 1 ] && par='-P 8'
if [ "$iperf" != 0 ]; then
	# shellcheck disable=SC2086 # par is words
	iperf_run g2h $par
	# shellcheck disable=SC2086
	iperf_run h2g -R $par
fi

# Multiqueue: each of the second streams sees the pair count go down to one and
# back while it runs (frames in flight on the pair that goes away must not be lost:
# the checksums at both ends tell).
during() { # STEP: change the channels while the stream started before runs
	sleep 1
	channels "$1-down" 1
	sleep 1
	channels "$1-up" "$queues"
}
if [ "$again" != 0 ]; then
	if [ "$queues" -gt 1 ]; then
		during g2h2 &
		cpid=$!
		g2h NET-G2H2-SENT 5003 "$again"
		wait $cpid
		during h2g2 &
		cpid=$!
		h2g NET-H2G2-RECV 5004
		wait $cpid
	else
		g2h NET-G2H2-SENT 5003 "$again"
		h2g NET-H2G2-RECV 5004
	fi
fi

if [ "$bigping" != 0 ]; then
	if $T/ping -M "do" -s "$bigping" -c 3 -W 5 "$host" >/tmp/ping.out 2>&1; then r=ok; else r=fail; fi
	sed 's/^/NET-GUEST-BIGPING-OUT /' /tmp/ping.out
	echo "NET-GUEST-BIGPING result=$r size=$bigping mtu=$(cat $d/mtu)"
fi

if [ "$queues" -gt 1 ]; then
	# rx_queue_N_packets, tx_queue_N_packets, rx_queue_N_drops ... on one line.
	$T/ethtool -S $dev 2>&1 | awk '/_queue_[0-9]+_(packets|drops|kicks|xdp_drops):/ { sub(":", "", $1); printf "%s=%s ", $1, $2 } END { print "" }' | sed 's/^/NET-GUEST-QSTATS /'
fi
s=$d/statistics
echo "NET-GUEST-STATS rx_packets=$(cat $s/rx_packets) tx_packets=$(cat $s/tx_packets) rx_bytes=$(cat $s/rx_bytes) tx_bytes=$(cat $s/tx_bytes) rx_errors=$(cat $s/rx_errors) tx_errors=$(cat $s/tx_errors) rx_dropped=$(cat $s/rx_dropped) tx_dropped=$(cat $s/tx_dropped)"
dmesg | grep -iE 'virtio|eth0' | tail -n 20 | sed 's/^/NET-GUEST-DMESG /'
[ -n "${beatpid:-}" ] && kill "$beatpid" 2>/dev/null
echo "NET-GUEST-DONE"
