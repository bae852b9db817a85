#!/bin/sh
# Build layout_bench into build/bench-layout/ and run, for each directory
# given (default: /dev/shm and build/bench-layout/tmp), the default matrix
# and a one-pass vm.max_map_count check of C and D at 1 GiB.
# A leading -a is passed on (MADV_RANDOM + MADV_NOHUGEPAGE on file mappings).
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$top/build/bench-layout
mkdir -p "$out"
gcc -O2 -std=gnu11 -Wall -Wextra -Werror -o "$out/layout_bench" \
	"$top/bench/layout/layout_bench.c" -lpthread
adv=
if [ "${1:-}" = -a ]; then
	adv=-a
	shift
fi
if [ $# -eq 0 ]; then
	mkdir -p "$out/tmp"
	set -- /dev/shm "$out/tmp"
fi
for d in "$@"; do
	fs=$(df -T "$d" | awk 'NR == 2 { print $1, $2 }')
	echo "== $d: $fs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
	"$out/layout_bench" $adv -d "$d"
	echo "== $d: map-count check, 1 GiB, small blocks, shuffled, 1 pass"
	"$out/layout_bench" $adv -d "$d" -r 1 -k CD -n 1G -c 1G -w 1G \
		-b 4K,16K -o shuf
done
