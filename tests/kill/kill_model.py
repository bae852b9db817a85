#!/usr/bin/python3
"""Helpers of kill_loop.sh: base data, write plans, exact copies, checks.

  kill_model.py mkbase FILE SIZE SEED
      A sparse raw file: random bytes in [k MiB, k MiB + 320 KiB) for every
      even k, a zero-filled data extent at 3 MiB, holes elsewhere.
  kill_model.py plan FILE SIZE SEED
      Prints pcow-io write commands, one per line: write k goes to its own
      256 KiB slot (so writes never overlap), with a random offset and
      length inside it, and pattern 1 + k % 255 (the index is in the data).
  kill_model.py copy SRC DST
      Copies a file extent by extent (data stays data, holes stay holes,
      zero-filled data included: pcow ownership depends on it).
  kill_model.py killat US CMD [ARGS...]
      Runs CMD and sends it SIGKILL US microseconds after starting it (when
      it is still running; counted from before the fork, as duration does); exits as CMD did (128 + 9 when killed).
  kill_model.py duration CMD [ARGS...]
      Runs CMD; prints how many microseconds it took (start to exit).
  kill_model.py verify RAW BASE PLAN ACKED
      RAW is the image read back as raw bytes, BASE the content before the
      writes (missing: zeros), PLAN the commands, ACKED how many of them
      the writer acknowledged.  Every acknowledged write must be intact,
      every byte no write touched must be BASE's, and the bytes of the one
      write in flight when the writer was killed must each be old or new.
"""
import os
import random
import signal
import subprocess
import sys
import time

SLOT = 256 * 1024
MiB = 1024 * 1024


def mkbase(path, size, seed):
    rnd = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        for k in range(0, size // MiB, 2):
            f.seek(k * MiB)
            f.write(rnd.randbytes(320 * 1024))
        if size > 4 * MiB:
            f.seek(3 * MiB)
            f.write(bytes(64 * 1024))


def plan(path, size, seed):
    rnd = random.Random(seed)
    slots = list(range(size // SLOT))
    rnd.shuffle(slots)
    lens = [512, 4096, 8192, 65536, 100 * 1024, 200 * 1024, SLOT]
    with open(path, "w") as f:
        for k, s in enumerate(slots):
            length = rnd.choice(lens)
            off = rnd.randrange(0, SLOT - length + 1, 512)
            f.write("write -P %d %d %d\n" % (1 + k % 255, s * SLOT + off, length))


def copy(src, dst):
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    size = os.fstat(fi).st_size
    pos = 0
    while pos < size:
        try:
            d = os.lseek(fi, pos, os.SEEK_DATA)
        except OSError:
            break
        h = os.lseek(fi, d, os.SEEK_HOLE)
        while d < h:
            n = min(h - d, 4 * MiB)
            os.pwrite(fo, os.pread(fi, n, d), d)
            d += n
        pos = h
    os.ftruncate(fo, size)
    os.close(fi)
    os.close(fo)


def read_plan(path):
    out = []
    with open(path) as f:
        for line in f:
            w = line.split()
            out.append((int(w[2]), int(w[3]), int(w[4])))
    return out


def verify(raw_path, base_path, plan_path, acked):
    with open(raw_path, "rb") as f:
        raw = f.read()
    size = len(raw)
    base = bytearray(size)
    if base_path != "-" and os.path.exists(base_path):
        with open(base_path, "rb") as f:
            b = f.read(size)
        base[: len(b)] = b
    expect = bytearray(base)
    writes = read_plan(plan_path)
    for pat, off, length in writes[:acked]:
        expect[off : off + length] = bytes([pat]) * length
    flight = writes[acked] if acked < len(writes) else None
    if flight:
        pat, off, length = flight
        for i in range(off, off + length):
            if raw[i] != pat and raw[i] != base[i]:
                print("in-flight write %d (pattern %d at %d, %d bytes): byte %d is %d,"
                      " neither old (%d) nor new" % (acked, pat, off, length, i, raw[i], base[i]))
                return 1
        expect[off : off + length] = raw[off : off + length]
    if bytes(expect) == raw:
        return 0
    for i in range(size):
        if expect[i] != raw[i]:
            who = "no write"
            for k, (pat, off, length) in enumerate(writes[:acked]):
                if off <= i < off + length:
                    who = "acknowledged write %d (pattern %d at %d, %d bytes)" % (k, pat, off, length)
            print("byte %d is %d, expected %d (%s; %d writes acknowledged)"
                  % (i, raw[i], expect[i], who, acked))
            return 1
    return 1


def run_status(p):
    rc = p.wait()
    return 128 - rc if rc < 0 else rc


def killat(us, argv):
    # A sleeping Python wakes precisely; a shell `sleep` or `read -t` does
    # not when the command keeps every CPU busy.
    t0 = time.monotonic()
    p = subprocess.Popen(argv)
    left = t0 + us / 1e6 - time.monotonic()
    if left > 0:
        time.sleep(left)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    return run_status(p)


def duration(argv):
    t0 = time.monotonic()
    p = subprocess.Popen(argv)
    rc = run_status(p)
    print(int((time.monotonic() - t0) * 1e6))
    return rc


def main(argv):
    cmd = argv[1]
    if cmd == "mkbase":
        mkbase(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "plan":
        plan(argv[2], int(argv[3]), int(argv[4]))
    elif cmd == "copy":
        copy(argv[2], argv[3])
    elif cmd == "killat":
        return killat(int(argv[2]), argv[3:])
    elif cmd == "duration":
        return duration(argv[2:])
    elif cmd == "verify":
        return verify(argv[2], argv[3], argv[4], int(argv[5]))
    else:
        print("unknown command " + cmd, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
