#!/bin/bash
# Bad input: damaged or foreign files, invalid create parameters, offsets
# outside the image, files that cannot be written.  Every case fails with
# one line naming the file, a non-zero exit code, and no change to the file.
source "$(dirname "$0")/lib.sh"

SLOT1=262144

# Every verb that opens an image must refuse FILE with a message matching
# ERE and leave it as it was.
refuse_everywhere() { # FILE ERE
    local f=$1 re=$2
    remember "$f"
    expect_fail --grep "$re" "$PCOW_IMG" info "$f"
    expect_fail --grep "$re" "$PCOW_IMG" info --output=json "$f"
    expect_fail --grep "$re" "$PCOW_IMG" info -U --backing-chain "$f"
    expect_fail --grep "$re" "$PCOW_IMG" check "$f"
    expect_fail --grep "$re" "$PCOW_IMG" check -r all "$f"
    expect_fail --grep "$re" "$PCOW_IMG" map "$f"
    expect_fail --grep "$re" "$PCOW_IMG" snapshot -l "$f"
    expect_fail --grep "$re" "$PCOW_IMG" snapshot -c s1 "$f"
    expect_fail --grep "$re" "$PCOW_IMG" rebase -u -b x.raw -F raw "$f"
    expect_fail --grep "$re" "$PCOW_IMG" rebase -b "" "$f"
    expect_fail --grep "$re" --file "$f" "$PCOW_IMG" convert -f pcow -O raw "$f" out.raw
    expect_fail --grep "$re" "$PCOW_IO" -c "read 0 512" "$f"
    expect_fail --grep "$re" "$PCOW_IO" -c "write 0 512" "$f"
    expect_fail --grep "$re" "$PCOW_IO" -r --mmap -c "read 0 512" "$f"
    expect_fail --grep "$re" --file "$f" "$PCOW_IMG" create -b "$f" -F pcow over.pcow
    check_true "a failed convert left out.raw behind" test ! -e out.raw
    check_true "a failed create left over.pcow behind" test ! -e over.pcow
    assert_unchanged "$f"
}

fresh() { # FILE
    rm -f "$1"
    "$PCOW_IMG" create "$1" 4M >/dev/null || fail "cannot create $1"
    "$PCOW_IO" -c "write -P 0x5a 0 64K" "$1" >/dev/null || fail "cannot write $1"
}

# Files that are not pcow images at all.
: >empty.pcow
refuse_everywhere empty.pcow "not a pcow image"
mkraw text.pcow 4096 "0 4096 0x41"
refuse_everywhere text.pcow "not a pcow image|magic"
fresh magic.pcow
# Both slots: the write's session left an older blob in slot 1, which a
# damaged slot 0 falls back to as to a torn one.
poke magic.pcow 0 5843
poke magic.pcow 262144 5843
refuse_everywhere magic.pcow "magic"
mkdir dir.pcow
expect_fail "$PCOW_IMG" info dir.pcow
expect_fail "$PCOW_IO" -c "read 0 1" dir.pcow
expect_fail --grep "no such file" "$PCOW_IMG" info nothere.pcow
expect_fail --grep "no such file" "$PCOW_IO" -c "read 0 1" nothere.pcow

# Truncated images: inside the first metadata slot, and past both slots
# but short of region 0.
for n in 1000 300000; do
    fresh trunc$n.pcow
    truncate -s $n trunc$n.pcow
    refuse_everywhere trunc$n.pcow "truncated"
done
fresh tiny.pcow
truncate -s 100 tiny.pcow
refuse_everywhere tiny.pcow "not a pcow image"

# Header fields, with the checksum recomputed so that the field itself is
# what is refused.  A new image has only slot 0 (a write would add a
# second, older blob in slot 1, which a torn slot 0 falls back to).
header_case() { # NAME OFFSET HEXBYTES ERE
    rm -f "$1.pcow"
    "$PCOW_IMG" create "$1.pcow" 4M >/dev/null || fail "cannot create $1.pcow"
    poke "$1.pcow" "$2" "$3"
    fix_header_crc "$1.pcow"
    refuse_everywhere "$1.pcow" "$4"
}
header_case incompat 16 04 "incompatible feature"      # [R-003]
# The striped bit (1) without a stripe table: damage, not a newer format.
header_case striped 16 02 "stripe table"
header_case incompat63 23 80 "incompatible feature"
header_case version 8 03000000 "version"
header_case blockbits 56 28000000 "block size"
header_case blockbits11 56 0b000000 "block size"
header_case vsize 48 0102000000000000 "virtual size"
header_case vsize0 48 0000000000000000 "virtual size"
header_case layers0 80 00000000 "layer"
header_case layeroff 84 ffff0300 "layer table"
header_case active 96 05000000 "active layer"
header_case bfmt 68 01000000 "backing"
header_case metalen 60 01000400 "header length"

# A checksum mismatch: one byte of the blob changed (in both slots).
fresh crc.pcow
poke crc.pcow 130 ff
poke crc.pcow $((256 * 1024 + 130)) ff
refuse_everywhere crc.pcow "checksum"

# Two slots [R-001]: a damaged newer slot falls back to the older one; a
# damaged older slot does not matter; both damaged fail.
fresh slots.pcow
ok "$PCOW_IMG" snapshot -c s1 slots.pcow   # generation 2, in slot 1
poke slots.pcow 130 ff                       # slot 0 (generation 1)
ok "$PCOW_IMG" snapshot -l slots.pcow
check_out "s1" "snapshot from slot 1 with slot 0 damaged"
poke slots.pcow $((SLOT1 + 130)) ff
refuse_everywhere slots.pcow "checksum"
# Slot 0 without its magic but a valid slot 1: every verb uses slot 1.
fresh slots1.pcow
ok "$PCOW_IMG" snapshot -c s1 slots1.pcow
poke slots1.pcow 0 5858
verify slots1.pcow "0x5a 0 64K"
ok "$PCOW_IMG" snapshot -l slots1.pcow
check_out "s1" "snapshot list from slot 1 with slot 0's magic damaged"
ok "$PCOW_IMG" info slots1.pcow
ok "$PCOW_IMG" info --output=json slots1.pcow
ok "$PCOW_IMG" check slots1.pcow
rm -f slots1.raw
# Probing needs slot 0's magic (tests/cli/untrusted.sh): say -f pcow.
ok "$PCOW_IMG" convert -f pcow -O raw slots1.pcow slots1.raw
check_eq "$(stat -c %s slots1.raw 2>/dev/null)" $((4 * MiB)) "convert of an image whose slot 0 lost its magic"
# Only slot 1 has the magic: its error is the one reported.
fresh slots2.pcow
ok "$PCOW_IMG" snapshot -c s1 slots2.pcow
poke slots2.pcow 0 5858
poke slots2.pcow $((SLOT1 + 130)) ff
expect_fail --grep "checksum" "$PCOW_IMG" info slots2.pcow

# Invalid create parameters.
for b in 3000 2K 2G 6144 512; do
    expect_fail --file n.pcow --grep "block size" "$PCOW_IMG" create -o block_size=$b n.pcow 1M
done
expect_fail --file n.pcow --grep "greater than 0|size" "$PCOW_IMG" create n.pcow 0
expect_fail --file n.pcow --grep "size" "$PCOW_IMG" create n.pcow 99999999999T
expect_fail --file n.pcow --grep "size" "$PCOW_IMG" create n.pcow 18446744073709551616
expect_fail --file n.pcow --grep "size" "$PCOW_IMG" create n.pcow 17179869184G
check_true "a failed create left n.pcow behind" test ! -e n.pcow

# Offsets outside the image, through the file and through the mapping.
fresh range.pcow
remember range.pcow
for mode in "" --mmap; do
    for cmd in "read $((4 * MiB)) 1" "read $((4 * MiB - 511)) 512" "write $((4 * MiB)) 512" \
        "write 0 $((4 * MiB + 1))" "write -P 1 $((4 * MiB - 1)) 2" "discard $((4 * MiB)) 1M" \
        "read 18446744073709551000 1" "write 1 18446744073709551000" "read $((1 << 62)) 4096"; do
        expect_fail --grep "outside" "$PCOW_IO" $mode -c "$cmd" range.pcow
    done
done
for cmd in "read 18446744073709551615 1" "read -1 1" "read 0 1Q" "write 0" "read 0 16E" "write -P 256 0 1" "write -P x 0 1"; do
    expect_fail --nofile "$PCOW_IO" -c "$cmd" range.pcow
done
assert_unchanged range.pcow
verify range.pcow "0x5a 0 64K" "0 64K 64K"

# A file that cannot be written: without write permission (root ignores
# that: then an immutable file, else a read-only bind mount).  Reading still
# works.
fresh ro.pcow
ro=""
if ((EUID != 0)); then
    chmod a-w ro.pcow
    ro=ro.pcow
elif chattr +i ro.pcow 2>/dev/null; then
    CLEANUP_IMMUTABLE+=("$T/ro.pcow")
    ro=ro.pcow
else
    mkdir -p rosrc romnt
    mv ro.pcow rosrc/
    if mount --bind rosrc romnt 2>/dev/null; then
        CLEANUP_MOUNTS+=("$T/romnt")
        if mount -o remount,bind,ro romnt 2>/dev/null; then
            ro=romnt/ro.pcow
        fi
    fi
fi
if [[ -n $ro ]]; then
    remember "$ro"
    expect_fail "$PCOW_IO" -c "write 0 512" "$ro"
    expect_fail "$PCOW_IO" --mmap -c "write 0 512" "$ro"
    expect_fail "$PCOW_IMG" snapshot -c s1 "$ro"
    expect_fail "$PCOW_IMG" rebase -u -b "" "$ro"
    expect_fail --rc 1 "$PCOW_IMG" check -r leaks "$ro"
    ok "$PCOW_IMG" info "$ro"
    ok "$PCOW_IMG" check "$ro"
    verify "$ro" "0x5a 0 64K"
    verify --mmap "$ro" "0x5a 0 64K"
    assert_unchanged "$ro"
else
    echo "SKIP (sub-case): neither chattr +i nor a read-only bind mount works here"
fi

# The same bad input gives the same message whatever the verb (a
# directory once gave "bad magic", "Is a directory" or "could not open").
mkdir adir
: >empty.img
head -c 300K /dev/zero | tr '\0' 'x' >junk.img
mkfifo afifo
for f in adir empty.img junk.img afifo nothere.pcow; do
    msgs=()
    for cmd in "info" "info --output=json" "check" "check -r all" "check --output=json" \
        "snapshot -l" "snapshot -c s" "snapshot -a s" "snapshot -d s" "map" "resize" "commit" \
        "rebase -u -b x.raw -F raw" "amend -o size=1M" "compare -f pcow -F pcow" \
        "measure -f pcow" "convert -f pcow -O raw"; do
        # shellcheck disable=SC2086  # cmd is words
        case $cmd in
            resize) run timeout 10 "$PCOW_IMG" resize "$f" 1M ;;
            compare*) run timeout 10 "$PCOW_IMG" $cmd "$f" "$f" ;;
            convert*) run timeout 10 "$PCOW_IMG" $cmd "$f" out.raw ;;
            *) run timeout 10 "$PCOW_IMG" $cmd "$f" ;;
        esac
        check_true "$cmd $f fails" test "$RC" -ne 0 -a "$RC" -lt 125
        msgs+=("$(cat "$T/.err")")
    done
    check_eq "$(printf '%s\n' "${msgs[@]}" | sort -u | wc -l)" 1 \
        "one message for $f whatever the verb ($(printf '%s\n' "${msgs[@]}" | sort -u | tr '\n' '|'))"
    check_true "the message names $f" grep -qF "pcow-img: $f: " <<<"${msgs[0]}"
done
check_true "a failed convert left out.raw behind" test ! -e out.raw

# Option errors: one "pcow-img: " line in getopt's words, no usage text,
# exit 1, for every verb.
ok "$PCOW_IMG" create opt.pcow 1M
remember opt.pcow
for verb in create info snapshot rebase check convert map commit resize compare measure amend; do
    expect_fail --rc 1 --nofile --grep "^pcow-img: unrecognized option '--bogus'$" \
        "$PCOW_IMG" $verb --bogus opt.pcow 1M
    expect_fail --rc 1 --nofile --grep "^pcow-img: invalid option -- 'Z'$" \
        "$PCOW_IMG" $verb -Z opt.pcow 1M
done
expect_fail --nofile --grep "^pcow-img: option requires an argument -- 'f'$" "$PCOW_IMG" info -f
expect_fail --nofile --grep "^pcow-img: option requires an argument -- 'o'$" "$PCOW_IMG" amend -o
expect_fail --nofile --grep "^pcow-img: option '--output' requires an argument$" "$PCOW_IMG" check --output
expect_fail --nofile --grep "^pcow-img: option '--backing-chain' doesn't allow an argument$" \
    "$PCOW_IMG" info --backing-chain=yes opt.pcow
# A bad letter after a long option is still the letter.
expect_fail --nofile --grep "^pcow-img: invalid option -- 'Z'$" "$PCOW_IMG" info --output=json -UZ opt.pcow
assert_unchanged opt.pcow

# --help lists, for every verb, each option the verb takes.
ok "$PCOW_IMG" --help
help_line() { # VERB
    sed -n "s/^  $1 //p" "$T/.out"
}
for spec in "create -f -q -u -b -F -o" "info -f --output --backing-chain -U" \
    "snapshot -f -q -U -l -c -a -d" "rebase -f -u -p -q -b -F" \
    "check -f -r -p -q -U --output" "convert -f -O -o -n -p -q -U" \
    "map -f --output --start-offset --max-length -U" \
    "commit -f -t -b -d -p -q" "resize --shrink -f -q" "compare -f -F -s -p -q -U" \
    "measure -f -O raw -o -U --output --size" "amend -f -p -q -o help"; do
    read -r verb opts <<<"$spec"
    line=$(help_line "$verb")
    for o in $opts; do
        check_true "--help: $verb lists $o" grep -qE -- "(^|[[ |(])$o([] =|)]|$)" <<<"$line"
    done
done

finish
