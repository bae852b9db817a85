#!/bin/bash
# pcow-img compare: guest-visible content of two images (pcow or raw, either
# side), qemu-img's messages and exit codes (0 identical, 1 different,
# 2 cannot open).
source "$(dirname "$0")/lib.sh"

# compare must exit with RC and print MSG (a line of stdout).
expect_compare() { # RC MSG ARGS...
    local rc=$1 msg=$2
    shift 2
    run "$PCOW_IMG" compare "$@"
    check_eq "$RC" "$rc" "exit code of compare $*"
    if [[ -n $msg ]]; then
        check_true "compare $* prints '$msg' (got: $(tr '\n' '|' <"$T/.out"))" grep -qxF -- "$msg" "$T/.out"
    fi
}

SIZE=$((16 * MiB))
mkraw a.raw $SIZE "0 64K 0x11" "5M 300K r" "$((SIZE - 4 * KiB)) 4K 0x22"
for bs in $BLOCK_SIZES; do
    rm -f a.pcow
    ok "$PCOW_IMG" convert -O pcow -o block_size=$bs a.raw a.pcow
    # Either side may be raw or pcow; formats are probed or given.
    expect_compare 0 "Images are identical." a.raw a.pcow
    expect_compare 0 "Images are identical." a.pcow a.raw
    expect_compare 0 "Images are identical." -f pcow -F raw a.pcow a.raw
    expect_compare 0 "Images are identical." -s a.pcow a.pcow
    # One byte differs: qemu-img names the 512-byte sector it lies in.
    remember a.raw
    pio a.pcow "write -P 0x33 $((5 * MiB + 1000)) 1"
    expect_compare 1 "Content mismatch at offset $((5 * MiB + 512))!" a.raw a.pcow
    expect_compare 1 "Content mismatch at offset $((5 * MiB + 512))!" a.pcow a.raw
    # Data where the other side has a hole.
    pio a.pcow "write -P 0x33 $((5 * MiB + 1000)) 1" "write -P 0x44 $((9 * MiB + 4 * KiB)) 1"
    run "$PCOW_IMG" compare a.raw a.pcow
    check_eq "$RC" 1 "bs $bs: exit code for different images"
    expect_compare 1 "" -q a.raw a.pcow
    check_eq "$(cat "$T/.out")" "" "bs $bs: -q prints nothing"
    assert_unchanged a.raw
done

# Sizes differ: the common part is compared and the rest of the larger image
# must read as zeros, unless -s.
mkraw big.raw $((SIZE + 4 * MiB)) "0 64K 0x11" "5M 300K r" "$((SIZE - 4 * KiB)) 4K 0x22"
ok "$PCOW_IMG" convert -O pcow a.raw a.pcow.2
expect_compare 0 "Images are identical." a.pcow.2 big.raw
check_out "^Warning: Image size mismatch!$" "size mismatch warning"
expect_compare 0 "Images are identical." big.raw a.pcow.2
expect_compare 1 "Strict mode: Image size mismatch!" -s a.pcow.2 big.raw
mkraw big.raw $((SIZE + 4 * MiB)) "$((SIZE + 2 * MiB + 700)) 1 0x55"
ok "$PCOW_IMG" convert -O pcow big.raw big.pcow
mkraw zero.raw $SIZE
expect_compare 1 "Content mismatch at offset $((SIZE + 2 * MiB + 512))!" zero.raw big.pcow
expect_compare 1 "Content mismatch at offset $((SIZE + 2 * MiB + 512))!" big.pcow zero.raw

# -s also compares where data is stored: written zeros are not a hole.
mkraw w.raw $SIZE "1M 64K 0x0"
expect_compare 0 "Images are identical." w.raw zero.raw
expect_compare 1 "Strict mode: Offset $MiB block status mismatch!" -s w.raw zero.raw

# A backing chain compares as what the guest sees.
mkraw base.raw $SIZE "0 1M 0x61" "8M 64K 0x62"
ok "$PCOW_IMG" create -b base.raw -F raw ov.pcow
pio ov.pcow "write -P 0x63 8M 4K"
ok "$PCOW_IMG" snapshot -c s1 ov.pcow
pio ov.pcow "write -P 0x64 12M 4K"
mkraw flat.raw $SIZE "0 1M 0x61" "8M 64K 0x62" "8M 4K 0x63" "12M 4K 0x64"
expect_compare 0 "Images are identical." ov.pcow flat.raw
expect_compare 0 "Images are identical." flat.raw ov.pcow
mkraw flat.raw $SIZE "0 1M 0x61" "8M 64K 0x62" "8M 4K 0x63"
expect_compare 1 "Content mismatch at offset $((12 * MiB))!" ov.pcow flat.raw

# Huge sparse images compare by where their data is, not byte by byte.
ok "$PCOW_IMG" create huge1.pcow 1T
ok "$PCOW_IMG" create -o block_size=2M huge2.pcow 1T
pio huge1.pcow "write -P 7 900G 64K"
pio huge2.pcow "write -P 7 900G 64K"
run timeout 60 "$PCOW_IMG" compare huge1.pcow huge2.pcow
check_eq "$RC" 0 "two 1 TiB sparse images compare identical within 60 s"
pio huge2.pcow "write -P 8 1000G 1"
run timeout 60 "$PCOW_IMG" compare huge1.pcow huge2.pcow
check_eq "$RC" 1 "two 1 TiB sparse images differ"
check_out "^Content mismatch at offset $((1000 * GiB))!$" "mismatch in a 1 TiB image"

# -p prints progress; the result line follows.
expect_compare 0 "" -p a.raw a.raw
check_out "100.00/100%" "compare -p shows progress"

# An image another process holds: only with -U.
hold_start ov.pcow
expect_fail --rc 2 --grep "in use" --file ov.pcow "$PCOW_IMG" compare ov.pcow flat.raw
expect_compare 1 "Content mismatch at offset $((12 * MiB))!" -U ov.pcow flat.raw
hold_stop

# Errors: one line, exit 2 for images that cannot be opened (1 for a bad
# command line, as qemu-img), nothing changed.
remember a.raw ov.pcow
expect_fail --rc 2 --file nothere.raw "$PCOW_IMG" compare -f raw a.raw nothere.raw
expect_fail --rc 2 --file nothere.pcow "$PCOW_IMG" compare nothere.pcow a.raw
expect_fail --rc 2 --grep "bad magic" --file a.raw "$PCOW_IMG" compare -f pcow a.raw ov.pcow
expect_fail --rc 2 --grep "unknown format" --file ov.pcow "$PCOW_IMG" compare -f raw -F vmdk a.raw ov.pcow
expect_fail --rc 1 --nofile --grep "two image file names" "$PCOW_IMG" compare a.raw
expect_fail --rc 1 --nofile --grep "two image file names" "$PCOW_IMG" compare a.raw ov.pcow b.raw
printf 'QFI\xfb\0\0\0\3' >fake.qcow2
truncate -s 1M fake.qcow2
expect_fail --rc 2 --grep "qcow2" --file fake.qcow2 "$PCOW_IMG" compare fake.qcow2 a.raw
assert_unchanged a.raw ov.pcow

# Same verdicts as qemu-img for raw files, where it is installed.
if command -v qemu-img >/dev/null; then
    for pair in "a.raw big.raw" "w.raw zero.raw" "zero.raw big.pcow.raw" "flat.raw base.raw"; do
        # shellcheck disable=SC2086
        set -- $pair
        [[ $2 == big.pcow.raw ]] && to_raw big.pcow big.pcow.raw
        ours=$("$PCOW_IMG" compare "$1" "$2"; echo "rc=$?")
        theirs=$(qemu-img compare -f raw -F raw "$1" "$2"; echo "rc=$?")
        check_eq "$ours" "$theirs" "compare $1 $2 like qemu-img"
    done
fi

finish
