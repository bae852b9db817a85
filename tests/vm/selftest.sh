#!/usr/bin/env bash
# Check the test guest and the harness against a QEMU with plain (raw)
# memory-backend-file backends: byte patterns on a raw NVDIMM namespace land
# in the backing file; fsdax rebind + ext4 -o dax + fsync survive a power-off
# and a second boot; virtio-pmem shows up as /dev/pmem0 with DAX and its
# writes land in the backing file.
#
# Usage: tests/vm/selftest.sh [QEMU]     (default: qemu-system-x86_64)
# Builds the guest in build/guest first if needed (GUEST_DIR overrides).
# Ends with "N passed, N failed"; exits 77 when QEMU is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

qemu=${1:-qemu-system-x86_64}
guest=${GUEST_DIR:-$VM_GUEST_DIR_DEFAULT}
if ! command -v "$qemu" >/dev/null; then
    echo "selftest: skipped: no $qemu (Debian's is in qemu-system-x86)" >&2
    exit 77
fi
vm_build_guest "$guest"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pcow-vm-selftest.XXXXXX")
trap 'vm_cleanup; rm -rf "$tmp"' EXIT
passed=0 failed=0
summary=()

host_read() { # IMG OFFSET LEN
    dd if="$1" bs=65536 skip="$2" count="$3" iflag=skip_bytes,count_bytes status=none
}
pattern() { # LEN TEXT
    yes "$2" | tr -d '\n' | head -c "$1" || true
}
host_check() { # IMG OFFSET DATA
    local got
    got=$(host_read "$1" "$2" "${#3}")
    [[ $got == "$3" ]] || { echo "host: $1@$2: expected '$3', got '$got'" >&2; return 1; }
}
host_check_fill() { # IMG OFFSET LEN TEXT
    [[ "$(host_read "$1" "$2" "$3" | sha256sum)" == "$(pattern "$3" "$4" | sha256sum)" ]] ||
        { echo "host: $1@$2+$3: pattern mismatch" >&2; return 1; }
}

# run NAME HOSTCHECK SCRIPT QEMU_ARGS...: one boot plus an optional host check.
run() {
    local name=$1 check=$2 script=$3 rc=0
    shift 3
    echo "== $name"
    VM_QUIET=1 vm_boot "$qemu" "$guest" "$here/scripts/$script" "$@" || rc=$?
    [[ -z $VM_OUTPUT ]] || printf '%s\n' "$VM_OUTPUT" | sed 's/^/   /'
    if ((rc == 0)) && [[ -n $check ]]; then
        "$check" || rc=1
    fi
    if ((rc == 0)); then
        passed=$((passed + 1))
        summary+=("PASS $name (${VM_SECONDS:-?} s)")
    else
        failed=$((failed + 1))
        summary+=("FAIL $name (rc=$rc)")
    fi
}

nvdimm_args() { # IMG
    echo "-object memory-backend-file,id=pm,mem-path=$1,size=256M,share=on -device nvdimm,id=nv,memdev=pm"
}

# 1. raw NVDIMM byte patterns.
img=$tmp/raw.img
truncate -s 256M "$img"
check_raw() {
    host_check "$img" 0 PCOW-RAW-AT-0 &&
        host_check "$img" 1048699 PCOW-RAW-AT-1M+123 &&
        host_check_fill "$img" 67108864 65536 pcow-fill-64M- &&
        host_check "$img" 268431360 PCOW-RAW-LAST-4K
}
# shellcheck disable=SC2046
run nvdimm-raw-patterns check_raw raw-pattern.sh $(nvdimm_args "$img")

# 2. fsdax + ext4 -o dax, across a power-off.
img=$tmp/fsdax.img
truncate -s 256M "$img"
check_pfn() {
    [[ "$(host_read "$img" 4096 15)" == NVDIMM_PFN_INFO ]] ||
        { echo "host: no pfn info block at 4 KiB" >&2; return 1; }
    grep -q PCOW-DAX-FILE-CONTENT "$img" ||
        { echo "host: file content not in the image" >&2; return 1; }
}
# shellcheck disable=SC2046
run nvdimm-fsdax-write check_pfn fsdax-write.sh $(nvdimm_args "$img")
# shellcheck disable=SC2046
run nvdimm-fsdax-reboot-read "" fsdax-read.sh $(nvdimm_args "$img")

# 3. virtio-pmem.
img=$tmp/virtio.img
truncate -s 256M "$img"
check_virtio() {
    host_check "$img" 201326592 PCOW-VIRTIO-AT-192M &&
        host_check_fill "$img" 268369920 65536 pcow-virtio-fill- &&
        grep -q PCOW-VIRTIO-FILE-CONTENT "$img"
}
run virtio-pmem check_virtio virtio-pmem.sh \
    -object "memory-backend-file,id=pm,mem-path=$img,size=256M,share=on" \
    -device virtio-pmem-pci,memdev=pm,id=vp

printf '%s\n' "${summary[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
