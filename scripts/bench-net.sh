#!/usr/bin/env bash
# Network benchmark with the real Linux virtio_net driver: Debian's stock user-mode Linux
# (virtio_uml, a vhost-user frontend) against `flint net-backend` in each RX mode with
# indirect descriptors on and off, and against the peers on the same harness in the same
# run: UML's own vector TAP driver and DPDK's vhost backend (dpdk-testpmd net_vhost +
# net_tap). Each configuration is one scripts/uml-net-case.sh --mode bench boot per run;
# runs are interleaved (run 1 of every configuration, then run 2, ...), so slow phases
# of a shared machine hit all of them alike.
#
# Usage: scripts/bench-net.sh [--runs N] [--secs S] [--udp-secs S] [--only REGEX]
#                             [--no-dpdk] [--out FILE] [--raw FILE]
#
#   --runs N      runs per configuration; figures are medians [3]
#   --secs S      seconds per iperf3 TCP run, each direction [10]
#   --udp-secs S  seconds per iperf3 UDP run (64-byte datagrams, unlimited rate) [5]
#   --only REGEX  configurations whose names match (flint/mergeable/indirect=on, vec, dpdk, ...)
#   --no-dpdk     leave DPDK out (it needs Debian's dpdk-dev for dpdk-testpmd, and a CPU:
#                 its forwarding core busy-polls)
#   --out FILE    the Markdown report [stdout]
#   --raw FILE    keep every UML-BENCH line
# Figures: TCP guest->host and host->guest (iperf3 from the host, -R for guest->host:
# Mbit/s at the receiver, the sender's retransmits) and UDP 64-byte packets per second
# received (the guest's side is bounded by UML's ~21 us syscalls, not by the device).
# Needs root, /dev/net/tun, iproute2, busybox, iperf3, jq, user-mode-linux, Go (to build
# flint and internal/vumask), and for the DPDK peer dpdk-dev.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
runs=3 secs=10 udp_secs=5 only='' dpdk=1 out='' raw=''
while (($#)); do
	case $1 in
	--runs | --secs | --udp-secs | --only | --out | --raw)
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
flint_log "building flint, vumask and umlexec"
(cd "$root" && CGO_ENABLED=0 go build -trimpath -tags urfave_cli_no_docs -o "$w/flint" ./cmd/flint &&
	CGO_ENABLED=0 go build -o "$w/vumask" ./internal/vumask &&
	CGO_ENABLED=0 go build -o "$w/umlexec" ./internal/umlexec) || flint_die "go build failed"
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
		args=(--mode bench --secs "$secs" --udp-secs "$udp_secs" --initrd "$initrd" --name "bench$$" --umlexec "$w/umlexec")
		case $c in
		flint/*)
			IFS=/ read -r _ rx ind <<<"$c"
			args+=(--backend flint --flint "$w/flint" --rx "$rx" --indirect "${ind#indirect=}")
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

# The report: medians (min-max) per configuration and figure, then each Flint
# configuration's ratio to the best peer, figure by figure.
report() {
	echo "Date: $date0. Commit: $commit. Load average (1/5/15 min) at the start: $load0, at the end: $load1."
	local cmd="scripts/bench-net.sh --runs $runs --secs $secs --udp-secs $udp_secs"
	[[ -z $only ]] || cmd+=" --only '$only'"
	((dpdk)) || cmd+=" --no-dpdk"
	echo "Command: \`$cmd\`"
	local nfail
	nfail=$(grep -c 'result=fail' "$lines" || true)
	if ((nfail)); then
		echo
		echo "$nfail measurement(s) failed and are left out of the medians:"
		grep 'result=fail' "$lines" | sed 's/^UML-BENCH /- /'
	fi
	echo
	awk -v order="${sel[*]}" '
	function kv(line, key,   m) { return match(line, " " key "=[^ ]*") ? substr(line, RSTART + length(key) + 2, RLENGTH - length(key) - 2) : "" }
	function median(key,   n, a, i, j, t) {
		n = split(vals[key], a, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
		if (n == 0) return ""
		lo[key] = a[1]; hi[key] = a[n]
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function fmt(key, scale, digits,   m) {
		m = median(key)
		if (m == "") return "—"
		return sprintf("%.*f (%.*f-%.*f)", digits, m / scale, digits, lo[key] / scale, digits, hi[key] / scale)
	}
	/^UML-BENCH / && !/result=fail/ {
		c = kv($0, "config"); f = kv($0, "test") "-" kv($0, "dir")
		if (f ~ /^tcp/) { vals[c SUBSEP f] = vals[c SUBSEP f] " " kv($0, "mbps"); vals[c SUBSEP f "-retr"] = vals[c SUBSEP f "-retr"] " " kv($0, "retr") }
		else vals[c SUBSEP f] = vals[c SUBSEP f] " " kv($0, "pps")
	}
	END {
		n = split(order, cs, " ")
		nf = split("tcp-g2h tcp-h2g udp64-g2h udp64-h2g", fs, " ")
		print "| configuration | TCP guest→host Gbit/s | retransmits | TCP host→guest Gbit/s | retransmits | UDP 64 B guest→host kpps | UDP 64 B host→guest kpps |"
		print "|---|---|---|---|---|---|---|"
		for (i = 1; i <= n; i++) {
			c = cs[i]
			printf "| %s | %s | %s | %s | %s | %s | %s |\n", c,
				fmt(c SUBSEP "tcp-g2h", 1000, 2), fmt(c SUBSEP "tcp-g2h-retr", 1, 0),
				fmt(c SUBSEP "tcp-h2g", 1000, 2), fmt(c SUBSEP "tcp-h2g-retr", 1, 0),
				fmt(c SUBSEP "udp64-g2h", 1000, 1), fmt(c SUBSEP "udp64-h2g", 1000, 1)
		}
		# The best peer per figure (highest median).
		for (k = 1; k <= nf; k++) {
			best[k] = ""; bestv[k] = 0
			for (i = 1; i <= n; i++) {
				c = cs[i]
				if (c ~ /^flint/) continue
				m = median(c SUBSEP fs[k])
				if (m != "" && m + 0 > bestv[k]) { bestv[k] = m + 0; best[k] = c }
			}
		}
		print ""
		print "Flint / best peer (medians; the best peer of each figure in the header):"
		print ""
		printf "| configuration |"
		for (k = 1; k <= nf; k++) printf " %s (best: %s) |", fs[k], best[k] == "" ? "none" : best[k]
		print ""
		printf "|---|"
		for (k = 1; k <= nf; k++) printf "---|"
		print ""
		for (i = 1; i <= n; i++) {
			c = cs[i]
			if (c !~ /^flint/) continue
			printf "| %s |", c
			for (k = 1; k <= nf; k++) {
				m = median(c SUBSEP fs[k])
				if (m == "" || bestv[k] == 0) printf " — |"; else printf " %.2f |", m / bestv[k]
			}
			print ""
		}
	}' "$lines"
}
if [[ -n $out ]]; then
	report >"$out"
	flint_log "wrote $out"
else
	report
fi
