"""tests/http/pipeline_batch.py — 16 pipelined GETs in one write to `paf serve`, answered in order and byte-exact; with strace, how many sendmsg/writev calls carried the answers.

Usage: pipeline_batch.py ADDR ROOT N [TRACE]
  ADDR   127.0.0.1:PORT
  ROOT   the served directory, holding f0 … f{N-1}
  TRACE  the output file (-o) of an strace attached to the server: its write
         calls on this connection are counted for the batch alone (a probe
         request first shows that strace is attached, names the
         connection's fd and marks where the batch begins)
Prints "writes N" for the batch when tracing.
"""
import os
import re
import sys
import time

sys.path.insert(0, sys.path[0])
from httpraw import Conn  # noqa: E402

addr, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
trace = sys.argv[4] if len(sys.argv) > 4 else None
WRITE = re.compile(r"\b(sendmsg|writev|sendto|write)\((\d+),")


def get(target):
    return ("GET %s HTTP/1.1\r\nHost: test\r\n\r\n" % target).encode()


def writes(fd=None):
    """The write calls strace saw so far (on fd, if given), as (fd, line)."""
    if not trace or not os.path.exists(trace):
        return []
    with open(trace, errors="replace") as f:
        calls = [(m.group(2), line) for line in f for m in [WRITE.search(line)] if m]
    return [(d, line) for d, line in calls if fd is None or d == fd]


files = [open(os.path.join(root, "f%d" % i), "rb").read() for i in range(n)]
c = Conn(addr)
# Every file once: the open-file cache holds them, as under load.
for i in range(n):
    c.send(get("/f%d" % i))
    r = c.read_response()
    assert r.status == 200 and r.body == files[i], "warm-up /f%d: %r" % (i, r)

before, fd = 0, None
if trace:
    # strace attaches asynchronously: probe until it shows the probe's answer.
    deadline = time.monotonic() + 10
    while True:
        c.send(get("/f0"))
        c.read_response()
        time.sleep(0.05)
        seen = writes()
        if seen:
            break
        if time.monotonic() > deadline:
            sys.exit("strace saw no write of the server's")
    fd = seen[-1][0]  # the connection's, in the server
    before = len(writes(fd))

c.send(b"".join(get("/f%d" % i) for i in range(n)))
for i in range(n):
    r = c.read_response()
    if r.status != 200 or r.body != files[i]:
        sys.exit("answer %d: %r, want the bytes of /f%d" % (i, r, i))
print("ok: %d pipelined answers in order, byte-exact" % n)

if trace:
    time.sleep(0.2)  # strace writes its lines after the calls
    batch = writes(fd)[before:]
    for _, line in batch:
        m = WRITE.search(line)
        iovs = re.search(r"msg_iovlen=(\d+)", line)
        ret = line.rsplit("=", 1)[-1].strip()
        print("  %s(%s)%s = %s" % (m.group(1), m.group(2),
                                   ", %s buffers" % iovs.group(1) if iovs else "", ret))
    print("writes %d" % len(batch))
c.close()
