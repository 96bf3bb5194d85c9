#!/bin/sh
# The nested host's side of scripts/bench-command.sh (POSIX sh, run by L1's init as
# its job in /payload): command mode (`flint run --kernel K -- true`) against QEMU
# -M microvm booting the same kernel into a busybox initramfs that does the same
# work, interleaved round by round. It measures and prints; it judges nothing
# (internal/benchreport -command turns the lines into the report).
#
# Payload (bench-command.sh builds it): vmlinuz, modules/ (the cloud kernel's
# tree, pruned to what command mode loads), busybox.cpio (busybox for flint's
# --no-host-root runs: the command needs a `true`), qemu-guest.cpio (QEMU's guest),
# qemu/ (scripts/mknet-tools.sh's qemu-system-x86_64 with its libraries and
# firmware, merged into L1's root), bench.conf (RUNS=N).
#
# Round 0 is a warm-up of the three timed configurations (printed, left out of
# the medians); rounds 1..RUNS run them in a rotating order, then Flint's two
# phase runs:
#   flint-nohostroot         flint run ... --no-host-root --initrd busybox.cpio -- true
#   flint-hostroot           flint run ... -- true  (L1's root over virtio-fs + overlay)
#   qemu-microvm             QEMU with qemu-guest.cpio (its /init prints the uptimes)
#   flint-*-phases           the same flint runs with a command that prints the guest's
#                            uptime at its start and the kernel's "Run /init" timestamp
#                            (stamped with L1's uptime when they arrive, as QEMU's are)
# Output, after each run (never during one): BENCHCMD-RUN config= run= rc= t0= t1=
# (L1's /proc/uptime just before exec and just after exit), BENCHCMD-REPORT (flint's
# --report JSON on one line), BENCHCMD-TIMING (flint's --timing line),
# BENCHCMD-GUEST config= run= at=init|modules|cmd0|cmd1|kinit up=GUEST-UPTIME
# [l1=L1-UPTIME when the line reached L1], BENCHCMD-ERR (a run's stderr tail).
cd "$PAYLOAD" || exit 1
RUNS=5
. ./bench.conf
cp -a qemu/. / || exit 1
K=$PAYLOAD/vmlinuz
M=$PAYLOAD/modules
W=/tmp/benchcmd
mkdir -p "$W"
echo "BENCHCMD-L1 cpus=$(grep -c '^processor' /proc/cpuinfo) kernel=$(uname -r) qemu=$(qemu-system-x86_64 --version | head -1 | tr ' ' _)"

# Flint's phase command: the guest's uptime when the command starts, then the
# kernel's own timestamp of "Run /init as init process" (printk.time).
PHASECMD='read -r u _ </proc/uptime; echo "BENCHCMD-GUEST at=cmd0 up=$u"; dmesg | sed -n "s/^\[ *\([0-9.]*\)\] Run \/init as init process.*/BENCHCMD-GUEST at=kinit up=\1/p"'

# QEMU's command line: flint's machine as far as QEMU has it. Three one-port
# virtio-console devices on virtio-mmio (max_ports=1: no multiport, as flint's),
# the command's stdin, stdout and stderr as in flint's command mode; flint's
# command-mode kernel command line.
QCONS=''
for i in 0 1 2; do
	QCONS="$QCONS -device virtio-serial-device,id=vs$i,max_ports=1 -chardev null,id=nc$i -device virtconsole,bus=vs$i.0,chardev=nc$i"
done
QAPPEND='console=ttyS0 reboot=k panic=-1 loglevel=5 printk.time=1 rdinit=/init'

# tail_err CONFIG RUN FILE: the last lines of a failed run's stderr.
tail_err() {
	tail -n 5 "$3" | sed "s/^/BENCHCMD-ERR config=$1 run=$2 | /"
}

# run_flint CONFIG RUN: one flint run of CONFIG.
run_flint() {
	c=$1 r=$2 d=$W/$1-$2
	mkdir -p "$d"
	# --fail-on all,-warn: in the nested host the cloud kernel WARNs at boot in
	# fpu__init_system_xstate (the emulated CPU's XSAVE layout; tests/command_test.go
	# has the same exception); it changes the verdict, not the work.
	set -- run --kernel "$K" --memory 256 --cpus 1 --modules "$M" --timeout 300s \
		--fail-on all,-warn --report "$d/report.json" --timing
	case $c in flint-nohostroot*) set -- "$@" --no-host-root --initrd "$PAYLOAD/busybox.cpio" ;; esac
	case $c in
	*-phases) set -- "$@" -- sh -c "$PHASECMD" ;;
	*) set -- "$@" -- true ;;
	esac
	read -r t0 _ </proc/uptime
	case $c in
	*-phases)
		# The command's lines stamped as they reach L1: when its first line
		# arrives, less the guest's uptime it carries, is when the guest's
		# kernel started.
		{
			"$FLINT" "$@" 2>"$d/err"
			echo $? >"$d/rc"
		} | stamp >"$d/lines"
		rc=$(cat "$d/rc")
		;;
	*)
		"$FLINT" "$@" >"$d/out" 2>"$d/err"
		rc=$?
		;;
	esac
	read -r t1 _ </proc/uptime
	echo "BENCHCMD-RUN config=$c run=$r rc=$rc t0=$t0 t1=$t1"
	echo "BENCHCMD-REPORT config=$c run=$r $(tr -d '\n' <"$d/report.json")"
	sed -n "s/^flint: timing: /BENCHCMD-TIMING config=$c run=$r /p" "$d/err"
	[ -f "$d/lines" ] && stamped "$c" "$r" "$d/lines"
	[ "$rc" = 0 ] || tail_err "$c" "$r" "$d/err"
}

# stamp: the BENCHCMD-GUEST lines of stdin, each after L1's uptime when it
# arrived (shell builtins only: no fork per line).
stamp() {
	while IFS= read -r l; do
		read -r u _ </proc/uptime
		case $l in *BENCHCMD-GUEST*) echo "$u $l" ;; esac
	done
}

# stamped CONFIG RUN FILE: stamp's lines as BENCHCMD-GUEST ... l1=UPTIME.
stamped() {
	tr -d '\r' <"$3" | sed -n "s/^\([0-9.]*\) .*BENCHCMD-GUEST \(.*\)$/BENCHCMD-GUEST config=$1 run=$2 \2 l1=\1/p"
}

# run_qemu CONFIG RUN: one QEMU run, its serial output through stamp.
run_qemu() {
	c=$1 r=$2 d=$W/$1-$2
	mkdir -p "$d"
	read -r t0 _ </proc/uptime
	# shellcheck disable=SC2086 # QCONS is a list of arguments
	{
		timeout 300 qemu-system-x86_64 -M microvm,acpi=on -enable-kvm -cpu host -m 256 -smp 1 \
			-nodefaults -no-user-config -display none -serial stdio -no-reboot \
			-global virtio-mmio.force-legacy=false $QCONS \
			-kernel "$K" -initrd "$PAYLOAD/qemu-guest.cpio" -append "$QAPPEND" </dev/null 2>"$d/err"
		echo $? >"$d/rc"
	} | stamp >"$d/lines"
	read -r t1 _ </proc/uptime
	rc=$(cat "$d/rc")
	echo "BENCHCMD-RUN config=$c run=$r rc=$rc t0=$t0 t1=$t1"
	stamped "$c" "$r" "$d/lines"
	[ "$rc" = 0 ] || tail_err "$c" "$r" "$d/err"
}

run() {
	case $1 in
	qemu*) run_qemu "$1" "$2" ;;
	*) run_flint "$1" "$2" ;;
	esac
}

r=0
while [ "$r" -le "$RUNS" ]; do
	case $((r % 3)) in
	0) order='flint-nohostroot qemu-microvm flint-hostroot' ;;
	1) order='qemu-microvm flint-hostroot flint-nohostroot' ;;
	2) order='flint-hostroot flint-nohostroot qemu-microvm' ;;
	esac
	[ "$r" = 0 ] || order="$order flint-nohostroot-phases flint-hostroot-phases"
	for c in $order; do
		run "$c" "$r"
	done
	r=$((r + 1))
done
echo "BENCHCMD-END"
