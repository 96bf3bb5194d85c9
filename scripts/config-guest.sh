#!/bin/sh
# Guest side of the config-file / API-socket end-to-end test (busybox sh, run by the
# initramfs init of `mkinitramfs-guest.sh --script`; tests/config_test.go). The VM
# has a root drive (/dev/vda, an ext4 image the test built with mkfs.ext4 -d and a
# "marker" file in it), optionally a read-only drive (/dev/vdb, ext4 with a marker)
# and a network interface (eth0).
#
# Parameters from the kernel command line:
#   flintcfg.mode=M    write: mount /dev/vda read-write, write flintcfg.token to the
#                      file "token", sync, unmount; read: mount it and print "token";
#                      api: like read, then print CFG-API-READY and wait (the host
#                      ends the VM with the API's SendCtrlAltDel)
#                      vsock: no drives; check the entropy device (/dev/hwrng)
#                      and run /usr/local/bin/vsockprobe guest (internal/vsockprobe)
#                      against the host's side, then end
#   flintcfg.token=T   the token to write (mode write)
#   flintcfg.ro=1      /dev/vdb is a read-only drive: check that writes are refused
#   flintcfg.net=1     check eth0 (driver, MAC)
#   flintcfg.ifs=L@MAC@ADDR/P@HOST,...  for each: give the interface with MAC the
#                      address, wait until HOST answers a ping, then run iperf3 to
#                      HOST:5201 guest-to-host (tx) and host-to-guest (rx, -R) for
#                      flintcfg.iperf seconds [5] after 1 s that is omitted
# Lines it prints (the test parses them; values have no spaces):
#   CFG-GUEST      vCPUs, memory, the root= and ro/rw words of /proc/cmdline
#   CFG-DISK       a drive: driver, bus (pci|platform), read-only flag, size,
#                  packed: whether the driver negotiated VIRTIO_F_RING_PACKED
#                  (bit 34 of the virtio device's features; "-" unreadable)
#   CFG-MARKER     the root drive's marker file
#   CFG-WRITE      mode write: the token written;  CFG-READ  the token file read
#   CFG-RO         /dev/vdb: the kernel's ro flag, what a raw write and a
#                  read-write mount did, its marker (mounted read-only)
#   CFG-NET        eth0: driver, bus, MAC
#   CFG-IPERF      per interface label and direction: the receiver's Mbit/s
#   CFG-VIRTIO     mode vsock: a virtio device (vsock, rng): driver and bus
#   CFG-RNG        mode vsock: the current hw_random source, bytes read from /dev/hwrng
#   CFG-VSOCK...   mode vsock: the guest side's vsock probe lines
#   CFG-GUEST-DONE the script ended (CFG-API-READY in mode api)

# The guest side of a test: it changes the network and mounts of the system it runs on, so
# it refuses to run anywhere but inside a test image (whose init exports FLINT_GUEST=1).
[ "${FLINT_GUEST:-}" = 1 ] || { echo "$0: the guest side of a test; it runs inside a test image (scripts/mk*-guest.sh), not on a host" >&2; exit 2; }
arg() {
	v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^flintcfg\.$1=//p" | tail -n1)
	echo "${v:-$2}"
}
mode=$(arg mode read)
token=$(arg token '')
ro=$(arg ro 0)
net=$(arg net 0)
# A value for a key=value line: no spaces, "-" when empty.
val() {
	v=$(printf '%s' "$1" | tr -s ' \t\n' '___')
	echo "${v:--}"
}
bus_of() { # SYSFS-DEVICE-DIR: pci or platform (the virtio device's parent's bus)
	basename "$(readlink -f "$(readlink -f "$1/..")/subsystem")"
}
wait_for() { # PATH: up to 10 s
	i=0
	while [ ! -e "$1" ] && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ -e "$1" ]
}

root=$(tr ' ' '\n' </proc/cmdline | grep '^root=' | tail -n1)
rw=$(tr ' ' '\n' </proc/cmdline | grep -E '^(ro|rw)$' | tail -n1)
# Kernel messages below KERN_ERR must not split the lines the test parses.
dmesg -n 4 2>/dev/null
echo "CFG-GUEST mode=$mode cpus=$(grep -c '^processor' /proc/cpuinfo) memmib=$(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) root=$(val "${root#root=}") rootmode=$(val "$rw")"

if [ "$mode" = vsock ]; then
	for d in /sys/bus/virtio/devices/*; do
		case $(cat "$d/device") in
		0x0013) name=vsock ;;
		0x0004) name=rng ;;
		*) continue ;;
		esac
		i=0
		while [ ! -e "$d/driver" ] && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		echo "CFG-VIRTIO dev=$name driver=$(basename "$(readlink -f "$d/driver")") bus=$(bus_of "$d")"
	done
	wait_for /dev/hwrng
	n=$(dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c)
	echo "CFG-RNG current=$(val "$(cat /sys/class/misc/hw_random/rng_current 2>&1)") bytes=$n"
	wait_for /dev/vsock
	/usr/local/bin/vsockprobe guest -timeout 150s
	echo "CFG-GUEST-DONE"
	exit 0
fi

disk() { # NAME
	d=/sys/block/$1
	if ! wait_for "$d"; then
		echo "CFG-DISK dev=$1 result=fail reason=missing disks=$(cd /sys/block && echo * | tr ' ' ,)"
		return 1
	fi
	# features: one 0/1 per bit, bit 0 first; bit 34 is the 35th character.
	packed=$(cut -c35 "$d/device/features" 2>/dev/null)
	echo "CFG-DISK dev=$1 result=ok driver=$(basename "$(readlink -f "$d/device/driver")") bus=$(bus_of "$d/device") ro=$(cat "$d/ro") sectors=$(cat "$d/size") packed=${packed:--} serial=$(val "$(cat "$d/serial" 2>/dev/null)")"
}

mkdir -p /mnt /ro
if disk vda && wait_for /dev/vda; then
	if [ "$mode" = write ]; then opt=rw; else opt=ro; fi
	if out=$(mount -t ext4 -o $opt /dev/vda /mnt 2>&1); then
		echo "CFG-MARKER content=$(val "$(cat /mnt/marker 2>&1)")"
		case $mode in
		write)
			if printf '%s\n' "$token" >/mnt/token && sync; then r=ok; else r=fail; fi
			# The unmount writes the journal and the superblock back.
			umount /mnt || r=fail-umount
			echo "CFG-WRITE result=$r token=$(val "$token")"
			;;
		*)
			echo "CFG-READ token=$(val "$(cat /mnt/token 2>&1)")"
			umount /mnt
			;;
		esac
	else
		echo "CFG-MARKER result=fail reason=mount-$opt:$(val "$out")"
	fi
fi

if [ "$ro" = 1 ] && disk vdb && wait_for /dev/vdb; then
	# A raw write to the block device and a read-write mount: both must fail.
	if out=$(dd if=/dev/zero of=/dev/vdb bs=4096 count=1 conv=fsync 2>&1); then
		wr=allowed
	else
		wr=refused:$(val "$(echo "$out" | head -n1)")
	fi
	if out=$(mount -t ext4 -o rw /dev/vdb /ro 2>&1) && grep -q ' /ro ext4 rw' /proc/mounts; then
		rwm=allowed
		umount /ro
	else
		rwm=refused
		umount /ro 2>/dev/null
	fi
	if mount -t ext4 -o ro,noload /dev/vdb /ro 2>/dev/null; then
		m=$(val "$(cat /ro/marker 2>&1)")
		umount /ro
	else
		m=mount-failed
	fi
	echo "CFG-RO sysro=$(cat /sys/block/vdb/ro) write=$wr rwmount=$rwm marker=$m"
fi

if [ "$net" = 1 ]; then
	if wait_for /sys/class/net/eth0; then
		d=/sys/class/net/eth0
		echo "CFG-NET result=ok driver=$(basename "$(readlink -f $d/device/driver)") bus=$(bus_of $d/device) mac=$(cat $d/address) mtu=$(cat $d/mtu)"
	else
		echo "CFG-NET result=fail reason=no-eth0 interfaces=$(cd /sys/class/net && echo * | tr ' ' ,)"
	fi
fi

# Rate measurements: each interface (found by its MAC) up, then iperf3 both ways.
ifs=$(arg ifs '')
secs=$(arg iperf 5)
for spec in $(echo "$ifs" | tr ',' ' '); do
	label=${spec%%@*} rest=${spec#*@}
	mac=${rest%%@*} rest=${rest#*@}
	addr=${rest%%@*} host=${rest#*@}
	dev=''
	i=0
	while [ -z "$dev" ] && [ $i -lt 100 ]; do
		for d in /sys/class/net/*; do
			[ "$(cat "$d/address")" = "$mac" ] && dev=${d##*/}
		done
		[ -n "$dev" ] || sleep 0.1
		i=$((i + 1))
	done
	if [ -z "$dev" ]; then
		echo "CFG-IPERF if=$label result=fail reason=no-interface-with-$mac"
		continue
	fi
	ip addr add "$addr" dev "$dev"
	ip link set "$dev" up
	i=0
	until ping -c 1 -W 1 "$host" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 60 ] || break
	done
	for dir in tx rx; do
		r=''
		[ $dir = rx ] && r=-R
		# The host's server refuses a test while it tears the last one down
		# ("the server is busy", or a reset control connection): a run that
		# failed before its data connection came up (no "connected to" line)
		# is tried again, up to 5 times a second apart (as in net-guest.sh).
		for try in 1 2 3 4 5; do
			# shellcheck disable=SC2086 # r is an option or nothing
			/usr/local/bin/iperf3 -c "$host" -p 5201 -t "$secs" -O 1 -f m $r >/tmp/iperf3.out 2>&1
			rc=$?
			[ $rc != 0 ] && ! grep -q ' connected to ' /tmp/iperf3.out && [ $try -lt 5 ] || break
			sleep 1
		done
		mbps=$(awk '/receiver/ { print $(NF - 2) }' /tmp/iperf3.out | tail -n1)
		sed "s/^/CFG-IPERF-OUT $label $dir /" /tmp/iperf3.out
		echo "CFG-IPERF if=$label dev=$dev dir=$dir rc=$rc mbps=${mbps:--}"
	done
done

if [ "$mode" = api ]; then
	# The host sends Ctrl-Alt-Del through the API; the kernel restarts at once
	# (kernel.ctrl-alt-del is 1), which ends flint. Nothing else ends this guest.
	echo "CFG-API-READY"
	while :; do sleep 3600; done
fi
echo "CFG-GUEST-DONE"
