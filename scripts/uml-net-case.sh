#!/usr/bin/env bash
# Host side of one UML network case: Debian's stock user-mode Linux (the real Linux
# virtio_net driver behind UML's vhost-user frontend, virtio_uml) against a network
# backend, with the TAP in a network namespace this script creates. No traffic leaves
# the namespace: the TAP has 10.0.3.1/24, the guest 10.0.3.2/24.
#
# Usage: scripts/uml-net-case.sh [options]
#
#   --backend B      flint: `flint net-backend` on a vhost-user socket [default]
#                    vec:   UML's own vector TAP driver (vec0:transport=tap,depth=128,gro=1)
#                    dpdk:  dpdk-testpmd, net_vhost + net_tap, io forwarding, --no-huge, behind
#                           internal/vumask, which hides RING_PACKED and CTRL_VQ/MQ from UML
#                           (UML sets packed rings up wrongly; nobody serves UML's control queue)
#   --rx MODE        flint's RX mode: mergeable [default], big (--mrg-rxbuf off) or
#                    small (--mrg-rxbuf off --tso off)
#   --indirect on|off  flint's --indirect [on]
#   --mode test|bench|soak  test: ping both ways and SIZE MiB each way over TCP with SHA-256
#                    sums at both ends [test]; bench: iperf3 against the guest (below);
#                    soak: boots alternate between a test boot and a bench boot (TCP only,
#                    --secs each way) against the one backend until --soak-secs have passed
#                    (no boot starts after that); scripts/soak-resources.sh drives it
#   --soak-secs S    soak: how long to keep booting [600]
#   --pid-file FILE  write flint net-backend's process id to FILE once it runs (a sampler's)
#   --log-lines N    the backend log's last N lines end the output [60]
#   --size MiB       bytes each way in test mode [64]
#   --boots N        UML boots one after another against the same running backend [1]
#                    (N >= 2 is the disconnect/reconnect test)
#   --kill-boot K    SIGKILL boot K's UML in the middle of its guest-to-host stream (an
#                    abrupt frontend disconnect); the boots after it must pass [0: none]
#   --secs S         bench: seconds per iperf3 TCP run [10]; --udp-secs S: UDP [5]
#   --reps N         bench: runs of each measurement in one boot [1]
#   --rr N           bench: also N TCP request-response round trips of 64 B per run
#                    (internal/netrr against the guest's `nc -ll -e cat`, one at a time, like
#                    netperf's TCP_RR) [0: none]
#   --flint BIN      [<repo>/bin/flint]    --initrd FILE  [scripts/mkuml-guest.sh output]
#   --mem MiB        UML memory [256]      --timeout S    per boot [120]
#   --vumask BIN     internal/vumask binary for --backend dpdk [built with go into a temp dir]
#   --umlexec BIN    internal/umlexec binary, which starts linux.uml (with a workaround on
#                    hosts whose XSAVE area UML 6.1 cannot restore) [built with go likewise]
#   --name NAME      names the namespace (umlnet-PID-NAME) [case]
#   --perf DIR       bench, flint: during every iperf3 run, `perf record -e cpu-clock -g` of
#                    the backend into DIR/TEST-DIR-RUN.data and `perf stat` of its syscalls
#                    (reads, writes, readv, writev, ppoll, futex, epoll_pwait, timerfd_settime)
#                    and its threads' context switches into DIR/TEST-DIR-RUN.stat
#   --perf-uml DIR   bench, any backend: during every iperf3 run, a system-wide
#                    `perf record -a -g -e cpu-clock` into DIR/TEST-DIR-RUN.uml.data, and the
#                    guest's /proc/kallsyms copied to DIR/kallsyms (through hostfs: Debian's
#                    linux.uml is stripped); internal/umlperf names UML's frames:
#                      perf script -i DIR/tcp-h2g-1.uml.data -F comm,time,ip,sym,dso |
#                        go run ./internal/umlperf -kallsyms DIR/kallsyms
#
# Output: facts only, as key=value lines; this script judges nothing. The verdict (did the
# streams arrive whole, were the right features negotiated, did the backend survive) is
# computed once, in Go: tests/uml_check_test.go, for tests/uml_test.go. Guest console lines
# (UML-GUEST-*) are reprinted after each boot with " boot=K" appended:
#   UML-CASE-START backend= rx= indirect= mode= boots=
#   UML-HOST-BOOT boot=K rc= secs= killed=0|1     one per UML boot
#   UML-HOST-TIMEOUT boot=K secs=                 the boot overran --timeout and was killed
#   UML-CONSOLE boot=K ...                        the last 40 lines of the boot's console
#   UML-HOST-PING boot=K result=ok|fail           the host's ping of the guest (its status)
#   UML-HOST-H2G boot=K bytes= sha256=            the stream the host sent
#   UML-HOST-G2H boot=K bytes= sha256=            the stream the host received
#   UML-BENCH backend= rx= indirect= test=tcp|udp64 dir=g2h|h2g run= mbps= retr= pps= lost= boot=K
#             secs= win= be_cpu= uml_cpu= win_bytes= win_pkts=   (result=fail error=...: iperf3 gave
#                                                 no figures)
#                   secs: the traffic's seconds (iperf3's); win: a window inside the traffic (from
#                   2 s after the client started to --secs or --udp-secs; the whole client run if
#                   those are under 4); be_cpu: CPU seconds (utime+stime, all threads, from
#                   /proc/PID/stat) the backend process used in the window: flint
#                   net-backend or dpdk-testpmd (absent for vec, whose driver runs in UML's
#                   kernel process); uml_cpu: the same for every process of the UML session
#                   (UML's kernel, its guest processes: with vec, its driver too); win_bytes and
#                   win_pkts: what the TAP carried in the test's direction in the window
#   UML-BENCH backend= rx= indirect= test=rr dir=rt run= rr= lost= min_us= p50_us= p90_us= p99_us=
#             max_us= mean_us= rate= boot=K win= be_cpu= uml_cpu=   (--rr: netrr's line, see
#                                                 internal/netrr; the CPU window is the whole run)
#   UML-HOST-BACKEND running=yes|no connections=N warnings=N   flint's log, at the end
#   UML-BACKEND-LOG ...                           the last --log-lines lines of the backend's log
#   UML-HOST-ABORT reason=...                     the case could not be set up (exit status 1)
#   UML-CASE-END                                  the last line; exit status 0 unless aborted
# Needs root, /dev/net/tun, iproute2, busybox, user-mode-linux (and dpdk for --backend dpdk).
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
backend=flint rx=mergeable indirect=on mode=test size=64 boots=1 kill_boot=0 soak_secs=600 pid_file='' log_lines=60
secs=10 udp_secs=5 reps=1 rr=0 flint=$here/../bin/flint initrd='' mem=256 timeout=120 name=case vumask= umlexec= perf='' perf_uml=''
while (($#)); do
	case $1 in
	--backend | --rx | --indirect | --mode | --size | --boots | --kill-boot | --secs | --udp-secs | \
		--reps | --rr | --flint | --initrd | --mem | --timeout | --name | --vumask | --umlexec | --soak-secs | --pid-file | --log-lines | --perf | --perf-uml)
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
case $backend in flint | vec | dpdk) ;; *) flint_die "--backend $backend: want flint, vec or dpdk" ;; esac
case $rx in
mergeable) rxopts=() ;;
big) rxopts=(--mrg-rxbuf off) ;;
small) rxopts=(--mrg-rxbuf off --tso off) ;;
*) flint_die "--rx $rx: want mergeable, big or small" ;;
esac
case $indirect in on | off) ;; *) flint_die "--indirect $indirect: want on or off" ;; esac
case $mode in test | bench | soak) ;; *) flint_die "--mode $mode: want test, bench or soak" ;; esac
[[ $mode != soak || $backend == flint ]] || flint_die "--mode soak needs --backend flint"
[[ $(id -u) == 0 ]] || flint_die "needs root (network namespaces, TAP devices)"
[[ -c /dev/net/tun ]] || flint_die "no /dev/net/tun"
PATH=$PATH:/usr/sbin:/sbin
flint_need_tools ip busybox linux.uml setsid sha256sum
[[ $mode == test ]] || flint_need_tools iperf3 jq
[[ -z $perf ]] || { flint_need_tools perf && mkdir -p "$perf"; } || flint_die "--perf $perf: cannot make it"
if [[ -n $perf_uml ]]; then
	flint_need_tools perf
	mkdir -p "$perf_uml" && perf_uml=$(cd "$perf_uml" && pwd) || flint_die "--perf-uml $perf_uml: cannot make it"
	umlks=("flintuml.kallsyms=$perf_uml")
else
	umlks=()
fi
[[ $backend != flint || -x $flint ]] || flint_die "no flint binary at $flint (run: make build)"
[[ $backend != dpdk ]] || command -v dpdk-testpmd >/dev/null ||
	flint_die "no dpdk-testpmd (Debian 12: apt-get install -y dpdk-dev)"
[[ -n $initrd ]] || initrd=$(bash "$here/mkuml-guest.sh")
[[ $rr =~ ^[0-9]+$ ]] || flint_die "--rr $rr: want a number of round trips"
# The RX mode and indirect flags are flint's; the peers' lines say "-".
[[ $backend == flint ]] || rx=- indirect=-

# The process id keeps concurrent runs (other users' test runs) apart.
ns=umlnet-$$-$(tr -c 'A-Za-z0-9_.\n-' _ <<<"$name" | cut -c1-40)
tap=umltap0
host=10.0.3.1 guest=10.0.3.2
w=$(mktemp -d "${TMPDIR:-/tmp}/flint-uml.XXXXXX")
bepid='' umlpid='' pids=() ns_made=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { flint_net_case_cleanup "$umlpid" "$bepid" "$ns" "$tap" "$ns_made" "$w" "${pids[@]}"; }
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
# Commands started in the background use nsx directly, not a shell function, so
# that $! is the command's own process (a backgrounded function is a subshell).
nsx=(ip netns exec "$ns")
inns() { "${nsx[@]}" "$@"; }
aborted=0
# finish: the backend's state and log, and the last line.
finish() {
	if [[ $backend == flint && -f $w/backend.log ]]; then
		echo "UML-HOST-BACKEND running=$(kill -0 "$bepid" 2>/dev/null && echo yes || echo no)" \
			"connections=$(grep -c 'frontend connected' "$w/backend.log")" \
			"warnings=$(grep -c 'level=WARN' "$w/backend.log")"
	fi
	if [[ -s $w/backend.log ]]; then
		sed 's/^/UML-BACKEND-LOG /' "$w/backend.log" | tail -n "$log_lines"
	fi
	echo "UML-CASE-END"
	exit "$aborted"
}
# abort REASON: the case cannot be set up.
abort() {
	echo "UML-HOST-ABORT reason=$1"
	aborted=1
	finish
}

echo "UML-CASE-START backend=$backend rx=$rx indirect=$indirect mode=$mode boots=$boots ns=$ns soak_secs=$soak_secs"
ip netns add "$ns" || flint_die "ip netns add $ns failed"
ns_made=1
ip -n "$ns" link set lo up

# The TAP: made here for flint and the vector driver (both attach to it); testpmd's
# TAP PMD makes its own (multi-queue). It gets the host address once it exists.
[[ $backend == dpdk ]] || ip -n "$ns" tuntap add dev "$tap" mode tap vnet_hdr
if ((rr)); then
	(cd "$here/.." && CGO_ENABLED=0 go build -o "$w/netrr" ./internal/netrr) || flint_die "building internal/netrr"
	netrr=$w/netrr
fi
if [[ -z $umlexec ]]; then
	flint_need_tools go
	(cd "$here/.." && CGO_ENABLED=0 go build -o "$w/umlexec" ./internal/umlexec) || flint_die "building internal/umlexec"
	umlexec=$w/umlexec
fi
sock=$w/vhost.sock
case $backend in
flint)
	"${nsx[@]}" "$flint" net-backend --socket "$sock" --tap "$tap" "${rxopts[@]}" --indirect "$indirect" \
		--log-level info </dev/null 2>"$w/backend.log" &
	bepid=$!
	[[ -z $pid_file ]] || echo "$bepid" >"$pid_file"
	;;
dpdk)
	if [[ -z $vumask ]]; then
		flint_need_tools go
		(cd "$here/.." && CGO_ENABLED=0 go build -o "$w/vumask" ./internal/vumask) || flint_die "building internal/vumask"
		vumask=$w/vumask
	fi
	"${nsx[@]}" dpdk-testpmd -l 0,1 --no-pci --no-huge -m 1024 --file-prefix "flint-$ns" \
		--vdev "net_vhost0,iface=$w/dpdk.sock,queues=1" --vdev "net_tap0,iface=$tap" -- \
		--forward-mode=io --auto-start --stats-period 3600 </dev/null >"$w/backend.log" 2>&1 &
	bepid=$!
	i=0
	until [[ -S $w/dpdk.sock ]]; do
		kill -0 "$bepid" 2>/dev/null || abort dpdk-testpmd-exited
		((i++ < 300)) || abort dpdk-testpmd-no-socket
		sleep 0.1
	done
	"$vumask" -listen "$sock" -backend "$w/dpdk.sock" </dev/null >>"$w/backend.log" 2>&1 &
	pids+=($!)
	;;
esac
i=0
until ip -n "$ns" link show "$tap" >/dev/null 2>&1 && { [[ $backend == vec ]] || [[ -S $sock ]]; }; do
	[[ -z $bepid ]] || kill -0 "$bepid" 2>/dev/null || abort backend-exited
	((i++ < 300)) || abort backend-not-ready
	sleep 0.1
done
ip -n "$ns" addr add "$host/24" dev "$tap"
ip -n "$ns" link set "$tap" up
echo "UML-HOST-TAP $(ip -n "$ns" -o link show "$tap" | grep -o 'mtu [0-9]*' | tr ' ' =) addr=$host/24 ready_secs=$((i / 10))"

case $backend in
vec) netarg="vec0:transport=tap,ifname=$tap,depth=128,gro=1" ;;
*) netarg="virtio_uml.device=$sock:1" ;;
esac
umltmp=$w
[[ -d /dev/shm && -w /dev/shm ]] && umltmp=/dev/shm

# boot K GUEST-MODE: boots UML in the namespace (console to $w/uml.K), waits for it.
boot() {
	local k=$1 gmode=$2
	TMPDIR=$umltmp "${nsx[@]}" setsid "$umlexec" linux.uml "mem=${mem}M" "initrd=$initrd" con=null con0=null,fd:1 \
		"$netarg" "flintuml.mode=$gmode" "flintuml.size=$size" "flintuml.host=$host" \
		"flintuml.addr=$guest/24" "${umlks[@]}" quiet </dev/null >"$w/uml.$k" 2>&1 &
	umlpid=$!
}
# wait_boot K KILLED: waits (at most --timeout) for boot K and reports it.
wait_boot() {
	local k=$1 killed=$2 rc=0 t0=$SECONDS
	# Polled rather than a background timer: nothing may outlive this script
	# holding its stdout open.
	while kill -0 "$umlpid" 2>/dev/null && ((SECONDS - t0 < timeout)); do
		sleep 0.2
	done
	kill -KILL -- "-$umlpid" 2>/dev/null || true
	wait "$umlpid" 2>/dev/null || rc=$?
	# UML's helper processes: none may outlive it.
	kill -KILL -- "-$umlpid" 2>/dev/null || true
	umlpid=''
	echo "UML-HOST-BOOT boot=$k rc=$rc secs=$((SECONDS - t0)) killed=$killed"
	tr -d '\r' <"$w/uml.$k" | sed -n "s/^\(UML-GUEST-[A-Z0-9-]* .*\)/\1 boot=$k/p; s/^\(UML-GUEST-[A-Z0-9-]*\)$/\1 boot=$k/p"
	((SECONDS - t0 < timeout)) || echo "UML-HOST-TIMEOUT boot=$k secs=$timeout"
	tr -d '\r' <"$w/uml.$k" | tail -n 40 | sed "s/^/UML-CONSOLE boot=$k /"
}

# A test boot: the host's servers, its ping, and what the host saw of both streams.
test_boot() {
	local k=$1 kill=0 pingpid h2gpid g2hpid
	((k == kill_boot)) && kill=1
	rm -f "$w/g2h"
	"${nsx[@]}" busybox nc -l -p 5001 -e sh -c "cat >'$w/g2h'" </dev/null >/dev/null 2>&1 &
	g2hpid=$!
	"${nsx[@]}" busybox nc -l -p 5002 -e cat "$w/h2g" </dev/null >/dev/null 2>&1 &
	h2gpid=$!
	boot "$k" test
	(
		i=0
		until inns busybox ping -c 1 -W 1 "$guest" >/dev/null 2>&1; do
			((i++ < 60)) || break
		done
		if inns busybox ping -c 3 -W 5 "$guest" >"$w/ping.$k" 2>&1; then r=ok; else r=fail; fi
		echo "UML-HOST-PING boot=$k result=$r $(grep -o '[0-9]* packets received' "$w/ping.$k" | tr ' ' _)" >"$w/pingres.$k"
		i=0
		until inns busybox nc "$guest" 6000 -e echo "host-ping=$r" >/dev/null 2>&1; do
			((i++ < 60)) || break
			sleep 0.5
		done
	) </dev/null >/dev/null 2>&1 &
	pingpid=$!
	if ((kill)); then
		# An abrupt disconnect: SIGKILL the frontend while the guest is sending.
		local i=0
		while (($(stat -c %s "$w/g2h" 2>/dev/null || echo 0) < (1 << 20))) && ((i++ < 6000)); do
			kill -0 "$umlpid" 2>/dev/null || break
			sleep 0.01
		done
		echo "UML-HOST-KILL boot=$k g2h_bytes_so_far=$(stat -c %s "$w/g2h" 2>/dev/null || echo 0)"
		# bash reports the killed job on stderr whenever it reaps it: not here.
		exec 3>&2 2>/dev/null
		kill -KILL -- "-$umlpid" 2>/dev/null || true
	fi
	wait_boot "$k" "$kill" >"$w/out.$k"
	((!kill)) || exec 2>&3 3>&-
	kill "$pingpid" "$g2hpid" "$h2gpid" 2>/dev/null || true
	wait "$pingpid" "$g2hpid" "$h2gpid" 2>/dev/null || true
	{
		cat "$w/pingres.$k" 2>/dev/null || echo "UML-HOST-PING boot=$k result=fail reason=guest-never-answered"
		echo "UML-HOST-H2G boot=$k bytes=$h2g_bytes sha256=$h2g_sum"
		if [[ -f $w/g2h ]]; then
			echo "UML-HOST-G2H boot=$k bytes=$(wc -c <"$w/g2h") sha256=$(sha256sum "$w/g2h" | cut -d' ' -f1)"
		else
			echo "UML-HOST-G2H boot=$k bytes=0 sha256=none"
		fi
	} >>"$w/out.$k"
	cat "$w/out.$k"
}

# cpu_mark: the CPU ticks (utime+stime, all threads) of the backend process
# and of UML's session, the clock and the TAP's counters now, as "BACKEND UML WALL
# RX-BYTES RX-PACKETS TX-BYTES TX-PACKETS" (the TAP's rx is what the backend wrote into it: guest
# to host; its tx what the backend read: host to guest). One awk reads every
# /proc/PID/stat, so that a mark takes milliseconds, not a process per PID.
cpu_mark() {
	local t
	t=$(date +%s.%N)
	# After the command name's ")": state ppid pgrp session ... utime (12th) stime (13th).
	# A process that ends between the glob and the read is skipped (2>/dev/null).
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v be="${bepid:--}" -v sid="$umlpid" '
		{ pid = $1; s = $0; sub(/^.*\) /, "", s); split(s, f, " ") }
		pid == be { b = f[12] + f[13]; seen = 1 }
		f[4] == sid { u += f[12] + f[13] }
		END { printf "%s %d ", be == "-" ? "-" : (seen ? b : 0), u }'
	echo "$t" "$(inns cat /proc/net/dev | tr : ' ' | awk -v t="$tap" '$1 == t { print $2, $3, $10, $11 }')"
}
hz=$(getconf CLK_TCK)
# cpu_figs DIR MARK0 MARK1: the UML-BENCH line's win= (seconds), be_cpu=, uml_cpu= (CPU
# seconds) and win_bytes=, win_pkts= (the TAP's, direction DIR) between two marks.
cpu_figs() {
	awk -v hz="$hz" -v dir="$1" -v a="$2" -v b="$3" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		printf "win=%.3f", y[3] - x[3]
		if (x[1] != "-") printf " be_cpu=%.2f", (y[1] - x[1]) / hz
		printf " uml_cpu=%.2f", (y[2] - x[2]) / hz
		k = dir == "g2h" ? 4 : 6
		if (y[k] != "") printf " win_bytes=%.0f win_pkts=%.0f", y[k] - x[k], y[k + 1] - x[k + 1]
	}'
}

# bench_line TEST DIR RUN JQ IPERF3-ARGS...: one iperf3 client run against the guest,
# reported as a UML-BENCH line with the figures JQ extracts from its JSON and the
# processes' CPU time (cpu_figs), or with result=fail and iperf3's error.
bench_line() {
	local test=$1 dir=$2 r=$3 filter=$4 figs='' err m0 m1 ipid run_secs=$secs perfpids=()
	shift 4
	[[ $test == tcp ]] || run_secs=$udp_secs
	local try
	# The guest's iperf3 server can be between two tests (connection refused):
	# a run that gets no figures is tried again, twice at most.
	for try in 1 2 3; do
		((try == 1)) || sleep 1
		if [[ -n $perf && $backend == flint ]]; then
			perf record -q -e cpu-clock -F 999 -g -p "$bepid" -o "$perf/$test-$dir-$r.data" </dev/null >/dev/null 2>&1 &
			perfpids=($!)
			perf stat -x, -p "$bepid" -o "$perf/$test-$dir-$r.stat" -e syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_readv,syscalls:sys_enter_writev,syscalls:sys_enter_ppoll,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_timerfd_settime,context-switches \
				</dev/null >/dev/null 2>&1 &
			perfpids+=($!)
		fi
		if [[ -n $perf_uml ]]; then
			perf record -q -a -g -e cpu-clock -F 999 -o "$perf_uml/$test-$dir-$r.uml.data" </dev/null >/dev/null 2>&1 &
			perfpids+=($!)
		fi
		# The CPU window: from 2 s after the client starts (UML's iperf3 is connected by
		# then) to the run's nominal end, so that it holds traffic only; the whole client
		# run for runs shorter than 4 s.
		inns timeout 60 iperf3 -c "$guest" -J "$@" >"$w/iperf.json" 2>"$w/iperf.err" &
		ipid=$!
		if ((run_secs >= 4)); then
			sleep 2
			m0=$(cpu_mark)
			sleep $((run_secs - 2))
			m1=$(cpu_mark)
			wait "$ipid" || true
		else
			m0=$(cpu_mark)
			wait "$ipid" || true
			m1=$(cpu_mark)
		fi
		if ((${#perfpids[@]})); then
			kill -INT "${perfpids[@]}" 2>/dev/null || true
			wait "${perfpids[@]}" 2>/dev/null || true
			perfpids=()
		fi
		figs=$(jq -r "$filter" "$w/iperf.json" 2>/dev/null) || figs=''
		[[ -z $figs || $figs == *null* ]] || break
	done
	if [[ -z $figs || $figs == *null* ]]; then
		err=$(jq -r '.error // empty' "$w/iperf.json" 2>/dev/null; head -c 200 "$w/iperf.err")
		echo "UML-BENCH backend=$backend rx=$rx indirect=$indirect test=$test dir=$dir run=$r result=fail error=$(tr -s ' \n\t' _ <<<"${err:-none}")"
		return
	fi
	echo "UML-BENCH backend=$backend rx=$rx indirect=$indirect test=$test dir=$dir run=$r $figs $(cpu_figs "$dir" "$m0" "$m1")"
}

# rr_line RUN BOOT: --rr round trips against the guest's echo server, as a UML-BENCH line.
rr_line() {
	local r=$1 k=$2 m0 m1 out
	m0=$(cpu_mark)
	out=$(inns timeout 120 "$netrr" -addr "$guest:7007" -n "$rr" 2>&1) || out="result=fail error=$(tr -s ' \n\t' _ <<<"$out")"
	m1=$(cpu_mark)
	echo "UML-BENCH backend=$backend rx=$rx indirect=$indirect test=rr dir=rt run=$r $out boot=$k $(cpu_figs h2g "$m0" "$m1")"
}

# bench_boot K: one benchmark boot: the guest serves iperf3; the host measures
# through the TAP (TCP only in soak mode).
bench_boot() {
	local k=$1 r dir rev
	boot "$k" serve
	local i=0 up=0
	while ((i++ < 600)) && kill -0 "$umlpid" 2>/dev/null; do
		if grep -q '^UML-GUEST-SERVE result=ok' "$w/uml.$k" 2>/dev/null &&
			inns busybox ping -c 1 -W 1 "$guest" >/dev/null 2>&1; then
			up=1
			break
		fi
		sleep 0.1
	done
	((up)) || echo "UML-HOST-SERVE result=fail reason=guest-iperf3-not-reachable"
	for ((r = 1; r <= reps && up; r++)); do
		for dir in g2h h2g; do
			rev=()
			[[ $dir == g2h ]] && rev=(-R)
			bench_line tcp "$dir" "$r" '"mbps=\(.end.sum_received.bits_per_second / 1e6 | floor) retr=\(.end.sum_sent.retransmits // "na") bytes=\(.end.sum_received.bytes) secs=\(.end.sum_received.seconds) boot='"$k"'"' \
				-t "$secs" "${rev[@]}"
		done
		[[ $mode == bench ]] || continue
		for dir in g2h h2g; do
			rev=()
			[[ $dir == g2h ]] && rev=(-R)
			bench_line udp64 "$dir" "$r" '.end.sum | "pps=\((.packets - .lost_packets) / .seconds | floor) lost=\(.lost_packets) sent=\(.packets) secs=\(.seconds)"' \
				-u -l 64 -b 0 -t "$udp_secs" "${rev[@]}"
		done
		((rr == 0)) || rr_line "$r" "$k"
	done
	if ((up)); then
		inns timeout 10 busybox nc "$guest" 6001 -e true </dev/null >/dev/null 2>&1 || true
	fi
	wait_boot "$k" 0
}

if [[ $mode == bench ]]; then
	bench_boot 1
	finish
fi
dd if=/dev/urandom of="$w/h2g" bs=1048576 count="$size" 2>/dev/null
h2g_bytes=$(wc -c <"$w/h2g")
h2g_sum=$(sha256sum "$w/h2g" | cut -d' ' -f1)
if [[ $mode == soak ]]; then
	# Every boot is a new vhost-user connection: the device is reset and set up again.
	k=0 t0=$SECONDS
	while ((SECONDS - t0 < soak_secs)); do
		k=$((k + 1))
		if ((k % 2)); then test_boot "$k"; else bench_boot "$k"; fi
	done
	finish
fi
for ((k = 1; k <= boots; k++)); do
	test_boot "$k"
done
finish
