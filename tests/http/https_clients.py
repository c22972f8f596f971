"""tests/http/https_clients.py — HTTPS clients for test-https.sh: a load that spans a certificate reload, and a TLS handshake attack.

Usage:
  https_clients.py load ADDR CA SECONDS GO_FILE OUT_FILE
      Threads request /hello.txt over new TLS connections (and one
      kept-alive connection) for SECONDS; prints the subjects' CNs seen before
      and after GO_FILE appeared, and every failure. Exit 1 on any failure.
  https_clients.py attack ADDR N_GARBAGE N_IDLE TIMEOUT
      N_GARBAGE connections send random bytes or a truncated ClientHello,
      N_IDLE say nothing; all must be closed by the server within TIMEOUT + 3 s
      (the handshake timeout) and none of them may be answered with HTTP.
"""
import os
import random
import selectors
import socket
import ssl
import sys
import threading
import time


def split(addr):
    host, _, port = addr.rpartition(":")
    return host, int(port)


def cn_of(cert):
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return "?"


def get(ctx, addr, sock=None):
    """One GET /hello.txt; returns (conn, cn, body). A fresh connection if sock is None."""
    if sock is None:
        raw = socket.create_connection(split(addr), timeout=5)
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
    sock.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: localhost\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed before the headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError("status %r" % status)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError("closed in the body")
        body += chunk
    return sock, cn_of(sock.getpeercert()), body


def load(addr, ca, seconds, go_file, out_file):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    lock = threading.Lock()
    seen = {"before": {}, "after": {}}
    failures = []
    count = [0]
    end = time.monotonic() + seconds

    def note(phase, cn):
        with lock:
            seen[phase][cn] = seen[phase].get(cn, 0) + 1
            count[0] += 1

    def fresh():
        while time.monotonic() < end:
            # The phase is read before connecting: a connection that started
            # before the reload may see either certificate.
            after = os.path.exists(go_file)
            try:
                s, cn, body = get(ctx, addr)
                s.close()
                if body != b"hello, https\n":
                    raise RuntimeError("body %r" % body)
                note("after" if after else "before", cn)
            except Exception as e:  # noqa: BLE001 — every failure is reported
                with lock:
                    failures.append("new connection: %r" % e)

    def kept():
        # Established connections go on with what they negotiated.
        s = None
        first = None
        while time.monotonic() < end:
            try:
                s, cn, body = get(ctx, addr, s)
                first = first or cn
                if cn != first:
                    raise RuntimeError("kept-alive connection changed certificate")
                with lock:
                    count[0] += 1
            except Exception as e:  # noqa: BLE001
                with lock:
                    failures.append("kept-alive connection: %r" % e)
                s = None
            time.sleep(0.01)
        if s:
            s.close()

    threads = [threading.Thread(target=fresh) for _ in range(4)] + [threading.Thread(target=kept)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with open(out_file, "w") as f:
        for phase in ("before", "after"):
            for cn, n in sorted(seen[phase].items()):
                f.write("%s %s %d\n" % (phase, cn, n))
    print("requests: %d, failures: %d" % (count[0], len(failures)))
    for fl in failures[:20]:
        print("FAIL:", fl)
    for phase in ("before", "after"):
        print(phase, seen[phase])
    return 1 if failures or count[0] == 0 else 0


def client_hello():
    """The bytes of a real ClientHello, from an in-memory handshake."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def attack(addr, n_garbage, n_idle, timeout):
    rnd = random.Random(42)
    hello = client_hello()
    socks = []
    kinds = {}
    start = time.monotonic()
    for i in range(n_garbage + n_idle):
        s = socket.create_connection(split(addr), timeout=5)
        s.setblocking(False)
        if i < n_garbage:
            if i % 2 == 0:
                data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 600)))
                kinds[s] = "random"
            else:
                data = hello[: rnd.randint(1, len(hello) - 1)]
                kinds[s] = "truncated"
            try:
                s.send(data)
            except OSError:
                pass  # already refused: fine
        else:
            kinds[s] = "idle"
        socks.append(s)
    print("opened %d connections in %.2f s" % (len(socks), time.monotonic() - start))

    # Wait for the server to close each one (EOF or reset).
    open_ = set(socks)
    closed_at = {}
    deadline = time.monotonic() + timeout + 3
    answered_http = 0
    sel = selectors.DefaultSelector()  # epoll: more fds than select() takes
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except BlockingIOError:
                continue
            if data.startswith(b"HTTP/"):
                answered_http += 1
            if not data:
                closed_at[s] = time.monotonic() - start
                open_.discard(s)
                sel.unregister(s)
    sel.close()
    by_kind = {}
    for s, k in kinds.items():
        d = by_kind.setdefault(k, [0, 0, 0.0])
        d[0] += 1
        if s in closed_at:
            d[1] += 1
            d[2] = max(d[2], closed_at[s])
    for k, (n, c, last) in sorted(by_kind.items()):
        print("%-10s %4d connections, %4d closed by the server, last at %.2f s" % (k, n, c, last))
    for s in socks:
        s.close()
    if answered_http:
        print("FAIL: %d connections got a plain HTTP answer" % answered_http)
        return 1
    if open_:
        print("FAIL: %d connections still open after %.1f s" % (len(open_), timeout + 3))
        return 1
    idle_first = min(closed_at[s] for s in socks if kinds[s] == "idle")
    if idle_first < timeout - 0.5:
        print("FAIL: idle connections closed at %.2f s, before the %d s timeout" % (idle_first, timeout))
        return 1
    return 0


def main():
    mode = sys.argv[1]
    if mode == "load":
        return load(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5], sys.argv[6])
    if mode == "attack":
        return attack(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
