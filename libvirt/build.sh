#!/bin/bash
#
# Builds libvirt's QEMU driver, virtqemud and virsh with the project's
# patches (pcow memory devices).
#
# Usage: libvirt/build.sh
#
# Fetches Debian trixie's libvirt source through the private apt
# configuration qemu/build.sh uses (scripts/debian-apt.sh; the system's apt
# state is left alone), applies Debian's own patches and then
# libvirt/patches/*.patch, configures with meson for the QEMU driver only
# and builds into build/libvirt-src/build; build/libvirt/ gets links to
# virtqemud and virsh.  Nothing is installed: the build's paths for
# configuration, state and sockets are under build/libvirt/state (the
# tests mount private directories there), so a libvirt on the host is
# neither used nor changed.
#
# Rerunning is cheap: nothing is done when the patches and this script are
# unchanged since the last successful build, and a changed patch rebuilds
# only what it touches.

set -euo pipefail

LIBVIRT_PKG_VERSION='11.3.0-3+deb13u3'
LIBVIRT_UPSTREAM='11.3.0'
SOURCE_SUITE='trixie'
EXTRA_SUITE='bookworm-backports'

BUILD_DEPS='build-essential ninja-build meson pkg-config perl python3
	xsltproc libxml2-utils libglib2.0-dev libgnutls28-dev libxml2-dev
	libjson-c-dev libtirpc-dev libnl-3-dev libnl-route-3-dev xz-utils'

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
top="$root/build"
apt_dir="$top/qemu-apt"        # shared with qemu/build.sh
dl_dir="$top/libvirt-dl"       # the source package's files
src_dir="$top/libvirt-src"     # the patched source tree
obj_dir="$src_dir/build"       # libvirt's build tree
out_dir="$top/libvirt"         # links to the results
state_dir="$out_dir/state"     # the build's sysconfdir, localstatedir, runstatedir
stamp="$out_dir/.stamp"

log() { printf 'libvirt/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=scripts/debian-apt.sh
. "$root/scripts/debian-apt.sh"

compute_key() {
	{
		echo "libvirt $LIBVIRT_PKG_VERSION"
		sha256sum "$here/build.sh" "$root/scripts/debian-apt.sh" \
			"$root/scripts/patch-series.sh"
		for p in "$here"/patches/*.patch; do
			[ -e "$p" ] || continue
			sha256sum "$p"
		done
	} | sha256sum | cut -d' ' -f1
}

key=$(compute_key)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] &&
   [ -x "$out_dir/virtqemud" ] && [ -x "$out_dir/virsh" ]; then
	log "up to date ($out_dir/virtqemud)"
	exit 0
fi

# shellcheck disable=SC2086
install_missing $BUILD_DEPS

# ---- the source package ----------------------------------------------

orig="libvirt_$LIBVIRT_UPSTREAM.orig.tar.xz"
debian="libvirt_$LIBVIRT_PKG_VERSION.debian.tar.xz"

# The SHA-256 the signed Sources index gives for FILE of the package.
index_sha256() {
	private_apt_cache showsrc libvirt 2>/dev/null |
		awk -v f="$1" -v v="$LIBVIRT_PKG_VERSION" '
			/^$/ { ver = ""; on = 0 }
			/^Version:/ { ver = $2 }
			/^Checksums-Sha256:/ { on = 1; next }
			/^[^ ]/ { on = 0 }
			on && ver == v && $3 == f { print $1 }'
}

have_source() {
	[ -f "$dl_dir/.verified" ] &&
		grep -qxF "$LIBVIRT_PKG_VERSION" "$dl_dir/.verified"
}

# Downloads the two tarballs and checks them against the index.  apt-get
# source also wants the .dsc, which some mirrors no longer carry for a
# superseded stable update; the tarballs are all the build needs, so a
# failure is accepted when they came and their checksums match.
fetch_source() {
	have_source && return
	need_apt
	mkdir -p "$dl_dir"
	rm -f "$dl_dir"/libvirt_* "$dl_dir/.verified"
	log "downloading the source of libvirt $LIBVIRT_PKG_VERSION"
	(cd "$dl_dir" &&
	 private_apt -q source --download-only \
		"libvirt=$LIBVIRT_PKG_VERSION") ||
		log "apt-get source failed; checking the tarballs it got"
	local f want
	for f in "$orig" "$debian"; do
		want=$(index_sha256 "$f")
		[ -n "$want" ] || die "$f: not in the package index"
		[ -f "$dl_dir/$f" ] || die "$f: not downloaded"
		[ "$(sha256sum < "$dl_dir/$f" | cut -d' ' -f1)" = "$want" ] ||
			die "$f: checksum mismatch"
	done
	echo "$LIBVIRT_PKG_VERSION" > "$dl_dir/.verified"
}

# A fresh tree: upstream source plus Debian's patches (what dpkg-source
# would unpack).
extract_source() {
	local tmp="$top/libvirt-src.new" p
	rm -rf "$tmp"
	mkdir -p "$tmp"
	log "unpacking the libvirt source"
	tar -C "$tmp" -xf "$dl_dir/$orig"
	tar -C "$tmp/libvirt-$LIBVIRT_UPSTREAM" -xf "$dl_dir/$debian"
	while read -r p; do
		case $p in ''|'#'*) continue ;; esac
		patch -d "$tmp/libvirt-$LIBVIRT_UPSTREAM" -p1 -s \
			--no-backup-if-mismatch \
			< "$tmp/libvirt-$LIBVIRT_UPSTREAM/debian/patches/$p" ||
			die "Debian's $p does not apply"
	done < "$tmp/libvirt-$LIBVIRT_UPSTREAM/debian/patches/series"
	rm -rf "$src_dir"
	mv "$tmp/libvirt-$LIBVIRT_UPSTREAM" "$src_dir"
	rm -rf "$tmp"
	mkdir -p "$src_dir/.pcow-patches"
}

times_file="$top/libvirt-src.times"
# shellcheck source=scripts/patch-series.sh
. "$root/scripts/patch-series.sh"

# ---- configure and build ----------------------------------------------

# The build's paths are all under build/libvirt/state; runstatedir is
# localstatedir/run, where virsh's remote driver looks for the daemon's
# socket.  Everything optional is off; on are the QEMU driver, the remote driver
# (virsh talks to virtqemud through it), JSON (QEMU's monitor) and the
# test programs (qemuxmlconftest; only those asked for get built).
conf_args=(
	--prefix="$state_dir/usr"
	--sysconfdir="$state_dir/etc"
	--localstatedir="$state_dir/var"
	-Drunstatedir="$state_dir/var/run"
	-Dauto_features=disabled
	-Ddriver_qemu=enabled -Ddriver_remote=enabled
	-Ddriver_libvirtd=enabled -Djson_c=enabled -Dlibnl=enabled
	-Dqemu_user=root -Dqemu_group=root
	-Dtests=enabled -Ddocs=disabled -Dexpensive_tests=disabled
	-Dinit_script=none -Dno_git=true -Dgit_werror=disabled
	--buildtype=debugoptimized
)

# What `make libvirt` needs: the daemon, its QEMU driver module and virsh.
TARGETS='src/virtqemud src/libvirt_driver_qemu.so tools/virsh'

build_libvirt() {
	local conf_key jobs
	jobs=$(nproc 2>/dev/null || echo 2)
	conf_key=$(printf '%s\n' "${conf_args[@]}" | sha256sum | cut -d' ' -f1)
	if [ ! -f "$obj_dir/build.ninja" ] ||
	   [ "$(cat "$obj_dir/.pcow-configured" 2>/dev/null)" != "$conf_key" ]; then
		log "configuring"
		rm -rf "$obj_dir"
		meson setup "$obj_dir" "$src_dir" "${conf_args[@]}"
		echo "$conf_key" > "$obj_dir/.pcow-configured"
	fi
	log "building"
	# shellcheck disable=SC2086
	ninja -C "$obj_dir" -j "$jobs" $TARGETS
	mkdir -p "$out_dir"
	ln -sfn ../libvirt-src/build/src/virtqemud "$out_dir/virtqemud"
	ln -sfn ../libvirt-src/build/tools/virsh "$out_dir/virsh"
}

fetch_source
apply_patches
build_libvirt
echo "$key" > "$stamp"
log "done: $out_dir/virtqemud"
