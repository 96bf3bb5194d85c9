#!/usr/bin/env bash
# Run a job inside the nested test host: a stock Debian kernel (linux-image-amd64) in
# QEMU TCG with `-cpu max -M q35`, which emulates AMD SVM with nested paging. Its init
# loads kvm_amd, checks /dev/kvm and runs the job script, so Flint can boot stock
# kernels (L2) on machines without hardware virtualization.
#
# Usage: scripts/nested-host.sh --script FILE [--flint PATH] [--payload DIR]
#            [--timeout SECONDS] [--interactive] [--memory MiB] [--cpus N]
#            [--cache DIR] [--append "ARGS"] [--modules "M ..."] [--tcg-thread multi|single]
#
#   --script FILE    job run by L1's init as `sh FILE` in /payload (required). It sees
#                    FLINT=/usr/bin/flint, PAYLOAD=/payload, NESTED_INTERACTIVE=0|1.
#   --flint PATH     Flint binary (static: build with CGO_ENABLED=0), at /usr/bin/flint
#   --payload DIR    copied (symlinks followed) to /payload in L1
#   --timeout S      kill QEMU after S seconds (default 900; 0 = none; default none
#                    with --interactive)
#   --interactive    the terminal is L1's serial console and the job's controlling tty
#                    (Ctrl-A x quits QEMU, Ctrl-A c toggles the QEMU monitor)
#   --memory MiB     L1 memory (default 2048)   --cpus N   L1 vCPUs (default 2)
#   --cache DIR      kernel cache (default $FLINT_CACHE or <repo>/.cache); the amd64
#                    kernel is fetched with fetch-kernels.sh when missing
#   --append "ARGS"  extra L1 kernel command line
#   --modules "M"    L1 modules to load (default "kvm_amd"; dependencies are added)
#   --beat FILE      L1's heartbeat channel (default: a file in the work directory,
#                    shown when L1 ends without its job's end line): a virtio-serial
#                    port, independent of L1's console UART, to which L1 writes
#                    "L1-BEAT n=N up=SECONDS" every second and, every 30 beats (and
#                    when /tmp/l1-dump exists), every process's state, kernel wait
#                    channel and, for flint's threads, kernel stacks ("L1-PS ...");
#                    QEMU's pid goes to FILE.qemu-pid
#   --control PATH   a command channel into L1 (a second virtio-serial port; QEMU
#                    reads the FIFO PATH.in, created here): a line "dump" makes L1
#                    send SIGUSR1 to every flint (each logs its vCPUs, queues and
#                    interrupts) and its heartbeat print the process dump at once
#   --tcg-thread T   QEMU TCG threading: multi (default: one host thread per L1 vCPU)
#                    or single (all L1 vCPUs round-robin on one host thread; for
#                    experiments only: L2 guests stall with it under QEMU 7.2)
#
# Output: L1's serial console is streamed to stdout (and kept for parsing). L1 prints
# "NESTED-JOB-START" before the job and "NESTED-EXIT=<rc>" after it, then powers off.
# Exit status: the job's exit status; 124 if the timeout fired; 125 if L1 failed
# (no /dev/kvm, module load failure, kernel panic, QEMU error, no NESTED-EXIT line).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

script='' flint='' payload='' timeout_s='' interactive=0 memory=2048 cpus=2 cache=''
append='' modules='kvm_amd' tcg_thread=multi beat='' control=''
while (($#)); do
	case $1 in
	--script) script=${2:?--script needs a FILE}; shift ;;
	--flint) flint=${2:?--flint needs a PATH}; shift ;;
	--payload) payload=${2:?--payload needs a DIR}; shift ;;
	--timeout) timeout_s=${2:?--timeout needs SECONDS}; shift ;;
	--interactive) interactive=1 ;;
	--memory) memory=${2:?--memory needs MiB}; shift ;;
	--cpus) cpus=${2:?--cpus needs a number}; shift ;;
	--cache) cache=${2:?--cache needs a DIR}; shift ;;
	--append) append=${2?--append needs a string}; shift ;;
	--modules) modules=${2?--modules needs a list}; shift ;;
	--tcg-thread) tcg_thread=${2:?--tcg-thread needs multi or single}; shift ;;
	--beat) beat=${2:?--beat needs a FILE}; shift ;;
	--control) control=${2:?--control needs a PATH}; shift ;;
	-h | --help) usage 0 ;;
	*) flint_die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
[[ -n $script ]] || flint_die "missing --script FILE (see --help)"
[[ -f $script ]] || flint_die "job script $script not found"
[[ -z $flint || -f $flint ]] || flint_die "flint binary $flint not found"
[[ -z $payload || -d $payload ]] || flint_die "payload directory $payload not found"
if [[ -z $timeout_s ]]; then
	if ((interactive)); then timeout_s=0; else timeout_s=900; fi
fi
[[ $timeout_s =~ ^[0-9]+$ ]] || flint_die "--timeout must be a number of seconds"
[[ $memory =~ ^[0-9]+$ && $cpus =~ ^[0-9]+$ ]] || flint_die "--memory and --cpus must be numbers"
[[ $tcg_thread == multi || $tcg_thread == single ]] || flint_die "--tcg-thread must be multi or single"
flint_need_tools qemu-system-x86_64 cpio gzip timeout

if [[ -n $flint ]] && [[ $(LC_ALL=C ldd "$flint" 2>&1 || true) != *'not a dynamic executable'* ]] &&
	[[ $(head -c 2 "$flint") != '#!' ]]; then
	flint_die "$flint is dynamically linked; build it with CGO_ENABLED=0 (L1 has no libc)"
fi

cache=$(flint_cache_dir "$cache")
kdir=$cache/kernels/amd64
if [[ ! -e $kdir/vmlinuz || ! -e $kdir/modules/modules.dep ]]; then
	flint_log "amd64 kernel not in $cache; fetching"
	bash "$here/fetch-kernels.sh" "$cache" >&2
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/flint-nested.XXXXXX")
qemu_pid=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [[ -n $qemu_pid ]]; then kill "$qemu_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- L1 root file system -------------------------------------------------------
root=$work/root
flint_rootfs_skeleton "$root"
: >"$root/etc/modules.order"
# virtio_console carries the heartbeat (--beat).
# shellcheck disable=SC2086 # whitespace-separated list
flint_install_modules "$kdir/modules" "$root" etc/modules.order virtio_pci virtio_console $modules
mkdir -p "$root/payload"
if [[ -n $payload ]]; then
	cp -rL "$payload/." "$root/payload/"
fi
if [[ -n $flint ]]; then
	cp "$flint" "$root/usr/bin/flint"
	chmod 0755 "$root/usr/bin/flint"
fi
cp "$script" "$root/job.sh"

cat >"$root/init" <<'INIT'
#!/bin/sh
export PATH=/usr/bin:/usr/sbin:/bin:/sbin HOME=/root TERM=${TERM:-linux}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1

say() { echo "nested-host(L1): $*"; }
fail() {
	say "SETUP FAILED: $*"
	echo "NESTED-SETUP-FAILED"
	sync
	poweroff -f
	sleep 3600
}
say "kernel $(uname -r) up at $(cut -d' ' -f1 /proc/uptime)s uptime, $(grep -c '^processor' /proc/cpuinfo) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
# MODULE.PARAM=VALUE words on the kernel command line go to that module, as modprobe
# would pass them (busybox insmod does not read /proc/cmdline).
while read -r ko; do
	[ -n "$ko" ] || continue
	m=$(basename "$ko" .ko | tr - _)
	# shellcheck disable=SC2046 # one word per parameter
	insmod "$ko" $(tr ' ' '\n' </proc/cmdline | sed -n "s/^$m\.//p") || fail "insmod $ko"
done </etc/modules.order
# The heartbeat: a virtio-serial port (not the console UART), so a host that watches it
# can tell L1 alive from L1 lost even when L1's console is stuck.
beatdev=''
for d in /sys/class/virtio-ports/*; do
	[ "$(cat "$d/name" 2>/dev/null)" = flint.beat ] && beatdev=/dev/${d##*/}
done
if [ -n "$beatdev" ] && [ -c "$beatdev" ]; then
	# Shell builtins only (read, echo) in the loop: under TCG every fork costs L1 time.
	(
		n=0
		while :; do
			n=$((n + 1))
			read -r up _ </proc/uptime
			read -r l1 l5 l15 _ </proc/loadavg
			echo "L1-BEAT n=$n up=$up load=$l1,$l5,$l15"
			if [ $((n % 30)) = 0 ] || [ -e /tmp/l1-dump ]; then
				rm -f /tmp/l1-dump
				for p in /proc/[0-9]*; do
					st='' pp='' c='' wc=''
					while read -r k v _; do
						case $k in State:) st=$v ;; PPid:) pp=$v && break ;; esac
					done <"$p/status" 2>/dev/null
					# Kernel threads are children of kthreadd (pid 2).
					[ -n "$pp" ] && [ "$pp" != 2 ] && [ "${p#/proc/}" != 2 ] || continue
					read -r c <"$p/comm" 2>/dev/null
					read -r wc <"$p/wchan" 2>/dev/null
					echo "L1-PS ${p#/proc/} $c $st wchan=$wc"
					[ "$c" = flint ] || continue
					for t in "$p"/task/*; do
						st='' wc='' stack='' i=0
						while read -r k v _; do
							case $k in State:) st=$v && break ;; esac
						done <"$t/status" 2>/dev/null
						read -r wc <"$t/wchan" 2>/dev/null
						while [ $i -lt 4 ] && read -r _ fn; do
							stack="$stack$fn "
							i=$((i + 1))
						done <"$t/stack" 2>/dev/null
						echo "L1-PS   thread ${t##*/} $st wchan=$wc $stack"
					done
				done
			fi
			sleep 1
		done
	) >"$beatdev" 2>&1 &
else
	say "warning: no heartbeat port"
fi
for d in /sys/class/virtio-ports/*; do
	[ "$(cat "$d/name" 2>/dev/null)" = flint.ctl ] || continue
	(
		while read -r cmd; do
			case $cmd in
			dump)
				for p in /proc/[0-9]*; do
					[ "$(cat "$p/comm" 2>/dev/null)" = flint ] && kill -USR1 "${p#/proc/}" 2>/dev/null
				done
				: >/tmp/l1-dump
				;;
			esac
		done
	) <"/dev/${d##*/}" >/dev/null 2>&1 &
done
[ -c /dev/kvm ] || fail "/dev/kvm does not exist after loading $(tr '\n' ' ' </etc/modules.order)"
grep -qw svm /proc/cpuinfo || say "warning: no svm flag in /proc/cpuinfo"
[ -d /sys/module/kvm_amd/parameters ] &&
	say "kvm_amd parameters: $(cd /sys/module/kvm_amd/parameters && for p in *; do printf '%s=%s ' "$p" "$(cat "$p")"; done)"
dmesg | grep -iE 'kvm|svm' | sed 's/^/nested-host(L1): dmesg: /'
export FLINT=/usr/bin/flint PAYLOAD=/payload NESTED_INTERACTIVE
cd /payload
say "job start at $(cut -d' ' -f1 /proc/uptime)s uptime"
echo "NESTED-JOB-START"
if [ "$NESTED_INTERACTIVE" = 1 ]; then
	setsid cttyhack sh /job.sh
else
	sh /job.sh </dev/null
fi
rc=$?
say "job end at $(cut -d' ' -f1 /proc/uptime)s uptime"
echo "NESTED-EXIT=$rc"
sync
poweroff -f
sleep 3600
INIT
chmod 0755 "$root/init"

# The payload is mostly compressed kernels and images: an uncompressed cpio is loaded
# as fast and saves L1 from gunzip under TCG.
flint_pack_cpio "$root" "$work/l1.cpio" none

# --- QEMU ----------------------------------------------------------------------
# quiet: only warnings and worse from the L1 kernel; panic=-1 + -no-reboot: a panic
# ends QEMU at once. NESTED_INTERACTIVE=... is passed to init's environment.
# l1_diag makes a wedge explain itself: a soft lockup report carries every CPU's
# backtrace, and loglevel=5 prints those backtraces (the kernel logs them at the
# default level, which quiet hides; it costs ~9 more L1 boot lines).
# console_msg_format=syslog starts each L1 kernel line with "<level>", which tells
# L1's messages from those of a guest's kernel on the same console.
l1_diag='softlockup_all_cpu_backtrace=1 loglevel=5 console_msg_format=syslog'
# l1_mm keeps L1 from wedging in KVM's nested page faults: Debian's kernel has THP
# "always" and init_on_alloc=1, so the first touch of a guest page made L1 allocate a
# 2 MiB page and zero it in one stretch without a reschedule point (seen: a flint
# vCPU thread 31 s in clear_page_erms <- get_page_from_freelist <-
# do_huge_pmd_anonymous_page <- hva_to_pfn <- kvm_mmu_page_fault, before the guest
# printed anything). With 4 KiB pages zeroed once, KVM returns to its run loop, and
# to the scheduler, between faults.
l1_mm='transparent_hugepage=never init_on_alloc=0'
cmdline="console=ttyS0 quiet panic=-1 mitigations=off $l1_diag $l1_mm NESTED_INTERACTIVE=$interactive${append:+ $append}"
log=$work/serial.log
# shellcheck disable=SC2054 # commas are QEMU option syntax
qemu=(qemu-system-x86_64
	-accel "tcg,thread=$tcg_thread" -cpu max -M q35 -smp "$cpus" -m "$memory"
	-nodefaults -no-user-config -display none -no-reboot
	-kernel "$kdir/vmlinuz" -initrd "$work/l1.cpio" -append "$cmdline")
if ((interactive)); then
	# shellcheck disable=SC2054
	qemu+=(-chardev "stdio,id=con,mux=on,signal=off,logfile=$log"
		-serial chardev:con -mon chardev=con,mode=readline)
	flint_log "interactive nested host: Ctrl-A x quits QEMU, Ctrl-A c toggles the QEMU monitor"
else
	qemu+=(-chardev "stdio,id=con,signal=on,logfile=$log" -serial chardev:con)
fi
[[ -n $beat ]] || beat=$work/beat.log
: >"$beat" || flint_die "cannot write the heartbeat file $beat"
# QEMU's pid beside the heartbeat: a watcher that finds L1 silent can see whether
# L1's CPUs are halted or spinning (QEMU's threads' CPU time).
rm -f "$beat.qemu-pid"
qemu+=(-pidfile "$beat.qemu-pid")
# shellcheck disable=SC2054
qemu+=(-device virtio-serial-pci,id=vser -chardev "file,id=beat,path=$beat"
	-device virtserialport,bus=vser.0,chardev=beat,name=flint.beat)
if [[ -n $control ]]; then
	rm -f "$control.in" "$control.out"
	mkfifo "$control.in" "$control.out" || flint_die "cannot create the FIFOs $control.in, $control.out"
	# shellcheck disable=SC2054
	qemu+=(-chardev "pipe,id=ctl,path=$control" -device virtserialport,bus=vser.0,chardev=ctl,name=flint.ctl)
fi

start=$(date +%s.%N)
tdesc="timeout ${timeout_s}s"
((timeout_s > 0)) || tdesc="no timeout"
flint_log "starting L1 ($(basename "$(readlink -f "$kdir/vmlinuz")"), $cpus CPUs, ${memory} MiB, $tdesc)"
qrc=0
if ((interactive)); then
	if ((timeout_s > 0)); then
		timeout --foreground -k 10 "$timeout_s" "${qemu[@]}" || qrc=$?
	else
		"${qemu[@]}" || qrc=$?
	fi
else
	# In the background so the INT/TERM trap can stop QEMU and clean up.
	if ((timeout_s > 0)); then
		timeout -k 10 "$timeout_s" "${qemu[@]}" </dev/null &
	else
		"${qemu[@]}" </dev/null &
	fi
	qemu_pid=$!
	wait "$qemu_pid" || qrc=$?
	qemu_pid=''
fi
end=$(date +%s.%N)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

# --- verdict -------------------------------------------------------------------
[[ -f $log ]] || : >"$log"
# A wedged L1 (soft lockups: CPUs stuck in the kernel, e.g. in a flint vCPU thread
# that no signal can end) never reaches NESTED-EXIT; name the stuck CPUs and tasks.
# Only L1's own messages count ("<N>[time]", see l1_diag), not a guest's.
lockups=$(tr -d '\r' <"$log" |
	grep -a -oE '<[0-7]>\[ *[0-9]+\.[0-9]+\] watchdog: BUG: soft lockup - CPU#[0-9]+ stuck for [0-9]+s! \[[^]]*\]' |
	sed -E 's/^.*soft lockup - (CPU#[0-9]+) stuck for [0-9]+s! (.*)$/\1 \2/' | sort -u | paste -sd ' ' - || true)
if [[ -n $lockups ]]; then
	flint_log "L1 WEDGED: soft lockup reports for $lockups (backtraces above); its job could not finish"
fi
exit_line=$(tr -d '\r' <"$log" | grep -a -E '^NESTED-EXIT=[0-9]+$' | tail -n1 || true)
if [[ $qrc == 124 || $qrc == 137 ]] && [[ -z $exit_line ]]; then
	flint_log "TIMEOUT: L1 did not finish within ${timeout_s}s (wall ${wall}s); QEMU killed"
	exit 124
fi
if [[ -z $exit_line ]]; then
	if tr -d '\r' <"$log" | grep -a -q '^NESTED-SETUP-FAILED'; then
		flint_log "FAILED: L1 setup failed (see the 'SETUP FAILED' line above); wall ${wall}s"
	else
		flint_log "FAILED: no NESTED-EXIT line from L1 (QEMU exit status $qrc, wall ${wall}s): L1 crashed, panicked or QEMU failed"
	fi
	exit 125
fi
rc=${exit_line#NESTED-EXIT=}
flint_log "job exit status $rc; wall time ${wall}s (QEMU exit status $qrc)"
exit "$rc"
