#!/bin/sh
# Runs a guest with QEMU on KVM where the end-to-end tests run flint: it takes the
# `flint run` flags the harness and net-case.sh pass and starts the equivalent
# qemu-system-x86_64 (POSIX sh; it runs in the nested host, whose QEMU and
# firmware come from `scripts/mknet-tools.sh -o DIR qemu-system-x86_64`). It is how
# the nested host's own loss rate is measured: the same guests and cases with QEMU
# as the guest's VMM (FLINT_E2E_VMM=qemu, scripts/soak-net.sh).
#
# Usage: qemu-l2.sh run --kernel K [--initrd I] [--cpus N] [--memory MiB]
#            [--cmdline C] [--net SPEC] [--timeout Ns] [--console stdio] [--log-level L]
#
# --net takes flint's SPEC (tap=NAME,transport=pci|mmio,mrg_rxbuf=,tso=,ufo=,csum=,
# indirect=,event_idx=,mtu=,mac=): transport=mmio is `-M microvm` with ACPI and a
# modern virtio-mmio virtio-net-device, pci is `-M q35` with virtio-net-pci; both on
# a TAP with a virtio-net header, without vhost-net (userspace virtio-net, as flint).
# Exit status: 0 when the guest reboots or powers off (-no-reboot), 124 when
# --timeout expires, QEMU's otherwise.

[ "$1" = run ] && shift
kernel='' initrd='' cpus=1 memory=256 cmdline='' net='' tmo=0
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift ;;
	--initrd) initrd=$2; shift ;;
	--cpus) cpus=$2; shift ;;
	--memory) memory=$2; shift ;;
	--cmdline) cmdline=$2; shift ;;
	--net) net=$2; shift ;;
	--timeout) tmo=${2%s}; shift ;;
	--console | --log-level) shift ;; # stdio is the only console; QEMU logs errors
	*) echo "qemu-l2.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
[ -n "$kernel" ] || { echo "qemu-l2.sh: --kernel is required" >&2; exit 2; }

# No option ROM for the PCI NIC: the guest boots with -kernel, not from the network.
machine='q35' dev=virtio-net-pci,romfile=
set -- -enable-kvm -cpu host -smp "$cpus" -m "$memory" -nodefaults -no-user-config \
	-display none -serial stdio -no-reboot -kernel "$kernel" -append "$cmdline"
[ -n "$initrd" ] && set -- "$@" -initrd "$initrd"
if [ -n "$net" ]; then
	tap='' props='mac=52:54:00:4a:63:d6'
	for kv in $(echo "$net" | tr ',' ' '); do
		k=${kv%%=*} v=${kv#*=}
		case $v in on) b=on ;; off) b=off ;; *) b='' ;; esac
		case $k in
		tap) tap=$v ;;
		transport) [ "$v" = mmio ] && machine='microvm,acpi=on,rtc=on' dev=virtio-net-device ;;
		mac) props="mac=$v" ;;
		mtu) props="$props,host_mtu=$v" ;;
		mrg_rxbuf) props="$props,mrg_rxbuf=$b" ;;
		# GUEST_ECN needs GUEST_TSO4 or 6 (virtio 1.2, 5.1.3.1), and Linux takes any
		# of them for big receive buffers: off with TSO, as flint offers no ECN.
		tso) props="$props,guest_tso4=$b,guest_tso6=$b,guest_ecn=$b" ;;
		ufo) props="$props,guest_ufo=$b" ;;
		csum) props="$props,guest_csum=$b" ;;
		indirect) props="$props,indirect_desc=$b" ;;
		event_idx) props="$props,event_idx=$b" ;;
		*) echo "qemu-l2.sh: --net option '$k' has no QEMU equivalent here" >&2; exit 2 ;;
		esac
	done
	set -- "$@" -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=off" \
		-device "$dev,netdev=n0,$props"
	# QEMU's virtio-mmio is legacy unless told otherwise; flint's is virtio 1.x.
	case $machine in microvm*) set -- "$@" -global virtio-mmio.force-legacy=false ;; esac
fi
set -- -M "$machine" "$@"
if [ "$tmo" != 0 ]; then
	exec timeout -s TERM "$tmo" qemu-system-x86_64 "$@"
fi
exec qemu-system-x86_64 "$@"
