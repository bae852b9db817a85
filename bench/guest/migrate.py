#!/usr/bin/python3
"""Downtime and total time of a live migration with a PM device: a pcow
image handed over on shared storage, a pcow overlay streamed to a new one
(pcow-migration=stream), and the baseline, a raw memory-backend-file
whose content QEMU streams as RAM (docs/benchmarks.md, "Live migration").

    migrate.py [SIZE:WRITTEN ...]      (default: 1G:1G 16G:1G)

For each configuration and each kind, BENCH_RUNS (default 3) migrations,
the kinds alternating in order from run to run.  Each migration: a source
QEMU (TCG, 512 MiB of RAM, no guest kernel: the firmware idles) with an
NVDIMM of SIZE of which WRITTEN holds data, written before the start
(pcow-io for pcow, dd for raw), and a destination QEMU on this host
(-incoming over a UNIX socket); max-bandwidth 8 GiB/s, the default
downtime limit.  Reported: the time from the source's STOP event to the
destination's RESUME event (their QMP timestamps: one host, one clock),
and from query-migrate on the source its downtime (stop to the end of
the switchover on the source), total-time and bytes sent.

    raw     the source's file holds the data; the destination maps a new
            sparse file of SIZE, which the stream fills
    shared  one pcow image, both sides (handed over at switchover)
    stream  the source maps an overlay holding the data over an empty
            base; the destination a new empty overlay on that base

Environment: PCOW_QEMU, PCOW_IMG, PCOW_IO, BENCH_DIR (work directory,
default build/), BENCH_RUNS, BENCH_KINDS (default "raw shared stream").  Prints a Markdown table; the raw results go
to RESULTS.jsonl in the work directory (kept with BENCH_KEEP=1).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "tests", "vm"))
sys.dont_write_bytecode = True
from qmp import QMP  # noqa: E402

QEMU = os.environ.get("PCOW_QEMU",
                      os.path.join(TOP, "build/qemu/qemu-system-x86_64"))
IMG = os.environ.get("PCOW_IMG", os.path.join(TOP, "build/tools/pcow-img"))
IO = os.environ.get("PCOW_IO", os.path.join(TOP, "build/tools/pcow-io"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
KINDS = tuple(os.environ.get("BENCH_KINDS", "raw shared stream").split())
FIRMWARE = ["-L", "/usr/share/seabios", "-L", "/usr/share/qemu",
            "-L", "/usr/lib/ipxe/qemu"]


def size_bytes(s):
    return int(subprocess.check_output(["numfmt", "--from=iec", s]))


def qemu(work, name, obj, extra=()):
    sock = os.path.join(work, name + ".qmp")
    log = open(os.path.join(work, name + ".log"), "w")
    p = subprocess.Popen(
        [QEMU, "-accel", "tcg", "-machine", "pc,nvdimm=on",
         "-m", "512M,slots=2,maxmem=20G", "-nographic", "-nic", "none",
         "-monitor", "none", "-serial", "none"] + FIRMWARE +
        ["-object", "memory-backend-file,id=pm," + obj,
         "-device", "nvdimm,id=nv,memdev=pm",
         "-qmp", "unix:%s,server=on,wait=off" % sock] + list(extra),
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return p, QMP(sock, 60)


def prepare(work, kind, size, written):
    """The source's and the destination's memory-backend-file options."""
    mib = written >> 20
    if kind == "raw":
        src, dst = os.path.join(work, "src.raw"), os.path.join(work, "dst.raw")
        for f in (src, dst):
            with open(f, "wb") as fh:
                fh.truncate(size)
        subprocess.check_call(["dd", "if=/dev/urandom", "of=" + src,
                               "bs=1M", "count=%d" % mib, "conv=notrunc,fsync",
                               "status=none"])
        opts = "size=%d,share=on,mem-path=" % size
        return opts + src, opts + dst
    pcow = "format=pcow,share=on,mem-path="
    if kind == "shared":
        img = os.path.join(work, "pm.pcow")
        subprocess.check_call([IMG, "create", "-q", img, str(size)])
        subprocess.check_call([IO, "-c", "write -P 0x5a 0 %d" % written, img],
                              stdout=subprocess.DEVNULL)
        return pcow + img, pcow + img
    base = os.path.join(work, "base.pcow")
    subprocess.check_call([IMG, "create", "-q", base, str(size)])
    imgs = []
    for name in ("src.pcow", "dst.pcow"):
        imgs.append(os.path.join(work, name))
        subprocess.check_call([IMG, "create", "-q", "-b", "base.pcow",
                               "-F", "pcow", imgs[-1]])
    subprocess.check_call([IO, "-c", "write -P 0x5a 0 %d" % written,
                           imgs[0]], stdout=subprocess.DEVNULL)
    return (pcow + imgs[0] + ",pcow-migration=stream",
            pcow + imgs[1] + ",pcow-migration=stream")


def event_time(q, name):
    """When QEMU sent the first event name (seconds), or None."""
    for e in q.events:
        if e.get("event") == name:
            t = e["timestamp"]
            return t["seconds"] + t["microseconds"] / 1e6
    return None


def one(root, kind, size, written):
    work = tempfile.mkdtemp(prefix="mig-", dir=root)
    procs = []
    try:
        src_obj, dst_obj = prepare(work, kind, size, written)
        sock = os.path.join(work, "mig.sock")
        p, src = qemu(work, "src", src_obj)
        procs.append(p)
        p, dst = qemu(work, "dst", dst_obj, ["-incoming", "unix:" + sock])
        procs.append(p)
        time.sleep(1)
        src.cmd("migrate-set-parameters", **{"max-bandwidth": 8 << 30})
        src.cmd("migrate", uri="unix:" + sock)
        deadline = time.time() + 1800
        while time.time() < deadline:
            info = src.cmd("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
        ram = info.get("ram", {})
        # Stop on the source to resume on the destination, from the
        # timestamps of their QMP events (one host, one clock).
        while time.time() < deadline and \
                dst.cmd("query-status")["status"] != "running" and \
                info.get("status") == "completed":
            time.sleep(0.02)
        stop, resume = event_time(src, "STOP"), event_time(dst, "RESUME")
        return {"kind": kind, "size": size, "written": written,
                "status": info.get("status"),
                "stop_to_resume_ms": round((resume - stop) * 1000, 1)
                if stop and resume else None,
                "downtime_ms": info.get("downtime"),
                "total_ms": info.get("total-time"),
                "setup_ms": info.get("setup-time"),
                "transferred": ram.get("transferred"),
                "normal_pages": ram.get("normal")}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


def fmt(values):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return "%g (%g – %g)" % (statistics.median(values), min(values),
                             max(values))


def main():
    configs = sys.argv[1:] or ["1G:1G", "16G:1G"]
    root = tempfile.mkdtemp(prefix="migrate-bench.",
                            dir=os.environ.get("BENCH_DIR",
                                               os.path.join(TOP, "build")))
    results = []
    out = open(os.path.join(root, "RESULTS.jsonl"), "w")
    for conf in configs:
        size, written = (size_bytes(x) for x in conf.split(":"))
        for run in range(RUNS):
            order = KINDS[run % len(KINDS):] + KINDS[:run % len(KINDS)]
            for kind in order:
                r = one(root, kind, size, written)
                r["config"] = conf
                print(json.dumps(r), flush=True)
                out.write(json.dumps(r) + "\n")
                out.flush()
                results.append(r)
    print()
    print("| PM, written | memory backend | stop to resume, ms |"
          " downtime (QEMU), ms | total time, ms | sent, MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for conf in configs:
        for kind in KINDS:
            rs = [r for r in results if r["config"] == conf and
                  r["kind"] == kind and r["status"] == "completed"]
            bad = sum(1 for r in results if r["config"] == conf and
                      r["kind"] == kind and r["status"] != "completed")
            print("| %s | %s%s | %s | %s | %s | %s |" % (
                conf.replace(":", ", "), kind,
                " (%d failed)" % bad if bad else "",
                fmt([r["stop_to_resume_ms"] for r in rs]),
                fmt([r["downtime_ms"] for r in rs]),
                fmt([r["total_ms"] for r in rs]),
                fmt([round(r["transferred"] / 1048576)
                     for r in rs if r["transferred"] is not None])))
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
