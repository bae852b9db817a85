# Helpers for scripts run inside the pcow test guest (busybox sh).
# tests/vm/lib.sh puts this file at /lib/pcow-guest.sh in each boot's initrd
# and the guest init sources it before /test.sh.
#
# Devices are given as /dev/pmemN (a bare pmemN works too). Offsets and
# lengths are in bytes. Functions return non-zero on failure; pm_fail
# ends the test script.
#
# Note: busybox runs its own applets before anything in PATH, so a bare
# `mke2fs` is busybox's; the real e2fsprogs tools are /sbin/mke2fs and
# /sbin/e2fsck (pm_mkfs and pm_fsck use them).

PM_SYS=/sys/bus/nd

pm_log() {
    echo "[$(cut -d' ' -f1 /proc/uptime)] $*"
}

pm_fail() {
    echo "FAIL: $*"
    exit 1
}

pm_dev() { # DEV -> /dev/pmemN
    case $1 in
        /dev/*) echo "$1" ;;
        *) echo "/dev/$1" ;;
    esac
}

# Wait until the block device exists (libnvdimm probes asynchronously).
pm_wait_dev() { # DEV [SECONDS=10]
    _d=$(pm_dev "$1")
    _n=$(( ${2:-10} * 10 ))
    while [ ! -b "$_d" ]; do
        _n=$((_n - 1))
        [ "$_n" -gt 0 ] || { echo "pm_wait_dev: $_d did not appear"; return 1; }
        sleep 0.1
    done
}

# Kind of a pmem block device: nfit (an NVDIMM), virtio (virtio-pmem) or other.
pm_kind() { # DEV
    _p=$(readlink -f "/sys/block/$(basename "$1")")
    case $_p in
        */ACPI0012:*) echo nfit ;;
        */virtio*) echo virtio ;;
        *) echo other ;;
    esac
}

# 1 when the block device supports DAX (mount -o dax), else 0.
pm_dax() { # DEV
    cat "/sys/block/$(basename "$1")/queue/dax"
}

# List the pmem block devices as "DEV KIND MODE dax=0|1 SIZE_BYTES".
pm_list() {
    for _s in /sys/block/pmem*; do
        [ -e "$_s" ] || continue
        _b=$(basename "$_s")
        echo "/dev/$_b $(pm_kind "$_b") $(pm_mode "$_b") dax=$(pm_dax "$_b") $(( $(cat "$_s/size") * 512 ))"
    done
}

# Print the first /dev/pmemN for which TEST pmemN ARGS... succeeds, waiting
# up to SECONDS for one; else say that there is no WHAT.
pm_wait_for() { # SECONDS WHAT TEST [ARGS...]
    _n=$(( $1 * 10 ))
    _what=$2
    shift 2
    while :; do
        for _s in /sys/block/pmem*; do
            [ -e "$_s" ] || continue
            _b=$(basename "$_s")
            if [ -b "/dev/$_b" ] && "$@" "$_b"; then
                echo "/dev/$_b"
                return 0
            fi
        done
        _n=$((_n - 1))
        [ "$_n" -gt 0 ] || { echo "no $_what" >&2; return 1; }
        sleep 0.1
    done
}

# Print the first pmem device of KIND (nfit or virtio), waiting for it.
pm_find() { # KIND [SECONDS=10]
    pm_wait_for "${2:-10}" "$1 pmem device" _pm_is_kind "$1"
}
_pm_is_kind() { [ "$(pm_kind "$2")" = "$1" ]; }

# Print the /dev/pmemN of the NVDIMM QEMU has in slot SLOT (-device
# nvdimm,slot=SLOT; its NFIT handle is SLOT + 1), waiting for it; with MODE
# (e.g. fsdax), also until the device is in that mode.
pm_by_slot() { # SLOT [MODE] [SECONDS=10]
    pm_wait_for "${3:-10}" "${2:+$2 }pmem device in slot $1" _pm_in_slot "$1" "${2:-}"
}
_pm_in_slot() { # SLOT MODE DEV
    _m=$(cut -d, -f1 "$PM_SYS/devices/$(pm_region "$3")/mapping0" 2>/dev/null)
    _h=$(cat "$PM_SYS/devices/$_m/nfit/handle" 2>/dev/null) || return 1
    [ $((_h)) -eq $(($1 + 1)) ] && { [ -z "$2" ] || [ "$(pm_mode "$3")" = "$2" ]; }
}

# The libnvdimm device a pmem block device sits on: namespaceX.Y (raw),
# pfnX.Y (fsdax) or bttX.Y (sector mode).
pm_nddev() { # DEV
    basename "$(readlink -f "/sys/block/$(basename "$1")/device")"
}

pm_region() { # DEV
    basename "$(dirname "$(readlink -f "/sys/block/$(basename "$1")/device")")"
}

# fsdax (on a pfn device), sector (on btt), or the namespace's own mode:
# raw (no DAX: QEMU's label-less NVDIMM) or memory (a raw namespace whose
# struct pages live in RAM, so DAX works without a pfn device: virtio-pmem).
pm_mode() { # DEV
    case $(pm_nddev "$1") in
        pfn*) echo fsdax ;;
        btt*) echo sector ;;
        namespace*) cat "$PM_SYS/devices/$(pm_nddev "$1")/mode" ;;
        *) echo unknown ;;
    esac
}

# Offset of the device's byte 0 inside the backing memory range (the NVDIMM
# or virtio-pmem backend): 0 for a raw namespace; for fsdax, past the pfn
# info block and the struct page array kept on the device.
pm_data_offset() { # DEV
    _nd=$(pm_nddev "$1")
    case $_nd in
        namespace*) echo 0 ;;
        pfn*)
            _ns=$(cat "$PM_SYS/devices/$_nd/namespace")
            echo $(( $(cat "$PM_SYS/devices/$_nd/resource") - $(cat "$PM_SYS/devices/$_ns/resource") ))
            ;;
        *) echo "pm_data_offset: unsupported $_nd" >&2; return 1 ;;
    esac
}

# Turn a raw namespace into an fsdax one, as `ndctl create-namespace -m fsdax
# -e namespaceX.Y -f` does: unbind the namespace from nd_pmem, configure the
# region's pfn seed (uuid, mode=pmem: struct pages on the device, optional
# alignment, namespace) and bind the pfn device to nd_pmem. The kernel then
# writes a pfn info block 4 KiB into the namespace; on later boots nd_pmem
# finds it and brings the device up as fsdax by itself. Does nothing when
# the device is already fsdax. Destroys the data layout of the raw device.
pm_fsdax() { # [DEV=/dev/pmem0] [ALIGN]
    _d=$(pm_dev "${1:-/dev/pmem0}")
    _b=$(basename "$_d")
    pm_wait_dev "$_d" || return 1
    _nd=$(pm_nddev "$_b")
    case $_nd in
        pfn*) return 0 ;;
        namespace*) ;;
        *) echo "pm_fsdax: $_d is on $_nd, not on a raw namespace"; return 1 ;;
    esac
    _r=$(pm_region "$_b")
    _pfn=$(cat "$PM_SYS/devices/$_r/pfn_seed")
    if [ -z "$_pfn" ] || [ ! -d "$PM_SYS/devices/$_pfn" ]; then
        echo "pm_fsdax: $_r has no pfn seed"
        return 1
    fi
    echo "$_nd" > "$PM_SYS/drivers/nd_pmem/unbind" || { echo "pm_fsdax: unbind $_nd failed"; return 1; }
    if cat /proc/sys/kernel/random/uuid > "$PM_SYS/devices/$_pfn/uuid" &&
        echo pmem > "$PM_SYS/devices/$_pfn/mode" &&
        { [ -z "${2:-}" ] || echo "$2" > "$PM_SYS/devices/$_pfn/align"; } &&
        echo "$_nd" > "$PM_SYS/devices/$_pfn/namespace" &&
        echo "$_pfn" > "$PM_SYS/drivers/nd_pmem/bind"; then
        pm_wait_dev "$_d"
        return
    fi
    echo "pm_fsdax: configuring $_pfn for $_nd failed; rebinding raw"
    echo > "$PM_SYS/devices/$_pfn/namespace" 2>/dev/null
    echo "$_nd" > "$PM_SYS/drivers/nd_pmem/bind" 2>/dev/null
    return 1
}

# Write DATA (a string, no trailing newline added) at OFFSET and flush it.
pm_write() { # DEV OFFSET DATA
    printf '%s' "$3" | dd of="$(pm_dev "$1")" bs=65536 seek="$2" oflag=seek_bytes conv=notrunc,fsync status=none
}

# The string TEXT repeated to exactly LEN bytes, on stdout.
pm_pattern() { # LEN TEXT
    yes "$2" | tr -d '\n' | head -c "$1"
}

# Write TEXT repeated to LEN bytes at OFFSET and flush it.
pm_fill() { # DEV OFFSET LEN TEXT
    pm_pattern "$3" "$4" | dd of="$(pm_dev "$1")" bs=65536 seek="$2" oflag=seek_bytes iflag=fullblock conv=notrunc,fsync status=none
}

# Copy LEN bytes at OFFSET to stdout.
pm_read() { # DEV OFFSET LEN
    dd if="$(pm_dev "$1")" bs=65536 skip="$2" count="$3" iflag=skip_bytes,count_bytes status=none
}

# sha256 of LEN bytes at OFFSET.
pm_sum() { # DEV OFFSET LEN
    pm_read "$@" | sha256sum | cut -d' ' -f1
}

# Check that the device holds DATA at OFFSET; prints OK/MISMATCH. DATA is
# compared as a shell string: no NUL bytes, no trailing newlines.
pm_check() { # DEV OFFSET DATA
    _got=$(pm_read "$1" "$2" "${#3}")
    if [ "$_got" = "$3" ]; then
        echo "OK $1@$2"
    else
        echo "MISMATCH $1@$2: expected '$3', got '$_got'"
        return 1
    fi
}

# Check that the device holds TEXT repeated to LEN bytes at OFFSET.
pm_check_fill() { # DEV OFFSET LEN TEXT
    _want=$(pm_pattern "$3" "$4" | sha256sum | cut -d' ' -f1)
    _got=$(pm_sum "$1" "$2" "$3")
    if [ "$_got" = "$_want" ]; then
        echo "OK $1@$2+$3"
    else
        echo "MISMATCH $1@$2+$3"
        return 1
    fi
}

# Forget cached block device pages so that reads come from the medium.
pm_drop_caches() {
    sync
    echo 3 > /proc/sys/vm/drop_caches
}

# fsync a block device or file (for virtio-pmem this sends a flush request
# to the host).
pm_flush() { # DEV|FILE
    if [ -e "$1" ]; then sync "$1"; else sync "$(pm_dev "$1")"; fi
}

# ext4 with 4 KiB blocks (required for DAX), using the real mke2fs.
# FS_SIZE (e.g. 64M) limits the file system to the start of the device;
# more mke2fs options can be given in PM_MKFS_OPTS.
pm_mkfs() { # DEV [FS_SIZE]
    # shellcheck disable=SC2086
    /sbin/mke2fs -q -F -t ext4 -b 4096 ${PM_MKFS_OPTS:-} "$(pm_dev "$1")" ${2:+"$2"}
}

# Read-only consistency check; returns e2fsck's exit code (0: clean).
pm_fsck() { # DEV
    /sbin/e2fsck -f -n "$(pm_dev "$1")"
}

# Mount ext4 with -o dax (dax=always) and check that DAX is in effect.
pm_mount() { # DEV DIR [EXTRA_OPTS]
    mkdir -p "$2"
    mount -t ext4 -o "dax${3:+,$3}" "$(pm_dev "$1")" "$2" || return 1
    if ! grep -q " $2 ext4 .*dax" /proc/mounts; then
        echo "pm_mount: $2 is mounted without dax"
        return 1
    fi
}

pm_umount() { # DIR
    umount "$1"
}

# Write DATA to FILE and fsync it.
pm_write_file() { # FILE DATA
    printf '%s' "$2" | dd of="$1" bs=65536 conv=fsync status=none
}

# A control channel with the host on a second serial port (ttyS1): the
# host's side is a socket chardev (tests/vm/snapdrive.py, libvirt_drive.py).
# pm_ctl_open opens it as fd 3; pm_say prints a line there and on stdout;
# pm_hear reads the host's next line into the variable named by $1.
pm_ctl_open() {
    stty -F /dev/ttyS1 raw -echo || pm_fail "stty"
    exec 3<>/dev/ttyS1
}
pm_say() { echo "$*" >&3; echo "$*"; }
pm_hear() { read -r "$1" <&3; }

# One 4 KiB block at OFF (a multiple of 4096) of DEV filled with TEXT,
# written with O_DIRECT; pm_block8 prints its first 8 bytes, read likewise.
pm_put_block() { # DEV OFF TEXT
    pm_pattern 4096 "$3" | dd of="$1" bs=4096 seek=$(($2 / 4096)) oflag=direct conv=notrunc status=none
}
pm_block8() { # DEV OFF
    dd if="$1" bs=4096 skip=$(($2 / 4096)) count=1 iflag=direct status=none | head -c 8
}
