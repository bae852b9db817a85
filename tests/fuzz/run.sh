#!/usr/bin/env bash
# Runs every fuzz target for its share of SECONDS (default 600).
#
#   tests/fuzz/run.sh [SECONDS]
#
# Builds the targets first if needed (tests/fuzz/build.sh, into
# PCOW_FUZZ_BUILD, default build-fuzz/), regenerates the seeds from images
# made with PCOW_IMG / PCOW_IO (default build/tools/), then fuzzes (the saved
# regression inputs are replayed by tests/fuzz/replay.sh).  New inputs accumulate in
# PCOW_FUZZ_BUILD/corpus/TARGET across runs; a crashing input is written to
# PCOW_FUZZ_BUILD/artifacts/ (emptied at the start of each run), with each
# target's log.  Prints the executions of each target, and
# exits non-zero when any target found a crash, a leak or a timeout.
#
# Shares: fuzz_image 1/2, fuzz_meta 1/3, fuzz_size 1/6 of SECONDS.
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_TOTAL=${1:-${FUZZ_SECONDS:-600}}
OUT=${PCOW_FUZZ_BUILD:-$SRC/build-fuzz}
export PCOW_IMG=${PCOW_IMG:-$SRC/build/tools/pcow-img}
export PCOW_IO=${PCOW_IO:-$SRC/build/tools/pcow-io}

if ! [[ $SECONDS_TOTAL =~ ^[0-9]+$ ]] || ((SECONDS_TOTAL < 3)); then
	echo "usage: run.sh [SECONDS] (at least 3)" >&2
	exit 2
fi

"$SRC/tests/fuzz/build.sh" "$OUT" || exit 1
"$SRC/tests/fuzz/gen_corpus.sh" "$OUT/seeds" || exit 1
# Artifacts are those of this run only.
rm -rf "$OUT/artifacts"
mkdir -p "$OUT/artifacts"

WORK=$(mktemp -d /dev/shm/pcow-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export PCOW_FUZZ_DIR=$WORK

# target share max_len dictionary
TARGETS=(
	"fuzz_image 3 32768 pcow.dict"
	"fuzz_meta 2 65536 pcow.dict"
	"fuzz_size 1 64 size.dict"
)
total_share=6
failed=0
summary=()
for entry in "${TARGETS[@]}"; do
	read -r t share max_len dict <<<"$entry"
	secs=$((SECONDS_TOTAL * share / total_share))
	((secs < 1)) && secs=1
	mkdir -p "$OUT/corpus/$t"
	log=$OUT/artifacts/$t.log
	echo "== $t: fuzzing for $secs s"
	# -timeout: an input that runs longer than this counts as a hang.
	"$OUT/$t" -max_total_time="$secs" -timeout=60 -rss_limit_mb=4096 \
		-max_len="$max_len" -dict="$SRC/tests/fuzz/$dict" \
		-print_final_stats=1 -artifact_prefix="$OUT/artifacts/$t-" \
		"$OUT/corpus/$t" "$OUT/seeds/$t" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	corpus=$(ls "$OUT/corpus/$t" | wc -l)
	if ((rc != 0)); then
		failed=1
		echo "FAIL: $t exited with $rc; the end of its log ($log):"
		grep -v '^"' "$log" | tail -n 60
		summary+=("$t: FAILED after ${execs:-?} executions")
	else
		summary+=("$t: ${execs:-?} executions in $secs s, corpus $corpus inputs")
	fi
done

echo "== fuzzing summary"
printf '%s\n' "${summary[@]}"
ls "$OUT"/artifacts/*-crash-* "$OUT"/artifacts/*-leak-* "$OUT"/artifacts/*-timeout-* \
	"$OUT"/artifacts/*-oom-* 2>/dev/null | sed 's/^/artifact: /'
exit $failed
