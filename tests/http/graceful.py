"""tests/http/graceful.py — SIGTERM with 50 slow responses in flight: all finish, nothing new gets in.

Usage: graceful.py ADDR PID   (sends SIGTERM to PID itself, at the right moment)
"""
import os
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, sys.path[0])
from httpraw import Closed, Conn  # noqa: E402

addr, pid = sys.argv[1], int(sys.argv[2])
N = 50
SLOW_MS = 1500
failures = []


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


results = [None] * N
sent = threading.Semaphore(0)


def client(i):
    try:
        c = Conn(addr, timeout=5)
    except OSError as e:
        results[i] = ("connect", str(e))
        sent.release()
        return
    try:
        t0 = time.monotonic()
        c.send(b"GET /slow?ms=%d HTTP/1.1\r\nHost: t\r\n\r\n" % SLOW_MS)
        sent.release()
        r = c.read_response(timeout=8)
        took = time.monotonic() - t0
        # Once stopping, the server closes the connection after the response.
        closed = c.wait_eof(3)
        results[i] = ("done", r.status, r.body, took, closed)
    except Exception as e:  # noqa: BLE001 - every failure counts
        results[i] = ("error", "%s: %s" % (type(e).__name__, e))
    finally:
        c.close()


# First, clients that go away in the middle: the server's abort paths run
# (the exit status under ASan tells whether they leaked).
def rst_close(conn):
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


aborts = 0
for close in (Conn.close, rst_close):
    c = Conn(addr)  # a huge stream, left after 64 KiB
    c.send(b"GET /stream?bytes=1073741824 HTTP/1.1\r\nHost: t\r\n\r\n")
    got = 0
    while got < 65536:
        data = c.sock.recv(65536)  # bounded by the socket's timeout
        if not data:
            break
        got += len(data)
    close(c)
    c = Conn(addr)  # an echo whose response the client never reads
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 16777216\r\n\r\n")
    c.sock.settimeout(0.5)
    try:
        for _ in range(64):
            c.sock.sendall(b"x" * 65536)
    except (socket.timeout, TimeoutError):
        pass  # backpressure all the way to us: the server stopped reading
    close(c)
    c = Conn(addr)  # a chunked echo cut in the middle of the body
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    time.sleep(0.05)
    close(c)
    c = Conn(addr)  # a sink cut short
    c.send(b"POST /sink HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc")
    time.sleep(0.05)
    close(c)
    c = Conn(addr)  # a slow answer nobody waits for
    c.send(b"GET /slow?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n")
    close(c)
    aborts += 5
time.sleep(0.5)
c = Conn(addr)
c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
check(c.read_response().body == b"hello\n", "%d clients gone mid-request, the server still answers" % aborts)
c.close()

# An idle kept-alive connection: graceful stop closes it.
idle = Conn(addr, timeout=5)
idle.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
check(idle.read_response().status == 200, "idle connection: first answer")

threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(N)]
for t in threads:
    t.start()
for _ in range(N):
    if not sent.acquire(timeout=10):
        check(False, "all %d requests sent within 10 s" % N)
        sys.exit(1)
# Sent is not yet read: give the server time to take all of them in.
time.sleep(0.3)
t_term = time.monotonic()
os.kill(pid, signal.SIGTERM)
print("SIGTERM sent with %d requests in flight" % N)

check(idle.wait_eof(1.0), "idle connection closed within 1 s of SIGTERM")
idle.close()

# Give the server a moment to close its listeners, then try a new connection:
# refused, or closed without an answer.
time.sleep(0.1)
try:
    late = Conn(addr, timeout=2)
    try:
        late.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    except OSError:
        pass
    try:
        r = late.read_response(timeout=4)
        check(False, "a new connection after SIGTERM was answered: %r" % r)
    except (Closed, ConnectionError):
        check(True, "a new connection after SIGTERM was closed without an answer")
    except (TimeoutError, socket.timeout):
        check(False, "a new connection after SIGTERM hung")
    late.close()
except ConnectionRefusedError:
    check(True, "a new connection after SIGTERM was refused")

for t in threads:
    t.join(12)
done = [r for r in results if r and r[0] == "done"]
full = [r for r in done if r[1] == 200 and r[2] == b"slow %d\n" % SLOW_MS]
took = [r[3] for r in done]
print("in-flight requests: %d done, %d with 200 and the full body, took %.2f..%.2f s, "
      "%d closed by the server after" % (len(done), len(full), min(took or [0]), max(took or [0]),
                                         sum(1 for r in done if r[4])))
for r in results:
    if not r or r[0] != "done":
        print("  failed: %r" % (r,))
check(len(full) == N, "all %d in-flight requests answered 200 with the full body" % N)
check(all(r[3] >= SLOW_MS / 1000 - 0.05 for r in done), "none cut short")
check(all(r[4] for r in done), "each connection closed after its response")
print("SIGTERM to last response: %.2f s" % (time.monotonic() - t_term))

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
