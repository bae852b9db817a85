#!/bin/bash
# pcow-img convert to and from qcow2, through qemu-img: content kept, zero
# blocks left unallocated both ways, no temporary file left behind.
source "$(dirname "$0")/lib.sh"

QEMU_IMG=$(command -v qemu-img) || skip "qemu-img is not installed (Debian: qemu-utils)"

# Bytes qemu-img map reports as data in a qcow2 image.
qcow2_data() { # IMG
    "$QEMU_IMG" map --output=json "$1" | json 'sum(r["length"] for r in d if r["data"])'
}
# Bytes pcow-img map reports as data.
pcow_data() { # IMG
    "$PCOW_IMG" map --output=json -U "$1" | json 'sum(r["length"] for r in d if r["data"])'
}
no_temp_left() { # DESCRIPTION
    check_eq "$(find . -name '.pcow-img-convert-*' | wc -l)" 0 "$1: no temporary file left"
}

SIZE=$((64 * MiB))
mkraw src.raw $SIZE "1M 64K 0x11" "10M 320K r" "20M 64K 0x00" "$((SIZE - 64 * KiB)) 64K 0x12"
DATA=$((64 * KiB + 320 * KiB + 64 * KiB))

for bs in 4096 65536; do
    rm -f src.pcow out.qcow2 back.pcow back.raw
    ok "$PCOW_IMG" convert -O pcow -o block_size=$bs src.raw src.pcow
    # pcow -> qcow2: qemu-img sees the same content, and only the data.
    ok "$PCOW_IMG" convert -O qcow2 src.pcow out.qcow2
    check_eq "$("$QEMU_IMG" info --output=json out.qcow2 | json 'd["format"]')" qcow2 "bs $bs: output is qcow2"
    run "$QEMU_IMG" compare -f raw -F qcow2 src.raw out.qcow2
    check_eq "$RC" 0 "bs $bs: qemu-img compare of the qcow2 output"
    check_eq "$(qcow2_data out.qcow2)" $DATA "bs $bs: data clusters of the qcow2 output"
    no_temp_left "bs $bs: pcow -> qcow2"
    # qcow2 -> pcow, the format probed by its magic or given.
    ok "$PCOW_IMG" convert -O pcow -o block_size=$bs out.qcow2 back.pcow
    ok "$PCOW_IMG" compare back.pcow src.raw
    check_eq "$(pcow_data back.pcow)" $DATA "bs $bs: data blocks of the pcow output"
    check_eq "$(allocated_blocks back.pcow)" $((DATA / bs)) "bs $bs: blocks allocated by the pcow output"
    rm -f back.pcow
    ok "$PCOW_IMG" convert -p -f qcow2 -O pcow -o block_size=$bs out.qcow2 back.pcow
    check_out "100.00/100%" "bs $bs: -p shows progress"
    ok "$PCOW_IMG" compare back.pcow src.raw
    no_temp_left "bs $bs: qcow2 -> pcow"
    # qcow2 -> raw: sparse too.
    ok "$PCOW_IMG" convert -O raw out.qcow2 back.raw
    check_same back.raw src.raw "bs $bs: qcow2 -> raw content"
    check_le "$(disk_usage back.raw)" $((DATA + 64 * KiB)) "bs $bs: qcow2 -> raw stays sparse"
done

# A pcow image with a backing file and a snapshot: the whole guest view.
mkraw base.raw $SIZE "0 1M 0x21"
ok "$PCOW_IMG" create -b base.raw -F raw ov.pcow
pio ov.pcow "write -P 0x22 4M 64K"
ok "$PCOW_IMG" snapshot -c s1 ov.pcow
pio ov.pcow "write -P 0x23 8M 64K"
rm -f ov.qcow2
ok "$PCOW_IMG" convert -O qcow2 ov.pcow ov.qcow2
to_raw ov.pcow ov.raw
run "$QEMU_IMG" compare -f qcow2 -F raw ov.qcow2 ov.raw
check_eq "$RC" 0 "overlay -> qcow2 content"
check_eq "$(qcow2_data ov.qcow2)" $((MiB + 128 * KiB)) "overlay -> qcow2 data"
# -o goes to qemu-img for a qcow2 output.
rm -f small.qcow2
ok "$PCOW_IMG" convert -O qcow2 -o cluster_size=4K src.raw small.qcow2
check_eq "$("$QEMU_IMG" info --output=json small.qcow2 | json 'd["cluster-size"]')" 4096 "-o cluster_size for qcow2"
# qcow2 -> qcow2 is qemu-img's own business.
rm -f copy.qcow2
ok "$PCOW_IMG" convert -O qcow2 small.qcow2 copy.qcow2
run "$QEMU_IMG" compare small.qcow2 copy.qcow2
check_eq "$RC" 0 "qcow2 -> qcow2"
# A held pcow image converts with -U.
hold_start src.pcow
rm -f held.qcow2
expect_fail --grep "in use" --file src.pcow "$PCOW_IMG" convert -O qcow2 src.pcow held.qcow2
check_true "a refused convert leaves no output" test ! -e held.qcow2
ok "$PCOW_IMG" convert -U -O qcow2 src.pcow held.qcow2
hold_stop

# An existing output is replaced (a qcow2 image by a pcow one and back);
# with -n the existing output is written into: qcow2 through qemu-img.
ok "$PCOW_IMG" convert -O qcow2 src.pcow ov.qcow2
run "$QEMU_IMG" compare -f raw -F qcow2 src.raw ov.qcow2
check_eq "$RC" 0 "a qcow2 output replaced"
ok "$PCOW_IMG" convert -O pcow ov.qcow2 ov.pcow
ok "$PCOW_IMG" compare ov.pcow src.raw
"$QEMU_IMG" create -q -f qcow2 -o cluster_size=4K into.qcow2 $SIZE
QEMU_IO=$(command -v qemu-io) || skip "qemu-io is not installed (Debian: qemu-utils)"
"$QEMU_IO" -c "write -P 0x55 0 $SIZE" into.qcow2 >/dev/null || fail "qemu-io write into.qcow2"
ok "$PCOW_IMG" convert -n -O qcow2 src.pcow into.qcow2
check_eq "$("$QEMU_IMG" info --output=json into.qcow2 | json 'd["cluster-size"]')" 4096 \
    "convert -n keeps the qcow2 output's own options"
run "$QEMU_IMG" compare -f raw -F qcow2 src.raw into.qcow2
check_eq "$RC" 0 "convert -n into qcow2: the input's content, zeros included"
"$PCOW_IMG" create -q into.pcow $SIZE
pio into.pcow "write -P 0x55 0 $SIZE"
ok "$PCOW_IMG" convert -n -O pcow out.qcow2 into.pcow
ok "$PCOW_IMG" compare into.pcow src.raw
no_temp_left "convert -n"
# A qcow2 image in use by QEMU (qemu-io holds it) is not replaced.
"$QEMU_IO" -c "sleep 60000" into.qcow2 >/dev/null 2>&1 &
qpid=$!
CLEANUP_PIDS+=("$qpid")
wait_locked into.qcow2
remember into.qcow2
expect_fail --grep "in use" --file into.qcow2 "$PCOW_IMG" convert -O qcow2 src.pcow into.qcow2
expect_fail --grep "in use" --file into.qcow2 "$PCOW_IMG" create into.qcow2 1M
assert_unchanged into.qcow2
kill "$qpid" 2>/dev/null
wait "$qpid" 2>/dev/null

# info -f raw|qcow2 and measure -O qcow2: qemu-img answers, in its words.
for fmt in qcow2:out.qcow2 raw:src.raw; do
    for o in human json; do
        ok "$PCOW_IMG" info -f "${fmt%%:*}" --output=$o "${fmt#*:}"
        check_eq "$(cat "$T/.out")" "$("$QEMU_IMG" info -f "${fmt%%:*}" --output=$o "${fmt#*:}")" \
            "info -f ${fmt%%:*} --output=$o"
    done
done
expect_fail --file src.raw --grep "not in qcow2 format" "$PCOW_IMG" info -f qcow2 src.raw
expect_fail --file out.qcow2 --grep "no-backing" "$PCOW_IMG" info -f qcow2 --no-backing out.qcow2
ok "$PCOW_IMG" measure -O qcow2 --size 1G --output=json
check_eq "$(cat "$T/.out")" "$("$QEMU_IMG" measure -O qcow2 --size 1G --output=json)" "measure -O qcow2 --size"
ok "$PCOW_IMG" measure -O qcow2 -f qcow2 out.qcow2
check_eq "$(cat "$T/.out")" "$("$QEMU_IMG" measure -O qcow2 -f qcow2 out.qcow2)" "measure -O qcow2 of qcow2"
# A pcow image: what its content takes as qcow2, as if it were raw.
to_raw src.pcow src-copy.raw
for m in "" "-o cluster_size=4K"; do
    # shellcheck disable=SC2086  # m is words
    ok "$PCOW_IMG" measure -O qcow2 $m --output=json src.pcow
    # shellcheck disable=SC2086
    check_eq "$(cat "$T/.out")" "$("$QEMU_IMG" measure -O qcow2 $m -f raw --output=json src-copy.raw)" \
        "measure -O qcow2 $m of a pcow image"
done
no_temp_left "measure -O qcow2"
ok "$PCOW_IMG" measure -O qcow2 -o help
check_out "^Supported qcow2 options:$" "measure -O qcow2 -o help"
expect_fail --nofile --grep "qemu-img is needed" env PATH=/nonexistent "$PCOW_IMG" measure -O qcow2 --size 1G
expect_fail --file src.raw --grep "qemu-img is needed" env PATH=/nonexistent "$PCOW_IMG" info -f raw src.raw

# Errors: one line, no output and no temporary file left.
remember src.raw out.qcow2
expect_fail --grep "not in qcow2 format" --file src.raw "$PCOW_IMG" convert -f qcow2 -O pcow src.raw bad.pcow
check_true "no output after a bad qcow2 input" test ! -e bad.pcow
expect_fail --grep "Invalid parameter 'bogus'" --file bad.qcow2 "$PCOW_IMG" convert -f raw -O qcow2 -o bogus=1 src.raw bad.qcow2
check_true "no output after bad qcow2 options" test ! -e bad.qcow2
expect_fail --file nothere.raw "$PCOW_IMG" convert -O qcow2 nothere.raw bad.qcow2
check_true "no output after a missing input" test ! -e bad.qcow2
printf 'QFI\xfb' >trunc.qcow2
expect_fail --file trunc.qcow2 "$PCOW_IMG" convert -O pcow trunc.qcow2 bad.pcow
check_true "no output after a damaged qcow2 input" test ! -e bad.pcow
# Without qemu-img on PATH: a clear message.
expect_fail --grep "qemu-img is needed" --file bad.qcow2 env PATH=/nonexistent "$PCOW_IMG" convert -O qcow2 src.raw bad.qcow2
expect_fail --grep "qemu-img is needed" --file out.qcow2 env PATH=/nonexistent "$PCOW_IMG" convert -O pcow out.qcow2 bad.pcow
check_true "no output without qemu-img" test ! -e bad.qcow2 -a ! -e bad.pcow
no_temp_left "failed conversions"
assert_unchanged src.raw out.qcow2

finish
