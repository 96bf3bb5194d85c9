#!/usr/bin/env bash
# Network benchmark with the real Linux virtio_net driver: Debian's stock user-mode Linux
# (virtio_uml, a vhost-user frontend) against `flint net-backend` in each RX mode with
# indirect descriptors on and off, and against the peers on the same harness in the same
# run: UML's own vector TAP driver and DPDK's vhost backend (dpdk-testpmd net_vhost +
# net_tap). Each configuration is one scripts/uml-net-case.sh --mode bench boot per run;
# runs are interleaved (run 1 of every configuration, then run 2, ...), so slow phases
# of a shared machine hit all of them alike.
#
# Usage: scripts/bench-net.sh [--runs N] [--secs S] [--udp-secs S] [--rr N] [--only REGEX]
#                             [--no-dpdk] [--out FILE] [--raw FILE] [--perf DIR]
#
#   --runs N      runs per configuration; figures are medians [3]
#   --secs S      seconds per iperf3 TCP run, each direction [10]
#   --udp-secs S  seconds per iperf3 UDP run (64-byte datagrams, unlimited rate) [5]
#   --rr N        TCP request-response round trips per run (uml-net-case.sh --rr; 0: none) [2000]
#   --only REGEX  configurations whose names match (flint/mergeable/indirect=on, vec, dpdk, ...)
#   --no-dpdk     leave DPDK out (it needs Debian's dpdk-dev for dpdk-testpmd, and a CPU:
#                 its forwarding core busy-polls)
#   --out FILE    the Markdown report [stdout]
#   --raw FILE    keep every UML-BENCH line
#   --perf DIR    profile flint's backend: uml-net-case.sh --perf DIR/CONFIG-run-N (perf record
#                 -g and perf stat of its syscalls during every iperf3 run); read them with
#                 perf report -i DIR/.../tcp-h2g-1.data --no-children --sort sym
# Figures: TCP guest->host and host->guest (iperf3 from the host, -R for guest->host:
# Mbit/s at the receiver, the sender's retransmits) and UDP 64-byte packets per second
# received (the guest's side is bounded by UML's ~21 us syscalls, not by the device); and
# the per-core figure: the backend process's CPU (utime+stime from /proc/PID/stat, before
# and after each iperf3 run) per second of traffic, per Gbit/s and per UDP packet, for
# flint net-backend and dpdk-testpmd (its busy-polling forwarding core counts whole); vec
# has no process of its own (its driver runs in UML's kernel process), so for every
# configuration the report also gives the UML session's cores.
# Needs root, /dev/net/tun, iproute2, busybox, iperf3, jq, user-mode-linux, Go (to build
# flint, internal/vumask, internal/umlexec and internal/benchreport, which writes the
# report's tables), and for the DPDK peer dpdk-dev.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
runs=3 secs=10 udp_secs=5 rr=2000 only='' dpdk=1 out='' raw='' perf=''
while (($#)); do
	case $1 in
	--runs | --secs | --udp-secs | --rr | --only | --out | --raw | --perf)
		[[ $# -ge 2 ]] || flint_die "$1 needs a value"
		v=${1#--}
		printf -v "${v//-/_}" '%s' "$2"
		shift
		;;
	--no-dpdk) dpdk=0 ;;
	-h | --help) usage 0 ;;
	*) flint_die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
flint_need_tools go iperf3 jq linux.uml busybox
if ((dpdk)) && ! command -v dpdk-testpmd >/dev/null; then
	flint_die "no dpdk-testpmd (Debian 12: apt-get install -y dpdk-dev), or use --no-dpdk"
fi

w=$(mktemp -d "${TMPDIR:-/tmp}/flint-bench-net.XXXXXX")
trap 'rm -rf "$w"' EXIT
flint_log "building flint, vumask, umlexec and benchreport"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -tags urfave_cli_no_docs -o "$w/flint" ./cmd/flint &&
	CGO_ENABLED=0 go build -o "$w/vumask" ./internal/vumask &&
	CGO_ENABLED=0 go build -o "$w/umlexec" ./internal/umlexec &&
	CGO_ENABLED=0 go build -o "$w/benchreport" ./internal/benchreport) || flint_die "go build failed"
initrd=$(bash "$here/mkuml-guest.sh")

configs=()
for rx in mergeable big small; do
	for ind in on off; do
		configs+=("flint/$rx/indirect=$ind")
	done
done
configs+=(vec)
((dpdk)) && configs+=(dpdk)
sel=()
for c in "${configs[@]}"; do
	[[ -z $only || $c =~ $only ]] && sel+=("$c")
done
((${#sel[@]})) || flint_die "--only $only matches no configuration (${configs[*]})"

commit=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
date0=$(date -u '+%Y-%m-%d %H:%M UTC')
lines=$w/bench.lines
: >"$lines"
for ((r = 1; r <= runs; r++)); do
	for c in "${sel[@]}"; do
		args=(--mode bench --secs "$secs" --udp-secs "$udp_secs" --rr "$rr" --initrd "$initrd" --name "bench$$" --umlexec "$w/umlexec")
		case $c in
		flint/*)
			IFS=/ read -r _ rx ind <<<"$c"
			args+=(--backend flint --flint "$w/flint" --rx "$rx" --indirect "${ind#indirect=}")
			[[ -z $perf ]] || args+=(--perf "$perf/flint-$rx-indirect-${ind#indirect=}-run-$r")
			;;
		vec) args+=(--backend vec) ;;
		dpdk) args+=(--backend dpdk --vumask "$w/vumask") ;;
		esac
		flint_log "run $r/$runs: $c (load $(cut -d' ' -f1-3 /proc/loadavg))"
		if ! bash "$here/uml-net-case.sh" "${args[@]}" >"$w/case.out" 2>&1; then
			flint_log "run $r $c failed:"
			tail -n 30 "$w/case.out" >&2
		fi
		grep '^UML-BENCH ' "$w/case.out" | sed "s|^UML-BENCH |UML-BENCH config=$c |; s| run=[0-9]*| run=$r|" | tee -a "$lines" >&2 || true
	done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
[[ -z $raw ]] || cp "$lines" "$raw"

# The report: the run's facts here, the figures from internal/benchreport (failed
# measurements, medians (min-max) per configuration and figure, each Flint
# configuration's ratio to the best peer).
report() {
	echo "Date: $date0. Commit: $commit. Load average (1/5/15 min) at the start: $load0, at the end: $load1."
	local cmd="scripts/bench-net.sh --runs $runs --secs $secs --udp-secs $udp_secs --rr $rr"
	[[ -z $only ]] || cmd+=" --only '$only'"
	((dpdk)) || cmd+=" --no-dpdk"
	echo "Command: \`$cmd\`"
	echo
	"$w/benchreport" -order "${sel[*]}" <"$lines"
}
if [[ -n $out ]]; then
	report >"$out"
	flint_log "wrote $out"
else
	report
fi
