#!/usr/bin/env bash
# Generates the seed corpus of the fuzz targets from real images.
#
#   tests/fuzz/gen_corpus.sh OUTDIR
#
# Needs PCOW_IMG, PCOW_IO (default: build/tools/ of the source tree) and
# MKSEED (default: OUTDIR/../mkseed).  Writes OUTDIR/fuzz_image/NAME and
# OUTDIR/fuzz_meta/NAME for every image made here, OUTDIR/fuzz_size/* (size
# strings), and OUTDIR/SEEDS.txt, one line per seed describing it.  Images
# are made in a temporary directory under /dev/shm and only their metadata
# slots, the start of the reserved area and a few bytes of each data extent
# are kept (mkseed.c), so the corpus stays a few tens of KiB.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:?usage: gen_corpus.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PCOW_IMG=${PCOW_IMG:-$SRC/build/tools/pcow-img}
PCOW_IO=${PCOW_IO:-$SRC/build/tools/pcow-io}
MKSEED=${MKSEED:-$(dirname "$OUT")/mkseed}

for t in PCOW_IMG PCOW_IO MKSEED; do
	[[ ${!t} == /* ]] || printf -v "$t" '%s' "$PWD/${!t}"
	[[ -x ${!t} ]] || { echo "gen_corpus.sh: ${!t} is missing (build first)" >&2; exit 1; }
done

W=$(mktemp -d "${TMPDIR_SHM:-/dev/shm}/pcow-seeds.XXXXXX")
trap 'rm -rf "$W"' EXIT
rm -rf "$OUT/fuzz_image" "$OUT/fuzz_meta" "$OUT/fuzz_size"
mkdir -p "$OUT/fuzz_image" "$OUT/fuzz_meta" "$OUT/fuzz_size"
: >"$OUT/SEEDS.txt"

img() { "$PCOW_IMG" "$@" >/dev/null; }
io() { "$PCOW_IO" "$@" >/dev/null; }

# seed NAME DESCRIPTION: turns $W/NAME.pcow into seeds.
seed() {
	"$MKSEED" "$W/$1.pcow" "$OUT/fuzz_image/$1" "$OUT/fuzz_meta/$1"
	printf '%-24s %s\n' "$1" "$2" >>"$OUT/SEEDS.txt"
}

# put_bytes FILE OFFSET PRINTF-ESCAPES: stores raw bytes inside FILE.
put_bytes() {
	printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

cd "$W"
# The backing files fuzz_image provides under the same names: a 4 MiB raw
# file with data in [0, 64K) and [1M, 1M+4K); a 4 MiB pcow (64K blocks) on it.
head -c 65536 /dev/zero | tr '\0' '\021' >base.raw
truncate -s 4M base.raw
printf '\042%.0s' $(seq 4096) | dd of=base.raw bs=1 seek=1048576 conv=notrunc status=none
img create -b base.raw -F raw -o block_size=65536 base.pcow
io -c "write -P 0x33 64k 64k" -c "write -P 0x33 3M 512" base.pcow

for bs in 4096 65536 2097152; do
	img create -o block_size=$bs plain-$bs.pcow 8M
	seed plain-$bs "empty 8 MiB image, block size $bs"
	img create -o block_size=$bs data-$bs.pcow 8M
	io -c "write -P 0x41 0 4k" -c "write -P 0x42 1M 192k" -c "write -P 0x43 8188k 4k" data-$bs.pcow
	seed data-$bs "data at the start, 1 MiB and the last block, block size $bs"
done

img create -o block_size=1G plain-1g.pcow 1G
seed plain-1g "empty 1 GiB image with 1 GiB blocks"
img create -o block_size=4096 odd-size.pcow 1049088
io -c "write -P 0x44 1048576 512" odd-size.pcow
seed odd-size "virtual size 1 MiB + 512 (partial last block), data in it"

img create small.pcow 512
seed small "the smallest image: 512 bytes"

img create -o block_size=65536 snap-one.pcow 4M
io -c "write -P 0x51 0 128k" snap-one.pcow
img snapshot -c s1 snap-one.pcow
io -c "write -P 0x52 64k 4k" -c "write -P 0x53 2M 64k" snap-one.pcow
seed snap-one "one snapshot, active layer partly overwrites it"

img create -o block_size=4096 snap-tree.pcow 4M
io -c "write -P 0x61 0 16k" snap-tree.pcow
img snapshot -c base snap-tree.pcow
io -c "write -P 0x62 4k 4k" snap-tree.pcow
img snapshot -c left snap-tree.pcow
img snapshot -a base snap-tree.pcow
io -c "write -P 0x63 8k 4k" snap-tree.pcow
img snapshot -c right snap-tree.pcow
io -c "write -P 0x64 12k 4k" snap-tree.pcow
seed snap-tree "a tree of layers: two snapshots sharing a parent snapshot"

img create -o block_size=65536 snap-deleted.pcow 4M
io -c "write -P 0x71 0 64k" snap-deleted.pcow
img snapshot -c a snap-deleted.pcow
io -c "write -P 0x72 64k 64k" snap-deleted.pcow
img snapshot -c b snap-deleted.pcow
img snapshot -d a snap-deleted.pcow
seed snap-deleted "snapshots a, b; a deleted (regions reused, ids not)"

img create -o block_size=4096 snap-many.pcow 1M
for i in $(seq 1 20); do
	io -c "write -P $i $((i * 4))k 4k" snap-many.pcow
	img snapshot -c "snapshot-$i" snap-many.pcow
done
seed snap-many "20 snapshots in a chain"

long=$(printf 'n%.0s' $(seq 255))
img create snap-longname.pcow 1M
img snapshot -c "$long" snap-longname.pcow
seed snap-longname "a snapshot with a 255-byte name"

img create -b base.raw -F raw -o block_size=4096 back-raw.pcow
seed back-raw "raw backing file base.raw, size taken from it"
img create -b base.raw -F raw -o block_size=65536 back-raw-cow.pcow
io -c "write -P 0x81 100 10" -c "write -P 0x82 1M 64k" back-raw-cow.pcow
seed back-raw-cow "raw backing, blocks copied up by partial and whole writes"
img create -b base.pcow -F pcow -o block_size=4096 back-pcow.pcow
io -c "write -P 0x91 64k 4k" back-pcow.pcow
img snapshot -c s back-pcow.pcow
seed back-pcow "pcow backing (itself on a raw backing), copy-up and a snapshot"
img create -b base.raw -F raw back-raw-discard.pcow
io -c "discard 0 64k" back-raw-discard.pcow
seed back-raw-discard "raw backing, a discarded inherited block (zero page)"

# Striped: the seed keeps the image file only, so an open stops at the
# missing extent files, after the stripe table is decoded and checked.
mkdir -p "$W/sa" "$W/sb" "$W/sc"
img create -o stripes=sa:sb:sc,stripe_size=64K,block_size=4096 striped.pcow 4M
io -c "write -P 0xa1 60k 8k" striped.pcow
seed striped "striped over three extent files (stripe table, 64 KiB stripes)"

img create -o block_size=65536 leaks.pcow 4M
io -c "write -P 0xb1 0 64k" leaks.pcow
truncate -s 64M leaks.pcow
put_bytes leaks.pcow $((60 * 1048576)) 'leaked'
put_bytes leaks.pcow 600000 'reserved'
seed leaks "data in an unused region and in the reserved area (leaks)"

img create -o block_size=4096 bits.pcow 1M
io -c "write -P 0xa1 0 8k" bits.pcow
img snapshot -c s bits.pcow
io -c "write -P 0xa2 100 10" -c "write -P 0xa3 4k 4k" bits.pcow
seed bits "copy-ups over a snapshot: copy bitmap bits set in the active region"

img create -o block_size=65536 slot1.pcow 4M
img snapshot -c x slot1.pcow
seed slot1 "current metadata in slot 1 (generation 2), slot 0 older"

# Size strings for parse_size / parse_format.
i=0
for s in 0 1 512 4096 1k 64K 2M 1G 1T 1P 1E 15E 16E 1b 1B 100M 4294967296 \
	18446744073709551614 18446744073709551616 99999999999999999999 \
	17592186044415K 1x 1KB "" -1 " 1" 0x10 raw pcow qcow2 RAW; do
	printf '%s' "$s" >"$OUT/fuzz_size/size-$i"
	i=$((i + 1))
done
printf '%-24s %s\n' "fuzz_size/size-*" "size and format strings" >>"$OUT/SEEDS.txt"
