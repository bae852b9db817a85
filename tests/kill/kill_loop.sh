#!/usr/bin/env bash
# Kill loop: processes writing to an image are killed with SIGKILL at a
# random moment; the image must then check clean (or with leaks only, which
# `check -r leaks` repairs) and hold every write acknowledged before the kill.
#
#   tests/kill/kill_loop.sh [ITERATIONS]     (default 500)
#
# The tools come from PCOW_IMG and PCOW_IO (default build/tools/).  Work is
# done on tmpfs (/dev/shm).  KILL_SEED fixes the random choices (default:
# random; the seed is printed, so a failure can be replayed), KILL_KEEP=DIR
# keeps the files of each failed iteration there, and KILL_VERBOSE=1 prints
# the timing of every snapshot operation killed.
#
# Iteration i runs scenario i % 6, with a random block size (4 KiB, 64 KiB
# or 2 MiB):
#   0  pcow-io writer, file mode, plain image
#   1  pcow-io writer, --mmap mode, plain image
#   2  pcow-io writer, file mode, over a raw backing file (copy-up)
#   3  pcow-io writer, --mmap mode, over a raw backing file (copy-up in the
#      fault handler; every other time --cow=kernel: the kernel copies, and
#      a write counts as acknowledged once the flush after it is done, since
#      a kernel copy lives in memory until written back)
#   4  pcow-io writer, file or --mmap mode, over a snapshot (copy-up from
#      an older layer)
#   5  pcow-img snapshot -c / -a / -d killed (delete copies blocks into the
#      layers that inherited them, which makes it the longest operation)
#
# A writer reads its commands from a FIFO, so it stays open; it prints
# "wrote ..." after each write.  Write k goes to a range no other write
# touches, with pattern 1 + k % 255.  After the kill:
#   - `pcow-img check` exits 0 or 3 (leaks); after 3, `check -r leaks`
#     exits 0 and a second check too;
#   - the image read read-only before the repair equals the image after it;
#   - `pcow-io read -P` finds every acknowledged write intact;
#   - the whole image equals the base content plus the acknowledged writes,
#     except the one write in flight, whose bytes are each old or new.
# For snapshot operations, the active layer and every snapshot left must
# read as before the operation or as after it.
set -uo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$DIR/../.." && pwd)
ITER=${1:-500}
PCOW_IMG=${PCOW_IMG:-$SRC/build/tools/pcow-img}
PCOW_IO=${PCOW_IO:-$SRC/build/tools/pcow-io}
MODEL="/usr/bin/python3 $DIR/kill_model.py"
SIZE=$((16 * 1024 * 1024))
SEED=${KILL_SEED:-$(( (RANDOM << 15) | RANDOM ))}
RANDOM=$SEED

for t in "$PCOW_IMG" "$PCOW_IO"; do
	[[ -x $t ]] || { echo "kill_loop.sh: $t is missing (build first)" >&2; exit 1; }
done

W=$(mktemp -d /dev/shm/pcow-kill.XXXXXX)
WRITER_PID=
FEEDER_PID=
cleanup() {
	[[ -n $WRITER_PID ]] && kill -9 "$WRITER_PID" 2>/dev/null
	[[ -n $FEEDER_PID ]] && kill -9 "$FEEDER_PID" 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

failures=0
iter_desc=
fail() {
	echo "FAIL (iteration $i, $iter_desc, KILL_SEED=$SEED): $*"
	failures=$((failures + 1))
	if [[ -n ${KILL_KEEP:-} ]]; then
		mkdir -p "$KILL_KEEP"
		cp -r "$W/it" "$KILL_KEEP/iteration-$i"
		echo "  kept in $KILL_KEEP/iteration-$i"
	fi
}

# Random integer in [0, n).
rnd() { echo $(((RANDOM << 15 | RANDOM) % $1)); }

# Sleeps a random time in [0, max_us) microseconds, without forking (a
# `read -t` on a FIFO nobody writes): kills must land inside operations
# that take a millisecond.
rsleep() {
	local us=$(((RANDOM << 15 | RANDOM) % $1))
	read -r -t "$((us / 1000000)).$(printf '%06d' $((us % 1000000)))" -u 9 _
}



# check_after_kill IMG: check, repair leaks, check again.  Returns 1 on failure.
check_after_kill() {
	local img=$1 rc
	"$PCOW_IMG" check "$img" >"$W/it/check.out" 2>&1
	rc=$?
	case $rc in
	0) ;;
	3)
		leaks_seen=$((leaks_seen + 1))
		if ! "$PCOW_IMG" check -r leaks "$img" >"$W/it/repair.out" 2>&1; then
			fail "check -r leaks failed: $(cat "$W/it/repair.out")"
			return 1
		fi
		if ! "$PCOW_IMG" check "$img" >"$W/it/check2.out" 2>&1; then
			fail "check after check -r leaks failed: $(cat "$W/it/check2.out")"
			return 1
		fi
		;;
	*)
		fail "check exited $rc: $(cat "$W/it/check.out")"
		return 1
		;;
	esac
	return 0
}

base_for() { # BLOCK_SIZE-independent base content, made once
	[[ -e $W/base.raw ]] || $MODEL mkbase "$W/base.raw" "$SIZE" 7
}

# ---- writers ---------------------------------------------------------------

# writer_iteration MODE(file|mmap|kernel) SETUP(plain|raw|snap) BS
writer_iteration() {
	local mode=$1 setup=$2 bs=$3 img=$W/it/img.pcow base=- k acked rc
	local mflag=() ack='^wrote ' feed=$W/it/plan
	[[ $mode == mmap ]] && mflag=(--mmap)
	[[ $mode == kernel ]] && mflag=(--mmap --cow=kernel) && ack='^[0-9.]* [KMG]iB$'
	case $setup in
	plain)
		"$PCOW_IMG" create -o block_size="$bs" "$img" "$SIZE" >/dev/null || { fail "create"; return; }
		;;
	raw)
		base_for
		cp "$W/base.raw" "$W/it/base.raw"
		"$PCOW_IMG" create -b base.raw -F raw -o block_size="$bs" "$img" >/dev/null || { fail "create"; return; }
		base=$W/base.raw
		;;
	snap)
		base_for
		"$PCOW_IMG" convert -f raw -O pcow -o block_size="$bs" "$W/base.raw" "$img" >/dev/null &&
			"$PCOW_IMG" snapshot -c base "$img" || { fail "setup"; return; }
		base=$W/base.raw
		;;
	esac
	$MODEL plan "$W/it/plan" "$SIZE" "$(rnd 1000000)"
	# Kernel copy-on-write: each write is followed by a flush, and by a
	# `length` whose answer says the flush is done.
	if [[ $mode == kernel ]]; then
		feed=$W/it/feed
		awk '{print; print "flush"; print "length"}' "$W/it/plan" >"$feed"
	fi
	mkfifo "$W/it/fifo"
	"$PCOW_IO" "${mflag[@]}" "$img" <"$W/it/fifo" >"$W/it/out" 2>"$W/it/err" &
	WRITER_PID=$!
	exec 3>"$W/it/fifo"
	# The first k writes, then once they are acknowledged the rest, and the
	# kill after a random delay of up to 1.5 ms, which lands anywhere in them.
	k=$(rnd 40)
	local per=1
	[[ $mode == kernel ]] && per=3
	head -n "$((k * per))" "$feed" >&3
	while (($(grep -c "$ack" "$W/it/out") < k)) && kill -0 "$WRITER_PID" 2>/dev/null; do
		sleep 0.001
	done
	tail -n +"$((k * per + 1))" "$feed" >&3 &
	FEEDER_PID=$!
	rsleep 1500
	kill -9 "$WRITER_PID" 2>/dev/null
	wait "$WRITER_PID" 2>/dev/null
	rc=$?
	kill -9 "$FEEDER_PID" 2>/dev/null
	wait "$FEEDER_PID" 2>/dev/null
	exec 3>&-
	WRITER_PID=
	FEEDER_PID=
	if ((rc != 137)); then
		fail "writer was not killed but exited $rc: $(cat "$W/it/err")"
		return
	fi
	acked=$(grep -c "$ack" "$W/it/out")
	acked_total=$((acked_total + acked))
	(($(wc -l <"$W/it/plan") > acked)) && writers_cut=$((writers_cut + 1))
	# The image as a read-only open sees it, before any repair.
	"$PCOW_IMG" convert -O raw "$img" "$W/it/before.raw" >/dev/null 2>"$W/it/conv.err" ||
		{ fail "convert (read-only) after the kill: $(cat "$W/it/conv.err")"; return; }
	check_after_kill "$img" || return
	"$PCOW_IMG" convert -O raw "$img" "$W/it/after.raw" >/dev/null 2>"$W/it/conv.err" ||
		{ fail "convert after the repair: $(cat "$W/it/conv.err")"; return; }
	cmp -s "$W/it/before.raw" "$W/it/after.raw" ||
		{ fail "the image reads differently before and after the repair"; return; }
	if ((acked)); then
		local cmds=()
		while read -r _ _ pat off len; do
			cmds+=(-c "read -P $pat $off $len")
		done < <(head -n "$acked" "$W/it/plan")
		"$PCOW_IO" -r "${cmds[@]}" "$img" >"$W/it/read.out" 2>&1 ||
			{ fail "an acknowledged write does not read back: $(grep -m1 -i fail "$W/it/read.out")"; return; }
	fi
	local why
	why=$($MODEL verify "$W/it/after.raw" "$base" "$W/it/plan" "$acked") ||
		{ fail "content: $why"; return; }
}

# ---- snapshot operations ---------------------------------------------------

# Builds $1 (block size $2): layers s1 <- s2 <- active, each with more data.
make_snap_image() {
	local img=$1 bs=$2
	"$PCOW_IMG" create -o block_size="$bs" "$img" 8M >/dev/null &&
		"$PCOW_IO" -c "write -P 0x11 0 3M" -c "write -P 0x12 5M 1M" "$img" >/dev/null &&
		"$PCOW_IMG" snapshot -c s1 "$img" &&
		"$PCOW_IO" -c "write -P 0x21 1M 2M" -c "write -P 0x22 7M 4k" "$img" >/dev/null &&
		"$PCOW_IMG" snapshot -c s2 "$img" &&
		"$PCOW_IO" -c "write -P 0x31 2M 512k" -c "write -P 0x32 6M 64k" "$img" >/dev/null
}

# Content of snapshot NAME of IMG (on a copy) into RAW.
snapshot_raw() {
	local img=$1 name=$2 raw=$3
	$MODEL copy "$img" "$W/it/tmp.pcow" &&
		"$PCOW_IMG" snapshot -a "$name" "$W/it/tmp.pcow" &&
		"$PCOW_IMG" convert -O raw "$W/it/tmp.pcow" "$raw" >/dev/null
}

declare -A snap_ref_made
snap_ready() { # BS: reference image and contents, made once per block size
	local bs=$1 r=$W/snapref-$1
	[[ -n ${snap_ref_made[$bs]:-} ]] && return 0
	mkdir -p "$r" "$W/it"
	make_snap_image "$r/img.pcow" "$bs" || return 1
	"$PCOW_IMG" convert -O raw "$r/img.pcow" "$r/active.raw" >/dev/null &&
		snapshot_raw "$r/img.pcow" s1 "$r/s1.raw" &&
		snapshot_raw "$r/img.pcow" s2 "$r/s2.raw" || return 1
	snap_ref_made[$bs]=1
}

# snapshot_iteration BS OP(create|apply|delete) NAME
snapshot_iteration() {
	local bs=$1 op=$2 name=$3 r=$W/snapref-$1 img=$W/it/img.pcow rc s delay t
	local flag
	snap_ready "$bs" || { fail "could not make the snapshot reference image"; return; }
	$MODEL copy "$r/img.pcow" "$img"
	case $op in
	create) flag=-c ;;
	apply) flag=-a ;;
	delete) flag=-d ;;
	esac
	t=${snap_time[$bs.$op.$name]:-5000}
	delay=$((t / 3 + $(rnd "$t")))
	$MODEL killat "$delay" "$PCOW_IMG" snapshot "$flag" "$name" "$img" 2>"$W/it/err"
	rc=$?
	[[ -n ${KILL_VERBOSE:-} ]] && echo "  snapshot $flag $name (bs $bs): kill after $delay us (it takes $t us), exit $rc"
	if ((rc == 137)); then
		killed=$((killed + 1))
	elif ((rc != 0)); then
		fail "snapshot $flag $name exited $rc: $(cat "$W/it/err")"
		return
	fi
	check_after_kill "$img" || return
	"$PCOW_IMG" convert -O raw "$img" "$W/it/active.raw" >/dev/null 2>"$W/it/conv.err" ||
		{ fail "convert: $(cat "$W/it/conv.err")"; return; }
	if ! cmp -s "$W/it/active.raw" "$r/active.raw"; then
		if [[ $op == apply ]] && cmp -s "$W/it/active.raw" "$r/$name.raw"; then
			applied=$((applied + 1))
		else
			fail "after snapshot $flag $name, the active layer holds neither the data before nor after"
			return
		fi
	fi
	"$PCOW_IMG" snapshot -l "$img" >"$W/it/list" 2>&1 || { fail "snapshot -l"; return; }
	for s in s1 s2; do
		if ! grep -qw "$s" "$W/it/list"; then
			[[ $op == delete && $s == "$name" ]] && continue
			fail "snapshot $s disappeared after snapshot $flag $name"
			return
		fi
		snapshot_raw "$img" "$s" "$W/it/$s.raw" || { fail "cannot apply $s"; return; }
		cmp -s "$W/it/$s.raw" "$r/$s.raw" ||
			{ fail "snapshot $s changed content after snapshot $flag $name"; return; }
	done
	if grep -qw s3 "$W/it/list"; then
		snapshot_raw "$img" s3 "$W/it/s3.raw" || { fail "cannot apply s3"; return; }
		cmp -s "$W/it/s3.raw" "$r/active.raw" ||
			{ fail "the new snapshot s3 does not hold the active data"; return; }
	fi
}

# How long each snapshot operation takes here (the fastest of three runs,
# from start to exit, as killat counts): the kill delay is drawn from
# [1/3, 4/3] of that (the first third is mostly process start-up).
declare -A snap_time
time_snapshot_ops() {
	local bs op name flag t best try img=$W/it/img.pcow
	for bs in 4096 65536 2097152; do
		snap_ready "$bs" || return 1
		for op in create:s3 apply:s1 apply:s2 delete:s1 delete:s2; do
			name=${op#*:}
			op=${op%:*}
			case $op in create) flag=-c ;; apply) flag=-a ;; delete) flag=-d ;; esac
			best=
			for try in 1 2 3; do
				$MODEL copy "$W/snapref-$bs/img.pcow" "$img"
				t=$($MODEL duration "$PCOW_IMG" snapshot "$flag" "$name" "$img") || return 1
				[[ -z $best ]] || ((t < best)) && best=$t
			done
			snap_time[$bs.$op.$name]=$best
		done
	done
}

# ---- the loop --------------------------------------------------------------

echo "kill loop: $ITER iterations, KILL_SEED=$SEED, tools $PCOW_IMG $PCOW_IO"
mkdir -p "$W/it"
mkfifo "$W/sleep.fifo"
exec 9<>"$W/sleep.fifo"
time_snapshot_ops || { echo "FAIL: snapshot operations do not work"; exit 1; }
[[ -n ${KILL_VERBOSE:-} ]] && for k in "${!snap_time[@]}"; do echo "  kill window $k: ${snap_time[$k]} us"; done
acked_total=0
writers_cut=0
leaks_seen=0
killed=0
applied=0
declare -A done_by
start=$(date +%s)
block_sizes=(4096 65536 2097152)
snap_ops=(create:s3 apply:s1 delete:s1 delete:s2 apply:s2)
for ((i = 0; i < ITER; i++)); do
	rm -rf "$W/it"
	mkdir -p "$W/it"
	bs=${block_sizes[$(rnd 3)]}
	case $((i % 6)) in
	0) iter_desc="file writer, plain, bs $bs"; writer_iteration file plain "$bs" ;;
	1) iter_desc="mmap writer, plain, bs $bs"; writer_iteration mmap plain "$bs" ;;
	2) iter_desc="file writer, raw backing, bs $bs"; writer_iteration file raw "$bs" ;;
	3)
		m=mmap
		(((i / 6) % 2)) && m=kernel
		iter_desc="$m writer, raw backing, bs $bs"
		writer_iteration "$m" raw "$bs"
		;;
	4)
		m=file
		(((i / 6) % 2)) && m=mmap
		iter_desc="$m writer, over a snapshot, bs $bs"
		writer_iteration "$m" snap "$bs"
		;;
	5)
		op=${snap_ops[$(((i / 6) % ${#snap_ops[@]}))]}
		iter_desc="snapshot ${op%:*} ${op#*:}, bs $bs"
		snapshot_iteration "$bs" "${op%:*}" "${op#*:}"
		;;
	esac
	done_by[$((i % 6))]=$((${done_by[$((i % 6))]:-0} + 1))
	if (((i + 1) % 50 == 0)); then
		echo "  $((i + 1))/$ITER iterations, $failures failures, $(($(date +%s) - start)) s"
	fi
done
echo "kill loop: $ITER iterations in $(($(date +%s) - start)) s: $acked_total acknowledged writes verified," \
	"$writers_cut writers killed with writes pending, $leaks_seen leak repairs, $killed snapshot operations killed mid-way ($applied applies took effect)"
echo "$((ITER - failures)) passed, $failures failed"
((failures == 0))
