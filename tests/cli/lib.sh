# shellcheck shell=bash disable=SC2034  # constants and results for the test scripts
# Shared helpers of the pcow-img / pcow-io command-line tests.
#
# Source this file from a test script:
#
#   source "$(dirname "$0")/lib.sh"
#   ... checks ...
#   finish
#
# The tools come from PCOW_IMG and PCOW_IO (default: build/tools/ of the
# source tree).  Every test works in its own temporary directory, $T, that
# is removed on exit together with any mount or background process the test
# registered.  A script exits 0 when every check passed, 1 when one failed
# (each failure is printed as it happens, with the command and its output),
# and 77 when it cannot run here (the reason is printed).
#
# Conventions of the helpers:
#   ok CMD...             CMD must succeed; its stdout/stderr are kept in
#                         $T/.out and $T/.err, its exit code in $RC.
#   expect_fail [OPTS] CMD...
#                         CMD must fail cleanly: exit code 1..125, exactly
#                         one line on stderr, starting with "pcow-img: " or
#                         "pcow-io: " and naming the file (default: CMD's
#                         last argument).
#   remember FILE...      records a fingerprint (size, mode, sha256 of the
#                         content, and for pcow images the data extents) ...
#   assert_unchanged FILE...   ... and checks that it is still the same.
#   verify [FLAGS] IMG "PAT OFF LEN"...
#                         reads through pcow-io and checks the pattern.

set -u
set -o pipefail

CLI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(cd "$CLI_DIR/../.." && pwd)
TEST_NAME=$(basename "$0" .sh)
PY=/usr/bin/python3

PCOW_IMG=${PCOW_IMG:-$SRC_DIR/build/tools/pcow-img}
PCOW_IO=${PCOW_IO:-$SRC_DIR/build/tools/pcow-io}
# Tests change directory; keep the tools reachable.
[[ $PCOW_IMG == /* ]] || PCOW_IMG=$PWD/$PCOW_IMG
[[ $PCOW_IO == /* ]] || PCOW_IO=$PWD/$PCOW_IO

# Block sizes every basic operation is tried with.
BLOCK_SIZES="4096 65536 2097152"

KiB=1024
MiB=$((1024 * 1024))
GiB=$((1024 * MiB))

FAILURES=0
CHECKS=0
RC=0
CLEANUP_PIDS=()
CLEANUP_MOUNTS=()
CLEANUP_IMMUTABLE=()

skip() { # REASON
    echo "SKIP: $TEST_NAME: $*"
    exit 77
}

# Records a failure; the test goes on so that one run shows every problem.
fail() { # MESSAGE...
    FAILURES=$((FAILURES + 1))
    echo "FAIL: $*" >&2
}

pass() {
    CHECKS=$((CHECKS + 1))
}

# Prints the last command's output, indented, after a failure.
show_output() {
    local f
    for f in "$T/.out" "$T/.err"; do
        [[ -s $f ]] || continue
        echo "    ${f##*/.}:" >&2
        head -n 20 "$f" | sed 's/^/      | /' >&2
    done
}

finish() {
    if ((FAILURES)); then
        echo "$TEST_NAME: $FAILURES failed check(s), $CHECKS passed"
        exit 1
    fi
    echo "$TEST_NAME: all $CHECKS checks passed"
    exit 0
}

cleanup() {
    local p m f
    for p in "${CLEANUP_PIDS[@]}"; do
        kill "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    for f in "${CLEANUP_IMMUTABLE[@]}"; do
        chattr -i "$f" 2>/dev/null
    done
    for ((m = ${#CLEANUP_MOUNTS[@]} - 1; m >= 0; m--)); do
        umount "${CLEANUP_MOUNTS[m]}" 2>/dev/null || umount -l "${CLEANUP_MOUNTS[m]}" 2>/dev/null
    done
    cd /
    [[ -n ${T:-} && -d $T ]] && rm -rf "$T"
}

[[ -x $PY ]] || skip "$PY is needed to parse JSON and edit images"
for tool in "$PCOW_IMG" "$PCOW_IO"; do
    if [[ ! -x $tool ]]; then
        echo "FAIL: $TEST_NAME: $tool is missing (build the tools first)" >&2
        exit 1
    fi
done

T=$(mktemp -d "${TMPDIR:-/tmp}/pcow-cli-$TEST_NAME.XXXXXX") || {
    echo "FAIL: cannot create a temporary directory" >&2
    exit 1
}
trap cleanup EXIT
trap 'exit 1' INT TERM
cd "$T" || exit 1

# pcow needs a file system that reports holes; the temporary directory may
# not be on one.
if ! _probe=$("$PCOW_IMG" create "$T/.probe.pcow" 1M 2>&1); then
    case $_probe in
        *"does not report holes"* | *"block size"*) skip "$T cannot hold pcow images: $_probe" ;;
        *) echo "FAIL: cannot create an image in $T: $_probe" >&2; exit 1 ;;
    esac
fi
rm -f "$T/.probe.pcow"

# ---- Running commands --------------------------------------------------

# Runs CMD, keeping stdout, stderr and the exit code.
run() { # CMD...
    "$@" >"$T/.out" 2>"$T/.err"
    RC=$?
}

# CMD must succeed.
ok() { # CMD...
    run "$@"
    if ((RC != 0)); then
        fail "'$*' exited with $RC (expected success)"
        show_output
        return 1
    fi
    pass
    return 0
}

# CMD must fail with one clear line on stderr.
#   --file NAME   the message must name NAME (default: the last argument)
#   --nofile      the message need not name a file
#   --grep ERE    the message must also match ERE (case-insensitive)
#   --rc N        the exit code must be N
expect_fail() { # [--file NAME] [--nofile] [--grep ERE] [--rc N] CMD...
    local file="" nofile=0 grep_re="" want_rc="" line n bad=0 desc
    while (($#)); do
        case $1 in
            --file) file=$2; shift 2 ;;
            --nofile) nofile=1; shift ;;
            --grep) grep_re=$2; shift 2 ;;
            --rc) want_rc=$2; shift 2 ;;
            *) break ;;
        esac
    done
    [[ -n $file ]] || file=${!#}
    desc="'$*'"
    run "$@"
    if ((RC == 0)); then
        fail "$desc succeeded (expected a failure)"
        bad=1
    elif ((RC > 125)); then
        fail "$desc died with exit code $RC (signal $((RC - 128))) instead of failing cleanly"
        bad=1
    elif [[ -n $want_rc ]] && ((RC != want_rc)); then
        fail "$desc exited with $RC (expected $want_rc)"
        bad=1
    fi
    n=$(wc -l <"$T/.err")
    line=$(head -n 1 "$T/.err")
    if ((n != 1)) || [[ -z $line ]]; then
        fail "$desc wrote $n lines on stderr (expected exactly one)"
        bad=1
    elif [[ $line != "pcow-img: "* && $line != "pcow-io: "* ]]; then
        fail "$desc: the error does not start with 'pcow-img: ' or 'pcow-io: '"
        bad=1
    fi
    if ((!nofile)) && ! grep -qF -- "$file" "$T/.err"; then
        fail "$desc: the error does not name '$file'"
        bad=1
    fi
    if [[ -n $grep_re ]] && ! grep -qiE -- "$grep_re" "$T/.err"; then
        fail "$desc: the error does not match /$grep_re/"
        bad=1
    fi
    if ((bad)); then
        show_output
        return 1
    fi
    pass
    return 0
}

# ---- Fingerprints --------------------------------------------------------

# Size, mode and a digest of the content, without reading holes (so a
# sparse 1 TiB image costs no more than its data).  For a pcow image the
# data extents count too (they say which layer owns which block); for any
# other file only the bytes do, holes and zeros alike.
fingerprint() { # FILE
    "$PY" - "$1" <<'EOF'
import hashlib, os, sys
p = sys.argv[1]
fd = os.open(p, os.O_RDONLY)
st = os.fstat(fd)
pcow = os.pread(fd, 8, 0) == b"PCOW\r\n\x1a\n"
h = hashlib.sha256()
ext = []
pos = 0
zero = bytes(4096)
while pos < st.st_size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    e = os.lseek(fd, d, os.SEEK_HOLE)
    if pcow:
        ext.append((d, e))
    off = d
    while off < e:
        b = os.pread(fd, min(e - off, 4096 - off % 4096), off)
        if not b:
            break
        if pcow or b != zero[:len(b)]:
            h.update(b"%d:" % off + b)
        off += len(b)
    pos = e
print(st.st_size, oct(st.st_mode), h.hexdigest(), ext)
EOF
}

_fp_name() {
    local abs
    abs=$(realpath -m -- "$1")
    echo "$T/.fp.$(echo -n "$abs" | md5sum | cut -c1-16)"
}

remember() { # FILE...
    local f
    for f in "$@"; do
        fingerprint "$f" >"$(_fp_name "$f")" || fail "cannot fingerprint $f"
    done
}

assert_unchanged() { # FILE...
    local f now
    for f in "$@"; do
        if ! now=$(fingerprint "$f"); then
            fail "cannot fingerprint $f"
        elif [[ $now != "$(cat "$(_fp_name "$f")")" ]]; then
            fail "$f changed"
        else
            pass
        fi
    done
}

# ---- pcow-io helpers ---------------------------------------------------

# Runs pcow-io with one -c per command: pio [FLAGS] IMG CMD...
pio_args() {
    PIO_ARGS=()
    while [[ $# -gt 0 && $1 == -* ]]; do
        PIO_ARGS+=("$1")
        shift
    done
    PIO_IMG=$1
    shift
    local c
    for c in "$@"; do
        PIO_ARGS+=(-c "$c")
    done
}

pio() { # [FLAGS] IMG CMD...
    pio_args "$@"
    ok "$PCOW_IO" "${PIO_ARGS[@]}" "$PIO_IMG"
}

# Checks patterns: verify [FLAGS] IMG "PAT OFF LEN"...  (read-only unless
# FLAGS say otherwise).
verify() {
    local flags=() spec cmds=()
    while [[ $# -gt 0 && $1 == -* ]]; do
        flags+=("$1")
        shift
    done
    local img=$1
    shift
    # -U reads without a lock, which is for read-only opens only.
    [[ " ${flags[*]-} " == *" -r "* ]] || flags+=(-r)
    for spec in "$@"; do
        # shellcheck disable=SC2086
        set -- $spec
        cmds+=("read -P $1 $2 $3")
    done
    pio_args "${flags[@]}" "$img" "${cmds[@]}"
    run "$PCOW_IO" "${PIO_ARGS[@]}" "$PIO_IMG"
    if ((RC != 0)) || grep -q "verification failed" "$T/.out"; then
        fail "pattern check of $img ${flags[*]} failed (exit code $RC)"
        grep "verification failed" "$T/.out" | head -n 5 | sed 's/^/      | /' >&2
        head -n 5 "$T/.err" | sed 's/^/      | /' >&2
        return 1
    fi
    pass
    return 0
}

# ---- JSON ----------------------------------------------------------------

# Evaluates a Python expression over the JSON document on stdin (as d).
json() { # EXPR
    "$PY" -c '
import json, os, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
' "$1"
}

# One field of `pcow-img info --output=json -U IMG`.
info_get() { # IMG EXPR   (EXPR over d, e.g. 'd["allocated-blocks"]')
    "$PCOW_IMG" info --output=json -U "$1" | json "$2"
}

allocated_blocks() { # IMG
    info_get "$1" 'd["allocated-blocks"]'
}

# Bytes the file occupies on disk.
disk_usage() { # FILE
    echo $(($(stat -c %b "$1") * $(stat -c %B "$1")))
}

# ---- Checks ------------------------------------------------------------

check_eq() { # ACTUAL EXPECTED DESCRIPTION
    if [[ "$1" == "$2" ]]; then
        pass
    else
        fail "$3: got '$1', expected '$2'"
    fi
}

check_le() { # ACTUAL LIMIT DESCRIPTION
    if [[ $1 =~ ^[0-9]+$ ]] && (($1 <= $2)); then
        pass
    else
        fail "$3: got '$1', expected at most $2"
    fi
}

check_ge() { # ACTUAL LIMIT DESCRIPTION
    if [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2)); then
        pass
    else
        fail "$3: got '$1', expected at least $2"
    fi
}

check_true() { # DESCRIPTION CMD...
    local d=$1
    shift
    if "$@"; then
        pass
    else
        fail "$d"
    fi
}

# Inverts CMD's status, for check_true.
not() { # CMD...
    ! "$@"
}

# The last command's stdout must match ERE.
check_out() { # ERE DESCRIPTION
    if grep -qE -- "$1" "$T/.out"; then
        pass
    else
        fail "$2: output does not match /$1/"
        show_output
    fi
}

# ---- Files ---------------------------------------------------------------

# Writes a sparse raw file of SIZE bytes with the given pieces:
# mkraw FILE SIZE "OFF LEN PAT"...   (PAT: a byte value, or "r" for bytes
# that differ everywhere, derived from OFF)
mkraw() {
    "$PY" - "$@" <<'EOF' || fail "mkraw $* failed"
import os, random, sys
def num(v):
    m = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(v[-1:].upper(), 1)
    return int(v[:-1] if m > 1 else v, 0) * m
path, size = sys.argv[1], num(sys.argv[2])
with open(path, "wb") as f:
    f.truncate(size)
    for spec in sys.argv[3:]:
        off, ln, pat = spec.split()
        off, ln = num(off), num(ln)
        if pat == "r":
            data = random.Random(off).randbytes(ln)
        else:
            data = bytes([int(pat, 0)]) * ln
        f.seek(off)
        f.write(data)
EOF
}

# Checks bytes of a plain file: raw_verify FILE "PAT OFF LEN"...
raw_verify() {
    local file=$1
    shift
    if "$PY" - "$file" "$@" <<'EOF'; then
import sys
def num(v):
    m = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(v[-1:].upper(), 1)
    return int(v[:-1] if m > 1 else v, 0) * m
path = sys.argv[1]
with open(path, "rb") as f:
    for spec in sys.argv[2:]:
        pat, off, ln = spec.split()
        off, ln = num(off), num(ln)
        f.seek(off)
        b = f.read(ln)
        want = bytes([int(pat, 0)]) * ln
        if b != want:
            i = next((i for i in range(len(b)) if b[i] != want[i]), len(b))
            print("%s: %s: mismatch at offset %d" % (path, spec, off + i))
            sys.exit(1)
EOF
        pass
    else
        fail "raw content check of $file failed"
    fi
}

# Whole guest-visible content of an image as a raw file.
to_raw() { # IMG OUT
    rm -f "$2"
    ok "$PCOW_IMG" convert -U -O raw "$1" "$2"
}

# Compares two files byte for byte.
check_same() { # A B DESCRIPTION
    if cmp -s "$1" "$2"; then
        pass
    else
        fail "$3: $(cmp "$1" "$2" 2>&1 | head -n 1)"
    fi
}

# Pokes bytes into a file: poke FILE OFFSET HEXBYTES
poke() {
    "$PY" - "$@" <<'EOF' || fail "poke $* failed"
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2], 0))
    f.write(bytes.fromhex(sys.argv[3]))
EOF
}

# Recomputes the checksum of the metadata blob in the slot at OFFSET (as
# the format defines it: crc32 over the blob, length at byte 60, with the
# checksum field at byte 64 taken as zero).
fix_header_crc() { # FILE [SLOT_OFFSET]
    "$PY" - "$1" "${2:-0}" <<'EOF' || fail "fix_header_crc $* failed"
import struct, sys, zlib
path, base = sys.argv[1], int(sys.argv[2])
with open(path, "r+b") as f:
    f.seek(base)
    hdr = f.read(128)
    (ln,) = struct.unpack_from("<I", hdr, 60)
    f.seek(base)
    blob = bytearray(f.read(ln))
    blob[64:68] = b"\0\0\0\0"
    f.seek(base + 64)
    f.write(struct.pack("<I", zlib.crc32(bytes(blob)) & 0xffffffff))
EOF
}

# The metadata in force (the intact slot with the higher generation), read
# as docs/format.md 3 defines it, so that a test can compute offsets from
# the format rather than from what the library says, or damage a field.
#   meta IMG EXPR        prints EXPR, evaluated with the names below
#   meta_edit IMG CODE   runs CODE, then writes the blob back into its slot
#                        with the checksum recomputed
# Names: b (the blob, a bytearray), slot (its file offset), u32/u64(off),
# p32/p64(off, value), bs, vsize, cap, base (region_base), stride,
# nblocks, lt/st (layer/snapshot table offsets), layers [(region, parent,
# flags)], active, snaps [(id, layer, name)], region(r) (its file offset),
# data(l) and bitmap(l) (file offsets of layer l's data span and bitmap).
_META_PY='
import struct, sys, zlib
SLOT = 256 * 1024
def intact(f, off):
    f.seek(off)
    h = f.read(128)
    if len(h) < 128 or h[:8] != b"PCOW\r\n\x1a\n":
        return None
    (ln,) = struct.unpack_from("<I", h, 60)
    if ln < 128 or ln > SLOT:
        return None
    f.seek(off)
    blob = bytearray(f.read(ln))
    (crc,) = struct.unpack_from("<I", blob, 64)
    return blob if zlib.crc32(blob[:64] + bytes(4) + blob[68:]) == crc else None
f = open(sys.argv[1], "r+b")
found = [(struct.unpack_from("<Q", x, 40)[0], o, x)
         for o in (0, SLOT) for x in [intact(f, o)] if x]
if not found:
    sys.exit("%s: no intact metadata slot" % sys.argv[1])
_, slot, b = max(found, key=lambda t: t[:2])
u32 = lambda o: struct.unpack_from("<I", b, o)[0]
u64 = lambda o: struct.unpack_from("<Q", b, o)[0]
p32 = lambda o, v: struct.pack_into("<I", b, o, v)
p64 = lambda o, v: struct.pack_into("<Q", b, o, v)
bs, vsize, base, cap = 1 << u32(56), u64(48), u64(104), u64(112)
A = max(bs, 2 << 20)
up = lambda v, a: (v + a - 1) // a * a
stride = cap + up(8 * (((cap + bs - 1) // bs + 63) // 64), A)
nblocks = (vsize + bs - 1) // bs
lt, st, active = u32(84), u32(92), u32(96)
layers = [(u32(lt + 16 * i), u32(lt + 16 * i + 4), u32(lt + 16 * i + 8))
          for i in range(u32(80))]
snaps = [(u32(st + 32 * i), u32(st + 32 * i + 4),
          bytes(b[u32(st + 32 * i + 20):][:u32(st + 32 * i + 24)]).decode())
         for i in range(u32(88))]
region = lambda r: base + r * stride
data = lambda l: region(layers[l][0])
bitmap = lambda l: data(l) + cap
if sys.argv[2] == "get":
    print(eval(sys.argv[3]))
else:
    exec(sys.argv[3])
    p32(64, 0)
    p32(64, zlib.crc32(b[:u32(60)]))
    f.seek(slot)
    f.write(b)
'

meta() { # IMG EXPR
    "$PY" -c "$_META_PY" "$1" get "$2"
}

meta_edit() { # IMG CODE
    "$PY" -c "$_META_PY" "$1" edit "$2" || fail "meta_edit $* failed"
}

# ---- Holding an image open -----------------------------------------------

# Starts a pcow-io that keeps IMG open (reading commands from a fifo) and
# waits until it has the image.  hold_stop ends it.
hold_start() { # [PCOW-IO FLAGS] IMG
    local i
    HOLD_FIFO=$T/.hold.fifo
    HOLD_LOG=$T/.hold.log
    rm -f "$HOLD_FIFO" "$HOLD_LOG"
    mkfifo "$HOLD_FIFO"
    "$PCOW_IO" "$@" <"$HOLD_FIFO" >"$HOLD_LOG" 2>&1 &
    HOLD_PID=$!
    CLEANUP_PIDS+=("$HOLD_PID")
    exec {HOLD_FD}>"$HOLD_FIFO"
    # A command that only succeeds once the image is open.
    echo "read 0 512" >&"$HOLD_FD"
    for ((i = 0; i < 200; i++)); do
        grep -q "^read 512/512" "$HOLD_LOG" 2>/dev/null && return 0
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.05
    done
    fail "could not hold $*: $(cat "$HOLD_LOG")"
    return 1
}

# Sends one command to the holder and waits until it has run it (a marker
# read follows it, since some commands print nothing).
hold_cmd() { # CMD
    local before i
    before=$(grep -c "^read 512/512 bytes at offset 0$" "$HOLD_LOG")
    printf '%s\nread 0 512\n' "$1" >&"$HOLD_FD"
    for ((i = 0; i < 200; i++)); do
        (($(grep -c "^read 512/512 bytes at offset 0$" "$HOLD_LOG") > before)) && return 0
        sleep 0.05
    done
    fail "the holder did not run '$1'"
    return 1
}

# Waits until some process holds its locks on FILE: locks are there (as
# /proc/locks shows them; looking takes no lock, which could make the
# holder's own fail) and their number has settled (QEMU takes several).
wait_locked() { # FILE
    local ino i n last=0
    ino=$(stat -c %i "$1") || return 1
    for ((i = 0; i < 200; i++)); do
        n=$(grep -c ":$ino " /proc/locks)
        ((n > 0 && n == last)) && return 0
        last=$n
        sleep 0.1
    done
    fail "nothing locked $1"
    return 1
}

# Closes the holder's input and waits for it; its exit code is in HOLD_RC.
hold_stop() {
    exec {HOLD_FD}>&-
    wait "$HOLD_PID"
    HOLD_RC=$?
}
