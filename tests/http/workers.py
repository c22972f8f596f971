#!/usr/bin/env python3
"""tests/http/workers.py — the clients of test-workers.sh, on loopback.

Usage:
  workers.py hold ADDR N QUIT [--ca CA [--name NAME] --expect PEM|--serial HEX]
      Opens N connections one after the other; on each, one keep-alive
      GET /index.html, read whole before the next connection opens. With
      --ca: over TLS, verified against CA for NAME (default localhost), and
      the server's certificate must be PEM's, or have serial HEX. Prints
      "held N", then keeps them open until the file QUIT exists (at most
      60 s).
  workers.py drain ADDR N PID FILE
      N connections, each GET /NAME (FILE's name) and reads 64 KiB of it;
      then SIGTERM to PID; a new connection must be refused within 5 s;
      then each reads the rest, which must be FILE byte for byte, and the
      connection must close after it.
Exits 1, saying why, on any failure.
"""
import os
import signal
import socket
import ssl
import sys
import time

TIMEOUT = 10


def die(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def connect(addr, ca=None, rcvbuf=None, name="localhost"):
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    if rcvbuf:
        # Before connecting: the window is agreed on then.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, int(port)))
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        s = ctx.wrap_socket(s, server_hostname=name)
    return s


def read_head(s, buf=b""):
    """The status line and headers; what came after them."""
    deadline = time.monotonic() + TIMEOUT
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            die("no response head in %d s" % TIMEOUT)
        chunk = s.recv(65536)
        if not chunk:
            die("connection closed before the response head")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def read_exactly(s, n, have=b""):
    data = bytearray(have)
    deadline = time.monotonic() + 60
    while len(data) < n:
        if time.monotonic() > deadline:
            die("body: %d of %d bytes in 60 s" % (len(data), n))
        chunk = s.recv(min(1 << 20, n - len(data)))
        if not chunk:
            die("body: connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return bytes(data)


def request(s, i):
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, headers, rest = read_head(s)
    if status != 200:
        die("connection %d: status %d" % (i + 1, status))
    read_exactly(s, int(headers.get("content-length", "0")), rest)


def hold(addr, n, quit_path, ca, name, expect, serial):
    want = None
    if expect:
        with open(expect) as f:
            want = ssl.PEM_cert_to_DER_cert(f.read())
    conns = []
    for i in range(n):
        s = connect(addr, ca, name=name)
        conns.append(s)
        if want is not None and s.getpeercert(binary_form=True) != want:
            die("connection %d: the server's certificate is not %s" % (i + 1, expect))
        got = s.getpeercert().get("serialNumber", "") if serial else None
        if serial and got.lstrip("0").upper() != serial.lstrip("0").upper():
            die("connection %d: serial %s, not %s" % (i + 1, got, serial))
        request(s, i)
    print("held %d" % n, flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(quit_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    for s in conns:
        s.close()


def refused(addr):
    host, port = addr.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)), timeout=1)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def drain(addr, n, pid, path):
    with open(path, "rb") as f:
        expected = f.read()
    name = os.path.basename(path)
    conns = []
    for i in range(n):
        # A small receive buffer: the response stays in flight.
        s = connect(addr, rcvbuf=65536)
        s.sendall(("GET /%s HTTP/1.1\r\nHost: localhost\r\n\r\n" % name).encode())
        status, headers, rest = read_head(s)
        if status != 200 or int(headers.get("content-length", "-1")) != len(expected):
            die("connection %d: status %d, %s bytes" % (i + 1, status, headers.get("content-length")))
        conns.append((s, read_exactly(s, 65536, rest)))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while not refused(addr):
        if time.monotonic() > deadline:
            die("new connections still taken 5 s after SIGTERM")
        time.sleep(0.05)
    print("new connections refused after SIGTERM", flush=True)
    for i, (s, have) in enumerate(conns):
        body = read_exactly(s, len(expected), have)
        if body != expected:
            die("connection %d: the body differs" % (i + 1))
        s.settimeout(TIMEOUT)
        if s.recv(1) != b"":
            die("connection %d: not closed after its response" % (i + 1))
        s.close()
    print("drained %d" % n, flush=True)


def main():
    args = sys.argv[1:]
    if args[0] == "hold":
        opt = {}
        for key in ("--ca", "--name", "--expect", "--serial"):
            if key in args:
                opt[key] = args[args.index(key) + 1]
        hold(args[1], int(args[2]), args[3], opt.get("--ca"), opt.get("--name", "localhost"),
             opt.get("--expect"), opt.get("--serial"))
    elif args[0] == "drain":
        drain(args[1], int(args[2]), int(args[3]), args[4])
    else:
        die("unknown command " + args[0])


if __name__ == "__main__":
    main()
