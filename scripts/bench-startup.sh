#!/usr/bin/env bash
# Start-up benchmark: Flint vs QEMU microvm on the same tiny bzImage, in one run on one
# machine. Prints a Markdown report (machine, commands, go test -bench output, the
# comparison table) to stdout, the form BENCHMARKS.md's "Start-up" section records.
#
# Usage: scripts/bench-startup.sh [--runs N] [--count N] [--benchtime T] [--memory MiB]
#            [--no-qemu] [--out FILE] [--csv FILE]
#
#   --runs N       timed runs per VMM in the comparison (default 30; each also gets
#                  one untimed peak-RSS run under GNU time)
#   --count N      go test -count for BenchmarkStartup (default 3; 0 skips it)
#   --benchtime T  go test -benchtime (default 20x)
#   --memory MiB   guest memory for both VMMs (default 64)
#   --no-qemu      measure Flint only
#   --out FILE     also write the report to FILE
#   --csv FILE     every comparison sample as CSV
#
# The guest (internal/startbench, `startbench image`) is a bzImage of a few hundred bytes:
# its 64-bit entry (what Flint runs) writes port 0x80, prints "hello\n" on COM1 and
# resets through the i8042; its real-mode entry (what QEMU's firmware runs) writes port
# 0x80, prints "F\n" and resets the same way. Both VMMs exit on that reset.
#
# Measured from outside each process by internal/startbench, identically for both:
# exec -> first byte on the stdout pipe, exec -> wait4 returning, peak RSS under GNU time
# (/usr/bin/time -f %M; a Go parent's own wait4 over-reports it, see startbench). QEMU's
# first payload instruction is its port 0x80 write, sent by isa-debugcon to a pipe;
# Flint's is derived from its own --timing line. QEMU on a PVM host needs
# `-cpu host,-arch-capabilities` (the default of startbench -qemu-cpu).
#
# Needs: go, /dev/kvm, GNU time (apt-get install -y time), and for the comparison
# qemu-system-x86_64 (apt-get install -y qemu-system-x86).
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

runs=30 count=3 benchtime=20x memory=64 qemu=qemu-system-x86_64 out="" csv=""
while (($#)); do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--count) count=$2; shift 2 ;;
	--benchtime) benchtime=$2; shift 2 ;;
	--memory) memory=$2; shift 2 ;;
	--no-qemu) qemu=""; shift ;;
	--out) out=$2; shift 2 ;;
	--csv) csv=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) flint_die "unknown argument $1 (try --help)" ;;
	esac
done

root=$(flint_repo_root)
cd "$root"
flint_need_tools go
[[ -x /usr/bin/time ]] || flint_die "GNU time is missing (the shell keyword is not enough): apt-get install -y time"
[[ -r /dev/kvm && -w /dev/kvm ]] || flint_die "no usable /dev/kvm"
qemu_note=""
if [[ -n $qemu ]] && ! command -v "$qemu" >/dev/null 2>&1; then
	qemu_note="QEMU not measured: $qemu not found (apt-get install -y qemu-system-x86)."
	qemu=""
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
flint_log "building flint and startbench"
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$tmp/flint" ./cmd/flint
go build -o "$tmp/startbench" ./internal/startbench
"$tmp/startbench" image -o "$tmp/tiny.bzImage"

report=$tmp/report.md
{
	echo "Date: $(date -u '+%Y-%m-%d %H:%M UTC')  "
	dirty=$(git status --porcelain --untracked-files=all -- cmd vmm kvm mem boot devices virtio net go.mod go.sum 2>/dev/null | grep -v '_test\.go$' || true)
	echo "Commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)${dirty:+ (with uncommitted changes to Flint code)}  "
	echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | sort -u | paste -sd, -)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)  "
	if [[ -d /sys/module/kvm_pvm ]]; then
		echo "KVM: kvm_pvm (PVM, software KVM without VT-x/AMD-V)  "
	elif grep -qw vmx /proc/cpuinfo; then
		echo "KVM: kvm_intel  "
	elif grep -qw svm /proc/cpuinfo; then
		echo "KVM: kvm_amd  "
	fi
	echo "Go: $(go version | awk '{print $3}')  "
	if [[ -n $qemu ]]; then echo "QEMU: $("$qemu" --version | head -1)  "; fi
	echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo
	if awk -v n="$(nproc)" '{exit !($1 > n / 2)}' /proc/loadavg; then
		echo "**Warning: the machine is busy (1-minute load average above half its CPUs): expect slower, noisier figures.**"
		echo
	fi
} >"$report"

if ((count > 0)); then
	flint_log "go test -bench BenchmarkStartup -count $count -benchtime $benchtime"
	bench_cmd=(go test -run '^$' -bench '^BenchmarkStartup$' -count "$count" -benchtime "$benchtime" ./cmd/flint)
	"${bench_cmd[@]}" | tee "$tmp/bench.txt" >&2
	{
		echo "\`${bench_cmd[*]}\` (medians per -count run):"
		echo
		echo '```'
		grep -E '^(Benchmark|cpu:)' "$tmp/bench.txt"
		echo '```'
		echo
	} >>"$report"
fi

flint_log "comparison: $runs runs per VMM"
cmp_args=(compare -flint "$tmp/flint" -kernel "$tmp/tiny.bzImage" -memory "$memory" -n "$runs" -qemu "$qemu")
if [[ -n $csv ]]; then cmp_args+=(-csv "$csv"); fi
"$tmp/startbench" "${cmp_args[@]}" >"$tmp/compare.md"
{
	echo "\`go run ./internal/startbench compare -n $runs -memory $memory ...\`${qemu:+ (Flint and QEMU interleaved)}:"
	echo
	sed "s#$tmp/#\$TMP/#g" "$tmp/compare.md"
	if [[ -n $qemu_note ]]; then printf '\n%s\n' "$qemu_note"; fi
} >>"$report"

cat "$report"
if [[ -n $out ]]; then cp "$report" "$out"; fi
