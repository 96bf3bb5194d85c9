#!/usr/bin/env bash
# Set up this machine for `make test` and `make run` (`make setup` runs it; both
# depend on it, and .ci/run calls it): the Debian packages the suite needs, the
# stock kernels, the Go modules. Each step runs only when something is missing,
# quietly, with one line saying what it installs; when nothing is missing it
# prints nothing and takes well under a second.
#
# Usage: scripts/setup.sh [--check]
#
#   --check   install nothing: list what is missing and exit 1 if anything is
#
# Debian packages (the one list; .ci/run and the README point here): see
# `packages` below. Without root and with packages missing it stops with one line
# naming the command to run. Kernels: scripts/fetch-kernels.sh into $FLINT_CACHE
# (default <repo>/.cache) with `apt-get download` (nothing goes into /boot). Go
# modules: `go mod download`.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
. "$here/lib/common.sh"

# What each is for: qemu-system-x86 (the nested test host), busybox-static cpio kmod
# (initramfs images, module dependencies), iproute2 (TAPs and network namespaces),
# acpica-tools (iasl checks the ACPI tables), user-mode-linux (vhost-user tests with
# Linux's virtio_net), iperf3 iputils-ping curl (network and API tests), ethtool
# (the multiqueue network case's guest: ethtool -L, -S), time (GNU time: peak RSS in
# BenchmarkStartup), e2fsprogs (mkfs.ext4 for the disk tests).
packages=(qemu-system-x86 busybox-static cpio kmod iproute2 acpica-tools user-mode-linux
	iperf3 ethtool time iputils-ping curl e2fsprogs)

check=0
case ${1:-} in
'') ;;
--check) check=1 ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*) flint_die "unknown argument '$1' (see --help)" ;;
esac

root=$(flint_repo_root)
export PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
export DEBIAN_FRONTEND=noninteractive
command -v go >/dev/null 2>&1 || flint_die "no go command (install Go 1.26 or newer, e.g. into /usr/local/go)"
command -v dpkg-query >/dev/null 2>&1 || flint_die "no dpkg-query: this set-up is for Debian (12)"

# run_quiet LOG CMD...: run CMD with its output in LOG; on failure show LOG and stop.
run_quiet() {
	local log=$1
	shift
	if ! "$@" >"$log" 2>&1; then
		cat "$log" >&2
		flint_die "failed: $*"
	fi
}

log=$(mktemp "${TMPDIR:-/tmp}/flint-setup.XXXXXX")
trap 'rm -f "$log"' EXIT

# --- Debian packages --------------------------------------------------------------
missing=()
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${packages[@]}" 2>/dev/null || true)
for p in "${packages[@]}"; do
	grep -qx "$p installed" <<<"$installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
	if ((check)); then
		flint_log "missing Debian packages: ${missing[*]} (install: $cmd, or: make setup as root)"
		exit 1
	fi
	if [[ $(id -u) != 0 ]]; then
		flint_die "missing Debian packages: ${missing[*]}; run as root: $cmd (or: sudo make setup)"
	fi
	flint_log "installing Debian packages: ${missing[*]}"
	run_quiet "$log" apt-get update -q
	run_quiet "$log" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- stock kernels ----------------------------------------------------------------
cache=$(flint_cache_dir)
need_kernels=0
for flavour in cloud amd64; do
	[[ -e $cache/kernels/$flavour/vmlinuz && -e $cache/kernels/$flavour/modules/modules.dep ]] || need_kernels=1
done
if ((need_kernels)); then
	if ((check)); then
		flint_log "missing stock kernels in $cache/kernels (make setup fetches them)"
		exit 1
	fi
	flint_log "fetching the stock Debian kernels (linux-image-cloud-amd64, linux-image-amd64) into $cache/kernels with apt-get download"
	run_quiet "$log" bash "$here/fetch-kernels.sh" "$cache"
fi

# --- Go modules -------------------------------------------------------------------
# With GOPROXY=off, `go mod download` succeeds only when the module cache has everything.
if ! (cd "$root" && GOPROXY=off go mod download >/dev/null 2>&1); then
	if ((check)); then
		flint_log "Go modules not in the module cache (make setup runs go mod download)"
		exit 1
	fi
	flint_log "downloading the Go modules (go mod download)"
	(cd "$root" && run_quiet "$log" go mod download)
fi
