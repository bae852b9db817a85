#!/bin/bash
# Bash completion of pcow-img and pcow-io (completion/): verbs, options,
# formats, -o keys, --output values, files, and snapshot names read from a
# real image; the options offered are the ones the tools accept.
source "$(dirname "$0")/lib.sh"

source "$SRC_DIR/completion/pcow-img" || skip "cannot load completion/pcow-img"
source "$SRC_DIR/completion/pcow-io" || skip "cannot load completion/pcow-io"

# Completes the last word of a command line; prints the candidates, one a
# line.  COMP_WORDS may go on past the word being completed: "-- WORD..."
# at the end gives the words after the cursor.
complete_line() { # FUNCTION WORD... [-- WORD-AFTER...]
    local fn=$1 w
    shift
    COMP_WORDS=()
    COMP_CWORD=-1
    for w in "$@"; do
        if [[ $w == -- && $COMP_CWORD -lt 0 ]]; then
            COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
            continue
        fi
        COMP_WORDS+=("$w")
    done
    ((COMP_CWORD >= 0)) || COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    "$fn"
    ((${#COMPREPLY[@]})) && printf '%s\n' "${COMPREPLY[@]}"
}
img() { complete_line _pcow_img "$PCOW_IMG" "$@" | tr '\n' ' ' | sed 's/ $//'; }
io() { complete_line _pcow_io "$PCOW_IO" "$@" | tr '\n' ' ' | sed 's/ $//'; }

# ---- Verbs: exactly those of `pcow-img --help` ----
verbs=$("$PCOW_IMG" --help | sed -n 's/^  \([a-z]\+\) .*/\1/p' | tr '\n' ' ' | sed 's/ $//')
check_true "pcow-img --help lists verbs" test -n "$verbs"
check_eq "$(img "")" "$verbs --help --version" "verbs"
check_eq "$(img c)" "$(tr ' ' '\n' <<<"$verbs" | grep '^c' | tr '\n' ' ' | sed 's/ $//')" "verbs starting with c"
check_eq "$(img com)" "commit compare" "verbs starting with com"
check_eq "$(img zz)" "" "no verb starts with zz"

# ---- Options of each verb, and every one is accepted by pcow-img ----
check_eq "$(img check -)" "-r -p -q -U -f --output= --no-backing" "check options"
check_eq "$(img snapshot -)" "-l -c -a -d -U -q -f" "snapshot options"
check_eq "$(img info --b)" "--backing-chain" "info long option"
check_eq "$(img info --n)" "--no-backing" "info --no-backing"
for verb in $verbs; do
    opts=$(img "$verb" -)
    check_true "$verb: options offered" test -n "$opts"
    for opt in $opts; do
        [[ $opt == --output= ]] && opt=--output=json
        "$PCOW_IMG" "$verb" "$opt" </dev/null >/dev/null 2>"$T/.err"
        if grep -qE 'invalid option|unrecognized option' "$T/.err"; then
            fail "completion offers '$verb $opt', which pcow-img rejects: $(head -n 1 "$T/.err")"
        else
            pass
        fi
    done
done

# commit -t: offered, and its values are qemu-img's cache modes.
check_true "commit offers -t" grep -qw -- "-t" <<<"$(img commit -)"
check_eq "$(img commit -t w)" "writeback writethrough" "commit -t values"
check_true "convert offers -n" grep -qw -- "-n" <<<"$(img convert -)"

# ---- Option values ----
check_eq "$(img convert -O "")" "raw pcow qcow2" "convert output formats"
check_eq "$(img convert -f p)" "pcow" "convert input format prefix"
check_eq "$(img create -F "")" "raw pcow" "backing formats"
check_eq "$(img info -f "")" "pcow raw qcow2" "info format"
check_eq "$(img check -r "")" "leaks all" "check -r"
check_eq "$(img create -o bl)" "block_size=" "create -o key"
check_eq "$(img create -o block_size=64K,ba)" \
    "block_size=64K,backing_file= block_size=64K,backing_fmt=" "create -o second key"
check_eq "$(img info --output=)" "--output=human --output=json" "--output= values"
check_eq "$(img info --output = j)" "json" "--output = j (split at '=')"
check_eq "$(img map --output "")" "human json" "--output VALUE"

# ---- Files ----
touch a.pcow abc.raw b.pcow
check_eq "$(complete_line _pcow_img "$PCOW_IMG" info a | sort | tr '\n' ' ')" "a.pcow abc.raw " "file names"
check_eq "$(img snapshot -l b)" "b.pcow" "file name after snapshot -l"
rm -f a.pcow abc.raw b.pcow

# ---- Snapshot names from a real image ----
ok "$PCOW_IMG" create -q snap.pcow 1M
check_eq "$(img snapshot -a "" -- snap.pcow)" "" "no snapshots yet"
ok "$PCOW_IMG" snapshot -c first snap.pcow
ok "$PCOW_IMG" snapshot -c "with space" snap.pcow
ok "$PCOW_IMG" snapshot -c v2 snap.pcow
ok "$PCOW_IMG" snapshot -c a-rather-long-snapshot-name snap.pcow
check_eq "$(img snapshot -a "" -- snap.pcow)" \
    'first with\ space v2 a-rather-long-snapshot-name' "snapshot names after -a"
check_eq "$(img snapshot -d w -- snap.pcow)" 'with\ space' "snapshot names after -d with a prefix"
check_eq "$(complete_line _pcow_img "$PCOW_IMG" snapshot -q -d "" -- snap.pcow | wc -l)" 4 \
    "snapshot names after -q -d"
# The image may also come before the option (in the words typed so far).
check_eq "$(img snapshot -U -l snap.pcow -a f)" "first" "image before the option"
check_eq "$(img snapshot -a "" -- missing.pcow)" "" "no names for a missing image"
check_eq "$(img snapshot -c "" -- snap.pcow)" "" "nothing offered for a new name"
# An image in use by a writer still lists its names (-U).
"$PCOW_IO" snap.pcow < <(sleep 3) >/dev/null 2>&1 &
CLEANUP_PIDS+=($!)
sleep 0.5
check_eq "$(img snapshot -a v -- snap.pcow)" "v2" "names of an image in use"

# ---- pcow-io ----
check_eq "$(io -)" "-c --cmd -q -r --read-only -U --force-share -m --mmap --copy-size --fault-ahead --persist-interval -f -h --help -V --version" "pcow-io options"
io_cmds=$("$PCOW_IO" --help | sed -n 's/^commands: //p; s/^ \+//p' | tr '|' '\n' | awk 'NF {print $1}' | tr '\n' ' ' | sed 's/ $//')
check_eq "$(io -c "")" "$io_cmds" "pcow-io commands (as in pcow-io --help)"
check_eq "$(io -r --cmd re)" "read" "pcow-io command prefix"
check_eq "$(io -c "write 0 4k" sn)" "snap.pcow" "pcow-io file name"

finish
