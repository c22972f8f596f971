"""tests/http/pipeline.py — pipelining and connection handling that curl cannot show, on one address.

Usage: pipeline.py ADDR   (127.0.0.1:PORT, [::1]:PORT or a unix socket path)
"""
import sys
import time

sys.path.insert(0, sys.path[0])
from httpraw import Conn  # noqa: E402

addr = sys.argv[1]
failures = []


def check(cond, what):
    print(("ok:   " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


def get(target, extra=""):
    return ("GET %s HTTP/1.1\r\nHost: test\r\n%s\r\n" % (target, extra)).encode()


# Three requests in one write; the first is the slowest, yet responses come
# back in request order, all on this one connection.
c = Conn(addr)
t0 = time.monotonic()
c.send(get("/slow?ms=200") + get("/hello") + get("/slow?ms=50"))
bodies = []
for _ in range(3):
    r = c.read_response(timeout=5)
    bodies.append((r.status, r.body, round((time.monotonic() - t0) * 1000)))
print("pipelined responses (status, body, ms since sent):", bodies)
check([b for _, b, _ in bodies] == [b"slow 200\n", b"hello\n", b"slow 50\n"],
      "3 pipelined responses in request order")
check(all(s == 200 for s, _, _ in bodies), "3 pipelined responses are 200")
check(bodies[0][2] >= 190, "the first waited its 200 ms")
# And the connection is still usable afterwards.
c.send(get("/hello"))
r = c.read_response()
check(r.status == 200 and r.body == b"hello\n", "a 4th request on the same connection")
c.close()

# HEAD: the headers of the GET, Content-Length included, and no body: the next
# response on the connection starts right after the head.
c = Conn(addr)
c.send(("HEAD /hello HTTP/1.1\r\nHost: test\r\n\r\n").encode() + get("/hello"))
h = c.read_response(head=True)
check(h.status == 200 and h.header("content-length") == "6", "HEAD: 200 with Content-Length: 6")
g = c.read_response()
check(g.status == 200 and g.body == b"hello\n", "HEAD: no body (next response parses)")
c.close()

# Connection: close and HTTP/1.0 without keep-alive: one answer, then EOF.
for name, req in (("Connection: close", get("/hello", "Connection: close\r\n")),
                  ("HTTP/1.0", b"GET /hello HTTP/1.0\r\n\r\n")):
    c = Conn(addr)
    c.send(req)
    r = c.read_response()
    check(r.status == 200 and r.body == b"hello\n", name + ": answered")
    check(c.wait_eof(3), name + ": then closed by the server")
    c.close()

# Unknown path.
c = Conn(addr)
c.send(get("/nope"))
check(c.read_response().status == 404, "unknown path: 404")
c.close()

if failures:
    print("%d failure(s)" % len(failures))
    sys.exit(1)
