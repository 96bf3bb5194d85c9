#!/bin/sh
# Host side of one config-file or API-socket end-to-end case (POSIX sh: it runs under
# busybox sh in the nested host and under any sh on a machine with hardware
# virtualization; tests/config_test.go). The guest side is scripts/config-guest.sh.
#
# Usage: sh scripts/config-case.sh [options] (--config TEMPLATE | --api REQUESTS)
#            -- FLINT run --kernel K [--initrd I] ... [--cmdline C] ...
#
# Of the flint command line only the binary and the values of --kernel, --initrd and
# --cmdline are used: they replace @KERNEL@, @INITRD@ and @CMDLINE@ in TEMPLATE or
# REQUESTS, as each --subst KEY FILE replaces @KEY@ with FILE.
#
#   --config TEMPLATE  run `flint run --config VM.JSON` (VM.JSON: TEMPLATE with the
#                      replacements)
#   --api REQUESTS     run `flint run --api-sock SOCK` and send REQUESTS, one a line,
#                      with curl --unix-socket: "METHOD PATH [JSON-BODY]", or
#                      "await TEXT" (wait until the console printed TEXT)
#   --subst KEY FILE   replace @KEY@ with FILE
#   --sha KEY          print the SHA-256 of @KEY@'s file before and after flint runs
#   --flint-timeout S  end flint after S seconds (API mode: also its --timeout) [240]
#   --tap NAME ADDR/P  once flint has created the TAP NAME, give it ADDR/P and bring
#                      it up (repeatable)
#   --iperf3           run an iperf3 server (port 5201) while flint runs
#   --metrics          replace @METRICS@ with a file in the case's directory and print
#                      what flint wrote there after it exits
#   --tools DIR        merge DIR (scripts/mknet-tools.sh output, e.g. curl) into / once
#   --vsock PROBE      replace @VSOCK@ with a socket path in the case's directory (a
#                      vsock uds_path); once flint has created it, run
#                      `PROBE host -uds PATH` (internal/vsockprobe) and print its lines
#                      after flint exits, then whether flint removed the socket
#   --tun-ko PATH      insmod PATH when /dev/net/tun is missing (the nested host)
# Lines it prints start with CFG-HOST or CFG-API (the test parses them):
#   CFG-HOST-SETUP   result=fail: the case could not be set up
#   CFG-HOST-SHA     key, when (before|after), sha256
#   CFG-HOST-TAP     a TAP of --tap: configured (result=ok) or never created
#   CFG-API          i, method, path, HTTP status and the response body, per request
#                    (printed after flint exits, so they do not cut console lines)
#   CFG-HOST-METRICS one line of flint's metrics file (a JSON object per flush)
#   CFG-VSOCK...     the host side's vsock probe lines (--vsock)
#   CFG-HOST-VSOCK   the vsock socket after flint exited: gone=1 when removed
#   CFG-HOST-FLINT   flint's exit status (also this script's)

config='' requests='' substs='' shas='' ftimeout=240 tools='' tun_ko='' taps='' iperf3=0 metrics=0 vprobe=''
while [ $# -gt 0 ]; do
	case $1 in
	--config) config=$2; shift ;;
	--api) requests=$2; shift ;;
	--subst) substs="$substs|@$2@|$3"; shift 2 ;;
	--sha) shas="$shas $2"; shift ;;
	--flint-timeout) ftimeout=$2; shift ;;
	--tap) taps="$taps $2=$3"; shift 2 ;;
	--iperf3) iperf3=1 ;;
	--metrics) metrics=1 ;;
	--tools) tools=$2; shift ;;
	--tun-ko) tun_ko=$2; shift ;;
	--vsock) vprobe=$2; shift ;;
	--) shift; break ;;
	*) echo "config-case.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
fail() {
	echo "CFG-HOST-SETUP result=fail reason=$*"
	exit 1
}
[ $# -gt 0 ] || fail "no flint command line after --"
[ -n "$config$requests" ] || fail "choose --config TEMPLATE or --api REQUESTS"
flint=$1
shift
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) substs="$substs|@KERNEL@|$2"; shift ;;
	--initrd) substs="$substs|@INITRD@|$2"; shift ;;
	--cmdline) substs="$substs|@CMDLINE@|$2"; shift ;;
	esac
	shift
done

if [ -n "$tools" ] && [ ! -e /run/flint-cfg-tools ]; then
	cp -a "$tools/." / || fail "copying $tools into /"
	: >/run/flint-cfg-tools
fi
PATH=/usr/local/bin:$PATH:/usr/sbin:/sbin
export PATH
if [ ! -c /dev/net/tun ] && [ -n "$tun_ko" ]; then
	insmod "$tun_ko" || fail "insmod $tun_ko"
fi

w=$(mktemp -d "${TMPDIR:-/tmp}/flint-cfg.XXXXXX") || fail "mktemp"
pids=''
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# The replacements as one sed script (values are paths and a kernel command line:
# no '|' or newline in them).
: >"$w/subst.sed"
[ "$metrics" = 1 ] && substs="$substs|@METRICS@|$w/metrics.json"
[ -n "$vprobe" ] && substs="$substs|@VSOCK@|$w/v.sock"
rest=${substs#|}
while [ -n "$rest" ]; do
	key=${rest%%|*}
	rest=${rest#*|}
	value=${rest%%|*}
	case $rest in *'|'*) rest=${rest#*|} ;; *) rest='' ;; esac
	printf 's|%s|%s|g\n' "$key" "$(printf '%s' "$value" | sed 's/[&\\]/\\&/g')" >>"$w/subst.sed"
done
file_of() { printf '@%s@\n' "$1" | sed -f "$w/subst.sed"; }
shas() { # WHEN
	for k in $shas; do
		f=$(file_of "$k")
		echo "CFG-HOST-SHA key=$k when=$1 sha256=$(sha256sum "$f" | cut -d' ' -f1)"
	done
}

shas before
if [ -n "$config" ]; then
	sed -f "$w/subst.sed" "$config" >"$w/vm.json" || fail "writing vm.json"
	sed 's/^/CFG-HOST-CONFIG /' "$w/vm.json"
	set -- run --config "$w/vm.json"
else
	command -v curl >/dev/null 2>&1 || fail "no curl (Debian package curl; --tools DIR from mknet-tools.sh curl)"
	sed -f "$w/subst.sed" "$requests" >"$w/requests" || fail "writing the requests"
	sock=$w/api.sock
	set -- run --api-sock "$sock" --timeout "${ftimeout}s"
fi
if [ "$iperf3" = 1 ]; then
	command -v iperf3 >/dev/null 2>&1 || fail "no iperf3 (Debian package iperf3; --tools DIR from mknet-tools.sh iperf3)"
	iperf3 -s -p 5201 >"$w/iperf3.log" 2>&1 </dev/null &
	pids="$pids $!"
fi
: >"$w/api.log"
# flint's output goes to ours and to $w/console (awaited by the requests).
mkfifo "$w/fifo" || fail "mkfifo"
tee "$w/console" <"$w/fifo" &
teepid=$!
"$flint" "$@" >"$w/fifo" 2>&1 </dev/null &
fpid=$!
pids="$pids $fpid"
(
	i=0
	while [ $i -lt $((ftimeout + 20)) ] && kill -0 $fpid 2>/dev/null; do
		sleep 1
		i=$((i + 1))
	done
	kill -9 $fpid 2>/dev/null && echo "CFG-HOST-KILLED flint still ran after $((ftimeout + 20))s" >>"$w/api.log"
) </dev/null &
pids="$pids $!"
# The TAPs: configured as soon as flint has created them.
(
	for t in $taps; do
		name=${t%%=*} i=0
		until ip link show "$name" >/dev/null 2>&1; do
			kill -0 $fpid 2>/dev/null || break
			[ $i -lt $((ftimeout * 10)) ] || break
			sleep 0.1
			i=$((i + 1))
		done
		if ip addr add "${t#*=}" dev "$name" && ip link set "$name" up; then
			echo "CFG-HOST-TAP result=ok name=$name addr=${t#*=}"
		else
			echo "CFG-HOST-TAP result=fail name=$name addr=${t#*=}"
		fi
	done >"$w/tap.log" 2>&1
) </dev/null &
tappid=$!
pids="$pids $tappid"
# The vsock probe's host side, once flint listens on the vsock socket.
if [ -n "$vprobe" ]; then
	(
		i=0
		until [ -S "$w/v.sock" ]; do
			kill -0 $fpid 2>/dev/null || exit 0
			[ $i -lt $((ftimeout * 10)) ] || exit 0
			sleep 0.1
			i=$((i + 1))
		done
		"$vprobe" host -uds "$w/v.sock" -timeout "$((ftimeout - 10))s"
	) >"$w/vsock.log" 2>&1 </dev/null &
	vpid=$!
	pids="$pids $vpid"
fi

if [ -n "$requests" ]; then
	# The API is up once the socket exists.
	i=0
	until [ -S "$sock" ]; do
		kill -0 $fpid 2>/dev/null || break
		[ $i -lt 300 ] || break
		sleep 0.1
		i=$((i + 1))
	done
	[ -S "$sock" ] || echo "CFG-API i=0 - - code=000 body=no-socket-$sock" >>"$w/api.log"
	n=0
	while read -r method path body; do
		[ -n "$method" ] || continue
		n=$((n + 1))
		if [ "$method" = await ]; then
			text="$path${body:+ $body}"
			i=0
			until grep -qF "$text" "$w/console"; do
				kill -0 $fpid 2>/dev/null || break
				[ $i -lt $((ftimeout * 10)) ] || break
				sleep 0.1
				i=$((i + 1))
			done
			if grep -qF "$text" "$w/console"; then r=ok; else r=timeout; fi
			echo "CFG-API i=$n await - code=$r body=$text" >>"$w/api.log"
			continue
		fi
		if [ -n "$body" ]; then
			code=$(curl -sS --max-time 30 --unix-socket "$sock" -X "$method" -H 'Content-Type: application/json' \
				-d "$body" -o "$w/resp" -w '%{http_code}' "http://localhost$path" 2>"$w/curl.err")
		else
			code=$(curl -sS --max-time 30 --unix-socket "$sock" -X "$method" \
				-o "$w/resp" -w '%{http_code}' "http://localhost$path" 2>"$w/curl.err")
		fi
		resp=$(tr '\n' ' ' <"$w/resp" 2>/dev/null)
		[ -s "$w/curl.err" ] && resp="$resp curl: $(tr '\n' ' ' <"$w/curl.err")"
		rm -f "$w/resp"
		echo "CFG-API i=$n $method $path code=$code body=$resp" >>"$w/api.log"
	done <"$w/requests"
fi

wait $fpid
frc=$?
wait $teepid
kill $tappid 2>/dev/null
wait $tappid 2>/dev/null
echo
if [ -n "$vprobe" ]; then
	# The guest ended, so its side of every connection did: the probe ends too.
	i=0
	while kill -0 "$vpid" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill "$vpid" 2>/dev/null
	if [ -e "$w/v.sock" ]; then gone=0; else gone=1; fi
	echo "CFG-HOST-VSOCK gone=$gone"
fi
cat "$w/api.log" "$w/tap.log"
[ -f "$w/vsock.log" ] && cat "$w/vsock.log"
[ -f "$w/iperf3.log" ] && sed 's/^/CFG-HOST-IPERF3 /' "$w/iperf3.log" | grep -E 'receiver|sender|error' | head -n 20
shas after
[ "$metrics" = 1 ] && sed 's/^/CFG-HOST-METRICS /' "$w/metrics.json" 2>/dev/null
echo "CFG-HOST-FLINT rc=$frc"
exit $frc
