#!/bin/bash
# pcow-io write / read / discard over every block size, through the file
# and through the mapping, and across reopening in the other mode.
source "$(dirname "$0")/lib.sh"

SIZE=$((32 * MiB))

for bs in $BLOCK_SIZES; do
    for mode in "" --mmap; do
        other=--mmap
        [[ -z $mode ]] || other=""
        tag="bs $bs ${mode:-file}"
        img=io-$bs${mode}.pcow
        ok "$PCOW_IMG" create -o block_size=$bs "$img" $SIZE

        # Whole block, piece inside a block, a write across a boundary,
        # the last sector, and a sub-sector write.
        pio $mode "$img" \
            "write -P 0xa1 0 $bs" \
            "write -P 0xa2 $((3 * bs + 512)) 1000" \
            "write -P 0xa3 $((5 * bs - 100)) 200" \
            "write -P 0xa4 $((SIZE - 512)) 512" \
            "write -P 0xa5 $((7 * bs + 3)) 5" \
            "read -P 0xa1 0 $bs" \
            "read -P 0xa2 $((3 * bs + 512)) 1000"
        check_out "^wrote 200/200 bytes at offset $((5 * bs - 100))$" "$tag: write report"
        check_eq "$(allocated_blocks "$img")" 6 "$tag: allocated blocks"
        expected=("0xa1 0 $bs" "0 $bs $((3 * bs - bs + 512))"
            "0xa2 $((3 * bs + 512)) 1000" "0 $((3 * bs + 1512)) $((2 * bs - 1612))"
            "0xa3 $((5 * bs - 100)) 200" "0 $((5 * bs + 100)) $((2 * bs - 97))"
            "0xa5 $((7 * bs + 3)) 5" "0 $((7 * bs + 8)) $((bs - 8))"
            "0 $((8 * bs)) $((SIZE - 8 * bs - 512))" "0xa4 $((SIZE - 512)) 512")
        verify $mode "$img" "${expected[@]}"
        # The other mode, in a new process, sees the same.
        verify $other "$img" "${expected[@]}"

        # A read that fails the pattern says where, and fails.
        run "$PCOW_IO" $mode -r -c "read -P 0xa1 $((bs - 512)) 1024" "$img"
        check_eq "$RC" 1 "$tag: exit code of a failed pattern check"
        check_out "^Pattern verification failed at offset $bs, 1024 bytes$" "$tag: pattern failure report"

        # Overwrites in place, in the other mode.
        pio $other "$img" "write -P 0xb1 $((bs / 2)) 512"
        verify $mode "$img" "0xa1 0 $((bs / 2))" "0xb1 $((bs / 2)) 512" \
            "0xa1 $((bs / 2 + 512)) $((bs / 2 - 512))"
        check_eq "$(allocated_blocks "$img")" 6 "$tag: blocks after an overwrite"

        # Discard: only whole blocks inside the range go.
        n=$(allocated_blocks "$img")
        pio $mode "$img" "discard 1 $bs"
        verify $mode "$img" "0xa1 0 $((bs / 2))"
        check_eq "$(allocated_blocks "$img")" $n "$tag: blocks after discarding a partial block"
        pio $mode "$img" "discard $((3 * bs)) $bs" "read -P 0 $((3 * bs)) $bs"
        check_eq "$(allocated_blocks "$img")" $((n - 1)) "$tag: blocks after discarding one block"
        pio $mode "$img" "discard $((4 * bs - 512)) $((bs + 1024))"
        check_eq "$(allocated_blocks "$img")" $((n - 2)) "$tag: blocks after a discard covering one block"
        verify $mode "$img" "0 $((4 * bs)) $bs" "0xa3 $((5 * bs)) 100" "0 $((5 * bs + 100)) 512"
        verify $other "$img" "0 $((3 * bs)) $((2 * bs))" "0xa1 0 $((bs / 2))" "0xa5 $((7 * bs + 3)) 5"
        # Discarding to the end of the image takes the last block.
        pio $mode "$img" "discard $((SIZE - bs)) $bs"
        verify $other "$img" "0 $((SIZE - bs)) $bs"
        check_eq "$(allocated_blocks "$img")" $((n - 3)) "$tag: blocks after discarding the last block"
        # A block can be written again after a discard.
        pio $mode "$img" "write -P 0xc1 $((3 * bs + bs / 2)) $((bs / 4))"
        verify $other "$img" "0 $((3 * bs)) $((bs / 2))" "0xc1 $((3 * bs + bs / 2)) $((bs / 4))" \
            "0 $((3 * bs + 3 * bs / 4)) $((bs / 4))"
        # Zero-length requests are harmless.
        pio $mode "$img" "write -P 0x99 $bs 0" "read -P 0x99 $bs 0" "discard 0 0"
        verify "$img" "0 $bs $bs"

        pio $mode "$img" flush
        ok "$PCOW_IMG" check "$img"
        rm -f "$img"
    done
done

# A size that is not a multiple of the block size: the partial last block
# is written, read and discarded like any other.
for mode in "" --mmap; do
    img=tail$mode.pcow
    ok "$PCOW_IMG" create -o block_size=2M "$img" $((5 * MiB + 4096))
    pio $mode "$img" "write -P 0x7e $((5 * MiB)) 4096" "write -P 0x7d $((4 * MiB)) $MiB"
    verify "$img" "0x7d $((4 * MiB)) $MiB" "0x7e $((5 * MiB)) 4096"
    check_eq "$(allocated_blocks "$img")" 1 "tail ${mode:-file}: allocated blocks"
    ok "$PCOW_IMG" check "$img"
    pio $mode "$img" "discard $((4 * MiB)) $((MiB + 4096))"
    verify "$img" "0 $((4 * MiB)) $((MiB + 4096))"
    check_eq "$(allocated_blocks "$img")" 0 "tail ${mode:-file}: blocks after discarding the tail"
done

# Commands read from stdin, comments and blank lines included.
ok "$PCOW_IMG" create s.pcow 4M
printf '# a comment\n\nwrite -P 0x42 0 4096\nread -P 0x42 0 4096\n' >cmds
run "$PCOW_IO" s.pcow <cmds
check_eq "$RC" 0 "commands from stdin"
check_out "^read 4096/4096 bytes at offset 0$" "commands from stdin"

# A failed command makes the exit code 1 but the following ones still run.
run "$PCOW_IO" -c "read -P 0x43 0 4096" -c "write -P 0x44 8192 512" s.pcow
check_eq "$RC" 1 "exit code after a failed command"
verify s.pcow "0x44 8192 512"
expect_fail --nofile "$PCOW_IO" -c "frobnicate 0 1" s.pcow

# Writes through a read-only open are refused.
remember s.pcow
expect_fail --file s.pcow --grep "read-only" "$PCOW_IO" -r -c "write 0 512" s.pcow
expect_fail --file s.pcow --grep "read-only" "$PCOW_IO" -r --mmap -c "write 0 512" s.pcow
expect_fail --file s.pcow --grep "read-only" "$PCOW_IO" -r -c "discard 0 1M" s.pcow
assert_unchanged s.pcow

# Option errors and a missing image: one "pcow-io: " line.
expect_fail --nofile --grep "^pcow-io: invalid option -- 'Z'$" "$PCOW_IO" -Z s.pcow
expect_fail --nofile --grep "^pcow-io: unrecognized option '--bogus'$" "$PCOW_IO" --bogus s.pcow
expect_fail --nofile --grep "^pcow-io: option '--cmd' requires an argument$" "$PCOW_IO" s.pcow --cmd
expect_fail --grep "^pcow-io: missing.pcow: " "$PCOW_IO" -c "read 0 512" missing.pcow

# ---- qemu-io's habits ----
ok "$PCOW_IMG" create -q -o block_size=64K h.pcow 4M

# Amounts in qemu-io's words, which qemu-iotests' filters expect: "0
# bytes", "1000 bytes", "3.906 KiB", "3.812 MiB", "1 MiB"; times as
# "SS.hh sec"; rates in the same units.
for spec in "0:0 bytes" "1000:1000 bytes" "4000:3.906 KiB" "3997696:3.812 MiB" "1048576:1 MiB" \
    "65536:64 KiB" "1536:1.500 KiB"; do
    pio h.pcow "write 0 ${spec%%:*}" "read 0 ${spec%%:*}"
    check_out "^${spec#*:}, 1 ops; [0-9]{2}\.[0-9]{2} sec \([0-9.]+ ([KMGTPE]iB|bytes)/sec and [0-9]+\.[0-9]{4} ops/sec\)$" \
        "amount and rate of ${spec%%:*} bytes"
done
# The filter of qemu-iotests (common.filter's _filter_qemu_io) matches.
pio h.pcow "write -P 1 0 3997696"
check_eq "$(sed -e 's/[0-9]* ops\; [0-9/:. sec]* ([0-9/.inf]* [EPTGMKiBbytes]*\/sec and [0-9/.inf]* ops\/sec)/X ops\; XX:XX:XX.X (XXX YYY\/sec and XXX ops\/sec)/' "$T/.out" | tail -n 1)" \
    "3.812 MiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)" "qemu-iotests' filter"

# length, info, alloc, map.
pio -r h.pcow length info
check_eq "$(cat "$T/.out")" $'4 MiB\nformat name: pcow\ncluster size: 64 KiB' "length and info"
pio h.pcow "discard 0 4M" "write -P 2 64K 64K" "write -P 3 1M 1"
pio -r h.pcow "alloc 0" "alloc 64K" "alloc 0 1M" "alloc 100K 2M" "alloc 3M 1M"
check_eq "$(cat "$T/.out")" "0/512 bytes allocated at offset 0 bytes
512/512 bytes allocated at offset 64 KiB
65536/1048576 bytes allocated at offset 0 bytes
94208/2097152 bytes allocated at offset 100 KiB
0/1048576 bytes allocated at offset 3 MiB" "alloc"
pio -r h.pcow map
check_eq "$(cat "$T/.out")" "64 KiB (0x10000) bytes not allocated at offset 0 bytes (0x0)
64 KiB (0x10000) bytes     allocated at offset 64 KiB (0x10000)
896 KiB (0xe0000) bytes not allocated at offset 128 KiB (0x20000)
64 KiB (0x10000) bytes     allocated at offset 1 MiB (0x100000)
2.938 MiB (0x2f0000) bytes not allocated at offset 1.062 MiB (0x110000)" "map in qemu-io's words"
expect_fail --nofile --grep "alloc" "$PCOW_IO" -r -c "alloc" h.pcow

# read -v dumps what it read, with the image's offsets.
pio h.pcow "write -P 0x41 $((64 * KiB + 16)) 4"
pio -r h.pcow "read -v $((64 * KiB + 14)) 20"
check_eq "$(head -n 2 "$T/.out")" "0001000e:  02 02 41 41 41 41 02 02 02 02 02 02 02 02 02 02  ..AAAA..........
0001001e:  02 02 02 02  ...." "read -v"
check_out "^read 20/20 bytes at offset 65550$" "read -v still reports"

# write -z: zeros, also over a backing file's data; the whole blocks
# inside go (no space), the ends are written.
mkraw hz.raw 4M "0 4M 0x5a"
ok "$PCOW_IMG" create -q -o block_size=64K -b hz.raw -F raw hz.pcow
for mode in "" --mmap; do
    pio $mode hz.pcow "write -z 1000 200K"
    check_out "^wrote 204800/204800 bytes at offset 1000$" "write -z ${mode:-file}: report"
    verify hz.pcow "0x5a 0 1000" "0 1000 200K" "0x5a $((1000 + 200 * KiB)) 1M"
    check_eq "$("$PCOW_IMG" map --output=json hz.pcow | json 'sum(r["length"] for r in d if r["data"] and r["depth"] == 0)')" \
        $((128 * KiB)) "write -z ${mode:-file}: only the end blocks hold data"
done
expect_fail --nofile --grep "-z and -P" "$PCOW_IO" -c "write -z -P 1 0 512" hz.pcow

# -q, per command and for all of them; quit (or q) ends the commands.
pio h.pcow "write -q -P 4 0 512" "read -q -P 4 0 512" "discard -q 0 64K"
check_eq "$(wc -c <"$T/.out")" 0 "commands with -q print nothing"
pio -q h.pcow "write -P 5 0 512" "read -P 5 0 512" length
check_eq "$(cat "$T/.out")" "4 MiB" "pcow-io -q keeps what is asked for"
for q in quit q; do
    pio h.pcow "write -P 6 0 512" "$q" "write -P 7 0 512"
    verify h.pcow "6 0 512"
done
printf 'write -P 8 0 512\nquit\nwrite -P 9 0 512\n' >qcmds
ok "$PCOW_IO" h.pcow <qcmds
verify h.pcow "8 0 512"

# help lists the commands (those of --help), help COMMAND one of them.
pio -r h.pcow help
check_eq "$(awk '{print $1}' "$T/.out" | tr '\n' ' ')" \
    "$("$PCOW_IO" --help | sed -n 's/^commands: //p; s/^ \+//p' | awk '{print $1}' | tr '\n' ' ')" \
    "help lists the commands"
check_out "^write \[-qz\] \[-P PATTERN\] OFF LEN -- " "help: write"
pio -r h.pcow "help alloc"
check_eq "$(wc -l <"$T/.out")" 1 "help alloc: one line"
expect_fail --nofile --grep "frob" "$PCOW_IO" -r -c "help frob" h.pcow

# An unknown flag of a command is "invalid option", as getopt says it.
expect_fail --nofile --grep "^pcow-io: read: invalid option -- 'Z'$" "$PCOW_IO" -r -c "read -Z 0 1" h.pcow
expect_fail --nofile --grep "^pcow-io: write: invalid option -- 'v'$" "$PCOW_IO" -c "write -v 0 1" h.pcow
expect_fail --nofile --grep "^pcow-io: discard: invalid option -- 'P'$" "$PCOW_IO" -c "discard -P 1 0 1" h.pcow

# --version; -U without -r is refused (as qemu-io), not opened to fail
# every write.
ok "$PCOW_IO" --version
check_out "^pcow-io version [0-9]+\.[0-9]+\.[0-9]+$" "pcow-io --version"
ok "$PCOW_IO" -V
check_out "^pcow-io version " "pcow-io -V"
expect_fail --grep "force-share.*read-only.*-r" "$PCOW_IO" -U -c "read 0 512" h.pcow
ok "$PCOW_IO" -U -r -c "read 0 512" h.pcow

# On a terminal, a prompt for each command, as qemu-io's.
out=$("$PY" - "$PCOW_IO" h.pcow <<'PYEOF'
import os, pty, sys, termios, time
pid, fd = pty.fork()
if pid == 0:
    # No echo: only what pcow-io writes comes back.
    attrs = termios.tcgetattr(0)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(0, termios.TCSANOW, attrs)
    os.execv(sys.argv[1], [sys.argv[1], sys.argv[2]])
data = b""
sent = False
deadline = time.time() + 10
while time.time() < deadline:
    # The first prompt says echo is off: then the commands.
    if not sent and b"pcow-io> " in data:
        os.write(fd, b"length\nquit\n")
        sent = True
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
os.waitpid(pid, 0)
sys.stdout.write(data.decode(errors="replace").replace("\r", ""))
PYEOF
)
check_eq "$out" $'pcow-io> 4 MiB\npcow-io> ' "a prompt on a terminal"
run "$PCOW_IO" -c length h.pcow
check_true "no prompt without a terminal" not grep -q "pcow-io>" "$T/.out"

finish
