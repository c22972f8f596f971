#!/usr/bin/env python3
"""tests/http/systemd-notify.py — stands in for systemd's notify socket.

Usage: systemd-notify.py SOCKET LOG [ADDR...]

Binds the unix datagram socket SOCKET (what NOTIFY_SOCKET names) and appends
each message to LOG as "SECONDS FIELD|FIELD|…" (monotonic time). The first
line, "bound", says the socket is there. When a message carries READY=1, it
connects right away to each ADDR (HOST:PORT or a unix socket path) and logs
"connect ADDR ok" or "connect ADDR failed: REASON": READY=1 must mean that
every listener takes connections. Runs until killed.
"""
import os
import socket
import sys
import time


def try_connect(addr):
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target = addr
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        target = (host, int(port))
    s.settimeout(2)
    try:
        s.connect(target)
        return "ok"
    except OSError as e:
        return "failed: %s" % e
    finally:
        s.close()


def main():
    path, log_path, addrs = sys.argv[1], sys.argv[2], sys.argv[3:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if os.path.exists(path):
        os.unlink(path)
    sock.bind(path)
    with open(log_path, "a", buffering=1) as log:
        log.write("bound\n")
        while True:
            data = sock.recv(65536)
            text = data.decode("utf-8", "replace")
            fields = [f for f in text.split("\n") if f]
            log.write("%.3f %s\n" % (time.monotonic(), "|".join(fields)))
            if "READY=1" in fields:
                for addr in addrs:
                    log.write("connect %s %s\n" % (addr, try_connect(addr)))


if __name__ == "__main__":
    main()
