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

# Sizes as qemu-img takes them: suffixes of either case, fractions with a
# suffix, hex, and plain byte counts, rounded up to a sector.
for spec in "512:512" "4096:4096" "1536b:1536" "1k:1024" "3K:3072" "5M:$((5 * MiB))" \
    "2G:$((2 * GiB))" "1T:$((1024 * GiB))" "1.5G:$((3 * GiB / 2))" "1.5k:1536" \
    "2.25m:$((9 * MiB / 4))" "0x100000:$MiB" "0X200:512" "1000:1024" "1:512" "010:512" \
    "1.0000001k:1024"; do
    rm -f s.pcow
    ok "$PCOW_IMG" create s.pcow "${spec%%:*}"
    check_eq "$(info_get s.pcow 'd["virtual-size"]')" "${spec##*:}" "size ${spec%%:*}"
done
# What is no size: the error names the suffixes.
for bad in 12Q 1.5 1.5b .5G 1. 0x 0x10k 1e3 1kB "1 G" -5 1G1; do
    expect_fail --file n.pcow --grep "invalid image size '$bad'.*suffix k, M, G, T, P or E" \
        "$PCOW_IMG" create -- n.pcow "$bad"
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

# Creating over an existing file replaces it, as qemu-img does: an image
# (with its data and snapshots) or any other file.  The file keeps its
# mode; no temporary file is left behind.
pio a.pcow "write -P 0x5a 0 64K"
ok "$PCOW_IMG" snapshot -c old a.pcow
chmod 640 a.pcow
ok "$PCOW_IMG" create a.pcow 1M
check_out "^Formatting 'a.pcow', fmt=pcow size=1048576 block_size=65536$" "re-create output"
check_eq "$(info_get a.pcow '[d["virtual-size"], d["allocated-blocks"], "snapshots" in d]')" \
    "[1048576, 0, false]" "a re-created image is new and empty"
check_eq "$(stat -c %a a.pcow)" 640 "mode of a re-created image"
verify a.pcow "0 0 1M"
echo "precious data" >notes.txt
ok "$PCOW_IMG" create -q notes.txt 1M
check_eq "$(info_get notes.txt 'd["virtual-size"]')" 1048576 "an image replacing another file"
check_eq "$(find . -name '.*.??????' | wc -l)" 0 "temporary files left by create"
# Through a symbolic link, the file it points to is replaced, the link stays.
ln -s a.pcow link.pcow
ok "$PCOW_IMG" create -q link.pcow 2M
check_true "the link is still a link" test -L link.pcow
check_eq "$(info_get a.pcow 'd["virtual-size"]')" $((2 * MiB)) "the image behind the link"

# Never over an image in use (its lock, as qemu-img), a directory or
# something that is not a file; a refused create changes nothing.
hold_start a.pcow && {
    remember a.pcow
    expect_fail --file a.pcow --grep "in use" "$PCOW_IMG" create a.pcow 1M
    expect_fail --file link.pcow --grep "in use" "$PCOW_IMG" create link.pcow 1M
    assert_unchanged a.pcow
    hold_stop
}
check_eq "$(find . -name '.*.??????' | wc -l)" 0 "temporary files left by a refused create"
mkdir dir.pcow
expect_fail --file dir.pcow --grep "directory" "$PCOW_IMG" create dir.pcow 1M
expect_fail --file /dev/null --grep "regular file" "$PCOW_IMG" create /dev/null 1M
# A replacement that fails (in the library: too large, no backing file)
# keeps the old file.
remember a.pcow
expect_fail --file a.pcow --grep "too large" "$PCOW_IMG" create a.pcow 2P
expect_fail --file a.pcow --grep "backing" "$PCOW_IMG" create -b nothere.raw -F raw a.pcow
assert_unchanged a.pcow
# An image cannot be its own backing file (through another name either).
expect_fail --file a.pcow --grep "itself" "$PCOW_IMG" create -b a.pcow -F pcow a.pcow
expect_fail --file link.pcow --grep "itself" "$PCOW_IMG" create -b a.pcow -F pcow link.pcow
assert_unchanged a.pcow

# -u: the backing file is not opened, so it need not exist yet; the size
# must then be given.
ok "$PCOW_IMG" create -u -b later.raw -F raw u.pcow 4M
check_eq "$(info_get u.pcow '[d["backing-filename"], d["virtual-size"]]')" \
    "[\"later.raw\", $((4 * MiB))]" "create -u with a missing backing file"
expect_fail --file u2.pcow --grep "size must be given" "$PCOW_IMG" create -u -b later.raw -F raw u2.pcow
check_true "a refused create -u left u2.pcow behind" test ! -e u2.pcow
mkraw later.raw 4M "0 4K 0x77"
verify u.pcow "0x77 0 4K" "0 4K 1M"
# Without -u a missing backing file is an error.
expect_fail --file u3.pcow --grep "nothere.raw" "$PCOW_IMG" create -b nothere.raw -F raw u3.pcow 4M

# -o help (or ?) lists the options, as qemu-img's.
for h in help '?' block_size=4K,help; do
    ok "$PCOW_IMG" create -o "$h"
    check_out "^Supported pcow options:$" "create -o $h"
    check_out "^  block_size=<size> +- " "create -o $h: block_size"
    check_out "^  backing_file=<str> +- " "create -o $h: backing_file"
done
ok "$PCOW_IMG" create -q -o size=3M,block_size=4K o.pcow
check_eq "$(info_get o.pcow '[d["virtual-size"], d["block-size"]]')" "[$((3 * MiB)), 4096]" "create -o size="

# Missing arguments and bad options fail with one line and create nothing.
expect_fail --file n.pcow --grep "size" "$PCOW_IMG" create n.pcow
expect_fail --nofile "$PCOW_IMG" create
expect_fail --file n.pcow "$PCOW_IMG" create -o block_size=abc n.pcow 1M
expect_fail --file n.pcow "$PCOW_IMG" create -o no_such_option=1 n.pcow 1M
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
