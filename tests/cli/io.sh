#!/bin/bash
# pcow-io write / read / discard over every block size, through the file
# and through the mapping, and across reopening in the other mode.
source "$(dirname "$0")/lib.sh"

SIZE=$((32 * MiB))

for bs in $BLOCK_SIZES; do
    for mode in "" --mmap; do
        other=--mmap
        [[ -z $mode ]] || other=""
        tag="bs $bs ${mode:-file}"
        img=io-$bs${mode}.pcow
        ok "$PCOW_IMG" create -o block_size=$bs "$img" $SIZE

        # Whole block, piece inside a block, a write across a boundary,
        # the last sector, and a sub-sector write.
        pio $mode "$img" \
            "write -P 0xa1 0 $bs" \
            "write -P 0xa2 $((3 * bs + 512)) 1000" \
            "write -P 0xa3 $((5 * bs - 100)) 200" \
            "write -P 0xa4 $((SIZE - 512)) 512" \
            "write -P 0xa5 $((7 * bs + 3)) 5" \
            "read -P 0xa1 0 $bs" \
            "read -P 0xa2 $((3 * bs + 512)) 1000"
        check_out "^wrote 200/200 bytes at offset $((5 * bs - 100))$" "$tag: write report"
        check_eq "$(allocated_blocks "$img")" 6 "$tag: allocated blocks"
        expected=("0xa1 0 $bs" "0 $bs $((3 * bs - bs + 512))"
            "0xa2 $((3 * bs + 512)) 1000" "0 $((3 * bs + 1512)) $((2 * bs - 1612))"
            "0xa3 $((5 * bs - 100)) 200" "0 $((5 * bs + 100)) $((2 * bs - 97))"
            "0xa5 $((7 * bs + 3)) 5" "0 $((7 * bs + 8)) $((bs - 8))"
            "0 $((8 * bs)) $((SIZE - 8 * bs - 512))" "0xa4 $((SIZE - 512)) 512")
        verify $mode "$img" "${expected[@]}"
        # The other mode, in a new process, sees the same.
        verify $other "$img" "${expected[@]}"

        # A read that fails the pattern says where, and fails.
        run "$PCOW_IO" $mode -r -c "read -P 0xa1 $((bs - 512)) 1024" "$img"
        check_eq "$RC" 1 "$tag: exit code of a failed pattern check"
        check_out "^Pattern verification failed at offset $bs, 1024 bytes$" "$tag: pattern failure report"

        # Overwrites in place, in the other mode.
        pio $other "$img" "write -P 0xb1 $((bs / 2)) 512"
        verify $mode "$img" "0xa1 0 $((bs / 2))" "0xb1 $((bs / 2)) 512" \
            "0xa1 $((bs / 2 + 512)) $((bs / 2 - 512))"
        check_eq "$(allocated_blocks "$img")" 6 "$tag: blocks after an overwrite"

        # Discard: only whole blocks inside the range go.
        n=$(allocated_blocks "$img")
        pio $mode "$img" "discard 1 $bs"
        verify $mode "$img" "0xa1 0 $((bs / 2))"
        check_eq "$(allocated_blocks "$img")" $n "$tag: blocks after discarding a partial block"
        pio $mode "$img" "discard $((3 * bs)) $bs" "read -P 0 $((3 * bs)) $bs"
        check_eq "$(allocated_blocks "$img")" $((n - 1)) "$tag: blocks after discarding one block"
        pio $mode "$img" "discard $((4 * bs - 512)) $((bs + 1024))"
        check_eq "$(allocated_blocks "$img")" $((n - 2)) "$tag: blocks after a discard covering one block"
        verify $mode "$img" "0 $((4 * bs)) $bs" "0xa3 $((5 * bs)) 100" "0 $((5 * bs + 100)) 512"
        verify $other "$img" "0 $((3 * bs)) $((2 * bs))" "0xa1 0 $((bs / 2))" "0xa5 $((7 * bs + 3)) 5"
        # Discarding to the end of the image takes the last block.
        pio $mode "$img" "discard $((SIZE - bs)) $bs"
        verify $other "$img" "0 $((SIZE - bs)) $bs"
        check_eq "$(allocated_blocks "$img")" $((n - 3)) "$tag: blocks after discarding the last block"
        # A block can be written again after a discard.
        pio $mode "$img" "write -P 0xc1 $((3 * bs + bs / 2)) $((bs / 4))"
        verify $other "$img" "0 $((3 * bs)) $((bs / 2))" "0xc1 $((3 * bs + bs / 2)) $((bs / 4))" \
            "0 $((3 * bs + 3 * bs / 4)) $((bs / 4))"
        # Zero-length requests are harmless.
        pio $mode "$img" "write -P 0x99 $bs 0" "read -P 0x99 $bs 0" "discard 0 0"
        verify "$img" "0 $bs $bs"

        pio $mode "$img" flush
        ok "$PCOW_IMG" check "$img"
        rm -f "$img"
    done
done

# A size that is not a multiple of the block size: the partial last block
# is written, read and discarded like any other.
for mode in "" --mmap; do
    img=tail$mode.pcow
    ok "$PCOW_IMG" create -o block_size=2M "$img" $((5 * MiB + 4096))
    pio $mode "$img" "write -P 0x7e $((5 * MiB)) 4096" "write -P 0x7d $((4 * MiB)) $MiB"
    verify "$img" "0x7d $((4 * MiB)) $MiB" "0x7e $((5 * MiB)) 4096"
    check_eq "$(allocated_blocks "$img")" 1 "tail ${mode:-file}: allocated blocks"
    ok "$PCOW_IMG" check "$img"
    pio $mode "$img" "discard $((4 * MiB)) $((MiB + 4096))"
    verify "$img" "0 $((4 * MiB)) $((MiB + 4096))"
    check_eq "$(allocated_blocks "$img")" 0 "tail ${mode:-file}: blocks after discarding the tail"
done

# Commands read from stdin, comments and blank lines included.
ok "$PCOW_IMG" create s.pcow 4M
printf '# a comment\n\nwrite -P 0x42 0 4096\nread -P 0x42 0 4096\n' >cmds
run "$PCOW_IO" s.pcow <cmds
check_eq "$RC" 0 "commands from stdin"
check_out "^read 4096/4096 bytes at offset 0$" "commands from stdin"

# A failed command makes the exit code 1 but the following ones still run.
run "$PCOW_IO" -c "read -P 0x43 0 4096" -c "write -P 0x44 8192 512" s.pcow
check_eq "$RC" 1 "exit code after a failed command"
verify s.pcow "0x44 8192 512"
expect_fail --nofile "$PCOW_IO" -c "frobnicate 0 1" s.pcow

# Writes through a read-only open are refused.
remember s.pcow
expect_fail --file s.pcow --grep "read-only" "$PCOW_IO" -r -c "write 0 512" s.pcow
expect_fail --file s.pcow --grep "read-only" "$PCOW_IO" -r --mmap -c "write 0 512" s.pcow
expect_fail --file s.pcow --grep "read-only" "$PCOW_IO" -r -c "discard 0 1M" s.pcow
assert_unchanged s.pcow

# Option errors and a missing image: one "pcow-io: " line.
expect_fail --nofile --grep "^pcow-io: invalid option -- 'Z'$" "$PCOW_IO" -Z s.pcow
expect_fail --nofile --grep "^pcow-io: unrecognized option '--bogus'$" "$PCOW_IO" --bogus s.pcow
expect_fail --nofile --grep "^pcow-io: option '--cmd' requires an argument$" "$PCOW_IO" s.pcow --cmd
expect_fail --grep "^pcow-io: missing.pcow: " "$PCOW_IO" -c "read 0 512" missing.pcow

finish
