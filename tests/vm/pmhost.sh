#!/usr/bin/env bash
# pcow on a persistent-memory host: the test guest, whose NVDIMM is real
# persistent memory to its kernel (fsdax, ext4 -o dax), runs pcow's own
# tools, unit tests and benchmark there, where pcow maps images MAP_SYNC.
#
#   pmhost.sh [SCENARIO...]     (default: tools pmd seek unit)
#
#   tools  pcow-img create / overlay / snapshot, pcow-io --mmap writes
#          (allocation, copy-up from the base and from a snapshot, flush):
#          every writable mapping of the image is MAP_SYNC ("sf" in smaps),
#          the data reads back, check is clean
#   pmd    an image of 2 MiB blocks is mapped with 2 MiB pages: every PMD
#          fault the kernel traces for it (fs_dax events) is served whole,
#          for allocations and copy-ups alike
#   seek   SEEK_DATA/SEEK_HOLE and hole punching on DAX ext4, as pcow
#          relies on them: a store shows as data at once, a discard as a
#          hole, a copy-up allocates what it copies, zero fill reads as zeros
#   unit   the mapping unit tests on the DAX file system
#   crash  the crash loop: PCOW_DAX_CRASH_POINTS (50) crash states of a
#          guest writing through pcow-io --mmap, each checked by a later
#          boot (tests/vm/README.md, "The DAX crash loop")
#   bench  map_bench in the guest: pcow on DAX against a raw file on the
#          same file system (docs/benchmarks.md); not part of make check
#
# Needs the patched QEMU (PCOW_QEMU, default build/qemu/qemu-system-x86_64),
# the test guest (PCOW_GUEST, default build/guest) and a build tree
# (PCOW_BUILD, default build) with the tools, tests and bench; exits 77,
# saying why, when one is missing.  KEEP=1 keeps the work directory.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=tests/vm/lib.sh
source "$here/lib.sh"

QEMU=$PCOW_QEMU GUEST=$PCOW_GUEST
BUILD=${PCOW_BUILD:-$top/build}
CRASH_POINTS=${PCOW_DAX_CRASH_POINTS:-50}
PY=/usr/bin/python3

vm_require "$QEMU" "$GUEST"
for f in tools/pcow-img tools/pcow-io lib/libpcow.so.0; do
	if [[ ! -e $BUILD/$f ]]; then
		echo "SKIP: no $BUILD/$f (make build)"
		exit 77
	fi
done

T=$(mktemp -d "${TMPDIR:-/var/tmp}/pcow-pmhost.XXXXXX")
trap 'vm_cleanup; [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"' EXIT
passed=0 failed=0
ok() { echo "  ok: $*"; passed=$((passed + 1)); }
bad() { echo "  FAIL: $*"; failed=$((failed + 1)); }

# The tools, their libraries, the unit tests and the benchmark, as one
# more initrd archive for every boot.
UNIT_TESTS=(pending kcow map copy_size sigbus fault_error integrity lifetime)
pack=("$BUILD/tools/pcow-img=/bin/pcow-img" "$BUILD/tools/pcow-io=/bin/pcow-io")
for t in "${UNIT_TESTS[@]}"; do
	[[ -x $BUILD/tests/test_$t ]] && pack+=("$BUILD/tests/test_$t=/opt/pcow/test_$t")
done
[[ -x $BUILD/bench/map_bench ]] && pack+=("$BUILD/bench/map_bench=/opt/pcow/map_bench")
if ! vm_pack "$GUEST" "$T/pcow.cpio.gz" "${pack[@]}"; then
	echo "FAIL: cannot pack the tools for the guest"
	exit 1
fi
export VM_INITRDS=$T/pcow.cpio.gz
export VM_QUIET=1

nvdimm() { # FILE SIZE SLOT -> QEMU arguments for an NVDIMM on a raw file
	[[ -e $1 ]] || truncate -s "$2" "$1"
	echo "-object memory-backend-file,id=m$3,mem-path=$1,size=$2,share=on -device nvdimm,id=nv$3,memdev=m$3,slot=$3"
}

script() { # NAME: guest script from stdin, after the helpers
	{
		echo '. /lib/pmhost-guest.sh'
		cat
		echo 't_done'
	} >"$T/$1.sh"
	echo "$T/$1.sh"
}

# boot NAME SCRIPT QEMU_ARGS...: runs the guest script; its "ok:" and
# "FAIL:" lines count as checks.
boot() {
	local name=$1 script=$2 rc=0
	shift 2
	VM_FILES="$here/guest/pmhost-guest.sh=/lib/pmhost-guest.sh" \
		vm_boot "$QEMU" "$GUEST" "$script" "$@" >/dev/null 2>"$T/boot.err" || rc=$?
	while IFS= read -r line; do
		case $line in
		ok:*) ok "${line#ok: }" ;;
		FAIL:*) bad "${line#FAIL: }" ;;
		"    "*) echo "    $line" ;;
		esac
	done <<<"$VM_OUTPUT"
	if ((rc == 0)); then
		ok "$name: guest rc 0, ${VM_SECONDS}s"
	else
		bad "$name: guest rc ${VM_RC:-none} (${VM_SECONDS}s)"
		sed 's/^/      /' "$T/boot.err" | tail -25
		[[ -n $VM_OUTPUT ]] && printf '%s\n' "$VM_OUTPUT" | tail -15 | sed 's/^/      | /'
	fi
	return "$rc"
}

# guest_run NAME SIZE: boot NAME with the guest script on stdin and an
# NVDIMM of SIZE on a raw file of its own.
guest_run() {
	local script
	script=$(script "$1")
	# shellcheck disable=SC2046
	boot "$1" "$script" $(nvdimm "$T/$1.raw" "$2" 0)
}

# ---- tools -------------------------------------------------------------------
scenario_tools() {
	echo "pcow's tools on ext4 -o dax"
	guest_run tools 256M <<'EOF'
pmh_start
# A base of 64 KiB blocks with data at 2 MiB, an overlay of 4 KiB blocks
# with its own data at 6 MiB, snapshot s1 of that.
t_check "create the base" pcow-img create -q base.pcow 16M
t_check "write the base" pcow-io -c "write -P 0x42 2M 512K" base.pcow
t_check "create an overlay" pcow-img create -q -o block_size=4K -b base.pcow -F pcow ovl.pcow
t_check "write the overlay" pcow-io -c "write -P 0x53 6M 256K" ovl.pcow
t_check "snapshot s1" pcow-img snapshot -c s1 ovl.pcow
# Through the mapping: an allocation where nothing lies below, a copy-up
# from the base, one from the snapshot, a flush; then pcow-io waits on
# its input while the mappings are read.
pmh_io_open ovl.pcow
echo "write -P 0x61 10M 8K" >&3
echo "write -P 0x62 2101248 4K" >&3
echo "write -P 0x63 6299648 100" >&3
echo "flush" >&3
echo "stats" >&3
pmh_io_wait '^blocks-copied' 1
pmh_maps $PMH_IO /mnt/ovl.pcow >/tmp/maps
pmh_maps $PMH_IO /mnt/base.pcow >>/tmp/maps
sed 's/^/    /' /tmp/maps
t_check "pcow-io served the three writes" test "$(grep -c '^wrote' /tmp/io.out)" = 3
t_check "two copy-ups faulted (base, snapshot)" grep -q '^faults [1-9]' /tmp/io.out
t_check "the overlay's writable mappings are shared" grep -q ' rw-s ' /tmp/maps
t_check "every writable mapping is MAP_SYNC (VmFlags sf)" \
	sh -c '! grep " rw-s " /tmp/maps | grep -v " sf "'
t_check "blocks inherited from the snapshot and the base are mapped read-only" \
	sh -c 'grep " r--s " /tmp/maps | grep -q ovl.pcow && grep " r--s " /tmp/maps | grep -q base.pcow'
echo "write -P 0x64 12M 4K" >&3
pmh_io_close
t_check "pcow-io exits 0" test $? = 0
t_check "check is clean" pcow-img check ovl.pcow
t_check "the writes read back, around them the base and the snapshot" pcow-io -r \
	-c "read -P 0x61 10M 8K" -c "read -P 0x42 2M 4K" -c "read -P 0x62 2101248 4K" \
	-c "read -P 0x42 2105344 504K" -c "read -P 0x53 6M 8K" -c "read -P 0x63 6299648 100" \
	-c "read -P 0x53 6299748 253852" -c "read -P 0x64 12M 4K" -c "read -P 0 12587008 4K" ovl.pcow
t_check "the copy-ups took one block each" pcow-io -r -c "alloc 2M 512K" -c "alloc 6M 256K" ovl.pcow
grep -q '^4096/524288 bytes' /tmp/t_check.out && grep -q '^4096/262144 bytes' /tmp/t_check.out &&
	t_ok "...4 KiB of the base's and of the snapshot's data" ||
	t_bad "...the overlay holds: $(tr '\n' ' ' </tmp/t_check.out)"
t_check "snapshot s2, then s1 applied" sh -c 'pcow-img snapshot -c s2 ovl.pcow && pcow-img snapshot -a s1 ovl.pcow'
t_check "s1 reads as before the mapped writes" pcow-io --mmap -r \
	-c "read -P 0x42 2M 512K" -c "read -P 0x53 6M 256K" -c "read -P 0 10M 8K" ovl.pcow
t_check "s2 applied reads the mapped writes" sh -c 'pcow-img snapshot -a s2 ovl.pcow &&
	pcow-io --mmap -r -c "read -P 0x61 10M 8K" -c "read -P 0x62 2101248 4K" ovl.pcow'
t_check "snapshots deleted, commit into the base" sh -c 'pcow-img snapshot -d s1 ovl.pcow &&
	pcow-img snapshot -d s2 ovl.pcow && pcow-img commit -q ovl.pcow'
t_check "the base holds the overlay's data" pcow-io -r -c "read -P 0x61 10M 8K" \
	-c "read -P 0x62 2101248 4K" -c "read -P 0x42 2105344 504K" -c "read -P 0x64 12M 4K" base.pcow
t_check "base and overlay check clean" sh -c 'pcow-img check base.pcow && pcow-img check ovl.pcow'
cd /
t_check "umount, fsck clean" sh -c 'umount /mnt && /sbin/e2fsck -f -n /dev/pmem0'
EOF
}

# ---- 2 MiB pages -------------------------------------------------------------
scenario_pmd() {
	echo "2 MiB pages for 2 MiB blocks"
	guest_run pmd 256M <<'EOF'
pmh_start
t_check "a base of 2 MiB blocks" sh -c 'pcow-img create -q -o block_size=2M base.pcow 64M &&
	pcow-io -c "write -P 0x42 8M 4M" base.pcow'
t_check "an overlay of 2 MiB blocks" pcow-img create -q -o block_size=2M -b base.pcow -F pcow ovl.pcow
pmh_trace_on dax_pmd_fault_done dax_pte_fault_done || pm_fail "tracefs"
# Allocations at 0, 2, 4 MiB and 20 MiB; copy-ups of the base's blocks at 8
# and 10 MiB (one store each).
t_check "stores through the mapping" pcow-io --mmap -c "write -P 0x61 0 6M" \
	-c "write -P 0x62 20M 4K" -c "write -P 0x63 8388708 8" -c "write -P 0x64 10M 4K" ovl.pcow
pmh_trace_off
pmh_pmd_results | sed 's/^/    PMD faults: /'
pte=$(grep -c dax_pte_fault_done "$PMH_TRACE/trace")
echo "    PTE faults: $pte"
t_check "no PMD fault fell back to 4 KiB pages" sh -c '! grep dax_pmd_fault_done "$0" | grep -q FALLBACK' "$PMH_TRACE/trace"
t_check "the 6 blocks written were mapped with 2 MiB pages" \
	test "$(grep dax_pmd_fault_done "$PMH_TRACE/trace" | grep -c -e NOPAGE -e NEEDDSYNC)" -ge 6
t_check "no 4 KiB fault in the image" test "$pte" = 0
t_check "the data reads back" pcow-io -r -c "read -P 0x61 0 6M" -c "read -P 0x62 20M 4K" \
	-c "read -P 0x42 8M 100" -c "read -P 0x63 8388708 8" -c "read -P 0x42 8388716 2097044" \
	-c "read -P 0x64 10M 4K" -c "read -P 0x42 10489856 2093056" ovl.pcow
t_check "check is clean" pcow-img check ovl.pcow
# For reference: ext4 made without the 2 MiB stripe.
cd /
umount /mnt
PM_MKFS_OPTS= pm_mkfs /dev/pmem0 && pm_mount /dev/pmem0 /mnt || pm_fail "mkfs without stripe"
cd /mnt && pcow-img create -q -o block_size=2M plain.pcow 64M || pm_fail "create"
pmh_trace_on dax_pmd_fault_done
pcow-io --mmap -c "write -P 0x61 0 8M" plain.pcow >/dev/null || t_bad "writes without the stripe"
pmh_trace_off
echo "    without -E stride=512: $(pmh_pmd_results | tr '\n' ' ')"
EOF
}

# ---- SEEK_DATA / SEEK_HOLE, hole punching ------------------------------------
scenario_seek() {
	echo "SEEK_DATA, SEEK_HOLE and hole punching on DAX ext4"
	guest_run seek 256M <<'EOF'
pmh_start
# own START LEN: bytes the image's active layer holds there, read while
# pcow-io has it open (-U: force-share).
own() { pcow-io -r -U -c "alloc $1 $2" a.pcow | sed -n 's,^\([0-9]*\)/.*,\1,p'; }
pcow-img create -q -o block_size=4K a.pcow 64M || pm_fail "create"
pmh_io_open a.pcow
# A store into a hole of a mapping: the file system allocates its page
# (with 2 MiB pages, the 2 MiB around it, zeroed), SEEK_DATA finds it at
# once, with no flush, from another process.
echo "write -P 0x61 1052672 4K" >&3
pmh_io_wait '^wrote' 1
got=$(own 0 2M)
echo "    a 4 KiB store into an empty 2 MiB: $got bytes of data"
t_check "SEEK_DATA finds the store while the image is mapped" test "$got" -ge 4096
t_check "...and no data in the next 2 MiB" test "$(own 2M 2M)" = 0
t_check "what the file system allocated around it reads as zeros" \
	pcow-io -r -U -c "read -P 0 0 1052672" -c "read -P 0x61 1052672 4K" -c "read -P 0 1056768 1040384" a.pcow
# A discard punches the blocks: SEEK_HOLE finds the hole at once, the
# mapping reads zeros, the space is freed.
before=$(du -k a.pcow | cut -f1)
echo "discard 0 2M" >&3
echo "read -P 0 1M 64K" >&3
pmh_io_wait '^read' 1
t_check "a discard through the mapped image reads as zeros in the mapping" grep -q '^read 65536' /tmp/io.out
t_check "SEEK_HOLE: no data left in the discarded range" test "$(own 0 2M)" = 0
t_check "the space is freed ($before KiB before)" test "$(du -k a.pcow | cut -f1)" -lt "$before"
echo "write -P 0x62 1M 4K" >&3
echo "read -P 0x62 1M 4K" >&3
pmh_io_wait '^read' 2
t_check "a store after the punch allocates again" test "$(own 1M 4K)" = 4096
pmh_io_close
t_check "pcow-io exits 0" test $? = 0
t_check "check is clean" pcow-img check a.pcow
# Over a base, stores copy up only the blocks they store into: inherited
# runs split the writable mapping, so no 2 MiB fault can cover them.
pcow-img create -q -o block_size=4K b.pcow 64M &&
	pcow-io -c "write -P 0x42 4M 64K" -c "write -P 0x42 4325376 64K" b.pcow >/dev/null &&
	pcow-img create -q -o block_size=4K -b b.pcow -F pcow o.pcow || pm_fail "base and overlay"
t_check "4 KiB copy-ups and a store into the hole between inherited runs" \
	pcow-io --mmap --copy-size 4K --fault-ahead 0 -c "write -P 0x63 4202496 4K" \
	-c "write -P 0x64 4358144 4K" -c "write -P 0x65 4292608 4K" o.pcow
pcow-img map --output=json o.pcow | grep '"depth": 0, "present": true' | sed 's/^/    /'
t_check "the overlay holds exactly the three blocks stored into" \
	sh -c 'pcow-io -r -c "alloc 4M 256K" o.pcow | grep -q "^12288/262144"'
t_check "SEEK_DATA of the bitmap: check finds every copy bit" pcow-img check o.pcow
t_check "the rest of the base shows through" pcow-io -r -c "read -P 0x42 4M 8K" \
	-c "read -P 0x63 4202496 4K" -c "read -P 0x42 4206592 52K" -c "read -P 0 4259840 32K" \
	-c "read -P 0x65 4292608 4K" -c "read -P 0x42 4325376 32K" -c "read -P 0x64 4358144 4K" o.pcow
# Discard of a block the base holds: punched, and its copy bit makes it
# read as zeros.
t_check "discard over inherited data" pcow-io --mmap -c "discard 4210688 16K" -c "read -P 0 4210688 16K" o.pcow
t_check "it still reads as zeros after reopening; check is clean" sh -c \
	'pcow-io -r -c "read -P 0 4210688 16K" -c "read -P 0x42 4227072 4K" o.pcow && pcow-img check o.pcow'
EOF
}

# ---- unit tests ----------------------------------------------------------------
scenario_unit() {
	echo "the mapping unit tests on DAX"
	local t list=""
	for t in "${UNIT_TESTS[@]}"; do
		[[ -x $BUILD/tests/test_$t ]] && list+=" $t"
	done
	[[ -n $list ]] || { bad "no unit tests in $BUILD/tests"; return; }
	VM_TIMEOUT=900 guest_run unit 2G <<EOF
pmh_start
export PCOW_TEST_DIR=/mnt
for t in $list; do
	args=
	# (not alternate_writes: the VMA budget, 25 s here and nothing of DAX)
	[ \$t = map ] && args="api_changes_show no_bridge_over_discard shared_base_stays_sparse
		pending_bits sparse_backing fault_inside_library out_of_space shuffled_allocate
		cow_threads chaining"
	s=\$(cut -d' ' -f1 /proc/uptime)
	/opt/pcow/test_\$t \$args >/tmp/\$t.out 2>&1
	rc=\$?
	e=\$(cut -d' ' -f1 /proc/uptime)
	grep -i -e 'MAP_SYNC' -e 'skipped' /tmp/\$t.out | sed 's/^/    /'
	if [ \$rc = 0 ]; then
		t_ok "test_\$t (\$(awk -v a=\$s -v b=\$e 'BEGIN { printf "%.1f", b - a }') s)"
	else
		t_bad "test_\$t exits \$rc"
		tail -n 5 /tmp/\$t.out | sed 's/^/    /'
	fi
done
EOF
	rm -f "$T/unit.raw"
}

# ---- the crash loop --------------------------------------------------------------
# Each boot first checks the crash states the previous boot left (the
# NVDIMM itself, killed with it, in slot 0, and the copies taken while it
# ran, in slots 1 to COPIES), then runs a new cycle on slot 0: a base, an
# overlay, a snapshot, READY, and a stream of writes through pcow-io
# --mmap, while the host stops the VM COPIES times to copy the NVDIMM's
# file and at last kills QEMU (pmhost_crash.py control).  The checks'
# reads go to a raw NVDIMM (slot EXPORT), which the host compares with the
# plan (pmhost_crash.py verify).
scenario_crash() {
	local copies=${PCOW_DAX_CRASH_COPIES:-4} nwrites=${PCOW_DAX_CRASH_WRITES:-250}
	local seed=${PCOW_DAX_CRASH_SEED:-$((RANDOM * 32768 + RANDOM))}
	local dir=$T/crash main=$T/crash/main.raw export=$((copies + 1))
	local made=0 checked=0 boots=0 fresh=1 leaks=0 acked_total=0 ahead_total=0 torn=0 failed0=$failed
	local pending=() next line i slot file acked plan cdir args obs bbs rc fields t0
	echo "crash loop: $CRASH_POINTS crash states of pcow-io --mmap on ext4 -o dax" \
		"(PCOW_DAX_CRASH_SEED=$seed)"
	mkdir -p "$dir"
	t0=$(date +%s)
	while ((made < CRASH_POINTS || ${#pending[@]})); do
		boots=$((boots + 1))
		cdir=$dir/b$boots
		mkdir -p "$cdir"
		rm -f "$dir/export.raw"
		args="$(nvdimm "$main" 128M 0) $(nvdimm "$dir/export.raw" 96M "$export")"
		{
			echo '. /lib/pmhost-guest.sh'
			echo "EXPORT=\$(pm_by_slot $export) || pm_fail 'no export NVDIMM'"
			for ((i = 0; i < ${#pending[@]}; i++)); do
				read -r slot file acked plan <<<"${pending[$i]}"
				((slot)) && args+=" $(nvdimm "$file" 128M "$slot")"
				echo "pmh_verify $slot \$EXPORT $i"
			done
		} >"$cdir/guest.sh"
		VM_FILES_MORE=
		if ((made < CRASH_POINTS)); then
			read -r obs bbs < <($PY "$here/pmhost_crash.py" plan "$cdir" "$seed" "$boots" "$nwrites")
			for f in base pre stream; do
				VM_FILES_MORE+=" $cdir/$f.cmds=/pm/$f.cmds"
			done
			echo "pmh_cycle $fresh $obs $bbs || exit 1; sleep 600" >>"$cdir/guest.sh"
			$PY "$here/pmhost_crash.py" control "$cdir/qmp.sock" "$cdir/qemu.pid" \
				"$cdir/report.log" "$main" "$cdir" "$copies" "$seed.$boots" &
			next=$!
		else
			next=
		fi
		rc=0
		# shellcheck disable=SC2086
		VM_FILES="$here/guest/pmhost-guest.sh=/lib/pmhost-guest.sh$VM_FILES_MORE" \
			VM_TIMEOUT=300 VM_MEM=512M,slots=8,maxmem=4G vm_boot "$QEMU" "$GUEST" \
			"$cdir/guest.sh" $args \
			-qmp "unix:$cdir/qmp.sock,server=on,wait=off" -pidfile "$cdir/qemu.pid" \
			-serial stdio -serial "file:$cdir/report.log" >/dev/null 2>"$cdir/boot.err" || rc=$?
		cp "$VM_LOG" "$cdir/console.log" 2>/dev/null
		[[ -n $next ]] && wait "$next"
		# The states of the previous boot.
		for ((i = 0; i < ${#pending[@]}; i++)); do
			read -r slot file acked plan <<<"${pending[$i]}"
			line=$(tr -d '\r' <"$cdir/report.log" 2>/dev/null | grep "^VERIFY $slot " | head -n 1)
			fields=" ${line#VERIFY "$slot" } "
			if [[ -z $line ]]; then
				bad "boot $boots: no check of the crash state in slot $slot (boot rc $rc)"
				tail -n 15 "$cdir/console.log" | sed 's/^/      /'
				continue
			fi
			if [[ $fields != *" check=0 "* && $fields != *" check=3 "* ]] ||
				[[ $fields == *" check=3 "* && $fields != *" repair=0 "* ]] ||
				[[ $fields != *" rw=0 "* || $fields != *" recheck=0 "* ||
				   $fields != *" same=yes "* || $fields != *" fsck=0 "* ]]; then
				bad "crash state $((checked + 1)) (boot $((boots - 1)), slot $slot, $acked acknowledged): $line"
				checked=$((checked + 1))
				continue
			fi
			[[ $fields == *" check=3 "* ]] && leaks=$((leaks + 1))
			dd if="$dir/export.raw" of="$dir/got.raw" bs=1M skip=$((i * 16)) count=16 status=none
			if why=$($PY "$here/pmhost_crash.py" verify "$plan" "$dir/got.raw" "$acked"); then
				acked_total=$((acked_total + acked))
				ahead_total=$((ahead_total + $(sed -n 's/.*, \([0-9]*\) more done.*/\1/p' <<<"$why")))
				[[ $why == *torn* ]] && torn=$((torn + 1))
			else
				bad "crash state $((checked + 1)) (boot $((boots - 1)), slot $slot, $acked acknowledged): $why"
				checked=$((checked + 1))
				continue
			fi
			checked=$((checked + 1))
			((slot)) && rm -f "$file"
		done
		pending=()
		if ((made < CRASH_POINTS)); then
			if [[ ! -s $cdir/points.json ]] || ! grep -q '"ready": true' "$cdir/points.json"; then
				bad "boot $boots: the cycle did not start ($(sed -n 's/.*"why": "\([^"]*\)".*/\1/p' "$cdir/points.json" 2>/dev/null))"
				tail -n 15 "$cdir/console.log" | sed 's/^/      /'
				break
			fi
			fresh=0
			i=1
			while read -r file acked; do
				if [[ $file == "$main" ]]; then
					pending+=("0 $file $acked $cdir")
				else
					pending+=("$i $file $acked $cdir")
					i=$((i + 1))
				fi
				made=$((made + 1))
			done < <($PY -c 'import json, sys
for p in json.load(open(sys.argv[1]))["points"]:
    print(p["file"], p["acked"])' "$cdir/points.json")
			if ! grep -q '"killed": true' "$cdir/points.json"; then
				bad "boot $boots: QEMU was not killed: $(cat "$cdir/points.json")"
				break
			fi
		elif ((rc != 0)); then
			bad "boot $boots (checks only): guest rc ${VM_RC:-none}"
			tail -n 15 "$cdir/console.log" | sed 's/^/      /'
		fi
		echo "  boot $boots: $checked crash states checked, $made made, $(($(date +%s) - t0)) s"
	done
	if ((checked >= CRASH_POINTS && failed == failed0)); then
		ok "$checked crash states in $boots boots ($(($(date +%s) - t0)) s): every acknowledged store there" \
			"($acked_total in all; the guest was $ahead_total writes ahead of the host's count;" \
			"$torn crash states caught a write half done), nothing else changed, $leaks with leaks repaired"
	else
		bad "$checked of $CRASH_POINTS crash states checked, $((failed - failed0)) failures" \
			"(PCOW_DAX_CRASH_SEED=$seed; KEEP=1 keeps the states)"
	fi
}

# ---- measurements ----------------------------------------------------------------
# map_bench on ext4 -o dax in the guest, twice: raw baselines mapped
# MAP_SHARED as on any file system, then MAP_SYNC as pcow maps there (-y).
# Wall clock (-W): a MAP_SYNC fault waits for the journal's commit, which
# another thread does.  BENCH_DAX_OPTS replaces the sizes and repeats.
scenario_bench() {
	echo "map_bench on ext4 -o dax in the guest (TCG: ratios only)"
	local opts=${BENCH_DAX_OPTS:--s 64M -f 32M -c 32M -b 1024 -n 2M -r 5}
	[[ -x $BUILD/bench/map_bench ]] || { bad "no $BUILD/bench/map_bench"; return; }
	VM_TIMEOUT=3000 guest_run bench 1G <<EOF
pmh_start
mkdir -p /mnt/b
for y in "" -y; do
	/opt/pcow/map_bench -d /mnt/b -W $opts \$y -t steady,first,cow >/tmp/bench.out 2>&1 ||
		t_bad "map_bench \$y: \$(tail -n 1 /tmp/bench.out)"
	sed 's/^/    /' /tmp/bench.out
done
EOF
	printf '%s\n' "$VM_OUTPUT" | sed -n 's/^    //p' >"${BENCH_DAX_OUT:-$T/bench.md}"
	echo "  tables: ${BENCH_DAX_OUT:-$T/bench.md}"
}

all=(tools pmd seek unit)
for s in "${@:-${all[@]}}"; do
	if ! declare -F "scenario_$s" >/dev/null; then
		echo "pmhost.sh: no scenario '$s' (tools pmd seek unit crash bench)" >&2
		exit 2
	fi
	"scenario_$s"
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
