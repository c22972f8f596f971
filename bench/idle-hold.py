#!/usr/bin/env python3
"""bench/idle-hold.py — hold many idle keep-alive connections open against a
server and measure what they cost it: the growth of its VmRSS per connection,
and the latency of a normal client's requests while they are open.

    idle-hold.py --addr HOST:PORT --pid PID --count N [--fresh] [--target /x]
                 [--probes M] [--new-probes K] [--settle SECS] [--timeout SECS]

Each connection is opened and (unless --fresh) asked one request, whose
response is read whole; then nothing more is sent on it. --fresh connections
never send a byte. The server's RSS is read from /proc/PID/status before and
once every connection is accepted (its fd count says so) and the RSS has
settled. Then a normal client asks M requests on one keep-alive connection,
then K (default M) each on a new connection, each timed. Prints one line of key=value
pairs; exits 1 when a connection failed or was closed by the server while
held, 2 on bad usage. Every wait is bounded by --timeout.
"""
import argparse
import os
import socket
import sys
import time


def vmrss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for pid %d" % pid)


def n_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def connect(host, port, timeout, source=None):
    """A TCP connection without a name lookup: only the server is timed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if source:
            s.bind((source, 0))
        s.connect((host.strip("[]"), port))
    except OSError:
        s.close()
        raise
    return s


def request(target, host):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, host)).encode()


def read_response(s, deadline):
    """One response on s (Content-Length framed): its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        s.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the end of the response body")
        body += chunk
    if len(body) > length:
        raise ConnectionError("more bytes than the response announced")
    return status


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--target", default="/")
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--new-probes", type=int)
    ap.add_argument("--settle", type=float, default=0.5)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--batch", type=int, default=200)
    a = ap.parse_args()
    host, _, port = a.addr.rpartition(":")
    port = int(port)
    deadline = time.monotonic() + a.timeout
    req = request(a.target, a.addr)

    def fail(msg):
        print("idle-hold.py: " + msg, file=sys.stderr)
        sys.exit(1)

    # Warm-up: whatever the server allocates once (a first request's
    # caches, its date string) is not a connection's cost.
    for _ in range(3):
        s = connect(host, port, 5)
        s.sendall(req)
        if read_response(s, deadline) != 200:
            fail("the warm-up request was not answered 200")
        s.close()
    time.sleep(a.settle)
    fds0 = n_fds(a.pid)
    rss0 = vmrss_kib(a.pid)

    held = []
    t_open = time.monotonic()
    while len(held) < a.count:
        batch = []
        for _ in range(min(a.batch, a.count - len(held))):
            try:
                s = connect(host, port, 10)
            except OSError as e:
                fail("connection %d: %s" % (len(held) + len(batch) + 1, e))
            batch.append(s)
        if not a.fresh:
            for s in batch:
                s.sendall(req)
            for s in batch:
                try:
                    status = read_response(s, deadline)
                except (OSError, ConnectionError) as e:
                    fail("connection %d: %s" % (len(held) + 1, e))
                if status != 200:
                    fail("connection %d: status %d" % (len(held) + 1, status))
        held.extend(batch)
        if time.monotonic() > deadline:
            fail("%d connections of %d opened in %.0f s" % (len(held), a.count, a.timeout))
    open_secs = time.monotonic() - t_open

    # Every connection accepted, then the RSS still for a moment.
    while n_fds(a.pid) < fds0 + a.count:
        if time.monotonic() > deadline:
            fail("the server holds %d fds, want %d" % (n_fds(a.pid), fds0 + a.count))
        time.sleep(0.05)
    time.sleep(a.settle)
    rss1 = vmrss_kib(a.pid)
    while True:
        time.sleep(a.settle)
        rss2 = vmrss_kib(a.pid)
        if rss2 == rss1 or time.monotonic() > deadline:
            break
        rss1 = rss2
    rss1 = rss2

    # A normal client meanwhile: keep-alive, then a connection per request.
    ka = []
    s = connect(host, port, 5)
    for _ in range(a.probes):
        t = time.monotonic()
        s.sendall(req)
        if read_response(s, deadline) != 200:
            fail("a keep-alive probe was not answered 200")
        ka.append(time.monotonic() - t)
    s.close()
    new = []
    # From another loopback address: with most ports of 127.0.0.1 held to
    # the server's address, the kernel's search for a free one would take
    # a millisecond per connect (the client's time, not the server's).
    source = "127.0.0.2" if host == "127.0.0.1" else None
    for _ in range(a.probes if a.new_probes is None else a.new_probes):
        t = time.monotonic()
        s = connect(host, port, 5, source)
        s.sendall(req)
        if read_response(s, deadline) != 200:
            fail("a probe on a new connection was not answered 200")
        s.close()
        new.append(time.monotonic() - t)

    # None of the held connections was closed meanwhile.
    closed = 0
    for s in held:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in held:
        s.close()
    if closed:
        fail("the server closed %d of the %d held connections" % (closed, a.count))

    per_conn = (rss1 - rss0) * 1024 / a.count
    print("count=%d fresh=%d rss_before_kib=%d rss_after_kib=%d bytes_per_conn=%.0f "
          "open_secs=%.1f ka_p50_ms=%.2f ka_p99_ms=%.2f new_p50_ms=%.2f new_p99_ms=%.2f" %
          (a.count, int(a.fresh), rss0, rss1, per_conn, open_secs,
           percentile(ka, 0.5) * 1000, percentile(ka, 0.99) * 1000,
           percentile(new, 0.5) * 1000, percentile(new, 0.99) * 1000))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(1)
