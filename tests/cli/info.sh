#!/bin/bash
# pcow-img info: the human and JSON descriptions, snapshots, backing files
# and --backing-chain.
source "$(dirname "$0")/lib.sh"

ok "$PCOW_IMG" create -o block_size=4K plain.pcow 64M
pio plain.pcow "write -P 1 0 12K" "write -P 2 1M 1"

# JSON of an image without backing file or snapshots.
ok "$PCOW_IMG" info --output=json plain.pcow
cp "$T/.out" plain.json
for key in filename format virtual-size actual-size block-size allocated-blocks; do
    check_eq "$(json "\"$key\" in d" <plain.json)" true "JSON key $key"
done
check_eq "$(json '[d["filename"], d["format"], d["virtual-size"], d["block-size"], d["allocated-blocks"]]' <plain.json)" \
    '["plain.pcow", "pcow", 67108864, 4096, 4]' "JSON values"
check_eq "$(json '[k for k in ("backing-filename", "backing-filename-format", "full-backing-filename", "snapshots") if k in d]' <plain.json)" \
    '[]' "no backing or snapshot keys without them"
check_eq "$(json 'd["actual-size"]' <plain.json)" "$(disk_usage plain.pcow)" "actual-size is the disk usage"
check_eq "$(json 'd["format-specific"]["type"]' <plain.json)" pcow "format-specific type"
check_eq "$(json '[d["format-specific"]["data"][k] for k in ("version", "layers", "block-size", "allocated-blocks", "incompatible-features")]' <plain.json)" \
    '[2, 1, 4096, 4, 0]' "format-specific data"

# Human output.
ok "$PCOW_IMG" info plain.pcow
check_out "^image: plain\.pcow$" "human: image"
check_out "^file format: pcow$" "human: format"
check_out "^virtual size: 64 MiB \(67108864 bytes\)$" "human: virtual size"
check_out "^disk size: " "human: disk size"
check_out "^block size: 4096$" "human: block size"
check_out "^allocated blocks: 4$" "human: allocated blocks"
check_true "human: no backing file line" not grep -q "backing file" "$T/.out"
ok "$PCOW_IMG" create odd.pcow $((1536 * MiB))
ok "$PCOW_IMG" info odd.pcow
check_out "^virtual size: 1.5 GiB \(1610612736 bytes\)$" "human: fractional virtual size"
ok "$PCOW_IMG" info -f pcow plain.pcow

# Snapshots: ids, names and creation times.
t0=$(date +%s)
ok "$PCOW_IMG" snapshot -c first plain.pcow
pio plain.pcow "write -P 3 2M 4K"
ok "$PCOW_IMG" snapshot -c "second one" plain.pcow
t1=$(date +%s)
ok "$PCOW_IMG" info --output=json plain.pcow
cp "$T/.out" snap.json
check_eq "$(json '[(s["id"], s["name"]) for s in d["snapshots"]]' <snap.json)" \
    '[["1", "first"], ["2", "second one"]]' "snapshot ids and names"
check_eq "$(json "all($t0 <= s['date-sec'] <= $t1 for s in d['snapshots'])" <snap.json)" true \
    "snapshot dates within the creation window"
check_eq "$(json 'all(0 <= s["date-nsec"] < 10**9 for s in d["snapshots"])' <snap.json)" true "snapshot date-nsec"
check_eq "$(json '[s["allocated-size"] for s in d["snapshots"]]' <snap.json)" "[$((4 * 4096)), 4096]" \
    "snapshot allocated-size"
check_eq "$(json '[d["allocated-blocks"], d["format-specific"]["data"]["layers"]]' <snap.json)" \
    "[0, 3]" "active blocks and layers with two snapshots"
ok "$PCOW_IMG" info plain.pcow
check_out "^Snapshot list:$" "human: snapshot list"
# qemu-img's table (the data each snapshot holds is in the JSON).
check_out "^ID +TAG +VM SIZE +DATE +VM CLOCK +ICOUNT$" "human: snapshot table header"
check_out "^1 +first +0 B +[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8} 00:00:00.000 +0$" "human: first snapshot"
check_out "^2 +second one +0 B " "human: second snapshot"
ok "$PCOW_IMG" snapshot -d first plain.pcow
check_eq "$(info_get plain.pcow '[s["name"] for s in d["snapshots"]]')" '["second one"]' "snapshots after a delete"

# Backing files: the name as stored, the format, the resolved name.
mkdir -p sub
mkraw sub/base.raw $((32 * MiB)) "0 1M 0x41"
ok "$PCOW_IMG" create -b base.raw -F raw sub/mid.pcow
ok "$PCOW_IMG" create -b mid.pcow -F pcow sub/top.pcow 48M
ok "$PCOW_IMG" info --output=json sub/top.pcow
check_eq "$(json '[d["filename"], d["virtual-size"], d["backing-filename"], d["backing-filename-format"]]' <"$T/.out")" \
    '["sub/top.pcow", 50331648, "mid.pcow", "pcow"]' "JSON of an overlay"
check_eq "$(json 'os.path.normpath(d["full-backing-filename"])' <"$T/.out")" sub/mid.pcow "full-backing-filename"
ok "$PCOW_IMG" info sub/mid.pcow
check_out "^backing file: base\.raw \(actual path: (\./)?sub/base\.raw\)$" "human: backing file"
check_out "^backing file format: raw$" "human: backing file format"

# --backing-chain lists every image, from the top, the raw file last.
ok "$PCOW_IMG" info --backing-chain --output=json sub/top.pcow
cp "$T/.out" chain.json
check_eq "$(json 'len(d)' <chain.json)" 3 "entries of --backing-chain"
check_eq "$(json '[(os.path.normpath(i["filename"]), i["format"]) for i in d]' <chain.json)" \
    '[["sub/top.pcow", "pcow"], ["sub/mid.pcow", "pcow"], ["sub/base.raw", "raw"]]' "images of --backing-chain"
check_eq "$(json '[i["virtual-size"] for i in d]' <chain.json)" "[50331648, 33554432, 33554432]" \
    "sizes in --backing-chain"
check_eq "$(json '[i.get("backing-filename") for i in d]' <chain.json)" '["mid.pcow", "base.raw", null]' \
    "backing names in --backing-chain"
ok "$PCOW_IMG" info --backing-chain sub/top.pcow
check_eq "$(grep -c '^image: ' "$T/.out")" 3 "images in the human --backing-chain"
check_eq "$(grep '^file format: ' "$T/.out" | tr '\n' ' ')" "file format: pcow file format: pcow file format: raw " \
    "formats in the human --backing-chain"
# Without --backing-chain, only the image itself.
ok "$PCOW_IMG" info --output=json sub/top.pcow
check_eq "$(json 'type(d).__name__' <"$T/.out")" dict "info without --backing-chain is one object"

# Usage errors.
expect_fail --nofile "$PCOW_IMG" info
expect_fail --nofile "$PCOW_IMG" info plain.pcow odd.pcow
expect_fail --nofile "$PCOW_IMG" info --output=yaml plain.pcow
expect_fail --file vmdk "$PCOW_IMG" info -f vmdk plain.pcow
expect_fail --file sub/base.raw "$PCOW_IMG" info sub/base.raw

# A missing backing file: info shows the image and names the backing file,
# as qemu-img info does without --backing-chain; --backing-chain fails on
# one line naming the missing file.
ok "$PCOW_IMG" create mb.pcow 1M
ok "$PCOW_IMG" amend -o backing_file=missing.pcow,backing_fmt=pcow mb.pcow
remember mb.pcow
ok "$PCOW_IMG" info mb.pcow
check_out "^backing file: missing.pcow " "info of an image whose backing file is missing"
ok "$PCOW_IMG" info --output=json mb.pcow
check_eq "$(json 'd["backing-filename"]' <"$T/.out")" missing.pcow "JSON backing-filename of a missing backing file"
ok "$PCOW_IMG" snapshot -l mb.pcow
expect_fail --file missing.pcow --grep "could not open backing file" "$PCOW_IMG" info --backing-chain mb.pcow
assert_unchanged mb.pcow

finish
