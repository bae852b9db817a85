#!/usr/bin/python3
"""Minimal QMP client for the VM tests.

    qmp.py SOCKET wait-status STATUS SECONDS   wait until query-status says STATUS
    qmp.py SOCKET cmd COMMAND [JSON-ARGUMENTS] run a command, print its reply

As a module: QMP(SOCKET) connects; .cmd(NAME, **ARGS) returns the
command's "return" value or raises QMPError; .hmp(LINE) runs an HMP command
and returns its output; .run_job(NAME, **ARGS) runs a job command (such as
snapshot-save) to its end.
"""
import json
import socket
import sys
import time


class QMPError(Exception):
    pass


def connect_unix(path, seconds=30):
    """A socket connected to path, retrying until QEMU listens on it."""
    deadline = time.time() + seconds
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.time() > deadline:
                raise
            time.sleep(0.2)


class QMP:
    def __init__(self, path, seconds=30):
        s = connect_unix(path, seconds)
        self.sock = s
        self.f = s.makefile("rw")
        self.events = []
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def call(self, command, args=None):
        """The whole reply: {"return": ...} or {"error": ...}."""
        msg = {"execute": command}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            line = self.f.readline()
            if not line:
                raise QMPError("QMP connection closed")
            reply = json.loads(line)
            if "return" in reply or "error" in reply:
                return reply
            self.events.append(reply)

    def cmd(self, command, **args):
        reply = self.call(command, args)
        if "error" in reply:
            raise QMPError("%s: %s" % (command, reply["error"]["desc"]))
        return reply["return"]

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def run_job(self, command, seconds=120, **args):
        """Runs a job command; raises QMPError when the job fails."""
        job = args["job-id"]
        self.cmd(command, **args)
        deadline = time.time() + seconds
        while time.time() < deadline:
            for j in self.cmd("query-jobs"):
                if j["id"] == job and j["status"] == "concluded":
                    self.cmd("job-dismiss", id=job)
                    if "error" in j:
                        raise QMPError("%s: %s" % (command, j["error"]))
                    return
            time.sleep(0.05)
        raise QMPError("%s: job %s did not end" % (command, job))

    def close(self):
        self.sock.close()


def main():
    sock, op = sys.argv[1], sys.argv[2]
    q = QMP(sock)
    if op == "wait-status":
        want, deadline = sys.argv[3], time.time() + float(sys.argv[4])
        while time.time() < deadline:
            status = q.cmd("query-status")["status"]
            if status == want:
                print(status)
                return 0
            time.sleep(0.2)
        print("timed out; status %s" % status)
        return 1
    args = json.loads(sys.argv[4]) if len(sys.argv) > 4 else None
    reply = q.call(sys.argv[3], args)
    print(json.dumps(reply))
    return 0 if "return" in reply else 1


if __name__ == "__main__":
    sys.exit(main())
