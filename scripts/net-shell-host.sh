#!/bin/sh
# Host side of `make run`'s network (POSIX sh: it runs under busybox sh in the nested
# host and under any sh on a machine with hardware virtualization).
#
# Usage: sh scripts/net-shell-host.sh [--tools DIR] [--tun-ko PATH] -- FLINT-COMMAND...
#
# Creates the network namespace flintrun-<pid> with the TAP tap0 at 10.0.2.1/24, starts
# a small web page (busybox httpd, port 80) and, when installed, an iperf3 server
# there, then runs FLINT-COMMAND with `--net tap=tap0` inside the namespace in the
# foreground (the guest console stays on this terminal). The guest's shell image
# configures eth0 as 10.0.2.15/24 with 10.0.2.1 as its gateway. If any of that fails
# it says why and runs FLINT-COMMAND without a network. The namespace goes when
# flint exits. No traffic leaves the namespace.
#   --tools DIR    merge DIR (scripts/mknet-tools.sh output: ip, iperf3) into / first
#   --tun-ko PATH  insmod PATH when /dev/net/tun is missing (the nested host)

tools='' tun_ko=''
while [ $# -gt 0 ]; do
	case $1 in
	--tools) tools=$2; shift ;;
	--tun-ko) tun_ko=$2; shift ;;
	--) shift; break ;;
	*) echo "net-shell-host.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
[ $# -gt 0 ] || { echo "usage: net-shell-host.sh [--tools DIR] [--tun-ko PATH] -- FLINT-COMMAND..." >&2; exit 2; }

# \r: in the nested host the terminal is already in raw mode.
say() { printf "flint-net: %s\r\n" "$*"; }
ns=flintrun-$$
w=''
setup() {
	if [ -n "$tools" ]; then
		cp -a "$tools/." / || { say "copying $tools into / failed"; return 1; }
	fi
	if [ ! -c /dev/net/tun ] && [ -n "$tun_ko" ]; then
		insmod "$tun_ko" || { say "insmod $tun_ko failed"; return 1; }
	fi
	[ -c /dev/net/tun ] || { say "no /dev/net/tun (TAP driver)"; return 1; }
	IP=''
	for d in /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
		if [ -x "$d/ip" ] && "$d/ip" -V 2>&1 | grep -q iproute2; then
			IP=$d/ip
			break
		fi
	done
	[ -n "$IP" ] || { say "no iproute2 ip for 'ip netns' (Debian package iproute2)"; return 1; }
	[ -d /var/run ] || { mkdir -p /var && ln -s /run /var/run; }
	"$IP" netns add "$ns" || { say "ip netns add $ns failed"; return 1; }
	if ! { "$IP" -n "$ns" link set lo up &&
		"$IP" -n "$ns" tuntap add tap0 mode tap &&
		"$IP" -n "$ns" addr add 10.0.2.1/24 dev tap0 &&
		"$IP" -n "$ns" link set tap0 up; }; then
		say "creating tap0 in $ns failed"
		return 1
	fi
	w=$(mktemp -d "${TMPDIR:-/tmp}/flint-run-net.XXXXXX") || return 1
	cat >"$w/index.html" <<'HTML'
<html><body><h1>Flint</h1><p>This page comes from 10.0.2.1, the host side of the guest's TAP.</p></body></html>
HTML
	"$IP" netns exec "$ns" busybox httpd -p 80 -h "$w" || say "httpd did not start"
	services="httpd on port 80 (wget -O- http://10.0.2.1/)"
	for d in /usr/local/bin /usr/bin; do
		if [ -x "$d/iperf3" ]; then
			"$IP" netns exec "$ns" "$d/iperf3" -s -D >/dev/null 2>&1 &&
				services="$services, iperf3 -s on port 5201"
			break
		fi
	done
	return 0
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "${IP:-}" ]; then
		"$IP" netns pids "$ns" 2>/dev/null | while read -r p; do kill "$p" 2>/dev/null; done
		"$IP" netns del "$ns" 2>/dev/null
	fi
	[ -n "$w" ] && rm -rf "$w"
}

if setup; then
	trap cleanup EXIT
	trap 'exit 143' TERM HUP
	say "guest network: eth0 10.0.2.15/24 <-> tap0 10.0.2.1/24 in network namespace $ns"
	say "host side runs $services"
	if [ -z "$tools" ]; then
		say "from this host: ip netns exec $ns ping 10.0.2.15"
	fi
	"$IP" netns exec "$ns" "$@" --net tap=tap0
	exit $?
fi
cleanup
say "no network for this guest (see above); starting it without one"
exec "$@"
