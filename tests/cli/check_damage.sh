#!/bin/bash
# Every kind of damage docs/format.md ("What check finds") lists, made at
# offsets computed from the format: pcow-img check exits 2 (corruption) or
# 3 (leak) and names it; the repair the table gives (-r leaks, -r all)
# leaves an image that checks clean and reads what it should.  Damage
# check cannot repair leaves the image as it was.
source "$(dirname "$0")/lib.sh"

RESERVED=524288
BS=65536

# The image most cases damage: a raw backing file and three layers, so
# that every table of the metadata has entries and blocks are owned every
# way (format.md 4.1).  Layer 0 (snapshot s1), layer 1 (s2), layer 2
# active.  Block 0: a copy-up in layer 2 over the backing file; block 1: a
# copy-up in layer 0; block 16: layer 0's by data (recorded at close);
# block 32: layer 1's.
build() { # IMG
    rm -f "$1"
    [[ -e base.raw ]] || mkraw base.raw 4M "0 128K 0x11"
    ok "$PCOW_IMG" create -q -o block_size=$BS -b base.raw -F raw "$1"
    pio "$1" "write -P 0x21 64K 64K" "write -P 0x22 1M 64K"
    ok "$PCOW_IMG" snapshot -c s1 "$1"
    pio "$1" "write -P 0x23 2M 64K"
    ok "$PCOW_IMG" snapshot -c s2 "$1"
    pio "$1" "write -P 0x24 0 4K"
}
CONTENT=("0x24 0 4K" "0x11 4K 60K" "0x21 64K 64K" "0 128K 896K" "0x22 1M 64K"
    "0 $((MiB + BS)) $((MiB - BS))" "0x23 2M 64K" "0 $((2 * MiB + BS)) $((2 * MiB - BS))")

# check exits RC, and its report matches ERE.
expect_check() { # IMG RC ERE WHAT
    run "$PCOW_IMG" check "$1"
    check_eq "$RC" "$2" "$4: exit code of check"
    check_out "$3" "$4: check names the damage"
}

# The repair leaves nothing for check to find.
repaired() { # IMG -r-ARG WHAT
    run "$PCOW_IMG" check -r "$2" "$1"
    check_eq "$RC" 0 "$3: exit code of check -r $2"
    check_out "repaired" "$3: check -r $2 reports the repair"
    ok "$PCOW_IMG" check "$1"
    check_out "^No errors were found on the image.$" "$3: check after the repair"
}

# ORs SET into, and clears CLEAR from, the little-endian word at OFF.
word() { # IMG OFF SET CLEAR
    "$PY" - "$@" <<'EOF' || fail "word $* failed"
import struct, sys
with open(sys.argv[1], "r+b") as f:
    off = int(sys.argv[2], 0)
    f.seek(off)
    (w,) = struct.unpack("<Q", f.read(8))
    f.seek(off)
    f.write(struct.pack("<Q", (w | int(sys.argv[3], 0)) & ~int(sys.argv[4], 0)))
EOF
}

word_of() { # IMG OFF
    "$PY" -c 'import struct, sys
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2]))
print(hex(struct.unpack("<Q", f.read(8))[0]))' "$@"
}

# True when [OFF, OFF+LEN) of FILE holds no data extent.
no_data() { # FILE OFF LEN
    "$PY" -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
off, ln = int(sys.argv[2]), int(sys.argv[3])
try:
    d = os.lseek(fd, off, os.SEEK_DATA)
except OSError:
    d = off + ln
sys.exit(0 if d >= off + ln else 1)' "$@"
}

# ---- Metadata (format.md 3): the image does not open ----------------------
#
# The blob in force is edited and its checksum recomputed, so that the rule
# broken is what check finds.  The image has two slots; the older, valid
# one must not be used instead [R-003].  check -r all cannot repair the
# metadata and changes nothing.
build pristine.pcow
meta_case() { # NAME RC ERE CODE
    local img=meta-$1.pcow want_corrupt=$(($2 == 2))
    cp pristine.pcow "$img"
    meta_edit "$img" "$4"
    remember "$img"
    expect_fail --rc "$2" --grep "$3" "$PCOW_IMG" check "$img"
    expect_fail --rc "$2" --grep "$3" "$PCOW_IMG" check --output=json "$img"
    check_eq "$(json 'd["corruptions"]' <"$T/.out")" $want_corrupt "$1: corruptions in check's JSON"
    expect_fail --rc "$2" --grep "$3" "$PCOW_IMG" check -r all "$img"
    assert_unchanged "$img"
    rm -f "$img"
}
# One case a line: NAME :: EXIT :: what check says (ERE) :: the edit.
while read -r line <&3; do
    [[ -z $line || $line == "#"* ]] && continue
    line=${line%%   #*}
    IFS=@ read -r name rc ere code <<<"${line// :: /@}"
    meta_case "$name" "$rc" "$ere" "$code"
done 3<<'EOF'
# [R-011] [R-012] every offset and length inside the blob, counts bounded
lt-outside :: 2 :: invalid layer table :: p32(84, u32(60) - 8)
layers0 :: 2 :: invalid layer table :: p32(80, 0)
layers1025 :: 2 :: invalid layer table :: b.extend(bytes(16400)); p32(60, len(b)); p32(84, len(b) - 16400); p32(80, 1025)
st-outside :: 2 :: invalid snapshot table :: p32(92, u32(60) - 40)
snaps1024 :: 2 :: invalid snapshot table :: b.extend(bytes(32768)); p32(60, len(b)); p32(92, len(b) - 32768); p32(88, 1024)
hdrlen-short :: 2 :: header length :: p32(12, 64)
hdrlen-long :: 2 :: header length :: p32(12, u32(60) + 1)
# regions, parents, the active layer, flags
region4096 :: 2 :: region 4096 out of range :: p32(lt, 4096)
region-twice :: 2 :: region [0-9]+ used twice :: p32(lt + 16, layers[0][0])
parent-range :: 2 :: parent 9 out of range :: p32(lt + 4, 9)
parent-loop :: 2 :: parent loop :: p32(lt + 4, 1)
active-range :: 2 :: active layer 3 out of range :: p32(96, 3)
active-leaf :: 2 :: its parent is the active layer :: p32(96, 1)   # [R-014]
flags :: 2 :: unknown flags :: p32(lt + 8, 2)
# [R-005] the dirty bit says exactly whether a layer is flagged
dirty-no-flag :: 2 :: dirty bit disagrees :: p64(16, u64(16) | 1)
flag-no-dirty :: 2 :: dirty bit disagrees :: p32(lt + 16 * active + 8, 1)
# snapshots [R-041]
snap-active :: 2 :: snapshot 1: invalid layer :: p32(st + 4, active)
snap-layer :: 2 :: snapshot 1: invalid layer :: p32(st + 4, 7)
snap-shared :: 2 :: two snapshots :: p32(st + 36, snaps[0][1])
snap-id0 :: 2 :: snapshot id 0 out of range :: p32(st, 0)
snap-id-next :: 2 :: snapshot id [0-9]+ out of range :: p32(st, u32(100))
snap-id-twice :: 2 :: snapshot id 1 used twice :: p32(st + 32, snaps[0][0])
snap-name-twice :: 2 :: name 's1' used twice :: b[u32(st + 52) + 1] = ord("1")
snap-name-empty :: 2 :: invalid snapshot entry :: p32(st + 24, 0)
snap-name-long :: 2 :: invalid snapshot entry :: b.extend(b"x" * 256); p32(60, len(b)); p32(st + 20, len(b) - 256); p32(st + 24, 256)
snap-name-nul :: 2 :: invalid snapshot entry :: b[u32(st + 20)] = 0
snap-name-outside :: 2 :: invalid snapshot entry :: p32(st + 20, 0xfffffff0)
snap-nsec :: 2 :: invalid snapshot entry :: p32(st + 16, 10**9)
# the backing file's name and format
backing-long :: 2 :: invalid backing file name :: b.extend(b"x" * 4096); p32(60, len(b)); p32(72, len(b) - 4096); p32(76, 4096)
backing-outside :: 2 :: invalid backing file name :: p32(72, 0xfffffff0)
backing-nul :: 2 :: invalid backing file name :: b[u32(72) + 1] = 0
backing-format :: 2 :: invalid backing file format 3 :: p32(68, 3)
backing-noformat :: 2 :: invalid backing file format 0 :: p32(68, 0)
backing-noname :: 2 :: backing format set without a backing file :: p32(76, 0)
# [R-004] the layout
base-align :: 2 :: invalid region base :: p64(104, base + 4096)
base-low :: 2 :: invalid region base :: p64(104, 0)
base-huge :: 2 :: invalid region base :: p64(104, (1 << 63) - (2 << 20))
cap-small :: 2 :: invalid data capacity :: p64(112, 2 << 20)
cap-align :: 2 :: invalid data capacity :: p64(112, cap + 4096)
cap-huge :: 2 :: invalid data capacity :: p64(112, 1 << 51)
vsize0 :: 2 :: invalid virtual size :: p64(48, 0)
vsize-512 :: 2 :: invalid virtual size :: p64(48, vsize - 100)
vsize-huge :: 2 :: invalid virtual size :: p64(48, (1 << 50) + 512)
block-small :: 2 :: block size 2\^11 :: p32(56, 11)
block-large :: 2 :: block size 2\^31 :: p32(56, 31)
# [R-003] a newer format is no damage: check says so (63), as qemu-img
version3 :: 63 :: needs a newer pcow :: p32(8, 3)
incompat :: 63 :: needs a newer pcow :: p64(16, u64(16) | 4)
EOF

# No intact slot: a changed byte in each [R-010].
cp pristine.pcow crc.pcow
poke crc.pcow 130 ff
poke crc.pcow $((256 * KiB + 130)) ff
remember crc.pcow
expect_fail --rc 2 --grep "checksum" "$PCOW_IMG" check crc.pcow
expect_fail --rc 2 --grep "checksum" "$PCOW_IMG" check -r all crc.pcow
assert_unchanged crc.pcow

# Both slots valid with one generation: the slot in force copied over
# the other, each way [R-078].
for from in 0 1; do
    cp pristine.pcow twin$from.pcow
    dd if=pristine.pcow of=twin$from.pcow bs=256K skip=$from seek=$((1 - from)) \
        count=1 conv=notrunc status=none
    remember twin$from.pcow
    expect_fail --rc 2 --grep "both metadata slots claim generation" \
        "$PCOW_IMG" check twin$from.pcow
    expect_fail --rc 2 --grep "both metadata slots" "$PCOW_IMG" check -r all twin$from.pcow
    assert_unchanged twin$from.pcow
done

# A file shorter than the layers' regions [R-020].
cp pristine.pcow short.pcow
truncate -s $(($(meta short.pcow 'region(3)') - 4096)) short.pcow
remember short.pcow
expect_fail --rc 2 --grep "truncated" "$PCOW_IMG" check short.pcow
expect_fail --rc 2 --grep "truncated" "$PCOW_IMG" check -r all short.pcow
assert_unchanged short.pcow

# ---- Ownership (format.md 4.1) --------------------------------------------

# [R-047] A block a recorded layer owns by its data alone: block 16 of
# layer 0 without its bit.  Corruption: -r leaks leaves it, -r all gives
# the bit back.
build own.pcow
word own.pcow "$(meta own.pcow 'bitmap(0)')" 0 $((1 << 16))
verify own.pcow "${CONTENT[@]}"
expect_check own.pcow 2 "^ERROR layer 0, block 16: owned by its data alone" "data alone"
run "$PCOW_IMG" check -r leaks own.pcow
check_eq "$RC" 2 "data alone: check -r leaks leaves the corruption"
repaired own.pcow all "data alone"
verify own.pcow "${CONTENT[@]}"
check_eq "$(word_of own.pcow "$(meta own.pcow 'bitmap(0)')")" 0x10002 "data alone: layer 0's bits after the repair"

# [R-046] Data no view reads (an interrupted copy-up): block 1 of the
# active layer, which layer 0 holds with its bit.  A leak: punched.
build unread.pcow
off=$(($(meta unread.pcow 'data(2)') + BS))
printf '\x77%.0s' $(seq 4096) | dd of=unread.pcow bs=4096 seek=$((off / 4096)) conv=notrunc status=none
verify unread.pcow "${CONTENT[@]}"
expect_check unread.pcow 3 "interrupted copy-up" "unread data"
repaired unread.pcow leaks "unread data"
verify unread.pcow "${CONTENT[@]}"
check_true "unread data: punched" no_data unread.pcow "$off" $BS
# The block is layer 0's still: a write copies it up.
pio unread.pcow "write -P 0x32 68K 4K"
verify unread.pcow "${CONTENT[@]:0:2}" "0x21 64K 4K" "0x32 68K 4K" "0x21 72K 56K" "${CONTENT[@]:3}"
ok "$PCOW_IMG" check unread.pcow

# ---- Space no layer reads (format.md 2) ------------------------------------

# [R-070] A layer nothing refers to: revert to s1 (layer 1, s2's, is then
# a leaf), then drop the snapshot entry s2.  -r leaks removes the layer by
# a metadata commit and frees its region.
build orphan.pcow
ok "$PCOW_IMG" snapshot -a s1 orphan.pcow
off=$(meta orphan.pcow 'data(1)')
meta_edit orphan.pcow 'p32(88, 1)'
expect_check orphan.pcow 3 "layer 1 is referenced by nothing" "orphan layer"
repaired orphan.pcow leaks "orphan layer"
check_eq "$(info_get orphan.pcow 'd["format-specific"]["data"]["layers"]')" 2 "orphan layer: layers after the repair"
check_true "orphan layer: its region freed" no_data orphan.pcow "$off" $((4 * MiB))
verify orphan.pcow "0x11 0 64K" "0x21 64K 64K" "0 128K 896K" "0x22 1M 64K" "0 $((MiB + BS)) $((3 * MiB - BS))"

# [R-073] Copy bits past the virtual size: in the word shared with the last
# blocks, and in a later word.  The bits of blocks inside stay.
ok "$PCOW_IMG" create -q -o block_size=$BS,capacity=8M stray.pcow $((3 * MiB + 512))
pio stray.pcow "write -P 0x31 3M 512"          # block 48, the last one
bm=$(meta stray.pcow 'bitmap(0)')
check_eq "$(word_of stray.pcow "$bm")" 0x1000000000000 "stray bits: block 48's bit"
for w in "0 $((1 << 60))" "8 1"; do
    read -r at bit <<<"$w"
    word stray.pcow $((bm + at)) $bit 0
    expect_check stray.pcow 3 "copy bits set past the virtual size" "stray bit at word +$at"
    repaired stray.pcow leaks "stray bit at word +$at"
    check_eq "$(word_of stray.pcow "$bm")/$(word_of stray.pcow $((bm + 8)))" 0x1000000000000/0x0 \
        "stray bit at word +$at: bits after the repair"
    verify stray.pcow "0 0 3M" "0x31 3M 512"
done

# [R-074] Data between 2 MiB and region_base: the regions moved (a grow past
# the capacity), and data was written where they were.
ok "$PCOW_IMG" create -q -o block_size=$BS moved.pcow 4M
pio moved.pcow "write -P 0x41 0 64K" "write -P 0x42 $((4 * MiB - BS)) 64K"
ok "$PCOW_IMG" resize moved.pcow 8M
base=$(meta moved.pcow base)
check_ge "$base" $((4 * MiB)) "the grow moved the regions"
dd if=/dev/urandom of=moved.pcow bs=4096 count=2 seek=$((3 * MiB / 4096)) conv=notrunc status=none
expect_check moved.pcow 3 "data before the first region" "data before the regions"
repaired moved.pcow leaks "data before the regions"
verify moved.pcow "0x41 0 64K" "0 64K $((4 * MiB - 2 * BS))" "0x42 $((4 * MiB - BS)) 64K" "0 4M 4M"
check_true "data before the regions: punched" no_data moved.pcow $((2 * MiB)) $((base - 2 * MiB))

# ---- The pending log (format.md 5) -----------------------------------------

# Writes a pending log whose header names GEN and BOOT, with one entry for
# BLOCK of the active layer.
plant_log() { # IMG GEN BOOT BLOCK
    local region
    region=$(meta "$1" 'layers[active][0]')
    "$PY" - "$1" "$2" "$3" "$4" "$region" $RESERVED <<'EOF' || fail "plant_log $* failed"
import struct, sys
path, gen, boot, block, region, at = sys.argv[1:]
with open(path, "r+b") as f:
    f.seek(int(at))
    f.write(b"PCOWLOG\n" + struct.pack("<Q", int(gen)) + boot.encode()[:36])
    f.seek(int(at) + 4096)
    f.write(struct.pack("<Q", 1 << 63 | int(region) << 40 | int(block)))
EOF
}
boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)

# [R-075] Bytes in the reserved area that are no log: a leak.
build junk.pcow
poke junk.pcow $((RESERVED + 8)) 0300000000881380
expect_check junk.pcow 3 "data in the reserved area" "junk in the reserved area"
repaired junk.pcow leaks "junk in the reserved area"
verify junk.pcow "${CONTENT[@]}"
check_true "junk in the reserved area: punched" no_data junk.pcow $RESERVED $((3 * RESERVED))

# [R-075] A log no open may use (for other metadata, from another boot): a
# leak; it is never applied.  Its entry is block 1 of the active layer,
# which has no data there: applied, it would hide layer 0's copy with zeros.
if [[ -n $boot ]]; then
    for stale in "gen+1 $boot" "gen other-boot-0000-0000-0000-000000000000"; do
        read -r g b <<<"$stale"
        build stale.pcow
        gen=$(meta stale.pcow 'u64(40)')
        [[ $g == gen+1 ]] && gen=$((gen + 1))
        plant_log stale.pcow "$gen" "$b" 1
        verify stale.pcow "${CONTENT[@]}"
        expect_check stale.pcow 3 "a pending log not in use" "stale log ($g)"
        # The read-write open of the repair discards it, before check runs.
        ok "$PCOW_IMG" check -r leaks stale.pcow
        ok "$PCOW_IMG" check stale.pcow
        check_out "^No errors were found on the image.$" "stale log ($g): check after the repair"
        verify stale.pcow "${CONTENT[@]}"
        check_true "stale log ($g): gone" no_data stale.pcow $RESERVED $((3 * RESERVED))
    done
fi

# [R-076] No damage: a log of this boot and metadata (a writer killed after
# a copy-up).  check reads through it and finds nothing; a read-write check
# applies it: the block's bit is on disk and the log gone.
if [[ -n $boot ]]; then
    build live.pcow
    off=$(($(meta live.pcow 'data(2)') + BS))
    printf '\x66%.0s' $(seq $BS) | dd of=live.pcow bs=4096 seek=$((off / 4096)) conv=notrunc status=none
    plant_log live.pcow "$(meta live.pcow 'u64(40)')" "$boot" 1
    live=("0x24 0 4K" "0x11 4K 60K" "0x66 64K 64K" "${CONTENT[@]:3}")
    verify live.pcow "${live[@]}"
    ok "$PCOW_IMG" check live.pcow
    check_out "^No errors were found on the image.$" "a log in use: check"
    ok "$PCOW_IMG" check -r all live.pcow
    verify live.pcow "${live[@]}"
    check_eq "$(word_of live.pcow "$(meta live.pcow 'bitmap(2)')")" 0x3 "a log in use: applied"
    check_true "a log in use: gone after a read-write open" no_data live.pcow $RESERVED $((3 * RESERVED))
fi

# ---- The dirty bit (format.md 4.1) -------------------------------------------

# [R-077] No damage: a dirty image (its active layer flagged) whose layer
# owns block 40 by its data alone.  check finds nothing; a read-write check
# records the block (its bit) and leaves the image clean.
build dirty.pcow
off=$(($(meta dirty.pcow 'data(2)') + 40 * BS))
printf '\x55%.0s' $(seq 4096) | dd of=dirty.pcow bs=4096 seek=$((off / 4096)) conv=notrunc status=none
meta_edit dirty.pcow 'p32(lt + 16 * active + 8, 1); p64(16, u64(16) | 1)'
check_eq "$(info_get dirty.pcow 'd["format-specific"]["data"]["incompatible-features"]')" 1 "dirty image: the dirty bit"
ok "$PCOW_IMG" check dirty.pcow
check_out "^No errors were found on the image.$" "dirty image: check"
ok "$PCOW_IMG" check -r leaks dirty.pcow
check_eq "$(info_get dirty.pcow 'd["format-specific"]["data"]["incompatible-features"]')" 0 "dirty image: clean after a read-write check"
check_eq "$(meta dirty.pcow 'layers[active][2]')" 0 "dirty image: the layer's flag after a read-write check"
check_eq "$(word_of dirty.pcow "$(meta dirty.pcow 'bitmap(2)')")" "$(printf '0x%x' $((1 << 40 | 1)))" "dirty image: block 40 recorded"
verify dirty.pcow "${CONTENT[@]:0:6}" "0x23 2M 64K" "0 $((2 * MiB + BS)) $((512 * KiB - BS))" \
    "0x55 $((40 * BS)) 4K" "0 $((40 * BS + 4096)) $((3 * MiB / 2 - 4096))"

# ---- A copy that filled the holes -------------------------------------------

# Zeros where the format wants holes read as holes do: a copy made with
# cp --sparse=never (or by a transfer that does not keep holes) checks clean
# and reads the same.  In it the reserved area, each region's room past
# the virtual size (capacity 8M) and the deleted snapshot's layer are zero
# data.
rm -f full.pcow
ok "$PCOW_IMG" create -q -o block_size=$BS,capacity=8M full.pcow 4M
pio full.pcow "write -P 0x21 64K 64K"
ok "$PCOW_IMG" snapshot -c s1 full.pcow
pio full.pcow "write -P 0x22 1M 64K"
ok "$PCOW_IMG" snapshot -c s2 full.pcow
ok "$PCOW_IMG" snapshot -d s1 full.pcow
ok "$PCOW_IMG" check full.pcow
cp --sparse=never full.pcow fullcopy.pcow
check_true "a non-sparse copy has no holes" test "$(stat -c %b fullcopy.pcow)" -ge "$(($(stat -c %s fullcopy.pcow) / 512))"
ok "$PCOW_IMG" check fullcopy.pcow
check_out "^No errors were found on the image.$" "a non-sparse copy: check"
verify fullcopy.pcow "0 0 64K" "0x21 64K 64K" "0 128K 896K" "0x22 1M 64K" \
    "0 $((MiB + 64 * KiB)) $((3 * MiB - 64 * KiB))"

finish
