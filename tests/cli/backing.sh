#!/bin/bash
# Backing files: raw and pcow backing, chains, relative names, sizes, and
# the errors for missing backing files and loops.  A backing file is never
# written to.
source "$(dirname "$0")/lib.sh"

SIZE=$((32 * MiB))

# Base block size paired with each overlay block size (always a different
# one, so that copy-up crosses block sizes).
base_bs_for() {
    case $1 in
        4096) echo 2097152 ;;
        65536) echo 4096 ;;
        *) echo 65536 ;;
    esac
}

for fmt in raw pcow; do
    for bs in $BLOCK_SIZES; do
        # The base holds 0x11 in overlay blocks 1-3 and a small 0x12 piece
        # inside block 8.
        base=base-$fmt-$bs.$fmt
        if [[ $fmt == raw ]]; then
            mkraw "$base" $SIZE "$bs $((3 * bs)) 0x11" "$((8 * bs + 100)) 100 0x12"
        else
            ok "$PCOW_IMG" create -o block_size="$(base_bs_for $bs)" "$base" $SIZE
            pio "$base" "write -P 0x11 $bs $((3 * bs))" "write -P 0x12 $((8 * bs + 100)) 100"
        fi
        remember "$base"
        for mode in "" --mmap; do
            tag="$fmt backing, bs $bs ${mode:-file}"
            img=ovl-$fmt-$bs$mode.pcow
            ok "$PCOW_IMG" create -o block_size=$bs -b "$base" -F $fmt "$img"
            check_out "backing_file=$base backing_fmt=$fmt" "$tag: create output"
            check_eq "$(info_get "$img" 'd["virtual-size"]')" $SIZE "$tag: size taken from the backing file"
            check_eq "$(info_get "$img" 'd["backing-filename"]')" "$base" "$tag: backing-filename"
            check_eq "$(info_get "$img" 'd["backing-filename-format"]')" $fmt "$tag: backing-filename-format"
            check_eq "$(allocated_blocks "$img")" 0 "$tag: blocks of a new overlay"
            verify $mode "$img" "0 0 $bs" "0x11 $bs $((3 * bs))" "0 $((4 * bs)) $((4 * bs + 100))" \
                "0x12 $((8 * bs + 100)) 100" "0 $((8 * bs + 200)) $((bs - 200))"

            # Stores next to inherited blocks must not hide them.
            pio $mode "$img" "write -P 0x23 5 1" "write -P 0x23 $((4 * bs + 5)) 1"
            verify "$img" "0x11 $bs $((3 * bs))"
            # A store into a block the backing file holds only a piece of.
            pio $mode "$img" "write -P 0x24 $((8 * bs + bs / 2)) 1"
            verify "$img" "0 $((8 * bs)) 100" "0x12 $((8 * bs + 100)) 100" \
                "0 $((8 * bs + 200)) $((bs / 2 - 200))" "0x24 $((8 * bs + bs / 2)) 1"
            # A partial write into an inherited block copies the rest up; a
            # whole-block write replaces it; a discard hides it.
            pio $mode "$img" "write -P 0x21 $((bs + 512)) 1024" "write -P 0x22 $((2 * bs)) $bs" \
                "discard $((3 * bs)) $bs"
            state=("0 0 5" "0x23 5 1" "0 6 $((bs - 6))"
                "0x11 $bs 512" "0x21 $((bs + 512)) 1024" "0x11 $((bs + 1536)) $((bs - 1536))"
                "0x22 $((2 * bs)) $bs" "0 $((3 * bs)) $((bs + 5))" "0x23 $((4 * bs + 5)) 1"
                "0 $((4 * bs + 6)) $((4 * bs + 94))" "0x12 $((8 * bs + 100)) 100"
                "0 $((8 * bs + 200)) $((bs / 2 - 200))" "0x24 $((8 * bs + bs / 2)) 1"
                "0 $((8 * bs + bs / 2 + 1)) $((bs / 2 - 1))")
            verify $mode "$img" "${state[@]}"
            verify "$img" "${state[@]}"
            check_eq "$(allocated_blocks "$img")" 6 "$tag: overlay blocks after the writes"
            ok "$PCOW_IMG" check "$img"
            assert_unchanged "$base"
            rm -f "$img"
        done
    done
done

# A three-deep chain with three block sizes: raw <- 4 KiB <- 64 KiB.
mkraw chain0.raw $SIZE "0 $MiB 0x01"
ok "$PCOW_IMG" create -o block_size=4K -b chain0.raw -F raw chain1.pcow
pio chain1.pcow "write -P 0x02 $((256 * KiB)) $((8 * KiB))" "write -P 0x02 $((2 * MiB)) 4K"
ok "$PCOW_IMG" create -o block_size=64K -b chain1.pcow -F pcow chain2.pcow
pio chain2.pcow "write -P 0x03 $((260 * KiB)) 1K"
remember chain0.raw chain1.pcow
ok "$PCOW_IMG" create -b chain2.pcow -F pcow chain3.pcow
check_eq "$(info_get chain3.pcow 'd["virtual-size"]')" $SIZE "size through a chain"
chain_state=("0x01 0 $((256 * KiB))" "0x02 $((256 * KiB)) 4K" "0x03 $((260 * KiB)) 1K"
    "0x02 $((261 * KiB)) 3K" "0x01 $((264 * KiB)) $((760 * KiB))" "0 $MiB $MiB"
    "0x02 $((2 * MiB)) 4K" "0 $((2 * MiB + 4 * KiB)) 60K")
verify chain3.pcow "${chain_state[@]}"
verify --mmap chain3.pcow "${chain_state[@]}"
remember chain2.pcow
# A one-byte write on top copies the whole 64 KiB block up from three files.
pio chain3.pcow "write -P 0x04 $((300 * KiB)) 1"
verify chain3.pcow "0x01 $((256 * KiB - 4 * KiB)) 4K" "0x02 $((256 * KiB)) 4K" "0x03 $((260 * KiB)) 1K" \
    "0x02 $((261 * KiB)) 3K" "0x01 $((264 * KiB)) $((36 * KiB))" "0x04 $((300 * KiB)) 1" \
    "0x01 $((300 * KiB + 1)) $((20 * KiB - 1))"
pio --mmap chain3.pcow "write -P 0x05 $((2 * MiB + 8 * KiB)) 1"
verify chain3.pcow "0x02 $((2 * MiB)) 4K" "0 $((2 * MiB + 4 * KiB)) 4K" "0x05 $((2 * MiB + 8 * KiB)) 1"
assert_unchanged chain0.raw chain1.pcow chain2.pcow
ok "$PCOW_IMG" info --backing-chain --output=json chain3.pcow
check_eq "$(json '[os.path.normpath(i["filename"]) + ":" + i["format"] for i in d]' <"$T/.out")" \
    '["chain3.pcow:pcow", "chain2.pcow:pcow", "chain1.pcow:pcow", "chain0.raw:raw"]' \
    "info --backing-chain lists every image"
ok "$PCOW_IMG" check chain3.pcow

# Relative backing names resolve against the overlay's directory, whatever
# the current directory; a same-named file in the current directory is not
# used.
mkdir -p sub other
ok "$PCOW_IMG" create -o block_size=4K sub/rb.pcow 8M
pio sub/rb.pcow "write -P 0x31 0 64K"
mkraw rb.pcow $((4 * MiB)) "0 $MiB 0x99"   # a decoy in the current directory
ok "$PCOW_IMG" create -b rb.pcow -F pcow sub/top.pcow
check_eq "$(info_get sub/top.pcow 'd["virtual-size"]')" $((8 * MiB)) "size of sub/rb.pcow, not of ./rb.pcow"
check_eq "$(info_get sub/top.pcow 'd["backing-filename"]')" rb.pcow "relative name stored as given"
(cd other && verify ../sub/top.pcow "0x31 0 64K" "0 64K 64K")
(cd sub && ok "$PCOW_IMG" create -b rb.pcow -F pcow top2.pcow)
(cd / && verify "$T/sub/top2.pcow" "0x31 0 64K")
(cd other && pio ../sub/top2.pcow "write -P 0x32 4K 4K")
(cd other && verify ../sub/top2.pcow "0x31 0 4K" "0x32 4K 4K" "0x31 8K 56K")
ok "$PCOW_IMG" info --backing-chain --output=json sub/top2.pcow
check_eq "$(json 'len(d)' <"$T/.out")" 2 "chain length of a relative chain"
raw_verify rb.pcow "0x99 0 $MiB"

# Explicit sizes: larger than the backing reads zeros past its end,
# smaller hides what lies beyond.
mkraw small.raw $MiB "0 $MiB 0x41"
ok "$PCOW_IMG" create -b small.raw -F raw large.pcow 4M
verify large.pcow "0x41 0 $MiB" "0 $MiB $((3 * MiB))"
pio large.pcow "write -P 0x42 $((MiB - 512)) 1024"
verify large.pcow "0x41 0 $((MiB - 512))" "0x42 $((MiB - 512)) 1024" "0 $((MiB + 512)) $((MiB - 512))"
pio --mmap large.pcow "write -P 0x43 $((3 * MiB)) 512"
verify --mmap large.pcow "0x41 0 $((MiB - 512))" "0x43 $((3 * MiB)) 512"
ok "$PCOW_IMG" create -b small.raw -F raw tiny.pcow 64K
check_eq "$(info_get tiny.pcow 'd["virtual-size"]')" 65536 "explicit size below the backing's"
verify tiny.pcow "0x41 0 64K"
raw_verify small.raw "0x41 0 $MiB"

# A pcow image named as a raw backing file is read as raw bytes; a raw file
# named as a pcow backing file is refused.
ok "$PCOW_IMG" create -b large.pcow -F raw asraw.pcow
check_eq "$(info_get asraw.pcow 'd["virtual-size"]')" "$(stat -c %s large.pcow)" "size of a pcow file read as raw"
verify asraw.pcow "0x50 0 1" "0x43 1 1" "0 $((2 * MiB)) 4K"
expect_fail --file small.raw --grep "magic" "$PCOW_IMG" create -b small.raw -F pcow notpcow.pcow 1M
check_true "a refused create left notpcow.pcow behind" test ! -e notpcow.pcow

# Missing backing files.
expect_fail --file gone.raw "$PCOW_IMG" create -b gone.raw -F raw m.pcow 1M
expect_fail --file gone.pcow "$PCOW_IMG" create -b gone.pcow -F pcow m.pcow
check_true "a failed create left m.pcow behind" test ! -e m.pcow
mkraw gone.raw $MiB
ok "$PCOW_IMG" create -b gone.raw -F raw m1.pcow
ok "$PCOW_IMG" create gone.pcow 1M
ok "$PCOW_IMG" create -b gone.pcow -F pcow m2.pcow
rm -f gone.raw gone.pcow
remember m1.pcow m2.pcow
for img in m1.pcow m2.pcow; do
    b=gone.raw
    [[ $img == m2.pcow ]] && b=gone.pcow
    # info and snapshot -l show the image's own metadata, as qemu-img does
    # without --backing-chain; what needs the chain names the missing file.
    ok "$PCOW_IMG" info $img
    check_out "^backing file: $b " "info of $img without its backing file"
    ok "$PCOW_IMG" info --output=json $img
    check_out "\"backing-filename\": \"$b\"" "info --output=json of $img without its backing file"
    ok "$PCOW_IMG" snapshot -l $img
    expect_fail --file $b --grep "could not open backing file" "$PCOW_IMG" info --backing-chain $img
    expect_fail --file $b --grep "could not open backing file" "$PCOW_IMG" map $img
    # Not a damaged image: check could not run (1), it found no corruption (2).
    expect_fail --file $b --rc 1 "$PCOW_IMG" check $img
    expect_fail --file $b "$PCOW_IMG" convert -O raw $img out.raw
    expect_fail --file $b "$PCOW_IO" -c "read 0 512" $img
    expect_fail --file $b "$PCOW_IO" -c "write 0 512" $img
    expect_fail --file $b "$PCOW_IMG" snapshot -c s $img
done
check_true "a failed convert left out.raw behind" test ! -e out.raw
assert_unchanged m1.pcow m2.pcow

# Loops: rebase and amend refuse to make one, even unsafely, and leave the
# image as it was.
ok "$PCOW_IMG" create A.pcow 1M
ok "$PCOW_IMG" create B.pcow 1M
ok "$PCOW_IMG" create C.pcow 1M
ok "$PCOW_IMG" rebase -u -b B.pcow -F pcow A.pcow
remember A.pcow B.pcow C.pcow
for u in -u ""; do
    expect_fail --file B.pcow --grep "loop.*'A.pcow' comes back" "$PCOW_IMG" rebase $u -b A.pcow -F pcow B.pcow
    expect_fail --file C.pcow --grep "loop.*is the image itself" "$PCOW_IMG" rebase $u -b C.pcow -F pcow C.pcow
    expect_fail --file C.pcow --grep "loop.*is the image itself" "$PCOW_IMG" rebase $u -b ./C.pcow -F raw C.pcow
done
expect_fail --file B.pcow --grep "loop" "$PCOW_IMG" amend -o backing_file=A.pcow,backing_fmt=pcow B.pcow
expect_fail --file C.pcow --grep "loop" "$PCOW_IMG" amend -o backing_file=C.pcow,backing_fmt=pcow C.pcow
assert_unchanged A.pcow B.pcow C.pcow
# A chain that loops without the image is refused too.
ok "$PCOW_IMG" create G.pcow 1M
ok "$PCOW_IMG" rebase -u -b H.pcow -F pcow G.pcow
ok "$PCOW_IMG" create H2.pcow 1M
ok "$PCOW_IMG" rebase -u -b G.pcow -F pcow H2.pcow
mv H2.pcow H.pcow
expect_fail --file C.pcow --grep "loop" "$PCOW_IMG" rebase -u -b H.pcow -F pcow C.pcow
assert_unchanged C.pcow
ok "$PCOW_IMG" info C.pcow

# Loops made behind pcow's back (files renamed): each open fails cleanly.
ok "$PCOW_IMG" create B2.pcow 1M
ok "$PCOW_IMG" rebase -u -b A.pcow -F pcow B2.pcow
mv B2.pcow B.pcow
ok "$PCOW_IMG" create C2.pcow 1M
ok "$PCOW_IMG" rebase -u -b C.pcow -F pcow C2.pcow
mv C2.pcow C.pcow
remember A.pcow B.pcow C.pcow
# info without --backing-chain shows the image itself.
ok "$PCOW_IMG" info A.pcow
check_out "^backing file: B.pcow " "info of an image in a loop"
expect_fail --grep "loop" "$PCOW_IMG" info --backing-chain A.pcow
expect_fail --grep "loop" "$PCOW_IMG" info --backing-chain B.pcow
expect_fail --grep "loop" "$PCOW_IMG" check A.pcow
expect_fail --grep "loop" "$PCOW_IMG" map A.pcow
expect_fail --grep "loop" "$PCOW_IO" -c "read 0 512" A.pcow
expect_fail --grep "loop" "$PCOW_IO" -c "write 0 512" B.pcow
ok "$PCOW_IMG" info C.pcow
expect_fail --grep "loop" "$PCOW_IMG" info --backing-chain C.pcow
expect_fail --grep "loop" "$PCOW_IMG" create -b C.pcow -F pcow D.pcow
check_true "a failed create left D.pcow behind" test ! -e D.pcow
assert_unchanged A.pcow B.pcow C.pcow
# An image naming itself as its raw backing file.
ok "$PCOW_IMG" create E2.pcow 1M
ok "$PCOW_IMG" rebase -u -b E.pcow -F raw E2.pcow
mv E2.pcow E.pcow
expect_fail --grep "loop" "$PCOW_IO" -c "read 0 512" E.pcow
# A loop is broken by rebasing unsafely (which does not open the chain).
ok "$PCOW_IMG" rebase -u -b "" A.pcow
ok "$PCOW_IMG" info --backing-chain B.pcow

finish
