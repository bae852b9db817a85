#!/bin/bash
# Thin provisioning: an image costs what its data costs, each written block
# is counted once, and what was never written reads as zeros.
source "$(dirname "$0")/lib.sh"

TiB=$((1024 * GiB))

# A new 1 TiB image takes at most a few MiB of disk.
ok "$PCOW_IMG" create big.pcow 1T
check_le "$(disk_usage big.pcow)" $((4 * MiB)) "disk usage of a new 1 TiB image"
check_le "$(du -k big.pcow | cut -f1)" 4096 "du -k of a new 1 TiB image"
check_le "$(info_get big.pcow 'd["actual-size"]')" $((4 * MiB)) "actual-size of a new 1 TiB image"
check_eq "$(allocated_blocks big.pcow)" 0 "allocated blocks of a new 1 TiB image"

# A few blocks far apart: exactly that many blocks, that much more disk.
before=$(disk_usage big.pcow)
pio big.pcow "write -P 0x11 0 64K" "write -P 0x22 $((500 * GiB)) 64K" \
    "write -P 0x33 $((TiB - 64 * KiB)) 64K"
check_eq "$(allocated_blocks big.pcow)" 3 "blocks after three block writes"
after=$(disk_usage big.pcow)
check_le $((after - before)) $((3 * 64 * KiB + 64 * KiB)) "disk growth for three 64 KiB blocks"
check_ge $((after - before)) $((3 * 64 * KiB)) "disk growth for three 64 KiB blocks"
verify big.pcow "0x11 0 64K" "0x22 $((500 * GiB)) 64K" "0x33 $((TiB - 64 * KiB)) 64K" \
    "0 64K 1M" "0 $((500 * GiB - MiB)) 1M" "0 $((500 * GiB + 64 * KiB)) 1M" \
    "0 $((700 * GiB)) 4M" "0 $((TiB - 2 * MiB)) $((2 * MiB - 64 * KiB))"
ok "$PCOW_IMG" check big.pcow

# The same through the mapping.
pio --mmap big.pcow "write -P 0x44 $((800 * GiB)) 64K" "read -P 0 $((801 * GiB)) 1M"
check_eq "$(allocated_blocks big.pcow)" 4 "blocks after a mapped block write"
verify --mmap big.pcow "0x44 $((800 * GiB)) 64K" "0 $((900 * GiB)) 1M" "0x11 0 64K"

# Per block size: each kind of write adds exactly the blocks it touches.
for bs in $BLOCK_SIZES; do
    for mode in "" --mmap; do
        img=t$bs$mode.pcow
        ok "$PCOW_IMG" create -o block_size=$bs "$img" 64M
        n=0
        step() { # EXPECTED-NEW-BLOCKS DESCRIPTION CMD
            local before
            before=$(allocated_blocks "$img")
            pio $mode "$img" "$3"
            n=$((n + $1))
            check_eq $(($(allocated_blocks "$img") - before)) "$1" "bs $bs ${mode:-file}: new blocks after $2"
        }
        step 1 "a 1-byte write" "write -P 0x61 $((3 * bs + 7)) 1"
        step 1 "a whole-block write" "write -P 0x62 $((5 * bs)) $bs"
        step 2 "a write across a block boundary" "write -P 0x63 $((8 * bs - 512)) 1024"
        step 0 "rewriting an allocated block" "write -P 0x64 $((5 * bs + 512)) 512"
        step 3 "a three-block write" "write -P 0x65 $((12 * bs)) $((3 * bs))"
        step 1 "a write of the last byte" "write -P 0x66 $((64 * MiB - 1)) 1"
        verify $mode "$img" "0 0 $((3 * bs + 7))" "0x61 $((3 * bs + 7)) 1" \
            "0 $((3 * bs + 8)) $((bs - 8))" "0x62 $((5 * bs)) 512" "0x64 $((5 * bs + 512)) 512" \
            "0x62 $((5 * bs + 1024)) $((bs - 1024))" "0 $((6 * bs)) $((2 * bs - 512))" \
            "0x63 $((8 * bs - 512)) 1024" "0 $((8 * bs + 512)) $((4 * bs - 512))" \
            "0x65 $((12 * bs)) $((3 * bs))" "0 $((15 * bs)) $((bs))" \
            "0x66 $((64 * MiB - 1)) 1" "0 $((64 * MiB - bs)) $((bs - 1))"
        usage=$(disk_usage "$img")
        check_le "$usage" $(((n + 2) * bs + 2 * MiB)) "bs $bs $mode: disk usage for $n blocks"
        ok "$PCOW_IMG" check "$img"
        rm -f "$img"
    done
done

finish
