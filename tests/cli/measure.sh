#!/bin/bash
# pcow-img measure: the bytes on disk (st_blocks * 512) that the image
# convert (or create) writes needs -- checked against what convert and
# create then really produce.
source "$(dirname "$0")/lib.sh"

# Bytes of the file that hold data (SEEK_DATA/SEEK_HOLE): its disk usage
# without the file system's own bookkeeping (an ext4 extent block appears
# when the allocator splits a file into more than 4 pieces, e.g. while other
# tests write at the same time).
data_bytes() { # FILE
    "$PY" - "$1" <<'PYEOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size, pos, total = os.fstat(fd).st_size, 0, 0
while pos < size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    e = os.lseek(fd, d, os.SEEK_HOLE)
    total += e - d
    pos = e
print(total)
PYEOF
}

# The file occupies what measure said: exactly, in data, and on disk up to
# the file system's bookkeeping.
check_usage() { # FILE EXPECTED DESCRIPTION
    check_eq "$(data_bytes "$1")" "$2" "$3"
    check_le "$(disk_usage "$1")" $(($2 + 64 * KiB)) "$3 (disk usage)"
    check_ge "$(disk_usage "$1")" "$2" "$3 (disk usage)"
}

# measure [ARGS...] -> "REQUIRED FULLY" (from the JSON output)
measure() {
    "$PCOW_IMG" measure --output=json "$@" | json '"%d %d" % (d["required"], d["fully-allocated"])'
}

# Measures IN for block size BS, converts it and compares with the output's
# disk usage; then fills the output completely and compares with "fully".
check_convert() { # BS IN [FMT]
    local bs=$1 in=$2 got req full
    got=$(measure -o block_size="$bs" ${3:+-f "$3"} "$in")
    read -r req full <<<"$got"
    rm -f out.pcow
    ok "$PCOW_IMG" convert -O pcow -o block_size="$bs" ${3:+-f "$3"} "$in" out.pcow
    check_usage out.pcow "$req" "bs $bs $in: required size = disk usage of the converted image"
    size=$(info_get out.pcow 'd["virtual-size"]')
    pio out.pcow "write -P 0x5a 0 $size" flush
    check_usage out.pcow "$full" "bs $bs $in: fully allocated size = disk usage once every block is written"
}

SIZE=$((24 * MiB))
mkraw empty.raw $SIZE
mkraw sparse.raw $SIZE "1M 5000 0x11" "10M 300K r" "16M 100K 0x00" "$((SIZE - 10)) 10 0x12"
mkraw odd.raw $((3 * MiB + 1000)) "0 $((3 * MiB + 1000)) r"
for bs in $BLOCK_SIZES; do
    check_convert $bs empty.raw
    check_convert $bs sparse.raw
    check_convert $bs odd.raw
done
# The numbers themselves, for 64 KiB blocks: a written image has used both
# 4 KiB metadata slots and one 4 KiB page of copy bits (every written block
# is recorded by its bit), and whole blocks where there is data (5000 bytes
# at 1M: one block; 300K at 10M: five blocks; written zeros at 16M: none;
# the last 10 bytes: one).  An empty one has one slot and nothing else.
check_eq "$(measure sparse.raw)" "$((12 * KiB + 7 * 64 * KiB)) $((12 * KiB + SIZE))" "measure of a sparse raw file"
check_eq "$(measure empty.raw)" "$((4 * KiB)) $((12 * KiB + SIZE))" "measure of an empty raw file"
# A partial last block counts up to the virtual size (a multiple of 512),
# rounded up to 4 KiB.
check_eq "$(measure -o block_size=2M odd.raw)" "$((12 * KiB + 3 * MiB + 4 * KiB)) $((12 * KiB + 3 * MiB + 4 * KiB))" \
    "measure of a fully written raw file"

# A pcow image counts with everything the guest sees: snapshots' and the
# backing file's data too, in the block size of the new image.
mkraw base.raw $SIZE "0 1M 0x21" "20M 64K 0x22"
ok "$PCOW_IMG" create -o block_size=4K -b base.raw -F raw ov.pcow
pio ov.pcow "write -P 0x23 4M 4K"
ok "$PCOW_IMG" snapshot -c s1 ov.pcow
pio ov.pcow "write -P 0x24 8M 12K" "write -P 0 20M 64K"
for bs in $BLOCK_SIZES; do
    check_convert $bs ov.pcow
done
# 8 KiB of metadata and 4 KiB of copy bits, 1 MiB of the backing file's
# data, the blocks at 4M and 8M; the backing file's data at 20M is
# overwritten with zeros.
check_eq "$(measure ov.pcow | cut -d' ' -f1)" "$((12 * KiB + 16 * 64 * KiB + 64 * KiB + 64 * KiB))" \
    "measure of an overlay with a snapshot"

# --size: what create makes, and what it grows to when fully written.
for bs in $BLOCK_SIZES; do
    read -r req full <<<"$(measure --size 20M -o block_size=$bs)"
    rm -f new.pcow
    ok "$PCOW_IMG" create -q -o block_size=$bs new.pcow 20M
    check_usage new.pcow "$req" "bs $bs: required size of a new image"
    pio new.pcow "write -P 1 0 20M" flush
    check_usage new.pcow "$full" "bs $bs: fully allocated size of a new image"
done
# 1 TiB of 64 KiB blocks: 2^24 bits, 512 pages of copy bits.
check_eq "$(measure --size 1T)" "$((4 * KiB)) $((8 * KiB + 1024 * GiB + 512 * 4 * KiB))" "measure --size 1T"
# A capacity reserves address space only: the same bytes on disk.
read -r req full <<<"$(measure --size 20M -o capacity=1G)"
rm -f cap.pcow
ok "$PCOW_IMG" create -q -o capacity=1G cap.pcow 20M
check_usage cap.pcow "$req" "required size with a capacity"
check_eq "$full" "$((12 * KiB + 20 * MiB))" "fully allocated size with a capacity"
rm -f cap.pcow
ok "$PCOW_IMG" convert -O pcow -o capacity=1G sparse.raw cap.pcow
check_usage cap.pcow "$(measure -o capacity=1G sparse.raw | cut -d' ' -f1)" \
    "required size of a conversion with a capacity"

# Human output, and raw output like qemu-img's (the whole virtual size).
ok "$PCOW_IMG" measure --size 1G
check_eq "$(cat "$T/.out")" "required size: 4096
fully allocated size: $((12 * KiB + GiB))" "human output"
ok "$PCOW_IMG" measure -O raw sparse.raw
check_eq "$(cat "$T/.out")" "required size: $SIZE
fully allocated size: $SIZE" "measure -O raw"
if command -v qemu-img >/dev/null; then
    check_eq "$("$PCOW_IMG" measure -O raw --size 1000)" "$(qemu-img measure -O raw --size 1000)" \
        "measure -O raw like qemu-img"
fi

# An image in use is measured with -U only.
hold_start ov.pcow
expect_fail --grep "in use" "$PCOW_IMG" measure ov.pcow
ok "$PCOW_IMG" measure -U ov.pcow
hold_stop

# Errors: one line, exit 1, nothing changed.
remember sparse.raw ov.pcow
expect_fail --nofile --grep "cannot be used together" "$PCOW_IMG" measure --size 1G sparse.raw
expect_fail --nofile --grep "Either --size" "$PCOW_IMG" measure
expect_fail --nofile --grep "Either --size" "$PCOW_IMG" measure a.raw b.raw
expect_fail --nofile --grep "Invalid image size" "$PCOW_IMG" measure --size 1x
expect_fail --nofile --grep "too large" "$PCOW_IMG" measure --size 2P
expect_fail --nofile --grep "power of two" "$PCOW_IMG" measure -o block_size=3K --size 1G
expect_fail --nofile --grep "power of two" "$PCOW_IMG" measure -o block_size=2G --size 1G
expect_fail --nofile --grep "Invalid parameter 'foo'" "$PCOW_IMG" measure -o foo=1 --size 1G
expect_fail --nofile --grep "smaller than the image size" "$PCOW_IMG" measure -o capacity=1M --size 1G
expect_fail --nofile --grep "Invalid parameter 'block_size'" "$PCOW_IMG" measure -O raw -o block_size=4K --size 1G
expect_fail --nofile --grep "Unknown file format" "$PCOW_IMG" measure -O vmdk --size 1G
expect_fail --nofile --grep "human or json" "$PCOW_IMG" measure --output=xml --size 1G
expect_fail "$PCOW_IMG" measure nothere.raw
expect_fail --grep "bad magic" "$PCOW_IMG" measure -f pcow sparse.raw
assert_unchanged sparse.raw ov.pcow

# A zero size is refused, as create refuses it.
expect_fail --nofile --grep "Invalid image size specified: '0'" "$PCOW_IMG" measure --size 0
expect_fail --nofile --grep "capacity '0'" "$PCOW_IMG" measure -o capacity=0 --size 1M

# -o help lists the options of the output format, as qemu-img's.
ok "$PCOW_IMG" measure -o help
check_out "^Supported pcow options:$" "measure -o help"
check_out "^  block_size=<size> +- " "measure -o help: block_size"
ok "$PCOW_IMG" measure -O raw -o '?'
check_out "^Supported raw options:$" "measure -O raw -o ?"

finish
