#!/bin/bash
#
# Builds QEMU with pcow support for memory-backend-file.
#
# Usage: qemu/build.sh [--qtest] [PCOW_PKG_CONFIG_PATH]
#
# --qtest also builds the series' qtest (tests/qtest/pcow-test) and runs it
# against the QEMU just built (after an up-to-date check too).
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

SYSTEM_SOURCES=/etc/apt/sources.list.d/debian.sources
PYTHON=/usr/bin/python3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
top="$root/build"
apt_dir="$top/qemu-apt"      # private apt configuration and state
dl_dir="$top/qemu-dl"        # downloaded source package and meson .deb
tools_dir="$top/qemu-tools"  # the private meson
src_dir="$top/qemu-src"      # the patched source tree
obj_dir="$src_dir/build"     # QEMU's build tree (inside the source)
out_dir="$top/qemu"          # the results
stamp="$out_dir/.stamp"

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
		sha256sum "$here/build.sh" "$root/include/pcow.h"
		for p in "$here"/patches/*.patch; do
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

# ---- build dependencies -----------------------------------------------

missing=
for p in $BUILD_DEPS; do
	if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
	     grep -q '^install ok installed$'; then
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	log "installing missing build dependencies:$missing"
	[ "$(id -u)" = 0 ] || die "not root; install these first:$missing"
	# shellcheck disable=SC2086
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y \
		--no-install-recommends $missing; then
		apt-get update
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get install -y \
			--no-install-recommends $missing
	fi
fi

# ---- private apt configuration ----------------------------------------

# Rewrites the system's deb822 sources: every stanza also gets deb-src,
# and each suite of the system's release is replaced by the same suite of
# $QEMU_SUITE (bookworm -> trixie, bookworm-security -> trixie-security...);
# the stanza carrying the release itself also gets $MESON_SUITE.
make_sources() {
	local release
	[ -r "$SYSTEM_SOURCES" ] || die "cannot read $SYSTEM_SOURCES"
	release=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$release" ] || die "cannot tell the system's Debian release"
	awk -v rel="$release" -v qsuite="$QEMU_SUITE" -v msuite="$MESON_SUITE" '
	/^[Tt]ypes:/ { print "Types: deb deb-src"; next }
	/^[Ss]uites:/ {
		out = ""
		for (i = 2; i <= NF; i++) {
			s = $i
			if (s == rel) {
				out = out " " qsuite " " msuite
			} else if (index(s, rel "-") == 1 && s != msuite) {
				out = out " " qsuite substr(s, length(rel) + 1)
			} else {
				out = out " " s
			}
		}
		print "Suites:" out
		next
	}
	{ print }
	' "$SYSTEM_SOURCES"
}

apt_opts=(
	-o "Dir::Etc::SourceList=$apt_dir/sources.sources"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$apt_dir/lists"
	-o "Dir::Cache=$apt_dir/cache"
	-o "APT::Sandbox::User=root"
)

private_apt() {
	apt-get "${apt_opts[@]}" "$@"
}

setup_apt() {
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
	make_sources > "$apt_dir/sources.sources.new"
	if ! cmp -s "$apt_dir/sources.sources.new" \
		"$apt_dir/sources.sources" 2>/dev/null ||
	   [ ! -f "$apt_dir/updated" ]; then
		mv "$apt_dir/sources.sources.new" "$apt_dir/sources.sources"
		rm -f "$apt_dir/updated"
		log "updating the private package lists"
		private_apt -q update
		touch "$apt_dir/updated"
	else
		rm -f "$apt_dir/sources.sources.new"
	fi
}

# Runs "$@" with the private apt; when it fails, refreshes the private
# lists once and retries (a stale list may name files the archive dropped).
with_fresh_lists() {
	if ! "$@"; then
		log "retrying after refreshing the private package lists"
		private_apt -q update
		"$@"
	fi
}

apt_ready=
need_apt() {
	if [ -z "$apt_ready" ]; then
		setup_apt
		apt_ready=1
	fi
}

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
	local tmp="$top/qemu-src.new"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "unpacking the QEMU source"
	dpkg-source --no-check -x "$dl_dir"/qemu_*.dsc "$tmp/tree" >/dev/null
	rm -rf "$src_dir"
	mv "$tmp/tree" "$src_dir"
	rm -rf "$tmp" "$top/qemu-src.times"
	mkdir -p "$src_dir/.pcow-patches"
}

# Reverts the series applied earlier (saved in .pcow-patches) and applies
# the current one.  Only the files the patches touch change, so a rebuild
# stays incremental.  Falls back to a fresh source tree when reverting
# fails.
apply_patches() {
	local applied="$src_dir/.pcow-patches" p list
	if [ ! -d "$applied" ]; then
		extract_source
	fi
	# Nothing to do when the applied series is the current one.
	if diff -rq "$applied" "$here/patches" >/dev/null 2>&1; then
		return
	fi
	list=$(ls "$applied"/*.patch 2>/dev/null | sort -r || true)
	# Reverting and reapplying rewrites every file of the series; a file
	# whose content comes out the same gets its old time back, so that
	# ninja does not rebuild everything that includes it.
	local times="$top/qemu-src.times"
	(cd "$src_dir" && touched_files "$applied" |
		while read -r f; do
			[ -f "$f" ] && printf '%s %s %s\n' \
				"$(stat -c %.9Y "$f")" \
				"$(sha256sum < "$f" | cut -d' ' -f1)" "$f"
		done) > "$times" || true
	for p in $list; do
		log "reverting $(basename "$p")"
		if ! patch -d "$src_dir" -p1 -R -s -f --no-backup-if-mismatch \
			< "$p"; then
			log "reverting failed; starting from a fresh source tree"
			extract_source
			break
		fi
		rm -f "$p"
	done
	rm -rf "$applied"
	mkdir -p "$applied.new"
	for p in "$here"/patches/*.patch; do
		[ -e "$p" ] || continue
		log "applying $(basename "$p")"
		patch -d "$src_dir" -p1 -N -s --no-backup-if-mismatch < "$p" ||
			die "$(basename "$p") does not apply"
		cp "$p" "$applied.new/"
	done
	mv "$applied.new" "$applied"
	restore_times "$times"
}

# The files a directory of patches changes (paths relative to the tree).
touched_files() {
	cat "$1"/*.patch 2>/dev/null |
		sed -n 's|^+++ [^/]*/\([^\t ]*\).*|\1|p' | sort -u
}

# Gives each file listed with its old time and checksum its old time back
# when its content is unchanged.
restore_times() {
	local t sum f
	[ -f "$1" ] || return 0
	while read -r t sum f; do
		[ -f "$src_dir/$f" ] || continue
		[ "$(sha256sum < "$src_dir/$f" | cut -d' ' -f1)" = "$sum" ] ||
			continue
		touch -d "@$t" "$src_dir/$f"
	done < "$1"
	rm -f "$1"
}

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
		--enable-pcow
	)
	[ -z "$extra_cflags" ] || conf_args+=(--extra-cflags="$extra_cflags")

	# Configure again only when the configuration changes.
	local conf_key
	conf_key=$(printf '%s\n' "$PKG_CONFIG_PATH" "${conf_args[@]}" |
		sha256sum | cut -d' ' -f1)
	if [ ! -f "$obj_dir/build.ninja" ] ||
	   [ "$(cat "$obj_dir/.pcow-configured" 2>/dev/null)" != "$conf_key" ]; then
		log "configuring"
		rm -rf "$obj_dir"
		mkdir -p "$obj_dir"
		(cd "$obj_dir" && ../configure "${conf_args[@]}")
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
		ln -sfn "../qemu-src/build/$f" "$out_dir/$f"
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
