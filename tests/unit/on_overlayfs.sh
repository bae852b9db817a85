#!/bin/bash
#
# Runs a unit test with its files on overlayfs, the root file system of
# most containers: there the kernel maps each file through the overlay
# (mappings of neighbouring blocks do not merge, and page cache, holes and
# write-back go through the upper file system).
#
# Usage: on_overlayfs.sh TEST [ARGS...]
#
# Needs root for a private mount namespace; exits 77 (skipped) otherwise.

set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 TEST [ARGS...]" >&2; exit 2; }
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then
	echo "skipped: needs root and unshare to mount an overlayfs" >&2
	exit 77
fi

d=$(mktemp -d "${TMPDIR:-/tmp}/pcow-ovl.XXXXXX")
trap 'rm -rf "$d"' EXIT
mkdir "$d/lower" "$d/upper" "$d/work" "$d/merged"

# The mount lives in a namespace of its own and vanishes with it.
unshare -m --propagation private bash -c '
	d=$1; shift
	mount -t overlay overlay \
		-o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" \
		"$d/merged" || { echo "skipped: cannot mount overlayfs" >&2; exit 77; }
	[ "$(stat -f -c %T "$d/merged")" = overlayfs ] ||
		{ echo "$d/merged is not overlayfs" >&2; exit 1; }
	PCOW_TEST_DIR=$d/merged "$@"
' overlay-test "$d" "$@"
