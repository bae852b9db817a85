#!/bin/bash
# pcow-io --mmap: the image as one mapping.  Stores into inherited blocks
# copy them up (one fault per block), the number of mappings follows the
# inherited runs and not the blocks written, and what the mapping shows in
# one process matches what a later process reads.
source "$(dirname "$0")/lib.sh"

# One value of the last "stats" output.
stat_of() { # NAME
    awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$T/.out"
}

for bs in $BLOCK_SIZES; do
    tag="bs $bs"
    img=mm-$bs.pcow
    SIZE=$((64 * bs < 32 * MiB ? 32 * MiB : 64 * bs))
    ok "$PCOW_IMG" create -o block_size=$bs "$img" $SIZE

    pio --mmap "$img" stats
    check_eq "$(stat_of vmas) $(stat_of faults) $(stat_of blocks-allocated) $(stat_of blocks-copied)" \
        "1 0 0 0" "$tag: stats of a new image"
    # Blocks 0-2 and 8; stores to blocks nothing else holds do not fault.
    pio --mmap "$img" "write -P 0x11 0 $((3 * bs))" "write -P 0x12 $((8 * bs)) $bs" stats
    check_eq "$(stat_of vmas) $(stat_of faults) $(stat_of blocks-copied)" "1 0 0" \
        "$tag: stats after stores to new blocks"
    check_eq "$(stat_of blocks-allocated)" 4 "$tag: blocks-allocated after stores to 4 blocks"
    check_eq "$(allocated_blocks "$img")" 4 "$tag: allocated-blocks after stores to 4 blocks"
    verify "$img" "0x11 0 $((3 * bs))" "0 $((3 * bs)) $((5 * bs))" "0x12 $((8 * bs)) $bs"

    # The same layout written through the file, then frozen in a snapshot.
    rm -f "$img"
    ok "$PCOW_IMG" create -o block_size=$bs "$img" $SIZE
    pio "$img" "write -P 0x11 0 $((3 * bs))" "write -P 0x12 $((8 * bs)) $bs"
    ok "$PCOW_IMG" snapshot -c s1 "$img"
    # Two inherited runs: read-only mappings split the range in five.
    pio --mmap "$img" stats
    check_eq "$(stat_of vmas) $(stat_of faults) $(stat_of blocks-allocated)" "4 0 0" \
        "$tag: stats with two inherited runs"
    # One store into block 1: one fault, one block copied; reads in the same
    # process see the store and the rest of the copied block.
    pio --mmap "$img" "write -P 0x21 $((bs + 100)) 1" "read -P 0x11 $bs 100" \
        "read -P 0x21 $((bs + 100)) 1" "read -P 0x11 $((bs + 101)) $((bs - 101))" stats
    check_eq "$(stat_of faults) $(stat_of blocks-copied) $(stat_of blocks-allocated)" "1 1 1" \
        "$tag: stats after a store to an inherited block"
    vmas_after_one=$(stat_of vmas)
    # Stores to many new blocks add no mapping and no fault.
    cmds=()
    for i in $(seq 10 2 40); do
        cmds+=("write -P 0x22 $((i * bs)) 512")
    done
    pio --mmap "$img" "write -P 0x21 $((bs + 100)) 1" "${cmds[@]}" stats
    check_eq "$(stat_of vmas)" "$vmas_after_one" "$tag: mappings after stores to 16 new blocks"
    check_eq "$(stat_of faults) $(stat_of blocks-copied)" "0 0" "$tag: faults for new blocks"
    check_eq "$(stat_of blocks-allocated)" 17 "$tag: blocks-allocated after 16 more blocks"
    # A whole-block store over an inherited block, and a discard of one.
    pio --mmap "$img" "write -P 0x23 $((2 * bs)) $bs" "discard $((8 * bs)) $bs" \
        "read -P 0 $((8 * bs)) $bs" "write -P 0x24 $((8 * bs + 512)) 512" "read -P 0 $((8 * bs)) 512" stats
    check_eq "$(stat_of faults)" 1 "$tag: faults after a whole-block store"
    verify "$img" "0x11 0 $bs" "0x11 $bs 100" "0x21 $((bs + 100)) 1" "0x23 $((2 * bs)) $bs" \
        "0 $((8 * bs)) 512" "0x24 $((8 * bs + 512)) 512" "0 $((8 * bs + 1024)) $((bs - 1024))" \
        "0x22 $((10 * bs)) 512" "0x22 $((40 * bs)) 512" "0 $((41 * bs)) $bs"
    ok "$PCOW_IMG" check "$img"
    # The snapshot kept its data through all of it.
    ok "$PCOW_IMG" snapshot -a s1 "$img"
    verify --mmap "$img" "0x11 0 $((3 * bs))" "0 $((3 * bs)) $((5 * bs))" "0x12 $((8 * bs)) $bs" \
        "0 $((10 * bs)) $bs"
    rm -f "$img"
done

# Stores scattered over many inherited runs, last block first: with the
# default mapping budget every run keeps its own mappings; with a tiny
# budget (PCOW_VMA_BUDGET) blocks are copied up in groups and the mappings
# stay few.  Either way every byte ends up right, and the snapshot intact.
for budget in "" 16; do
    tag="budget ${budget:-default}"
    img=scatter.pcow
    rm -f $img
    ok "$PCOW_IMG" create -o block_size=4K $img 16M
    cmds=()
    for i in $(seq 0 4 400); do cmds+=("write -P 0x11 $((i * 4096)) 4096"); done
    pio $img "${cmds[@]}"
    ok "$PCOW_IMG" snapshot -c s1 $img
    cmds=()
    for i in $(seq 402 -6 0); do cmds+=("write -P 0x22 $((i * 4096 + 10)) 1"); done
    PCOW_VMA_BUDGET=$budget pio --mmap $img "${cmds[@]}" stats
    if [[ -n $budget ]]; then
        check_le "$(stat_of vmas)" $((budget + budget * 2 / 3)) "$tag: mappings"
    else
        check_eq "$(stat_of faults) $(stat_of blocks-copied)" "34 34" "$tag: faults and copies"
    fi
    specs=()
    for i in $(seq 0 403); do
        if ((i % 4 == 0)); then
            specs+=("0x11 $((i * 4096)) 10" "0x11 $((i * 4096 + 11)) 4085")
        else
            specs+=("0 $((i * 4096)) 10" "0 $((i * 4096 + 11)) 4085")
        fi
        if ((i % 6 == 0 && i <= 402)); then
            specs+=("0x22 $((i * 4096 + 10)) 1")
        elif ((i % 4 == 0)); then
            specs+=("0x11 $((i * 4096 + 10)) 1")
        else
            specs+=("0 $((i * 4096 + 10)) 1")
        fi
    done
    verify $img "${specs[@]}"
    ok "$PCOW_IMG" check $img
    ok "$PCOW_IMG" snapshot -a s1 $img
    specs=()
    for i in $(seq 0 403); do
        if ((i % 4 == 0)); then specs+=("0x11 $((i * 4096)) 4096"); else specs+=("0 $((i * 4096)) 4096"); fi
    done
    verify --mmap $img "${specs[@]}"
done

# A read-only mapping reads everything and allows no store.
ok "$PCOW_IMG" create ro.pcow 4M
pio ro.pcow "write -P 0x31 0 64K"
ok "$PCOW_IMG" snapshot -c s1 ro.pcow
pio ro.pcow "write -P 0x32 64K 64K"
remember ro.pcow
verify --mmap ro.pcow "0x31 0 64K" "0x32 64K 64K" "0 128K 1M"
pio -r --mmap ro.pcow stats
check_eq "$(stat_of faults)" 0 "faults of a read-only mapping"
expect_fail --grep "read-only" "$PCOW_IO" -r --mmap -c "write -P 1 0 1" ro.pcow
assert_unchanged ro.pcow

# Reading through the mapping changes nothing, on the test directory's file
# system and on tmpfs (where a page fault on a hole of a shared mapping
# would allocate the page): unwritten blocks stay unallocated, and a block
# a backing file holds only a piece of stays inherited.
dirs=("$T")
if ((EUID == 0)) && mkdir -p "$T/tmpfs" && mount -t tmpfs -o size=64M tmpfs "$T/tmpfs" 2>/dev/null; then
    CLEANUP_MOUNTS+=("$T/tmpfs")
    dirs+=("$T/tmpfs")
else
    echo "SKIP (sub-case): cannot mount a tmpfs; mapped reads checked on $T only"
fi
for d in "${dirs[@]}"; do
    tag="reads on $(stat -f -c %T "$d")"
    ok "$PCOW_IMG" create -o block_size=4K "$d/rb.pcow" 8M
    pio "$d/rb.pcow" "write -P 0x61 0 512"
    ok "$PCOW_IMG" create -o block_size=64K -b rb.pcow -F pcow "$d/rt.pcow"
    remember "$d/rb.pcow" "$d/rt.pcow"
    pio -r --mmap "$d/rt.pcow" "read -P 0x61 0 512" "read -P 0 512 $((8 * MiB - 512))"
    pio --mmap "$d/rt.pcow" "read -P 0 32K 1K" "read -P 0 1M 1M"
    if [[ $(stat -f -c %T "$d") == tmpfs ]]; then
        # tmpfs has no shared zero page: a read fault on a hole allocates a
        # zeroed page in the file, so only the content is checked there.
        verify "$d/rt.pcow" "0x61 0 512" "0 512 $((8 * MiB - 512))"
    else
        assert_unchanged "$d/rb.pcow" "$d/rt.pcow"
        check_eq "$(allocated_blocks "$d/rt.pcow")" 0 "$tag: blocks after mapped reads"
    fi
    verify "$d/rt.pcow" "0x61 0 512"
done

# stats needs the mapping.
expect_fail --nofile "$PCOW_IO" -c stats ro.pcow

# What a fault copies: --copy-size around the store, --fault-ahead for
# stores in sequence; pages nothing below holds are never copied.
mkraw cs.raw 1M "0 768K 0x41"
ok "$PCOW_IMG" create -o block_size=4K -b cs.raw -F raw cs.pcow
pio --mmap --copy-size=64K --fault-ahead=0 cs.pcow "write -P 0x42 70000 1" stats
check_eq "$(stat_of faults) $(stat_of blocks-copied)" "1 16" "--copy-size 64K: blocks copied by one store"
pio --mmap --copy-size=4K --fault-ahead=0 cs.pcow "write -P 0x43 256K 128K" stats
check_eq "$(stat_of faults) $(stat_of blocks-copied)" "32 32" "page copies: faults and blocks for 128 KiB"
pio --mmap cs.pcow "write -P 0x44 512K 512K" stats
check_le "$(stat_of faults)" 8 "fault-ahead: faults for 512 KiB in sequence"
check_eq "$(stat_of blocks-copied)" 64 "fault-ahead: only blocks the backing file holds are copied"
verify cs.pcow "0x41 0 70000" "0x42 70000 1" "0x41 70001 $((256 * 1024 - 70001))" "0x43 256K 128K" \
    "0x41 384K 128K" "0x44 512K 512K"
ok "$PCOW_IMG" check cs.pcow
remember cs.pcow
expect_fail --grep "power of two" "$PCOW_IO" --mmap --copy-size 3K -c "write 0 1" cs.pcow
expect_fail --grep "power of two" "$PCOW_IO" --mmap --copy-size 2K -c "write 0 1" cs.pcow
expect_fail --grep "power of two" "$PCOW_IO" --mmap --fault-ahead 100K -c "write 0 1" cs.pcow
expect_fail --nofile --grep "invalid size" "$PCOW_IO" --mmap --copy-size 4Q cs.pcow
expect_fail --nofile --grep "need --mmap" "$PCOW_IO" --copy-size 64K -c "write 0 1" cs.pcow
expect_fail --nofile --grep "need --mmap" "$PCOW_IO" --persist-interval 100 -c "write 0 1" cs.pcow
expect_fail --nofile --grep "invalid interval" "$PCOW_IO" --mmap --persist-interval 5s cs.pcow
expect_fail --nofile --grep "invalid interval" "$PCOW_IO" --mmap --persist-interval -1 cs.pcow
assert_unchanged cs.pcow

# --cow kernel: the kernel copies inherited blocks (no fault), and the
# copies are in the image after exit; --cow needs --mmap and a known mode.
mkraw kc.raw 1M "0 1M 0x51"
ok "$PCOW_IMG" create -o block_size=4K -b kc.raw -F raw kc.pcow
pio --mmap --cow=kernel kc.pcow "write -P 0x52 8K 100" "read -P 0x52 8K 100" stats
check_eq "$(stat_of faults)" 0 "--cow kernel: stores into inherited blocks take no fault"
verify kc.pcow "0x51 0 8K" "0x52 8K 100" "0x51 $((8 * 1024 + 100)) $((1024 * 1024 - 8 * 1024 - 100))"
ok "$PCOW_IMG" check kc.pcow
expect_fail --nofile --grep "need --mmap" "$PCOW_IO" --cow kernel -c "write 0 1" kc.pcow
expect_fail --nofile --grep "kernel or fault" "$PCOW_IO" --mmap --cow both -c "write 0 1" kc.pcow

finish
