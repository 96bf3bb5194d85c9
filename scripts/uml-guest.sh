#!/bin/sh
# Guest side of the UML network tests and benchmarks (busybox sh; the init of
# scripts/mkuml-guest.sh runs it once the interface is up). The host side is
# scripts/uml-net-case.sh, which serves the ports below inside its network namespace.
#
# Parameters on the kernel command line (defaults in brackets):
#   flintuml.mode=test|serve  [test]
#       test:  ping the host, wait for the host's ping (it tells us on TCP 6000), send
#              SIZE MiB to host:5001 and receive host:5002's stream, with SHA-256 sums
#       serve: run `iperf3 -s` (port 5201) and a TCP echo server (port 7007: the
#              host's round trips, uml-net-case.sh --rr) for the host's benchmark until the
#              host connects to TCP 6001
#   flintuml.host=H [10.0.3.1]   flintuml.size=MiB [64]
# Lines (key=value; the test parses them):
#   UML-GUEST-PING      we pinged the host      UML-GUEST-HOSTPING  the host pinged us
#   UML-GUEST-G2H       guest-to-host stream sent: bytes, sha256, seconds
#   UML-GUEST-H2G       host-to-guest stream received: bytes, sha256, seconds
#   UML-GUEST-STATS     interface counters       UML-GUEST-DONE      the script ended
# The guest side of a test: it changes the network and mounts of the system it runs on, so
# it refuses to run anywhere but inside a test image (whose init exports FLINT_GUEST=1).
[ "${FLINT_GUEST:-}" = 1 ] || { echo "$0: the guest side of a test; it runs inside a test image (scripts/mk*-guest.sh), not on a host" >&2; exit 2; }
arg() {
	v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^flintuml\.$1=//p" | tail -n1)
	echo "${v:-$2}"
}
now() { cut -d' ' -f1 /proc/uptime; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
ok() { if [ "$1" = 0 ]; then echo ok; else echo fail; fi; }
mode=$(arg mode test)
host=$(arg host 10.0.3.1)
size=$(arg size 64)
dev=${FLINTUML_DEV:-eth0}
# flintuml.kallsyms=DIR: copy /proc/kallsyms to the host's DIR/kallsyms through hostfs
# (uml-net-case.sh --perf-uml: Debian's linux.uml is stripped, and modules load at run time).
ksdir=$(arg kallsyms "")
if [ -n "$ksdir" ]; then
	mkdir -p /mnt/host && mount -t hostfs none /mnt/host -o "$ksdir" &&
		cat /proc/kallsyms >/mnt/host/kallsyms && umount /mnt/host ||
		echo "UML-GUEST-KALLSYMS result=fail"
fi

if [ "$mode" = serve ]; then
	iperf3 -s -D -p 5201 || echo "UML-GUEST-SERVE result=fail reason=iperf3"
	nc -ll -p 7007 -e cat </dev/null >/dev/null 2>&1 &
	# -D returns before the daemon listens.
	i=0
	until netstat -ltn 2>/dev/null | grep -q ':5201 ' || [ $i -ge 50 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	echo "UML-GUEST-SERVE result=ok"
	timeout 3600 nc -l -p 6001 </dev/null >/dev/null
	echo "UML-GUEST-DONE"
	exit 0
fi

# The host may still be configuring its side: wait until it answers.
i=0
until ping -c 1 -W 1 "$host" >/dev/null 2>&1; do
	i=$((i + 1))
	[ $i -lt 30 ] || break
done
ping -c 3 -W 5 "$host" >/tmp/ping.out 2>&1
echo "UML-GUEST-PING result=$(ok $?) waited=$i received=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping.out)"

t0=$(now)
timeout 60 nc -l -p 6000 -e sh -c 'cat >/tmp/hostmsg' </dev/null
msg=$(head -n1 /tmp/hostmsg 2>/dev/null)
echo "UML-GUEST-HOSTPING result=$([ -n "$msg" ] && echo ok || echo fail) secs=$(since "$t0") msg=$msg"

dd if=/dev/urandom of=/tmp/g2h bs=1048576 count="$size" 2>/dev/null
sum=$(sha256sum /tmp/g2h | cut -d' ' -f1)
bytes=$(wc -c </tmp/g2h)
t0=$(now)
timeout 300 nc "$host" 5001 -e cat /tmp/g2h
rc=$?
echo "UML-GUEST-G2H result=$(ok $rc) bytes=$bytes sha256=$sum secs=$(since "$t0")"
rm -f /tmp/g2h

t0=$(now)
timeout 300 nc "$host" 5002 -e sh -c 'cat >/tmp/h2g'
rc=$?
secs=$(since "$t0")
echo "UML-GUEST-H2G result=$(ok $rc) bytes=$(wc -c </tmp/h2g) sha256=$(sha256sum /tmp/h2g | cut -d' ' -f1) secs=$secs"
rm -f /tmp/h2g

s=/sys/class/net/$dev/statistics
echo "UML-GUEST-STATS rx_packets=$(cat "$s/rx_packets") tx_packets=$(cat "$s/tx_packets") rx_errors=$(cat "$s/rx_errors") tx_errors=$(cat "$s/tx_errors") rx_dropped=$(cat "$s/rx_dropped") tx_dropped=$(cat "$s/tx_dropped")"
echo "UML-GUEST-DONE"
