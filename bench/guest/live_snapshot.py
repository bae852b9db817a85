#!/usr/bin/python3
"""Host side of bench/guest/live-snapshot.sh: one boot.

    live_snapshot.py QMP_SOCKET CTL_SOCKET ROUNDS OUT.jsonl [QEMU_PID]

Waits until the guest has written its data (a line "WRITTEN ..." on the
control serial port), then, with the guest idle:
  - round 0: pcow-snapshot-create of the image whose active layer holds
    the data (the first snapshot);
  - rounds 1..ROUNDS: pcow-snapshot-create (the data now lies in an older
    layer) and, in the same round, blockdev-snapshot-internal-sync of the
    qcow2 disk "qdisk" followed by blockdev-snapshot-delete-internal-sync,
    so that every qcow2 snapshot is taken with the same data allocated; the
    two alternate which goes first;
and the same rounds again (ROUNDS+1..2*ROUNDS) while the guest writes
without a pause (it starts its writer on "busy").
Writes one JSON line per measurement: {"kind": ..., "phase": "idle" or
"busy", "round": N, ...} with pcow's reply (flush-ns, stop-ns, switch-ns,
pause-ns) and, for both, the wall time of the QMP command ("wall-ns").
Then tells the guest to stop.  With QEMU_PID, the first snapshot is also
taken under strace -T of QEMU's main thread, and the record "strace" gives
the calls QEMU's main thread made after the flush that precedes the
pause, with their time (strace itself adds some 10-30 us per call).
"""
import json
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "tests", "vm"))
from qmp import QMP  # noqa: E402
from snapdrive import Serial  # noqa: E402


def timed(q, command, **args):
    t = time.perf_counter_ns()
    r = q.cmd(command, **args)
    return r, time.perf_counter_ns() - t


def strace_start(pid, path):
    p = subprocess.Popen(["strace", "-T", "-p", str(pid), "-o", path,
                          "-e", "trace=!ppoll,read,write,recvmsg,sendmsg,"
                          "futex,rt_sigprocmask"],
                         stderr=subprocess.DEVNULL)
    time.sleep(1)
    return p


def strace_summary(path):
    """Calls and milliseconds per system call after the flush that comes
    before the pause (its fdatasync is the trace's first)."""
    calls = {}
    flushed = False
    for line in open(path):
        m = re.match(r"(\w+)\(.*<([0-9.]+)>$", line.strip())
        if m and not flushed:
            flushed = m.group(1) == "fdatasync"
        elif m:
            n, t = calls.get(m.group(1), (0, 0.0))
            calls[m.group(1)] = (n + 1, t + float(m.group(2)))
    return {k: {"calls": n, "ms": round(t * 1e3, 3)}
            for k, (n, t) in calls.items()}


def main():
    sock, ctl, rounds, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        sys.argv[4]
    pid = int(sys.argv[5]) if len(sys.argv) > 5 else None
    q = QMP(sock, 60)
    g = Serial(ctl)
    f = open(out, "a")

    def emit(rec):
        f.write(json.dumps(rec) + "\n")
        f.flush()

    emit({"kind": "guest", "line": g.expect("WRITTEN", 3600)})
    time.sleep(1)
    if pid:
        tracer = strace_start(pid, out + ".strace")
    r, wall = timed(q, "pcow-snapshot-create", memdev="pm", name="first")
    emit(dict(r, kind="pcow-first", phase="idle", round=0,
              **{"wall-ns": wall}))
    if pid:
        tracer.terminate()
        tracer.wait()
        emit({"kind": "strace", "calls": strace_summary(out + ".strace")})
    emit({"kind": "pcow-info", "info": q.cmd("query-pcow", memdev="pm")})
    for i in range(1, 2 * rounds + 1):
        phase = "idle" if i <= rounds else "busy"
        if i == rounds + 1:
            g.send("busy")
            g.expect("WRITER")
        time.sleep(0.5)
        order = ["pcow", "qcow2"] if i % 2 else ["qcow2", "pcow"]
        for which in order:
            if which == "pcow":
                r, wall = timed(q, "pcow-snapshot-create", memdev="pm",
                                name="r%d" % i)
                emit(dict(r, kind="pcow", phase=phase, round=i,
                          **{"wall-ns": wall}))
            else:
                _, wall = timed(q, "blockdev-snapshot-internal-sync",
                                device="qdisk", name="r%d" % i)
                emit({"kind": "qcow2", "phase": phase, "round": i,
                      "wall-ns": wall})
                q.cmd("blockdev-snapshot-delete-internal-sync",
                      device="qdisk", name="r%d" % i)
    emit({"kind": "pcow-snapshots",
          "count": len(q.cmd("query-pcow-snapshots", memdev="pm"))})
    g.send("stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
