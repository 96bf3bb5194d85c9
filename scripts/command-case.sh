#!/bin/sh
# One command-mode case (`flint run ... -- CMD`) in the nested test host, for
# tests/command_test.go, which judges what this prints. Runs in L1's busybox sh.
#
# Usage: command-case.sh --dir D [--limit SECS] [--tree SRC DEST] [--kernel-into PATH]
#            [--tools DIR] [--stdin TEXT] [--tun-ko PATH] [--tap NAME CIDR] -- FLINT-COMMAND-LINE...
#
#   --dir D          the case's directory: D/ro (holds "hello"), D/rw (empty), D/cwd
#                    (flint's working directory) are created here first
#   --limit SECS     after SECS send flint SIGUSR1 (it logs its vCPUs' and devices'
#                    state: the harness tells a lost vCPU state from a flint hang by
#                    it), SIGKILL 10 s later, so this script still reports what it saw
#                    [no limit]
#   --tree SRC DEST  copy the kernel module tree SRC to DEST (e.g. /lib/modules/KVER,
#                    where flint finds it without --modules)
#   --kernel-into PATH  copy the kernel that flint's --kernel names to PATH and run
#                    flint with --kernel PATH (a kernel build tree's
#                    arch/x86/boot/bzImage: flint finds the tree around it)
#   --tools DIR      merge DIR (scripts/mknet-tools.sh output: dynamically linked
#                    programs and their libraries) into L1's root
#   --stdin TEXT     flint's stdin is a file holding TEXT and a newline (default /dev/null)
#   --tun-ko PATH    insmod PATH when /dev/net/tun is missing (the nested host)
#   --tap NAME CIDR  create TAP NAME with address CIDR and bring it up (iproute2's ip
#                    from --tools: busybox's cannot create TAPs)
#
# Output, after flint exits (its exit status is printed, not returned: 124 is a
# status the case may expect):
#   CMDCASE-RC rc=N secs=S
#   CMDCASE-OUT|line      flint's stdout, then CMDCASE-OUT-HEX hex=... (all of it in hex)
#   CMDCASE-ERR|line      flint's stderr
#   CMDCASE-CON|line      D/console.log, when the case wrote its kernel log there
#   CMDCASE-REPORT|line   D/report.json      CMDCASE-JUNIT|line   D/junit.xml
#   CMDCASE-RWFILE|line   D/rw/out.txt, when the guest wrote it
#   CMDCASE-HOST ro-new=yes|no overlay-leak=yes|no   what the guest's writes did on L1
# and, while flint still runs, CMDCASE-LIVE|line for its log lines saying a vCPU did
# not leave KVM_RUN.
dir='' stdin=/dev/null limit='' kernel_into=''
while [ $# -gt 0 ]; do
	case $1 in
	--dir) dir=$2; shift 2 ;;
	--limit) limit=$2; shift 2 ;;
	--tree) mkdir -p "$3" && cp -a "$2/." "$3/" || exit 1; shift 3 ;;
	--kernel-into) kernel_into=$2; shift 2 ;;
	--tools) cp -a "$2/." / || exit 1; shift 2 ;;
	--stdin) stdin_text=$2; stdin=stdin; shift 2 ;;
	--tun-ko)
		[ -c /dev/net/tun ] || insmod "$2" || exit 1
		shift 2 ;;
	--tap)
		ip=ip
		[ -x /usr/local/bin/ip ] && ip=/usr/local/bin/ip
		$ip tuntap add "$2" mode tap && $ip addr add "$3" dev "$2" && $ip link set "$2" up || exit 1
		shift 3 ;;
	--) shift; break ;;
	*) echo "command-case.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
[ -n "$dir" ] || { echo "command-case.sh: --dir is required" >&2; exit 2; }
if [ -n "$kernel_into" ]; then
	# The word after --kernel becomes kernel_into, a copy of that kernel.
	mkdir -p "$(dirname "$kernel_into")" || exit 1
	n=$# next=''
	for a in "$@"; do
		if [ -n "$next" ]; then
			cp "$a" "$kernel_into" || exit 1
			a=$kernel_into next=''
		elif [ "$a" = --kernel ]; then
			next=1
		fi
		set -- "$@" "$a"
	done
	shift "$n"
fi
mkdir -p "$dir/ro" "$dir/rw" "$dir/cwd" || exit 1
echo hello-from-host >"$dir/ro/hello"
if [ "$stdin" = stdin ]; then
	stdin=$dir/stdin
	echo "$stdin_text" >"$stdin"
fi
cd "$dir/cwd" || exit 1
t0=$(cut -d' ' -f1 /proc/uptime)
if [ -n "$limit" ]; then
	timeout -s USR1 -k 10 "$limit" "$@" <"$stdin" >"$dir/out" 2>"$dir/err" &
else
	"$@" <"$stdin" >"$dir/out" 2>"$dir/err" &
fi
pid=$!
# While flint runs, its log is only in $dir/err; a vCPU that does not leave
# KVM_RUN (for a dump, or at the stop) is shown at once: the emulator lost
# it, the thread outlives SIGKILL, and flint never exits, so the harness must
# see it now to rerun the case in a fresh L1.
stuck=''
while kill -0 "$pid" 2>/dev/null; do
	if [ -z "$stuck" ] && grep -q 'did not leave KVM_RUN' "$dir/err" 2>/dev/null; then
		stuck=1
		grep 'did not leave KVM_RUN' "$dir/err" | sed 's/^/CMDCASE-LIVE|/'
	fi
	sleep 1
done
wait "$pid"
rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
echo
echo "CMDCASE-RC rc=$rc secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
# Each line of file $2 with prefix $1; a last line without its newline gets one
# (a console cut off mid-line must not run into the next file's first line).
show() {
	[ -f "$2" ] || return 0
	sed "s/^/$1|/" "$2"
	[ -z "$(tail -c 1 "$2")" ] || echo
}
show CMDCASE-OUT "$dir/out"
echo "CMDCASE-OUT-HEX hex=$(od -An -v -tx1 "$dir/out" | tr -d ' \n')"
show CMDCASE-ERR "$dir/err"
show CMDCASE-CON "$dir/console.log"
show CMDCASE-REPORT "$dir/report.json"
show CMDCASE-JUNIT "$dir/junit.xml"
show CMDCASE-RWFILE "$dir/rw/out.txt"
ro=no leak=no
[ -e "$dir/ro/new" ] && ro=yes
[ -e /etc/flint-overlay-test ] && leak=yes
echo "CMDCASE-HOST ro-new=$ro overlay-leak=$leak"
exit 0
