"""tests/http/slowpeer.py — peers that read slowly, stop reading, half-close or reset.

Usage:
  slowpeer.py slow ADDR TARGET SIZE RATE MIN_SECONDS [FILE]
      GET TARGET (Connection: close) and read it at RATE bytes/s through a
      small receive buffer; the whole body (SIZE bytes: FILE's, or echo-server's
      /stream pattern) must arrive, and take at least MIN_SECONDS.
  slowpeer.py stall ADDR TARGET LOG TIMEOUT
      GET TARGET and read nothing; the server must report "write timeout" in
      LOG between TIMEOUT and 1.5 × TIMEOUT + 0.5 seconds after the request
      (it asks the transport a few times per timeout), then the client finds
      the body cut.
  slowpeer.py halfclose ADDR TARGET SIZE VERSION
      Send the request (HTTP/VERSION), shut the write side down, read
      everything: a 200 with the whole body (the /stream pattern), then EOF.
  slowpeer.py reset ADDR TARGET [halfclose]
      Send the request (optionally shut the write side down too), wait a
      little, then reset the connection (SO_LINGER 0).
With SLOWPEER_TLS_CA=FILE in the environment, slow and stall speak TLS
(server name "localhost", verified against FILE).
Every wait is bounded; prints what it measured.
"""
import os
import socket
import ssl
import struct
import sys
import time

sys.path.insert(0, sys.path[0])
from httpraw import connect  # noqa: E402

TICK = 0.05


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def pattern(n):
    period = bytes(range(ord("a"), ord("a") + 26))
    return (period * (n // 26 + 1))[:n]


def connect_small_rcvbuf(addr, rcvbuf=16384):
    """TCP with a small receive buffer, or a unix socket (whose sender's
    buffer is all there is: fixed, about 200 KiB)."""
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(addr)
    else:
        host, _, port = addr.rpartition(":")
        family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        # Before connect: the window the kernel offers follows from it, so
        # the server's writes wait on our reading instead of a big buffer.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(5)
        s.connect((host.strip("[]"), int(port)))
    ca = os.environ.get("SLOWPEER_TLS_CA")
    if ca:
        s = ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname="localhost")
    return s


def request(target, version="1.1", close=True):
    head = "GET %s HTTP/%s\r\nHost: t\r\n" % (target, version)
    if close and version == "1.1":
        head += "Connection: close\r\n"
    return (head + "\r\n").encode()


def split_response(data):
    """(status, headers dict, body) of one response delimited by the close."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        fail("no complete response head in %d bytes: %r" % (len(data), data[:200]))
    lines = data[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, data[end + 4:]


def check_body(what, data, size, expected):
    status, headers, body = split_response(data)
    if status != 200:
        fail("%s: status %d" % (what, status))
    if headers.get("content-length") != str(size):
        fail("%s: Content-Length %r, want %d" % (what, headers.get("content-length"), size))
    if len(body) != size:
        fail("%s: got %d of %d body bytes" % (what, len(body), size))
    if body != expected:
        first = next(i for i in range(size) if body[i] != expected[i])
        fail("%s: body differs from byte %d on" % (what, first))


def slow(addr, target, size, rate, min_seconds, path=None):
    expected = open(path, "rb").read() if path else pattern(size)
    per_tick = max(1, int(rate * TICK))
    s = connect_small_rcvbuf(addr, max(16384, 4 * per_tick))
    s.sendall(request(target))
    data = bytearray()
    start = time.monotonic()
    deadline = start + 2 * size / rate + 10
    next_tick = start
    eof = False
    while not eof and time.monotonic() < deadline:
        now = time.monotonic()
        if now < next_tick:
            time.sleep(next_tick - now)
        next_tick += TICK
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(per_tick)
        except (ConnectionResetError, ssl.SSLError):
            chunk = b""
        if not chunk:
            eof = True
        data += chunk
    took = time.monotonic() - start
    s.close()
    print("slow reader: %d bytes in %.1f s (%.0f KiB/s) from %s" %
          (len(data), took, len(data) / took / 1024, target))
    if not eof:
        fail("no end of the response within %.0f s" % (deadline - start))
    check_body("slow reader", bytes(data), size, expected)
    if took < min_seconds:
        fail("the transfer took %.1f s, less than %.1f s: not slow enough to mean anything" %
             (took, min_seconds))
    print("ok: the whole body arrived, intact")


def stall(addr, target, log, timeout):
    s = connect_small_rcvbuf(addr)
    before = open(log, "rb").read().count(b"write timeout")
    s.sendall(request(target, close=False))
    start = time.monotonic()
    took = None
    limit = 1.5 * timeout + 0.5
    while time.monotonic() < start + limit + 2:
        if open(log, "rb").read().count(b"write timeout") > before:
            took = time.monotonic() - start
            break
        time.sleep(0.02)
    if took is None:
        fail("no write timeout reported within %.1f s" % (limit + 2))
    print("stalled reader: cut after %.2f s (write timeout %g s)" % (took, timeout))
    if not timeout * 0.9 <= took <= limit:
        fail("cut after %.2f s, want about %g s" % (took, timeout))
    # What the kernel still holds comes, then the end: fewer bytes than asked.
    data = bytearray()
    s.settimeout(5)
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout, ssl.SSLError):
        pass
    s.close()
    print("stalled reader: %d bytes, then the end" % len(data))
    print("ok: a reader that stops is cut after about the write timeout")


def halfclose(addr, target, size, version):
    s = connect(addr, timeout=10)
    s.sendall(request(target, version, close=False))
    s.shutdown(socket.SHUT_WR)
    data = bytearray()
    start = time.monotonic()
    while time.monotonic() < start + 20:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            fail("HTTP/%s %s: reset after %d bytes" % (version, target, len(data)))
        if not chunk:
            break
        data += chunk
    else:
        fail("HTTP/%s %s: no end within 20 s" % (version, target))
    s.close()
    print("half-closed HTTP/%s client: %d bytes in %.2f s from %s" %
          (version, len(data), time.monotonic() - start, target))
    check_body("half-closed HTTP/%s client" % version, bytes(data), size, pattern(size))
    print("ok: whole response after the client's end of stream, then the close")


def reset(addr, target, half):
    s = connect(addr)
    s.sendall(request(target, close=False))
    if half:
        s.shutdown(socket.SHUT_WR)
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("ok: reset %s%s" % (target, " after a half-close" if half else ""))


def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    if mode == "slow" and len(argv) in (7, 8):
        slow(argv[2], argv[3], int(argv[4]), float(argv[5]), float(argv[6]),
             argv[7] if len(argv) == 8 else None)
    elif mode == "stall" and len(argv) == 6:
        stall(argv[2], argv[3], argv[4], float(argv[5]))
    elif mode == "halfclose" and len(argv) == 6:
        halfclose(argv[2], argv[3], int(argv[4]), argv[5])
    elif mode == "reset" and len(argv) in (4, 5):
        reset(argv[2], argv[3], len(argv) == 5 and argv[4] == "halfclose")
    else:
        print(__doc__)
        sys.exit(2)


main(sys.argv)
