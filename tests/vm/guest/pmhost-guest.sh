# Helpers for the guest scripts of tests/vm/pmhost.sh (busybox sh): the
# test guest as a persistent-memory host for pcow's own tools.  pmhost.sh
# puts this file at /lib/pmhost-guest.sh; the scripts source it after
# /lib/pcow-guest.sh.  The tools (pcow-img, pcow-io, libpcow and its
# libraries, the unit tests and map_bench in /opt/pcow) come in a second
# initrd archive (lib.sh, vm_pack).

PMH_FAILS=0

# One result line each; pmhost.sh counts them.
t_ok() { echo "ok: $*"; }
t_bad() { echo "FAIL: $*"; PMH_FAILS=$((PMH_FAILS + 1)); }

# t_check DESCRIPTION COMMAND...: ok when COMMAND succeeds, else FAIL with
# the tail of its output.
t_check() {
    _what=$1
    shift
    if "$@" >/tmp/t_check.out 2>&1; then
        t_ok "$_what"
    else
        t_bad "$_what (exit $?)"
        tail -n 8 /tmp/t_check.out | sed 's/^/    /'
    fi
}

# The script's exit code: 1 when a check failed.
t_done() { [ "$PMH_FAILS" -eq 0 ]; }

# mkfs options for ext4 on fsdax: a 2 MiB stripe makes the allocator hand
# out 2 MiB-aligned extents, without which no 2 MiB page can map them.
PMH_EXT4_OPTS="-E stride=512,stripe_width=512"

# The NVDIMM in slot SLOT as fsdax with ext4 (made when NEW is 1) mounted
# -o dax on DIR; prints the device.
pmh_fs() { # SLOT DIR NEW [MKFS_OPTS]
    _dev=$(pm_by_slot "$1" "" 20) || return 1
    if [ "$3" = 1 ]; then
        pm_fsdax "$_dev" >&2 || return 1
        _dev=$(pm_by_slot "$1" fsdax 20) || return 1
        PM_MKFS_OPTS=${4-$PMH_EXT4_OPTS} pm_mkfs "$_dev" >&2 || return 1
    fi
    pm_mount "$_dev" "$2" >&2 || return 1
    echo "$_dev"
}

# The usual start: slot 0 as new fsdax ext4 -o dax on /mnt, the current
# directory.
pmh_start() {
    pmh_fs 0 /mnt 1 >/dev/null || pm_fail "fsdax ext4 -o dax"
    cd /mnt || pm_fail "cd /mnt"
}

# pcow-io --mmap on IMAGE kept open: commands go to descriptor 3
# (echo CMD >&3), its output to /tmp/io.out, its pid in PMH_IO.
pmh_io_open() { # IMAGE [PCOW-IO OPTIONS...]
    _img=$1
    shift
    rm -f /tmp/cmds
    mkfifo /tmp/cmds
    pcow-io --mmap "$@" "$_img" </tmp/cmds >/tmp/io.out 2>&1 &
    PMH_IO=$!
    exec 3>/tmp/cmds
}
# Waits (up to 30 s) until COUNT lines of its output match PATTERN.
pmh_io_wait() { # PATTERN COUNT
    _n=0
    while [ "$(grep -c "$1" /tmp/io.out)" -lt "$2" ] && [ $_n -lt 300 ]; do
        sleep 0.1
        _n=$((_n + 1))
    done
}
# Ends its input; returns its exit code.
pmh_io_close() {
    exec 3>&-
    wait "$PMH_IO"
}

# The smaps entries (one line each: "RANGE PERMS VMFLAGS | pmd KB | FILE")
# of PID's mappings of FILE.
pmh_maps() { # PID FILE
    awk -v f="$2" '
        /^[0-9a-f]+-[0-9a-f]+ / { on = ($NF == f); range = $1; perms = $2; next }
        on && /^FilePmdMapped:/ { pmd = $2 }
        on && /^VmFlags:/ { $1 = ""; print range, perms, $0, "| pmd", pmd, "|", f }' "/proc/$1/smaps"
}

# Tracing of the DAX fault path (fs_dax events).
PMH_TRACE=/sys/kernel/tracing
pmh_trace_on() { # EVENT...
    [ -d "$PMH_TRACE/events" ] || mount -t tracefs nodev "$PMH_TRACE" || return 1
    echo 0 >"$PMH_TRACE/tracing_on"
    echo >"$PMH_TRACE/trace"
    for _e in "$@"; do echo 1 >"$PMH_TRACE/events/fs_dax/$_e/enable" || return 1; done
    echo 1 >"$PMH_TRACE/tracing_on"
}
pmh_trace_off() {
    echo 0 >"$PMH_TRACE/tracing_on"
    echo 0 >"$PMH_TRACE/events/fs_dax/enable"
}
# "COUNT RESULT" per outcome of the PMD faults traced (NOPAGE: mapped with
# a 2 MiB page; NEEDDSYNC: the same, after the metadata sync MAP_SYNC asks
# for; FALLBACK: 4 KiB pages instead).
pmh_pmd_results() {
    grep dax_pmd_fault_done "$PMH_TRACE/trace" | awk '{ print $NF }' | sort | uniq -c
}

# ---- the crash loop (pmhost.sh crash) -----------------------------------
# The report channel is the guest's second serial port, a file on the host
# that the host reads while the guest runs: READY, every line of pcow-io's
# output, DONE, and a VERIFY line per crash state checked.
PMH_REPORT=/dev/ttyS1
pmh_report() { echo "$*"; echo "$*" >"$PMH_REPORT"; }

# pmh_verify SLOT EXPORT INDEX: the crash state on the NVDIMM in slot SLOT
# is mounted (the journal replayed, as at a boot after the power failure),
# the overlay checked, read (pcow-img convert, a read-only open), opened
# read-write (which applies or discards the pending log and records the
# layers), checked and read again; the second read goes to the raw NVDIMM
# EXPORT at INDEX x 16 MiB for the host to compare.  One VERIFY line.
pmh_verify() {
    _tag="VERIFY $1"
    _dev=$(pm_by_slot "$1" fsdax 20) || { pmh_report "$_tag nodev"; return; }
    mkdir -p /v
    if ! mount -t ext4 -o dax "$_dev" /v; then
        pmh_report "$_tag mount-failed"
        return
    fi
    if [ ! -f /v/c/ready ]; then
        pmh_report "$_tag no-cycle"
        umount /v
        return
    fi
    cd /v/c || return
    pcow-img check ovl.pcow >/tmp/check1 2>&1
    _c1=$?
    _msg=$(grep -v -e '^No errors' -e 'allocated,' -e '^Image end' /tmp/check1 | head -n 2 | tr '\n' ' ')
    pcow-img convert -O raw ovl.pcow /tmp/before.raw >/dev/null 2>&1 || _c1="$_c1,convert-failed"
    _c2=-
    if [ "$_c1" = 3 ]; then
        pcow-img check -r leaks ovl.pcow >/tmp/check2 2>&1
        _c2=$?
    fi
    pcow-io -c flush ovl.pcow >/tmp/rw 2>&1
    _c3=$?
    pcow-img check ovl.pcow >/tmp/check3 2>&1
    _c4=$?
    pcow-img convert -O raw ovl.pcow /tmp/after.raw >/dev/null 2>&1 || _c4="$_c4,convert-failed"
    _same=no
    cmp -s /tmp/before.raw /tmp/after.raw && _same=yes
    dd if=/tmp/after.raw of="$2" bs=1M seek=$(($3 * 16)) conv=notrunc,fsync status=none
    rm -f /tmp/before.raw /tmp/after.raw
    cd /
    umount /v
    /sbin/e2fsck -f -n "$_dev" >/tmp/fsck 2>&1
    _c5=$?
    pmh_report "$_tag check=$_c1 repair=$_c2 rw=$_c3 recheck=$_c4 same=$_same fsck=$_c5 msg=$_msg"
}

# pmh_cycle NEW OBS BBS: on the NVDIMM in slot 0 (fsdax ext4 made first
# when NEW is 1), a base image (block size BBS) written through the byte
# API, an overlay on it (block size OBS) written, snapshot s1, then READY
# and the stream of writes and flushes through pcow-io --mmap, its output
# on the report channel.  The host crashes the guest meanwhile.
pmh_cycle() {
    pmh_fs 0 /mnt "$1" >/dev/null || { pmh_report "SETUP-FAILED fs"; return 1; }
    rm -rf /mnt/c
    mkdir /mnt/c && cd /mnt/c || return 1
    if pcow-img create -q -o block_size="$3" base.pcow 16M &&
        pcow-io base.pcow </pm/base.cmds &&
        pcow-img create -q -o block_size="$2" -b base.pcow -F pcow ovl.pcow &&
        pcow-io ovl.pcow </pm/pre.cmds &&
        pcow-img snapshot -c s1 ovl.pcow; then
        sync
        : >ready
        sync
    else
        pmh_report "SETUP-FAILED images"
        return 1
    fi
    pmh_report READY
    pcow-io --mmap ovl.pcow </pm/stream.cmds >"$PMH_REPORT" 2>&1
    pmh_report "DONE rc=$?"
}
