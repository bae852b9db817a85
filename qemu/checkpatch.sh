#!/bin/bash
#
# Runs QEMU's scripts/checkpatch.pl on every patch of the series (or on the
# patches named) and reports, one line per patch, then the problems found.
#
# Usage: qemu/checkpatch.sh [-q] [PATCH...]
#   -q  only the summary lines, not checkpatch's messages
#
# checkpatch.pl comes from the QEMU source tree qemu/build.sh prepared
# (build/qemu-src), or from $QEMU_SRC.  Exit status: 0 when no patch has
# an error or a warning, 1 when some has, 2 when checkpatch.pl is missing.

set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
src=${QEMU_SRC:-$root/build/qemu-src}
checkpatch=$src/scripts/checkpatch.pl
quiet=

if [ "${1:-}" = -q ]; then
	quiet=1
	shift
fi
if [ ! -f "$checkpatch" ]; then
	echo "qemu/checkpatch.sh: $checkpatch not found (run qemu/build.sh first, or set QEMU_SRC)" >&2
	exit 2
fi
if [ $# -eq 0 ]; then
	set -- "$here"/patches/*.patch
fi

bad=0
details=$(mktemp "${TMPDIR:-/tmp}/pcow-checkpatch.XXXXXX")
trap 'rm -f "$details"' EXIT
for p in "$@"; do
	case $p in
	/*) ;;
	*) p=$PWD/$p ;;
	esac
	# checkpatch.pl reads the tree it checks against from its own
	# location; run it from there so that it finds MAINTAINERS and such.
	out=$(cd "$src" && perl "$checkpatch" --no-color "$p" 2>&1)
	total=$(printf '%s\n' "$out" | sed -n 's/^total: \([0-9]*\) errors, \([0-9]*\) warnings.*/\1 \2/p')
	errors=${total% *} warnings=${total#* }
	if [ -z "$total" ]; then
		errors=? warnings=?
	fi
	printf '%-70s %s errors, %s warnings\n' "$(basename "$p")" "$errors" "$warnings"
	if [ "$errors" != 0 ] || [ "$warnings" != 0 ]; then
		bad=1
		{
			echo "==== $(basename "$p")"
			printf '%s\n' "$out" | grep -v '^total:\|has style problems\|false positives\|^CHECKPATCH\|^$'
		} >> "$details"
	fi
done
if [ -z "$quiet" ] && [ -s "$details" ]; then
	echo
	cat "$details"
fi
exit $bad
