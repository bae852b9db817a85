#!/bin/sh
# run.sh -- runs the mapping-engine benchmarks (bench/map_bench.c) on the
# disk file system (a temporary directory under the build directory) and on
# tmpfs (/dev/shm), and prints their Markdown tables.  `make bench` runs it.
#
# Extra arguments go to both runs (e.g. `bench/run.sh -r 3 -t steady,first`);
# see `build/bench/map_bench -h`.  Takes three to four minutes on a
# 2-CPU machine.
set -eu

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=$BUILD/bench/map_bench

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

disk=$(mktemp -d "$BUILD/map-bench.XXXXXX")

echo "# pcow mapping engine benchmarks"
echo
echo "- kernel: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo)"
if [ -r /etc/debian_version ]; then
	echo "- distribution: Debian $(cat /etc/debian_version)"
fi
echo "- source: $(git describe --always --dirty 2>/dev/null || echo unknown)"
echo "- disk directory: $disk ($(df -T "$disk" | awk 'NR == 2 {print $2 " on " $1}'))"
echo "- started: $(date -u '+%Y-%m-%d %H:%M UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

# Copy-up and flush costs are dominated by fdatasync on a disk, so the disk
# run copies fewer blocks and makes fewer durable writes per pass.
"$BIN" -d "$disk" -b 128 -D 400 "$@"

if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	shm=$(mktemp -d /dev/shm/pcow-map-bench.XXXXXX)
	"$BIN" -d "$shm" -b 4096 -D 100000 "$@"
else
	echo "(/dev/shm is not writable: tmpfs run skipped)"
fi
echo "finished: $(date -u '+%Y-%m-%d %H:%M UTC'), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
