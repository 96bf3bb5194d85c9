#!/usr/bin/env bash
# Copy this machine's network test tools, with the shared libraries they load, into a
# directory tree that can be merged into a busybox root (a guest initramfs via
# mkinitramfs-guest.sh --extra, or the nested host's root file system).
#
# Usage: scripts/mknet-tools.sh -o DIR [TOOL...]
#
#   -o DIR   output tree (created; existing files are replaced). The tools go to
#            DIR/usr/local/bin/ (busybox applets of the same name stay first on a
#            busybox PATH), the libraries to the absolute paths ldd reports (e.g.
#            DIR/lib/x86_64-linux-gnu/), the dynamic loader to its absolute path.
#   TOOL     program names or paths (default: iperf3 ping ip), resolved with PATH.
#            ping must be iputils' (for -M do), ip iproute2's (for ip netns).
#            qemu-system-x86_64 goes to DIR/usr/bin, where it finds the firmware
#            copied beside it (DIR/usr/share/{qemu,seabios}: SeaBIOS, qboot, the
#            -kernel option ROMs): QEMU as the nested host's guest VMM, to compare
#            with flint (scripts/qemu-l2.sh).
# Debian packages: iperf3 iputils-ping iproute2 (qemu-system-x86).
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit "${1:-0}"
}

out=''
tools=()
while (($#)); do
	case $1 in
	-o | --output)
		out=${2:?$1 needs a DIR}
		shift
		;;
	-h | --help) usage 0 ;;
	-*) flint_die "unknown argument '$1' (see --help)" ;;
	*) tools+=("$1") ;;
	esac
	shift
done
[[ -n $out ]] || flint_die "missing -o DIR"
((${#tools[@]})) || tools=(iperf3 ping ip)
flint_need_tools ldd
# PATH as root sees it: ip lives in /usr/sbin (/sbin) on Debian.
PATH=$PATH:/usr/sbin:/sbin

# Debian package of each default tool, for the error message.
pkg_of() {
	case $1 in
	iperf3) echo iperf3 ;;
	ping) echo iputils-ping ;;
	ip) echo iproute2 ;;
	qemu-system-x86_64) echo qemu-system-x86 ;;
	*) echo "$1" ;;
	esac
}

mkdir -p "$out/usr/local/bin"
copy_lib() {
	local src=$1 dst
	dst=$out$src
	[[ -e $dst ]] && return 0
	mkdir -p "$(dirname "$dst")"
	cp -L "$src" "$dst"
}
for tool in "${tools[@]}"; do
	path=$(command -v "$tool" 2>/dev/null || true)
	[[ -n $path && -f $path ]] ||
		flint_die "tool $tool not found (install with: apt-get install -y $(pkg_of "$tool"))"
	case $(basename "$tool") in
	ping) "$path" -V 2>&1 | grep -q iputils ||
		flint_die "$path is not iputils ping (install with: apt-get install -y iputils-ping)" ;;
	ip) "$path" -V 2>&1 | grep -q iproute2 ||
		flint_die "$path is not iproute2's ip (install with: apt-get install -y iproute2)" ;;
	esac
	bin=$out/usr/local/bin
	if [[ $(basename "$tool") == qemu-system-x86_64 ]]; then
		# QEMU looks for firmware relative to its binary (../share/qemu, ../share/seabios).
		bin=$out/usr/bin
		mkdir -p "$bin" "$out/usr/share/qemu" "$out/usr/share/seabios"
		for fw in qboot.rom bios-microvm.bin linuxboot_dma.bin kvmvapic.bin; do
			cp -L "/usr/share/qemu/$fw" "$out/usr/share/qemu/$fw"
		done
		cp -L /usr/share/seabios/bios-256k.bin "$out/usr/share/seabios/bios-256k.bin"
	fi
	cp -L "$path" "$bin/$(basename "$tool")"
	chmod 0755 "$bin/$(basename "$tool")"
	# ldd lines: "libx.so.1 => /lib/.../libx.so.1 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
	# "linux-vdso.so.1 (0x...)" (no file), "statically linked".
	libs=$(LC_ALL=C ldd "$path" 2>&1) || true
	if grep -q 'not found' <<<"$libs"; then
		flint_die "$path: a library is missing: $(grep 'not found' <<<"$libs" | tr -s ' \t' ' ')"
	fi
	while read -r lib; do
		[[ -n $lib ]] && copy_lib "$lib"
	done < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$libs")
done
flint_log "wrote $out: ${tools[*]} ($(du -sh "$out" | cut -f1) with libraries)"
