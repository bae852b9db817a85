#!/bin/bash
# Requirement tags: every [R-nnn] a test cites is defined in docs/*.md, and
# every tag docs/*.md defines is cited by some test, so the specification
# and the tests cannot drift apart silently.
source "$(dirname "$0")/lib.sh"

TAG_RE='\[R-[0-9]{3}\]'

tags_in() { # DIR FILE-GLOB
    grep -rhoE --include="$2" "$TAG_RE" "$1" | tr -d '[]' | sort -u
}

defined=$(tags_in "$SRC_DIR/docs" '*.md')
cited=$(tags_in "$SRC_DIR/tests" '*')
[[ -n $defined ]] || fail "no tag found in $SRC_DIR/docs"
[[ -n $cited ]] || fail "no tag found in $SRC_DIR/tests"

for tag in $(comm -23 <(echo "$cited") <(echo "$defined")); do
    fail "$tag is cited by $(grep -rlF "[$tag]" "$SRC_DIR/tests" | sed "s|^$SRC_DIR/||" | tr '\n' ' ')but defined nowhere in docs/*.md"
done
for tag in $(comm -13 <(echo "$cited") <(echo "$defined")); do
    fail "$tag is defined in $(grep -rlF "[$tag]" "$SRC_DIR/docs" | sed "s|^$SRC_DIR/||" | tr '\n' ' ')but cited by no test"
done
pass
finish
