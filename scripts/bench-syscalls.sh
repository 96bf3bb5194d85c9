#!/usr/bin/env bash
# System calls per operation of the data path's benchmarks, this tree against
# another commit: how issue 15's wake-up work is measured where no UML or KVM
# run is possible. Each benchmark runs under `perf stat` (syscalls:sys_enter_*
# tracepoints) at -benchtime 1x and at Nx; (count at N - count at 1) / (N - 1)
# is the calls per operation, without the binary's start-up. Test binaries of
# both trees run alternately, ROUNDS times; the table gives medians (min-max)
# and ns/op (noisy on a shared machine: the call counts are the result).
#
# Usage: scripts/bench-syscalls.sh [--base REV] [--rounds N] [--out FILE]
#   --base REV   the commit to compare with (default HEAD~1); "none": this tree only
#   --rounds N   alternating rounds (default 5)
#   --out FILE   also write the Markdown table to FILE
# Needs perf (linux-perf) and root (tracepoints). Benchmarks absent from a tree
# (a new one) are left out of its rows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
base=HEAD~1 rounds=5 out=''
while (($#)); do
	case $1 in
	--base) base=${2:?--base needs a REV}; shift ;;
	--rounds) rounds=${2:?--rounds needs N}; shift ;;
	--out) out=${2:?--out needs a FILE}; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench-syscalls.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "bench-syscalls.sh: --rounds must be a positive number" >&2; exit 2; }
command -v perf > /dev/null || { echo "bench-syscalls.sh: perf is missing (apt-get install linux-perf)" >&2; exit 2; }

# package | benchmark (-test.bench regexp) | N
benches=(
	"./net/tap|^BenchmarkReadvOrPark\$|20000"
	"./net/tap|^BenchmarkWaitReadable\$|20000"
	"./virtio/transport/vhostuser|^BenchmarkRoundTrip/batch=1\$|5000"
	"./virtio/transport/vhostuser|^BenchmarkRoundTrip/batch=32\$|500"
)
events=read,readv,write,writev,ppoll,epoll_pwait,futex
ev=$(echo "$events" | sed 's/[^,]*/syscalls:sys_enter_&/g')

work=$(mktemp -d)
trap 'git worktree remove --force "$work/base-tree" 2> /dev/null || true; rm -rf "$work"' EXIT
trees=(this)
if [ "$base" != none ]; then
	rev=$(git rev-parse --verify "$base^{commit}") || { echo "bench-syscalls.sh: --base $base is not a commit" >&2; exit 2; }
	git worktree add -q --detach "$work/base-tree" "$rev"
	trees=(base this)
fi
build() { # TREE DIR: test binaries of every package into $work/bin/TREE
	local tree=$1 dir=$2 pkg
	mkdir -p "$work/bin/$tree"
	for pkg in $(printf '%s\n' "${benches[@]}" | cut -d'|' -f1 | sort -u); do
		(cd "$dir" && go test -c -o "$work/bin/$tree/$(basename "$pkg").test" "$pkg")
	done
}
build this "$PWD"
[ "$base" != none ] && build base "$work/base-tree"

# perf stat -x, lines: COUNT,,syscalls:sys_enter_NAME,...
counts() { awk -F, '$3 ~ /sys_enter_/ { sub(".*sys_enter_", "", $3); printf "%s=%s ", $3, $1 }' "$1"; }
for r in $(seq "$rounds"); do
	for tree in "${trees[@]}"; do
		for spec in "${benches[@]}"; do
			IFS='|' read -r pkg bench n <<< "$spec"
			bin=$work/bin/$tree/$(basename "$pkg").test
			"$bin" -test.list "$(echo "$bench" | cut -d/ -f1)" 2> /dev/null | grep -q . || continue
			for N in 1 "$n"; do
				(cd "$(dirname "$bin")" && perf stat -x, -e "$ev" -o "$work/stat" "$bin" -test.run '^$' \
					-test.bench "$bench" -test.benchtime "${N}x" -test.benchmem > "$work/bench-out" 2>&1) ||
					{ echo "bench-syscalls.sh: $tree $bench failed:" >&2; cat "$work/bench-out" >&2; exit 1; }
				echo "$tree|$bench|$N|$n|$(counts "$work/stat")|$(awk '/ns\/op/ { for (i = 1; i < NF; i++) if ($(i+1) == "ns/op") ns = $i; else if ($(i+1) == "allocs/op") al = $i } END { printf "ns=%s allocs=%s", ns, al }' "$work/bench-out")"
			done
		done
	done
	echo "round $r done" >&2
done > "$work/raw"

# Per (benchmark, tree, round): the Nx run less the 1x run before it, per operation.
table=$(awk -F'|' -v events="$events" '
function val(s, k,   a, i, kv) { split(s, a, " "); for (i in a) { split(a[i], kv, "="); if (kv[1] == k) return kv[2] } return 0 }
function med(list, digits,   a, n, i, j, t, m, f) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	m = n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	f = "%." digits "f"
	return sprintf(f " (" f "-" f ")", m, a[1], a[n])
}
{
	key = $2 "|" $1
	if ($3 == 1) { one[key] = $5; next }
	if (!($2 in benchSeen)) { benchSeen[$2] = 1; benches[++nb] = $2 }
	seen[key] = 1
	ne = split(events, ev, ",")
	for (i = 1; i <= ne; i++) per[key, ev[i]] = per[key, ev[i]] " " (val($5, ev[i]) - val(one[key], ev[i])) / ($4 - 1)
	ns[key] = ns[key] " " val($6, "ns"); allocs[key] = val($6, "allocs")
}
END {
	ne = split(events, ev, ",")
	printf "| benchmark | tree |"; for (i = 1; i <= ne; i++) printf " %s |", ev[i]; print " ns/op | allocs/op |"
	printf "|---|---|"; for (i = 1; i <= ne; i++) printf "---|"; print "---|---|"
	for (b = 1; b <= nb; b++) for (t = 1; t <= 2; t++) {
		key = benches[b] "|" (t == 1 ? "base" : "this")
		if (!(key in seen)) continue
		printf "| `%s` | %s |", benches[b], (t == 1 ? "base" : "this")
		for (i = 1; i <= ne; i++) printf " %s |", med(per[key, ev[i]], 2)
		printf " %s | %s |\n", med(ns[key], 0), allocs[key]
	}
}' "$work/raw")
{
	echo "System calls per operation ($(date -u '+%Y-%m-%d %H:%M UTC'), $rounds rounds, this tree $(git describe --always --dirty) against ${rev:-none}; medians (min-max)):"
	echo
	echo "$table"
} | tee ${out:+"$out"}
