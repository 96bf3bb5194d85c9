#!/usr/bin/env bash
# Issue 13 item 6's resource soak: one `flint net-backend` kept running for the whole
# soak, driven by Debian's user-mode Linux (the real virtio_net driver over vhost-user)
# through scripts/uml-net-case.sh --mode soak: boots alternate between a test boot (SIZE
# MiB each way over TCP, SHA-256 at both ends) and a bench boot (iperf3 TCP one way then
# the other, SECS each), each boot ending with UML's poweroff, so the backend sees its
# frontend disconnect and the next boot's connect set the device up from reset. Meanwhile
# flint's VmRSS (/proc/PID/status) and fd count (/proc/PID/fd) are sampled every
# INTERVAL seconds. The verdict is internal/soakcheck's (RSS and fds flat within 5% after
# the warm-up, every stream's sha256 matched, every iperf3 run done, the backend alive
# with one connection per boot); this script only drives processes and reports. The RSS
# judged is VmRSS less RssShmem: the pages of UML's memory file (the guest's RAM, mapped
# by the backend while a frontend is connected) come and go with each boot.
#
# Usage: scripts/soak-resources.sh [--minutes M] [--out FILE]
#
#   --minutes M     how long boots keep starting [10]; the last boot then finishes
#   --out FILE      also write every line to FILE
#   --secs S        seconds of each iperf3 run [20]
#   --size MiB      each test boot's stream each way [64]
#   --interval S    seconds between samples [3]
#   --warmup S      samples before S seconds are not judged for flatness [120]
#   --gctrace       run the backend with GODEBUG=gctrace=1: its whole log, with a line per
#                   Go GC (heap before -> after -> live, MB), ends the output (UML-BACKEND-LOG)
#   --gogc N        run the backend with GOGC=N (a diagnosis: Go's first GC waits for a
#                   4 MiB heap times GOGC/100, which a 10-minute soak may never reach)
#
# Output (key=value lines):
#   SOAK-START minutes= gctrace= gogc= secs= size_bytes= interval= warmup= commit= load=
#   SOAK-SAMPLE ms= rss_kib= fds= threads= anon_kib= file_kib= shmem_kib=   (flint net-backend)
#   UML-* ...                      scripts/uml-net-case.sh's lines (see its --help)
#   SOAK-END rc= secs= load=
#   SOAK-RSS-KIB, SOAK-FDS, SOAK-TRAFFIC, SOAK-PROBLEM, SOAK-VERDICT result=pass|fail
#                                  internal/soakcheck's verdict; exit status 1 on fail
# Needs what uml-net-case.sh needs (root, /dev/net/tun, user-mode-linux, iperf3, jq) and go.
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
minutes=10 out="" secs=20 size=64 interval=3 warmup=120 gctrace=0 gogc=''
while (($#)); do
	case $1 in
	--minutes | --out | --secs | --size | --interval | --warmup | --gogc)
		[[ $# -ge 2 ]] || flint_die "$1 needs a value"
		printf -v "${1#--}" '%s' "$2"
		shift
		;;
	--gctrace) gctrace=1 ;;
	-h | --help) usage 0 ;;
	*) flint_die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
for v in minutes secs size interval warmup; do
	[[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || flint_die "--$v ${!v}: want a positive whole number"
done
flint_need_tools go
[[ -z $out ]] || : >"$out" || flint_die "cannot write $out"

w=$(mktemp -d "${TMPDIR:-/tmp}/flint-soak.XXXXXX")
casepid=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	[[ -z $casepid ]] || kill "$casepid" 2>/dev/null || true
	[[ -z $casepid ]] || wait "$casepid" 2>/dev/null || true
	rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# emit: its input to stdout, to --out and to the record the verdict reads.
emit() {
	if [[ -n $out ]]; then tee -a "$w/all" "$out"; else tee -a "$w/all"; fi
}

for p in cmd/flint internal/umlexec internal/soakcheck; do
	(cd "$root" && CGO_ENABLED=0 go build -o "$w/${p##*/}" "./$p") || flint_die "building $p"
done
initrd=$(bash "$here/mkuml-guest.sh")
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
load() { cut -d' ' -f1-3 /proc/loadavg | tr ' ' /; }

echo "SOAK-START minutes=$minutes gctrace=$gctrace gogc=${gogc:-default} secs=$secs size_bytes=$((size << 20)) interval=$interval warmup=$warmup commit=$commit load=$(load)" | emit
t0=$(date +%s%N)
gcopts=()
((!gctrace)) || gcopts=(env GODEBUG=gctrace=1)
[[ -z $gogc ]] || gcopts=(env ${gcopts[@]:1} "GOGC=$gogc")
"${gcopts[@]}" bash "$here/uml-net-case.sh" --mode soak --soak-secs $((minutes * 60)) --secs "$secs" --size "$size" \
	--pid-file "$w/pid" --flint "$w/flint" --umlexec "$w/umlexec" --initrd "$initrd" --name soak \
	--log-lines $((gctrace ? 100000 : 60)) </dev/null >"$w/case.out" 2>"$w/case.err" &
casepid=$!

# The sampler: flint's figures until the case ends (its backend lives as long).
# field NAME: the figure of NAME in $st, one read of /proc/PID/status (the figures of
# separate reads would disagree while traffic runs).
field() { sed -n "s/^$1:[[:space:]]*\([0-9]*\).*/\1/p" <<<"$st"; }
pid=''
while kill -0 "$casepid" 2>/dev/null; do
	[[ -n $pid || ! -s $w/pid ]] || pid=$(cat "$w/pid")
	if [[ -n $pid && -d /proc/$pid ]]; then
		fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
		st=$(cat "/proc/$pid/status" 2>/dev/null) || st=''
		rss=$(field VmRSS) thr=$(field Threads) anon=$(field RssAnon) file=$(field RssFile) shmem=$(field RssShmem)
		[[ -z $rss ]] || echo "SOAK-SAMPLE ms=$((($(date +%s%N) - t0) / 1000000)) rss_kib=$rss fds=$fds threads=$thr anon_kib=$anon file_kib=$file shmem_kib=$shmem" | emit
	fi
	sleep "$interval"
done
rc=0
wait "$casepid" || rc=$?
casepid=''
emit <"$w/case.out"
sed 's/^/SOAK-CASE-STDERR /' "$w/case.err" | tail -n 20 | emit
echo "SOAK-END rc=$rc secs=$((($(date +%s%N) - t0) / 1000000000)) load=$(load)" | emit

vrc=0
"$w/soakcheck" -warmup "${warmup}s" <"$w/all" >"$w/verdict" || vrc=$?
emit <"$w/verdict"
exit "$vrc"
