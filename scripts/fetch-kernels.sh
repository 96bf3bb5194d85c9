#!/usr/bin/env bash
# Fetch the stock Debian kernels Flint is tested with and unpack them into a cache.
#
# Usage: scripts/fetch-kernels.sh [CACHE]
#
# CACHE defaults to $FLINT_CACHE, else <repo>/.cache. For each flavour it resolves the
# versioned package behind the meta package (linux-image-cloud-amd64 ->
# linux-image-<abi>-cloud-amd64, linux-image-amd64 -> linux-image-<abi>-amd64),
# downloads it with `apt-get download`, unpacks it with `dpkg -x` (nothing is
# installed) and runs `depmod -b` so modules.dep exists. Layout:
#
#   CACHE/kernels/<flavour>/<package>_<version>/   the unpacked package
#   CACHE/kernels/<flavour>/vmlinuz                -> .../boot/vmlinuz-<kver>
#   CACHE/kernels/<flavour>/config                 -> .../boot/config-<kver>
#   CACHE/kernels/<flavour>/modules                -> .../lib/modules/<kver>
#   CACHE/kernels/<flavour>/kver                   file holding <kver>
#   CACHE/kernels/<flavour>/package                file holding "<package> <version>"
#
# Flavours are "cloud" and "amd64". A flavour already unpacked at the resolved version is
# skipped, so re-running is cheap. Prints one line per flavour:
#   <flavour> package=<pkg> version=<ver> kver=<kver> vmlinuz=<path> modules=<path>
set -euo pipefail

# shellcheck source=lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
fi
(($# <= 1)) || flint_die "usage: $0 [CACHE]"

flint_need_tools apt-get apt-cache dpkg depmod
cache=$(flint_cache_dir "${1:-}")

# Print the versioned package a meta package depends on, or nothing.
resolve_pkg() {
	LC_ALL=C apt-cache depends "$1" 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

candidate_version() {
	LC_ALL=C apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }'
}

updated=0
fetch_flavour() {
	local flavour=$1 meta=$2 pkg ver dir unpack kver tmp deb
	pkg=$(resolve_pkg "$meta")
	if [[ -z $pkg && $updated == 0 ]]; then
		flint_log "apt-cache knows no $meta; running apt-get update"
		apt-get update -qq >&2 || flint_die "apt-get update failed"
		updated=1
		pkg=$(resolve_pkg "$meta")
	fi
	[[ -n $pkg ]] || flint_die "cannot resolve the package behind $meta (apt-cache depends $meta)"
	ver=$(candidate_version "$pkg")
	[[ -n $ver && $ver != "(none)" ]] || flint_die "no installable version of $pkg"

	dir=$cache/kernels/$flavour
	unpack=${pkg}_$ver
	mkdir -p "$dir"
	if [[ ! -f $dir/$unpack/.complete ]]; then
		flint_log "fetching $pkg $ver"
		tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
		# shellcheck disable=SC2064 # expand now: tmp is local
		trap "rm -rf '$tmp'" EXIT
		# apt-get download writes into the current directory; as root it downloads as the
		# _apt user, which needs to own the directory (else apt warns and runs unsandboxed).
		if [[ $(id -u) == 0 ]] && id _apt >/dev/null 2>&1; then
			chown _apt "$tmp"
		fi
		if ! (cd "$tmp" && apt-get download -q "$pkg=$ver" >&2); then
			rm -rf "$tmp"
			trap - EXIT
			if [[ $updated == 0 ]]; then
				# Stale package lists name versions the mirror no longer has.
				flint_log "download failed; running apt-get update and retrying"
				apt-get update -qq >&2 || flint_die "apt-get update failed"
				updated=1
				fetch_flavour "$flavour" "$meta"
				return
			fi
			flint_die "apt-get download $pkg=$ver failed"
		fi
		deb=$(find "$tmp" -maxdepth 1 -name '*.deb' -print -quit)
		[[ -n $deb ]] || flint_die "apt-get download left no .deb for $pkg"
		dpkg -x "$deb" "$tmp/root" || flint_die "dpkg -x $deb failed"
		kver=$(find "$tmp/root/lib/modules" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | head -n1)
		[[ -n $kver && -f $tmp/root/boot/vmlinuz-$kver ]] ||
			flint_die "$deb has no boot/vmlinuz-<kver> with a matching lib/modules/<kver>"
		depmod -b "$tmp/root" "$kver" || flint_die "depmod -b failed for $kver"
		printf '%s\n' "$kver" >"$tmp/root/.kver"
		touch "$tmp/root/.complete"
		rm -rf "${dir:?}/$unpack"
		mv "$tmp/root" "$dir/$unpack"
		rm -rf "$tmp"
		trap - EXIT
	fi
	kver=$(cat "$dir/$unpack/.kver")

	# Stable names; ln -sfn + mv -T replaces each link atomically.
	local name target
	for name in vmlinuz config System.map modules; do
		case $name in
		modules) target=$unpack/lib/modules/$kver ;;
		*) target=$unpack/boot/$name-$kver ;;
		esac
		[[ -e $dir/$target ]] || continue
		ln -sfn "$target" "$dir/.$name.new"
		mv -Tf "$dir/.$name.new" "$dir/$name"
	done
	printf '%s\n' "$kver" >"$dir/kver"
	printf '%s %s\n' "$pkg" "$ver" >"$dir/package"

	# Drop older unpacked versions of this flavour.
	local old
	for old in "$dir"/linux-image-*; do
		[[ -d $old && ${old##*/} != "$unpack" ]] && rm -rf "$old"
	done

	printf '%s package=%s version=%s kver=%s vmlinuz=%s modules=%s\n' \
		"$flavour" "$pkg" "$ver" "$kver" "$dir/vmlinuz" "$dir/modules"
}

fetch_flavour cloud linux-image-cloud-amd64
fetch_flavour amd64 linux-image-amd64
