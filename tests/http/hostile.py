"""tests/http/hostile.py — malformed and smuggling requests, then slowloris, while a good client goes on.

Usage: hostile.py ADDR corpus|slowloris
The server must run with [http] max-body = 4096 and header-timeout = 2.
"""
import selectors
import socket
import sys
import multiprocessing
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, sys.path[0])
from httpraw import Closed, Conn, connect  # noqa: E402

addr, mode = sys.argv[1], sys.argv[2]
HEADER_TIMEOUT = 2.0
ROUNDS = 3


def req(head, body=b""):
    return head.encode("latin-1") + b"\r\n" + body


H = "Host: t\r\n"
BAD = {400}
VERSION = {400, 505}
TOO_BIG = {431}
CUT = "cut"
# (name, request bytes, statuses accepted). Each runs on its own connection.
CORPUS = [
    ("CL and TE", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                      b"0\r\n\r\n"), BAD),
    ("TE and CL", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                      b"0\r\n\r\n"), BAD),
    ("duplicate CL", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
     BAD),
    ("conflicting CL", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 6\r\n",
                           b"hello!"), BAD),
    ("CL list", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: 5, 6\r\n", b"hello!"), BAD),
    ("negative CL", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: -1\r\n"), BAD),
    ("non-numeric CL", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: abc\r\n"), BAD),
    ("CL with sign", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: +5\r\n", b"hello"), BAD),
    ("CL overflow", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: 99999999999999999999999\r\n"),
     {400, 413}),
    ("chunk size not hex", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n",
                               b"zz\r\nhello\r\n0\r\n\r\n"), BAD),
    ("chunk size huge", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n",
                            b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), {400, 413}),
    ("chunk size negative", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n",
                                b"-5\r\nhello\r\n0\r\n\r\n"), BAD),
    ("chunk size missing", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n",
                               b"\r\nhello\r\n0\r\n\r\n"), BAD),
    ("chunk data without CRLF", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n",
                                    b"5\r\nhelloXX0\r\n\r\n"), BAD),
    ("chunk extension with CTL", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n",
                                     b"5;a\x01b\r\nhello\r\n0\r\n\r\n"), BAD),
    ("chunk over max-body", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n",
                                b"2000\r\n" + b"x" * 0x2000 + b"\r\n0\r\n\r\n"), {413}),
    ("obs-fold", req("GET /hello HTTP/1.1\r\n" + H + "X-A: a\r\n b\r\n"), BAD),
    ("bare CR in value", req("GET /hello HTTP/1.1\r\n" + H + "X-A: a\rb\r\n"), BAD),
    ("NUL in value", req("GET /hello HTTP/1.1\r\n" + H + "X-A: a\0b\r\n"), BAD),
    ("CTL in value", req("GET /hello HTTP/1.1\r\n" + H + "X-A: a\x01b\r\n"), BAD),
    ("NUL in name", req("GET /hello HTTP/1.1\r\n" + H + "X\0A: b\r\n"), BAD),
    ("header without colon", req("GET /hello HTTP/1.1\r\n" + H + "XA\r\n"), BAD),
    ("space before colon", req("GET /hello HTTP/1.1\r\n" + H + "X-A : b\r\n"), BAD),
    ("space in name", req("GET /hello HTTP/1.1\r\n" + H + "X A: b\r\n"), BAD),
    ("separator in name", req("GET /hello HTTP/1.1\r\n" + H + "X[A]: b\r\n"), BAD),
    ("empty name", req("GET /hello HTTP/1.1\r\n" + H + ": b\r\n"), BAD),
    ("bad method token", req("G(T /hello HTTP/1.1\r\n" + H), BAD),
    ("unknown method", req("FOO /hello HTTP/1.1\r\n" + H), {400, 405, 501}),
    ("version HTTP/1.2", req("GET /hello HTTP/1.2\r\n" + H), VERSION),
    ("version HTTP/2.0", req("GET /hello HTTP/2.0\r\n" + H), VERSION),
    ("version HTTX/1.1", req("GET /hello HTTX/1.1\r\n" + H), BAD),
    ("no version", req("GET /hello\r\n" + H), {400, 505}),
    ("missing Host", req("GET /hello HTTP/1.1\r\n"), BAD),
    ("double Host", req("GET /hello HTTP/1.1\r\n" + H + "Host: u\r\n"), BAD),
    ("space in target", req("GET /he llo HTTP/1.1\r\n" + H), BAD),
    ("CTL in target", req("GET /he\x01llo HTTP/1.1\r\n" + H), BAD),
    ("header too large", req("GET /hello HTTP/1.1\r\n" + H + "X-Big: " + "a" * 20000 + "\r\n"), TOO_BIG),
    ("target too large", req("GET /" + "a" * 20000 + " HTTP/1.1\r\n" + H), {414, 431}),
    ("too many headers", req("GET /hello HTTP/1.1\r\n" + H + "".join("X-N%d: v\r\n" % i for i in range(150))),
     TOO_BIG),
    ("body too large", req("POST /sink HTTP/1.1\r\n" + H + "Content-Length: 100000\r\n"), {413}),
    ("TE gzip without chunked", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n", b"hello"),
     BAD),
    ("TE identity", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: identity\r\nContent-Length: 5\r\n",
                        b"hello"), BAD),
    ("TE chunked not last", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked, gzip\r\n",
                                b"0\r\n\r\n"), BAD),
    ("TE chunked twice", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked, chunked\r\n",
                             b"0\r\n\r\n"), BAD),
    ("TE header twice", req("POST /sink HTTP/1.1\r\n" + H +
                            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"), BAD),
    ("TE xchunked", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), BAD),
    ("TE with vertical tab", req("POST /sink HTTP/1.1\r\n" + H + "Transfer-Encoding:\x0bchunked\r\n",
                                 b"0\r\n\r\n"), BAD),
    # /echo has started its 200 when the bad chunk comes: no status can follow,
    # the response must be cut (no last chunk) and the connection closed.
    ("bad chunk after the response began", req("POST /echo HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n",
                                                b"5\r\nhelloXX0\r\n\r\n"), CUT),
    ("TE in HTTP/1.0", req("POST /sink HTTP/1.0\r\n" + H + "Transfer-Encoding: chunked\r\n", b"0\r\n\r\n"), BAD),
]


class GoodClient:
    """GET /hello on keep-alive (a new connection every 25 requests) until
    stopped; every request must be answered, each latency is recorded. It runs
    in a process of its own: the attacking threads and their GIL would blur
    its latencies."""

    def __init__(self, pause):
        self.pause = pause
        self.stop = multiprocessing.Event()
        self._rx, tx = multiprocessing.Pipe(duplex=False)
        self._proc = multiprocessing.Process(target=self._run, args=(tx,), daemon=True)
        self.sent = self.answered = 0
        self.errors = []
        self.max_latency = self.worst_at = 0.0

    def start(self):
        self._proc.start()

    def join(self, timeout):
        if self._rx.poll(timeout):
            self.sent, self.answered, self.errors, self.max_latency, self.worst_at = self._rx.recv()
        else:
            self.errors.append("no report from the good client")
        self._proc.join(1)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()

    def _run(self, tx):
        conn = None
        start = time.monotonic()
        # Bounded even if the parent died without telling it to stop.
        while not self.stop.is_set() and time.monotonic() - start < 60:
            try:
                t0 = time.monotonic()
                if conn is None or self.sent % 25 == 0:
                    if conn:
                        conn.close()
                    conn = Conn(addr, timeout=2)
                self.sent += 1
                conn.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                r = conn.read_response(timeout=2)
                dt = time.monotonic() - t0
                if r.status != 200 or r.body != b"hello\n":
                    self.errors.append("request %d: %r" % (self.sent, r))
                else:
                    self.answered += 1
                    if dt > self.max_latency:
                        self.max_latency, self.worst_at = dt, t0 - start
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.errors.append("request %d: %s: %s" % (self.sent, type(e).__name__, e))
                conn = None
            self.stop.wait(self.pause)
        if conn:
            conn.close()
        tx.send((self.sent, self.answered, self.errors, self.max_latency, self.worst_at))


def run_one(item):
    """(name, status or None, closed, detail)."""
    name, data, want = item
    try:
        c = Conn(addr, timeout=3)
    except OSError as e:
        return name, None, False, "connect: %s" % e
    try:
        try:
            c.send(data)
        except OSError:
            pass  # the server may close before taking it all; its answer counts
        if want == CUT:
            closed = c.wait_eof(3)
            cut = (c.buf.startswith(b"HTTP/1.1 200 ") and b"\r\n\r\n5\r\nhello\r\n" in c.buf
                   and not c.buf.endswith(b"0\r\n\r\n"))
            return name, CUT if cut else None, closed, "200 cut after %d bytes" % len(c.buf)
        try:
            r = c.read_response(timeout=3)
        except (Closed, TimeoutError, socket.timeout, ValueError) as e:
            return name, None, c.eof, "no response: %s" % e
        closed = c.wait_eof(3)
        return name, r.status, closed, "%d %s" % (r.status, r.reason)
    finally:
        c.close()


def ok(result, item):
    _, status, closed, _ = result
    want = item[2]
    return closed and (status == want if want == CUT else status in want)


def corpus():
    good = GoodClient(pause=0.005)
    good.start()
    time.sleep(0.1)
    # Several rounds, so that the good client overlaps the attacks for a while.
    with ThreadPoolExecutor(max_workers=8) as pool:
        rounds = [list(pool.map(run_one, CORPUS)) for _ in range(ROUNDS)]
    # An item passes only if it passed in every round.
    results = [next((r for r in attempts if not ok(r, item)), attempts[0])
               for attempts, item in zip(zip(*rounds), CORPUS)]
    time.sleep(0.1)
    good.stop.set()
    good.join(5)
    failed = 0
    for result, item in zip(results, CORPUS):
        name, _, closed, detail = result
        print("%s %-36s %-40s %s" % ("ok:  " if ok(result, item) else "FAIL:", name, detail,
                                      "closed" if closed else "NOT CLOSED"))
        if not ok(result, item):
            failed += 1
    print("corpus: %d malformed requests x %d rounds, %d refused and closed as expected every time" %
          (len(CORPUS), ROUNDS, len(CORPUS) - failed))
    print("good client meanwhile: %d sent, %d answered, %d errors, max latency %.1f ms (at %.2f s)" %
          (good.sent, good.answered, len(good.errors), good.max_latency * 1000, good.worst_at))
    for e in good.errors[:10]:
        print("  good client: " + e)
    if good.answered == 0 or good.errors or good.answered != good.sent:
        failed += 1
    return failed


def slowloris(n=200, interval=0.2, slack=1.5):
    """n connections trickle a header one byte per interval; each must be closed
    by the header timeout (+ slack), while /hello stays fast."""
    payload = b"GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 4096
    # Forked before the attack's sockets exist, so that it holds none of them.
    good = GoodClient(pause=0.02)
    good.start()
    socks = []
    for _ in range(n):
        s = connect(addr, timeout=3)
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    for i, s in enumerate(socks):
        sel.register(s, selectors.EVENT_READ, i)
    first = [None] * n
    closed_after = [None] * n
    pos = [0] * n
    start = time.monotonic()
    deadline = start + HEADER_TIMEOUT + slack + 1.0
    next_tick = start
    while time.monotonic() < deadline and any(c is None for c in closed_after):
        now = time.monotonic()
        if now >= next_tick:
            for i, s in enumerate(socks):
                if closed_after[i] is not None:
                    continue
                try:
                    s.send(payload[pos[i]:pos[i] + 1])
                    pos[i] += 1
                    if first[i] is None:
                        first[i] = now
                except BlockingIOError:
                    pass
                except OSError:
                    closed_after[i] = now - (first[i] or now)
                    sel.unregister(s)
            next_tick += interval
        for key, _ in sel.select(timeout=max(0.0, min(next_tick, deadline) - time.monotonic())):
            i = key.data
            try:
                data = socks[i].recv(65536)  # a 408 first is fine
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed_after[i] = time.monotonic() - first[i]
                sel.unregister(socks[i])
    good.stop.set()
    good.join(5)
    for s in socks:
        s.close()
    times = [t for t in closed_after if t is not None]
    n_open = n - len(times)
    early = [t for t in times if t < HEADER_TIMEOUT - 0.5]
    late = [t for t in times if t > HEADER_TIMEOUT + slack]
    print("slowloris: %d connections, header-timeout %.0f s: %d closed (after %.2f..%.2f s), "
          "%d still open, %d too early, %d too late; bytes sent per connection: %d..%d" %
          (n, HEADER_TIMEOUT, len(times), min(times or [0]), max(times or [0]), n_open, len(early),
           len(late), min(pos), max(pos)))
    print("good client meanwhile: %d sent, %d answered, %d errors, max latency %.1f ms (at %.2f s)" %
          (good.sent, good.answered, len(good.errors), good.max_latency * 1000, good.worst_at))
    for e in good.errors[:10]:
        print("  good client: " + e)
    failed = n_open + len(early) + len(late)
    if good.answered == 0 or good.errors or good.answered != good.sent:
        failed += 1
    if good.max_latency > 0.1:
        print("FAIL: a /hello took more than 100 ms")
        failed += 1
    return failed


failed = corpus() if mode == "corpus" else slowloris()
sys.exit(1 if failed else 0)
