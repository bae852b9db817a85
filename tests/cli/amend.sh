#!/bin/bash
# pcow-img amend: options that can change in place (the backing file, as
# rebase -u does); the rest is refused and the image left as it was.
source "$(dirname "$0")/lib.sh"

backing_of() { # IMG -> "NAME FORMAT" (or "none")
    "$PCOW_IMG" info --output=json -U "$1" |
        json 'd.get("backing-filename", "none") + (" " + d["backing-filename-format"] if "backing-filename" in d else "")'
}

mkraw base1.raw $((8 * MiB)) "0 1M 0x11"
mkraw base2.raw $((8 * MiB)) "0 1M 0x22" "4M 64K 0x23"
ok "$PCOW_IMG" create -b base1.raw -F raw img.pcow
pio img.pcow "write -P 0x33 64K 4K"

# -o help lists the options (with or without an image).
ok "$PCOW_IMG" amend -o help img.pcow
check_out "^Amend options for 'pcow':$" "amend -o help header"
check_out "^  backing_file=<str> " "amend -o help lists backing_file"
check_out "^  backing_fmt=<str> " "amend -o help lists backing_fmt"
check_out "^  size=<size> " "amend -o help lists size"
ok "$PCOW_IMG" amend -f pcow -o help

# backing_file + backing_fmt: the new backing file shows through, nothing
# is copied, the image's own data stays.
ok "$PCOW_IMG" amend -o backing_file=base2.raw,backing_fmt=raw img.pcow
check_eq "$(cat "$T/.out")" "" "amend prints nothing"
check_eq "$(backing_of img.pcow)" "base2.raw raw" "backing file after amend"
# (The write copied its 64 KiB block up from base1.raw: that block stays.)
verify img.pcow "0x22 0 64K" "0x33 64K 4K" "0x11 68K 60K" "0x22 128K 896K" "0x23 4M 64K"
ok "$PCOW_IMG" check img.pcow
# Several -o accumulate; backing_fmt alone changes the format only.
mkraw base3.pcow.raw $((8 * MiB)) "0 1M 0x44"
ok "$PCOW_IMG" convert -O pcow base3.pcow.raw base3.pcow
ok "$PCOW_IMG" amend -o backing_file=base3.pcow -o backing_fmt=raw img.pcow
check_eq "$(backing_of img.pcow)" "base3.pcow raw" "backing after two -o"
ok "$PCOW_IMG" amend -o backing_fmt=pcow img.pcow
check_eq "$(backing_of img.pcow)" "base3.pcow pcow" "backing_fmt alone"
verify img.pcow "0x44 0 64K" "0x33 64K 4K"
# An empty backing_file removes it.
ok "$PCOW_IMG" amend -o backing_file= img.pcow
check_eq "$(backing_of img.pcow)" "none" "backing file removed"
verify img.pcow "0 0 64K" "0x33 64K 4K" "0x11 68K 60K" "0 128K 896K"

# Works when the old backing file is gone, as rebase -u does.
ok "$PCOW_IMG" create -b base1.raw -F raw lost.pcow
mv base1.raw gone.raw
ok "$PCOW_IMG" amend -o backing_file=gone.raw,backing_fmt=raw lost.pcow
verify lost.pcow "0x11 0 1M"

# size: as resize; a grown area reads zeros, a shrink that drops nothing is fine.
ok "$PCOW_IMG" create -q sz.pcow 4M
pio sz.pcow "write -P 0x55 3M 4K"
ok "$PCOW_IMG" amend -o size=8M sz.pcow
check_eq "$(info_get sz.pcow 'd["virtual-size"]')" $((8 * MiB)) "size after growing"
verify sz.pcow "0x55 3M 4K" "0 4M 4M"
ok "$PCOW_IMG" amend -o size=$((3 * MiB + 4 * KiB)) sz.pcow
check_eq "$(info_get sz.pcow 'd["virtual-size"]')" $((3 * MiB + 4 * KiB)) "size after shrinking"
verify sz.pcow "0x55 3M 4K"
ok "$PCOW_IMG" amend -o size=16M,backing_file=base2.raw,backing_fmt=raw sz.pcow
check_eq "$(backing_of sz.pcow) $(info_get sz.pcow 'd["virtual-size"]')" "base2.raw raw $((16 * MiB))" \
    "size and backing file in one amend"
# Shrinking that would drop data is resize --shrink's job.
remember sz.pcow
expect_fail --grep "would discard 4096 bytes" "$PCOW_IMG" amend -o size=2M sz.pcow
expect_fail --grep "whole sectors" "$PCOW_IMG" amend -o size=1000 sz.pcow
expect_fail --grep "whole sectors" "$PCOW_IMG" amend -o size=x sz.pcow
assert_unchanged sz.pcow

# Errors: one line, exit 1, the image unchanged.
ok "$PCOW_IMG" amend -o backing_file=base2.raw,backing_fmt=raw img.pcow
remember img.pcow
expect_fail --nofile --grep "Must specify options" "$PCOW_IMG" amend img.pcow
expect_fail --grep "Changing the block size is not supported" "$PCOW_IMG" amend -o block_size=4K img.pcow
expect_fail --grep "Changing the block size is not supported" "$PCOW_IMG" amend -o backing_fmt=raw,cluster_size=2M img.pcow
expect_fail --grep "Changing the capacity is not supported" "$PCOW_IMG" amend -o capacity=1G img.pcow
expect_fail --grep "Invalid parameter 'bogus'" "$PCOW_IMG" amend -o bogus=1 img.pcow
# A bad option after a good one: nothing is applied.
expect_fail --grep "Invalid parameter 'bogus'" "$PCOW_IMG" amend -o size=16M,bogus=1 img.pcow
expect_fail --grep "Invalid parameter" "$PCOW_IMG" amend -o backing_file img.pcow
expect_fail --grep "format must be given" "$PCOW_IMG" amend -o backing_file=base1.raw img.pcow
expect_fail --grep "unknown backing file format" "$PCOW_IMG" amend -o backing_file=base1.raw,backing_fmt=vmdk img.pcow
expect_fail --grep "does not support option amendment" "$PCOW_IMG" amend -f raw -o backing_fmt=raw img.pcow
expect_fail --nofile --grep "read-only" "$PCOW_IMG" amend -U -o backing_fmt=raw img.pcow
expect_fail --nofile --grep "one image file name" "$PCOW_IMG" amend -o backing_fmt=raw
expect_fail "$PCOW_IMG" amend -o backing_fmt=raw nothere.pcow
expect_fail --grep "bad magic" "$PCOW_IMG" amend -o backing_fmt=raw base2.raw
assert_unchanged img.pcow
ok "$PCOW_IMG" create -q plain.pcow 1M
remember plain.pcow
expect_fail --grep "needs a backing file" "$PCOW_IMG" amend -o backing_fmt=raw plain.pcow
assert_unchanged plain.pcow
# An image another process holds is not amended.
hold_start img.pcow
expect_fail --grep "in use" "$PCOW_IMG" amend -o backing_file= img.pcow
hold_stop
assert_unchanged img.pcow

# -p over a resize and a backing change: one line from 0 to 100%, which
# shows once.
ok "$PCOW_IMG" create -o block_size=4K prog.pcow 8M
ok "$PCOW_IMG" create progb.pcow 8M
pio prog.pcow "write -P 0x11 0 8M"
ok "$PCOW_IMG" amend -p -o size=16M,backing_file=progb.pcow,backing_fmt=pcow prog.pcow
check_eq "$(grep -o "(100.00/100%)" "$T/.out" | wc -l)" 1 "100% lines of amend -p"
pcts=$(tr '\r' '\n' <"$T/.out" | sed -n 's/.*(\([0-9.]*\)\/100%)/\1/p')
check_true "amend -p counts up" "$PY" -c 'import sys; v = [float(x) for x in sys.argv[1].split()]; sys.exit(not v or v != sorted(v))' "$pcts"
ok "$PCOW_IMG" amend -q -p -o size=24M prog.pcow
check_eq "$(wc -c <"$T/.out")" 0 "bytes written by amend -q -p"
# A backing loop is refused and changes nothing.
remember prog.pcow
expect_fail --file prog.pcow --grep "loop" "$PCOW_IMG" amend -o backing_file=prog.pcow,backing_fmt=pcow prog.pcow
assert_unchanged prog.pcow

finish
