#!/usr/bin/python3
"""Minimal QMP client for the VM tests.

    qmp.py SOCKET wait-status STATUS SECONDS   wait until query-status says STATUS
    qmp.py SOCKET cmd COMMAND                  run a command without arguments
"""
import json
import socket
import sys
import time


def connect(path, seconds=30):
    deadline = time.time() + seconds
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    f = s.makefile("rw")
    json.loads(f.readline())  # greeting
    call(f, "qmp_capabilities")
    return f


def call(f, command):
    f.write(json.dumps({"execute": command}) + "\n")
    f.flush()
    while True:
        reply = json.loads(f.readline())
        if "return" in reply or "error" in reply:
            return reply


def main():
    sock, op = sys.argv[1], sys.argv[2]
    f = connect(sock)
    if op == "wait-status":
        want, deadline = sys.argv[3], time.time() + float(sys.argv[4])
        while time.time() < deadline:
            status = call(f, "query-status")["return"]["status"]
            if status == want:
                print(status)
                return 0
            time.sleep(0.2)
        print("timed out; status %s" % status)
        return 1
    reply = call(f, sys.argv[3])
    print(json.dumps(reply))
    return 0 if "return" in reply else 1


if __name__ == "__main__":
    sys.exit(main())
