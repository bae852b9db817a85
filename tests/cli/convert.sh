#!/bin/bash
# pcow-img convert: raw <-> pcow round trips, zero blocks left unallocated,
# block sizes of the output, flattening of backing chains and snapshots.
source "$(dirname "$0")/lib.sh"

SIZE=$((8 * MiB + 4 * KiB))   # a multiple of 512, not of any block size

# Random data in [0, 100K), explicit (non-sparse) zeros in [100K, 1M), a
# small 0x55 piece at 3M+10, and random data in the last 4 KiB.
mkraw in.raw $SIZE "0 100K r" "100K 924K 0" "$((3 * MiB + 10)) 20 0x55" "8M 4K r"
check_ge "$(disk_usage in.raw)" $MiB "the input holds real zero blocks"

# Blocks holding data, per block size.
declare -A want=([4096]=27 [65536]=4 [2097152]=3)
for bs in $BLOCK_SIZES; do
    rm -f out.pcow back.raw
    ok "$PCOW_IMG" convert -O pcow -o block_size=$bs in.raw out.pcow
    check_eq "$(info_get out.pcow 'd["block-size"]')" "$bs" "bs $bs: block size of the output"
    check_eq "$(info_get out.pcow 'd["virtual-size"]')" $SIZE "bs $bs: size of the output"
    check_eq "$(allocated_blocks out.pcow)" "${want[$bs]}" "bs $bs: zero blocks are not allocated"
    ok "$PCOW_IMG" check out.pcow
    ok "$PCOW_IMG" convert -O raw out.pcow back.raw
    check_same in.raw back.raw "bs $bs: raw -> pcow -> raw round trip"
    check_le "$(disk_usage back.raw)" $((2 * MiB + 64 * KiB)) "bs $bs: zeros stay holes in the raw output"
    # pcow -> pcow with another block size.
    rm -f out2.pcow back2.raw
    ok "$PCOW_IMG" convert -f pcow -O pcow -o block_size=4K out.pcow out2.pcow
    check_eq "$(allocated_blocks out2.pcow)" 27 "bs $bs: pcow -> pcow (4 KiB) blocks"
    ok "$PCOW_IMG" convert -O raw out2.pcow back2.raw
    check_same in.raw back2.raw "bs $bs: pcow -> pcow -> raw round trip"
done
rm -f out.pcow out2.pcow back.raw back2.raw

# The default output format is raw; -f raw is accepted; -p shows progress.
ok "$PCOW_IMG" convert -f raw -O pcow in.raw p.pcow
ok "$PCOW_IMG" convert -p p.pcow p.raw
check_out "100.00/100%" "progress output"
check_same in.raw p.raw "convert with the default output format"

# An input whose size is not a multiple of 512 becomes a pcow image rounded
# up, with zeros in the tail.
mkraw odd.raw 1000 "0 1000 r"
ok "$PCOW_IMG" convert -O pcow odd.raw odd.pcow
check_eq "$(info_get odd.pcow 'd["virtual-size"]')" 1024 "size of an odd-sized input"
ok "$PCOW_IMG" convert -O raw odd.pcow odd-back.raw
check_eq "$(stat -c %s odd-back.raw)" 1024 "size of the raw output"
check_same odd.raw <(head -c 1000 odd-back.raw) "first 1000 bytes"
raw_verify odd-back.raw "0 1000 24"

# A backing chain and snapshots are flattened into one image of what the
# guest sees, with no backing file.
mkraw cb.raw $((4 * MiB)) "0 1M r"
ok "$PCOW_IMG" create -o block_size=4K -b cb.raw -F raw cm.pcow
pio cm.pcow "write -P 0x61 512K 4K" "write -P 0x62 2M 64K"
ok "$PCOW_IMG" snapshot -c s1 cm.pcow
pio cm.pcow "write -P 0x63 2M 4K" "discard 0 64K"
ok "$PCOW_IMG" create -b cm.pcow -F pcow ct.pcow
pio ct.pcow "write -P 0x64 3M 1"
remember cb.raw cm.pcow ct.pcow
ok "$PCOW_IMG" convert -O raw ct.pcow ct.raw
ok "$PCOW_IMG" convert -O pcow ct.pcow flat.pcow
check_eq "$(info_get flat.pcow '"backing-filename" in d or "snapshots" in d')" false "flattened image"
verify flat.pcow "0 0 64K" "0x61 512K 4K" "0x63 2M 4K" "0x62 $((2 * MiB + 4 * KiB)) 60K" "0x64 3M 1"
ok "$PCOW_IMG" convert -O raw flat.pcow flat.raw
check_same ct.raw flat.raw "flattened content"
raw_verify ct.raw "0 0 64K" "0x61 512K 4K" "0x64 3M 1"
check_same <(tail -c +$((64 * KiB + 1)) cb.raw | head -c $((448 * KiB))) \
    <(tail -c +$((64 * KiB + 1)) ct.raw | head -c $((448 * KiB))) "backing data in the flattened image"
assert_unchanged cb.raw cm.pcow ct.pcow

# Errors: one line, nothing left behind, existing files untouched.
ok "$PCOW_IMG" create exists.pcow 1M
expect_fail --file nothere.raw "$PCOW_IMG" convert -O pcow nothere.raw o.pcow
check_true "a failed convert left o.pcow behind" test ! -e o.pcow
expect_fail --file o.img --grep "vmdk" "$PCOW_IMG" convert -O vmdk in.raw o.img
check_true "a failed convert left o.img behind" test ! -e o.img
expect_fail --file in.raw "$PCOW_IMG" convert -f pcow -O raw in.raw o.raw
check_true "a failed convert left o.raw behind" test ! -e o.raw
expect_fail --file in.raw "$PCOW_IMG" convert -f vmdk -O raw in.raw o.raw
expect_fail --file o.pcow "$PCOW_IMG" convert -O pcow -o block_size=3000 in.raw o.pcow
check_true "a failed convert left o.pcow behind" test ! -e o.pcow
expect_fail --file o.pcow "$PCOW_IMG" convert -O pcow -o backing_file=in.raw in.raw o.pcow
expect_fail --file nodir/o.raw "$PCOW_IMG" convert -O raw p.pcow nodir/o.raw
expect_fail --nofile "$PCOW_IMG" convert in.raw
# An existing output is replaced, as qemu-img does, whatever its format;
# never the input itself, nor an image in use.
"$PCOW_IMG" create -q -f pcow self.pcow 1M
pio self.pcow "write -P 0x3c 4K 4K"
remember self.pcow
expect_fail --file self.pcow --grep "input" "$PCOW_IMG" convert -O raw self.pcow self.pcow
ln -s self.pcow self-link.pcow
expect_fail --file self-link.pcow --grep "input" "$PCOW_IMG" convert -O pcow self.pcow self-link.pcow
assert_unchanged self.pcow
ok "$PCOW_IMG" convert -O raw self.pcow exists.pcow
raw_verify exists.pcow "0 0 4K" "0x3c 4K 4K" "0 8K 1016K"
ok "$PCOW_IMG" convert -f raw -O pcow in.raw exists.pcow
check_eq "$(info_get exists.pcow 'd["virtual-size"]')" "$(stat -c %s in.raw)" "convert over an image"
if command -v qemu-img >/dev/null; then
    ok "$PCOW_IMG" convert -O qcow2 self.pcow exists.pcow
    check_true "a qcow2 output replaced the pcow image" \
        test "$(head -c 3 exists.pcow)" = QFI
fi
check_eq "$(find . -name '.*.??????' | wc -l)" 0 "temporary files left by convert"
"$PCOW_IMG" create -q busy.pcow 1M
hold_start busy.pcow && {
    remember busy.pcow
    for fmt in raw pcow qcow2; do
        expect_fail --file busy.pcow --grep "in use" "$PCOW_IMG" convert -O $fmt self.pcow busy.pcow
    done
    expect_fail --file busy.pcow --grep "in use" "$PCOW_IMG" convert -n -O pcow self.pcow busy.pcow
    assert_unchanged busy.pcow
    hold_stop
}

# -n writes into an existing output without creating it: what the input
# holds, and zeros (also over a backing file's data) where it holds none,
# up to the input's size; the rest stays.  The output must be at least as
# large; -o has no effect then and is refused, as by qemu-img.
mkraw nbase.raw 4M "0 4M 0x11"
"$PCOW_IMG" create -q -o block_size=4K -b nbase.raw -F raw ntarget.pcow 4M
pio ntarget.pcow "write -P 0x22 0 2M" "write -P 0x23 3M 1M"
ok "$PCOW_IMG" convert -n -O pcow self.pcow ntarget.pcow
verify ntarget.pcow "0 0 4K" "0x3c 4K 4K" "0 8K 1016K" "0x22 1M 1M" "0x11 2M 1M" "0x23 3M 1M"
mkraw ntarget.raw 3M "0 3M 0x44"
ok "$PCOW_IMG" convert -n -f pcow -O raw self.pcow ntarget.raw
raw_verify ntarget.raw "0 0 4K" "0x3c 4K 4K" "0 8K 1016K" "0x44 1M 2M"
check_eq "$(stat -c %s ntarget.raw)" $((3 * MiB)) "size of a raw output after -n"
remember ntarget.pcow ntarget.raw
mkraw small.raw 512K
expect_fail --file small.raw --grep "smaller" "$PCOW_IMG" convert -n -f raw -O raw ntarget.raw small.raw
expect_fail --file nothere.raw "$PCOW_IMG" convert -n -O raw self.pcow nothere.raw
check_true "convert -n created nothere.raw" test ! -e nothere.raw
expect_fail --file ntarget.pcow --grep "no effect" "$PCOW_IMG" convert -n -O pcow -o block_size=4K self.pcow ntarget.pcow
# Without -O, -n would write raw bytes over an image: refused.
expect_fail --file ntarget.pcow --grep "give its format" "$PCOW_IMG" convert -n self.pcow ntarget.pcow
assert_unchanged ntarget.pcow ntarget.raw

# -o help lists the options of the output format.
ok "$PCOW_IMG" convert -O pcow -o help
check_out "^Supported pcow options:$" "convert -O pcow -o help"
check_out "^  block_size=<size> +- " "convert -o help: block_size"
ok "$PCOW_IMG" convert -O raw -o '?'
check_out "^Supported raw options:$" "convert -O raw -o ?"

mkraw empty.raw 0
expect_fail --file empty.pcow "$PCOW_IMG" convert -f raw -O pcow empty.raw empty.pcow
check_true "a failed convert left empty.pcow behind" test ! -e empty.pcow

# -p: one update per whole percent (not per block), 100% once; -q: none.
mkraw big.raw 16M "0 16M 0x5a"
ok "$PCOW_IMG" convert -p -O pcow -o block_size=4K big.raw big.pcow
updates=$(tr '\r' '\n' <"$T/.out" | grep -c "/100%)")
check_le "$updates" 102 "progress updates of convert -p (4096 blocks)"
check_ge "$updates" 2 "progress updates of convert -p"
check_eq "$(grep -o "(100.00/100%)" "$T/.out" | wc -l)" 1 "100% lines of convert -p"
rm -f big.pcow
ok "$PCOW_IMG" convert -q -p -O pcow big.raw big.pcow
check_eq "$(wc -c <"$T/.out")" 0 "bytes written by convert -q -p"

finish
