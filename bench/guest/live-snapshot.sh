#!/usr/bin/env bash
# live-snapshot.sh -- how long a live snapshot stops a running guest:
# pcow-snapshot-create of a pcow NVDIMM (the vCPUs' stop-to-resume time,
# QEMU's own measure "pause-ns") beside qcow2's
# blockdev-snapshot-internal-sync on a disk of the same size with the same
# data allocated, in the same guest (docs/benchmarks.md, "Live snapshots").
#
# For each configuration SIZE:WRITTEN (default "1G:1G 16G:1G 16G:8G"):
#   - a qcow2 disk of SIZE with WRITTEN allocated (qemu-img bench -w),
#     attached to a virtio-blk device (which the guest does not use);
#   - BENCH_BOOTS boots (default 3), each with a new pcow image of SIZE
#     as the NVDIMM (64 KiB blocks); the guest writes WRITTEN to it
#     (dd from /dev/zero, O_DIRECT: every page stored to) and the host
#     measures, with the guest idle:
#       round 0   the first pcow snapshot, which freezes the active layer
#                 that holds the data;
#       rounds 1..BENCH_ROUNDS (default 10): a pcow snapshot (the data now
#                 inherited from the first one) and a qcow2 internal
#                 snapshot (deleted again at once, so that each is taken
#                 with WRITTEN allocated), alternating which goes first;
#     then the same rounds again while the guest runs seqwrite over the
#     first 16 MiB of the NVDIMM without a pause (4 KiB O_DIRECT|O_SYNC
#     writes, about 0.5 GB/s under TCG).
# BENCH_COW lists the variants each boot is repeated with (default
# "fault"): "fault" (pcow-kernel-cow=off: the snapshot write-protects the
# pages of the layer it freezes), "remap" (the same with PCOW_NO_KEEP=1:
# the map is rebuilt by mapping everything anew, as before that change)
# and "kernel" (pcow-kernel-cow=on).  BENCH_DATA=offline writes the pcow data with pcow-io before the boot
# instead.  BENCH_STRACE=1 takes the first snapshot under strace -T of
# QEMU's main thread and adds the system calls of its pause to the results
# (fdatasync, mmap...).  BENCH_DIR puts the work directory elsewhere (e.g.
# /dev/shm, where fdatasync costs nothing).
#
# Results: the raw measurements (JSON lines) and a Markdown table in the
# work directory, printed at the end.  BENCH_KEEP=1 keeps the directory
# (on the disk, under build/).  Needs make build qemu guest and gcc with a
# static libc; 16G:8G needs about 20 GB of free disk space.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
# shellcheck source=tests/vm/lib.sh
source "$top/tests/vm/lib.sh"

QEMU=$PCOW_QEMU QEMU_IMG=$PCOW_QEMU_IMG GUEST=$PCOW_GUEST
BOOTS=${BENCH_BOOTS:-3}
ROUNDS=${BENCH_ROUNDS:-10}
DATA=${BENCH_DATA:-guest}
read -r -a CONFIGS <<<"${BENCH_CONFIGS:-1G:1G 16G:1G 16G:8G}"
read -r -a VARIANTS <<<"${BENCH_COW:-fault}"

die() { echo "live-snapshot.sh: $*" >&2; exit 1; }
mib() { numfmt --from=iec "$1" | awk '{ print $1 / 1048576 }'; }

for f in "$QEMU" "$QEMU_IMG" "$PCOW_IMG" "$PCOW_IO"; do
	[[ -x $f ]] || die "$f not found (make build qemu)"
done
[[ -s $GUEST/vmlinuz ]] || die "no test guest in $GUEST (make guest)"

T=$(mktemp -d "${BENCH_DIR:-$top/build}/live-snap-bench.XXXXXX")
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

gcc -O2 -static -o "$T/seqwrite" "$top/tests/vm/seqwrite.c" || die "cannot build seqwrite.c"
export VM_FILES="$T/seqwrite=/bin/seqwrite" VM_QUIET=1 VM_TIMEOUT=3600
results=$T/results.jsonl

echo "live-snapshot.sh: $(date -u '+%F %T') UTC, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), data written by: $DATA" | tee "$T/header"
for cfg in "${CONFIGS[@]}"; do
	size=${cfg%%:*} written=${cfg#*:}
	wmib=$(mib "$written")
	echo "== $size image, $written written"
	"$QEMU_IMG" create -q -f qcow2 "$T/disk.qcow2" "$size"
	"$QEMU_IMG" bench -w -q -t none -d 16 -s 1M -c "$wmib" --pattern=165 \
		-f qcow2 "$T/disk.qcow2" >/dev/null || die "qemu-img bench"
	for ((b = 1; b <= BOOTS; b++)); do
	for variant in "${VARIANTS[@]}"; do
		case $variant in
		fault) cow=off keep= ;;
		remap) cow=off keep=1 ;;
		kernel) cow=on keep= ;;
		*) die "unknown BENCH_COW variant $variant" ;;
		esac
		rm -f "$T/pm.pcow"
		"$PCOW_IMG" create -q "$T/pm.pcow" "$size" >/dev/null
		if [[ $DATA == offline ]]; then
			args=()
			for ((m = 0; m < wmib; m += 1024)); do
				args+=(-c "write -P 0xa5 ${m}M $((wmib - m < 1024 ? wmib - m : 1024))M")
			done
			"$PCOW_IO" "${args[@]}" "$T/pm.pcow" >/dev/null || die "pcow-io"
			guest_write=0
		else
			guest_write=$wmib
		fi
		cat >"$T/guest.sh" <<EOF
pm_wait_dev /dev/pmem0
stty -F /dev/ttyS1 raw -echo
exec 3<>/dev/ttyS1
t0=\$(cut -d' ' -f1 /proc/uptime)
[ $guest_write -eq 0 ] || dd if=/dev/zero of=/dev/pmem0 bs=1M count=$guest_write oflag=direct status=none
echo "WRITTEN $guest_write MiB from \$t0 to \$(cut -d' ' -f1 /proc/uptime) s" >&3
read -r go <&3
/bin/seqwrite /dev/pmem0 4096 3600 &
echo WRITER >&3
read -r go <&3
kill \$!
EOF
		rm -f "$T/qmp.sock" "$T/ctl.sock"
		PCOW_NO_KEEP=$keep VM_MEM="512M,slots=2,maxmem=$((${size%G} + 2))G" vm_boot "$QEMU" "$GUEST" "$T/guest.sh" \
			-object "memory-backend-file,id=pm,mem-path=$T/pm.pcow,format=pcow,share=on,pcow-kernel-cow=$cow" \
			-device nvdimm,id=nv,memdev=pm \
			-blockdev "driver=file,filename=$T/disk.qcow2,node-name=qfile" \
			-blockdev driver=qcow2,file=qfile,node-name=qdisk \
			-device virtio-blk-pci,drive=qdisk \
			-chardev "socket,id=ctl,path=$T/ctl.sock,server=on,wait=off" \
			-serial stdio -serial chardev:ctl \
			-qmp "unix:$T/qmp.sock,server=on,wait=off" &
		pid=$!
		echo "{\"kind\": \"boot\", \"config\": \"$cfg $variant\", \"boot\": $b, \"load\": \"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >>"$results"
		qpid=
		if [[ ${BENCH_STRACE:-0} == 1 ]]; then
			for ((i = 0; i < 50; i++)); do
				[[ -z $qpid ]] || break
				sleep 0.1
				qpid=$(pgrep -f "mem-path=$T/pm.pcow," | while read -r p; do
					[[ $(cat "/proc/$p/comm") == qemu-system-* ]] && echo "$p"; done)
			done
		fi
		/usr/bin/python3 "$here/live_snapshot.py" "$T/qmp.sock" "$T/ctl.sock" "$ROUNDS" "$results" $qpid ||
			echo "boot $b of $cfg: the driver failed" >&2
		wait "$pid" || echo "boot $b of $cfg: guest rc $?" >&2
	done
	done
	rm -f "$T/disk.qcow2" "$T/pm.pcow"
done

/usr/bin/python3 - "$results" <<'EOF' | tee "$T/results.md"
import json, statistics, sys

recs = [json.loads(l) for l in open(sys.argv[1])]
cfg = None
by = {}
for r in recs:
    if r["kind"] == "boot":
        cfg = r["config"]
        by.setdefault(cfg, {"loads": []})["loads"].append(r["load"].split()[0])
    elif r["kind"] in ("pcow-first", "pcow", "qcow2", "strace"):
        by[cfg].setdefault(r["kind"], []).append(r)

def ms(v):
    return "%.2f" % (v / 1e6)

def span(rs, key):
    v = sorted(r[key] for r in rs)
    return "%s (%s – %s)" % (ms(statistics.median(v)), ms(v[0]), ms(v[-1]))

print("| image, written | guest | pcow snapshot: vCPUs stopped, ms | of which the image | flush before (guest running), ms | qcow2 internal snapshot, ms | samples pcow / qcow2 |")
print("|---|---|---:|---:|---:|---:|---|")
for c, d in by.items():
    rows = [("first snapshot, idle", d.get("pcow-first", []), []),
            ("later, idle", [r for r in d.get("pcow", []) if r["phase"] == "idle"],
             [r for r in d.get("qcow2", []) if r["phase"] == "idle"]),
            ("later, writing", [r for r in d.get("pcow", []) if r["phase"] == "busy"],
             [r for r in d.get("qcow2", []) if r["phase"] == "busy"])]
    for name, p, q in rows:
        if not p:
            continue
        print("| %s | %s | %s | %s | %s | %s | %d / %d |" % (
            c.replace(" ", ", ").replace(":", ", "), name, span(p, "pause-ns"), span(p, "switch-ns"),
            span(p, "flush-ns"), span(q, "wall-ns") if q else "", len(p), len(q)))
traces = [(c, r) for c, d in by.items() for r in d.get("strace", [])]
if traces:
    print()
    print("System calls of QEMU's main thread during the first snapshot's pause (strace -T; ms, calls):")
    print()
    for c, r in traces:
        calls = sorted(r["calls"].items(), key=lambda kv: -kv[1]["ms"])
        print("- %s: total %.2f ms; %s" % (c.replace(":", ", "),
              sum(v["ms"] for v in r["calls"].values()),
              ", ".join("%s %.2f (%d)" % (k, v["ms"], v["calls"]) for k, v in calls)))
print()
print("load average at each boot: " + "; ".join(
    "%s: %s" % (c, " ".join(d["loads"])) for c, d in by.items()))
EOF
