#!/usr/bin/python3
"""Host side of the VM scenarios with snapshots of a running guest (e2e.sh).

    snapdrive.py live QMP_SOCKET MEMDEV SECONDS OUT.json
        While the guest runs seqwrite: waits until it writes, takes the
        pcow snapshot live1, lets the guest write for SECONDS, takes live2,
        then deletes live1; records the replies, the snapshot list and
        query-pcow before and after the deletion.

    snapdrive.py savevm QMP_SOCKET CTL_SOCKET VMSTATE_NODE OUT.json
        Drives the guest script of e2e.sh's savevm scenario through a
        serial port (CTL_SOCKET): snapshot-save s0, savevm s1 (twice),
        more writes, snapshot-save s2, snapshot-load s1, snapshot-delete s0
        and s2, delvm s1.

Both write what they saw to OUT.json for e2e.sh to check, and exit 1 (with
the reason on stderr) when a step fails.
"""
import json
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from qmp import QMP, connect_unix  # noqa: E402


def live(sock, memdev, seconds, out):
    q = QMP(sock, 60)
    r = {}
    deadline = time.time() + 60
    while q.cmd("query-pcow", memdev=memdev)["map"]["blocks-allocated"] == 0:
        if time.time() > deadline:
            raise SystemExit("the guest did not start writing")
        time.sleep(0.1)
    time.sleep(0.5)
    r["create1"] = q.cmd("pcow-snapshot-create", memdev=memdev, name="live1")
    time.sleep(seconds)
    r["create2"] = q.cmd("pcow-snapshot-create", memdev=memdev, name="live2")
    r["snapshots"] = q.cmd("query-pcow-snapshots", memdev=memdev)
    r["before"] = q.cmd("query-pcow", memdev=memdev)
    r["delete"] = q.cmd("pcow-snapshot-delete", memdev=memdev, name="live1")
    r["after"] = q.cmd("query-pcow", memdev=memdev)
    r["snapshots_after"] = q.cmd("query-pcow-snapshots", memdev=memdev)
    r["hmp_info"] = q.hmp("info pcow " + memdev)
    try:
        q.cmd("pcow-snapshot-create", memdev=memdev, name="live2")
        r["duplicate_error"] = None
    except Exception as e:  # the expected failure
        r["duplicate_error"] = str(e)
    json.dump(r, open(out, "w"), indent=1)


class Serial:
    """The guest's control serial port (a QEMU chardev socket)."""

    def __init__(self, path):
        self.s = connect_unix(path)
        self.buf = b""

    def expect(self, word, seconds=90):
        """Waits for a line holding word; fails on a line with FAIL."""
        self.s.settimeout(seconds)
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                text = line.decode(errors="replace").strip()
                if "FAIL" in text:
                    raise SystemExit("guest: " + text)
                if word in text:
                    return text
            data = self.s.recv(4096)
            if not data:
                raise SystemExit("serial port closed waiting for " + word)
            self.buf += data

    def send(self, word):
        self.s.sendall((word + "\n").encode())


def vmstate_sizes(q, node):
    for n in q.cmd("query-named-block-nodes"):
        if n.get("node-name") == node:
            return {s["name"]: s["vm-state-size"]
                    for s in n["image"].get("snapshots", [])}
    return {}


def savevm(sock, ctl, node, out):
    q = QMP(sock, 60)
    g = Serial(ctl)
    r = {}
    g.expect("PCOW-READY")
    q.run_job("snapshot-save", **{"job-id": "save0", "tag": "s0",
                                  "vmstate": node, "devices": [node]})
    g.send("0")
    g.expect("PCOW-A")
    t = time.time()
    r["savevm_output"] = q.hmp("savevm s1")
    r["savevm_s"] = time.time() - t
    # HMP savevm overwrites: the pcow snapshot s1 is replaced, not doubled.
    r["savevm_output"] += q.hmp("savevm s1")
    r["pcow_after_savevm"] = q.cmd("query-pcow-snapshots", memdev="pm")
    g.send("1")
    g.expect("PCOW-B")
    # A second snapshot through the QMP job, taken after B.
    q.run_job("snapshot-save", **{"job-id": "save2", "tag": "s2",
                                  "vmstate": node, "devices": [node]})
    r["vmstate_sizes"] = vmstate_sizes(q, node)
    t = time.time()
    q.run_job("snapshot-load", **{"job-id": "load1", "tag": "s1",
                                  "vmstate": node, "devices": [node]})
    r["loadvm_s"] = time.time() - t
    r["status_after_loadvm"] = q.cmd("query-status")["status"]
    g.send("2")
    r["guest_done"] = g.expect("PCOW-DONE")
    for tag in ("s0", "s2"):
        q.run_job("snapshot-delete", **{"job-id": "del" + tag, "tag": tag,
                                        "devices": [node]})
    r["delvm_output"] = q.hmp("delvm s1")
    r["pcow_after_delvm"] = q.cmd("query-pcow-snapshots", memdev="pm")
    g.send("3")
    json.dump(r, open(out, "w"), indent=1)


def main():
    op = sys.argv[1]
    if op == "live":
        live(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    elif op == "savevm":
        savevm(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        raise SystemExit("unknown operation " + op)
    return 0


if __name__ == "__main__":
    sys.exit(main())
