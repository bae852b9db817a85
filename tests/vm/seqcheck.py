#!/usr/bin/python3
"""Checks that a raw image holds a prefix of seqwrite's sequence.

    seqcheck.py RAW BLOCKS [LAST]

seqwrite (seqwrite.c) writes s = 1, 2, ... into 4 KiB block (s - 1) %
BLOCKS, every 8-byte word of the block holding s.  A consistent cut of
that sequence after K writes has, in every block b, the largest s <= K
with (s - 1) % BLOCKS == b, or zeros where no write went yet; only the
block of write K + 1 may be torn, each word K + 1 or what the block held
before.  Prints "K=N torn=0|1"; exits 1 when the image is no such cut,
or, with LAST, when K is not LAST or a block is torn (the final state of
a guest that completed its writes).
"""
import struct
import sys

BLOCK = 4096


def expected(b, k, n):
    """What block b holds after writes 1..k (0: never written)."""
    first = b + 1
    return 0 if k < first else first + (k - first) // n * n


def main():
    path, n = sys.argv[1], int(sys.argv[2])
    last = int(sys.argv[3]) if len(sys.argv) > 3 else None
    with open(path, "rb") as f:
        data = f.read(n * BLOCK)
    if len(data) != n * BLOCK:
        print("image shorter than %d blocks" % n)
        return 1
    uniform = {}
    torn = []
    for b in range(n):
        blk = data[b * BLOCK:(b + 1) * BLOCK]
        if blk == blk[:8] * (BLOCK // 8):
            uniform[b] = struct.unpack_from("<Q", blk)[0]
        else:
            torn.append(b)
    k = max(uniform.values(), default=0)
    bad = []
    for b in range(n):
        if b in uniform:
            if uniform[b] != expected(b, k, n):
                bad.append("block %d holds %d, want %d" %
                           (b, uniform[b], expected(b, k, n)))
            continue
        words = set(struct.unpack_from("<%dQ" % (BLOCK // 8),
                                       data, b * BLOCK))
        if b != k % n or not words <= {k + 1, expected(b, k, n)}:
            bad.append("block %d torn: %s" % (b, sorted(words)[:4]))
    print("K=%d torn=%d" % (k, len(torn)))
    for line in bad[:10]:
        print(line)
    if bad:
        return 1
    if last is not None and (k != last or torn):
        print("want K=%d with nothing torn" % last)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
