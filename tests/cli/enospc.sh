#!/bin/bash
# A full host file system: writes fail with one clear line (also through
# the mapping, where the store would otherwise raise SIGBUS), the image
# stays consistent (check clean or leaks only) and earlier data survives.
source "$(dirname "$0")/lib.sh"

((EUID == 0)) || skip "mounting a small tmpfs needs root"

MNT=$T/mnt
mkdir -p "$MNT"

# Mounts a fresh 8 MiB tmpfs at $MNT.
fresh_fs() {
    if mountpoint -q "$MNT"; then
        umount "$MNT" || fail "cannot unmount $MNT"
    fi
    mount -t tmpfs -o size=8M tmpfs "$MNT" 2>/dev/null || skip "cannot mount a tmpfs: $(mount -t tmpfs -o size=8M tmpfs "$MNT" 2>&1)"
    [[ " ${CLEANUP_MOUNTS[*]-} " == *" $MNT "* ]] || CLEANUP_MOUNTS+=("$MNT")
}

# check must report a clean image (0) or leaks only (3).
check_consistent() { # IMG DESCRIPTION
    run "$PCOW_IMG" check "$1"
    if ((RC == 0 || RC == 3)); then
        pass
    else
        fail "$2: check exited with $RC"
        show_output
    fi
}

for mode in "" --mmap; do
    tag=${mode:-file}

    # Plain writes until the file system is full.
    fresh_fs
    img=$MNT/full.pcow
    ok "$PCOW_IMG" create -o block_size=64K "$img" 64M
    pio $mode "$img" "write -P 0x5a 0 2M" flush
    expect_fail --grep "no space" "$PCOW_IO" $mode -c "write -P 0x6b 2M 16M" "$img"
    check_consistent "$img" "$tag: after a write into a full file system"
    verify "$img" "0x5a 0 2M"
    verify $mode "$img" "0x5a 0 2M"
    # What did get written reads back as either the new data or zeros.
    "$PCOW_IO" -r -c "read -P 0x6b 2M 64K" "$img" >/dev/null ||
        "$PCOW_IO" -r -c "read -P 0 2M 64K" "$img" >/dev/null ||
        fail "$tag: the first block of the failed write holds neither the new data nor zeros"
    # A new snapshot in a full file system fails cleanly or succeeds.
    run "$PCOW_IMG" snapshot -c s1 "$img"
    snapped=$RC
    if ((RC != 0)); then
        expect_fail --grep "no space" "$PCOW_IMG" snapshot -c s1 "$img"
    fi
    check_consistent "$img" "$tag: after a snapshot in a full file system"
    verify "$img" "0x5a 0 2M"
    # The snapshot holds what the discard below would free (and deleting
    # it needs room to copy its blocks up): fill the file system again
    # without one.
    if ((snapped == 0)); then
        fresh_fs
        ok "$PCOW_IMG" create -o block_size=64K "$img" 64M
        pio $mode "$img" "write -P 0x5a 0 2M" flush
        expect_fail --grep "no space" "$PCOW_IO" $mode -c "write -P 0x6b 2M 16M" "$img"
    fi
    # Discarding makes room again, and the image works as before.
    ok "$PCOW_IMG" check -r leaks "$img"
    pio $mode "$img" "discard 2M 16M" "write -P 0x7c 2M 64K"
    verify "$img" "0x5a 0 2M" "0x7c 2M 64K"
    ok "$PCOW_IMG" check "$img"

    # A copy-up from a snapshot that does not fit: the block keeps the
    # snapshot's data.
    fresh_fs
    img=$MNT/cow.pcow
    ok "$PCOW_IMG" create -o block_size=64K "$img" 16M
    pio "$img" "write -P 0x11 0 1M"
    ok "$PCOW_IMG" snapshot -c s1 "$img"
    pio "$img" "write -P 0x12 1M 64K"
    dd if=/dev/zero of="$MNT/filler" bs=64K status=none 2>/dev/null
    expect_fail --grep "no space" "$PCOW_IO" $mode -c "write -P 0x13 $((64 * KiB + 100)) 1" "$img"
    check_consistent "$img" "$tag: after a copy-up into a full file system"
    verify "$img" "0x11 0 1M" "0x12 1M 64K"
    rm -f "$MNT/filler"
    ok "$PCOW_IMG" check -r leaks "$img"
    pio $mode "$img" "write -P 0x13 $((64 * KiB + 100)) 1"
    verify "$img" "0x11 0 $((64 * KiB + 100))" "0x13 $((64 * KiB + 100)) 1" \
        "0x11 $((64 * KiB + 101)) $((MiB - 64 * KiB - 101))"
    ok "$PCOW_IMG" snapshot -a s1 "$img"
    verify "$img" "0x11 0 1M" "0 1M 64K"
done

# convert into a full file system leaves nothing behind.
fresh_fs
mkraw big.raw $((16 * MiB)) "0 12M r"
expect_fail --grep "no space" --file "$MNT/big.pcow" "$PCOW_IMG" convert -f raw -O pcow big.raw "$MNT/big.pcow"
check_true "a failed convert left big.pcow behind" test ! -e "$MNT/big.pcow"
expect_fail --grep "no space" --file "$MNT/big.raw" "$PCOW_IMG" convert -f raw -O raw big.raw "$MNT/big.raw"
check_true "a failed convert left big.raw behind" test ! -e "$MNT/big.raw"

finish
