#!/usr/bin/python3
"""Live migration of a VM whose NVDIMM is a pcow image (issue 16), both
QEMUs on this host, the stream over a UNIX socket, TCG.

    migrate.py SCENARIO...

Scenarios:

    shared    source and destination map the same image (an overlay on a
              base with data); the guest stamps 4 KiB blocks with a
              sequence number (seqwrite) all through the migration and
              finishes on the destination; a live snapshot taken just
              before the migration (after the destination opened the
              image) makes its stores copy blocks up as the migration
              starts; the image then holds the whole sequence (no gap, no
              lost block), the destination lists the snapshot, the source
              gave the image up (query-pcow, 'cont' refused), the PM was
              not in the stream, pcow-img check is clean
    cancel    the same, but the migration is cancelled midway: the source
              keeps the image; then a second migration fails after the
              source handed the image over (the destination is killed
              while the source waits before the switchover,
              pause-before-switchover): the source takes the image back;
              its guest runs on and finishes there with every write in
              the image; no destination ever owned it
    stream    no shared storage (pcow-migration=stream): the source's
              overlay and a new one on the destination share a base; after
              the migration the new overlay holds exactly the blocks the
              source's holds (pcow-img map), the guest's checksum of the
              device is the same before and after, the source image and
              the base are unchanged
    oldsnap   loadvm of a VM snapshot whose stream holds the PM (taken
              with a raw backend of the same id, as without patch 19) onto
              a pcow image with a snapshot of that name still works
    mismatch  source and destination disagree on pcow-migration (either
              way): the destination refuses to load, with the reason; the
              source runs on with its image (after 'cont' when it had
              completed: precopy does not wait for the destination)

Environment: as ops.py (PCOW_QEMU, PCOW_IMG, PCOW_IO, PCOW_GUEST, OPS_DIR),
and SEQWRITE, the static seqwrite program (seqwrite.c).  Prints one
'  ok: ...' or '  FAIL: ...' line per check; exits 1 when one failed.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import ops  # noqa: E402
from ops import Vm, check, nvdimm, path, pcow_img, run  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCKS = 16384  # seqwrite's 4 KiB blocks: the first 64 MiB of the image
GUEST_SCRIPT = """pm_wait_dev /dev/pmem0
/bin/seqwrite /dev/pmem0 %d %d
"""


def guest_args(name, seconds):
    """-kernel/-initrd/-append for a guest that runs seqwrite for seconds.
    Source and destination take the same files."""
    src, out = path(name + ".sh"), path(name + ".initrd")
    with open(src, "w") as f:
        f.write(GUEST_SCRIPT % (BLOCKS, seconds))
    env = dict(os.environ, VM_FILES=os.environ["SEQWRITE"] + "=/bin/seqwrite")
    subprocess.check_call(
        ["bash", "-c", 'source "$1/lib.sh" && vm_make_initrd "$2" "$3" "$4"',
         "-", HERE, ops.GUEST, src, out], env=env)
    return ["-kernel", os.path.join(ops.GUEST, "vmlinuz"), "-initrd", out,
            "-append", "console=ttyS0 panic=-1 quiet", "-no-reboot"]


def qmp_call(vm, command, **args):
    """A QMP command with an argument called 'name', which Qmp.cmd()
    cannot pass."""
    q = vm.qmp
    q.sock.settimeout(30)
    q.file.write(json.dumps({"execute": command, "arguments": args}) + "\n")
    q.file.flush()
    while True:
        reply = json.loads(q.file.readline())
        if "return" in reply or "error" in reply:
            return reply


def pcow_active(vm, memdev="pm"):
    r = vm.qmp.cmd("query-pcow", memdev=memdev)
    return r.get("return", {}).get("active")


def wait_writing(vm, seconds=90):
    """Waits until the guest's first writes reach the image."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        r = vm.qmp.cmd("query-pcow", memdev="pm").get("return", {})
        if r.get("map", {}).get("blocks-allocated", 0) > 0:
            return True
        time.sleep(0.2)
    return False


def wait_migration(vm, seconds, during=None, stop_at=None):
    """The final status of the outgoing migration (or stop_at once it has
    it); calls during() while it is active."""
    deadline = time.time() + seconds
    status = None
    while time.time() < deadline:
        try:
            info = vm.qmp.cmd("query-migrate")["return"]
        except (ops.QmpTimeout, OSError):
            return "QEMU died", {}
        status = info.get("status")
        if status in ("completed", "failed", "cancelled", stop_at):
            return status, info
        if status == "active" and during:
            during()
            during = None
        time.sleep(0.1)
    return status, {}


def seq_last(vm):
    m = re.findall(r"SEQWRITE last=(\d+)", vm.log())
    return int(m[-1]) if m else None


def image_holds_sequence(img, last):
    raw = img + ".raw"
    pcow_img("convert", "-O", "raw", img, raw)
    r = run("/usr/bin/python3", os.path.join(HERE, "seqcheck.py"), raw,
            str(BLOCKS), str(last))
    os.unlink(raw)
    return r


def destination(name, args):
    """A QEMU waiting for a migration on the UNIX socket name.mig."""
    sock = path(name + ".mig")
    if os.path.exists(sock):
        os.unlink(sock)
    return Vm(name, args + ["-incoming", "unix:" + sock])


def pair(name, img, seconds):
    """A source running the guest on img and a destination waiting for it
    (-incoming on a UNIX socket); returns (src, dst, uri)."""
    args = guest_args(name, seconds) + nvdimm(img)
    sock = path(name + "-dst.mig")
    src = Vm(name + "-src", args)
    return src, destination(name + "-dst", args), "unix:" + sock


# Shared storage: the image is handed over at switchover.
def scenario_shared():
    print("migration over shared storage while the guest writes")
    base, img = path("shared-base.pcow"), path("shared.pcow")
    for f in (base, img):
        if os.path.exists(f):
            os.unlink(f)
    # A backing file with data under every block the guest writes.
    pcow_img("create", "-q", base, "128M")
    run(ops.IO, "-c", "write -P 0x5a 0 128M", base)
    pcow_img("create", "-q", "-b", os.path.basename(base), "-F", "pcow",
             img)
    src, dst, uri = pair("shared", img, 25)
    if not check("the destination starts on the image the source uses",
                 dst.qmp is not None, dst.log()):
        src.quit()
        return
    check("query-pcow: the destination does not own the image yet",
          pcow_active(dst) is False and pcow_active(src) is True)
    out = dst.qmp.hmp("info pcow pm")
    check("...and 'info pcow' says so", "(inactive" in out and
          "(inactive" not in src.qmp.hmp("info pcow pm"), out)
    if not check("the guest writes on the source", wait_writing(src),
                 src.log()):
        src.quit()
        dst.quit()
        return
    time.sleep(2)
    seen = {}

    def during():
        seen["src"], seen["dst"] = pcow_active(src), pcow_active(dst)

    src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
    # A snapshot the destination has not seen at its start; every block
    # is inherited from it now, and the guest's next stores copy up.
    r = qmp_call(src, "pcow-snapshot-create", memdev="pm", name="before")
    check("a live snapshot is taken just before the migration", "return" in r,
          r)
    r = src.qmp.cmd("migrate", uri=uri)
    status, info = wait_migration(src, 120, during)
    if not check("the migration completes (%s)" % status,
                 status == "completed", "%s\n%s" % (info, src.log())):
        src.quit()
        dst.quit()
        return
    if "src" in seen:
        check("...during it, the source owns the image, not the destination",
              seen == {"src": True, "dst": False}, seen)
    ram = info.get("ram", {})
    print("    stream: %s bytes, downtime %s ms, total %s ms"
          % (ram.get("transferred"), info.get("downtime"),
             info.get("total-time")))
    # The RAM migrated: 512 MiB of main memory and the ROMs, not the PM.
    check("the 128 MiB PM was not part of the RAM migrated (%s MiB)"
          % (ram.get("total", 0) >> 20),
          0 < ram.get("total", 0) < (512 + 64) << 20, info)
    check("the destination's guest runs", dst.qmp.wait_status("running", 30),
          dst.log())
    check("query-pcow: the destination owns the image, the source not",
          pcow_active(dst) is True and pcow_active(src) is False)
    snaps = dst.qmp.cmd("query-pcow-snapshots", memdev="pm").get("return", [])
    check("the destination sees the snapshot taken after it opened the image",
          [x.get("name") for x in snaps] == ["before"], snaps)
    err = ops.error_of(src.qmp.cmd("cont"))
    check("'cont' on the source is refused: the image is the destination's",
          "pcow" in err and src.qmp.status() != "running", err)
    code = dst.wait(120)
    last = seq_last(dst)
    check("the guest finished on the destination (SEQWRITE last=%s)" % last,
          code is not None and last is not None, dst.log())
    check("...and not on the source", seq_last(src) is None, src.log())
    src.quit()
    dst.quit()
    if last is not None:
        r = image_holds_sequence(img, last)
        check("the image holds writes 1..%d, no gap, no lost block" % last,
              r.returncode == 0, r.stdout + r.stderr)
    r = run(ops.IMG, "check", img)
    check("pcow-img check is clean after both exited", r.returncode == 0,
          r.stdout + r.stderr)


# Cancelled midway: the source takes its image back and carries on.
def scenario_cancel():
    print("migration cancelled midway, and failed at the switchover")
    img = path("cancel.pcow")
    pcow_img("create", "-q", img, "128M")
    src, dst, uri = pair("cancel", img, 35)
    if not check("the guest writes on the source", wait_writing(src),
                 src.log()):
        src.quit()
        dst.quit()
        return
    # Slow, so that it is still running when cancelled.
    src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 20})
    src.qmp.cmd("migrate", uri=uri)
    time.sleep(3)
    status = src.qmp.cmd("query-migrate")["return"].get("status")
    check("the migration is running (%s) when cancelled" % status,
          status == "active")
    dst_active = pcow_active(dst)
    src.qmp.cmd("migrate_cancel")
    status, info = wait_migration(src, 30)
    check("the migration is cancelled (%s)" % status, status == "cancelled",
          info)
    check("the source guest runs on", src.qmp.wait_status("running", 10),
          src.log())
    check("query-pcow: the source owns the image; the destination never did",
          pcow_active(src) is True and dst_active is False)
    dst.quit()

    # A failure after the hand-over: the destination dies while the source
    # waits before the switchover; the source then hands the image over,
    # fails to send the rest, takes the image back and resumes.
    dst = destination("cancel-dst2", guest_args("cancel", 35) + nvdimm(img))
    src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
    src.qmp.cmd("migrate-set-capabilities", capabilities=[
        {"capability": "pause-before-switchover", "state": True}])
    src.qmp.cmd("migrate", uri="unix:" + path("cancel-dst2.mig"))
    status, info = wait_migration(src, 60, stop_at="pre-switchover")
    check("the second migration waits before the switchover (%s)" % status,
          status == "pre-switchover", info)
    dst.proc.kill()
    dst.wait(10)
    src.qmp.cmd("migrate-continue", state="pre-switchover")
    status, info = wait_migration(src, 30)
    check("...and fails once the destination is gone (%s)" % status,
          status == "failed", info)
    check("the source guest runs on after the failed switchover",
          src.qmp.wait_status("running", 10), src.log())
    check("query-pcow: the source took the image back",
          pcow_active(src) is True)
    code = src.wait(120)
    last = seq_last(src)
    check("the guest finished on the source (SEQWRITE last=%s)" % last,
          code is not None and last is not None, src.log())
    dst.quit()
    src.quit()
    if last is not None:
        r = image_holds_sequence(img, last)
        check("the image holds writes 1..%d: nothing lost, nothing from the"
              " destination" % last, r.returncode == 0, r.stdout + r.stderr)
    r = run(ops.IMG, "check", img)
    check("pcow-img check is clean", r.returncode == 0, r.stdout + r.stderr)


STREAM_SCRIPT = """pm_wait_dev /dev/pmem0
pm_pattern 8388608 pcowstream | dd of=/dev/pmem0 bs=1M seek=16 oflag=direct iflag=fullblock conv=notrunc status=none
pm_pattern 4096 X | dd of=/dev/pmem0 bs=4096 seek=512 oflag=direct conv=notrunc status=none
echo "SUM1 $(md5sum </dev/pmem0 | cut -d' ' -f1)"
sleep %d
echo "SUM2 $(md5sum </dev/pmem0 | cut -d' ' -f1)"
"""


def own_blocks(img):
    """The (offset, length) runs the image's active layer holds itself."""
    runs = []
    for e in json.loads(pcow_img("map", "-U", "--output=json", img)):
        if e["depth"] != 0 or not e["data"]:
            continue
        if runs and runs[-1][0] + runs[-1][1] == e["start"]:
            runs[-1] = (runs[-1][0], runs[-1][1] + e["length"])
        else:
            runs.append((e["start"], e["length"]))
    return runs


def guest_sum(vm, tag):
    m = re.findall(tag + r" ([0-9a-f]{32})", vm.log())
    return m[-1] if m else None


def raw_md5(img):
    raw = img + ".raw"
    pcow_img("convert", "-O", "raw", img, raw)
    with open(raw, "rb") as f:
        h = hashlib.md5(f.read()).hexdigest()
    os.unlink(raw)
    return h


# No shared storage: the destination maps a new overlay on the same base,
# and only the blocks the source image holds are sent.
def scenario_stream():
    print("migration to a new overlay on the same base (no shared storage)")
    base, src_img, dst_img = (path("st-base.pcow"), path("st-src.pcow"),
                              path("st-dst.pcow"))
    for f in (base, src_img, dst_img):
        if os.path.exists(f):
            os.unlink(f)
    pcow_img("create", "-q", "-o", "block_size=64K", base, "64M")
    run(ops.IO, "-c", "write -P 0x5a 0 8M", base)
    for img in (src_img, dst_img):
        pcow_img("create", "-q", "-o", "block_size=64K", "-b",
                 os.path.basename(base), "-F", "pcow", img)
    base_sum = ops.sha256(base)
    script = path("stream.sh")
    with open(script, "w") as f:
        f.write(STREAM_SCRIPT % 25)
    initrd = path("stream.initrd")
    subprocess.check_call(
        ["bash", "-c", 'source "$1/lib.sh" && vm_make_initrd "$2" "$3" "$4"',
         "-", HERE, ops.GUEST, script, initrd])
    kernel = ["-kernel", os.path.join(ops.GUEST, "vmlinuz"), "-initrd",
              initrd, "-append", "console=ttyS0 panic=-1 quiet",
              "-no-reboot"]
    sock = path("stream.mig")
    src = Vm("stream-src", kernel + nvdimm(
        src_img, "format=pcow,share=on,pcow-migration=stream"))
    dst = Vm("stream-dst", kernel + nvdimm(
        dst_img, "format=pcow,share=on,pcow-migration=stream") +
        ["-incoming", "unix:" + sock])
    deadline = time.time() + 90
    while guest_sum(src, "SUM1") is None and time.time() < deadline:
        time.sleep(0.2)
    sum1 = guest_sum(src, "SUM1")
    if not check("the guest wrote on the source (SUM1 %s)" % sum1, sum1,
                 src.log()):
        src.quit()
        dst.quit()
        return
    check("query-pcow: each side owns its own image",
          pcow_active(src) is True and pcow_active(dst) is True)
    src.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 30})
    src.qmp.cmd("migrate", uri="unix:" + sock)
    status, info = wait_migration(src, 120)
    if not check("the migration completes (%s)" % status,
                 status == "completed", "%s\n%s" % (info, src.log())):
        src.quit()
        dst.quit()
        return
    print("    stream: %s bytes, downtime %s ms, total %s ms"
          % (info.get("ram", {}).get("transferred"), info.get("downtime"),
             info.get("total-time")))
    code = dst.wait(120)
    sum2 = guest_sum(dst, "SUM2")
    check("the guest's checksum on the destination is the one it had"
          " (%s)" % sum2, sum2 == sum1, dst.log())
    src.quit()
    dst.quit()
    check("the guest ended on the destination", code is not None)
    # What the guest wrote: one 64 KiB block copied up at 2 MiB (inside
    # the base's data), 8 MiB at 16 MiB (over a hole of the base).
    held = [(2 << 20, 64 << 10), (16 << 20, 8 << 20)]
    got = own_blocks(dst_img)
    check("the destination overlay holds exactly the blocks the guest wrote"
          " (%d KiB), nothing inherited or zero" % (sum(n for _, n in got)
                                                  >> 10),
          got == held, "want %s\ngot %s" % (held, got[:8]))
    check("the source image is unchanged (the same blocks, the content the"
          " guest read)",
          own_blocks(src_img) == held and raw_md5(src_img) == sum1)
    check("the destination image reads what the guest read",
          raw_md5(dst_img) == sum1)
    check("the base is unchanged", ops.sha256(base) == base_sum)
    for img in (src_img, dst_img):
        r = run(ops.IMG, "check", img)
        check("pcow-img check %s is clean" % os.path.basename(img),
              r.returncode == 0, r.stdout + r.stderr)


# Both sides must use the same pcow-migration.
def scenario_mismatch():
    print("source and destination disagree on pcow-migration")
    base = path("mm-base.pcow")
    if os.path.exists(base):
        os.unlink(base)
    pcow_img("create", "-q", base, "64M")
    for src_mode, dst_mode in (("shared", "stream"), ("stream", "shared")):
        why = ("the source migrates it with pcow-migration=%s, but this"
               " QEMU has pcow-migration=%s" % (src_mode, dst_mode))
        imgs = []
        for side in ("src", "dst"):
            imgs.append(path("mm-%s-%s.pcow" % (src_mode, side)))
            if os.path.exists(imgs[-1]):
                os.unlink(imgs[-1])
            pcow_img("create", "-q", "-b", os.path.basename(base), "-F",
                     "pcow", imgs[-1])
        name = "mm-" + src_mode
        src = Vm(name + "-src", nvdimm(
            imgs[0], "format=pcow,share=on,pcow-migration=" + src_mode))
        dst = destination(name + "-dst", nvdimm(
            imgs[1], "format=pcow,share=on,pcow-migration=" + dst_mode))
        src.qmp.cmd("migrate", uri="unix:" + path(name + "-dst.mig"))
        status, info = wait_migration(src, 60)
        code = dst.wait(10)
        log = dst.log()
        check("%s to %s: the destination refuses the migration, and says"
              " why" % (src_mode, dst_mode),
              code not in (None, 0) and (why in log or
                                         "should not be migrated" in log),
              log)
        # Precopy does not wait for the destination to load: the source
        # may have completed (and handed a shared image over); 'cont'
        # takes it back, as after any failed load on the destination.
        if status == "completed":
            src.qmp.cmd("cont")
        check("...and the source runs on (%s, then %s), owning its image"
              % (status, src.qmp.status()),
              status in ("failed", "completed") and
              src.qmp.wait_status("running", 10) and
              pcow_active(src) is True, src.log())
        src.quit()
        dst.quit()


# A VM snapshot whose stream holds the PM (taken without patch 19, here
# with a raw backend of the same id) still loads onto a pcow image that has
# a snapshot of its name: the PM is left out of live migration, not of
# loadvm.
def scenario_oldsnap():
    print("loadvm of a VM snapshot whose stream holds the PM")
    raw, img, vms = path("old.raw"), path("old.pcow"), path("old.qcow2")
    for f in (img, vms):
        if os.path.exists(f):
            os.unlink(f)
    with open(raw, "wb") as f:
        f.truncate(64 << 20)
        f.write(b"OLDSTATE" * 512)
    subprocess.check_call([os.path.join(os.path.dirname(ops.QEMU),
                                        "qemu-img"), "create", "-q", "-f",
                           "qcow2", vms, "1G"])
    disk = ["-blockdev", "driver=file,filename=%s,node-name=vmsf" % vms,
            "-blockdev", "driver=qcow2,file=vmsf,node-name=vms"]
    vm = Vm("oldsnap-raw", nvdimm(raw, "size=64M,share=on") + disk)
    out = vm.qmp.hmp("savevm old1")
    vm.quit()
    check("savevm with a raw NVDIMM (its memory in the stream)", out == "",
          out)
    pcow_img("create", "-q", img, "64M")
    pcow_img("snapshot", "-c", "old1", img)
    vm = Vm("oldsnap-pcow", nvdimm(img) + disk)
    out = vm.qmp.hmp("loadvm old1", timeout=60)
    vm.quit()
    check("loadvm onto a pcow image with a snapshot of that name", out == "",
          out + vm.log())
    r = run(ops.IO, "-c", "read -P 0x4f 0 1", img)
    check("the PM content of the stream is in the image",
          r.returncode == 0 and "failed" not in r.stdout + r.stderr,
          r.stdout + r.stderr)


def main():
    for name in sys.argv[1:]:
        globals()["scenario_" + name]()
    return 1 if ops.failures else 0


if __name__ == "__main__":
    sys.exit(main())
