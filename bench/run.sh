#!/bin/sh
# run.sh -- runs the mapping-engine benchmarks (bench/map_bench.c) on the
# disk file system (a temporary directory under the build directory) and on
# tmpfs (/dev/shm), prints their Markdown tables, and draws the plots of
# docs/benchmarks.md (bench/plot.sh, with gnuplot) into docs/img/.
# `make bench` runs it.
#
# The tables also go to $BUILD/bench-results/results.md, next to the plot
# data (*.dat).  Extra arguments go to both runs (e.g. `bench/run.sh -r 3
# -t steady,first`); see `build/bench/map_bench -h`.  Takes three to five
# minutes on a 2-CPU machine (the disk's flush latency decides much of
# it); it needs about 5 GiB free on the disk and in /dev/shm.
set -eu

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/bench/map_bench
OUT=$BUILD/bench-results
IMG=${BENCH_IMG_DIR:-docs/img}

if [ ! -x "$BIN" ]; then
	echo "run.sh: $BIN not found; run 'make build' first" >&2
	exit 1
fi

disk=
shm=
cleanup() {
	[ -z "$disk" ] || rm -rf "$disk"
	[ -z "$shm" ] || rm -rf "$shm"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

rm -rf "$OUT"
mkdir -p "$OUT"
disk=$(mktemp -d "$BUILD/map-bench.XXXXXX")
start=$(date +%s)

{
echo "# pcow mapping engine benchmarks"
echo
echo "- kernel: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo)"
if [ -r /etc/debian_version ]; then
	echo "- distribution: Debian $(cat /etc/debian_version)"
fi
echo "- source: $(git describe --always --dirty 2>/dev/null || echo unknown)"
echo "- disk directory: $disk ($(df -T "$disk" | awk 'NR == 2 {print $2 " on " $1}'))"
echo "- started: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
} | tee "$OUT/results.md"

# Durable writes wait for fdatasync on a disk, so the disk run makes 400
# durable writes per pass, and runs the VMA test on 4096 blocks with a
# budget of 512 VMAs (so that the budget is reached); the tmpfs run makes
# 100000 durable writes and uses 65536 blocks and the library's budget.
# Both copy up to 4096 blocks per pass of test 3: copy-ups no longer wait
# for fdatasync, and the pcow_map_flush that ends each pass (the kernel
# copy-on-write mode's write-back) has fixed costs that 128 blocks would
# not spread.
bench() {
	"$BIN" "$@" || echo "map_bench $*: exit status $?" >>"$OUT/failed"
}
bench -d "$disk" -o "$OUT/disk" -b 4096 -D 400 -V 4096 -B 512 "$@" | tee -a "$OUT/results.md"
echo "- load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/results.md"
echo | tee -a "$OUT/results.md"

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	shm=$(mktemp -d /dev/shm/pcow-map-bench.XXXXXX)
	bench -d "$shm" -o "$OUT/tmpfs" -b 4096 -D 100000 "$@" | tee -a "$OUT/results.md"
else
	echo "(/dev/shm is not writable: tmpfs run skipped)" | tee -a "$OUT/results.md"
fi
echo "finished: $(date -u '+%Y-%m-%d %H:%M:%S UTC') ($(( $(date +%s) - start )) s), load average: $(cut -d' ' -f1-3 /proc/loadavg)" |
	tee -a "$OUT/results.md"

if [ -e "$OUT/failed" ]; then
	cat "$OUT/failed" >&2
	exit 1
fi

# The plots: gnuplot from Debian (gnuplot-nox), installed if missing.
if ! command -v gnuplot >/dev/null 2>&1 && [ -x scripts/need-packages.sh ]; then
	scripts/need-packages.sh gnuplot-nox || true
fi
if command -v gnuplot >/dev/null 2>&1; then
	bench/plot.sh "$OUT" "$IMG"
else
	echo "run.sh: gnuplot not found: plots not drawn (apt-get install gnuplot-nox)" >&2
fi
