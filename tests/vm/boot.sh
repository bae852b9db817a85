#!/usr/bin/env bash
# Boot the pcow test guest once and run a script in it.
#
# Usage: tests/vm/boot.sh QEMU GUEST_DIR SCRIPT [QEMU_ARGS...]
#
# Prints the guest script's output and exits with its exit code (124 on a
# timeout, 125 on a panic or a missing end marker). See lib.sh for the
# settings (VM_TIMEOUT, VM_MEM, VM_APPEND, VM_KEEP) and README.md.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

if (($# < 3)); then
    sed -n '2,9s/^# \{0,1\}//p' "$0" >&2
    exit 2
fi
rc=0
vm_boot "$@" || rc=$?
echo "boot.sh: guest rc=${VM_RC:-none}, ${VM_SECONDS:-?} s, console log $VM_LOG" >&2
exit "$rc"
