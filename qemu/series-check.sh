#!/bin/bash
#
# Checks that every prefix of the series builds: for K = FIRST..N, applies
# patches 1..K to a source tree of its own, builds qemu-system-x86_64 and
# qemu-img, runs checkpatch on patch K, and runs tests/qtest/pcow-test once
# the prefix has it.  Stops at the first prefix that fails, naming it.
#
# Usage: qemu/series-check.sh [FIRST] [PCOW_PKG_CONFIG_PATH]
#
# The tree is build/qemu-series/ (kept between runs: going from one prefix
# to the next re-applies the series and rebuilds only what the next patch
# touches).  The build needs what qemu/build.sh needs, and libpcow built.
# A line per prefix goes to the standard output and to
# build/qemu-series/result.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
work="$root/build/qemu-series"
first=${1:-1}
pc_path=${2:-}

log() { printf 'qemu/series-check.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case $first in
'' | *[!0-9]*) die "FIRST must be a patch number, not '$first'" ;;
esac

mapfile -t patches < <(printf '%s\n' "$here"/patches/*.patch)
n=${#patches[@]}
[ "$n" -gt 0 ] || die "no patches in $here/patches"
[ "$first" -ge 1 ] && [ "$first" -le "$n" ] ||
	die "FIRST must be between 1 and $n"

mkdir -p "$work"
result="$work/result"
: > "$result"
say() { printf '%s\n' "$*" | tee -a "$result"; }

for ((k = first; k <= n; k++)); do
	p=${patches[k - 1]}
	name=$(basename "$p")
	prefix="$work/patches"
	rm -rf "$prefix"
	mkdir -p "$prefix"
	cp "${patches[@]:0:k}" "$prefix/"

	log "prefix $k/$n: up to $name"
	qtest=()
	if grep -q '^+++ b/tests/qtest/pcow-test.c' "${patches[@]:0:k}"; then
		qtest=(--qtest)
	fi
	if ! PCOW_QEMU_PATCHES="$prefix" PCOW_QEMU_SRC="$work/src" \
	     PCOW_QEMU_OUT="$work/out" \
	     bash "$here/build.sh" "${qtest[@]}" ${pc_path:+"$pc_path"} \
	     > "$work/build.log" 2>&1; then
		tail -n 30 "$work/build.log" >&2
		say "prefix $k/$n $name: FAILED to build or test (see $work/build.log)"
		exit 1
	fi
	# Once the series has the meson option, the build must have used it.
	if grep -q "'pcow'" "$work/src/meson_options.txt" &&
	   ! grep -q '^#define CONFIG_PCOW' "$work/src/build/config-host.h"; then
		say "prefix $k/$n $name: FAILED: built without CONFIG_PCOW"
		exit 1
	fi
	if ! QEMU_SRC="$work/src" bash "$here/checkpatch.sh" "$p" \
	     > "$work/checkpatch.log" 2>&1; then
		cat "$work/checkpatch.log" >&2
		say "prefix $k/$n $name: FAILED checkpatch"
		exit 1
	fi
	say "prefix $k/$n $name: builds, checkpatch clean${qtest:+, qtest passes}"
done
if [ "$first" -eq 1 ]; then
	say "all $n prefixes of the series build"
else
	say "prefixes $first to $n of the series build"
fi
