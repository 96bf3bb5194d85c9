# shellcheck shell=bash
# Helpers shared by the Flint scripts. Source this file; it defines functions only.
#
#   flint_die MSG...            print "SCRIPT: error: MSG" to stderr and exit 1
#   flint_log MSG...            print "SCRIPT: MSG" to stderr
#   flint_need_tools T...       fail with an install hint unless every tool T is on PATH
#   flint_repo_root             absolute path of the repository root
#   flint_cache_dir [DIR]       DIR, else $FLINT_CACHE, else <repo>/.cache (created, absolute)
#   flint_busybox               path of a statically linked busybox (fails if none)
#   flint_rootfs_skeleton DIR   busybox + applet symlinks + standard dirs in DIR
#   flint_resolve_modules MODDIR NAME...   print .ko paths (relative to MODDIR) of NAMEs
#                               and their dependencies, dependencies first, each once
#   flint_install_modules MODDIR ROOT LIST NAME...  copy those .ko files into
#                               ROOT/lib/modules/<kver>/ (decompressed) and append their
#                               in-image paths, in load order, to the file ROOT/LIST
#   flint_pack_cpio DIR OUT [gzip|none]   newc cpio of DIR (owned by root) to OUT, atomically
#   flint_nested_reason         why stock kernels cannot boot on /dev/kvm here (internal/bootpath)

_flint_prog=$(basename "${0:-flint}")

flint_die() {
	printf '%s: error: %s\n' "$_flint_prog" "$*" >&2
	exit 1
}

flint_log() {
	printf '%s: %s\n' "$_flint_prog" "$*" >&2
}

# Debian package that provides each tool the scripts use (for the error message).
_flint_pkg_of() {
	case "$1" in
	busybox) echo busybox-static ;;
	cpio) echo cpio ;;
	depmod | modinfo) echo kmod ;;
	qemu-system-x86_64) echo qemu-system-x86 ;;
	apt-get | apt-cache) echo apt ;;
	dpkg | dpkg-deb) echo dpkg ;;
	gzip) echo gzip ;;
	xz) echo xz-utils ;;
	zstd) echo zstd ;;
	go) echo golang ;;
	timeout | mktemp | sort | tee) echo coreutils ;;
	*) echo "$1" ;;
	esac
}

flint_need_tools() {
	local t missing=() pkgs=()
	for t in "$@"; do
		if ! command -v "$t" >/dev/null 2>&1; then
			missing+=("$t")
			pkgs+=("$(_flint_pkg_of "$t")")
		fi
	done
	if ((${#missing[@]})); then
		flint_die "missing tool(s): ${missing[*]} (install with: apt-get install -y ${pkgs[*]})"
	fi
}

flint_repo_root() {
	local here
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	printf '%s\n' "$here"
}

flint_cache_dir() {
	local dir=${1:-${FLINT_CACHE:-}}
	if [[ -z $dir ]]; then
		dir=$(flint_repo_root)/.cache
	fi
	mkdir -p "$dir" || flint_die "cannot create cache directory $dir"
	(cd "$dir" && pwd)
}

flint_busybox() {
	local bb
	# Prefer the busybox-static path; a dynamic busybox cannot run in an initramfs.
	for bb in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null || true)"; do
		[[ -n $bb && -x $bb ]] || continue
		# ldd exits non-zero for a static binary; only its message matters.
		if [[ $(LC_ALL=C ldd "$bb" 2>&1 || true) == *'not a dynamic executable'* ]]; then
			printf '%s\n' "$bb"
			return 0
		fi
	done
	flint_die "no statically linked busybox found (install with: apt-get install -y busybox-static)"
}

flint_rootfs_skeleton() {
	local root=$1 bb applet
	bb=$(flint_busybox)
	mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,root,etc,lib/modules,usr/bin,usr/sbin}
	chmod 1777 "$root/tmp"
	cp "$bb" "$root/bin/busybox"
	chmod 0755 "$root/bin/busybox"
	for applet in $("$root/bin/busybox" --list); do
		[[ $applet == busybox ]] && continue
		ln -sf busybox "$root/bin/$applet"
	done
	# /dev/console must exist before init runs or init starts without stdio. Creating
	# the node needs root; without it the init scripts re-open the console after
	# mounting devtmpfs, so a non-root build still works.
	if [[ $(id -u) == 0 ]]; then
		mknod -m 600 "$root/dev/console" c 5 1 2>/dev/null || true
		mknod -m 666 "$root/dev/null" c 1 3 2>/dev/null || true
	fi
	printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
	printf 'root:x:0:\n' >"$root/etc/group"
}

# Normalise a module name the way the kernel does (dashes and underscores are equal).
_flint_modname() {
	local n=${1##*/}
	n=${n%%.ko*}
	printf '%s\n' "${n//-/_}"
}

flint_resolve_modules() {
	local moddir=$1
	shift
	[[ -f $moddir/modules.dep ]] ||
		flint_die "$moddir/modules.dep not found (run: depmod -b <root> <kver>; fetch-kernels.sh does this)"
	# Index modules.dep: name -> "path: deps..." line.
	local -A dep_line=()
	local line name
	while IFS= read -r line; do
		# Same normalisation as _flint_modname, inline: this loop sees ~4000 lines.
		name=${line%%:*}
		name=${name##*/}
		name=${name%%.ko*}
		dep_line[${name//-/_}]=$line
	done <"$moddir/modules.dep"

	local -A done_=() visiting=()
	local order=()
	_flint_visit() {
		local n
		n=$(_flint_modname "$1")
		[[ -n ${done_[$n]:-} ]] && return 0
		[[ -n ${visiting[$n]:-} ]] && flint_die "module dependency cycle at $n"
		local l=${dep_line[$n]:-}
		[[ -n $l ]] || flint_die "module '$1' not found in $moddir/modules.dep"
		visiting[$n]=1
		local deps d
		deps=${l#*:}
		for d in $deps; do
			_flint_visit "$d"
		done
		unset "visiting[$n]"
		done_[$n]=1
		order+=("${l%%:*}")
	}
	for name in "$@"; do
		_flint_visit "$name"
	done
	unset -f _flint_visit
	((${#order[@]})) && printf '%s\n' "${order[@]}"
	return 0
}

flint_install_modules() {
	local moddir=$1 root=$2 list=$3
	shift 3
	local kver rel dst paths
	kver=$(basename "$(cd "$moddir" && pwd -P)")
	paths=$(flint_resolve_modules "$moddir" "$@") || exit 1
	while IFS= read -r rel; do
		[[ -n $rel ]] || continue
		[[ -f $moddir/$rel ]] || flint_die "module file $moddir/$rel is missing"
		dst=$root/lib/modules/$kver/${rel%.ko*}.ko
		mkdir -p "$(dirname "$dst")"
		case $rel in
		*.ko) cp "$moddir/$rel" "$dst" ;;
		*.ko.xz) flint_need_tools xz && xz -dc "$moddir/$rel" >"$dst" ;;
		*.ko.zst) flint_need_tools zstd && zstd -qdc "$moddir/$rel" >"$dst" ;;
		*.ko.gz) gzip -dc "$moddir/$rel" >"$dst" ;;
		*) flint_die "unsupported module file $rel" ;;
		esac
		printf '/lib/modules/%s/%s\n' "$kver" "${rel%.ko*}.ko" >>"$root/$list"
	done <<<"$paths"
}

flint_pack_cpio() {
	local dir=$1 out=$2 comp=${3:-gzip} tmp
	flint_need_tools cpio
	mkdir -p "$(dirname "$out")"
	tmp=$(mktemp "$out.tmp.XXXXXX")
	# Sorted names and root ownership keep the image independent of the build user.
	if ! (
		cd "$dir"
		set -o pipefail
		if [[ $comp == gzip ]]; then
			find . -mindepth 1 -print | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | gzip -n -6
		else
			find . -mindepth 1 -print | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0
		fi
	) >"$tmp"; then
		rm -f "$tmp"
		flint_die "packing $dir into $out failed"
	fi
	chmod 0644 "$tmp"
	mv -f "$tmp" "$out"
}

# flint_nested_reason: print why stock kernels cannot boot on this machine's /dev/kvm
# (empty output and status 0 when they can). The rule is decided once, in Go
# (internal/bootpath, which asks internal/testenv.CanBootStockKernels, as the tests do);
# this only runs it. Needs go (flint_need_tools go).
flint_nested_reason() {
	local root bin rc=0
	root=$(flint_repo_root)
	bin=$(mktemp "${TMPDIR:-/tmp}/flint-bootpath.XXXXXX")
	if ! (cd "$root" && CGO_ENABLED=0 go build -o "$bin" ./internal/bootpath); then
		rm -f "$bin"
		echo "building internal/bootpath failed"
		return 1
	fi
	"$bin" || rc=$?
	rm -f "$bin"
	return "$rc"
}

# flint_net_case_cleanup FRONTEND_PGID BACKEND_PID NS TAP NS_MADE WORKDIR [PID...]: a network
# case's EXIT trap (uml-net-case.sh, qemu-vu-case.sh): SIGKILL the frontend's process group
# (UML or QEMU), stop the other PIDs and the backend (and wait for it: its log is complete
# then), kill what still runs in the case's namespace NS, delete TAP and NS if the case made
# the namespace (NS_MADE 1), and remove WORKDIR. Empty arguments are skipped; errors ignored.
flint_net_case_cleanup() {
	local fpg=$1 be=$2 ns=$3 tap=$4 made=$5 w=$6 p
	shift 6
	exec 2>/dev/null # bash would report every job killed below
	[[ -z $fpg ]] || kill -KILL -- "-$fpg" 2>/dev/null || true
	for p in "$@" $be; do kill "$p" 2>/dev/null || true; done
	[[ -z $be ]] || wait "$be" 2>/dev/null || true
	if ((made)); then
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
		ip -n "$ns" link del "$tap" 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
	fi
	[[ -z $w ]] || rm -rf "$w"
}
