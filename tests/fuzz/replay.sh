#!/usr/bin/env bash
# Replays every saved input of tests/fuzz/regressions/TARGET/ through TARGET
# (and every input of regressions/ through each target it is meant for).
#
#   tests/fuzz/replay.sh
#
# Builds the targets if needed (PCOW_FUZZ_BUILD, default build-fuzz/).
# Exits non-zero when any input crashes, leaks or hangs; prints one line
# per input.  tests/fuzz/regressions/README.md says what each input is.
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=${PCOW_FUZZ_BUILD:-$SRC/build-fuzz}
REG=$SRC/tests/fuzz/regressions

"$SRC/tests/fuzz/build.sh" "$OUT" >/dev/null || exit 1

own_dir=
if [[ -z ${PCOW_FUZZ_DIR:-} ]]; then
	PCOW_FUZZ_DIR=$(mktemp -d /dev/shm/pcow-fuzz.XXXXXX)
	own_dir=$PCOW_FUZZ_DIR
	trap 'rm -rf "$own_dir"' EXIT
fi
export PCOW_FUZZ_DIR

pass=0
fail=0
for t in fuzz_image fuzz_meta fuzz_size; do
	for f in "$REG/$t"/*; do
		[[ -f $f ]] || continue
		name=${f#"$REG/"}
		if out=$("$OUT/$t" -timeout=60 -rss_limit_mb=4096 "$f" 2>&1); then
			echo "ok: $name"
			pass=$((pass + 1))
		else
			echo "FAIL: $name"
			grep -E 'ERROR|SUMMARY|runtime error|fuzz_(image|meta|size):|^    #[0-9] ' <<<"$out" | head -n 20 | sed 's/^/    /'
			fail=$((fail + 1))
		fi
	done
done
echo "replay: $pass passed, $fail failed"
((fail == 0))
