#!/bin/bash
# pcow-img create: sizes, block sizes, options and what a new image holds.
source "$(dirname "$0")/lib.sh"

# The confirmation line, the sizes info reports, and a clean check.
ok "$PCOW_IMG" create a.pcow 64M
check_out "^Formatting 'a.pcow', fmt=pcow size=67108864 block_size=65536$" "create output"
check_eq "$(info_get a.pcow 'd["virtual-size"]')" $((64 * MiB)) "virtual size"
check_eq "$(info_get a.pcow 'd["block-size"]')" 65536 "default block size"
check_eq "$(info_get a.pcow 'd["allocated-blocks"]')" 0 "blocks of a new image"
check_eq "$(info_get a.pcow 'd["format-specific"]["data"]["layers"]')" 1 "layers of a new image"
check_eq "$(info_get a.pcow '"snapshots" in d or "backing-filename" in d')" false \
    "a new image has neither snapshots nor a backing file"
ok "$PCOW_IMG" check a.pcow
check_out "No errors were found on the image" "check of a new image"
verify a.pcow "0 0 64M"

# Every block size of the matrix, given in bytes or with a suffix, under
# both option names.
for bs in $BLOCK_SIZES; do
    for spec in "block_size=$bs" "block_size=$((bs / 1024))K" "cluster_size=$bs"; do
        rm -f b.pcow
        ok "$PCOW_IMG" create -o "$spec" b.pcow 16M
        check_eq "$(info_get b.pcow 'd["block-size"]')" "$bs" "block size from -o $spec"
    done
done
rm -f b.pcow
ok "$PCOW_IMG" create -o block_size=1G b.pcow 1G
check_eq "$(info_get b.pcow 'd["block-size"]')" $((1 * GiB)) "largest block size"
rm -f b.pcow

# Size suffixes and plain byte counts.
for spec in "512:512" "4096:4096" "1536b:1536" "1k:1024" "3K:3072" "5M:$((5 * MiB))" \
    "2G:$((2 * GiB))" "1T:$((1024 * GiB))"; do
    rm -f s.pcow
    ok "$PCOW_IMG" create s.pcow "${spec%%:*}"
    check_eq "$(info_get s.pcow 'd["virtual-size"]')" "${spec##*:}" "size ${spec%%:*}"
done

# A size that is not a multiple of the block size: the tail block works.
rm -f s.pcow
ok "$PCOW_IMG" create -o block_size=64K s.pcow $((MiB + 512))
pio s.pcow "write -P 0x5c $MiB 512"
verify s.pcow "0x5c $MiB 512" "0 0 $MiB"
ok "$PCOW_IMG" check s.pcow

# -f pcow is accepted; anything else is not.
rm -f f.pcow
ok "$PCOW_IMG" create -f pcow f.pcow 1M
expect_fail --file g.pcow --grep "raw" "$PCOW_IMG" create -f raw g.pcow 1M
check_true "a failed create left g.pcow behind" test ! -e g.pcow

# Creating over an existing file fails and leaves it alone (image or not).
remember a.pcow
expect_fail --file a.pcow "$PCOW_IMG" create a.pcow 1M
assert_unchanged a.pcow
check_eq "$(info_get a.pcow 'd["virtual-size"]')" $((64 * MiB)) "size after a refused re-create"
echo "precious data" >notes.txt
remember notes.txt
expect_fail --file notes.txt "$PCOW_IMG" create notes.txt 1M
assert_unchanged notes.txt

# Missing arguments and bad options fail with one line and create nothing.
expect_fail --file n.pcow --grep "size" "$PCOW_IMG" create n.pcow
expect_fail --nofile "$PCOW_IMG" create
expect_fail --file n.pcow "$PCOW_IMG" create -o block_size=abc n.pcow 1M
expect_fail --file n.pcow "$PCOW_IMG" create -o no_such_option=1 n.pcow 1M
expect_fail --file n.pcow "$PCOW_IMG" create n.pcow 12Q
expect_fail --file n.pcow "$PCOW_IMG" create n.pcow -5
expect_fail --file nodir/n.pcow "$PCOW_IMG" create nodir/n.pcow 1M
check_true "a failed create left n.pcow behind" test ! -e n.pcow

# A backing file needs its format.
mkraw base.raw $MiB
expect_fail --file n.pcow --grep "format" "$PCOW_IMG" create -b base.raw n.pcow
expect_fail --file n.pcow --grep "qcow2" "$PCOW_IMG" create -b base.raw -F qcow2 n.pcow
check_true "a failed create left n.pcow behind" test ! -e n.pcow

# The largest size the format allows is 1 PiB; one sector more is refused
# before anything is written.
expect_fail --file n.pcow --grep "too large" "$PCOW_IMG" create n.pcow $(((1 << 50) + 512))
check_true "a refused create left n.pcow behind" test ! -e n.pcow

# A zero block size or capacity is refused, not taken as the default.
expect_fail --file n.pcow --grep "block size '0'.*power of two from 4 KiB to 1 GiB" \
    "$PCOW_IMG" create -o block_size=0 n.pcow 1M
expect_fail --file n.pcow --grep "block size '6K'" "$PCOW_IMG" create -o block_size=6K n.pcow 1M
expect_fail --file n.pcow --grep "block size '2G'" "$PCOW_IMG" create -o block_size=2G n.pcow 1M
expect_fail --file n.pcow --grep "capacity '0'" "$PCOW_IMG" create -o capacity=0 n.pcow 1M
check_true "a refused create left n.pcow behind" test ! -e n.pcow

# A new name is made durable with its directory: create, and convert to
# pcow and to raw, fsync the directory the file appears in.
if command -v strace >/dev/null; then
    mkdir -p sub
    for cmd in "create -f pcow sub/d.pcow 1M" "convert -O pcow sub/d.pcow sub/e.pcow" \
        "convert -f pcow -O raw sub/d.pcow sub/e.raw"; do
        # shellcheck disable=SC2086  # cmd is words
        ok strace -f -y -o trace -e trace=fsync "$PCOW_IMG" $cmd
        check_true "$cmd: fsync of the directory" grep -q "fsync([0-9]*<$T/sub>)" trace
    done
else
    echo "strace is not installed: whether new names are made durable is not traced"
fi

finish
