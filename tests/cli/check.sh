#!/bin/bash
# pcow-img check: clean images pass, leaks are found (exit 3) and repaired
# with -r leaks, damaged metadata is reported as corruption (exit 2).
source "$(dirname "$0")/lib.sh"

check_json() { # IMG [check options]
    local img=$1
    shift
    "$PCOW_IMG" check --output=json "$@" "$img"
}

# Clean images, in many states, check clean and are not modified by it.
ok "$PCOW_IMG" create -o block_size=4K c1.pcow $((15 * MiB + 512))
pio c1.pcow "write -P 1 0 64K" "write -P 2 $((15 * MiB)) 512"
pio --mmap c1.pcow "write -P 3 $((15 * MiB + 511)) 1" "write -P 3 $((8 * MiB)) 1"
ok "$PCOW_IMG" create -o block_size=2M c2.pcow $((5 * MiB))
pio c2.pcow "write -P 1 $((5 * MiB - 1)) 1" "discard 0 2M"
ok "$PCOW_IMG" snapshot -c s1 c2.pcow
pio c2.pcow "write -P 4 0 512"
ok "$PCOW_IMG" create -b c2.pcow -F pcow c3.pcow
pio c3.pcow "write -P 5 1M 1" "discard 4M 1M"
for img in c1.pcow c2.pcow c3.pcow; do
    remember "$img"
    ok "$PCOW_IMG" check "$img"
    check_out "^No errors were found on the image.$" "check of $img"
    ok "$PCOW_IMG" check -r leaks "$img"
    ok "$PCOW_IMG" check -r all "$img"
    assert_unchanged "$img"
done

# JSON keys of a clean image.
ok "$PCOW_IMG" check --output=json c1.pcow
check_eq "$(json 'sorted(d)' <"$T/.out")" \
    '["allocated-clusters", "check-errors", "corruptions", "filename", "format", "image-end-offset", "leaked-bytes", "leaks", "total-clusters"]' \
    "check JSON keys"
check_eq "$(json '[d["filename"], d["format"], d["leaks"], d["corruptions"], d["check-errors"]]' <"$T/.out")" \
    '["c1.pcow", "pcow", 0, 0, 0]' "check JSON of a clean image"
# qemu-img's allocation figures, in blocks ("clusters"): c1 has 4 KiB
# blocks, 64K + 4K + 4K written at 0, 15M and 8M; the image ends where its
# file must (a file cut there still opens).
check_eq "$(json '[d["total-clusters"], d["allocated-clusters"]]' <"$T/.out")" \
    "[$(((15 * MiB + 512 + 4095) / 4096)), 18]" "check JSON: clusters of c1"
end=$(json 'd["image-end-offset"]' <"$T/.out")
check_eq "$end" "$(stat -c %s c1.pcow)" "check JSON: image end offset of c1"
ok "$PCOW_IMG" check c1.pcow
check_out "^18/3841 = 0\.47% allocated, 0\.00% fragmented, 0\.00% compressed clusters$" \
    "check: allocation line"
check_out "^Image end offset: $end$" "check: image end offset line"
check_eq "$(sed -n 1p "$T/.out")" "No errors were found on the image." "check: the verdict comes first"
ok "$PCOW_IMG" check -q c1.pcow
check_eq "$(wc -c <"$T/.out")" 0 "check -q of a clean image prints nothing"
# An empty image: no allocation line (as qemu-img), but its end.
ok "$PCOW_IMG" create -q empty.pcow 1M
ok "$PCOW_IMG" check empty.pcow
check_true "no allocation line for an empty image" not grep -q "allocated" "$T/.out"
check_out "^Image end offset: [0-9]+$" "check of an empty image: end offset"
# Snapshots add regions: the end moves with them, and stays what the
# file needs.
ok "$PCOW_IMG" check --output=json c2.pcow
check_eq "$(json 'd["image-end-offset"]' <"$T/.out")" "$(stat -c %s c2.pcow)" "image end offset with a snapshot"
check_eq "$(json 'd["total-clusters"]' <"$T/.out")" 3 "total clusters of 5 MiB in 2 MiB blocks"

# A leak in a region no layer uses [R-071]: 2 MiB + 32 MiB lies in region
# 1 (from 2 MiB + 18 MiB: a 16 MiB data span and a 2 MiB bitmap).
for bs in $BLOCK_SIZES; do
    img=leak-$bs.pcow
    ok "$PCOW_IMG" create -o block_size=$bs "$img" $((15 * MiB))
    pio "$img" "write -P 0x21 0 $bs" "write -P 0x22 $((14 * MiB)) 4K"
    dd if=/dev/urandom of="$img" bs=4096 count=3 seek=$(((2 * MiB + 32 * MiB) / 4096)) \
        conv=notrunc status=none
    run "$PCOW_IMG" check "$img"
    check_eq "$RC" 3 "bs $bs: exit code of check with a leak"
    check_out "leaked clusters were found" "bs $bs: check with a leak"
    run check_json "$img"
    check_eq "$RC" 3 "bs $bs: exit code of check --output=json with a leak"
    check_eq "$(json '[d["leaks"] > 0, d["leaked-bytes"], d["corruptions"]]' <"$T/.out")" \
        "[true, 12288, 0]" "bs $bs: check JSON with a leak"
    # Data past the virtual size inside region 0 [R-072] (the last 1 MiB
    # of the data span), unless the block size makes that space part of the last block.
    if ((bs < MiB)); then
        dd if=/dev/urandom of="$img" bs=4096 count=1 seek=$(((2 * MiB + 15 * MiB + 512 * KiB) / 4096)) \
            conv=notrunc status=none
        run check_json "$img"
        check_eq "$(json 'd["leaked-bytes"]' <"$T/.out")" 16384 "bs $bs: leaked bytes with data past the virtual size"
    fi
    # Data between the journal and the first region.
    dd if=/dev/urandom of="$img" bs=4096 count=1 seek=$((MiB / 4096)) conv=notrunc status=none
    run "$PCOW_IMG" check "$img"
    check_eq "$RC" 3 "bs $bs: exit code of check with leaks in three places"

    run check_json "$img" -r leaks
    check_eq "$RC" 0 "bs $bs: exit code of check -r leaks"
    check_eq "$(json '[d["leaks"], d["leaks-fixed"] > 0, d["corruptions"], d["corruptions-fixed"]]' <"$T/.out")" \
        "[0, true, 0, 0]" "bs $bs: check -r leaks JSON"
    # What was freed leaks no more: no leaked-bytes after the repair.
    check_eq "$(json '"leaked-bytes" in d' <"$T/.out")" false "bs $bs: leaked-bytes after a repair"
    ok "$PCOW_IMG" check "$img"
    check_out "^No errors were found on the image.$" "bs $bs: check after the repair"
    verify "$img" "0x21 0 $bs" "0x22 $((14 * MiB)) 4K" "0 $((14 * MiB + 4 * KiB)) $((MiB - 4 * KiB))"
    check_eq "$(allocated_blocks "$img")" 2 "bs $bs: blocks after the repair"
    rm -f "$img"
done

# The human report of a repair, and -r all.
ok "$PCOW_IMG" create r.pcow 4M
dd if=/dev/urandom of=r.pcow bs=4096 count=1 seek=$((MiB / 4096)) conv=notrunc status=none
ok "$PCOW_IMG" check -r all r.pcow
check_out "repaired" "check -r all report"
ok "$PCOW_IMG" check r.pcow

# Every kind of damage, one by one: check_damage.sh.

# Damaged metadata is corruption: exit 2 and one line.
ok "$PCOW_IMG" create bad.pcow 4M
poke bad.pcow 100 ff
remember bad.pcow
expect_fail --rc 2 --grep "checksum" "$PCOW_IMG" check bad.pcow
expect_fail --rc 2 --grep "checksum" "$PCOW_IMG" check -r all bad.pcow
assert_unchanged bad.pcow
expect_fail "$PCOW_IMG" check nothere.pcow
expect_fail --nofile "$PCOW_IMG" check -r everything c1.pcow
expect_fail --nofile "$PCOW_IMG" check --output=xml c1.pcow

# --output=json also when the image cannot be opened: a JSON object naming
# the file and what kept check from running; exit code and the one line on
# stderr as without it.
ok "$PCOW_IMG" create lost.pcow 1M
ok "$PCOW_IMG" rebase -u -b lost-base.raw -F raw lost.pcow
for spec in "2 bad.pcow checksum" "1 nothere.pcow No such file" "1 lost.pcow lost-base.raw"; do
    read -r want img what <<<"$spec"
    expect_fail --rc "$want" --grep "$what" "$PCOW_IMG" check --output=json "$img"
    check_eq "$(json '[d["filename"], d["format"], d["check-errors"], d["corruptions"]]' <"$T/.out")" \
        "[\"$img\", \"pcow\", $((want == 1)), $((want == 2))]" \
        "$img: check --output=json when check cannot run"
    err=$(json 'd["error"]' <"$T/.out")
    check_true "$img: the JSON error is the message" \
        eval '[[ -n $err ]] && grep -qF -- "$err" "$T/.err"'
done

# -q: nothing on success, the problems still; no progress.
ok "$PCOW_IMG" check -q c1.pcow
check_eq "$(cat "$T/.out")" "" "check -q of a clean image"
ok "$PCOW_IMG" check -q -p c1.pcow
check_eq "$(cat "$T/.out")" "" "check -q -p of a clean image"
ok "$PCOW_IMG" create qleak.pcow $((15 * MiB))
pio qleak.pcow "write -P 0x21 0 64K"
dd if=/dev/urandom of=qleak.pcow bs=4096 count=3 seek=$(((2 * MiB + 32 * MiB) / 4096)) \
    conv=notrunc status=none
run "$PCOW_IMG" check -q qleak.pcow
check_eq "$RC" 3 "exit code of check -q with a leak"
check_out "leaked clusters were found" "check -q with a leak"

finish
