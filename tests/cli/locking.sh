#!/bin/bash
# Locking [R-030]: an image open read-write refuses every other opener,
# except with -U; read-only opens share; backing files are shared; locks go
# away with the process that held them.
source "$(dirname "$0")/lib.sh"

ok "$PCOW_IMG" create -o block_size=4K base.pcow 4M
pio base.pcow "write -P 0x11 0 64K"
ok "$PCOW_IMG" create -b base.pcow -F pcow img.pcow
pio img.pcow "write -P 0x22 64K 64K"
ok "$PCOW_IMG" snapshot -c s1 img.pcow

for mode in "" --mmap; do
    tag=${mode:-file}
    # A writer holds img.pcow.
    hold_start $mode img.pcow || continue
    hold_cmd "write -P 0x33 128K 4K"
    hold_cmd flush
    remember img.pcow base.pcow

    # Every other opener of img.pcow is refused with "in use"...
    expect_fail --grep "in use" "$PCOW_IO" -c "write 0 512" img.pcow
    expect_fail --grep "in use" "$PCOW_IO" --mmap -c "write 0 512" img.pcow
    expect_fail --grep "in use" "$PCOW_IO" -r -c "read 0 512" img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" info img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" map img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" snapshot -l img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" snapshot -c s2 img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" snapshot -a s1 img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" snapshot -d s1 img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" rebase -u -b "" img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" rebase -b "" img.pcow
    expect_fail --grep "in use" "$PCOW_IMG" check -r leaks img.pcow
    expect_fail --grep "in use" --rc 1 "$PCOW_IMG" check img.pcow
    expect_fail --grep "in use" --file img.pcow "$PCOW_IMG" convert -O raw img.pcow out.raw
    expect_fail --grep "in use" --file img.pcow "$PCOW_IMG" create -b img.pcow -F pcow top.pcow
    # Nothing replaces an image in use, nor its backing file.
    expect_fail --grep "in use" --file img.pcow "$PCOW_IMG" create img.pcow 1M
    expect_fail --grep "in use" --file base.pcow "$PCOW_IMG" create base.pcow 1M
    expect_fail --grep "in use" --file img.pcow "$PCOW_IMG" convert -O raw base.pcow img.pcow
    expect_fail --grep "in use" --file img.pcow "$PCOW_IMG" convert -n -O pcow base.pcow img.pcow
    check_true "$tag: a refused convert left out.raw behind" test ! -e out.raw
    check_true "$tag: a refused create left top.pcow behind" test ! -e top.pcow
    # ... and so is a writer of its backing file, which it holds shared.
    expect_fail --grep "in use" "$PCOW_IO" -c "write 0 512" base.pcow
    expect_fail --grep "in use" "$PCOW_IMG" snapshot -c s2 base.pcow
    # Readers of the backing file are fine.
    ok "$PCOW_IMG" info base.pcow
    verify base.pcow "0x11 0 64K"

    # -U reads without a lock.
    ok "$PCOW_IMG" info -U img.pcow
    ok "$PCOW_IMG" info -U --output=json --backing-chain img.pcow
    ok "$PCOW_IMG" map -U img.pcow
    ok "$PCOW_IMG" snapshot -U -l img.pcow
    check_out "s1" "$tag: snapshot -l -U of an image in use"
    verify -U img.pcow "0x11 0 64K" "0x22 64K 64K" "0x33 128K 4K"
    verify -U --mmap img.pcow "0x33 128K 4K"
    # convert and check take -U as qemu-img does.
    ok "$PCOW_IMG" convert -U -O raw img.pcow out.raw
    rm -f out.raw
    ok "$PCOW_IMG" check -U img.pcow
    # -U does not allow writing.
    expect_fail --grep "read-only" "$PCOW_IO" -U -c "write 0 512" img.pcow
    expect_fail --file img.pcow "$PCOW_IMG" snapshot -U -c s2 img.pcow
    expect_fail --grep "read-only" "$PCOW_IMG" snapshot -U -a s1 img.pcow
    expect_fail --grep "read-only" "$PCOW_IMG" snapshot -U -d s1 img.pcow
    # compare and measure read: refused without -U, fine with it.
    expect_fail --rc 2 --grep "in use" "$PCOW_IMG" compare base.pcow img.pcow
    ok "$PCOW_IMG" compare -U img.pcow img.pcow
    check_out "^Images are identical.$" "$tag: compare -U of an image in use"
    expect_fail --grep "in use" "$PCOW_IMG" measure img.pcow
    ok "$PCOW_IMG" measure -U img.pcow
    assert_unchanged img.pcow base.pcow

    # The holder still works, and after it is gone the image is free.
    hold_cmd "read -P 0x33 128K 4K"
    check_true "$tag: the holder's read after refused opens" grep -q "^read 4096/4096 bytes at offset 131072" "$HOLD_LOG"
    hold_stop
    check_eq "$HOLD_RC" 0 "$tag: exit code of the holder"
    pio img.pcow "write -P 0x44 192K 4K"
    verify img.pcow "0x33 128K 4K" "0x44 192K 4K"
done

# Readers share: with a reader holding the image, other readers work and
# writers are refused.
hold_start -r img.pcow
remember img.pcow
ok "$PCOW_IMG" info img.pcow
verify img.pcow "0x44 192K 4K"
ok "$PCOW_IMG" check img.pcow
expect_fail --grep "in use" "$PCOW_IO" -c "write 0 512" img.pcow
expect_fail --grep "in use" "$PCOW_IMG" snapshot -c s2 img.pcow
assert_unchanged img.pcow
hold_stop

# A killed holder leaves no lock behind.
hold_start img.pcow
kill -9 "$HOLD_PID"
wait "$HOLD_PID" 2>/dev/null
exec {HOLD_FD}>&-
pio img.pcow "write -P 0x55 256K 4K"
ok "$PCOW_IMG" check img.pcow

# Two images backed by the same file can be used at the same time.
ok "$PCOW_IMG" create -b base.pcow -F pcow other.pcow
hold_start img.pcow
pio other.pcow "write -P 0x66 0 4K"
verify other.pcow "0x66 0 4K" "0x11 4K 60K"
hold_stop

# -U is suggested to readers only: writers cannot use it.
hold_start img.pcow
expect_fail --grep "in use.*-U to read it anyway" "$PCOW_IMG" info img.pcow
expect_fail --grep "in use.*-U to read it anyway" "$PCOW_IO" -r -c "read 0 512" img.pcow
for cmd in "snapshot -c s9 img.pcow" "rebase -u -b base.pcow -F pcow img.pcow" \
    "resize img.pcow 8M" "amend -o size=8M img.pcow" "commit img.pcow"; do
    read -ra args <<<"$cmd"
    expect_fail --file img.pcow --grep "in use \(locked by another process\)$" "$PCOW_IMG" "${args[@]}"
done
expect_fail --grep "in use \(locked by another process\)$" "$PCOW_IO" -c "write 0 512" img.pcow
hold_stop
# The backing file of an image opened for writing: no -U either.
hold_start base.pcow
expect_fail --grep "base.pcow: image is in use \(locked by another process\)$" --file base.pcow \
    "$PCOW_IO" -c "write 0 512" other.pcow
expect_fail --grep "base.pcow: image is in use.*-U" --file base.pcow "$PCOW_IMG" info --backing-chain other.pcow
hold_stop

finish
