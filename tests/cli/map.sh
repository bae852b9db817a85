#!/bin/bash
# pcow-img map and pcow-io map: where each part of the image comes from.
source "$(dirname "$0")/lib.sh"

SIZE=$((32 * MiB))

# The JSON map as "start+length:depth:data:offset" items; checks that the
# runs are sorted, contiguous and cover the whole image.
map_runs() { # IMG
    "$PCOW_IMG" map --output=json -U "$1" | "$PY" -c '
import json, sys
runs = json.load(sys.stdin)
size = int(sys.argv[1])
pos = 0
out = []
for r in runs:
    if r["start"] != pos or r["length"] <= 0:
        print("BAD: run at %d does not follow %d" % (r["start"], pos))
        sys.exit(1)
    # Data is present; a zero run is present only when a layer owns it.
    if r["data"] == r["zero"] or (r["data"] and not r["present"]):
        print("BAD: inconsistent flags at %d" % pos)
        sys.exit(1)
    pos += r["length"]
    d = "%d+%d:%d:%s" % (r["start"], r["length"], r["depth"], "data" if r["data"] else "zero")
    if "offset" in r:
        d += ":%d" % r["offset"]
    out.append(d)
if pos != size:
    print("BAD: runs end at %d, not at %d" % (pos, size))
    sys.exit(1)
print(" ".join(out))
' "$(info_get "$1" 'd["virtual-size"]')"
}

for bs in $BLOCK_SIZES; do
    img=map-$bs.pcow
    stride=$((SIZE + 2 * MiB))   # data span + copy bitmap (docs/format.md 2)
    ok "$PCOW_IMG" create -o block_size=$bs "$img" $SIZE
    check_eq "$(map_runs "$img")" "0+$SIZE:0:zero" "bs $bs: map of an empty image"
    # Blocks 0-1 and 4; a one-byte write still maps its whole block.
    pio "$img" "write -P 1 0 $((2 * bs))" "write -P 2 $((4 * bs + 7)) 1"
    r0=$((2 * MiB))
    check_eq "$(map_runs "$img")" \
        "0+$((2 * bs)):0:data:$r0 $((2 * bs))+$((2 * bs)):0:zero $((4 * bs))+$bs:0:data:$((r0 + 4 * bs)) $((5 * bs))+$((SIZE - 5 * bs)):0:zero" \
        "bs $bs: map after writes"
    # After a snapshot, the old data is one layer down; new writes go to
    # the next region, at the same offset inside it.  What no layer holds
    # was looked for down to the last one, depth 1 (qemu-img's depth).
    ok "$PCOW_IMG" snapshot -c s1 "$img"
    pio "$img" "write -P 3 $bs 1"
    r1=$((2 * MiB + stride))
    check_eq "$(map_runs "$img")" \
        "0+$bs:1:data:$r0 $bs+$bs:0:data:$((r1 + bs)) $((2 * bs))+$((2 * bs)):1:zero $((4 * bs))+$bs:1:data:$((r0 + 4 * bs)) $((5 * bs))+$((SIZE - 5 * bs)):1:zero" \
        "bs $bs: map after a snapshot"
    # A discarded block that a lower layer holds is ours, and reads zeros:
    # present at depth 0 and zero, as qemu-img shows a zero cluster.
    pio "$img" "discard $((4 * bs)) $bs"
    check_eq "$(map_runs "$img" | cut -d' ' -f4)" "$((4 * bs))+$bs:0:zero" \
        "bs $bs: map of a discarded block over a snapshot"
    check_eq "$("$PCOW_IMG" map --output=json "$img" | grep -c "\"start\": $((4 * bs)), .*\"present\": true, \"zero\": true, \"data\": false")" 1 \
        "bs $bs: json: the discarded block is present and zero"
    verify "$img" "0 $((4 * bs)) $bs"

    # Human output: a header, then one line per run with data.
    ok "$PCOW_IMG" map "$img"
    check_eq "$(head -n 1 "$T/.out" | tr -s ' ')" "Offset Length Mapped to File" "bs $bs: map header"
    check_eq "$(wc -l <"$T/.out")" 3 "bs $bs: lines of the human map"
    # qemu-img's "%#-16x": offset 0 is "0", others "0x...".
    check_out "^0 +$(printf '0x%x' $bs) +$(printf '0x%x' $r0) +$img$" "bs $bs: first line of the human map"
    check_out "^$(printf '0x%x' $bs) +$(printf '0x%x' $bs) +$(printf '0x%x' $((r1 + bs))) +$img$" \
        "bs $bs: second line of the human map"

    # pcow-io's map says what the active layer holds.
    pio -r "$img" map
    check_out "^.* \($(printf '0x%x' $bs)\) bytes +allocated at offset .* \($(printf '0x%x' $bs)\)$" \
        "bs $bs: pcow-io map of an allocated run"
    check_out "^.* \($(printf '0x%x' $bs)\) bytes not allocated at offset .* \(0x0\)$" \
        "bs $bs: pcow-io map of an inherited run"
    rm -f "$img"
done

# Backing files: their runs are one level further down, with their own
# file offsets, and the human map names them.  What nothing holds has the
# depth of the last layer searched (2: mm.pcow's raw backing file), as
# qemu-img reports it.
mkraw mb.raw $((8 * MiB)) "1M 64K 0x11"
ok "$PCOW_IMG" create -o block_size=64K -b mb.raw -F raw mm.pcow
ok "$PCOW_IMG" create -o block_size=64K -b mm.pcow -F pcow mt.pcow
pio mm.pcow "write -P 0x12 2M 64K"
pio mt.pcow "write -P 0x13 3M 64K"
check_eq "$(map_runs mt.pcow)" \
    "0+$MiB:2:zero $MiB+$((64 * KiB)):2:data:$MiB $((MiB + 64 * KiB))+$((MiB - 64 * KiB)):2:zero $((2 * MiB))+$((64 * KiB)):1:data:$((4 * MiB)) $((2 * MiB + 64 * KiB))+$((MiB - 64 * KiB)):2:zero $((3 * MiB))+$((64 * KiB)):0:data:$((5 * MiB)) $((3 * MiB + 64 * KiB))+$((5 * MiB - 64 * KiB)):2:zero" \
    "map through a backing chain"
ok "$PCOW_IMG" map mt.pcow
check_out "^0x100000 +0x10000 +0x100000 +(\./)?mb\.raw$" "human map names the raw backing file"
check_out "^0x200000 +0x10000 +0x400000 +(\./)?mm\.pcow$" "human map names the pcow backing file"
check_out "^0x300000 +0x10000 +0x500000 +mt\.pcow$" "human map names the image"

# JSON in qemu-img's layout: one run per line, keys in qemu-img's order,
# "offset" only where there is data.
ok "$PCOW_IMG" map --output=json mt.pcow
check_eq "$(head -n 1 "$T/.out")" \
    '[{ "start": 0, "length": 1048576, "depth": 2, "present": false, "zero": true, "data": false},' \
    "first line of the JSON map"
check_eq "$(sed -n 2p "$T/.out")" \
    '{ "start": 1048576, "length": 65536, "depth": 2, "present": true, "zero": false, "data": true, "offset": 1048576},' \
    "second line of the JSON map"
check_eq "$(wc -l <"$T/.out")" 7 "lines of the JSON map"
check_true "the JSON map ends the array" grep -q '}]$' "$T/.out"

# --start-offset and --max-length (sizes as qemu-img takes them) limit
# the runs to that range, which need not be aligned.
ok "$PCOW_IMG" map --output=json --start-offset 1M --max-length 100k mt.pcow
check_eq "$(cat "$T/.out")" \
    '[{ "start": 1048576, "length": 65536, "depth": 2, "present": true, "zero": false, "data": true, "offset": 1048576},
{ "start": 1114112, "length": 36864, "depth": 2, "present": false, "zero": true, "data": false}]' \
    "map --start-offset --max-length"
ok "$PCOW_IMG" map --output=json --start-offset=0x100 --max-length=1000 mt.pcow
check_eq "$(json '[(r["start"], r["length"]) for r in d]' <"$T/.out")" "[[256, 1000]]" \
    "map of an unaligned range"
ok "$PCOW_IMG" map --start-offset 2.5M mt.pcow
check_eq "$(tail -n +2 "$T/.out" | tr -s ' ' | tr '\n' ';')" "0x300000 0x10000 0x500000 mt.pcow;" \
    "human map from an offset"
ok "$PCOW_IMG" map --output=json --start-offset 8M mt.pcow
check_eq "$(cat "$T/.out")" "[]" "map from the end"
ok "$PCOW_IMG" map --output=json --max-length 0 mt.pcow
check_eq "$(cat "$T/.out")" "[]" "map of no bytes"
expect_fail --nofile --grep "start offset 'x'.*suffix" "$PCOW_IMG" map --start-offset x mt.pcow
expect_fail --nofile --grep "max length '-1'" "$PCOW_IMG" map --max-length -1 mt.pcow

# Options and errors.
ok "$PCOW_IMG" map -U mt.pcow
expect_fail "$PCOW_IMG" map nothere.pcow
expect_fail --nofile "$PCOW_IMG" map --output=xml mt.pcow

# map needs the chain: a missing backing file is one line naming it.
ok "$PCOW_IMG" create mb.pcow 1M
ok "$PCOW_IMG" amend -o backing_file=missing.pcow,backing_fmt=pcow mb.pcow
expect_fail --file missing.pcow --grep "could not open backing file" "$PCOW_IMG" map mb.pcow
expect_fail --file missing.pcow "$PCOW_IMG" map --output=json mb.pcow

finish
