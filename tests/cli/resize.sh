#!/bin/bash
# pcow-img resize: growing within the capacity (in place) and past it (the
# data moves), over raw and pcow backing files that hold data past the old
# size, shrinking with and without --shrink, relative sizes, and every kind
# of bad input leaving the image as it was.
source "$(dirname "$0")/lib.sh"

vsize() { # IMG
    info_get "$1" 'd["virtual-size"]'
}

capacity() { # IMG
    info_get "$1" 'd["format-specific"]["data"]["capacity"]'
}

apparent_size() { # FILE
    stat -c %s "$1"
}

check_clean() { # IMG TAG
    run "$PCOW_IMG" check "$1"
    check_eq "$RC" 0 "$2: check exit code"
}

for bs in $BLOCK_SIZES; do
    tag="bs $bs"

    # Growing within the capacity: nothing moves, the file keeps its size.
    img=cap-$bs.pcow
    ok "$PCOW_IMG" create -q -o block_size=$bs,capacity=64M "$img" 16M
    check_eq "$(capacity "$img")" $((64 * MiB)) "$tag: capacity in info"
    pio "$img" "write -P 0x11 0 100K" "write -P 0x12 $((16 * MiB - 4096)) 4096"
    before=$(apparent_size "$img")
    ok "$PCOW_IMG" resize "$img" 48M
    check_out "^Image resized\.$" "$tag: resize output"
    check_eq "$(vsize "$img")" $((48 * MiB)) "$tag: size after growing in place"
    check_eq "$(apparent_size "$img")" "$before" "$tag: file size after growing in place"
    verify "$img" "0x11 0 100K" "0 100K $((16 * MiB - 100 * KiB - 4096))" \
        "0x12 $((16 * MiB - 4096)) 4096" "0 16M 32M"
    pio "$img" "write -P 0x13 $((48 * MiB - 512)) 512"
    verify "$img" "0x13 $((48 * MiB - 512)) 512"
    check_clean "$img" "$tag: grown in place"

    # Past the capacity: the data moves, and is all still there.
    img=move-$bs.pcow
    ok "$PCOW_IMG" create -q -o block_size=$bs "$img" 8M
    pio "$img" "write -P 0x21 0 64K" "write -P 0x22 5M 3M"
    ok "$PCOW_IMG" resize "$img" +24M
    check_eq "$(vsize "$img")" $((32 * MiB)) "$tag: size after growing past the capacity"
    check_eq "$(capacity "$img")" $((32 * MiB)) "$tag: capacity after growing past it"
    verify "$img" "0x21 0 64K" "0 64K $((5 * MiB - 64 * KiB))" "0x22 5M 3M" "0 8M 24M"
    check_clean "$img" "$tag: moved"
    rm -f cap-$bs.pcow move-$bs.pcow
done

# The grown area reads as zeros even where the backing file has data, for
# raw and pcow backing files, in place and moved.
mkraw base.raw 32M "0 32M 0x33"
ok "$PCOW_IMG" create -q -o block_size=4K base.pcow 32M
pio base.pcow "write -P 0x44 0 32M"
for fmt in raw pcow; do
    for cap in "" ",capacity=32M"; do
        tag="$fmt backing${cap:+, in place}"
        img=ov-$fmt.pcow
        rm -f "$img"
        # The old size cuts a 64 KiB block in the middle.
        old=$((8 * MiB - 16 * KiB))
        ok "$PCOW_IMG" create -q -o block_size=64K$cap -b base.$fmt -F $fmt "$img" $old
        pio "$img" "write -P 0x55 1M 64K"
        remember base.$fmt
        ok "$PCOW_IMG" resize "$img" 32M
        pat=0x33
        [[ $fmt == pcow ]] && pat=0x44
        verify "$img" "$pat 0 1M" "0x55 1M 64K" "$pat $((MiB + 64 * KiB)) $((old - MiB - 64 * KiB))" \
            "0 $old $((32 * MiB - old))"
        check_clean "$img" "$tag"
        assert_unchanged base.$fmt
    done
done

# Shrinking needs --shrink, and says how much data it would discard.
img=shrink.pcow
ok "$PCOW_IMG" create -q -o block_size=64K "$img" 16M
pio "$img" "write -P 0x66 0 1M" "write -P 0x67 10M 1M"
remember "$img"
expect_fail --file "$img" --grep "use the --shrink option.*discards 1 MiB" \
    "$PCOW_IMG" resize "$img" 8M
expect_fail --file "$img" --grep "use the --shrink option" "$PCOW_IMG" resize "$img" -8M
assert_unchanged "$img"
# Nothing to lose past 12M: the message says only to use --shrink.
expect_fail --file "$img" --grep "shrink operation\.$" "$PCOW_IMG" resize "$img" 12M
assert_unchanged "$img"
ok "$PCOW_IMG" resize --shrink "$img" $((10 * MiB + 512))
check_out "^Image resized\.$" "shrink output"
ok "$PCOW_IMG" resize --shrink "$img" 10M
check_eq "$(vsize "$img")" $((10 * MiB)) "size after shrinking"
verify "$img" "0x66 0 1M" "0 1M 9M"
check_clean "$img" "shrunk"
# What was past the end does not come back when the image grows again.
ok "$PCOW_IMG" resize "$img" 16M
verify "$img" "0x66 0 1M" "0 1M 15M"
check_clean "$img" "grown after a shrink"

# Relative sizes, -q, and a size that changes nothing.
ok "$PCOW_IMG" resize -q "$img" +1M
check_eq "$(cat "$T/.out")" "" "resize -q prints nothing"
check_eq "$(vsize "$img")" $((17 * MiB)) "size after +1M"
ok "$PCOW_IMG" resize --shrink -f pcow "$img" -512K
check_eq "$(vsize "$img")" $((16 * MiB + 512 * KiB)) "size after -512K"
remember "$img"
ok "$PCOW_IMG" resize "$img" +0
ok "$PCOW_IMG" resize "$img" $((16 * MiB + 512 * KiB))
assert_unchanged "$img"
check_clean "$img" "after relative resizes"

# Bad input: one line, non-zero, the image unchanged.
remember "$img"
expect_fail --file "$img" --grep "invalid size" "$PCOW_IMG" resize "$img" 12X
expect_fail --file "$img" --grep "invalid size" "$PCOW_IMG" resize "$img" ""
expect_fail --file "$img" --grep "invalid size" "$PCOW_IMG" resize "$img" +-1M
expect_fail --file "$img" --grep "positive" "$PCOW_IMG" resize --shrink "$img" -17M
expect_fail --file "$img" --grep "positive" "$PCOW_IMG" resize --shrink "$img" -- -33M
expect_fail --file "$img" --grep "positive" "$PCOW_IMG" resize --shrink "$img" 0
expect_fail --file "$img" --grep "multiple of 512" "$PCOW_IMG" resize "$img" 20000000
expect_fail --file "$img" --grep "too large" "$PCOW_IMG" resize "$img" 2P
expect_fail --file "$img" --grep "unsupported format" "$PCOW_IMG" resize -f raw "$img" 20M
expect_fail --nofile "$PCOW_IMG" resize "$img"
expect_fail --nofile "$PCOW_IMG" resize "$img" 20M extra
assert_unchanged "$img"
expect_fail --file missing.pcow "$PCOW_IMG" resize missing.pcow 20M
check_true "a failed resize created missing.pcow" test ! -e missing.pcow
mkraw plain.raw 1M "0 4K 0x77"
remember plain.raw
expect_fail --file plain.raw --grep "not a pcow image" "$PCOW_IMG" resize plain.raw 2M
assert_unchanged plain.raw

# An image with snapshots cannot be resized (as with qemu-img and qcow2).
ok "$PCOW_IMG" snapshot -c s1 "$img"
remember "$img"
expect_fail --file "$img" --grep "snapshots" "$PCOW_IMG" resize "$img" 20M
assert_unchanged "$img"
ok "$PCOW_IMG" snapshot -d s1 "$img"

# An image another process holds is left alone.
if hold_start "$img"; then
    remember "$img"
    expect_fail --file "$img" --grep "in use" "$PCOW_IMG" resize "$img" 20M
    hold_stop
    assert_unchanged "$img"
fi
ok "$PCOW_IMG" resize "$img" 20M
check_clean "$img" "after the holder left"

# info shows the capacity.
ok "$PCOW_IMG" create -q -o capacity=1T big.pcow 1G
ok "$PCOW_IMG" info big.pcow
check_out "^    capacity: 1 TiB \(1099511627776 bytes\)$" "capacity in human info"
expect_fail --file small.pcow --grep "capacity" "$PCOW_IMG" create -o capacity=1M small.pcow 2M
check_true "a failed create left small.pcow behind" test ! -e small.pcow

finish
