#!/bin/bash
# pcow-img rebase: a safe rebase keeps what the guest sees (snapshots
# included); -u only rewrites the name; -b "" removes the backing file.
source "$(dirname "$0")/lib.sh"

SIZE=$((16 * MiB))

# The old backing file: random bytes in [0, 64K), 0x11 in [4M, 4M+128K), a
# small 0x12 piece at 8M+100.  The new one shares the first 32 KiB and the
# piece, differs in [32K, 64K), has nothing in [4M, 4M+128K) and 0x22 in
# [6M, 6M+128K).
make_backing() { # FILE FORMAT old|new
    local specs
    if [[ $3 == old ]]; then
        specs=("0 64K r" "$((4 * MiB)) 128K 0x11" "$((8 * MiB + 100)) 100 0x12")
    else
        specs=("0 64K r" "32K 32K 0x21" "$((6 * MiB)) 128K 0x22"
            "$((8 * MiB + 100)) 100 0x12")
    fi
    if [[ $2 == raw ]]; then
        mkraw "$1" $SIZE "${specs[@]}"
    else
        mkraw "$1.src" $SIZE "${specs[@]}"
        ok "$PCOW_IMG" convert -O pcow -o block_size=4K "$1.src" "$1"
        rm -f "$1.src"
    fi
}

for old_fmt in raw pcow; do
    for new_fmt in raw pcow; do
        old=old-$old_fmt.$old_fmt new=new-$new_fmt.$new_fmt
        [[ -e $old ]] || make_backing "$old" $old_fmt old
        [[ -e $new ]] || make_backing "$new" $new_fmt new
        remember "$old" "$new"
        for bs in $BLOCK_SIZES; do
            tag="$old_fmt -> $new_fmt, bs $bs"
            img=rb-$old_fmt-$new_fmt-$bs.pcow
            ok "$PCOW_IMG" create -o block_size=$bs -b "$old" -F $old_fmt "$img"
            pio "$img" "write -P 0x31 $((4 * MiB + 100 * KiB)) 4K" "write -P 0x32 $((40 * KiB)) 512"
            ok "$PCOW_IMG" snapshot -c s1 "$img"
            pio "$img" "write -P 0x33 $((6 * MiB)) 4K" "write -P 0x34 $((10 * MiB)) 4K"
            ok "$PCOW_IMG" snapshot -c cur "$img"
            ok "$PCOW_IMG" snapshot -a s1 "$img"
            to_raw "$img" s1-before.raw
            ok "$PCOW_IMG" snapshot -a cur "$img"
            to_raw "$img" cur-before.raw

            ok "$PCOW_IMG" rebase -b "$new" -F $new_fmt "$img"
            check_eq "$(info_get "$img" 'd["backing-filename"]')" "$new" "$tag: new backing name"
            check_eq "$(info_get "$img" 'd["backing-filename-format"]')" $new_fmt "$tag: new backing format"
            to_raw "$img" cur-after.raw
            check_same cur-before.raw cur-after.raw "$tag: content after a safe rebase"
            ok "$PCOW_IMG" snapshot -a s1 "$img"
            to_raw "$img" s1-after.raw
            check_same s1-before.raw s1-after.raw "$tag: snapshot content after a safe rebase"
            ok "$PCOW_IMG" check "$img"
            assert_unchanged "$old" "$new"
            rm -f "$img" ./*-before.raw ./*-after.raw
        done
    done
done

# Unsafe rebase: only the name changes; the new backing file shows through
# wherever the image has no data of its own.
ok "$PCOW_IMG" create -b old-raw.raw -F raw u.pcow
pio u.pcow "write -P 0x41 $((4 * MiB)) 64K" "write -P 0x42 $((6 * MiB)) 64K"
n=$(allocated_blocks u.pcow)
ok "$PCOW_IMG" rebase -u -b new-pcow.pcow -F pcow u.pcow
check_eq "$(info_get u.pcow 'd["backing-filename"]')" new-pcow.pcow "backing name after -u"
check_eq "$(info_get u.pcow 'd["backing-filename-format"]')" pcow "backing format after -u"
check_eq "$(allocated_blocks u.pcow)" "$n" "blocks after an unsafe rebase"
verify u.pcow "0x41 $((4 * MiB)) 64K" "0 $((4 * MiB + 64 * KiB)) $((MiB - 64 * KiB))" \
    "0x42 $((6 * MiB)) 64K" "0x22 $((6 * MiB + 64 * KiB)) 64K" \
    "0x21 32K 32K"
# -u works when the old backing file is gone.
mkraw gone.raw $SIZE
ok "$PCOW_IMG" create -b gone.raw -F raw g.pcow
rm gone.raw
ok "$PCOW_IMG" rebase -u -b old-raw.raw -F raw g.pcow
verify g.pcow "0x11 $((4 * MiB)) 128K"

# Removing the backing file: safely (its data is copied in) and unsafely.
for fmt in raw pcow; do
    ok "$PCOW_IMG" create -o block_size=64K -b old-$fmt.$fmt -F $fmt d.pcow
    pio d.pcow "write -P 0x51 $((4 * MiB + 4 * KiB)) 4K"
    to_raw d.pcow before.raw
    ok "$PCOW_IMG" rebase -b "" d.pcow
    check_eq "$(info_get d.pcow '"backing-filename" in d')" false "$fmt: backing name after -b \"\""
    to_raw d.pcow after.raw
    check_same before.raw after.raw "$fmt: content after removing the backing file"
    # 64 KiB of random data, 128 KiB of 0x11 and the 0x12 piece are ours now.
    check_eq "$(allocated_blocks d.pcow)" 4 "$fmt: blocks after removing the backing file"
    ok "$PCOW_IMG" info --backing-chain --output=json d.pcow
    check_eq "$(json 'len(d)' <"$T/.out")" 1 "$fmt: chain length without a backing file"
    ok "$PCOW_IMG" check d.pcow
    rm -f d.pcow before.raw after.raw

    ok "$PCOW_IMG" create -o block_size=64K -b old-$fmt.$fmt -F $fmt d.pcow
    pio d.pcow "write -P 0x51 $((4 * MiB + 4 * KiB)) 4K"
    ok "$PCOW_IMG" rebase -u -b "" d.pcow
    check_eq "$(info_get d.pcow '"backing-filename" in d')" false "$fmt: backing name after -u -b \"\""
    verify d.pcow "0 0 $((4 * MiB))" "0x11 $((4 * MiB)) 4K" "0x51 $((4 * MiB + 4 * KiB)) 4K" \
        "0x11 $((4 * MiB + 8 * KiB)) $((56 * KiB))" "0 $((4 * MiB + 64 * KiB)) $((4 * MiB))" \
        "0 0 64K"
    rm -f d.pcow
done

# A relative new name is resolved against the image's directory.
mkdir -p sub
mkraw sub/nb.raw $SIZE "0 $MiB 0x61"
ok "$PCOW_IMG" create -b ../old-raw.raw -F raw sub/r.pcow
verify sub/r.pcow "0x11 $((4 * MiB)) 128K"
to_raw sub/r.pcow before.raw
ok "$PCOW_IMG" rebase -b nb.raw -F raw sub/r.pcow
to_raw sub/r.pcow after.raw
check_same before.raw after.raw "content after a rebase to a relative name"
ok "$PCOW_IMG" rebase -u -b nb.raw -F raw sub/r.pcow
ok "$PCOW_IMG" rebase -u -b "" sub/r.pcow
ok "$PCOW_IMG" rebase -u -b nb.raw -F raw sub/r.pcow
check_eq "$(info_get sub/r.pcow 'd["backing-filename"]')" nb.raw "backing name after -u round trips"
to_raw sub/r.pcow after.raw
check_same before.raw after.raw "content after -u round trips"
rm -f before.raw after.raw

# Errors leave the image as it was.
ok "$PCOW_IMG" create -b old-raw.raw -F raw e.pcow
pio e.pcow "write -P 0x71 0 4K"
remember e.pcow old-raw.raw
expect_fail --file nothere.raw "$PCOW_IMG" rebase -b nothere.raw -F raw e.pcow
expect_fail --file nothere.pcow "$PCOW_IMG" rebase -b nothere.pcow -F pcow e.pcow
expect_fail --file e.pcow --grep "format" "$PCOW_IMG" rebase -b new-raw.raw e.pcow
expect_fail --file e.pcow --grep "vmdk" "$PCOW_IMG" rebase -b new-raw.raw -F vmdk e.pcow
expect_fail --file e.pcow "$PCOW_IMG" rebase e.pcow
expect_fail --file new-raw.raw "$PCOW_IMG" rebase -b new-raw.raw -F pcow e.pcow
expect_fail --grep "loop" "$PCOW_IMG" rebase -b e.pcow -F pcow e.pcow
expect_fail --file missing.pcow "$PCOW_IMG" rebase -b new-raw.raw -F raw missing.pcow
assert_unchanged e.pcow old-raw.raw
check_eq "$(info_get e.pcow 'd["backing-filename"]')" old-raw.raw "backing name after failed rebases"

# -u refuses a backing loop (the image itself, or a chain back to it) and
# changes nothing; a new backing file that does not exist is allowed.
ok "$PCOW_IMG" create lp.pcow 1M
ok "$PCOW_IMG" create -b lp.pcow -F pcow lp2.pcow
remember lp.pcow
expect_fail --file lp.pcow --grep "loop.*the image itself" "$PCOW_IMG" rebase -u -b lp.pcow -F pcow lp.pcow
expect_fail --file lp.pcow --grep "loop.*comes back" "$PCOW_IMG" rebase -u -b lp2.pcow -F pcow lp.pcow
assert_unchanged lp.pcow
ok "$PCOW_IMG" rebase -u -b notyet.pcow -F pcow lp.pcow
ok "$PCOW_IMG" info lp.pcow
check_out "^backing file: notyet.pcow " "rebase -u onto a file that does not exist"

finish
