#!/bin/bash
# Internal snapshots: create, list, apply, delete, over every block size,
# with the writes in between done through the file and through the mapping.
source "$(dirname "$0")/lib.sh"

SIZE=$((32 * MiB))

snapshot_names() { # IMG
    "$PCOW_IMG" info --output=json -U "$1" |
        json '" ".join(s["id"] + ":" + s["name"] for s in d.get("snapshots", []))'
}

for bs in $BLOCK_SIZES; do
    for mode in "" --mmap; do
        tag="bs $bs ${mode:-file}"
        img=snap-$bs$mode.pcow
        h=$((bs / 2)) q=$((bs / 4))
        ok "$PCOW_IMG" create -o block_size=$bs "$img" $SIZE

        pio $mode "$img" "write -P 0x11 0 $((2 * bs))"
        ok "$PCOW_IMG" snapshot -c s1 "$img"
        check_eq "$(allocated_blocks "$img")" 0 "$tag: active blocks right after a snapshot"
        # A partial write over an inherited block, and a new block.
        pio $mode "$img" "write -P 0x22 0 $h" "write -P 0x23 $((4 * bs)) $bs"
        check_eq "$(allocated_blocks "$img")" 2 "$tag: active blocks after two writes"
        ok "$PCOW_IMG" snapshot -c s2 "$img"
        pio $mode "$img" "write -P 0x33 $((2 * bs)) $bs" "write -P 0x34 $((bs + h)) $q"

        s1_state=("0x11 0 $((2 * bs))" "0 $((2 * bs)) $((3 * bs))")
        s2_state=("0x22 0 $h" "0x11 $h $((bs + h))" "0 $((2 * bs)) $((2 * bs))"
            "0x23 $((4 * bs)) $bs" "0 $((5 * bs)) $bs")
        cur_state=("0x22 0 $h" "0x11 $h $bs" "0x34 $((bs + h)) $q" "0x11 $((bs + h + q)) $q"
            "0x33 $((2 * bs)) $bs" "0 $((3 * bs)) $bs" "0x23 $((4 * bs)) $bs")
        verify $mode "$img" "${cur_state[@]}"

        ok "$PCOW_IMG" snapshot -l "$img"
        check_out "^1 +s1 " "$tag: snapshot list"
        check_out "^2 +s2 " "$tag: snapshot list"
        check_eq "$(snapshot_names "$img")" "1:s1 2:s2" "$tag: snapshots in info"

        # Going back to s1 keeps s2, and s2 can be applied again after.
        ok "$PCOW_IMG" snapshot -a s1 "$img"
        verify $mode "$img" "${s1_state[@]}"
        check_eq "$(snapshot_names "$img")" "1:s1 2:s2" "$tag: snapshots after applying s1"
        pio $mode "$img" "write -P 0x44 $((bs + 512)) 512"
        ok "$PCOW_IMG" snapshot -a s2 "$img"
        verify $mode "$img" "${s2_state[@]}"
        ok "$PCOW_IMG" snapshot -a 1 "$img"
        verify "$img" "${s1_state[@]}"
        ok "$PCOW_IMG" snapshot -a s2 "$img"
        verify "$img" "${s2_state[@]}"
        ok "$PCOW_IMG" check "$img"

        # Deleting s1, which s2 builds on: s2 keeps all of its data.
        pio $mode "$img" "write -P 0x55 $((3 * bs)) 512"
        ok "$PCOW_IMG" snapshot -d s1 "$img"
        check_eq "$(snapshot_names "$img")" "2:s2" "$tag: snapshots after deleting s1"
        verify $mode "$img" "0x22 0 $h" "0x11 $h $((bs + h))" "0x55 $((3 * bs)) 512" \
            "0x23 $((4 * bs)) $bs"
        ok "$PCOW_IMG" snapshot -a s2 "$img"
        verify "$img" "${s2_state[@]}"
        # Deleting the snapshot the active layer builds on keeps the data.
        pio $mode "$img" "write -P 0x66 $((6 * bs)) $h"
        ok "$PCOW_IMG" snapshot -d s2 "$img"
        check_eq "$(snapshot_names "$img")" "" "$tag: snapshots after deleting s2"
        verify $mode "$img" "${s2_state[@]}" "0x66 $((6 * bs)) $h"
        check_eq "$(info_get "$img" 'd["format-specific"]["data"]["layers"]')" 1 \
            "$tag: layers left after deleting every snapshot"
        ok "$PCOW_IMG" check "$img"
        rm -f "$img"

        # Deleting a snapshot whose data nothing else uses frees its space.
        img=free-$bs$mode.pcow
        ok "$PCOW_IMG" create -o block_size=$bs "$img" $SIZE
        pio $mode "$img" "write -P 0x77 0 $((8 * bs))"
        ok "$PCOW_IMG" snapshot -c old "$img"
        pio $mode "$img" "write -P 0x78 0 $((8 * bs))"
        check_eq "$(info_get "$img" 'd["snapshots"][0]["allocated-size"]')" $((8 * bs)) \
            "$tag: allocated-size of a snapshot"
        before=$(disk_usage "$img")
        ok "$PCOW_IMG" snapshot -d old "$img"
        after=$(disk_usage "$img")
        check_ge $((before - after)) $((8 * bs)) "$tag: bytes freed by deleting a snapshot"
        verify "$img" "0x78 0 $((8 * bs))"
        ok "$PCOW_IMG" check "$img"
        rm -f "$img"
    done
done

# Many snapshots, applied in any order, each with exactly its own data.
ok "$PCOW_IMG" create -o block_size=4K many.pcow 1M
for i in $(seq 1 12); do
    pio many.pcow "write -P $i $((i * 4096)) 4096"
    ok "$PCOW_IMG" snapshot -c "snap $i" many.pcow
done
for i in 7 12 1 5; do
    ok "$PCOW_IMG" snapshot -a "snap $i" many.pcow
    specs=()
    for j in $(seq 1 12); do
        if ((j <= i)); then specs+=("$j $((j * 4096)) 4096"); else specs+=("0 $((j * 4096)) 4096"); fi
    done
    verify many.pcow "${specs[@]}"
done
for i in 3 11 6 1 12; do
    ok "$PCOW_IMG" snapshot -d "snap $i" many.pcow
done
ok "$PCOW_IMG" snapshot -a "snap 9" many.pcow
verify many.pcow "1 4096 4096" "2 8192 4096" "3 12288 4096" "9 $((9 * 4096)) 4096" "0 $((10 * 4096)) 4096"
check_eq "$("$PCOW_IMG" info --output=json many.pcow | json 'len(d["snapshots"])')" 7 "snapshots left"
ok "$PCOW_IMG" check many.pcow

# Ids are never reused: after deleting the newest snapshot the next one
# still gets a new id, and the old id no longer names anything.
ok "$PCOW_IMG" create ids.pcow 1M
ok "$PCOW_IMG" snapshot -c a ids.pcow
ok "$PCOW_IMG" snapshot -c b ids.pcow
ok "$PCOW_IMG" snapshot -d b ids.pcow
ok "$PCOW_IMG" snapshot -c c ids.pcow
check_eq "$(snapshot_names ids.pcow)" "1:a 3:c" "snapshot ids after a delete"
expect_fail --grep "not found" "$PCOW_IMG" snapshot -a 2 ids.pcow

# When the host file system cannot hold another region (ext4 files end at
# 16 TiB, so a 1 TiB image holds 15 layers), a new snapshot fails cleanly,
# and the snapshots there are can still be applied and deleted.
ok "$PCOW_IMG" create lim.pcow 1T
pio lim.pcow "write -P 0x51 0 64K"
limit=""
for i in $(seq 1 20); do
    remember lim.pcow
    run "$PCOW_IMG" snapshot -c "s$i" lim.pcow
    if ((RC != 0)); then
        limit=$i
        break
    fi
done
if [[ -n $limit ]]; then
    expect_fail "$PCOW_IMG" snapshot -c "s$limit" lim.pcow
    assert_unchanged lim.pcow
    ok "$PCOW_IMG" check lim.pcow
    pio lim.pcow "write -P 0x52 64K 64K"
    # Applying needs a free layer for the new active state before the old
    # one is released: at the limit it is refused, with a hint.
    remember lim.pcow
    expect_fail --grep "delete a snapshot" "$PCOW_IMG" snapshot -a s1 lim.pcow
    assert_unchanged lim.pcow
    verify lim.pcow "0x51 0 64K" "0x52 64K 64K"
    ok "$PCOW_IMG" snapshot -d "s$((limit - 1))" lim.pcow
    ok "$PCOW_IMG" snapshot -a s1 lim.pcow
    verify lim.pcow "0x51 0 64K" "0 64K 64K"
    pio lim.pcow "write -P 0x53 64K 64K"
    ok "$PCOW_IMG" snapshot -a s1 lim.pcow
    verify lim.pcow "0x51 0 64K" "0 64K 64K"
    ok "$PCOW_IMG" snapshot -c again lim.pcow
else
    echo "note: 20 snapshots of a 1 TiB image fit in this file system; limit case not reached"
fi
rm -f lim.pcow

# Errors: each fails with one line and leaves the image as it was.
ok "$PCOW_IMG" create e.pcow 4M
pio e.pcow "write -P 0x12 0 64K"
ok "$PCOW_IMG" snapshot -c one e.pcow
pio e.pcow "write -P 0x13 0 4K"
remember e.pcow
expect_fail --grep "exists" "$PCOW_IMG" snapshot -c one e.pcow
expect_fail --grep "not found" "$PCOW_IMG" snapshot -a two e.pcow
expect_fail --grep "not found" "$PCOW_IMG" snapshot -d two e.pcow
expect_fail --grep "not found" "$PCOW_IMG" snapshot -a 42 e.pcow
expect_fail "$PCOW_IMG" snapshot -c "" e.pcow
expect_fail "$PCOW_IMG" snapshot -c "$(printf 'n%.0s' $(seq 256))" e.pcow
expect_fail --file e.pcow "$PCOW_IMG" snapshot -U -c two e.pcow
# -U (force-share) is for reading only, as with qemu-img.
expect_fail --grep "read-only" "$PCOW_IMG" snapshot -U -a one e.pcow
expect_fail --grep "read-only" "$PCOW_IMG" snapshot -U -d one e.pcow
expect_fail --nofile --grep "Cannot mix" "$PCOW_IMG" snapshot -l -d one e.pcow
assert_unchanged e.pcow
verify e.pcow "0x13 0 4K" "0x12 4K 60K"
expect_fail --file missing.pcow "$PCOW_IMG" snapshot -l missing.pcow
# Without an action, snapshot lists (as qemu-img does), with -U too.
ok "$PCOW_IMG" snapshot e.pcow
check_out "^1 +one " "snapshot without an action lists"
ok "$PCOW_IMG" snapshot -U e.pcow
check_out "^1 +one " "snapshot -U without an action lists"
assert_unchanged e.pcow
# The longest name is fine.
long=$(printf 'n%.0s' $(seq 255))
ok "$PCOW_IMG" snapshot -c "$long" e.pcow
check_eq "$(info_get e.pcow 'len(d["snapshots"][1]["name"])')" 255 "longest snapshot name"

# qemu-img's table: its header, and rows whose VM state is empty (pcow
# keeps none): VM SIZE 0 B, VM CLOCK 00:00:00.000, ICOUNT 0.
ok "$PCOW_IMG" snapshot -l e.pcow
check_eq "$(sed -n 2p "$T/.out")" \
    "ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT" "snapshot -l header"
check_out "^1         one                   0 B [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} 00:00:00.000          0$" \
    "snapshot -l row"
# info's JSON snapshots carry qemu-img's keys, icount included.
check_eq "$(info_get e.pcow 'sorted(k for k in d["snapshots"][0] if k != "allocated-size")')" \
    '["date-nsec", "date-sec", "icount", "id", "name", "vm-clock-nsec", "vm-clock-sec", "vm-state-size"]' \
    "keys of info's snapshots"
check_eq "$(info_get e.pcow 'd["snapshots"][0]["icount"]')" 0 "icount of a snapshot"

finish
