#!/bin/bash
# Files from someone else: format probing that a raw file cannot steer,
# backing files that are not regular files or block devices, and looking at
# an image without opening its backing file.
source "$(dirname "$0")/lib.sh"

# ---- Probing: only the magic at offset 0 makes a pcow image ---------------

# A raw disk whose guest wrote a valid pcow metadata blob at 256 KiB (where
# slot 1 would be) and is long enough for that blob's layout.
ok "$PCOW_IMG" create -o block_size=64K inner.pcow 1M
mkraw evil.raw 8M "0 256K r" "512K 64K r"
dd if=inner.pcow of=evil.raw bs=256K count=1 seek=1 conv=notrunc status=none ||
    fail "cannot copy slot 0 of inner.pcow into evil.raw"
remember evil.raw
ok "$PCOW_IMG" convert -O raw evil.raw evil-out.raw
check_same evil.raw evil-out.raw "convert without -f: metadata at 256 KiB is raw data"
check_true "convert warns that it guessed raw" \
    grep -qF "WARNING: Image format was not specified for 'evil.raw' and probing guessed raw." "$T/.err"
check_eq "$(wc -l <"$T/.err")" 2 "lines of the raw-probe warning"
cp evil.raw evil-copy.raw
ok "$PCOW_IMG" compare -F raw evil.raw evil-copy.raw
check_out "Images are identical" "compare without -f reads evil.raw as raw"
ok "$PCOW_IMG" measure -f raw -O pcow evil.raw
cp "$T/.out" measure-raw.out
ok "$PCOW_IMG" measure -O pcow evil.raw
check_true "measure without -f reads evil.raw as raw" cmp -s "$T/.out" measure-raw.out
assert_unchanged evil.raw
# -f raw says it explicitly: no warning.
ok "$PCOW_IMG" convert -f raw -O raw evil.raw evil-out2.raw
check_eq "$(wc -c <"$T/.err")" 0 "stderr of convert -f raw"

# A pcow image whose slot 0 is torn keeps its magic, and is still probed as
# pcow (the library then uses slot 1).
ok "$PCOW_IMG" create -o block_size=64K torn.pcow 1M
pio torn.pcow "write -P 0x5a 0 64K"
ok "$PCOW_IO" -c "write -P 0x5b 64K 64K" torn.pcow
poke torn.pcow 200 ff
ok "$PCOW_IMG" convert -O raw torn.pcow torn.raw
check_eq "$(wc -c <"$T/.err")" 0 "stderr of convert of a pcow image"
check_eq "$(stat -c %s torn.raw)" $MiB "a torn pcow image is probed as pcow"

# ---- A backing file that is not a regular file or a block device ---------

# Opening a FIFO for reading waits for a writer: that must not hang any
# tool, and the error must say what is wrong.
mkfifo fifo
for fmt in raw pcow; do
    ok "$PCOW_IMG" create on-fifo-$fmt.pcow 1M
    ok timeout 20 "$PCOW_IMG" rebase -u -b fifo -F $fmt on-fifo-$fmt.pcow
    expect_fail --file fifo --grep "not a regular file or a block device" \
        timeout 20 "$PCOW_IO" -c "read 0 4K" on-fifo-$fmt.pcow
    expect_fail --file fifo --grep "not a regular file or a block device" \
        timeout 20 "$PCOW_IMG" info --backing-chain on-fifo-$fmt.pcow
    # Without the chain, info shows the image itself and names the backing
    # file it could not open.
    # The image is sound: check cannot run (1), it found no corruption (2).
    expect_fail --rc 1 --file fifo --grep "not a regular file or a block device" \
        timeout 20 "$PCOW_IMG" check on-fifo-$fmt.pcow
    ok timeout 20 "$PCOW_IMG" info on-fifo-$fmt.pcow
    check_out "backing file: fifo" "$fmt: info without the chain names the FIFO"
    expect_fail --file fifo --grep "not a regular file or a block device" \
        timeout 20 "$PCOW_IMG" create -b fifo -F $fmt new-on-fifo-$fmt.pcow 1M
done
expect_fail --file fifo --grep "not a regular file or a block device" \
    timeout 20 "$PCOW_IMG" rebase -b fifo -F raw inner.pcow

# ---- --no-backing: an image from someone else, its backing file unopened ---

# A downloaded image may name any host file as its backing file; what it
# shows through it is then the host's data.
mkraw secret.raw 1M "0 1M 0x73"
ok "$PCOW_IMG" create -o block_size=4K -b secret.raw -F raw dl.pcow
pio dl.pcow "write -P 0x61 64K 4K"
ok "$PCOW_IMG" convert -f pcow -O raw dl.pcow dl-full.raw
raw_verify dl-full.raw "0x73 0 64K" "0x61 64K 4K"
ok "$PCOW_IMG" convert --no-backing -O raw dl.pcow dl-own.raw
check_eq "$(stat -c %s dl-own.raw)" $MiB "size of convert --no-backing"
raw_verify dl-own.raw "0 0 64K" "0x61 64K 4K" "0 68K 956K"
ok "$PCOW_IMG" info --no-backing dl.pcow
check_out "^backing file: secret.raw" "info --no-backing names the backing file"
check_out "^allocated blocks: 1$" "info --no-backing: the image's own blocks"
ok "$PCOW_IMG" info --no-backing --output=json dl.pcow
check_eq "$(json 'd["backing-filename"]' <"$T/.out")" secret.raw "info --no-backing --output=json"
ok "$PCOW_IMG" check --no-backing dl.pcow
ok "$PCOW_IMG" check --no-backing --output=json dl.pcow
expect_fail --file dl.pcow --grep "backing-chain" "$PCOW_IMG" info --no-backing --backing-chain dl.pcow
expect_fail --file dl.pcow --grep "qcow2" "$PCOW_IMG" convert --no-backing -f qcow2 -O raw dl.pcow x.raw
if command -v strace >/dev/null; then
    for cmd in "info --no-backing" "info --no-backing --output=json" \
        "check --no-backing" "convert --no-backing -O raw"; do
        rm -f st.raw
        out=""
        [[ $cmd == convert* ]] && out=st.raw
        # shellcheck disable=SC2086  # cmd is words
        ok strace -f -o trace -e trace=open,openat "$PCOW_IMG" $cmd dl.pcow $out
        check_true "$cmd does not open the backing file" not grep -q secret.raw trace
    done
else
    echo "strace is not installed: whether --no-backing opens the backing file is not traced"
fi
# A missing backing file keeps check from running, unless it is not opened.
mv secret.raw gone.raw
expect_fail --file secret.raw "$PCOW_IMG" check dl.pcow
ok "$PCOW_IMG" check --no-backing dl.pcow
if command -v qemu-img >/dev/null; then
    ok "$PCOW_IMG" convert --no-backing -O qcow2 dl.pcow dl.qcow2
    ok qemu-img compare -f qcow2 -F raw dl.qcow2 dl-own.raw
else
    echo "qemu-img is not installed: convert --no-backing to qcow2 is not tried"
fi

finish
