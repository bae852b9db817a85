#!/usr/bin/env bash
# Runs a representative set of pcow-img and pcow-io commands under valgrind
# (memcheck) and fails on any memory error or definite/indirect leak.
#
#   tests/valgrind/run.sh
#
# The tools come from PCOW_IMG and PCOW_IO (default build/tools/); they must
# not be built with a sanitizer.  Each command must also exit with the code
# it is expected to (failure paths are run too: they must not leak either).
# --mmap runs go through the library's SIGSEGV handler (copy-on-write of
# inherited blocks), which valgrind delivers to the client like the kernel.
# Exits 77 (skip) when valgrind is missing and cannot be installed.
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PCOW_IMG=${PCOW_IMG:-$SRC/build/tools/pcow-img}
PCOW_IO=${PCOW_IO:-$SRC/build/tools/pcow-io}

if ! command -v valgrind >/dev/null; then
	"$SRC/scripts/need-packages.sh" valgrind >/dev/null 2>&1 || true
	command -v valgrind >/dev/null || { echo "SKIP: valgrind is not installed"; exit 77; }
fi
for t in "$PCOW_IMG" "$PCOW_IO"; do
	[[ -x $t ]] || { echo "valgrind/run.sh: $t is missing (build first)" >&2; exit 1; }
done
if nm -D "$PCOW_IMG" 2>/dev/null | grep -q __asan_init; then
	echo "SKIP: $PCOW_IMG is built with a sanitizer"
	exit 77
fi

T=$(mktemp -d /dev/shm/pcow-valgrind.XXXXXX)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1

# --px-default=allregs-at-mem-access: the --mmap copy-on-write handler
# returns from SIGSEGV and the faulting store is executed again, so every
# register must be exact at each memory access (valgrind's default keeps only
# the unwinding registers exact, and the retried store then runs with stale
# ones: a crash inside memset at a wild address).
VG=(valgrind -q --error-exitcode=99 --leak-check=full
	--errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
	--track-origins=yes --num-callers=30 --px-default=allregs-at-mem-access)
pass=0
fail=0
n=0

# vg EXPECTED_RC TOOL ARGS...: runs TOOL under valgrind; TOOL is img or io.
vg() {
	local want=$1 tool=$2 rc
	shift 2
	case $tool in
	img) tool=$PCOW_IMG ;;
	io) tool=$PCOW_IO ;;
	esac
	n=$((n + 1))
	"${VG[@]}" --log-file="$T/vg.$n.log" "$tool" "$@" >"$T/out.$n" 2>"$T/err.$n" </dev/null
	rc=$?
	if ((rc == 99)) || [[ -s $T/vg.$n.log ]]; then
		echo "FAIL: valgrind found errors in: $(basename "$tool") $*"
		sed 's/^/    /' "$T/vg.$n.log" | head -n 80
		fail=$((fail + 1))
	elif ((rc != want)); then
		echo "FAIL: $(basename "$tool") $* exited $rc, expected $want"
		sed 's/^/    /' "$T/err.$n" | head -n 10
		fail=$((fail + 1))
	else
		echo "ok: $(basename "$tool") $*"
		pass=$((pass + 1))
	fi
}

# A raw file with data, as a backing file.
head -c 1048576 /dev/urandom >base.raw
truncate -s 8M base.raw

# create
vg 0 img create plain.pcow 8M
vg 0 img create -o block_size=4096 small.pcow 1M
vg 0 img create -o block_size=2M big.pcow 16M
vg 0 img create -b base.raw -F raw over-raw.pcow
vg 0 img create -b plain.pcow -F pcow -o block_size=4096 over-pcow.pcow
vg 1 img create -o block_size=1000 bad.pcow 1M
vg 1 img create -b base.raw bad2.pcow
vg 1 img create plain.pcow 0

# pcow-io, file mode
vg 0 io -c "write -P 0x11 0 64k" -c "write -P 0x12 100k 300k" -c "read -P 0x11 0 64k" \
	-c "read -P 0x12 100k 300k" -c "discard 1M 1M" -c flush -c map plain.pcow
vg 0 io -c "write -P 0x21 4k 4k" -c "write -P 0x22 12k 20k" -c "read -P 0x22 12k 20k" small.pcow
vg 0 io -c "write -P 0x31 1000 100" -c "write -P 0x32 2M 64k" -c "read -P 0x31 1000 100" \
	-c "discard 0 1M" -c "read -P 0 0 64k" -c map over-raw.pcow
vg 0 io -c "write -P 0x41 65536 4096" -c "read -P 0x11 0 64k" -c "read -P 0x41 65536 4096" over-pcow.pcow
vg 0 io -r -c "read -P 0x12 100k 300k" plain.pcow
vg 1 io -c "read -P 0x99 0 4k" plain.pcow
vg 1 io -c "write 0 100M" plain.pcow
vg 1 io -r -c "write 0 4k" plain.pcow
vg 1 io missing.pcow

# pcow-io --mmap: stores into holes, into inherited blocks (copy-up in the
# SIGSEGV handler) from a raw backing file and from a snapshot
vg 0 io --mmap -c "write -P 0x51 0 64k" -c "read -P 0x51 0 64k" -c stats -c flush big.pcow
vg 0 io --mmap -c "write -P 0x61 2M 4k" -c "write -P 0x62 0 100" -c "read -P 0x62 0 100" \
	-c "read -P 0x61 2M 4k" -c stats over-raw.pcow
vg 0 img snapshot -c s1 small.pcow
vg 0 io --mmap -c "write -P 0x71 4k 100" -c "read -P 0x71 4k 100" -c "read -P 0x22 12k 20k" \
	-c stats small.pcow
vg 0 io --mmap -r -c "read -P 0x71 4k 100" small.pcow

# snapshots
vg 0 img snapshot -c s2 small.pcow
vg 0 img snapshot -l small.pcow
vg 0 img snapshot -U -l small.pcow
vg 0 io -c "write -P 0x81 0 4k" small.pcow
vg 0 img snapshot -a s1 small.pcow
vg 0 io -c "read -P 0x22 12k 20k" small.pcow
vg 0 img snapshot -a 2 small.pcow
vg 0 img snapshot -d s1 small.pcow
vg 0 io -c "read -P 0x71 4k 100" small.pcow
vg 1 img snapshot -d nosuch small.pcow
vg 1 img snapshot -c s2 small.pcow
vg 1 img snapshot -a nosuch small.pcow

# info
vg 0 img info plain.pcow
vg 0 img info --output=json small.pcow
vg 0 img info --backing-chain over-pcow.pcow
vg 0 img info --backing-chain --output=json over-raw.pcow
vg 0 img info -U --output=json over-pcow.pcow
vg 0 img info --no-backing --output=json over-raw.pcow
vg 1 img info base.raw
vg 1 img info missing.pcow

# rebase
cp base.raw base2.raw
head -c 4096 /dev/zero | dd of=base2.raw bs=1 seek=8192 conv=notrunc status=none
vg 0 img rebase -b base2.raw -F raw over-raw.pcow
vg 0 img rebase -u -b base.raw -F raw over-raw.pcow
vg 0 img rebase -b "" over-raw.pcow
vg 0 img rebase -b plain.pcow -F pcow over-raw.pcow
vg 1 img rebase -b missing.raw -F raw over-raw.pcow

# check
vg 0 img check plain.pcow
vg 0 img check --output=json small.pcow
vg 0 img check -r leaks over-pcow.pcow
vg 0 img check -r all over-raw.pcow
cp --sparse=never small.pcow leaky.pcow 2>/dev/null || cp small.pcow leaky.pcow
truncate -s 64M leaky.pcow
printf 'leak' | dd of=leaky.pcow bs=1 seek=$((60 * 1048576)) conv=notrunc status=none
vg 3 img check leaky.pcow
vg 3 img check --output=json leaky.pcow
vg 0 img check -r leaks leaky.pcow
vg 0 img check leaky.pcow
printf 'garbage' | dd of=garbage.pcow status=none
vg 1 img check garbage.pcow
vg 1 img check --output=json garbage.pcow

# convert
vg 0 img convert -O raw small.pcow small.raw
vg 0 img convert -O pcow -o block_size=4096 base.raw from-raw.pcow
vg 0 img convert -p -O pcow over-pcow.pcow flat.pcow
vg 0 img convert -f pcow -O raw over-raw.pcow over.raw
vg 0 img convert --no-backing -O raw over-raw.pcow own.raw
vg 1 img convert -O vmdk small.pcow x.vmdk
vg 1 img convert -O raw missing.pcow x.raw

# map
vg 0 img map small.pcow
vg 0 img map --output=json over-pcow.pcow
vg 0 img map -U --output=json over-raw.pcow
vg 0 io -r -c map over-pcow.pcow

# usage errors
vg 1 img
vg 0 img --help
vg 0 img --version
vg 1 img frobnicate x
vg 1 img check -r everything small.pcow
vg 0 io -h

echo "$pass passed, $fail failed"
((fail == 0))
