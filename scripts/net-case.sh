#!/bin/sh
# Host side of one virtio-net end-to-end case (POSIX sh: it runs under busybox sh in
# the nested host and under any sh on a machine with hardware virtualization).
#
# Usage: sh scripts/net-case.sh --net SPEC [options] -- FLINT-COMMAND...
#
# Creates a network namespace, starts the servers the guest side (net-guest.sh) talks
# to, runs FLINT-COMMAND with `--net SPEC` (and --timeout) appended inside the
# namespace (`ip netns exec`), so flint creates the TAP there; once the TAP exists it
# gets the host address and is brought up. Then it pings the guest, tells the guest
# so, and after flint exits prints what the host saw and removes the namespace. It
# exits with flint's exit status. No traffic leaves the namespace.
#
#   --net SPEC        flint's --net value (its tap=NAME is the TAP to configure)
#   --host-addr A/P   the TAP's address [10.0.2.1/24]  --guest G  guest address [10.0.2.15]
#   --size MiB        bytes the host sends to the guest [64]
#   --bigping N       also ping the guest with DF set and an N-byte payload [0: no]
#   --again MiB       serve a second pair of streams of MiB each (ports 5003, 5004) [0: no]
#   --cpus N          run flint and every host-side process on CPUs 0..N-1 only
#                     (taskset), as in a container limited to N CPUs [0: all]
#   --flint-timeout S flint's --timeout [600]
#   --tools DIR       merge DIR (scripts/mknet-tools.sh output) into / first, once
#   --tun-ko PATH     insmod PATH when /dev/net/tun is missing (the nested host)
#   --name NAME       names the namespace (flintnet-NAME) [the process id]
# Lines it prints start with NET-HOST (the test parses them):
#   NET-HOST-CPUS      the CPUs flint may run on (with --cpus)
#   NET-HOST-TAP       the TAP flint created: its MTU, state, address
#   NET-HOST-H2G-SENT  bytes and sha256 of the host-to-guest stream
#   NET-HOST-PING      host pinged the guest (and NET-HOST-BIGPING with DF set)
#   NET-HOST-G2H-RECV  bytes and sha256 of the guest-to-host stream as received
#   NET-HOST-H2G2-SENT, NET-HOST-G2H2-RECV   the same for the second pair (--again)
#   NET-HOST-TAPSTATS  the TAP's counters (packets, errors, drops) a second or less
#                      before flint ended (the TAP goes with flint)
#   NET-HOST-FLINT     flint's exit status
#   NET-HOST-STALL     no packet crossed the TAP for 60 s after the guest first
#                      answered a ping, or flint still ran 20 s before its
#                      --timeout: two SIGUSR1 dumps of flint's vCPUs (registers)
#                      and net counters go to its log, each of its threads' kernel
#                      stack follows, then SIGQUIT makes it print every
#                      goroutine's stack (GOTRACEBACK=all) and exit

spec='' host_addr=10.0.2.1/24 guest=10.0.2.15 size=64 bigping=0 again=0 cpus=0 ftimeout=600 tools='' tun_ko=''
name=$$
while [ $# -gt 0 ]; do
	case $1 in
	--net) spec=$2; shift ;;
	--host-addr) host_addr=$2; shift ;;
	--guest) guest=$2; shift ;;
	--size) size=$2; shift ;;
	--bigping) bigping=$2; shift ;;
	--again) again=$2; shift ;;
	--cpus) cpus=$2; shift ;;
	--flint-timeout) ftimeout=$2; shift ;;
	--tools) tools=$2; shift ;;
	--tun-ko) tun_ko=$2; shift ;;
	--name) name=$2; shift ;;
	--) shift; break ;;
	*) echo "net-case.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
if [ -z "$spec" ] || [ $# = 0 ]; then
	echo "usage: net-case.sh --net SPEC [options] -- FLINT-COMMAND..." >&2
	exit 2
fi
fail() {
	echo "NET-HOST-SETUP result=fail reason=$*"
	exit 1
}

if [ -n "$tools" ] && [ ! -e /run/flint-net-tools ]; then
	cp -a "$tools/." / || fail "copying $tools into /"
	: >/run/flint-net-tools
fi
PATH=/usr/local/bin:$PATH:/usr/sbin:/sbin
export PATH
if [ ! -c /dev/net/tun ] && [ -n "$tun_ko" ]; then
	insmod "$tun_ko" || fail "insmod $tun_ko"
fi
[ -c /dev/net/tun ] || fail "no /dev/net/tun"
# ip netns keeps its mounts in /var/run/netns; a busybox root has only /run.
[ -d /var/run ] || { mkdir -p /var && ln -s /run /var/run; } || fail "creating /var/run"
# Absolute paths: a busybox sh may run its own applets (ip, ping) before PATH.
find_tool() { # NAME VERSION-PATTERN
	for d in /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
		if [ -x "$d/$1" ] && "$d/$1" -V 2>&1 | grep -q "$2"; then
			echo "$d/$1"
			return 0
		fi
	done
	return 1
}
# --cpus: this shell and so every process it starts from here on (flint, the
# servers, ping) may use only CPUs 0..N-1, the way a cpuset limits a container; Go
# then gives flint that many Ps.
if [ "$cpus" != 0 ]; then
	taskset -p -c "0-$((cpus - 1))" $$ >/dev/null || fail "taskset -p -c 0-$((cpus - 1)) $$"
	echo "NET-HOST-CPUS allowed=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/$$/status) online=$(grep -c '^processor' /proc/cpuinfo)"
fi
IP=$(find_tool ip iproute2) || fail "no iproute2 ip (ip netns is needed; Debian package iproute2)"
PING=$(find_tool ping iputils) || fail "no iputils ping (Debian package iputils-ping)"
IPERF3=$(find_tool iperf3 iperf) || fail "no iperf3 (Debian package iperf3)"
ip() { "$IP" "$@"; }

tap=$(echo "$spec" | tr ',' '\n' | sed -n 's/^tap=//p')
[ -n "$tap" ] || fail "--net $spec has no tap=NAME"
ns=flintnet-$(echo "$name" | tr -c 'A-Za-z0-9_.\n-' '_' | cut -c1-40)
w=$(mktemp -d "${TMPDIR:-/tmp}/flint-net.XXXXXX") || fail "mktemp"
pids=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	ip netns pids "$ns" 2>/dev/null | while read -r p; do kill -9 "$p" 2>/dev/null; done
	ip netns del "$ns" 2>/dev/null
	rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
ip netns del "$ns" 2>/dev/null
ip netns add "$ns" || fail "ip netns add $ns"
ip -n "$ns" link set lo up
inns() { ip netns exec "$ns" "$@"; }

# The streams: random bytes for the guest on one port, what the guest sends kept
# from another. serve SUFFIX G2H-PORT H2G-PORT MiB; last_g2h is the receiver's pid.
serve() {
	dd if=/dev/urandom of="$w/h2g$1" bs=1048576 count="$4" 2>/dev/null || fail "writing $w/h2g$1"
	echo "NET-HOST-H2G$1-SENT bytes=$(wc -c <"$w/h2g$1") sha256=$(sha256sum "$w/h2g$1" | cut -d' ' -f1)"
	inns busybox nc -l -p "$2" -e sh -c "cat >'$w/g2h$1'" </dev/null &
	last_g2h=$!
	pids="$pids $!"
	inns busybox nc -l -p "$3" -e cat "$w/h2g$1" </dev/null &
	pids="$pids $!"
}
serve '' 5001 5002 "$size"
g2hpid=$last_g2h
g2h2pid=''
if [ "$again" != 0 ]; then
	serve 2 5003 5004 "$again"
	g2h2pid=$last_g2h
fi
inns "$IPERF3" -s -p 5201 >"$w/iperf3.log" 2>&1 </dev/null &
pids="$pids $!"

# flint, in the namespace: it creates the TAP there.
"$IP" netns exec "$ns" env GOTRACEBACK=all "$@" --net "$spec" --timeout "${ftimeout}s" --log-level info </dev/null &
fpid=$!
# A guest that stops making progress: once it has answered a ping, no packet
# through the TAP for $idle s (or flint still running 20 s before its timeout)
# counts as a stall. Show where flint and the guest are, then end flint.
idle=60
(
	i=0 quiet=0 last=''
	while [ $i -lt $((ftimeout - 20)) ]; do
		sleep 1
		kill -0 $fpid 2>/dev/null || exit 0
		i=$((i + 1))
		[ -f "$w/up" ] || continue
		cur=$(ip -n "$ns" -s -o link show "$tap" 2>/dev/null | sed 's/.*RX: //')
		inns sh -c "cd /sys/class/net/$tap/statistics 2>/dev/null && for c in rx_packets tx_packets rx_errors tx_errors rx_dropped tx_dropped; do printf '%s=%s ' \$c \$(cat \$c); done" >"$w/tapstats.new" 2>/dev/null &&
			grep -q 'tx_dropped=[0-9]' "$w/tapstats.new" && mv "$w/tapstats.new" "$w/tapstats" # whole samples only: the TAP goes with flint
		if [ "$cur" = "$last" ]; then quiet=$((quiet + 1)); else quiet=0 last=$cur; fi
		[ $quiet -lt $idle ] || break
	done
	echo
	echo "NET-HOST-STALL flint pid $fpid still running after ${i}s, ${quiet}s without a packet through $tap; vCPU state dumps (SIGUSR1, twice):"
	kill -USR1 $fpid 2>/dev/null
	sleep 3
	kill -USR1 $fpid 2>/dev/null
	sleep 3
	echo "NET-HOST-STALL its threads' kernel stacks:"
	for t in "/proc/$fpid/task/"*; do
		echo "NET-HOST-STALL-OUT thread ${t##*/} $(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null) state=$(awk '/^State/ { print $2 }' "$t/status" 2>/dev/null)"
		sed 's/^/NET-HOST-STALL-OUT   /' "$t/stack" 2>/dev/null
	done
	echo "NET-HOST-STALL sending SIGQUIT to flint (goroutine dump on its stderr)"
	kill -QUIT $fpid 2>/dev/null
) </dev/null &
spid=$!
pids="$pids $spid"
i=0
while ! ip -n "$ns" link show "$tap" >/dev/null 2>&1; do
	kill -0 $fpid 2>/dev/null || break
	[ $i -lt 600 ] || break
	sleep 0.1
	i=$((i + 1))
done
if ip -n "$ns" link show "$tap" >/dev/null 2>&1; then
	ip -n "$ns" addr add "$host_addr" dev "$tap"
	ip -n "$ns" link set "$tap" up
	echo "NET-HOST-TAP result=ok secs=$(awk -v i=$i 'BEGIN { printf "%.1f", i / 10 }') $(ip -n "$ns" -o link show "$tap" | grep -o 'mtu [0-9]*' | tr ' ' =) addr=$host_addr"
else
	echo "NET-HOST-TAP result=fail reason=no-$tap-in-$ns"
fi

# Ping the guest once it answers, then tell it (port 6000). The results are printed
# after flint exits, so they do not cut into the guest's console lines.
(
	t0=$(cut -d' ' -f1 /proc/uptime)
	i=0
	until inns "$PING" -c 1 -W 1 "$guest" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 300 ] || break
		kill -0 $fpid 2>/dev/null || exit 0
		sleep 1
	done
	t1=$(cut -d' ' -f1 /proc/uptime)
	: >"$w/up"
	if inns "$PING" -c 3 -W 5 "$guest" >"$w/ping.out" 2>&1; then r=ok; else r=fail; fi
	echo "NET-HOST-PING result=$r after=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')s $(grep -o '[0-9]* received' "$w/ping.out" | tr ' ' _)" >"$w/ping.res"
	msg="host-ping=$r"
	if [ "$bigping" != 0 ]; then
		if inns "$PING" -M "do" -s "$bigping" -c 3 -W 5 "$guest" >"$w/bigping.out" 2>&1; then b=ok; else b=fail; fi
		echo "NET-HOST-BIGPING result=$b size=$bigping $(grep -o '[0-9]* received' "$w/bigping.out" | tr ' ' _)" >>"$w/ping.res"
		msg="$msg host-bigping=$b"
	fi
	i=0
	# shellcheck disable=SC2086 # msg is words for echo
	until inns busybox nc "$guest" 6000 -e echo $msg >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 60 ] || break
		kill -0 $fpid 2>/dev/null || exit 0
		sleep 1
	done
) </dev/null &
ppid_=$!
pids="$pids $ppid_"

wait $fpid
frc=$?
kill $ppid_ 2>/dev/null
wait $ppid_ 2>/dev/null
echo
[ -f "$w/ping.out" ] && sed 's/^/NET-HOST-PING-OUT /' "$w/ping.out"
[ -f "$w/bigping.out" ] && sed 's/^/NET-HOST-BIGPING-OUT /' "$w/bigping.out"
if [ -f "$w/ping.res" ]; then cat "$w/ping.res"; else echo "NET-HOST-PING result=fail reason=guest-never-answered"; fi
# A receiving nc ends when the guest closes its stream; give it a moment.
received() { # KIND PID FILE
	i=0
	while [ $i -lt 50 ] && kill -0 "$2" 2>/dev/null; do
		sleep 0.1
		i=$((i + 1))
	done
	if [ -f "$3" ]; then
		echo "$1 bytes=$(wc -c <"$3") sha256=$(sha256sum "$3" | cut -d' ' -f1)"
	else
		echo "$1 result=fail reason=nothing-received"
	fi
}
received NET-HOST-G2H-RECV $g2hpid "$w/g2h"
[ -n "$g2h2pid" ] && received NET-HOST-G2H2-RECV $g2h2pid "$w/g2h2"
sed 's/^/NET-HOST-IPERF3 /' "$w/iperf3.log" | grep -E 'sender|receiver|error' | head -n 20
[ -f "$w/tapstats" ] && echo "NET-HOST-TAPSTATS $(cat "$w/tapstats")"
echo "NET-HOST-FLINT rc=$frc"
exit $frc
