#!/usr/bin/env bash
# run.sh -- durable small writes inside the test guest, the same static
# program (bench/guest/pmbench.c) on each device:
#
#   a  raw PM:  NVDIMM on a raw memory-backend-file; ext4 -o dax on the
#               fsdax /dev/pmem0; the file mapped with MAP_SYNC; stores +
#               clwb + sfence per write
#   b  pcow:    the same, with a pcow image as the NVDIMM's backend
#               (format=pcow)
#   c  qcow2:   a qcow2 image on virtio-blk (cache=none); ext4 (no DAX) on
#               /dev/vda; pwrite with O_DIRECT|O_DSYNC; a 64 B write is a
#               read-modify-write of its 512 B sector (BENCH_SECTOR)
#   p  paired:  one guest with three NVDIMMs -- raw as in a, raw with
#               align=2M, pcow as in b -- and one pmbench run that
#               alternates between their files in slices of 0.1 x the test
#               time, so that the three see the same host load
#
# Every boot starts from new images (sparse raw file, `pcow-img create`,
# `qemu-img create -f qcow2`), makes the file systems, creates a 128 MiB
# file on each and runs, in this order:
#   first4k  4 KiB sequential writes to pages never written (guest file
#            blocks and host image blocks both unallocated)
#   fill     the whole file written once and made durable
#   rand64, rand4k, seq4k  on the filled file: every block allocated
# The boots alternate: odd rounds run a b c p, even rounds p c b a. A
# figure in the tables is the median over the rounds; a ratio is the median
# of the per-round ratios, with the smallest and largest.
#
# Usage: bench/guest/run.sh          (what `make bench-guest` runs)
# Environment: BENCH_ROUNDS (3), BENCH_SECONDS per test and file (3),
# BENCH_FILE_SIZE (128M), BENCH_SECTOR (512), BENCH_CONFIGS ("a b c p"),
# BENCH_KEEP=1 keeps the work directory (images, console logs, results).
# Needs build/qemu/qemu-system-x86_64 and qemu-img (make qemu), the test
# guest (make guest), build/tools/pcow-img and pcow-io (make build) and gcc
# with a static libc. Takes about 5 minutes with the defaults.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=tests/vm/lib.sh
source "$top/tests/vm/lib.sh"

QEMU=$PCOW_QEMU QEMU_IMG=$PCOW_QEMU_IMG GUEST=$PCOW_GUEST
LIBPCOW=${PCOW_LIB:-$top/build/lib/libpcow.so.0}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-3}
FILE_SIZE=${BENCH_FILE_SIZE:-128M}
SECTOR=${BENCH_SECTOR:-512}
read -r -a CONFIGS <<<"${BENCH_CONFIGS:-a b c p}"
DEV_SIZE=256M
DEV_BYTES=$((256 << 20))
MARK_OFF=$((DEV_BYTES - 4096)) # paired boot: which NVDIMM is which
TESTS=first4k,fill,rand64,rand4k,seq4k

die() { echo "run.sh: $*" >&2; exit 1; }

for f in "$QEMU" "$QEMU_IMG" "$PCOW_IMG" "$PCOW_IO"; do
	[[ -x $f ]] || die "$f not found (make build qemu)"
done
[[ -f $LIBPCOW ]] || die "$LIBPCOW not found (make build)"
[[ -s $GUEST/vmlinuz && -s $GUEST/initrd.cpio.gz ]] || die "no test guest in $GUEST (make guest)"
command -v gcc >/dev/null || die "gcc not found"

mkdir -p "$top/build"
T=$(mktemp -d "$top/build/guest-bench.XXXXXX")
cleanup() {
	vm_cleanup
	if [[ ${BENCH_KEEP:-0} == 1 ]]; then
		echo "work directory kept: $T" >&2
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private copies of QEMU, the tools and libpcow, so that a rebuild during
# the run cannot change what is measured.
mkdir -p "$T/bin"
cp -L "$QEMU" "$T/bin/qemu-system-x86_64"
cp -L "$QEMU_IMG" "$T/bin/qemu-img"
cp -L "$PCOW_IMG" "$T/bin/pcow-img"
cp -L "$PCOW_IO" "$T/bin/pcow-io"
cp -L "$LIBPCOW" "$T/bin/libpcow.so.0"
export LD_LIBRARY_PATH=$T/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
QEMU=$T/bin/qemu-system-x86_64
QEMU_IMG=$T/bin/qemu-img
PCOW_IMG=$T/bin/pcow-img
PCOW_IO=$T/bin/pcow-io

gcc -O2 -static -Wall -Wextra -o "$T/pmbench" "$here/pmbench.c" || die "cannot build pmbench.c"

# virtio_blk is not in the base initramfs: take it from the guest's kernel
# package.
kver=$(sed -n 's/^kver=\([^ ]*\) .*/\1/p' "$GUEST/guest.stamp" 2>/dev/null)
debs=("$GUEST"/cache/linux-image-"$kver"-unsigned_*.deb)
deb=${debs[-1]}
[[ -n $kver && -f $deb ]] || die "no kernel package for '$kver' in $GUEST/cache (make guest)"
dpkg-deb --fsys-tarfile "$deb" |
	tar -xO "./lib/modules/$kver/kernel/drivers/block/virtio_blk.ko" >"$T/virtio_blk.ko" ||
	die "cannot extract virtio_blk.ko from $deb"
[[ -s $T/virtio_blk.ko ]] || die "empty virtio_blk.ko"

export VM_FILES="$T/pmbench=/bin/pmbench $T/virtio_blk.ko=/lib/modules/extra/virtio_blk.ko"
export VM_QUIET=1

# --- guest scripts ------------------------------------------------------------
params="SIZE=$FILE_SIZE SECS=$SECS TESTS=$TESTS SECTOR=$SECTOR MARK_OFF=$MARK_OFF"
# No lazy inode table / journal initialisation: nothing may write in the
# background while the benchmark runs.
mkfs_opts='PM_MKFS_OPTS="-E lazy_itable_init=0,lazy_journal_init=0"'

{
	echo "$params"
	echo "$mkfs_opts"
	cat <<'EOF'
pm_wait_dev /dev/pmem0 || pm_fail "no /dev/pmem0"
pm_fsdax /dev/pmem0 || pm_fail "fsdax"
pm_mkfs /dev/pmem0 || pm_fail "mkfs"
pm_mount /dev/pmem0 /mnt || pm_fail "mount -o dax"
/bin/pmbench -m mmap -c -S "$SIZE" -t "$SECS" -T "$TESTS" /mnt/bench || pm_fail "pmbench"
pm_umount /mnt || pm_fail "umount"
EOF
} >"$T/pm.sh"

{
	echo "$params"
	echo "$mkfs_opts"
	cat <<'EOF'
insmod /lib/modules/extra/virtio_blk.ko || pm_fail "insmod virtio_blk"
pm_wait_dev /dev/vda || pm_fail "no /dev/vda"
pm_mkfs /dev/vda || pm_fail "mkfs"
mkdir -p /mnt
mount -t ext4 /dev/vda /mnt || pm_fail "mount"
echo "vda: write cache $(cat /sys/block/vda/queue/write_cache), logical block $(cat /sys/block/vda/queue/logical_block_size)"
/bin/pmbench -m dio -c -S "$SIZE" -s "$SECTOR" -t "$SECS" -T "$TESTS" /mnt/bench || pm_fail "pmbench"
umount /mnt || pm_fail "umount"
EOF
} >"$T/blk.sh"

{
	echo "$params"
	echo "$mkfs_opts"
	cat <<'EOF'
for d in /dev/pmem0 /dev/pmem1 /dev/pmem2; do
	pm_wait_dev "$d" || pm_fail "no $d"
done
for d in /dev/pmem0 /dev/pmem1 /dev/pmem2; do
	case $(pm_read "$d" "$MARK_OFF" 1) in
	r) n=raw ;;
	R) n=raw2m ;;
	p) n=pcow ;;
	*) pm_fail "$d: no marker" ;;
	esac
	echo "$d: $n"
	pm_fsdax "$d" || pm_fail "fsdax $d"
	pm_mkfs "$d" || pm_fail "mkfs $d"
	pm_mount "$d" "/mnt/$n" || pm_fail "mount -o dax $d"
done
/bin/pmbench -m mmap -c -S "$SIZE" -t "$SECS" -T "$TESTS" \
	/mnt/raw/bench /mnt/raw2m/bench /mnt/pcow/bench || pm_fail "pmbench"
for n in raw raw2m pcow; do
	pm_umount "/mnt/$n" || pm_fail "umount $n"
done
EOF
} >"$T/paired.sh"

# --- boots ----------------------------------------------------------------------
name_of() {
	case $1 in
	a) echo "(a) raw PM" ;;
	b) echo "(b) pcow" ;;
	c) echo "(c) qcow2" ;;
	p) echo "(p) paired raw / raw align=2M / pcow" ;;
	esac
}

# marker FILE CHAR: CHAR repeated over the last 4 KiB of a raw file, synced
# (as the pcow marker is) so that no image starts with dirty host pages.
marker() {
	head -c 4096 /dev/zero | tr '\0' "$2" |
		dd of="$1" bs=4096 seek=$((MARK_OFF / 4096)) conv=notrunc,fsync status=none
}

new_pcow() { "$PCOW_IMG" create -q "$1" "$DEV_SIZE" >/dev/null || die "pcow-img create failed"; }

# host_note IMAGE: host space, and pcow's own view of a pcow image.
host_note() {
	local du alloc chk
	du=$(du -k "$1" | cut -f1)
	if [[ $1 == *.pcow ]]; then
		alloc=$("$PCOW_IMG" info --output=json "$1" |
			sed -n 's/^ *"allocated-blocks": \([0-9]*\).*/\1/p' | head -n 1)
		if chk=$("$PCOW_IMG" check "$1" 2>&1); then
			chk=clean
		else
			chk="NOT CLEAN: $(tr '\n' ' ' <<<"$chk")"
			echo "$1: pcow-img check: $chk" >>"$T/failures"
		fi
		printf '%s %s KiB, %s blocks, check %s' "$(basename "$1")" "$du" "$alloc" "$chk"
	else
		printf '%s %s KiB' "$(basename "$1")" "$du"
	fi
}

# boot CONFIG ROUND: one boot on new images; appends to results.tsv.
boot() {
	local cfg=$1 round=$2 script load rc f note=
	local -a args imgs
	local mem=${VM_MEM:-512M,slots=2,maxmem=4G}
	local timeout=$((90 + 8 * ${SECS%.*}))
	rm -f "$T"/*.raw "$T"/*.pcow "$T"/*.qcow2
	case $cfg in
	a)
		imgs=("$T/a.raw")
		truncate -s "$DEV_SIZE" "$T/a.raw"
		args=(-object "memory-backend-file,id=pm,mem-path=$T/a.raw,size=$DEV_SIZE,share=on"
			-device "nvdimm,id=nv,memdev=pm")
		script=$T/pm.sh
		;;
	b)
		imgs=("$T/b.pcow")
		new_pcow "$T/b.pcow"
		args=(-object "memory-backend-file,id=pm,mem-path=$T/b.pcow,format=pcow,share=on"
			-device "nvdimm,id=nv,memdev=pm")
		script=$T/pm.sh
		;;
	c)
		imgs=("$T/c.qcow2")
		"$QEMU_IMG" create -q -f qcow2 "$T/c.qcow2" "$DEV_SIZE" || die "qemu-img create failed"
		args=(-drive "file=$T/c.qcow2,if=virtio,format=qcow2,cache=none")
		script=$T/blk.sh
		;;
	p)
		imgs=("$T/pa.raw" "$T/pa2.raw" "$T/pb.pcow")
		truncate -s "$DEV_SIZE" "$T/pa.raw" "$T/pa2.raw"
		marker "$T/pa.raw" r
		marker "$T/pa2.raw" R
		new_pcow "$T/pb.pcow"
		"$PCOW_IO" -c "write -P 0x70 $MARK_OFF 4K" -c flush "$T/pb.pcow" >/dev/null ||
			die "pcow-io write failed"
		args=(-object "memory-backend-file,id=pa,mem-path=$T/pa.raw,size=$DEV_SIZE,share=on"
			-device "nvdimm,id=nva,memdev=pa"
			-object "memory-backend-file,id=pa2,mem-path=$T/pa2.raw,size=$DEV_SIZE,share=on,align=2M"
			-device "nvdimm,id=nva2,memdev=pa2"
			-object "memory-backend-file,id=pb,mem-path=$T/pb.pcow,format=pcow,share=on"
			-device "nvdimm,id=nvb,memdev=pb")
		mem=512M,slots=4,maxmem=4G
		timeout=$((120 + 24 * ${SECS%.*}))
		script=$T/paired.sh
		;;
	esac
	load=$(cut -d' ' -f1 /proc/loadavg)
	VM_MEM=$mem VM_TIMEOUT=$timeout vm_boot "$QEMU" "$GUEST" "$script" "${args[@]}" \
		2>"$T/boot-$cfg-$round.err"
	rc=$?
	printf '%s\n' "$VM_OUTPUT" >"$T/boot-$cfg-$round.out"
	[[ -n $VM_LOG && -f $VM_LOG ]] && cp "$VM_LOG" "$T/boot-$cfg-$round.console"
	printf '  round %s %-38s rc=%s %5ss load %s' "$round" "$(name_of "$cfg")" "$rc" "$VM_SECONDS" "$load" >&2
	if ((rc != 0)); then
		echo " FAILED" >&2
		sed 's/^/    /' "$T/boot-$cfg-$round.out" "$T/boot-$cfg-$round.err" | tail -n 30 >&2
		echo "$(name_of "$cfg") round $round: boot failed (rc $rc)" >>"$T/failures"
	else
		awk -v c="$cfg" -v r="$round" '/^RESULT / {
			delete kv
			for (i = 2; i <= NF; i++) { split($i, p, "="); kv[p[1]] = p[2] }
			cfg = c
			if (c == "p") {
				f = kv["file"]
				cfg = f ~ /\/raw\// ? "pa" : f ~ /\/raw2m\// ? "pa2" : f ~ /\/pcow\// ? "pb" : "p?"
			}
			print cfg, r, kv["test"], kv["ops"], kv["secs"], kv["ops_per_s"], kv["best_slice_ops_per_s"]
		}' <<<"$VM_OUTPUT" >>"$T/results.tsv"
		grep '^pmbench:' <<<"$VM_OUTPUT" | sed "s/^pmbench: /$cfg /" >>"$T/modes"
	fi
	echo "$cfg $round $load $VM_SECONDS" >>"$T/boots"
	for f in "${imgs[@]}"; do
		note+="${note:+; }$(host_note "$f")"
		echo "$cfg $(basename "$f") $round $(du -k "$f" | cut -f1)" >>"$T/alloc"
	done
	echo " ($note)" >&2
	rm -f "${imgs[@]}"
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

echo "# Durable small writes in the test guest: raw PM, pcow, qcow2"
echo
echo "- host: Linux $(uname -r), $(nproc) CPUs ($(sed -n 's/^model name\t*: //p' /proc/cpuinfo | head -n 1)), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo)"
[[ -r /etc/debian_version ]] && echo "- distribution: Debian $(cat /etc/debian_version)"
echo "- source: $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown), libpcow.so.0 sha256 $(sha256sum <"$T/bin/libpcow.so.0" | cut -c1-12)"
echo "- QEMU: $("$QEMU" --version | head -n 1), -accel tcg -cpu max, 1 vCPU, 512 MiB RAM"
echo "- guest: Linux $kver; NVDIMMs and disk of $DEV_SIZE; file of $FILE_SIZE; $SECS s per test and file; $ROUNDS rounds of ${CONFIGS[*]} (even rounds in reverse order)"
echo "- images in: $T ($(df -T "$T" | awk 'NR == 2 {print $2 " on " $1}'))"
echo "- started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)"
echo

t_start=$(date +%s)
# Odd rounds run the configurations in order, even rounds in reverse
# (a b c p, p c b a, ...): a and b are neighbours in every round and take
# turns going first.
n=${#CONFIGS[@]}
for ((r = 1; r <= ROUNDS; r++)); do
	for ((k = 0; k < n; k++)); do
		if ((r % 2)); then boot "${CONFIGS[k]}" "$r"; else boot "${CONFIGS[n - 1 - k]}" "$r"; fi
	done
done
t_end=$(date +%s)

# --- report ----------------------------------------------------------------------
echo "Guest mappings and I/O modes (first boot of each):"
echo
awk '!seen[$1 " " $2]++' "$T/modes" | sed 's/^\([a-z]*\) /- (\1) /'
echo

touch "$T/results.tsv"
awk -v rounds_n="$ROUNDS" '
function sortv(list, x,    n, i, j, t) {
	n = split(list, x, " ")
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && x[j - 1] + 0 > x[j] + 0; j--) { t = x[j]; x[j] = x[j - 1]; x[j - 1] = t }
	return n
}
function med(list,    x, n) {
	n = sortv(list, x)
	if (n == 0) return ""
	return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2
}
function fmt(x) { return x == "" ? "n/a" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x)) }
# Per-round ratios num/den for test t (best: of the best slices).
function ratios(num, den, t, best,    r, list, x, y) {
	list = ""
	for (r = 1; r <= rounds_n; r++)
		if ((num, r, t) in v && (den, r, t) in v) {
			x = best ? bs[num, r, t] : v[num, r, t]
			y = best ? bs[den, r, t] : v[den, r, t]
			if (y > 0) list = list " " x / y
		}
	return list
}
function rfmt(list,    x, n, f) {
	n = sortv(list, x)
	if (n == 0) return "n/a"
	f = med(list) >= 20 ? "%.0f" : "%.3f"
	return sprintf(f " [" f "-" f "]", med(list), x[1], x[n])
}
{ v[$1, $2, $3] = $6; bs[$1, $2, $3] = $7; vals[$1, $3] = vals[$1, $3] " " $6; have[$1] = 1 }
END {
	nt = split("rand64 rand4k seq4k first4k", tests, " ")
	name["rand64"] = "64 B random"; name["rand4k"] = "4 KiB random"
	name["seq4k"] = "4 KiB sequential"; name["first4k"] = "4 KiB sequential, first write"
	if (have["a"] || have["b"] || have["c"]) {
		print "Separate boots, one device each. Median ops/s (TCG: only the ratios mean"
		print "something); ratio: median of the per-round ratios [smallest-largest]."
		print ""
		print "| durable write | (a) raw PM | (b) pcow | (c) qcow2 | (b)/(a) | (b)/(c) | (b)/(a), best slices |"
		print "|---|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= nt; i++) {
			t = tests[i]
			printf "| %s | %s | %s | %s | %s | %s | %s |\n", name[t],
				fmt(med(vals["a", t])), fmt(med(vals["b", t])), fmt(med(vals["c", t])),
				rfmt(ratios("b", "a", t, 0)), rfmt(ratios("b", "c", t, 0)),
				rfmt(ratios("b", "a", t, 1))
		}
		print ""
	}
	if (have["pa"]) {
		print "Paired boots: raw, raw with align=2M and pcow NVDIMMs in one guest, the"
		print "writes alternating between them in slices. Median ops/s; ratios as above."
		print ""
		print "| durable write | raw PM | raw PM, align=2M | pcow | pcow / raw | pcow / raw align=2M | pcow / raw, best slices | pcow / raw align=2M, best slices |"
		print "|---|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= nt; i++) {
			t = tests[i]
			printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name[t],
				fmt(med(vals["pa", t])), fmt(med(vals["pa2", t])), fmt(med(vals["pb", t])),
				rfmt(ratios("pb", "pa", t, 0)), rfmt(ratios("pb", "pa2", t, 0)),
				rfmt(ratios("pb", "pa", t, 1)), rfmt(ratios("pb", "pa2", t, 1))
		}
		print ""
	}
	print "Goals (steady state: rand64, rand4k, seq4k on allocated blocks):"
	print ""
	for (i = 1; i <= 3; i++) {
		t = tests[i]
		if (have["a"] && have["b"]) {
			m = med(ratios("b", "a", t, 0))
			printf "- (b)/(a) >= 0.95, %s, separate boots: %.3f, %s\n", t, m, (m >= 0.95 ? "met" : "NOT met")
		}
		if (have["pa"]) {
			m = med(ratios("pb", "pa", t, 0))
			printf "- (b)/(a) >= 0.95, %s, paired boots: %.3f, %s\n", t, m, (m >= 0.95 ? "met" : "NOT met")
		}
	}
	if (have["b"] && have["c"]) {
		m = med(ratios("b", "c", "rand64", 0))
		printf "- (b)/(c) >= 10, rand64: %.0f, %s\n", m, (m >= 10 ? "met" : "NOT met")
	}
}' "$T/results.tsv"
echo
echo "Host space of each image after its boot (du, KiB, median over the rounds):"
echo
awk '{ k = $1 " " $2; v[k] = v[k] " " $4 } END { for (k in v) print k, v[k] }' "$T/alloc" | sort |
	while read -r cfg img vals; do
		printf -- '- %s, %s: %s\n' "$(name_of "$cfg")" "$img" \
			"$(tr ' ' '\n' <<<"$vals" | sort -n | awk '{ x[NR] = $1 } END { print x[int((NR + 1) / 2)] }')"
	done
echo
echo "Boots: $(wc -l <"$T/boots") in $((t_end - t_start)) s; 1-minute load average before each boot:" \
	"$(awk '{ print $3 }' "$T/boots" | sort -n | head -n 1) to $(awk '{ print $3 }' "$T/boots" | sort -n | tail -n 1)."
echo "Finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average $(loadavg)."
if [[ -s $T/failures ]]; then
	echo
	echo "Failures:"
	echo
	sed 's/^/- /' "$T/failures"
	exit 1
fi
