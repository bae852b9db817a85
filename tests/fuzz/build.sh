#!/usr/bin/env bash
# Builds the libFuzzer targets with clang into a separate directory.
#
#   tests/fuzz/build.sh [OUTDIR]      (default: build-fuzz in the source tree)
#
# The library sources (lib/*.c) are compiled with clang, coverage and
# ASan+UBSan, once, into OUTDIR/obj; an object is rebuilt when its source or
# any header is newer.  Produces OUTDIR/fuzz_image, fuzz_meta, fuzz_size and
# OUTDIR/mkseed (the seed maker, a plain program).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${1:-${PCOW_FUZZ_BUILD:-$SRC/build-fuzz}}
CC=${FUZZ_CC:-clang}

if ! command -v "$CC" >/dev/null ||
	! dpkg-query -W -f='${Status}' libclang-rt-14-dev 2>/dev/null | grep -q "install ok installed"; then
	"$SRC/scripts/need-packages.sh" clang libclang-rt-14-dev zlib1g-dev
fi

mkdir -p "$OUT/obj"
# One build at a time in OUT (tests may start several scripts at once).
exec 8>"$OUT/.build.lock"
flock 8
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all)
CFLAGS=(-g -O1 -std=gnu11 -D_GNU_SOURCE -fno-omit-frame-pointer
	-Wall -Wextra -Werror
	-I"$SRC/include" -I"$SRC/lib" -I"$SRC/tools" -I"$SRC/tests/fuzz")

# Newest header: every object depends on all of them.
newest_header=$(ls -t "$SRC"/include/*.h "$SRC"/lib/*.h "$SRC"/tools/*.h \
	"$SRC"/tests/fuzz/*.h | head -n 1)

# compile SRC OBJ [extra flags...]
compile() {
	local src=$1 obj=$2
	shift 2
	if [[ ! -e $obj || $src -nt $obj || $newest_header -nt $obj || $0 -nt $obj ]]; then
		echo "  CC $(basename "$src")"
		"$CC" "${CFLAGS[@]}" "$@" -c "$src" -o "$obj.tmp"
		mv "$obj.tmp" "$obj"
	fi
}

# link OUT OBJ... : relinks when an input is newer.
link() {
	local out=$1 o
	shift
	local need=0
	[[ -e $out ]] || need=1
	for o in "$@"; do
		[[ $o -nt $out ]] && need=1
	done
	if ((need)); then
		echo "  LD $(basename "$out")"
		"$CC" -fsanitize=fuzzer "${SAN[@]}" "$@" -o "$out.tmp" -lz -lpthread
		mv "$out.tmp" "$out"
	fi
}

FZ=(-fsanitize=fuzzer-no-link "${SAN[@]}")
lib_objs=()
for c in "$SRC"/lib/*.c; do
	o=$OUT/obj/lib_$(basename "$c" .c).o
	compile "$c" "$o" "${FZ[@]}"
	lib_objs+=("$o")
done
compile "$SRC/tools/util.c" "$OUT/obj/tools_util.o" "${FZ[@]}"
for t in fuzz_image fuzz_meta fuzz_size; do
	compile "$SRC/tests/fuzz/$t.c" "$OUT/obj/$t.o" "${FZ[@]}"
done

link "$OUT/fuzz_image" "$OUT/obj/fuzz_image.o" "${lib_objs[@]}"
link "$OUT/fuzz_meta" "$OUT/obj/fuzz_meta.o" "${lib_objs[@]}"
link "$OUT/fuzz_size" "$OUT/obj/fuzz_size.o" "$OUT/obj/tools_util.o" "${lib_objs[@]}"

if [[ ! -e $OUT/mkseed || $SRC/tests/fuzz/mkseed.c -nt $OUT/mkseed || $newest_header -nt $OUT/mkseed ]]; then
	echo "  CC mkseed"
	"$CC" "${CFLAGS[@]}" "$SRC/tests/fuzz/mkseed.c" -o "$OUT/mkseed.tmp" -lz
	mv "$OUT/mkseed.tmp" "$OUT/mkseed"
fi
