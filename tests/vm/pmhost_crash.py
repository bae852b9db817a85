#!/usr/bin/python3
"""Host side of the DAX crash loop (tests/vm/pmhost.sh, scenario crash).

  pmhost_crash.py plan DIR SEED CYCLE NWRITES
      Makes the plan of one cycle in DIR: plan.json (block sizes, the
      writes and what the overlay reads before the stream) and the guest's
      command files base.cmds, pre.cmds (pcow-io, byte API) and stream.cmds
      (pcow-io --mmap: writes with pattern 1 + k % 150, flushes between).
  pmhost_crash.py control SOCK PIDFILE ACKLOG MAIN OUTDIR COPIES SEED
      Runs beside a boot that works through a plan.  Waits for READY on the
      report channel (ACKLOG, the guest's second serial port), then draws
      COPIES + 1 crash points as numbers of acknowledged writes ("wrote"
      lines of pcow-io after READY).  At each of the first COPIES it stops
      the VM (QMP), copies the NVDIMM's backing file MAIN (the persistent
      memory as a power failure at that instant leaves it: under TCG a
      retired store is in the file, there is no cache to lose), counts the
      acknowledgements and lets the VM go on; at the last it kills QEMU
      with SIGKILL.  Writes OUTDIR/points.json: [{"file", "acked"}...].
  pmhost_crash.py verify DIR RAW ACKED
      RAW is the overlay after the crash and the recovery, as pcow-img
      convert reads it.  Every acknowledged write must be there; every
      byte must read as the acknowledged writes and the content before the
      stream leave it, except the bytes of writes the guest had done
      beyond the last acknowledgement the host saw: those writes form a
      prefix of the rest of the stream, all complete but the last, whose
      bytes may each be old or new.  Prints how far past the
      acknowledgements the image is.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmp  # noqa: E402  (tests/vm/qmp.py)

MiB = 1024 * 1024
SIZE = 16 * MiB
LENS = [1, 512, 4096, 8192, 65536, 100 * 1024, 300 * 1024]


def plan(d, seed, cycle, nwrites):
    rnd = random.Random("%s-%s" % (seed, cycle))
    obs = [65536, 4096, 2 * MiB][cycle % 3]
    bbs = rnd.choice([4096, 65536])
    base = []
    for k in range(SIZE // MiB):
        if rnd.random() < 0.6:
            length = rnd.choice([64 * 1024, 256 * 1024, 512 * 1024, MiB])
            off = k * MiB + rnd.randrange(0, MiB - length + 1, 4096)
            base.append((0xC0 + k, off, length))
    pre = []
    for i in range(6):
        length = rnd.choice([4096, 65536, 200 * 1024, MiB])
        off = rnd.randrange(0, SIZE - length + 1, 512)
        pre.append((0xE0 + i, off, length))
    empty = [k for k in range(SIZE // MiB) if not any(o // MiB == k for _, o, _ in base)]
    stream = []
    for k in range(nwrites):
        kind = rnd.choice(["base", "snap", "alloc", "any"])
        length = rnd.choice(LENS)
        if kind == "base" and base:
            _, o, n = rnd.choice(base)
            off = rnd.randrange(o, o + n)
        elif kind == "snap":
            _, o, n = rnd.choice(pre)
            off = rnd.randrange(o, o + n)
        elif kind == "alloc" and empty:
            off = rnd.choice(empty) * MiB + rnd.randrange(0, MiB)
        else:
            off = rnd.randrange(0, SIZE)
        length = min(length, SIZE - off)
        stream.append((1 + k % 150, off, length, rnd.random() < 0.15))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "plan.json"), "w") as f:
        json.dump({"obs": obs, "bbs": bbs, "base": base, "pre": pre,
                   "stream": stream, "size": SIZE}, f)
    for name, ws in (("base", base), ("pre", pre)):
        with open(os.path.join(d, name + ".cmds"), "w") as f:
            for p, o, n in ws:
                f.write("write -q -P %d %d %d\n" % (p, o, n))
    with open(os.path.join(d, "stream.cmds"), "w") as f:
        for p, o, n, flush in stream:
            f.write("write -P %d %d %d\n" % (p, o, n))
            if flush:
                f.write("flush\n")


def before_stream(pl):
    img = bytearray(pl["size"])
    for p, o, n in pl["base"] + pl["pre"]:
        img[o:o + n] = bytes([p]) * n
    return img


def verify(d, raw_path, acked):
    with open(os.path.join(d, "plan.json")) as f:
        pl = json.load(f)
    with open(raw_path, "rb") as f:
        raw = f.read(pl["size"])
    if len(raw) != pl["size"]:
        print("the exported image is %d bytes, not %d" % (len(raw), pl["size"]))
        return 1
    stream = pl["stream"]
    state = before_stream(pl)
    for p, o, n, _ in stream[:acked]:
        state[o:o + n] = bytes([p]) * n
    first_state = bytes(state)
    for m in range(len(stream) - acked + 1):
        if m:
            p, o, n, _ = stream[acked + m - 1]
            state[o:o + n] = bytes([p]) * n
        if acked + m == len(stream):
            if raw == state:
                print("ok: %d acknowledged, %d more done" % (acked, m))
                return 0
            break
        p, o, n, _ = stream[acked + m]
        if raw[:o] != state[:o] or raw[o + n:] != state[o + n:]:
            continue
        seg, old = raw[o:o + n], state[o:o + n]
        if all(b == a or b == p for a, b in zip(old, seg)):
            torn = "" if seg == old or seg == bytes([p]) * n else ", that one torn"
            print("ok: %d acknowledged, %d more done, the next in flight%s" % (acked, m, torn))
            return 0
    # Explain with the acknowledged state: the first byte that differs.
    for i in range(len(raw)):
        if raw[i] != first_state[i]:
            who = "no write before the crash"
            for k, (p, o, n, _) in enumerate(stream[:acked]):
                if o <= i < o + n:
                    who = "acknowledged write %d (pattern %d at %d, %d bytes)" % (k, p, o, n)
            later = [k for k, (p, o, n, _) in enumerate(stream) if k >= acked and o <= i < o + n]
            print("byte %d reads %d, %d expected (%s); %d writes acknowledged; "
                  "unacknowledged writes there: %s" % (i, raw[i], first_state[i], who,
                                                       acked, later[:5]))
            return 1
    print("no prefix of the unacknowledged writes explains the image")
    return 1


def qmp_call(mon, command):
    reply = mon.call(command)
    if "error" in reply:
        raise RuntimeError("%s: %s" % (command, reply["error"]))
    return reply["return"]


def report(path):
    """(READY seen, acknowledged writes after it, DONE seen)"""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1").replace("\r", "")
    except OSError:
        return False, 0, False
    if "\nREADY\n" not in "\n" + text:
        return False, 0, False
    after = text.split("READY\n", 1)[1]
    lines = after.split("\n")
    # A line is complete only with its newline.
    acked = sum(1 for ln in lines[:-1] if ln.startswith("wrote "))
    return True, acked, "DONE" in after


def alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def control(sock, pidfile, acklog, main, outdir, copies, seed):
    rnd = random.Random(seed)
    out = {"points": [], "ready": False}
    mon = qmp.QMP(sock, 120)
    pid = None
    deadline = time.time() + 600
    while pid is None:
        try:
            with open(pidfile) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            time.sleep(0.05)
    while time.time() < deadline:
        ready, _, _ = report(acklog)
        if ready or not alive(pid):
            break
        time.sleep(0.02)
    ready, _, _ = report(acklog)
    if not ready:
        out["why"] = "no READY from the guest"
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    else:
        out["ready"] = True
        n = int(open(os.path.join(outdir, "nwrites")).read())
        targets = sorted(rnd.randrange(0, n + 1) for _ in range(copies + 1))
        t0 = time.time()
        for j, target in enumerate(targets):
            while alive(pid):
                _, acked, done = report(acklog)
                if acked >= target or done:
                    break
                time.sleep(0.01 + rnd.random() * 0.02)
            if not alive(pid):
                out["why"] = "QEMU ended before crash point %d" % j
                break
            if j < copies:
                qmp_call(mon, "stop")
                _, acked, _ = report(acklog)
                dst = os.path.join(outdir, "copy%d.raw" % j)
                subprocess.run(["cp", "--sparse=always", main, dst], check=True)
                qmp_call(mon, "cont")
                out["points"].append({"file": dst, "acked": acked,
                                      "at": round(time.time() - t0, 2)})
            else:
                os.kill(pid, signal.SIGKILL)
                while alive(pid):
                    time.sleep(0.01)
                _, acked, done = report(acklog)
                out["points"].append({"file": main, "acked": acked, "killed": True,
                                      "done": done, "at": round(time.time() - t0, 2)})
    with open(os.path.join(outdir, "points.json"), "w") as f:
        json.dump(out, f)
    return 0


def main(argv):
    cmd = argv[1]
    if cmd == "plan":
        plan(argv[2], argv[3], int(argv[4]), int(argv[5]))
        with open(os.path.join(argv[2], "nwrites"), "w") as f:
            f.write(argv[5])
        with open(os.path.join(argv[2], "plan.json")) as f:
            pl = json.load(f)
        print(pl["obs"], pl["bbs"])
        return 0
    if cmd == "control":
        return control(argv[2], argv[3], argv[4], argv[5], argv[6], int(argv[7]), argv[8])
    if cmd == "verify":
        return verify(argv[2], argv[3], int(argv[4]))
    print("unknown command " + cmd, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
