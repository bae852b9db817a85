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

    def timed(*args):
        t = time.time()
        run(*args)
        ok("%s %s (%.1f s)" % (args[0], args[2], time.time() - t))

    def snapshots_are(want):
        names = run("snapshot-list", dom, "--name").split()
        if names != want:
            fail("snapshot-list: %r, not %r" % (names, want))

    g = connect(ctl)
    g.expect("PCOW-READY", 120)
    g.send("go")
    g.expect("PCOW-A")
    ok("the guest wrote A")
    timed("snapshot-create-as", dom, "s1", "--description", "after A")
    snapshots_are(["s1"])
    ok("snapshot-list shows s1")
    g.send("1")
    g.expect("PCOW-B")
    ok("the guest wrote B over A")
    timed("snapshot-revert", dom, "s1")
    state = run("domstate", dom).strip()
    if state != "running":
        fail("after the revert the domain is %r" % state)
    # libvirt reverts a running domain by starting a new QEMU that loads
    # the snapshot: its control port is a new socket.
    g = connect(ctl)
    g.send("2")
    g.expect("PCOW-DONE")
    ok("after the revert the guest read A (not B) and wrote C")
    timed("snapshot-delete", dom, "s1")
    snapshots_are([])
    ok("snapshot-list is empty")


if __name__ == "__main__":
    main()
