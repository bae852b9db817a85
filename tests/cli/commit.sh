#!/bin/bash
# pcow-img commit: an overlay's data goes into its backing file (pcow or
# raw) or, with -b, into an image further down the chain; the overlay keeps
# showing the same content, and is emptied unless -d (or -b) keeps it.
source "$(dirname "$0")/lib.sh"

SIZE=$((8 * MiB))

# The backing data: random bytes in [0, 64K), 0x11 in [1M, 1M+256K), a
# small 0x12 piece at 3M+100.
BASE_SPECS=("0 64K r" "$((1 * MiB)) 256K 0x11" "$((3 * MiB + 100)) 100 0x12")

make_base() { # FILE raw|pcow [BLOCK_SIZE]
    if [[ $2 == raw ]]; then
        mkraw "$1" $SIZE "${BASE_SPECS[@]}"
    else
        mkraw "$1.src" $SIZE "${BASE_SPECS[@]}"
        ok "$PCOW_IMG" convert -O pcow -o block_size="${3:-4K}" "$1.src" "$1"
        rm -f "$1.src"
    fi
}

# Writes of every kind into an overlay: partial over inherited data, a
# whole block, data where nothing lies below, a discard hiding backing
# data, and a write at the very end.
overlay_writes() { # IMG BLOCK_SIZE
    local bs=$2
    pio "$1" "write -P 0x21 $((16 * KiB + 100)) 3000" \
        "write -P 0x22 $((1 * MiB)) $bs" \
        "write -P 0x23 $((5 * MiB)) $bs" \
        "discard $((1 * MiB + 128 * KiB)) $((2 * bs))" \
        "write -P 0x24 $((SIZE - 512)) 512"
}

# ---- Into the immediate backing file -------------------------------------

for fmt in pcow raw; do
    for bs in 4096 65536 2097152; do
        tag="$fmt backing, bs $bs"
        base=base-$bs.$fmt top=top-$bs-$fmt.pcow
        make_base "$base" $fmt 64K
        ok "$PCOW_IMG" create -o block_size=$bs -b "$base" -F $fmt "$top"
        overlay_writes "$top" $bs
        to_raw "$top" before.raw
        if [[ $fmt == raw ]]; then
            ref=$base
        else
            to_raw "$base" b0.raw
            ref=b0.raw
        fi
        check_true "$tag: the overlay differs from its backing file" not cmp -s before.raw "$ref"

        ok "$PCOW_IMG" commit "$top"
        check_eq "$(cat "$T/.out")" "Image committed." "$tag: output"
        check_eq "$(allocated_blocks "$top")" 0 "$tag: blocks left in the overlay"
        check_eq "$(info_get "$top" 'd["backing-filename"]')" "$base" "$tag: backing name kept"
        to_raw "$top" after.raw
        check_same before.raw after.raw "$tag: the overlay's content after commit"
        if [[ $fmt == raw ]]; then
            check_same before.raw "$base" "$tag: the raw backing file holds the overlay's content"
        else
            to_raw "$base" base.raw
            check_same before.raw base.raw "$tag: the backing file holds the overlay's content"
            ok "$PCOW_IMG" check "$base"
        fi
        ok "$PCOW_IMG" check "$top"
        check_out "No errors" "$tag: check of the emptied overlay"
        # The emptied overlay works as before: a new write, a second commit.
        pio "$top" "write -P 0x25 $((2 * MiB)) 4K"
        ok "$PCOW_IMG" commit -q "$top"
        check_eq "$(cat "$T/.out")" "" "$tag: -q prints nothing"
        verify "$top" "0x25 $((2 * MiB)) 4K" "0x23 $((5 * MiB)) $bs"
        if [[ $fmt == raw ]]; then
            raw_verify "$base" "0x25 $((2 * MiB)) 4K" "0x24 $((SIZE - 512)) 512"
        else
            verify "$base" "0x25 $((2 * MiB)) 4K" "0x24 $((SIZE - 512)) 512"
        fi
        rm -f "$base" "$top" ./*.raw
    done
done

# A pcow backing file with its own raw backing file and a snapshot: the
# commit goes into its active layer, its snapshot and the raw file stay.
mkraw low.raw $SIZE "0 $MiB 0x31"
ok "$PCOW_IMG" create -o block_size=64K -b low.raw -F raw mid.pcow
pio mid.pcow "write -P 0x32 $((2 * MiB)) 64K"
ok "$PCOW_IMG" snapshot -c old mid.pcow
ok "$PCOW_IMG" create -o block_size=4K -b mid.pcow -F pcow top.pcow
pio top.pcow "write -P 0x33 $((512 * KiB)) 4K" "write -P 0x34 $((2 * MiB + 8 * KiB)) 100"
to_raw top.pcow before.raw
remember low.raw
ok "$PCOW_IMG" commit top.pcow
to_raw top.pcow after.raw
check_same before.raw after.raw "committed into a pcow file with a backing file"
to_raw mid.pcow mid.raw
check_same before.raw mid.raw "the pcow backing file's content"
assert_unchanged low.raw
ok "$PCOW_IMG" check mid.pcow
ok "$PCOW_IMG" snapshot -a old mid.pcow
verify mid.pcow "0x31 0 $MiB" "0 $MiB $MiB" "0x32 $((2 * MiB)) 64K"
rm -f low.raw mid.pcow top.pcow ./*.raw

# ---- -d keeps the overlay --------------------------------------------------

make_base base.pcow pcow
ok "$PCOW_IMG" create -o block_size=64K -b base.pcow -F pcow top.pcow
overlay_writes top.pcow 65536
n=$(allocated_blocks top.pcow)
to_raw top.pcow before.raw
ok "$PCOW_IMG" commit -d top.pcow
check_out "^Image committed\.$" "-d: output"
check_eq "$(allocated_blocks top.pcow)" "$n" "-d: blocks the overlay keeps"
to_raw top.pcow after.raw
check_same before.raw after.raw "-d: the overlay's content"
to_raw base.pcow base.raw
check_same before.raw base.raw "-d: the backing file's content"
ok "$PCOW_IMG" check top.pcow
ok "$PCOW_IMG" check base.pcow
rm -f base.pcow top.pcow ./*.raw

# ---- -b BASE through a chain -------------------------------------------------

for fmt in pcow raw; do
    tag="-b into $fmt"
    make_base base.$fmt $fmt
    ok "$PCOW_IMG" create -o block_size=4K -b base.$fmt -F $fmt mid.pcow
    pio mid.pcow "write -P 0x41 $((1 * MiB + 64 * KiB)) 64K" "write -P 0x42 $((4 * MiB)) 4K" \
        "discard 0 8K"
    ok "$PCOW_IMG" create -o block_size=64K -b mid.pcow -F pcow top.pcow
    pio top.pcow "write -P 0x43 $((4 * MiB + 2 * KiB)) 100" "write -P 0x44 $((6 * MiB)) 64K"
    n=$(allocated_blocks top.pcow)
    to_raw top.pcow before.raw
    ok "$PCOW_IMG" commit -b base.$fmt top.pcow
    check_out "^Image committed\.$" "$tag: output"
    check_eq "$(allocated_blocks top.pcow)" "$n" "$tag: -b keeps the overlay"
    to_raw top.pcow after.raw
    check_same before.raw after.raw "$tag: the overlay's content"
    if [[ $fmt == raw ]]; then
        check_same before.raw base.raw "$tag: the base holds the chain's content"
    else
        to_raw base.pcow base.raw
        check_same before.raw base.raw "$tag: the base holds the chain's content"
        ok "$PCOW_IMG" check base.pcow
    fi
    ok "$PCOW_IMG" check top.pcow
    ok "$PCOW_IMG" check mid.pcow
    rm -f base.$fmt mid.pcow top.pcow ./*.raw
done

# -b names the base by the backing name stored in the chain, or by a path
# from the current directory; -b with the immediate backing file keeps the
# overlay too (as qemu-img).
mkdir -p sub
make_base sub/base.pcow pcow
ok "$PCOW_IMG" create -b base.pcow -F pcow sub/mid.pcow
ok "$PCOW_IMG" create -b mid.pcow -F pcow sub/top.pcow
pio sub/top.pcow "write -P 0x51 0 4K"
ok "$PCOW_IMG" commit -b sub/base.pcow sub/top.pcow
verify sub/base.pcow "0x51 0 4K"
pio sub/top.pcow "write -P 0x52 4K 4K"
ok "$PCOW_IMG" commit -b base.pcow sub/top.pcow
verify sub/base.pcow "0x51 0 4K" "0x52 4K 4K"
n=$(allocated_blocks sub/top.pcow)
ok "$PCOW_IMG" commit -b mid.pcow sub/top.pcow
check_eq "$(allocated_blocks sub/top.pcow)" "$n" "-b with the immediate backing file keeps the overlay"
verify sub/mid.pcow "0x51 0 4K" "0x52 4K 4K"
rm -rf sub

# ---- Progress ------------------------------------------------------------------

make_base base.pcow pcow
ok "$PCOW_IMG" create -b base.pcow -F pcow top.pcow
pio top.pcow "write -P 0x61 0 3M"
ok "$PCOW_IMG" commit -p top.pcow
check_out '\(0\.00/100%\)' "-p: progress starts at 0"
check_out '\(33\.33/100%\).*\(66\.67/100%\)' "-p: progress over the 3 MiB"
check_out '\(100\.00/100%\)[[:space:]]*$' "-p: progress ends at 100"
check_eq "$(tail -n 1 "$T/.out")" "Image committed." "-p: the last line"
ok "$PCOW_IMG" commit -p -q top.pcow
check_eq "$(cat "$T/.out")" "" "-p -q prints nothing"
# Nothing to copy: progress is still complete.
ok "$PCOW_IMG" commit -p top.pcow
check_out '\(100\.00/100%\)' "-p with nothing to copy"
verify base.pcow "0x61 0 3M"
rm -f base.pcow top.pcow

# The other long operations take -p too: a safe rebase and check (with or
# without repair); JSON output stays clean.
make_base base.pcow pcow
ok "$PCOW_IMG" create -b base.pcow -F pcow top.pcow
pio top.pcow "write -P 0x62 0 64K"
to_raw top.pcow before.raw
ok "$PCOW_IMG" rebase -p -b "" top.pcow
check_out '\(100\.00/100%\)' "rebase -p: progress"
to_raw top.pcow after.raw
check_same before.raw after.raw "content after rebase -p"
ok "$PCOW_IMG" rebase -p -q -b base.pcow -F pcow top.pcow
check_eq "$(cat "$T/.out")" "" "rebase -p -q prints nothing"
ok "$PCOW_IMG" check -p -r leaks top.pcow
check_out '\(0\.00/100%\).*\(100\.00/100%\)' "check -r leaks -p: progress"
check_out "^No errors were found" "check -r leaks -p: the result"
ok "$PCOW_IMG" check -p top.pcow
check_out '\(100\.00/100%\)' "check -p: progress"
ok "$PCOW_IMG" check -p --output=json top.pcow
check_eq "$(json 'd["leaks"]' <"$T/.out")" 0 "check -p --output=json is JSON"
rm -f base.pcow top.pcow ./*.raw

# ---- A backing file in use -------------------------------------------------------

make_base base.pcow pcow
make_base base.raw raw
ok "$PCOW_IMG" create -b base.pcow -F pcow top.pcow
ok "$PCOW_IMG" create -b base.raw -F raw rtop.pcow
ok "$PCOW_IMG" create -b base.raw -F raw other.pcow
pio top.pcow "write -P 0x71 0 64K"
pio rtop.pcow "write -P 0x72 0 64K"
remember base.pcow top.pcow base.raw rtop.pcow
# A reader in another process holds the pcow backing file...
hold_start -r base.pcow
expect_fail --grep "base.pcow: image is in use" "$PCOW_IMG" commit top.pcow
hold_stop
# ... or a writer does (then the overlay does not even open) ...
hold_start base.pcow
expect_fail --grep "in use" "$PCOW_IMG" commit top.pcow
hold_stop
# ... or another overlay holds the raw backing file.
hold_start -r other.pcow
expect_fail --grep "base.raw: image is in use" "$PCOW_IMG" commit rtop.pcow
hold_stop
assert_unchanged base.pcow top.pcow base.raw rtop.pcow
# An image in between is held by another process.
ok "$PCOW_IMG" create -b top.pcow -F pcow upper.pcow
pio upper.pcow "write -P 0x73 64K 4K"
remember upper.pcow
hold_start -r top.pcow
expect_fail --grep "in use" "$PCOW_IMG" commit -b base.pcow upper.pcow
hold_stop
# (A pcow-io holding top.pcow holds base.pcow too; a bare shared lock on
# top.pcow alone, as pcow takes it, shows that the image in between is
# taken for writing as well.)
"$PY" - top.pcow "$T/.locked" <<'EOF2' &
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hh4xqqi4x", fcntl.F_RDLCK, 0, 0, 1, 0))
open(sys.argv[2], "w").close()
time.sleep(60)
EOF2
locker=$!
CLEANUP_PIDS+=("$locker")
for ((i = 0; i < 100; i++)); do [[ -e $T/.locked ]] && break; sleep 0.05; done
expect_fail --grep "top.pcow: image is in use" "$PCOW_IMG" commit -b base.pcow upper.pcow
kill "$locker"
wait "$locker" 2>/dev/null
assert_unchanged base.pcow top.pcow upper.pcow
# Once free, the commits work.
ok "$PCOW_IMG" commit top.pcow
verify base.pcow "0x71 0 64K"
ok "$PCOW_IMG" commit rtop.pcow
raw_verify base.raw "0x72 0 64K"
rm -f ./*.pcow ./*.raw

# ---- Bad input: one line, non-zero, nothing changed --------------------------------

make_base base.pcow pcow
ok "$PCOW_IMG" create -b base.pcow -F pcow top.pcow
ok "$PCOW_IMG" create -b top.pcow -F pcow upper.pcow
ok "$PCOW_IMG" create -o block_size=4K alone.pcow 4M
pio alone.pcow "write -P 0x81 0 4K"
pio top.pcow "write -P 0x82 0 4K"
pio upper.pcow "write -P 0x83 4K 4K"
make_base other.pcow pcow
remember base.pcow top.pcow upper.pcow alone.pcow other.pcow
expect_fail --grep "does not have a backing file" "$PCOW_IMG" commit alone.pcow
expect_fail --grep "Did not find 'other.pcow'" --file upper.pcow "$PCOW_IMG" commit -b other.pcow upper.pcow
expect_fail --grep "Did not find" --file upper.pcow "$PCOW_IMG" commit -b upper.pcow upper.pcow
expect_fail --grep "Did not find" --file upper.pcow "$PCOW_IMG" commit -b nothere.pcow upper.pcow
expect_fail --file nothere.pcow "$PCOW_IMG" commit nothere.pcow
expect_fail --grep "qcow2" "$PCOW_IMG" commit -f qcow2 top.pcow
expect_fail --nofile "$PCOW_IMG" commit
expect_fail --nofile "$PCOW_IMG" commit top.pcow upper.pcow
assert_unchanged base.pcow top.pcow upper.pcow alone.pcow other.pcow
# Internal snapshots in the image, or in an image in between, would change.
ok "$PCOW_IMG" snapshot -c s1 top.pcow
remember top.pcow
expect_fail --grep "snapshot" "$PCOW_IMG" commit top.pcow
expect_fail --grep "snapshot" --file upper.pcow "$PCOW_IMG" commit -b base.pcow upper.pcow
assert_unchanged base.pcow top.pcow upper.pcow
# Snapshots in the target are fine: commit writes its active layer.
ok "$PCOW_IMG" commit upper.pcow
verify top.pcow "0x82 0 4K" "0x83 4K 4K"
ok "$PCOW_IMG" snapshot -a s1 top.pcow
verify top.pcow "0x82 0 4K"
assert_unchanged base.pcow
# An overlay larger than its pcow backing file, with data past its end.
ok "$PCOW_IMG" create -b base.pcow -F pcow big.pcow $((2 * SIZE))
pio big.pcow "write -P 0x84 $((SIZE + 4 * KiB)) 4K"
remember base.pcow big.pcow
expect_fail --grep "past the end" --file big.pcow "$PCOW_IMG" commit big.pcow
assert_unchanged base.pcow big.pcow
# A raw backing file grows to the overlay's size, as with qemu-img.
mkraw small.raw $MiB "0 4K 0x85"
ok "$PCOW_IMG" create -b small.raw -F raw grow.pcow $((2 * MiB))
pio grow.pcow "write -P 0x86 $((MiB + 4 * KiB)) 4K"
to_raw grow.pcow before.raw
ok "$PCOW_IMG" commit grow.pcow
check_eq "$(stat -c %s small.raw)" $((2 * MiB)) "size of the grown raw backing file"
check_same before.raw small.raw "content of the grown raw backing file"
to_raw grow.pcow after.raw
check_same before.raw after.raw "the overlay's content after growing its backing file"

# -t takes qemu-img's cache modes (and changes nothing); another is refused
# as qemu-img refuses it, before the image is touched.
ok "$PCOW_IMG" create -q -b small.raw -F raw cache.pcow
for mode in none writeback writethrough directsync unsafe; do
    pio cache.pcow "write -P 0x87 0 4K"
    ok "$PCOW_IMG" commit -q -t "$mode" cache.pcow
    raw_verify small.raw "0x87 0 4K"
done
pio cache.pcow "write -P 0x88 0 4K"
remember cache.pcow small.raw
expect_fail --nofile --grep "Invalid cache option: bogus" "$PCOW_IMG" commit -t bogus cache.pcow
assert_unchanged cache.pcow small.raw
# The documentation and the completion know -t.
check_true "README documents commit -t" grep -q 'commit \[-f pcow\] \[-t CACHE\]' "$SRC_DIR/README.md"
check_true "the man page documents commit -t" grep -q 'commit\*.*\*-t\* _CACHE_' "$SRC_DIR/docs/man/pcow-img.1.scd"

finish
