#!/usr/bin/env bash
# Build the pcow test guest: a Debian 6.1 kernel and a small busybox
# initramfs with the NVDIMM, virtio-pmem and ext4 modules and the real
# mke2fs/e2fsck.
#
# Usage: tests/vm/mkguest.sh [OUTDIR]      (default: build/guest in the repo)
#
# OUTDIR receives:
#   vmlinuz            the kernel
#   initrd.cpio.gz     the base initramfs (no test script; see lib.sh)
#   kernel.config      the kernel's build configuration, for reference
#   guest.stamp        kernel version + recipe hash; a rerun with the same
#                      stamp does nothing
#   cache/*.deb        the downloaded kernel package
#
# Environment:
#   GUEST_KVER=6.1.0-NN-amd64   use this kernel instead of the newest one
#                               that apt knows about
#   GUEST_FORCE=1               rebuild even when the stamp matches
#
# Needs root for apt-get (only when a host package is missing or the kernel
# package has to be downloaded) and for mknod.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/build/guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Modules to load, in the order given; dependencies (including soft
# dependencies such as crc32c for jbd2/ext4) are resolved with modprobe.
MODULES=(libnvdimm nd_btt nd_pmem nfit virtio_pci virtio_pmem crc16 mbcache jbd2 ext4)
# Programs copied from the host with their shared libraries.
PROGRAMS=(/sbin/mke2fs /sbin/e2fsck)

log() { printf 'mkguest: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

recipe=$(cat "$here/mkguest.sh" "$here/guest/init" | sha256sum | cut -c1-16)

stamp_ok() { # KVER
    [[ -f $out/guest.stamp && -s $out/vmlinuz && -s $out/initrd.cpio.gz ]] || return 1
    [[ "$(cat "$out/guest.stamp")" == "kver=$1 recipe=$recipe" ]]
}

stamp_kver() {
    [[ -f $out/guest.stamp ]] || return 0
    sed -n 's/^kver=\([^ ]*\) .*/\1/p' "$out/guest.stamp"
}

apt_updated=0
apt_update() {
    if [[ $apt_updated == 0 ]]; then
        log "apt-get update"
        apt-get update -qq >&2
        apt_updated=1
    fi
}

newest_kver() {
    apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
        sed -n 's/^linux-image-\(6\.1\.0-[0-9]*-amd64\)-unsigned$/\1/p' |
        sort -V | tail -n 1
}

# --- which kernel -----------------------------------------------------------
kver=${GUEST_KVER:-}
if [[ -z $kver ]]; then
    kver=$(newest_kver)
    if [[ -z $kver ]]; then
        old=$(stamp_kver)
        if [[ -n $old ]] && stamp_ok "$old" && [[ ${GUEST_FORCE:-0} != 1 ]]; then
            log "no package lists; keeping the existing guest ($old)"
            exit 0
        fi
        apt_update
        kver=$(newest_kver)
        [[ -n $kver ]] || die "apt knows no linux-image-6.1.0-*-amd64-unsigned package"
    fi
fi
[[ $kver =~ ^6\.1\.0-[0-9]+-amd64$ ]] || die "unexpected kernel version '$kver'"

if stamp_ok "$kver" && [[ ${GUEST_FORCE:-0} != 1 ]]; then
    log "up to date: $out ($kver)"
    exit 0
fi
log "building guest with kernel $kver in $out"

# --- host packages ------------------------------------------------------------
pkg_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}
missing=()
for p in busybox-static cpio kmod e2fsprogs gzip; do
    pkg_installed "$p" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
        apt_update
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
fi
if ldd /bin/busybox >/dev/null 2>&1; then
    die "/bin/busybox is not static"
fi
for prog in "${PROGRAMS[@]}"; do
    [[ -x $prog ]] || die "$prog missing"
done

# --- kernel package -------------------------------------------------------------
pkg=linux-image-$kver-unsigned
mkdir -p "$out/cache"
shopt -s nullglob
debs=("$out/cache/${pkg}"_*.deb)
shopt -u nullglob
if ((${#debs[@]} == 0)); then
    log "downloading $pkg"
    dl() { (cd "$out/cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >&2); }
    if ! dl; then
        apt_update
        dl
    fi
    shopt -s nullglob
    debs=("$out/cache/${pkg}"_*.deb)
    shopt -u nullglob
    ((${#debs[@]})) || die "download of $pkg produced no file"
    # Drop packages of other kernels.
    for f in "$out"/cache/linux-image-*.deb; do
        [[ $f == "$out/cache/${pkg}"_* ]] || rm -f "$f"
    done
fi
deb=${debs[-1]}

work=$(mktemp -d "$out/.work.XXXXXX")
trap 'rm -rf "$work"' EXIT
kroot=$work/kernel
stage=$work/initrd

log "extracting $(basename "$deb")"
dpkg-deb --fsys-tarfile "$deb" |
    tar -x -C "$work" --transform 's,^\./,kernel/,' --wildcards \
        "./boot/vmlinuz-$kver" "./boot/config-$kver" "./lib/modules/$kver/*"
[[ -f $kroot/boot/vmlinuz-$kver ]] || die "no vmlinuz-$kver in $deb"
depmod -b "$kroot" "$kver"

# --- initramfs tree ---------------------------------------------------------------
mkdir -p "$stage"/{bin,sbin,dev,proc,sys,tmp,mnt,run,root,etc,lib/modules}
cp /bin/busybox "$stage/bin/busybox"
for applet in $(/bin/busybox --list); do
    [[ -e $stage/bin/$applet ]] || ln -s busybox "$stage/bin/$applet"
done
mknod -m 600 "$stage/dev/console" c 5 1
mknod -m 666 "$stage/dev/null" c 1 3

copy_with_libs() { # PROGRAM
    local prog=$1 lib
    cp -L "$prog" "$stage/sbin/"
    while read -r lib; do
        [[ -n $lib ]] || continue
        if [[ ! -e $stage$lib ]]; then
            mkdir -p "$stage$(dirname "$lib")"
            cp -L "$lib" "$stage$lib"
        fi
    done < <(ldd "$prog" | sed -n 's,.*=> \(/[^ ]*\) .*,\1,p; s,^[[:space:]]*\(/[^ ]*\) (.*,\1,p')
}
for prog in "${PROGRAMS[@]}"; do
    copy_with_libs "$prog"
done
for name in mkfs.ext4 mkfs.ext2 mkfs.ext3; do ln -sf mke2fs "$stage/sbin/$name"; done
for name in fsck.ext4 fsck.ext2 fsck.ext3; do ln -sf e2fsck "$stage/sbin/$name"; done
[[ -f /etc/mke2fs.conf ]] && cp /etc/mke2fs.conf "$stage/etc/"

# Modules, flat in /lib/modules, with their load order in /etc/modules.order.
: >"$stage/etc/modules.order"
for m in "${MODULES[@]}"; do
    modprobe --show-depends -d "$kroot" -S "$kver" "$m" || die "module $m not found"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' |
while read -r ko; do
    name=$(basename "$ko")
    case $name in
        *.ko.xz)  xz -dc "$ko" >"$stage/lib/modules/${name%.xz}"; name=${name%.xz} ;;
        *.ko.zst) zstd -qdc "$ko" >"$stage/lib/modules/${name%.zst}"; name=${name%.zst} ;;
        *.ko.gz)  gzip -dc "$ko" >"$stage/lib/modules/${name%.gz}"; name=${name%.gz} ;;
        *.ko)     cp "$ko" "$stage/lib/modules/$name" ;;
        *)        die "unexpected module file $ko" ;;
    esac
    echo "$name" >>"$stage/etc/modules.order"
done
echo "$kver" >"$stage/etc/kernel-release"

install -m 755 "$here/guest/init" "$stage/init"

# --- archive ------------------------------------------------------------------------
(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 --quiet) | gzip -9n >"$work/initrd.cpio.gz"

cp "$kroot/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$kroot/boot/config-$kver" "$work/kernel.config"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/kernel.config" "$out/kernel.config"
mv -f "$work/initrd.cpio.gz" "$out/initrd.cpio.gz"
echo "kver=$kver recipe=$recipe" >"$out/guest.stamp"
log "modules: $(tr '\n' ' ' <"$stage/etc/modules.order")"
log "done: $out/vmlinuz $out/initrd.cpio.gz ($(du -k "$out/initrd.cpio.gz" | cut -f1) KiB)"
