#!/usr/bin/env bash
# End-to-end tests: a Linux guest under the patched QEMU on pcow images.
#   e2e.sh [SCENARIO...]      (default: all)
# Needs build/qemu/qemu-system-x86_64 (make qemu) and the guest
# (tests/vm/mkguest.sh); exits 77 with the reason when either is missing.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/vm/lib.sh
source "$here/lib.sh"

QEMU=$PCOW_QEMU GUEST=$PCOW_GUEST IMG=$PCOW_IMG IO=$PCOW_IO

vm_require "$QEMU" "$GUEST"

T=$(mktemp -d "${TMPDIR:-/var/tmp}/pcow-e2e.XXXXXX")
trap 'vm_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
# shellcheck source=tests/vm/checks.sh
source "$here/checks.sh"

pcow_dev() { # IMAGE [ID] -> -object/-device arguments for an NVDIMM
	# (PCOW_OBJ_OPTS: more properties of the object.  PCOW_OBJ_TYPE=new:
	# a memory-backend-pcow object; by default the legacy spelling,
	# memory-backend-file with format=pcow, which creates the same object,
	# so that the scenarios prove both.)
	local id=${2:-pm} obj="memory-backend-file,id=${2:-pm},mem-path=$1,format=pcow"
	[ "${PCOW_OBJ_TYPE:-}" != new ] || obj="memory-backend-pcow,id=$id,mem-path=$1"
	echo "-object $obj,share=on${PCOW_OBJ_OPTS:+,$PCOW_OBJ_OPTS} -device nvdimm,id=nv$id,memdev=$id"
}

# boot NAME IMAGE GUEST_SCRIPT [extra QEMU args]: fails the scenario step on
# a guest error, with the console tail.
boot() {
	local name=$1 img=$2 script=$3
	shift 3
	# shellcheck disable=SC2046
	if vm_boot "$QEMU" "$GUEST" "$script" $(pcow_dev "$img") "$@" >"$T/guest.out" 2>"$T/guest.err"; then
		ok "$name (guest rc 0, ${VM_SECONDS}s)"
		return 0
	fi
	bad "$name (guest rc ${VM_RC:-none})"
	sed 's/^/      /' "$T/guest.out" "$T/guest.err" | tail -25
	return 1
}

script() { # NAME: body from stdin
	cat >"$T/$1.sh"
	echo "$T/$1.sh"
}

allocated() { "$IMG" info --output=json "$1" | sed -n 's/^ *"allocated-blocks": \([0-9]*\).*/\1/p' | head -1; }

# Bytes of [OFF, OFF+LEN) the image's active layer holds itself (depth 0);
# OWN_BYTES_OPTS=-U reads an image in use.
own_bytes() { # IMAGE OFF LEN
	# shellcheck disable=SC2086
	"$IMG" map ${OWN_BYTES_OPTS:-} --output=json "$1" | /usr/bin/python3 -c '
import json, sys
lo, hi = int(sys.argv[1]), int(sys.argv[1]) + int(sys.argv[2])
print(sum(max(0, min(e["start"] + e["length"], hi) - max(e["start"], lo))
          for e in json.load(sys.stdin) if e["depth"] == 0 and e["data"]))' "$2" "$3"
}

# 1. Thin provisioning: a 1 GiB image; the guest writes at three places.
# QEMU maps guest memory with transparent huge pages, and the host's page
# cache then allocates a whole 2 MiB folio for a store (docs/design.md); with
# 2 MiB blocks, exactly the blocks written are allocated.
scenario_thin() {
	echo "thin provisioning"
	local img=$T/thin.pcow
	"$IMG" create -q -o block_size=2M "$img" 1G >/dev/null
	boot "guest writes three patterns" "$img" "$(script thin <<'EOF'
pm_wait_dev /dev/pmem0
pm_fill /dev/pmem0 0 4096 alpha
pm_fill /dev/pmem0 536870912 4096 bravo
pm_fill /dev/pmem0 1073737728 4096 charlie
pm_check_fill /dev/pmem0 536870912 4096 bravo
EOF
)" || return
	check "only the three blocks written are allocated" test "$(allocated "$img")" -eq 3
	check "image file stays small (under 8 MiB for 1 GiB)" test "$(du -k "$img" | cut -f1)" -lt 8192
	for spec in "0 alpha" "536870912 bravo" "1073737728 charlie"; do
		set -- $spec
		yes "$2" | tr -d '\n' | head -c 4096 >"$T/want"
		"$IMG" convert -O raw "$img" "$T/thin.raw" >/dev/null
		check "host reads '$2' at $1" cmp -n 4096 -i "$1:0" "$T/thin.raw" "$T/want"
	done
	check "image checks clean" "$IMG" check "$img"
}

# 2. Snapshots across boots: write A, snapshot, write B, apply, boot: A.
scenario_snapshot() {
	echo "snapshots across boots"
	"$IMG" create -q "$T/snap.pcow" 256M >/dev/null
	snapshots_across_boots "$T/snap.pcow" 1048576 8192
}

# The shape of scenarios 2 and 9: the guest writes A at OFF, a snapshot
# 'before'; the guest sees A and writes B over it, a snapshot 'after';
# 'before' applied, the guest reads A; 'after' applied, it reads B.
# AFTER_A, when set, names a function run on the image once A is written.
snapshots_across_boots() { # IMAGE OFF LEN
	local img=$1 off=$2 len=$3 tag
	tag=$(basename "$img" .pcow)
	boot "boot 1 writes A" "$img" "$(script "${tag}A" <<EOF
pm_wait_dev /dev/pmem0
pm_fill /dev/pmem0 $off $len AAAA
EOF
)" || return
	if [ -n "${AFTER_A:-}" ]; then "$AFTER_A" "$img" || return; fi
	check "snapshot created" "$IMG" snapshot -c before "$img"
	boot "boot 2 sees A, writes B" "$img" "$(script "${tag}B" <<EOF
pm_wait_dev /dev/pmem0
pm_check_fill /dev/pmem0 $off $len AAAA
pm_fill /dev/pmem0 $off $len BBBB
EOF
)" || return
	check "snapshot 'after' created" "$IMG" snapshot -c after "$img"
	check "snapshot 'before' applied" "$IMG" snapshot -a before "$img"
	boot "boot 3 reads A again" "$img" "$(script "${tag}C" <<EOF
pm_wait_dev /dev/pmem0
pm_check_fill /dev/pmem0 $off $len AAAA
EOF
)"
	check "snapshot 'after' still there" "$IMG" snapshot -a after "$img"
	boot "boot 4 reads B from the later snapshot" "$img" "$(script "${tag}D" <<EOF
pm_wait_dev /dev/pmem0
pm_check_fill /dev/pmem0 $off $len BBBB
EOF
)"
}

# 3. A base image and an overlay: the guest sees the base, writes the overlay.
scenario_overlay() {
	echo "base image and overlay"
	local base=$T/base.pcow ovl=$T/ovl.pcow sum
	"$IMG" create -q -o block_size=2M "$base" 256M >/dev/null
	"$IO" -c "write -P 0x42 2M 64K" "$base" >/dev/null
	"$IMG" create -q -o block_size=2M -b base.pcow -F pcow "$ovl" >/dev/null
	sum=$(sha256sum <"$base")
	boot "guest reads the base, writes next to and over it" "$ovl" "$(script ovl <<'EOF'
pm_wait_dev /dev/pmem0
want=$(head -c 4096 /dev/zero | tr '\0' 'B')
got=$(pm_read /dev/pmem0 2097152 4096 | tr '\102' 'B')
[ "$got" = "$want" ] || pm_fail "base data not visible"
pm_fill /dev/pmem0 2101248 4096 overlay
pm_fill /dev/pmem0 8388608 4096 fresh
pm_check_fill /dev/pmem0 2101248 4096 overlay
EOF
)" || return
	check "base file unchanged" test "$(sha256sum <"$base")" = "$sum"
	check "overlay holds the copied block and the new one" test "$(allocated "$ovl")" -eq 2
	check "rest of the base block kept (copy-up)" "$IO" -r -c "read -P 0x42 2M 4K" -c "read -P 0x42 2056K 56K" "$ovl"
	check "overlay checks clean" "$IMG" check "$ovl"
}

# 3b. What a guest store copies up (pcow-copy-size, pcow-fault-ahead): on
# an overlay of 4 KiB blocks, a 4 KiB write copies one page with
# pcow-copy-size=4K and 16 with 64K; bad values stop QEMU in one line.
scenario_copy() {
	echo "copy size of guest stores"
	local base=$T/cbase.pcow ovl rc size want bad_opt
	"$IMG" create -q -o block_size=4K "$base" 64M >/dev/null
	"$IO" -c "write -P 0x42 2M 256K" "$base" >/dev/null
	for size in 4K 64K; do
		ovl=$T/c$size.pcow
		want=$([ $size = 4K ] && echo 1 || echo 16)
		"$IMG" create -q -o block_size=4K -b cbase.pcow -F pcow "$ovl" >/dev/null
		PCOW_OBJ_OPTS="pcow-copy-size=$size,pcow-fault-ahead=0" \
			boot "guest writes 4 KiB into the base's data, pcow-copy-size=$size" "$ovl" "$(script "copy$size" <<'EOF'
pm_wait_dev /dev/pmem0
pm_fill /dev/pmem0 2105344 4096 page
pm_check_fill /dev/pmem0 2105344 4096 page
EOF
)" || continue
		# (Not allocated-blocks: the host's page cache writes back the
		# 2 MiB folio around the page, zero fill past the base's data.)
		check "copy size $size: the overlay took $want block(s) of the base's data" \
			test "$(own_bytes "$ovl" 2097152 262144)" -eq $((want * 4096))
		check "copy size $size: the rest of the base data shows through" \
			"$IO" -r -c "read -P 0x42 2M 8K" -c "read -P 0x42 2060K 196K" "$ovl"
		check "copy size $size: the overlay checks clean" "$IMG" check "$ovl"
	done
	for bad_opt in pcow-copy-size=3K pcow-copy-size=2K pcow-fault-ahead=100K; do
		timeout 30 "$QEMU" -accel tcg -machine pc,nvdimm=on -m 256M,slots=2,maxmem=1G -nographic -nic none \
			-object "memory-backend-file,id=pm,mem-path=$ovl,format=pcow,share=on,$bad_opt" \
			-device nvdimm,id=nvpm,memdev=pm -S -monitor none -serial none </dev/null >"$T/bad.log" 2>&1
		rc=$?
		check "$bad_opt stops QEMU" test "$rc" -ne 0 -a "$rc" -ne 124
		check "...saying why" grep -q "power of two" "$T/bad.log"
	done
	raw_refuses pcow-copy-size=64K
}

# A pcow property on a raw memory-backend-file stops QEMU, saying why: it
# is a property of memory-backend-pcow, which format=pcow creates.
raw_refuses() { # PROPERTY=VALUE
	local rc=0
	timeout 30 "$QEMU" -accel tcg -machine pc -m 256M -nographic -nic none \
		-object "memory-backend-file,id=m,mem-path=$T/plain.raw,size=64M,share=on,$1" \
		-S -monitor none -serial none </dev/null >"$T/raw.log" 2>&1 || rc=$?
	check "${1%%=*} without format=pcow stops QEMU" test "$rc" -ne 0 -a "$rc" -ne 124
	check "...saying memory-backend-file has no such property" \
		grep -q "memory-backend-file.${1%%=*}' not found" "$T/raw.log"
}

# 4. DAX inside the guest: ext4 -o dax on the NVDIMM, and on virtio-pmem.
scenario_dax() {
	echo "DAX file system in the guest"
	local img=$T/dax.pcow vimg=$T/vdax.pcow
	"$IMG" create -q "$img" 256M >/dev/null
	boot "mkfs, mount -o dax, write + fsync" "$img" "$(script dax1 <<'EOF'
pm_wait_dev /dev/pmem0
pm_fsdax /dev/pmem0 || pm_fail "fsdax"
pm_mkfs /dev/pmem0 || pm_fail "mkfs"
pm_mount /dev/pmem0 /mnt || pm_fail "mount -o dax"
pm_write_file /mnt/hello "persistent through pcow"
pm_umount /mnt
EOF
)" || return
	boot "reboot: the file is intact, fsck clean" "$img" "$(script dax2 <<'EOF'
pm_wait_dev /dev/pmem0
pm_fsck /dev/pmem0 || pm_fail "fsck"
pm_mount /dev/pmem0 /mnt || pm_fail "mount"
[ "$(cat /mnt/hello)" = "persistent through pcow" ] || pm_fail "file content"
echo "file intact"
EOF
)"
	check "image checks clean" "$IMG" check "$img"
	"$IMG" create -q "$vimg" 256M >/dev/null
	local vp="-object memory-backend-file,id=vp,mem-path=$vimg,format=pcow,share=on -device virtio-pmem-pci,memdev=vp,id=vpd"
	# shellcheck disable=SC2086
	if vm_boot "$QEMU" "$GUEST" "$(script vdax1 <<'EOF'
dev=$(pm_find virtio) || pm_fail "no virtio-pmem device"
pm_mkfs "$dev" || pm_fail "mkfs"
pm_mount "$dev" /mnt || pm_fail "mount -o dax"
pm_write_file /mnt/v "via virtio-pmem"
pm_flush /mnt/v
pm_umount /mnt
EOF
)" $vp >"$T/guest.out" 2>&1; then ok "virtio-pmem: mkfs, dax mount, write, flush"; else bad "virtio-pmem write"; tail -20 "$T/guest.out"; fi
	# shellcheck disable=SC2086
	if vm_boot "$QEMU" "$GUEST" "$(script vdax2 <<'EOF'
dev=$(pm_find virtio) || pm_fail "no virtio-pmem device"
pm_mount "$dev" /mnt || pm_fail "mount"
[ "$(cat /mnt/v)" = "via virtio-pmem" ] || pm_fail "file content"
EOF
)" $vp >"$T/guest.out" 2>&1; then ok "virtio-pmem: file intact after reboot"; else bad "virtio-pmem reboot"; tail -20 "$T/guest.out"; fi
}

# 5. Errors: a second VM on the same image, a missing backing file.
scenario_errors() {
	echo "errors"
	local img=$T/busy.pcow ovl=$T/orphan.pcow
	"$IMG" create -q "$img" 64M >/dev/null
	# shellcheck disable=SC2046
	"$QEMU" -accel tcg -machine pc,nvdimm=on -m 256M,slots=2,maxmem=1G -nographic -nic none \
		-L /usr/share/seabios -L /usr/share/qemu -L /usr/lib/ipxe/qemu \
		$(pcow_dev "$img") -S -monitor none -serial none </dev/null >"$T/first.log" 2>&1 &
	local first=$!
	sleep 2
	# shellcheck disable=SC2046
	timeout 30 "$QEMU" -accel tcg -machine pc,nvdimm=on -m 256M,slots=2,maxmem=1G -nographic -nic none \
		$(pcow_dev "$img") -S -monitor none -serial none </dev/null >"$T/second.log" 2>&1
	local rc=$?
	kill "$first" 2>/dev/null
	wait "$first" 2>/dev/null
	check "a second QEMU on the image is refused" test "$rc" -ne 0 -a "$rc" -ne 124
	check "...saying the image is in use" grep -q "in use" "$T/second.log"
	check "...in one line" test "$(grep -c . "$T/second.log")" -eq 1
	"$IMG" create -q "$T/gone.raw.src" 64M >/dev/null
	"$IMG" create -q -b gone.pcow -F pcow "$ovl" 64M -u >/dev/null 2>&1 || {
		"$IMG" create -q "$ovl" 64M >/dev/null
		"$IMG" rebase -u -b gone.pcow -F pcow "$ovl" >/dev/null
	}
	local sum
	sum=$(sha256sum <"$ovl")
	# shellcheck disable=SC2046
	timeout 30 "$QEMU" -accel tcg -machine pc,nvdimm=on -m 256M,slots=2,maxmem=1G -nographic -nic none \
		$(pcow_dev "$ovl") -S -monitor none -serial none </dev/null >"$T/missing.log" 2>&1
	rc=$?
	check "a missing backing file stops QEMU" test "$rc" -ne 0 -a "$rc" -ne 124
	check "...naming the file" grep -q "gone.pcow" "$T/missing.log"
	check "...and leaves the image untouched" test "$(sha256sum <"$ovl")" = "$sum"
}

# 6. Host file system full: QEMU stops the VM instead of dying; after room
# is made, 'cont' resumes it and the guest's data is complete.
scenario_enospc() {
	echo "host file system full"
	local d=$T/small img sock=$T/qmp.sock pid rc
	mkdir -p "$d"
	if ! mount -t tmpfs -o size=24M tmpfs "$d" 2>/dev/null; then
		echo "  SKIP: cannot mount a small tmpfs here (needs root)"
		return
	fi
	img=$d/full.pcow
	"$IMG" create -q "$img" 64M >/dev/null
	script fill >/dev/null <<'EOF'
pm_wait_dev /dev/pmem0
pm_fill /dev/pmem0 0 33554432 fill
pm_check_fill /dev/pmem0 0 33554432 fill
EOF
	# shellcheck disable=SC2046
	(
		rc=0
		vm_boot "$QEMU" "$GUEST" "$T/fill.sh" $(pcow_dev "$img") \
			-qmp "unix:$sock,server=on,wait=off" >"$T/enospc.out" 2>&1 || rc=$?
		cp "$VM_LOG" "$T/enospc.console"
		exit "$rc"
	) &
	pid=$!
	check "the VM stops with an I/O error when the image cannot grow" \
		/usr/bin/python3 "$here/qmp.py" "$sock" wait-status io-error 90
	mount -o remount,size=128M "$d"
	check "'cont' after making room" /usr/bin/python3 "$here/qmp.py" "$sock" cmd cont
	wait "$pid"
	rc=$?
	check "the guest finishes and its 32 MiB verify" test "$rc" -eq 0
	check "QEMU said why it stopped" grep -q "No space left on device" "$T/enospc.console"
	check "the image checks clean" "$IMG" check "$img"
	umount "$d"
}

# 3c. Bounded loss (pcow-persist-interval): a guest store copies a block up
# from the base, and the guest never flushes (an NVDIMM has no flush
# request).  The copy-up waits in the image's pending log; with an interval,
# QEMU's libpcow makes it durable (the log empties) while the VM runs; with
# 0 it stays pending.  QEMU is then killed: either way the next open (same
# boot) has the guest's block.
log_has_data() { # IMAGE: true when the pending log area holds data
	/usr/bin/python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    d = os.lseek(fd, 512 * 1024, os.SEEK_DATA)
except OSError:
    d = None
sys.exit(0 if d is not None and d < 2 * 1024 * 1024 else 1)' "$1"
}

log_is_empty() { ! log_has_data "$1"; }

scenario_persist() {
	echo "bounded loss of copy-ups without a flush"
	local base=$T/pbase.pcow ovl interval pid i seen opts
	"$IMG" create -q -o block_size=4K "$base" 64M >/dev/null
	"$IO" -c "write -P 0x42 2M 64K" "$base" >/dev/null
	for interval in 300 0; do
		ovl=$T/p$interval.pcow
		opts="pcow-persist-interval=$interval,pcow-copy-size=4K,pcow-fault-ahead=0"
		# Interval 300 with kernel copy-on-write (QEMU's default under
		# KVM): the copy reaches the image at the interval's write-back.
		# Interval 0 shows the pending log of the fault-handler copy-up
		# (the default under TCG): a kernel copy would stay in memory
		# until the next write-back, nothing of it in the file.
		if ((interval)); then opts+=",pcow-kernel-cow=on"; else opts+=",pcow-kernel-cow=off"; fi
		"$IMG" create -q -o block_size=4K -b pbase.pcow -F pcow "$ovl" >/dev/null
		script "persist$interval" >/dev/null <<'EOF'
pm_wait_dev /dev/pmem0
pm_pattern 4096 page | dd of=/dev/pmem0 bs=4096 seek=2105344 oflag=seek_bytes conv=notrunc,fsync status=none
sleep 60
EOF
		# shellcheck disable=SC2046
		VM_TIMEOUT=90 vm_boot "$QEMU" "$GUEST" "$T/persist$interval.sh" \
			$(PCOW_OBJ_OPTS=$opts pcow_dev "$ovl") >/dev/null 2>&1 &
		pid=$!
		# The copy-up shows (read through the pending log) once the
		# guest has stored; with an interval it may be durable already.
		seen=no
		for ((i = 0; i < 600; i++)); do
			[ "$(OWN_BYTES_OPTS=-U own_bytes "$ovl" 2097152 65536 2>/dev/null)" = 4096 ] &&
				{ seen=yes; break; }
			sleep 0.1
		done
		check "interval $interval: the guest's store copied the block up" test $seen = yes
		sleep 2
		if ((interval)); then
			check "interval $interval: made durable within the interval while the VM runs" \
				log_is_empty "$ovl"
		else
			check "interval 0: still pending after 2 s without a flush" log_has_data "$ovl"
		fi
		pkill -9 -f "mem-path=$ovl,"
		wait "$pid" 2>/dev/null
		check "interval $interval: after kill -9, the overlay holds the guest's block" \
			test "$(own_bytes "$ovl" 2097152 65536)" -eq 4096
		check "interval $interval: the overlay checks clean" "$IMG" check "$ovl"
	done
	raw_refuses pcow-persist-interval=100
}

# Issue 21: what an operator does to a running VM, driven over QMP by
# ops.py, which says what each scenario checks and prints one line per
# check.
ops() { pydrive ops.py "$1"; }

# pydrive SCRIPT SCENARIO: a Python driver (ops.py, migrate.py) that prints
# one '  ok: ' or '  FAIL: ' line per check, counted here.
pydrive() {
	local rc=0 out=$T/${1%.py}.out
	mkdir -p "$T/${1%.py}"
	PCOW_QEMU=$QEMU PCOW_IMG=$IMG PCOW_IO=$IO PCOW_GUEST=$GUEST OPS_DIR=$T/${1%.py} \
		/usr/bin/python3 "$here/$1" "$2" >"$out" 2>&1 || rc=$?
	cat "$out"
	passed=$((passed + $(grep -c '^  ok: ' "$out")))
	failed=$((failed + $(grep -c '^  FAIL: ' "$out")))
	if ((rc)) && ! grep -q '^  FAIL: ' "$out"; then
		bad "$1 $2 exited with status $rc"
	fi
}
scenario_live() { ops live; }         # 1, 2: qom-set on a running VM
scenario_reset() { ops reset; }       # 3: monitor commands after a stop
scenario_raw() { ops raw; }           # 4: a pcow image mapped raw
scenario_migrate() { ops migrate; }   # 5: migration with an NVDIMM, TCG
scenario_rovirtio() { ops rovirtio; } # 6: read-only virtio-pmem
scenario_inuse() { ops inuse; }       # 7: in use here, object-del, qom-get
scenario_truncate() { ops truncate; } # 7: an image truncated under the VM


# jget FILE KEY...: a value of a JSON file (keys and list indexes).
jget() {
	/usr/bin/python3 -c '
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2:]:
    v = v[int(k)] if isinstance(v, list) else v[k]
print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$@"
}

# $T/seqwrite, the static guest program that stamps blocks with a sequence
# number; says SKIP and fails when it cannot be built.
build_seqwrite() {
	[[ -x $T/seqwrite ]] && return 0
	if ! gcc -O2 -static -o "$T/seqwrite" "$here/seqwrite.c" 2>"$T/gcc.log"; then
		echo "  SKIP: cannot build seqwrite.c statically"
		sed 's/^/      /' "$T/gcc.log"
		return 1
	fi
}

# 7. Live snapshots (QMP) of a guest that writes all the time: seqwrite
# stamps 4 KiB blocks with a sequence number, O_DIRECT, wrapping around the
# device.  live1 is taken once it writes, live2 a few seconds later, live1
# is deleted while it still writes; the guest is never stopped.  (On a
# memory-backend-pcow object, as scenario 8; the others use the legacy
# spelling, memory-backend-file with format=pcow.)  Offline, a
# copy with live2 applied holds a prefix of the sequence, the image itself
# the whole of it, and live1's deletion gave its space back.
scenario_livesnap() {
	echo "live snapshots while the guest writes"
	local img=$T/live.pcow sock=$T/live.qmp pid rc last k2 before after size1
	build_seqwrite || return
	# LIVE_CREATE_OPTS: -o options of the image (scenario_livestriped),
	# whose names relative to $T then stay relative in the image.
	(cd "$T" && "$IMG" create -q ${LIVE_CREATE_OPTS:+-o "$LIVE_CREATE_OPTS"} live.pcow 64M >/dev/null)
	script live >/dev/null <<'EOF'
pm_wait_dev /dev/pmem0
/bin/seqwrite /dev/pmem0 16384 12
EOF
	# shellcheck disable=SC2046
	VM_FILES="$T/seqwrite=/bin/seqwrite" VM_TIMEOUT=90 vm_boot "$QEMU" "$GUEST" "$T/live.sh" \
		$(PCOW_OBJ_TYPE=new pcow_dev "$img") -qmp "unix:$sock,server=on,wait=off" >"$T/live.out" 2>&1 &
	pid=$!
	check "QMP: live1, live2 taken and live1 deleted while the guest writes" \
		/usr/bin/python3 "$here/snapdrive.py" live "$sock" pm 3 "$T/live.json"
	wait "$pid"
	rc=$?
	check "the guest wrote to the end (rc $rc)" test "$rc" -eq 0
	last=$(sed -n 's/.*SEQWRITE last=\([0-9]*\).*/\1/p' "$T/live.out" | tail -1)
	if [[ ! -s $T/live.json || -z $last ]]; then
		bad "no results"
		sed 's/^/      /' "$T/live.out" | tail -20
		return
	fi
	echo "    vCPUs paused: live1 $(jget "$T/live.json" create1 pause-ns) ns," \
		"live2 $(jget "$T/live.json" create2 pause-ns) ns," \
		"deleting live1 $(jget "$T/live.json" delete pause-ns) ns"
	check "the vCPUs were paused for each change" test \
		"$(jget "$T/live.json" create1 paused)$(jget "$T/live.json" create2 paused)$(jget "$T/live.json" delete paused)" = TrueTrueTrue
	check "query-pcow-snapshots listed live1 and live2" \
		test "$(jget "$T/live.json" snapshots 0 name) $(jget "$T/live.json" snapshots 1 name)" = "live1 live2"
	check "...and live2 alone after the deletion" \
		test "$(jget "$T/live.json" snapshots_after 0 name) $(jget "$T/live.json" snapshots_after | tr -cd '{' | wc -c)" = "live2 1"
	check "a second live2 is refused" grep -q "already exists" <<<"$(jget "$T/live.json" duplicate_error)"
	check "HMP 'info pcow' shows the image and live2" grep -q "live2" <<<"$(jget "$T/live.json" hmp_info)"
	check "query-pcow reports what waits to be made durable" \
		test -n "$(jget "$T/live.json" before map pending blocks)" -a \
		-n "$(jget "$T/live.json" before map pending kernel-copies)"
	check "...and HMP 'info pcow' too" grep -q "not yet durable" <<<"$(jget "$T/live.json" hmp_info)"
	before=$(jget "$T/live.json" before actual-size)
	after=$(jget "$T/live.json" after actual-size)
	size1=$(jget "$T/live.json" snapshots 0 allocated-size)
	echo "    image: $before bytes before deleting live1 (which alone held $size1), $after after"
	check "deleting live1 gave back its space" test "$size1" -gt 0 -a "$after" -le $((before - size1 / 2))
	# A copy of the image: its extent files too (relative names, so the
	# copy in another directory names its own).
	mkdir -p "$T/copy"
	(cd "$T" && cp -r --sparse=always live.pcow ${LIVE_COPY_DIRS:-} copy/)
	"$IMG" snapshot -a live2 "$T/copy/live.pcow"
	"$IMG" convert -O raw "$T/copy/live.pcow" "$T/live2.raw"
	check "live2 holds a prefix of the guest's writes" /usr/bin/python3 "$here/seqcheck.py" "$T/live2.raw" 16384
	k2=$(/usr/bin/python3 "$here/seqcheck.py" "$T/live2.raw" 16384 | sed -n 's/^K=\([0-9]*\).*/\1/p')
	echo "    live2 holds writes 1..$k2 of 1..$last"
	check "...taken while the guest wrote (0 < $k2 < $last)" test "${k2:-0}" -gt 0 -a "${k2:-0}" -lt "$last"
	"$IMG" convert -O raw "$img" "$T/live.raw"
	check "the image holds all $last writes" /usr/bin/python3 "$here/seqcheck.py" "$T/live.raw" 16384 "$last"
	check "the image checks clean" "$IMG" check "$img"
	check "pcow-img lists live2 alone" test "$("$IMG" snapshot -l "$img" | awk 'NR > 2 { print $2 }')" = live2
}

# 8. savevm / loadvm / delvm with a pcow NVDIMM: the VM state goes to a
# qcow2 node, the PM content into a pcow snapshot of the same name.  The
# guest (driven over a second serial port) waits for snapshot-save s0 (QMP
# job), fills 160 MiB of PM, writes A, savevm s1 (HMP, twice: the second
# replaces the first, pcow snapshot included); writes B over it,
# snapshot-save s2; snapshot-load s1 (QMP job): the guest is back at the
# savevm point and must read A from the PM (O_DIRECT), then writes C and
# carries on; snapshot-delete s0 and s2 (jobs) and delvm s1 while it runs.
# The VM states of s0 and s1 differ by far less than the 160 MiB filled.
scenario_savevm() {
	echo "savevm, loadvm and delvm include the PM image"
	local img=$T/sv.pcow vms=$T/sv.qcow2 sock=$T/sv.qmp ctl=$T/sv.ctl pid size size0
	"$IMG" create -q "$img" 256M >/dev/null
	"${QEMU%/*}/qemu-img" create -q -f qcow2 "$vms" 1G
	script savevm >/dev/null <<'EOF'
pm_wait_dev /dev/pmem0
pm_ctl_open
say() { pm_say "$@"; }
blk() { pm_put_block /dev/pmem0 "$1" "$2"; }
got() { pm_block8 /dev/pmem0 "$1"; }
X=1048576 Y=2097152
say PCOW-READY
read -r go <&3
yes pcowfill | dd of=/dev/pmem0 bs=1M seek=16 count=160 iflag=fullblock oflag=direct status=none || pm_fail "fill"
blk $X AAAAAAAA
say PCOW-A
read -r go <&3
[ "$(got $X)" = AAAAAAAA ] || { say "FAIL: after '$go' the PM holds '$(got $X)', not A"; exit 1; }
case $go in
1)	blk $X BBBBBBBB
	[ "$(got $X)" = BBBBBBBB ] || { say "FAIL: B not written"; exit 1; }
	say PCOW-B
	read -r go <&3
	say "FAIL: got '$go' after B: loadvm did not take the guest back"
	exit 1 ;;
2)	blk $Y CCCCCCCC
	[ "$(got $Y)" = CCCCCCCC ] || { say "FAIL: C not written"; exit 1; }
	say "PCOW-DONE: read A after loadvm, wrote C"
	read -r go <&3
	echo "carried on after loadvm" ;;
*)	say "FAIL: unexpected '$go'"; exit 1 ;;
esac
EOF
	# shellcheck disable=SC2046
	VM_TIMEOUT=120 vm_boot "$QEMU" "$GUEST" "$T/savevm.sh" $(PCOW_OBJ_TYPE=new pcow_dev "$img") \
		-blockdev "driver=file,filename=$vms,node-name=vmsf" -blockdev driver=qcow2,file=vmsf,node-name=vms \
		-chardev "socket,id=ctl,path=$ctl,server=on,wait=off" -serial stdio -serial chardev:ctl \
		-qmp "unix:$sock,server=on,wait=off" >"$T/savevm.out" 2>&1 &
	pid=$!
	check "s0, fill, A, savevm s1, B, s2, loadvm s1, A read, C, all deleted" \
		/usr/bin/python3 "$here/snapdrive.py" savevm "$sock" "$ctl" vms "$T/savevm.json"
	wait "$pid"
	check "after loadvm the guest read A (not B) and carried on" \
		grep -q "carried on after loadvm" "$T/savevm.out"
	if [[ ! -s $T/savevm.json ]]; then
		bad "no results"
		sed 's/^/      /' "$T/savevm.out" | tail -20
		return
	fi
	check "HMP savevm and delvm said nothing (no error)" \
		test -z "$(jget "$T/savevm.json" savevm_output)$(jget "$T/savevm.json" delvm_output)"
	check "snapshot-save and savevm (twice: it overwrites) took pcow snapshots s0 and s1" \
		test "$(jget "$T/savevm.json" pcow_after_savevm | tr -cd '{' | wc -c)" = 2 -a \
		"$(jget "$T/savevm.json" pcow_after_savevm 0 name) $(jget "$T/savevm.json" pcow_after_savevm 1 name)" = "s0 s1"
	size0=$(jget "$T/savevm.json" vmstate_sizes s0)
	size=$(jget "$T/savevm.json" vmstate_sizes s1)
	echo "    VM state: $size0 bytes before filling 160 MiB of PM, $size after;" \
		"savevm $(jget "$T/savevm.json" savevm_s) s, loadvm $(jget "$T/savevm.json" loadvm_s) s"
	check "the PM is not in the VM state" test $((size - size0)) -lt $((32 << 20))
	check "the VM runs after snapshot-load" test "$(jget "$T/savevm.json" status_after_loadvm)" = running
	check "delvm and snapshot-delete removed the pcow snapshots" \
		test "$(jget "$T/savevm.json" pcow_after_delvm)" = "[]"
	check "no snapshot left in the image" test -z "$("$IMG" snapshot -l "$img")"
	check "no snapshot left in the qcow2 file" test -z "$("${QEMU%/*}/qemu-img" snapshot -l "$vms")"
	"$IMG" convert -O raw "$img" "$T/sv.raw"
	check "the image holds A and C" test \
		"$(head -c 1048584 "$T/sv.raw" | tail -c 8)$(head -c 2097160 "$T/sv.raw" | tail -c 8)" = AAAAAAAACCCCCCCC
	check "the image checks clean" "$IMG" check "$img"
}

# 10. Live snapshots (scenario 7) of a striped image: two extent files
# in two directories, 1 MiB stripes.
scenario_livestriped() {
	mkdir -p "$T/lsA" "$T/lsB"
	LIVE_CREATE_OPTS="stripes=lsA:lsB,stripe_size=1M" LIVE_COPY_DIRS="lsA lsB" \
		scenario_livesnap
}

# 9. A striped image (docs/format.md 3.6): 256 MiB over two extent files in
# two directories, 1 MiB stripes.  Scenario 2's snapshots across boots,
# with the guest's data across the boundary of stripes 1 and 2; each
# stripe's data is in its own extent file, and QEMU refuses the image while
# an extent file is missing.
scenario_striped() {
	echo "a striped image: boot, snapshot, revert"
	local img=$T/st.pcow
	mkdir -p "$T/stA" "$T/stB"
	check "striped image created" "$IMG" create -q -o "stripes=$T/stA:$T/stB,stripe_size=1M" "$img" 256M
	AFTER_A=striped_extents snapshots_across_boots "$img" 2093056 8192
	check "stripe 5's data survived the reverts" "$IO" -r -c "read -P 0x43 5242880 4096" "$img"
	check "the image checks clean" "$IMG" check "$img"
	mv "$T/stB/st.pcow.1" "$T/stB/moved"
	# shellcheck disable=SC2046
	vm_boot "$QEMU" "$GUEST" "$T/stC.sh" $(pcow_dev "$img") >"$T/guest.out" 2>"$T/guest.err"
	check "QEMU refuses the image without extent file 1, naming it" grep -q "extent file 1" "$T/guest.out" "$T/guest.err"
	mv "$T/stB/moved" "$T/stB/st.pcow.1"
}

# Where scenario 9's data lands: stripe k of the guest range is at
# 2 MiB + k MiB in extent file k % 2.
striped_extents() { # IMAGE
	local img=$1
	extent_block() { # FILE OFFSET
		dd if="$1" bs=4096 skip=$(((2097152 + $2) / 4096)) count=1 status=none | head -c 4
	}
	check "the host reads A across the boundary" "$IO" -r -c "read -P 0x41 2093056 8192" "$img"
	check "extent file 1 holds stripe 1's data" test "$(extent_block "$T/stB/st.pcow.1" 2093056)" = AAAA
	check "extent file 0 holds stripe 2's data" test "$(extent_block "$T/stA/st.pcow.0" 2097152)" = AAAA
	check "C written at stripe 5" "$IO" -c "write -P 0x43 5242880 4096" "$img"
	check "extent file 1 holds stripe 5's data" test "$(extent_block "$T/stB/st.pcow.1" 5242880)" = CCCC
}

# Issue 16: live migration with a pcow NVDIMM, driven by migrate.py, which
# says what each scenario checks and prints one line per check.
migrate_py() { # SCENARIO
	build_seqwrite || return
	SEQWRITE=$T/seqwrite pydrive migrate.py "$1"
}
scenario_migshared() { migrate_py shared; } # shared image, guest writing
scenario_migcancel() { migrate_py cancel; } # cancelled midway
scenario_migstream() { migrate_py stream; } # no shared storage
scenario_migmismatch() { migrate_py mismatch; } # the sides disagree
scenario_migoldsnap() { migrate_py oldsnap; } # loadvm keeps the PM stream

all=(thin snapshot overlay copy persist dax errors enospc livesnap savevm
	live reset raw migrate rovirtio inuse truncate striped livestriped
	migshared migcancel migstream migmismatch migoldsnap)
for s in "${@:-${all[@]}}"; do
	"scenario_$s"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
