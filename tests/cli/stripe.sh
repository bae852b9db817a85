#!/bin/bash
# Striped images (docs/format.md 3.6): create over two and three
# directories, info (text and JSON), I/O, snapshots, check (and a leak in
# an extent file), convert to and from raw, the extent files an open
# refuses: missing, swapped, another image's; and stripe_nodes.
source "$(dirname "$0")/lib.sh"

SIZE=$((16 * MiB))
mkdir -p d0 d1 d2

# Two and three extent files; the data of stripe k lands in file k % n.
for n in 2 3; do
    dirs=d0:d1
    ((n == 3)) && dirs=d0:d1:d2
    ok "$PCOW_IMG" create -f pcow -o stripes=$dirs,stripe_size=1M,block_size=64K s$n.pcow $SIZE
    check_out "Formatting 's$n.pcow'" "create $n: the usual line"
    for ((i = 0; i < n; i++)); do
        check_true "create $n: extent file $i exists" test -f d$i/s$n.pcow.$i
    done
    ok "$PCOW_IMG" info s$n.pcow
    check_out "stripe size: 1 MiB" "info $n: stripe size"
    check_out "\[$((n - 1))\]: d$((n - 1))/s$n.pcow.$((n - 1))" "info $n: extent files"
    check_eq "$(info_get s$n.pcow '",".join(d["format-specific"]["data"]["extent-files"])')" \
        "$("$PY" -c "print(','.join(f'd{i}/s$n.pcow.{i}' for i in range($n)))")" "info $n: JSON extent files"
    check_eq "$(info_get s$n.pcow 'd["format-specific"]["data"]["stripe-size"]')" $MiB "info $n: JSON stripe size"
    pio s$n.pcow "write -P 0x11 0 $SIZE" "write -P 0x22 $((MiB - 512)) 1K"
    verify s$n.pcow "0x11 0 $((MiB - 512))" "0x22 $((MiB - 512)) 1K" "0x11 $((MiB + 512)) $((SIZE - MiB - 512))"
    # 2 MiB of region base: stripe k at 2M + k M.
    for ((i = 0; i < n; i++)); do
        check_ge "$(disk_usage d$i/s$n.pcow.$i)" $((SIZE / n - MiB)) "extent file $i holds its stripes"
    done
    check_le "$(disk_usage s$n.pcow)" $((512 * KiB)) "the image file holds no data"
    ok "$PCOW_IMG" snapshot -c one s$n.pcow
    pio s$n.pcow "write -P 0x33 $((3 * MiB - 4096)) 8K"
    ok "$PCOW_IMG" snapshot -a one s$n.pcow
    verify s$n.pcow "0x11 0 $((MiB - 512))" "0x22 $((MiB - 512)) 1K" "0x11 $((MiB + 512)) $((SIZE - MiB - 512))"
    ok "$PCOW_IMG" check s$n.pcow
    check_out "No errors were found" "check $n: clean"
    # Raw and back.
    ok "$PCOW_IMG" convert -O raw s$n.pcow s$n.raw
    ok "$PCOW_IMG" convert -f raw -O pcow -o stripes=$dirs,stripe_size=2M s$n.raw c$n.pcow
    check_true "convert $n: extent file" test -f d$((n - 1))/c$n.pcow.$((n - 1))
    ok "$PCOW_IMG" compare s$n.pcow c$n.pcow
    ok "$PCOW_IMG" convert -O raw c$n.pcow c$n.raw
    check_same s$n.raw c$n.raw "convert $n: raw -> striped -> raw"
done

# Growing past the capacity moves the regions in every file.
ok "$PCOW_IMG" resize c3.pcow 40M
verify c3.pcow "0x11 0 $((MiB - 512))" "0x22 $((MiB - 512)) 1K" "0x11 $((MiB + 512)) $((SIZE - MiB - 512))" "0 $SIZE $((40 * MiB - SIZE))"
ok "$PCOW_IMG" check c3.pcow
check_out "No errors were found" "resize: clean after the move"

# Data in an extent file where the layout puts none of its bytes: a leak
# (exit 3) that -r leaks punches; the image reads the same.
printf '\xee%.0s' {1..4096} | dd of=d0/s2.pcow.0 bs=4096 seek=$(((2 * MiB + MiB) / 4096)) conv=notrunc status=none
run "$PCOW_IMG" check s2.pcow
check_eq "$RC" 3 "stray data in an extent file is a leak"
check_out "extent file 0: data where the layout puts none" "check names the extent file"
ok "$PCOW_IMG" check -r leaks s2.pcow
ok "$PCOW_IMG" check s2.pcow
check_out "No errors were found" "the leak is repaired"
verify s2.pcow "0x11 0 $((MiB - 512))" "0x22 $((MiB - 512)) 1K"

# Refused opens name the extent file; nothing is written.
remember s3.pcow
mv d1/s3.pcow.1 saved
expect_fail --file d1/s3.pcow.1 --grep "extent file 1" "$PCOW_IMG" info s3.pcow
expect_fail --file d1/s3.pcow.1 "$PCOW_IO" -c "write 0 4K" s3.pcow
mv saved d1/s3.pcow.1
mv d0/s3.pcow.0 saved; mv d2/s3.pcow.2 d0/s3.pcow.0; mv saved d2/s3.pcow.2
expect_fail --file d0/s3.pcow.0 --grep "swapped" "$PCOW_IO" -c "write 0 4K" s3.pcow
mv d0/s3.pcow.0 saved; mv d2/s3.pcow.2 d0/s3.pcow.0; mv saved d2/s3.pcow.2
ok "$PCOW_IMG" create -f pcow -o stripes=d0:d1:d2 other.pcow $SIZE
cp --sparse=always d1/other.pcow.1 d1/s3.pcow.1.foreign
mv d1/s3.pcow.1 saved; mv d1/s3.pcow.1.foreign d1/s3.pcow.1
expect_fail --file d1/s3.pcow.1 --grep "another image" "$PCOW_IMG" check s3.pcow
mv saved d1/s3.pcow.1
assert_unchanged s3.pcow
ok "$PCOW_IMG" check s3.pcow

# A writer holds every file: another writer is refused.
hold_start s3.pcow
expect_fail --grep "in use" "$PCOW_IO" -c "write 0 4K" s3.pcow
hold_stop

# A NUMA node per extent file: shown per extent (one this host lacks as
# not bound), kept through metadata rewrites; none: nothing shown.
ok "$PCOW_IMG" create -f pcow -o stripes=d0:d1,stripe_nodes=0:1000 numa.pcow $SIZE
ok "$PCOW_IMG" snapshot -c one numa.pcow
pio numa.pcow "write -P 0x44 0 $SIZE"
ok "$PCOW_IMG" info numa.pcow
check_out "\[0\]: d0/numa.pcow.0 \(node 0\)$" "info: the node of extent file 0"
check_out "\[1\]: d1/numa.pcow.1 \(node 1000, not on this host: not bound\)" "info: a node the host lacks"
check_eq "$(info_get numa.pcow 'd["format-specific"]["data"]["extent-nodes"]')" "[0, 1000]" "info: JSON nodes"
check_eq "$(info_get numa.pcow 'd["format-specific"]["data"]["extent-nodes-bound"]')" "[true, false]" "info: JSON bound"
ok "$PCOW_IMG" check numa.pcow
check_out "No errors were found" "check: nodes are valid"
ok "$PCOW_IMG" info s2.pcow
check_true "info: no nodes, none shown" not grep -q "(node" "$T/.out"
check_eq "$(info_get s2.pcow '"extent-nodes" in d["format-specific"]["data"]')" "false" "info: no JSON nodes"
expect_fail --file n1.pcow --grep "one node per stripe directory" "$PCOW_IMG" create -f pcow -o stripes=d0:d1,stripe_nodes=0 n1.pcow 1M
expect_fail --file n2.pcow --grep "needs stripes" "$PCOW_IMG" create -f pcow -o stripe_nodes=0:0 n2.pcow 1M
expect_fail --file n3.pcow --grep "invalid stripe node" "$PCOW_IMG" create -f pcow -o stripes=d0:d1,stripe_nodes=0:1024 n3.pcow 1M

# Options the format refuses, each one line.
expect_fail --file big.pcow --grep "stripe size" "$PCOW_IMG" create -f pcow -o stripes=d0:d1,stripe_size=64K big.pcow 1T
expect_fail --file one.pcow --grep "two directories" "$PCOW_IMG" create -f pcow -o stripes=d0 one.pcow 1M
expect_fail --file odd.pcow --grep "stripe size" "$PCOW_IMG" create -f pcow -o stripes=d0:d1,stripe_size=3M odd.pcow 1M
expect_fail --file s2.pcow --grep "exist" "$PCOW_IMG" create -f pcow -o stripes=d0:d1 s2.pcow 1M
check_true "no half-made image" not test -e big.pcow -o -e d0/big.pcow.0

finish
