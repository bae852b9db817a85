#!/usr/bin/env python3
"""Host side of tests/vm/libvirt.sh: drives a running domain's guest
through its control serial port and takes, reverts, lists and deletes a
snapshot with virsh.

    libvirt_drive.py VIRSH_COMMAND DOMAIN CTL_SOCKET

VIRSH_COMMAND is the virsh command line (one shell word list, e.g.
"/path/virsh -q -c qemu:///system").  Prints one "ok: ..." or
"FAIL: ..." line per step; exits 1 after the first failure.
"""
import shlex
import subprocess
import sys
import time

from snapdrive import Serial


def connect(ctl):
    """The socket appears when QEMU starts; the guest may still be booting."""
    for _ in range(100):
        try:
            return Serial(ctl)
        except OSError:
            time.sleep(0.1)
    print("FAIL: no control port at " + ctl, flush=True)
    sys.exit(1)


def main():
    virsh = shlex.split(sys.argv[1])
    dom, ctl = sys.argv[2], sys.argv[3]

    def run(*args):
        p = subprocess.run(virsh + list(args), capture_output=True, text=True)
        if p.returncode != 0:
            fail("virsh %s: %s" % (" ".join(args), (p.stderr or p.stdout).strip()))
        return p.stdout

    def fail(what):
        print("FAIL: " + what, flush=True)
        sys.exit(1)

    def ok(what):
        print("ok: " + what, flush=True)

    g = connect(ctl)
    g.expect("PCOW-READY", 120)
    g.send("go")
    g.expect("PCOW-A")
    ok("the guest wrote A")
    t = time.time()
    run("snapshot-create-as", dom, "s1", "--description", "after A")
    ok("snapshot-create-as s1 (%.1f s)" % (time.time() - t))
    names = run("snapshot-list", dom, "--name").split()
    if names != ["s1"]:
        fail("snapshot-list: %r, not ['s1']" % names)
    ok("snapshot-list shows s1")
    g.send("1")
    g.expect("PCOW-B")
    ok("the guest wrote B over A")
    t = time.time()
    run("snapshot-revert", dom, "s1")
    ok("snapshot-revert s1 (%.1f s)" % (time.time() - t))
    state = run("domstate", dom).strip()
    if state != "running":
        fail("after the revert the domain is %r" % state)
    # libvirt reverts a running domain by starting a new QEMU that loads
    # the snapshot: its control port is a new socket.
    g = connect(ctl)
    g.send("2")
    g.expect("PCOW-DONE")
    ok("after the revert the guest read A (not B) and wrote C")
    t = time.time()
    run("snapshot-delete", dom, "s1")
    ok("snapshot-delete s1 (%.1f s)" % (time.time() - t))
    names = run("snapshot-list", dom, "--name").split()
    if names:
        fail("snapshot-list after the deletion: %r" % names)
    ok("snapshot-list is empty")


if __name__ == "__main__":
    main()
