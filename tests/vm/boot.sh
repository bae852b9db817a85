#!/usr/bin/env bash
# Boot the pcow test guest once and run a script in it.
#
# Usage: tests/vm/boot.sh QEMU GUEST_DIR SCRIPT [QEMU_ARGS...]
#        tests/vm/boot.sh --shell QEMU GUEST_DIR [QEMU_ARGS...]
#
# Prints the guest script's output and exits with its exit code (124 on a
# timeout, 125 on a panic or a missing end marker). --shell gives an
# interactive guest shell instead. See lib.sh for the settings (VM_TIMEOUT,
# VM_MEM, VM_APPEND, VM_KEEP) and README.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

if [[ ${1:-} == --shell ]]; then
    shift
    (($# >= 2)) || usage
    vm_shell "$@"
    exit
fi
(($# >= 3)) || usage
rc=0
vm_boot "$@" || rc=$?
if ((rc == 124 || rc == 125)) || [[ ${VM_KEEP:-0} == 1 ]]; then
    echo "boot.sh: guest rc=${VM_RC:-none}, ${VM_SECONDS:-?} s, console log kept in $VM_LOG" >&2
else
    echo "boot.sh: guest rc=$VM_RC, $VM_SECONDS s" >&2
    vm_cleanup
fi
exit "$rc"
