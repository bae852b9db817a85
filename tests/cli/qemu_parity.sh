#!/bin/bash
# pcow-img and pcow-io side by side with qemu-img and qemu-io on qcow2: the
# same scenarios, and what a script parses must be the same -- JSON keys
# and their types (and values where the formats agree), exit codes, table
# headers, qemu-io's output lines.  Each scenario gives a signature; with
# QEMU installed, pcow's must equal qemu's; without, the qemu half is
# skipped and pcow's is compared with what qemu-img 7.2 gave when the test
# was written.  Deliberate differences are in pcow-img(1), COMPATIBILITY.
source "$(dirname "$0")/lib.sh"

QEMU_IMG=$(command -v qemu-img)
QEMU_IO=$(command -v qemu-io)
# PCOW_PARITY_RECORDED=1 compares with the recorded answers even with
# QEMU installed (to check them after a change).
if [[ -n $QEMU_IMG && -n $QEMU_IO && -z ${PCOW_PARITY_RECORDED:-} ]]; then
    HAVE_QEMU=1
else
    HAVE_QEMU=0
    echo "qemu-img or qemu-io is not installed: pcow is compared with qemu 7.2's recorded answers"
fi

# scenario NAME RECORDED: runs pcow_NAME and (with QEMU) qemu_NAME, each
# printing a signature, and compares them.
scenario() { # NAME RECORDED
    local name=$1 recorded=$2 got want
    got=$(cd "$T/p" && "pcow_$1" 2>&1)
    if ((HAVE_QEMU)); then
        want=$(cd "$T/q" && "qemu_$1" 2>&1)
        check_eq "$got" "$want" "$name: pcow as qemu"
        # PCOW_PARITY_PRINT=1: what to record for QEMU's absence.
        [[ -z ${PCOW_PARITY_PRINT:-} ]] || printf '=== %s\n%s\n' "$name" "$want"
    else
        check_eq "$got" "$recorded" "$name: pcow as qemu 7.2"
    fi
}
mkdir p q

# The type of each listed key of the JSON object on stdin ("absent" when
# it is not there): what a script reading those keys relies on.
key_types() { # KEY...
    "$PY" -c '
import json, sys
d = json.load(sys.stdin)
name = {bool: "bool", int: "int", str: "str", dict: "object", list: "array", float: "float"}
print(" ".join("%s:%s" % (k, name[type(d[k])] if k in d else "absent") for k in sys.argv[1:]))
' "$@"
}

# ---- create: sizes as qemu-img takes them, exit codes, a file replaced --
create_sizes() { # TOOL FMT INFO
    local s
    for s in 1.5G 0x100000 1000 1k 2.25m 12Q 1.5 -1 1e3; do
        rm -f s.img
        "$1" create -q -f "$2" -- s.img "$s" >/dev/null 2>&1
        printf '%s:%s:%s ' "$s" $? "$("$3" info --output=json s.img 2>/dev/null | json 'd["virtual-size"]' 2>/dev/null)"
    done
}
pcow_create_sizes() { create_sizes "$PCOW_IMG" pcow "$PCOW_IMG"; }
qemu_create_sizes() { create_sizes "$QEMU_IMG" qcow2 "$QEMU_IMG"; }
scenario create_sizes "1.5G:0:1610612736 0x100000:0:1048576 1000:0:1024 1k:0:1024 2.25m:0:2359296 12Q:1: 1.5:1: -1:1: 1e3:1: "

create_over() { # TOOL FMT
    echo data >f.img
    "$1" create -q -f "$2" f.img 1M >/dev/null 2>&1
    echo "over a file: $?, $(head -c 3 f.img | tr -c 'A-Za-z' '.')"
    "$1" create -q -f "$2" f.img 2M >/dev/null 2>&1
    echo "over an image: $?"
    mkdir -p dir.img
    "$1" create -q -f "$2" dir.img 1M >/dev/null 2>&1
    echo "over a directory: $?"
}
pcow_create_over() { create_over "$PCOW_IMG" pcow | sed 's/PCO/QFI/'; }
qemu_create_over() { create_over "$QEMU_IMG" qcow2; }
scenario create_over "over a file: 0, QFI
over an image: 0
over a directory: 1"

# An image in use is not replaced (each tool's own holder).
in_use() { # TOOL FMT IO
    "$1" create -q -f "$2" busy.img 1M
    "$3" -c "sleep 60000" busy.img >/dev/null 2>&1 &
    local pid=$!
    wait_locked busy.img
    "$1" create -q -f "$2" busy.img 1M >/dev/null 2>&1
    echo "create over an image in use: $?"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
pcow_in_use() {
    "$PCOW_IMG" create -q busy.img 1M
    hold_start busy.img >/dev/null
    "$PCOW_IMG" create -q busy.img 1M >/dev/null 2>&1
    echo "create over an image in use: $?"
    hold_stop
}
qemu_in_use() { in_use "$QEMU_IMG" qcow2 "$QEMU_IO"; }
scenario in_use "create over an image in use: 1"

# -o help: exit 0 and the header's shape, for create and convert
# (qemu-img 7.2's measure has no -o help; pcow-img's lists its options).
o_help() { # TOOL FMT
    "$1" create -f "$2" -o help | head -n 1 | sed "s/ $2 / FMT /"
    "$1" create -f "$2" -o '?' >/dev/null
    echo "create -o ?: $?"
    "$1" convert -O "$2" -o help | head -n 1 | sed "s/ $2 / FMT /"
    "$1" create -f "$2" -o cluster_size=64k,help >/dev/null
    echo "create -o KEY=VALUE,help: $?"
}
pcow_o_help() { o_help "$PCOW_IMG" pcow; }
qemu_o_help() { o_help "$QEMU_IMG" qcow2; }
scenario o_help "Supported FMT options:
create -o ?: 0
Supported FMT options:
create -o KEY=VALUE,help: 0"

# ---- info --output=json: the keys scripts read, with their types ------
INFO_KEYS="virtual-size filename cluster-size format actual-size dirty-flag format-specific
backing-filename full-backing-filename backing-filename-format snapshots"
SNAP_KEYS="id name vm-state-size date-sec date-nsec vm-clock-sec vm-clock-nsec icount"
info_json() { # TOOL FMT
    "$1" create -q -f "$2" base.img 4M
    "$1" create -q -f "$2" -b base.img -F "$2" top.img
    # shellcheck disable=SC2086  # the key lists are words
    "$1" info --output=json top.img | key_types $INFO_KEYS
    "$1" info --output=json top.img | json '[d["virtual-size"], d["cluster-size"], d["filename"], d["backing-filename"], d["dirty-flag"]]'
    "$1" snapshot -c one base.img
    # shellcheck disable=SC2086
    "$1" info --output=json base.img | json 'd["snapshots"][0]' | key_types $SNAP_KEYS
    "$1" info --output=json base.img | json '[type(d["format-specific"]["type"]).__name__, type(d["format-specific"]["data"]).__name__]'
    "$1" info --output=json nothere.img >/dev/null 2>&1
    echo "info of a missing file: $?"
}
pcow_info_json() { info_json "$PCOW_IMG" pcow; }
qemu_info_json() { info_json "$QEMU_IMG" qcow2; }
scenario info_json "virtual-size:int filename:str cluster-size:int format:str actual-size:int dirty-flag:bool format-specific:object backing-filename:str full-backing-filename:str backing-filename-format:str snapshots:absent
[4194304, 65536, \"top.img\", \"base.img\", false]
id:str name:str vm-state-size:int date-sec:int date-nsec:int vm-clock-sec:int vm-clock-nsec:int icount:int
[\"str\", \"dict\"]
info of a missing file: 1"

# ---- snapshot -l: qemu-img's table ------------------------------------
snapshot_list() { # TOOL FMT
    "$1" create -q -f "$2" sn.img 4M
    "$1" snapshot -c first sn.img
    "$1" snapshot -c "second one" sn.img
    "$1" snapshot -l sn.img | sed -E 's/[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}/DATE/'
}
pcow_snapshot_list() { snapshot_list "$PCOW_IMG" pcow; }
qemu_snapshot_list() { snapshot_list "$QEMU_IMG" qcow2; }
scenario snapshot_list "Snapshot list:
ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT
1         first                 0 B DATE 00:00:00.000          0
2         second one            0 B DATE 00:00:00.000          0"

# ---- check: JSON keys and allocation figures, human lines, exit codes --
CHECK_KEYS="filename format check-errors image-end-offset total-clusters allocated-clusters"
check_out() { # TOOL FMT IO
    "$1" create -q -f "$2" c.img 64M
    "$3" -c "write -P 1 0 1M" -c "write -P 2 10M 64k" c.img >/dev/null
    "$1" check --output=json c.img >c.json
    echo "exit $?"
    # shellcheck disable=SC2086
    key_types $CHECK_KEYS <c.json
    json '[d["total-clusters"], d["allocated-clusters"]]' <c.json
    "$1" check c.img | sed -E 's/^Image end offset: [0-9]+$/Image end offset: N/'
    "$1" check -q c.img | wc -c
}
pcow_check_out() { check_out "$PCOW_IMG" pcow "$PCOW_IO"; }
qemu_check_out() { check_out "$QEMU_IMG" qcow2 "$QEMU_IO"; }
scenario check_out "exit 0
filename:str format:str check-errors:int image-end-offset:int total-clusters:int allocated-clusters:int
[1024, 17]
No errors were found on the image.
17/1024 = 1.66% allocated, 0.00% fragmented, 0.00% compressed clusters
Image end offset: N
0"

# ---- map --output=json: the same runs, depths included ---------------
map_runs() { # TOOL FMT IO [MAP OPTIONS]
    local tool=$1 fmt=$2 io=$3
    shift 3
    "$tool" create -q -f "$fmt" mb.img 4M
    "$io" -c "write 0 64k" mb.img >/dev/null
    "$tool" create -q -f "$fmt" -b mb.img -F "$fmt" mm.img
    "$io" -c "write 1M 64k" mm.img >/dev/null
    "$tool" create -q -f "$fmt" -b mm.img -F "$fmt" mt.img
    "$io" -c "write 2M 64k" mt.img >/dev/null
    "$tool" map --output=json "$@" mt.img |
        json '" ".join("%d+%d:%d:%s%s%s" % (r["start"], r["length"], r["depth"], "p" if r["present"] else "-", "z" if r["zero"] else "-", "d" if r["data"] else "-") for r in d)'
    "$tool" map --output=json "$@" mt.img | json 'sorted(set(k for r in d for k in r))'
}
map_chain() { # TOOL FMT IO
    map_runs "$@"
    map_runs "$@" --start-offset 1M --max-length 100k | sed -n 1p
    map_runs "$@" --start-offset=0x100 --max-length=1000 | sed -n 1p
    "$1" map --start-offset x mt.img >/dev/null 2>&1
    echo "a bad start offset: $?"
}
pcow_map_chain() { map_chain "$PCOW_IMG" pcow "$PCOW_IO"; }
qemu_map_chain() { map_chain "$QEMU_IMG" qcow2 "$QEMU_IO"; }
scenario map_chain "0+65536:2:p-d 65536+983040:2:-z- 1048576+65536:1:p-d 1114112+983040:2:-z- 2097152+65536:0:p-d 2162688+2031616:2:-z-
[\"data\", \"depth\", \"length\", \"offset\", \"present\", \"start\", \"zero\"]
1048576+65536:1:p-d 1114112+36864:2:-z-
256+1000:2:p-d
a bad start offset: 1"

# ---- convert -n, commit -t, resize, compare, measure: exit codes -------
exit_codes() { # TOOL FMT
    "$1" create -q -f "$2" e1.img 2M
    "$1" create -q -f "$2" e2.img 1M
    "$1" convert -n -f "$2" -O "$2" e1.img e2.img >/dev/null 2>&1
    echo "convert -n into a smaller image: $?"
    "$1" convert -n -f "$2" -O "$2" e2.img e1.img >/dev/null 2>&1
    echo "convert -n into a larger image: $?"
    "$1" convert -n -f "$2" -O "$2" e2.img nothere.img >/dev/null 2>&1
    echo "convert -n into nothing: $?"
    "$1" convert -n -o cluster_size=4k -f "$2" -O "$2" e2.img e1.img >/dev/null 2>&1
    echo "convert -n -o: $?"
    "$1" convert -f "$2" -O "$2" e1.img e2.img >/dev/null 2>&1
    echo "convert over an image: $?"
    "$1" create -q -f "$2" -b e1.img -F "$2" e3.img
    "$1" commit -t bogus e3.img >/dev/null 2>&1
    echo "commit -t bogus: $?"
    "$1" commit -q -t writeback e3.img >/dev/null 2>&1
    echo "commit -t writeback: $?"
    "$1" resize e1.img 20000000 >/dev/null 2>&1
    echo "resize to no whole sector: $?"
    "$1" resize -q e1.img 1.5M >/dev/null 2>&1
    echo "resize to a smaller 1.5M without --shrink: $?"
    "$1" resize -q e1.img +0.5M >/dev/null 2>&1
    echo "resize by +0.5M: $?"
    "$1" create -q -f "$2" e4.img 1M
    "$1" compare e1.img e4.img >/dev/null 2>&1
    echo "compare different sizes, zeros: $?"
    "$1" compare -s e1.img e4.img >/dev/null 2>&1
    echo "compare -s different sizes: $?"
    "$1" measure --output=json --size 1G -O "$2" | json 'sorted(d)'
}
pcow_exit_codes() { exit_codes "$PCOW_IMG" pcow; }
qemu_exit_codes() { exit_codes "$QEMU_IMG" qcow2; }
scenario exit_codes "convert -n into a smaller image: 1
convert -n into a larger image: 0
convert -n into nothing: 1
convert -n -o: 1
convert over an image: 0
commit -t bogus: 1
commit -t writeback: 0
resize to no whole sector: 1
resize to a smaller 1.5M without --shrink: 1
resize by +0.5M: 0
compare different sizes, zeros: 0
compare -s different sizes: 1
[\"fully-allocated\", \"required\"]"

# ---- pcow-io as qemu-io: the lines qemu-iotests' filter leaves --------
# common.filter's _filter_qemu_io, for the times and rates.
io_filter() {
    sed -e 's/[0-9]* ops\; [0-9/:. sec]* ([0-9/.inf]* [EPTGMKiBbytes]*\/sec and [0-9/.inf]* ops\/sec)/X ops\; XX:XX:XX.X (XXX YYY\/sec and XXX ops\/sec)/' \
        -e 's/^\(pcow\|qemu\)-io: //'
}
io_lines() { # TOOL FMT IO
    local tool=$1 fmt=$2 io=$3 n
    "$tool" create -q -f "$fmt" io.img 64M
    for n in 0 1 1000 4000 65536 3997696 1048576; do
        "$io" -c "write -P 0x41 0 $n" -c "read -P 0x41 0 $n" io.img 2>&1 | io_filter
    done
    "$io" -c "write -z 8M 64k" -c "write -q 9M 4k" -c "discard 8M 64k" io.img 2>&1 | io_filter
    # What the active layer holds, in a fresh image (qcow2 keeps a
    # discarded or zeroed cluster as a zero cluster, pcow as nothing).
    "$tool" create -q -f "$fmt" al.img 64M
    "$io" -c "write -P 0x61 1M 64k" -c "write -q -P 0x62 3M 4k" al.img 2>&1 | io_filter
    "$io" -r -c "alloc 0" -c "alloc 1M 1M" -c "alloc 3M" -c "alloc 1040k 20k" -c length -c map \
        -c "read -v 1048574 20" al.img 2>&1 | io_filter
    "$io" -r -c "read -Z 0 1" io.img 2>&1 | sed -n 1p | io_filter
    "$io" -U io.img -c "read 0 1" >/dev/null 2>&1
    echo "-U without -r: $?"
    "$io" -r -U io.img -c "read -q 0 1" 2>&1
    echo "-U with -r: $?"
}
pcow_io_lines() { io_lines "$PCOW_IMG" pcow "$PCOW_IO"; }
qemu_io_lines() { io_lines "$QEMU_IMG" qcow2 "$QEMU_IO"; }
scenario io_lines "wrote 0/0 bytes at offset 0
0 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 0/0 bytes at offset 0
0 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 1/1 bytes at offset 0
1 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 1/1 bytes at offset 0
1 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 1000/1000 bytes at offset 0
1000 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 1000/1000 bytes at offset 0
1000 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 4000/4000 bytes at offset 0
3.906 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 4000/4000 bytes at offset 0
3.906 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 65536/65536 bytes at offset 0
64 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 65536/65536 bytes at offset 0
64 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 3997696/3997696 bytes at offset 0
3.812 MiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 3997696/3997696 bytes at offset 0
3.812 MiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 1048576/1048576 bytes at offset 0
1 MiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read 1048576/1048576 bytes at offset 0
1 MiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 65536/65536 bytes at offset 8388608
64 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
discard 65536/65536 bytes at offset 8388608
64 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
wrote 65536/65536 bytes at offset 1048576
64 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
0/512 bytes allocated at offset 0 bytes
65536/1048576 bytes allocated at offset 1 MiB
512/512 bytes allocated at offset 3 MiB
20480/20480 bytes allocated at offset 1.016 MiB
64 MiB
1 MiB (0x100000) bytes not allocated at offset 0 bytes (0x0)
64 KiB (0x10000) bytes     allocated at offset 1 MiB (0x100000)
1.938 MiB (0x1f0000) bytes not allocated at offset 1.062 MiB (0x110000)
64 KiB (0x10000) bytes     allocated at offset 3 MiB (0x300000)
60.938 MiB (0x3cf0000) bytes not allocated at offset 3.062 MiB (0x310000)
000ffffe:  00 00 61 61 61 61 61 61 61 61 61 61 61 61 61 61  ..aaaaaaaaaaaaaa
0010000e:  61 61 61 61  aaaa
read 20/20 bytes at offset 1048574
20 bytes, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)
read: invalid option -- 'Z'
-U without -r: 1
-U with -r: 0"

finish
