#!/bin/bash
#
# Builds QEMU with pcow support for memory-backend-file.
#
# Usage: qemu/build.sh [--qtest] [PCOW_PKG_CONFIG_PATH]
#        qemu/build.sh --each-patch [FIRST] [PCOW_PKG_CONFIG_PATH]
#
# --qtest also builds the series' qtest (tests/qtest/pcow-test) and runs it
# against the QEMU just built (after an up-to-date check too).
# --each-patch checks that every prefix of the series (from patch FIRST on)
# builds, passes checkpatch and the qtest once it is there: see
# qemu/series-check.sh.  It does not touch build/qemu.
#
# PCOW_QEMU_PATCHES, PCOW_QEMU_SRC and PCOW_QEMU_OUT put the series, the
# patched tree and the results somewhere other than qemu/patches,
# build/qemu-src and build/qemu.
#
# Fetches Debian trixie's QEMU source through a private apt configuration
# (the system's apt state is left alone), applies qemu/patches/*.patch,
# configures against libpcow (found through pkg-config) and builds
# qemu-system-x86_64 and qemu-img.  The result is build/qemu/.
#
# The directory holding pcow.pc (or pcow-uninstalled.pc) is taken from the
# first argument, else from $PCOW_PKG_CONFIG_PATH, else it is the
# uninstalled pkg-config directory of the project's own meson build,
# build/meson-uninstalled.
#
# Rerunning is cheap: nothing is done when the patches, pcow.h and this
# script are unchanged since the last successful build.

set -euo pipefail

QEMU_PKG_VERSION='1:10.0.13+ds-0+deb13u1'
MESON_PKG_VERSION='1.7.0-1~bpo12+1'
# The Debian release QEMU comes from, and where a recent meson comes from.
QEMU_SUITE='trixie'
MESON_SUITE='bookworm-backports'

BUILD_DEPS='build-essential dpkg-dev ninja-build pkg-config python3-venv
	libglib2.0-dev libpixman-1-dev libfdt-dev flex bison libslirp-dev
	zlib1g-dev seabios qemu-system-data ipxe-qemu'

PYTHON=/usr/bin/python3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
top="$root/build"
apt_dir="$top/qemu-apt"      # private apt configuration and state
dl_dir="$top/qemu-dl"        # downloaded source package and meson .deb
tools_dir="$top/qemu-tools"  # the private meson
# The series, the patched tree and the results can be put elsewhere
# (qemu/series-check.sh builds each prefix of the series in its own tree).
patch_dir=${PCOW_QEMU_PATCHES:-$here/patches}
src_dir=${PCOW_QEMU_SRC:-$top/qemu-src}  # the patched source tree
obj_dir="$src_dir/build"     # QEMU's build tree (inside the source)
out_dir=${PCOW_QEMU_OUT:-$top/qemu}      # the results
stamp="$out_dir/.stamp"

if [ "${1:-}" = --each-patch ]; then
	shift
	exec bash "$here/series-check.sh" "$@"
fi
run_qtest=
if [ "${1:-}" = --qtest ]; then
	run_qtest=1
	shift
fi
pc_path=${1:-${PCOW_PKG_CONFIG_PATH:-$top/meson-uninstalled}}
case $pc_path in
/*) ;;
*) pc_path="$PWD/$pc_path" ;;
esac

log() { printf 'qemu/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- up-to-date check -------------------------------------------------

compute_key() {
	{
		echo "qemu $QEMU_PKG_VERSION meson $MESON_PKG_VERSION"
		echo "pkg-config path $pc_path"
		sha256sum "$here/build.sh" "$root/scripts/debian-apt.sh" \
			"$root/scripts/patch-series.sh" "$root/include/pcow.h"
		for p in "$patch_dir"/*.patch; do
			[ -e "$p" ] || continue
			sha256sum "$p"
		done
	} | sha256sum | cut -d' ' -f1
}

# True when a libpcow file in the library directories pkg-config names is
# newer than the last build (a static libpcow needs a relink even when
# nothing else changed).
libpcow_newer() {
	local flags d f
	flags=$(PKG_CONFIG_PATH="$pc_path" pkg-config --libs-only-L pcow \
		2>/dev/null) || return 1
	for d in $flags; do
		d=${d#-L}
		for f in "$d"/libpcow.*; do
			[ -e "$f" ] || continue
			[ "$f" -nt "$stamp" ] && return 0
		done
	done
	return 1
}

# Builds and runs the pcow qtest in QEMU's build tree (the private meson
# must be found when ninja reconfigures).
qtest() {
	log "building and running tests/qtest/pcow-test"
	PYTHONPATH="$tools_dir/meson/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}" \
		ninja -C "$obj_dir" tests/qtest/pcow-test >/dev/null ||
		die "cannot build tests/qtest/pcow-test"
	(cd "$obj_dir" &&
	 QTEST_QEMU_BINARY=./qemu-system-x86_64 tests/qtest/pcow-test --tap -k) ||
		die "tests/qtest/pcow-test failed"
}

key=$(compute_key)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] &&
   [ -x "$out_dir/qemu-system-x86_64" ] && [ -x "$out_dir/qemu-img" ] &&
   ! libpcow_newer; then
	log "up to date ($out_dir/qemu-system-x86_64)"
	if [ -n "$run_qtest" ]; then
		qtest
	fi
	exit 0
fi

# ---- build dependencies and the private apt configuration ------------

SOURCE_SUITE=$QEMU_SUITE
EXTRA_SUITE=$MESON_SUITE
# shellcheck source=scripts/debian-apt.sh
. "$root/scripts/debian-apt.sh"

# shellcheck disable=SC2086
install_missing $BUILD_DEPS

# ---- meson >= 1.5 -----------------------------------------------------

meson_ok() {
	# True when $1 (a python path entry) provides meson >= 1.5.
	PYTHONPATH="$1" "$PYTHON" -c '
import sys
from mesonbuild import coredata
v = tuple(int(x) for x in coredata.version.split(".")[:2])
sys.exit(0 if v >= (1, 5) else 1)
' 2>/dev/null
}

meson_pypath="$tools_dir/meson/usr/lib/python3/dist-packages"
fetch_meson() {
	if meson_ok "$meson_pypath"; then
		return
	fi
	need_apt
	mkdir -p "$dl_dir"
	rm -f "$dl_dir"/meson_*.deb
	log "downloading meson $MESON_PKG_VERSION"
	(cd "$dl_dir" &&
	 with_fresh_lists private_apt -q download "meson=$MESON_PKG_VERSION")
	rm -rf "$tools_dir/meson"
	mkdir -p "$tools_dir/meson"
	dpkg -x "$dl_dir"/meson_*.deb "$tools_dir/meson"
	meson_ok "$meson_pypath" || die "the downloaded meson does not work"
}

# ---- QEMU source ------------------------------------------------------

fetch_source() {
	local dsc
	dsc=$(ls "$dl_dir"/qemu_*.dsc 2>/dev/null | head -n1 || true)
	if [ -n "$dsc" ] &&
	   grep -qxF "Version: $QEMU_PKG_VERSION" "$dsc"; then
		return
	fi
	need_apt
	mkdir -p "$dl_dir"
	rm -f "$dl_dir"/qemu_*
	log "downloading the source of qemu $QEMU_PKG_VERSION"
	(cd "$dl_dir" &&
	 with_fresh_lists private_apt -q source --download-only \
		"qemu=$QEMU_PKG_VERSION")
}

extract_source() {
	local tmp="$src_dir.new"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "unpacking the QEMU source"
	dpkg-source --no-check -x "$dl_dir"/qemu_*.dsc "$tmp/tree" >/dev/null
	rm -rf "$src_dir"
	mv "$tmp/tree" "$src_dir"
	rm -rf "$tmp" "$src_dir.times"
	mkdir -p "$src_dir/.pcow-patches"
}

times_file="$src_dir.times"
# shellcheck source=scripts/patch-series.sh
. "$root/scripts/patch-series.sh"

# ---- configure and build ----------------------------------------------

build_qemu() {
	local pypath jobs
	pypath="$meson_pypath${PYTHONPATH:+:$PYTHONPATH}"
	jobs=$(nproc 2>/dev/null || echo 2)

	PKG_CONFIG_PATH="$pc_path${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
	export PKG_CONFIG_PATH
	# QEMU's configure makes a venv with the system's site packages and
	# looks for meson in it: put the private meson in front.
	export PYTHONPATH="$pypath"

	pkg-config --exists pcow ||
		die "libpcow not found by pkg-config in $pc_path (build the project first, or pass the directory of pcow.pc)"

	# When the pkg-config file does not lead to pcow.h (an uninstalled
	# build may not list the header's directory), use the repository's.
	local extra_cflags=
	if ! printf '#include <pcow.h>\n' |
	     cc -E $(pkg-config --cflags pcow) -x c - >/dev/null 2>&1; then
		[ -f "$root/include/pcow.h" ] ||
			die "pcow.h not found through pkg-config"
		log "pkg-config's flags for pcow miss pcow.h; using $root/include"
		extra_cflags="-I$root/include"
	fi

	local conf_args=(
		--python="$PYTHON"
		--target-list=x86_64-softmmu
		--without-default-features
		--enable-kvm --enable-tcg --enable-tools
		--enable-pixman --enable-slirp --enable-fdt=system
		--disable-docs --disable-install-blobs
	)
	[ -z "$extra_cflags" ] || conf_args+=(--extra-cflags="$extra_cflags")
	# Demand libpcow once the series has the option (an early prefix of
	# the series may not).  A tree configured before the option came (the
	# series' first patch is not the option's) has a key of its own, so
	# that it is configured again with the option: with
	# --without-default-features an automatic feature is disabled, and
	# ninja's own reconfiguration would leave libpcow out.
	local pcow_arg=() no_option='without the pcow option'
	if grep -q "'pcow'" "$src_dir/meson_options.txt"; then
		pcow_arg=(--enable-pcow)
		no_option=
	fi

	# Configure again only when the configuration changes.
	local conf_key
	conf_key=$(printf '%s\n' "$PKG_CONFIG_PATH" "${conf_args[@]}" \
		${no_option:+"$no_option"} | sha256sum | cut -d' ' -f1)
	if [ ! -f "$obj_dir/build.ninja" ] ||
	   [ "$(cat "$obj_dir/.pcow-configured" 2>/dev/null)" != "$conf_key" ]; then
		log "configuring"
		rm -rf "$obj_dir"
		mkdir -p "$obj_dir"
		(cd "$obj_dir" && ../configure "${conf_args[@]}" "${pcow_arg[@]}")
		# Let the venv find the private meson without PYTHONPATH too, so
		# that a plain "ninja" in the build tree can reconfigure.
		local site
		for site in "$obj_dir"/pyvenv/lib/python3*/site-packages; do
			[ -d "$site" ] && echo "$meson_pypath" > "$site/pcow-meson.pth"
		done
		echo "$conf_key" > "$obj_dir/.pcow-configured"
	fi

	log "building"
	ninja -C "$obj_dir" -j "$jobs" qemu-system-x86_64 qemu-img

	mkdir -p "$out_dir"
	local f
	for f in qemu-system-x86_64 qemu-img; do
		ln -sfn "$(realpath --relative-to="$out_dir" "$obj_dir/$f")" \
			"$out_dir/$f"
	done
}

fetch_meson
fetch_source
apply_patches
build_qemu
echo "$key" > "$stamp"
log "done: $out_dir/qemu-system-x86_64"
if [ -n "$run_qtest" ]; then
	qtest
fi
