#!/usr/bin/env bash
# make demo: a narrated tour of pcow -- a Linux guest on a pcow image.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
IMG=${PCOW_IMG:-$top/build/tools/pcow-img}
IO=${PCOW_IO:-$top/build/tools/pcow-io}
QEMU=${PCOW_QEMU:-$top/build/qemu/qemu-system-x86_64}
GUEST=${PCOW_GUEST:-$top/build/guest}
# shellcheck source=tests/vm/lib.sh
source "$top/tests/vm/lib.sh"

work=$(mktemp -d "${TMPDIR:-/var/tmp}/pcow-demo.XXXXXX")
trap 'vm_cleanup; rm -rf "$work"' EXIT
cd "$work"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
guest() { # IMAGE SCRIPT-TEXT: boots the guest with IMAGE as its NVDIMM
	local img=$1
	printf '%s\n' "$2" >"$work/guest.sh"
	printf '[guest on %s] %s\n' "$(basename "$img")" "$(grep -v '^pm_wait' "$work/guest.sh" | tr '\n' ';')"
	vm_boot "$QEMU" "$GUEST" "$work/guest.sh" \
		-object "memory-backend-pcow,id=pm,mem-path=$img,share=on" \
		-device nvdimm,id=nv,memdev=pm | sed 's/^/    guest: /'
}

if [[ ! -x $QEMU || ! -s $GUEST/vmlinuz ]]; then
	echo "demo: needs the patched QEMU and the test guest: run 'make demo'" >&2
	exit 1
fi

say "1. A thin-provisioned 1 GiB image for the guest's persistent memory"
run "$IMG" create -f pcow disk.pcow 1G
run du -h --apparent-size disk.pcow
run du -h disk.pcow

say "2. Boot a Linux guest (QEMU, TCG) whose NVDIMM is the image; it writes"
guest disk.pcow 'pm_wait_dev /dev/pmem0
pm_write /dev/pmem0 0 "version 1 of the data"
pm_check /dev/pmem0 0 "version 1 of the data"'
echo "The guest's stores went straight to the image file's pages. On the host:"
"$IMG" info disk.pcow | grep -E 'virtual size|disk size|allocated blocks'

say "3. Take a snapshot, then let the guest change the data"
run "$IMG" snapshot -c v1 disk.pcow
guest disk.pcow 'pm_wait_dev /dev/pmem0
pm_write /dev/pmem0 0 "VERSION 2 -- changed"
pm_check /dev/pmem0 0 "VERSION 2 -- changed"'
run "$IMG" snapshot -c v2 disk.pcow
run "$IMG" snapshot -l disk.pcow

say "4. Revert to v1 and boot again: the guest sees the old data"
run "$IMG" snapshot -a v1 disk.pcow
guest disk.pcow 'pm_wait_dev /dev/pmem0
pm_check /dev/pmem0 0 "version 1 of the data"'
echo "(v2 was kept: 'pcow-img snapshot -a v2' would bring the change back)"

say "5. A base image shared by an overlay: the guest reads the base, writes the overlay"
run "$IMG" create -f pcow base.pcow 256M
"$IO" -c 'write -P 0x42 0 64k' base.pcow >/dev/null && echo "(base.pcow filled with 0x42 in its first 64 KiB)"
run "$IMG" create -f pcow -b base.pcow -F pcow vm1.pcow
before=$(sha256sum <base.pcow)
guest vm1.pcow 'pm_wait_dev /dev/pmem0
[ "$(pm_read /dev/pmem0 0 1)" = B ] && echo "base data visible: B (0x42)"
pm_write /dev/pmem0 100 "overlay write"
pm_check /dev/pmem0 100 "overlay write"'
[[ $before == "$(sha256sum <base.pcow)" ]] && echo "base.pcow is unchanged; the write was copied up into vm1.pcow:"
"$IMG" info --backing-chain vm1.pcow | grep -E '^image|allocated blocks|backing file:'

say "6. Check"
run "$IMG" check vm1.pcow

say "7. A live snapshot of the running guest (QMP), without shutting it down"
run "$IMG" create -f pcow live.pcow 256M
printf '%s\n' 'pm_wait_dev /dev/pmem0
i=1
while [ $i -le 15 ]; do
	pm_write /dev/pmem0 0 "tick $i"; echo "wrote tick $i"; sleep 0.4; i=$((i + 1))
done' >"$work/live.sh"
echo "[guest on live.pcow] writes \"tick 1\" .. \"tick 15\" at offset 0, one every 0.4 s"
vm_boot "$QEMU" "$GUEST" "$work/live.sh" \
	-object "memory-backend-pcow,id=pm,mem-path=$work/live.pcow,share=on" \
	-device nvdimm,id=nv,memdev=pm -qmp "unix:$work/qmp.sock,server=on,wait=off" >"$work/live.out" 2>&1 &
vm=$!
/usr/bin/python3 - "$work/qmp.sock" "$top/tests/vm" <<'PYEOF'
import sys, time
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[2])
from qmp import QMP
q = QMP(sys.argv[1], 60)
while q.cmd("query-pcow", memdev="pm")["map"]["blocks-allocated"] == 0:
    time.sleep(0.1)       # until the guest's first tick reaches the image
time.sleep(2)
print('QMP> {"execute": "pcow-snapshot-create", "arguments": {"memdev": "pm", "name": "live"}}')
r = q.cmd("pcow-snapshot-create", memdev="pm", name="live")
print("     the guest's vCPUs were paused for %.2f ms (flush before, guest running: %.2f ms)"
      % (r["pause-ns"] / 1e6, r["flush-ns"] / 1e6))
print('QMP> {"execute": "query-pcow-snapshots", "arguments": {"memdev": "pm"}}')
for s in q.cmd("query-pcow-snapshots", memdev="pm"):
    print("     id %d  %s  taken %s" % (s["id"], s["name"],
          time.strftime("%H:%M:%S", time.localtime(s["date-sec"]))))
PYEOF
wait "$vm" && echo "The guest ran on, unaware, and finished: $(grep -c '^wrote tick' "$work/live.out") ticks written."
run "$IMG" snapshot -l live.pcow
echo "What the image holds now, and what the snapshot froze while the guest ran:"
"$IMG" convert -O raw live.pcow now.raw
printf '  now:             %s\n' "$(head -c 8 now.raw | tr -d '\0')"
cp live.pcow frozen.pcow && "$IMG" snapshot -a live frozen.pcow
"$IMG" convert -O raw frozen.pcow frozen.raw
printf '  snapshot "live": %s\n' "$(head -c 8 frozen.raw | tr -d '\0')"

say "Summary"
cat <<'EOF'
A Linux guest used a pcow image as its NVDIMM: the image took almost no
space until the guest wrote (thin provisioning), a snapshot captured the
data, the guest changed it, reverting brought the old data back without
losing the newer snapshot, and an overlay shared a base image read-only,
copying a block up on the guest's first write to it. Finally a snapshot
was taken while the guest ran, pausing it for milliseconds.
EOF
