#!/usr/bin/python3
"""What an operator does to a running VM whose NVDIMM is a pcow image,
driven over QMP (issue 21).

    ops.py SCENARIO...

Scenarios (each starts its own QEMU; only 'reset' and 'truncate' boot the
test guest):

    live      qom-set on a running VM: what format=pcow refuses at start-up
              (discard-data, prealloc) is refused too, and the image keeps
              its data and its allocation
    reset     the VM stops for lack of room; system_reset, savevm
              and quit then answer at once, and after a reset the guest
              boots again
    raw       a pcow image without format=pcow is refused; format=raw
              forces it, and respects pcow's lock both ways
    migrate   migration under TCG with a file-backed NVDIMM (raw and pcow)
    rovirtio  a read-only pcow image cannot back virtio-pmem
    inuse     an image used twice by one QEMU says so; object-del releases
              the image before it returns; qom-get pcow-copy-size
    truncate  an image truncated under the VM is reported as such

Environment: PCOW_QEMU, PCOW_IMG, PCOW_IO (programs), PCOW_GUEST (the test
guest, tests/vm/mkguest.sh), OPS_DIR (a scratch directory).  Prints one
'  ok: ...' or '  FAIL: ...' line per check; exits 1 when one failed.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
QEMU = os.environ["PCOW_QEMU"]
IMG = os.environ["PCOW_IMG"]
IO = os.environ["PCOW_IO"]
GUEST = os.environ.get("PCOW_GUEST", "")
DIR = os.environ["OPS_DIR"]

FIRMWARE = ["-L", "/usr/share/seabios", "-L", "/usr/share/qemu",
            "-L", "/usr/lib/ipxe/qemu"]

failures = 0


def check(what, good, detail=None):
    global failures
    if good:
        print("  ok: %s" % what)
    else:
        failures += 1
        print("  FAIL: %s" % what)
        if detail is not None:
            for line in str(detail).rstrip().splitlines()[-15:]:
                print("      %s" % line)
    sys.stdout.flush()
    return good


def path(name):
    return os.path.join(DIR, name)


def run(*args):
    return subprocess.run(list(args), capture_output=True, text=True)


def pcow_img(*args):
    r = run(IMG, *args)
    if r.returncode:
        raise RuntimeError("pcow-img %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


def image_info(img):
    return json.loads(pcow_img("info", "-U", "--output=json", img))


def sha256(name):
    with open(name, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class QmpTimeout(Exception):
    pass


class Qmp:
    """A QMP connection; cmd() raises QmpTimeout when QEMU does not answer."""

    def __init__(self, sock, seconds=30):
        deadline = time.time() + seconds
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(sock)
                break
            except OSError:
                self.sock.close()
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.file = self.sock.makefile("rw")
        self.sock.settimeout(seconds)
        json.loads(self.file.readline())
        self.cmd("qmp_capabilities")

    def cmd(self, name, timeout=10, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.settimeout(timeout)
        try:
            self.file.write(json.dumps(msg) + "\n")
            self.file.flush()
            while True:
                line = self.file.readline()
                if not line:
                    raise QmpTimeout("%s: QEMU closed the connection" % name)
                reply = json.loads(line)
                if "return" in reply or "error" in reply:
                    return reply
        except socket.timeout:
            raise QmpTimeout("%s: no answer in %d s" % (name, timeout))

    def hmp(self, line, timeout=10):
        return self.cmd("human-monitor-command", timeout=timeout,
                        **{"command-line": line})["return"]

    def status(self, timeout=10):
        return self.cmd("query-status", timeout=timeout)["return"]["status"]

    def wait_status(self, want, seconds):
        deadline = time.time() + seconds
        status = None
        while time.time() < deadline:
            status = self.status()
            if status == want:
                return True
            time.sleep(0.2)
        return False


def error_of(reply):
    return reply.get("error", {}).get("desc", "")


class Vm:
    """A QEMU; with a guest script, the test guest boots and runs it."""

    def __init__(self, name, args, script=None, reboot=False, memory="512M"):
        self.name = name
        self.console = path(name + ".console")
        self.sock = path(name + ".qmp")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        cmd = [QEMU, "-accel", "tcg", "-cpu", "max",
               "-machine", "pc,nvdimm=on",
               "-m", memory + ",slots=2,maxmem=4G",
               "-nographic", "-nic", "none"] + FIRMWARE
        if script is not None:
            cmd += ["-kernel", os.path.join(GUEST, "vmlinuz"),
                    "-initrd", self.initrd(script),
                    "-append", "console=ttyS0 panic=-1 quiet"]
            if not reboot:
                cmd.append("-no-reboot")
        else:
            cmd += ["-monitor", "none"]
        cmd += args + ["-qmp", "unix:%s,server=on,wait=off" % self.sock]
        with open(self.console, "w") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        try:
            self.qmp = Qmp(self.sock)
        except OSError:
            self.proc.wait(timeout=30)
            self.qmp = None

    def initrd(self, script):
        """The base initrd plus the guest script, as lib.sh makes it."""
        src, out = path(self.name + ".sh"), path(self.name + ".initrd")
        with open(src, "w") as f:
            f.write(script)
        subprocess.check_call(
            ["bash", "-c", 'source "$1/lib.sh" && vm_make_initrd "$2" "$3" "$4"',
             "-", HERE, GUEST, src, out])
        return out

    def log(self):
        with open(self.console, errors="replace") as f:
            return f.read()

    def wait(self, seconds):
        """QEMU's exit code, or None if it still runs after seconds."""
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            return None

    def quit(self):
        """Quits QEMU; kills it if it does not answer (a hang)."""
        if self.proc.poll() is None and self.qmp:
            try:
                self.qmp.cmd("quit", timeout=10)
            except (QmpTimeout, OSError):
                pass
        if self.wait(10) is None:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


def nvdimm(img, opts="format=pcow,share=on", obj="pm"):
    return ["-object", "memory-backend-file,id=%s,mem-path=%s,%s"
            % (obj, img, opts),
            "-device", "nvdimm,id=nv%s,memdev=%s" % (obj, obj)]


def refused(args):
    """Runs a QEMU that should refuse to start: (exit code, output); the
    exit code is None when it started (killed after 5 s)."""
    p = subprocess.Popen([QEMU, "-accel", "tcg", "-machine", "pc,nvdimm=on",
                          "-m", "256M,slots=2,maxmem=1G", "-nographic",
                          "-nic", "none", "-S", "-monitor", "none",
                          "-serial", "none"] + FIRMWARE + args,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        out = p.communicate(timeout=5)[0]
        rc = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        out = p.communicate()[0] + "(QEMU started)"
        rc = None
    return rc, out.strip()


# Case 1 and 2: properties set on a running VM.
def scenario_live():
    print("qom-set on a running VM")
    base, ovl = path("live-base.pcow"), path("live.pcow")
    pcow_img("create", "-q", "-o", "block_size=4K", base, "16M")
    run(IO, "-c", "write -P 0x42 0 16M", base)
    pcow_img("create", "-q", "-o", "block_size=4K", "-b", "live-base.pcow",
             "-F", "pcow", ovl)
    vm = Vm("live", nvdimm(ovl))
    q = vm.qmp

    def qom_set(prop, value):
        return q.cmd("qom-set", path="/objects/pm", property=prop,
                     value=value)

    # The ones that are safe.
    for prop, value in (("dump", False), ("merge", False),
                        ("prealloc-threads", 2), ("discard-data", False)):
        r = qom_set(prop, value)
        check("%s=%s is accepted" % (prop, json.dumps(value)),
              "return" in r, r)
    for prop in ("discard-data", "prealloc"):
        err = error_of(qom_set(prop, True))
        check("%s=on is refused, with the start-up message" % prop,
              err == "property '%s' is not supported by memory-backend-pcow"
              % prop, err)
    # Properties that cannot change once the memory is mapped.
    for prop, value in (("share", False), ("readonly", True),
                        ("size", 1 << 20), ("align", 4096),
                        ("offset", 4096), ("mem-path", ovl),
                        ("rom", "on"), ("format", "raw"),
                        ("reserve", False), ("pcow-copy-size", 65536),
                        ("pcow-fault-ahead", 0),
                        ("pcow-persist-interval", 0),
                        ("pcow-kernel-cow", False)):
        check("%s cannot change on a running VM" % prop,
              "error" in qom_set(prop, value))
    check("the VM still runs", q.status() == "running")
    vm.quit()
    check("quit: the overlay still inherits all its data (nothing copied up)",
          image_info(ovl).get("allocated-blocks") == 0, image_info(ovl))
    r = run(IO, "-r", "-c", "read -P 0x42 0 16M", ovl)
    check("quit: the data reads back (no discard)",
          r.returncode == 0 and "failed" not in r.stdout, r.stdout + r.stderr)
    r = run(IMG, "check", ovl)
    check("the overlay checks clean", r.returncode == 0, r.stdout + r.stderr)


# Case 3: monitor commands while the VM is stopped for lack of room.
FILL = """pm_wait_dev /dev/pmem0
pm_fill /dev/pmem0 0 16777216 fill
pm_check_fill /dev/pmem0 0 16777216 fill
"""


def scenario_reset():
    print("monitor commands after a stop for lack of room")
    small = path("small")
    os.makedirs(small, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs",
                       small]).returncode:
        print("  SKIP: cannot mount a small tmpfs here (needs root)")
        return
    try:
        reset_on(small)
    finally:
        subprocess.run(["umount", small])


def reset_on(small):
    img = os.path.join(small, "full.pcow")
    pcow_img("create", "-q", img, "64M")
    vm = Vm("reset", nvdimm(img) + ["-drive", "if=none,id=vmstate,format="
                                    "qcow2,file=" + qcow2("reset-vmstate")],
            script=FILL, reboot=True)
    q = vm.qmp
    if not check("the VM stops with an I/O error when the image cannot grow",
                 q.wait_status("io-error", 90), vm.log()):
        vm.quit()
        return
    try:
        t = time.time()
        r = q.cmd("system_reset", timeout=15)
        check("system_reset answers (%.1f s)" % (time.time() - t),
              "return" in r, r)
        status = q.status()
        check("...and the monitor still answers: status %s" % status,
              status in ("prelaunch", "io-error"))
        # The vCPU waits in its main loop, at the start of the guest
        # instruction whose store found no room (not inside the fault
        # handler, in the middle of it): the VM's state can be saved.
        r = q.hmp("savevm before", timeout=30)
        check("savevm while stopped for room", "rror" not in r, r)
        r = q.hmp("info snapshots", timeout=15)
        check("...the snapshot is listed", "before" in r, r)
        # A failing device_add waits for an RCU grace period
        # (drain_call_rcu()), which a vCPU waiting inside the fault
        # handler, in guest code, would hold off until the resume.
        t = time.time()
        r = q.cmd("device_add", timeout=15, driver="nvdimm", id="nvx",
                  memdev="no-such-backend")
        check("a failing device_add answers (%.1f s)" % (time.time() - t),
              "error" in r, r)
    except QmpTimeout as e:
        check("the monitor answers after the stop", False, e)
        vm.quit()
        return
    # Some room, not enough: after the reset the guest boots again, runs
    # its script from the start and stops once more.
    subprocess.check_call(["mount", "-o", "remount,size=12M", small])
    q.cmd("cont")
    stopped = q.wait_status("io-error", 90)
    log = vm.log()
    check("after the reset and 'cont', the guest boots again and stops"
          " once more for room",
          stopped and log.count("Booting from ROM") == 2 and
          log.count("cannot store to guest memory") == 2, log)
    t = time.time()
    try:
        q.cmd("quit", timeout=15)
        rc = vm.wait(15)
    except QmpTimeout as e:
        rc = None
    check("quit while stopped: QEMU exits at once (%.1f s, status %s)"
          % (time.time() - t, rc), rc == 0)
    vm.quit()
    r = run(IMG, "check", img)
    check("the image checks clean", r.returncode == 0, r.stdout + r.stderr)


def qcow2(name):
    """An empty qcow2 image that savevm could use."""
    f = path(name + ".qcow2")
    qemu_img = os.path.join(os.path.dirname(os.path.realpath(QEMU)),
                            "qemu-img")
    subprocess.check_call([qemu_img, "create", "-q", "-f", "qcow2", f, "64M"])
    return f


# Case 4: the raw path.
def scenario_raw():
    print("a pcow image mapped raw")
    img = path("raw.pcow")
    pcow_img("create", "-q", img, "64M")
    raw = "format=raw,size=64M,share=on"
    before = sha256(img)
    rc, out = refused(nvdimm(img, "size=64M,share=on"))
    check("without format, a pcow image is refused", rc == 1, out)
    check("...in one line naming format=pcow",
          len(out.splitlines()) == 1 and "format=pcow" in out, out)
    check("...and left as it was", sha256(img) == before)
    vm = Vm("raw-pcow", nvdimm(img))
    rc, out = refused(nvdimm(img, raw))
    check("format=raw is refused while a pcow QEMU has the image open",
          rc == 1 and "in use" in out, out)
    rc, out = refused(nvdimm(img, "format=raw,size=64M,readonly=on") +
                      ["-global", "nvdimm.unarmed=on"])
    check("...read-only too", rc == 1 and "in use" in out, out)
    vm.quit()
    vm = Vm("raw-forced", nvdimm(img, raw))
    check("format=raw forces it when nobody has it open",
          vm.qmp is not None and vm.qmp.status() == "running", vm.log())
    r = run(IMG, "info", img)
    check("...and pcow-img finds it in use meanwhile",
          r.returncode != 0 and "in use" in r.stderr, r.stdout + r.stderr)
    rc, out = refused(nvdimm(img))
    check("...and so does a pcow QEMU", rc == 1 and "in use" in out, out)
    vm.quit()
    r = run(IMG, "check", img)
    check("the image checks clean after all", r.returncode == 0,
          r.stdout + r.stderr)


# Case 5: migration under TCG with a file-backed NVDIMM.
def scenario_migrate():
    print("migration with a file-backed NVDIMM under TCG")
    raw = path("mig.raw")
    with open(raw, "wb") as f:
        f.truncate(256 << 20)
    img = path("mig.pcow")
    pcow_img("create", "-q", img, "256M")
    for what, dev in (("raw", nvdimm(raw, "size=256M,share=on")),
                      ("pcow", nvdimm(img))):
        # The NVDIMM's RAM block comes first, then the larger main memory.
        vm = Vm("migrate-" + what, dev)
        time.sleep(0.5)
        vm.qmp.cmd("migrate", uri="exec:cat >" + path("migrate.out"))
        status = None
        deadline = time.time() + 60
        try:
            while time.time() < deadline:
                status = vm.qmp.cmd("query-migrate")["return"].get("status")
                if status in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.2)
        except (QmpTimeout, OSError):
            status = "QEMU died"
        check("%s NVDIMM: the migration completes (%s)" % (what, status),
              status == "completed", vm.log())
        vm.quit()


# Case 6: read-only virtio-pmem.
def scenario_rovirtio():
    print("read-only pcow image and virtio-pmem")
    img = path("ro.pcow")
    pcow_img("create", "-q", img, "64M")
    rc, out = refused([
        "-object", "memory-backend-file,id=pv,mem-path=%s,format=pcow,"
        "readonly=on" % img, "-device", "virtio-pmem-pci,memdev=pv"])
    check("a read-only pcow image cannot back virtio-pmem", rc == 1, out)
    check("...said in one line that points to an unarmed NVDIMM",
          len(out.splitlines()) == 1 and "unarmed=on" in out, out)
    vm = Vm("ronvdimm", nvdimm(img, "format=pcow,readonly=on") +
            ["-global", "nvdimm.unarmed=on"])
    check("an unarmed NVDIMM takes it",
          vm.qmp is not None and vm.qmp.status() == "running", vm.log())
    vm.quit()


# Case 7: the same image twice, object-del, qom-get.
def scenario_inuse():
    print("image in use by this QEMU, object-del, qom-get")
    img, ovl = path("hot.pcow"), path("hot-ovl.pcow")
    pcow_img("create", "-q", "-o", "block_size=4K", img, "64M")
    pcow_img("create", "-q", "-o", "block_size=4K", "-b", "hot.pcow",
             "-F", "pcow", ovl)
    vm = Vm("inuse", ["-S"])
    q = vm.qmp

    def add(oid, image):
        return q.cmd("object-add", **{"qom-type": "memory-backend-file",
                                      "id": oid, "mem-path": image,
                                      "format": "pcow", "share": True})

    check("object-add maps the image", "return" in add("m1", img))
    r = q.cmd("qom-get", path="/objects/m1", property="pcow-copy-size")
    check("qom-get pcow-copy-size gives the default, the block size (%s)"
          % r.get("return"), r.get("return") == 4096, r)
    err = error_of(add("m2", img))
    check("a second backend on it is in use by this QEMU, and says so",
          "already in use by this QEMU (memory backend 'm1')" in err, err)
    err = error_of(add("m3", ovl))
    check("...and so does an overlay of it",
          "backing file" in err and "in use by this QEMU" in err, err)
    q.cmd("object-del", id="m1")
    r = run(IMG, "info", img)
    for i in range(3):
        if r.returncode:
            break
        add("m4", img)
        q.cmd("object-del", id="m4")
        r = run(IMG, "info", img)
    check("a tool run as soon as object-del returns finds the image free",
          r.returncode == 0, r.stderr)
    vm.quit()


# Case 7: a truncated image.
def scenario_truncate():
    print("an image truncated under the VM")
    img = path("trunc.pcow")
    pcow_img("create", "-q", img, "64M")
    vm = Vm("truncate", nvdimm(img), script=FILL)
    os.truncate(img, 3 << 20)
    stopped = vm.qmp.wait_status("io-error", 90)
    log = vm.log()
    check("the VM stops with an I/O error", stopped, log)
    check("QEMU says the image file was truncated, not that room is short",
          "Input/output error (the image file was truncated" in log and
          "No space left" not in log and "once there is room" not in log,
          log)
    vm.quit()


def main():
    names = sys.argv[1:]
    for name in names:
        globals()["scenario_" + name]()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
