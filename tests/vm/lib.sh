# shellcheck shell=bash disable=SC2034  # VM_* results are for the caller
# Boot harness for the pcow test guest. Source this file from bash:
#
#   source tests/vm/lib.sh
#   vm_boot QEMU GUEST_DIR SCRIPT [QEMU_ARGS...]
#
# QEMU       qemu-system-x86_64 binary (path or name in PATH)
# GUEST_DIR  output of tests/vm/mkguest.sh (vmlinuz, initrd.cpio.gz)
# SCRIPT     shell script run in the guest as /test.sh (busybox sh, with the
#            helpers of guest/pcow-guest.sh already sourced)
# QEMU_ARGS  extra QEMU arguments, typically the memory backend and device:
#              -object memory-backend-file,id=pm,mem-path=IMG,size=256M,share=on
#              -device nvdimm,id=nv,memdev=pm
#
# On success vm_boot prints the guest script's output (the text between the
# markers) on stdout and returns the script's exit code. It returns 124 on a
# timeout and 125 when the guest panicked or the markers are missing; then
# the tail of the console log goes to stderr.
#
# After the call these variables are set:
#   VM_RC        the guest script's exit code ("" when unknown)
#   VM_OUTPUT    the guest script's output
#   VM_SECONDS   wall time of the boot, in seconds
#   VM_LOG       the console log, in VM_WORKDIR, which the next vm_boot
#                call or vm_cleanup removes unless VM_KEEP=1
#
# Settings (environment):
#   VM_TIMEOUT   seconds before the guest is killed (default 120)
#   VM_MEM       -m argument (default 512M,slots=2,maxmem=4G)
#   VM_APPEND    extra kernel command line
#   VM_KEEP=1    keep every work directory
#   VM_QUIET=1   do not print the guest output on stdout
#   VM_FILES     extra files for the per-boot initrd (also vm_shell), as
#                whitespace-separated HOST_FILE=/GUEST/PATH pairs; each file
#                is copied with its mode (e.g. a static program to /bin/x)
#   VM_INITRDS   more gzip'd cpio archives (whitespace-separated paths),
#                put between the base initrd and the per-boot one (also
#                vm_shell); vm_pack makes one of programs and their libraries

VM_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_REPO_DIR=$(cd "$VM_LIB_DIR/../.." && pwd)
VM_GUEST_DIR_DEFAULT=$VM_REPO_DIR/build/guest
# The programs the VM tests and guest benchmarks run: the project's build
# unless the environment names others.
PCOW_QEMU=${PCOW_QEMU:-$VM_REPO_DIR/build/qemu/qemu-system-x86_64}
PCOW_QEMU_IMG=${PCOW_QEMU_IMG:-$VM_REPO_DIR/build/qemu/qemu-img}
PCOW_IMG=${PCOW_IMG:-$VM_REPO_DIR/build/tools/pcow-img}
PCOW_IO=${PCOW_IO:-$VM_REPO_DIR/build/tools/pcow-io}
PCOW_GUEST=${PCOW_GUEST:-$VM_GUEST_DIR_DEFAULT}
VM_WORKDIR=
VM_LOG=
VM_RC=
VM_OUTPUT=
VM_SECONDS=

# Remove the last boot's work directory (console log included) unless
# VM_KEEP=1.
vm_cleanup() {
    if [[ -n $VM_WORKDIR && -d $VM_WORKDIR && ${VM_KEEP:-0} != 1 ]]; then
        rm -rf "$VM_WORKDIR"
    fi
    VM_WORKDIR=
}

# For a test script: exit 77 (skipped), saying why, unless QEMU is there and
# GUEST_DIR holds a guest.
vm_require() { # QEMU GUEST_DIR
    if [[ ! -x $1 ]]; then
        echo "SKIP: no patched QEMU at $1 (make qemu)"
        exit 77
    fi
    if [[ ! -s $2/vmlinuz ]]; then
        echo "SKIP: no test guest in $2 (tests/vm/mkguest.sh)"
        exit 77
    fi
}

# Build the guest unless it is already up to date.
vm_build_guest() { # [GUEST_DIR]
    bash "$VM_LIB_DIR/mkguest.sh" "${1:-$VM_GUEST_DIR_DEFAULT}"
}

# Copy the files listed in VM_FILES (HOST_FILE=/GUEST/PATH ...) into an
# overlay staging directory.
vm_stage_files() { # STAGE
    local spec src dst specs
    read -r -a specs <<<"${VM_FILES:-}"
    for spec in "${specs[@]}"; do
        src=${spec%%=*} dst=${spec#*=}
        if [[ $spec != *=/* || ! -f $src ]]; then
            echo "vm_boot: bad VM_FILES entry '$spec' (want HOST_FILE=/GUEST/PATH)" >&2
            return 1
        fi
        mkdir -p "$1$(dirname "$dst")"
        cp -p "$src" "$1$dst" || return 1
    done
}

# Make the per-boot initrd: the base archive followed by a second gzip'd
# cpio archive holding /test.sh, /lib/pcow-guest.sh and the VM_FILES.
vm_make_initrd() { # GUEST_DIR SCRIPT OUT
    local guest=$1 script=$2 outfile=$3 stage
    stage=$(dirname "$outfile")/overlay
    rm -rf "$stage"
    mkdir -p "$stage/lib"
    vm_stage_files "$stage" || return 1
    install -m 755 "$script" "$stage/test.sh"
    install -m 644 "$VM_LIB_DIR/guest/pcow-guest.sh" "$stage/lib/pcow-guest.sh"
    (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc -R 0:0 --quiet) | gzip -1n >"$outfile.overlay"
    # shellcheck disable=SC2086
    cat "$guest/initrd.cpio.gz" ${VM_INITRDS:-} "$outfile.overlay" >"$outfile"
    rm -rf "$stage" "$outfile.overlay"
}

# Make a gzip'd cpio archive, for VM_INITRDS, of programs and files given as
# HOST_FILE=/GUEST/PATH pairs: ELF files are stripped, and the shared
# libraries they need (ldd) that the base initrd lacks go to the directory
# where it has libc.  The guest's libc is the host's (the base initrd has it,
# for mke2fs), so programs built here run there.
vm_pack() { # GUEST_DIR OUT HOST_FILE=/GUEST/PATH...
    local guest=$1 out=$2 stage spec src dst lib base libdir
    shift 2
    stage=$(mktemp -d "${TMPDIR:-/tmp}/pcow-pack.XXXXXX")
    base=$(gzip -dc "$guest/initrd.cpio.gz" | cpio -t --quiet 2>/dev/null) || {
        rm -rf "$stage"
        echo "vm_pack: cannot read $guest/initrd.cpio.gz" >&2
        return 1
    }
    # The libraries go where the base initrd has libc.
    libdir=$(sed -n 's,/libc\.so\.6$,,p' <<<"$base" | head -n 1)
    for spec in "$@"; do
        src=${spec%%=*} dst=${spec#*=}
        if [[ $spec != *=/* || ! -f $src ]]; then
            echo "vm_pack: bad entry '$spec' (want HOST_FILE=/GUEST/PATH)" >&2
            rm -rf "$stage"
            return 1
        fi
        mkdir -p "$stage$(dirname "$dst")"
        cp -pL "$src" "$stage$dst"
        if [[ $(head -c 4 "$src" | od -An -c | tr -d ' ') == 177ELF ]]; then
            strip -p "$stage$dst" 2>/dev/null || true
            while read -r lib; do
                [[ -n $lib ]] || continue
                grep -qxF "${lib#/}" <<<"$base" && continue
                # (a build tree's library too, found there through the rpath)
                dst=/$libdir/$(basename "$lib")
                [[ -e $stage$dst ]] && continue
                mkdir -p "$stage/$libdir"
                cp -L "$lib" "$stage$dst"
                strip -p --strip-unneeded "$stage$dst" 2>/dev/null || true
            done < <(ldd "$src" 2>/dev/null | sed -n 's,.*=> \(/[^ ]*\) .*,\1,p; s,^[[:space:]]*\(/[^ ]*\) (.*,\1,p')
        fi
    done
    (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc -R 0:0 --quiet) | gzip -6n >"$out"
    local rc=$?
    rm -rf "$stage"
    return "$rc"
}

# Boot the guest with an interactive shell on the terminal (no test script,
# no timeout); the helpers of pcow-guest.sh are loaded in the shell. Leave
# with `exit` (the guest powers off) or Ctrl-A x.
vm_shell() { # QEMU GUEST_DIR [QEMU_ARGS...]
    if (($# < 2)); then
        echo "usage: vm_shell QEMU GUEST_DIR [QEMU_ARGS...]" >&2
        return 2
    fi
    local qemu=$1 guest=$2 stage rc=0
    shift 2
    vm_cleanup
    VM_WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/pcow-vm.XXXXXX")
    stage=$VM_WORKDIR/overlay
    mkdir -p "$stage/lib"
    vm_stage_files "$stage" || { vm_cleanup; return 2; }
    install -m 644 "$VM_LIB_DIR/guest/pcow-guest.sh" "$stage/lib/pcow-guest.sh"
    (cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
        cpio --null -o -H newc -R 0:0 --quiet) | gzip -1n >"$VM_WORKDIR/overlay.gz"
    # shellcheck disable=SC2086
    cat "$guest/initrd.cpio.gz" ${VM_INITRDS:-} "$VM_WORKDIR/overlay.gz" >"$VM_WORKDIR/initrd.gz"
    "$qemu" \
        -accel tcg -cpu max -m "${VM_MEM:-512M,slots=2,maxmem=4G}" \
        -machine pc,nvdimm=on -nographic -no-reboot -nic none \
        -L /usr/share/seabios -L /usr/share/qemu -L /usr/lib/ipxe/qemu \
        -kernel "$guest/vmlinuz" -initrd "$VM_WORKDIR/initrd.gz" \
        -append "console=ttyS0 panic=-1 quiet ${VM_APPEND:-}" \
        "$@" || rc=$?
    vm_cleanup
    return "$rc"
}

vm_boot() { # QEMU GUEST_DIR SCRIPT [QEMU_ARGS...]
    if (($# < 3)); then
        echo "usage: vm_boot QEMU GUEST_DIR SCRIPT [QEMU_ARGS...]" >&2
        return 2
    fi
    local qemu=$1 guest=$2 script=$3
    shift 3
    local timeout=${VM_TIMEOUT:-120} t0 t1 qrc=0 log_clean status

    VM_RC='' VM_OUTPUT='' VM_SECONDS='' VM_LOG=''
    if [[ ! -s $guest/vmlinuz || ! -s $guest/initrd.cpio.gz ]]; then
        echo "vm_boot: no guest in $guest (run tests/vm/mkguest.sh)" >&2
        return 2
    fi
    if [[ ! -f $script ]]; then
        echo "vm_boot: no script $script" >&2
        return 2
    fi
    vm_cleanup
    VM_WORKDIR=$(mktemp -d "${TMPDIR:-/tmp}/pcow-vm.XXXXXX")
    VM_LOG=$VM_WORKDIR/console.log
    vm_make_initrd "$guest" "$script" "$VM_WORKDIR/initrd.gz" || return 2

    t0=$(date +%s.%N)
    timeout --kill-after=5 "$timeout" "$qemu" \
        -accel tcg -cpu max -m "${VM_MEM:-512M,slots=2,maxmem=4G}" \
        -machine pc,nvdimm=on -nographic -no-reboot -nic none \
        -L /usr/share/seabios -L /usr/share/qemu -L /usr/lib/ipxe/qemu \
        -kernel "$guest/vmlinuz" -initrd "$VM_WORKDIR/initrd.gz" \
        -append "console=ttyS0 panic=-1 quiet ${VM_APPEND:-}" \
        "$@" </dev/null >"$VM_LOG" 2>&1 || qrc=$?
    t1=$(date +%s.%N)
    VM_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

    log_clean=$VM_WORKDIR/console.txt
    tr -d '\r' <"$VM_LOG" >"$log_clean"
    status=$(awk '/^=== PCOW-GUEST-END rc=[0-9]+ ===$/ { s = $0 } END { print s }' "$log_clean")
    if [[ -n $status ]] && grep -q '=== PCOW-GUEST-BEGIN ===$' "$log_clean"; then
        VM_RC=${status#=== PCOW-GUEST-END rc=}
        VM_RC=${VM_RC% ===}
        VM_OUTPUT=$(awk '
            /=== PCOW-GUEST-BEGIN ===$/ { buf = ""; on = 1; next }
            /^=== PCOW-GUEST-END rc=[0-9]+ ===$/ { out = buf; on = 0; next }
            on { buf = buf $0 "\n" }
            END { printf "%s", out }' "$log_clean")
    fi

    local why=
    if ((qrc == 124 || qrc == 137)); then
        why="timeout after ${timeout}s"
    elif grep -q 'Kernel panic' "$log_clean"; then
        why="guest kernel panic"
    elif [[ -z $VM_RC ]]; then
        why="no end marker in the console log (qemu exit code $qrc)"
    fi
    if [[ -n $why ]]; then
        {
            echo "vm_boot: $why; console log: $VM_LOG"
            echo "----- console log tail -----"
            tail -n 40 "$log_clean"
            echo "----------------------------"
        } >&2
        [[ $why == timeout* ]] && return 124
        return 125
    fi
    if [[ ${VM_QUIET:-0} != 1 && -n $VM_OUTPUT ]]; then
        printf '%s\n' "$VM_OUTPUT"
    fi
    if ((qrc != 0)); then
        echo "vm_boot: warning: qemu exited with $qrc" >&2
    fi
    return "$VM_RC"
}
