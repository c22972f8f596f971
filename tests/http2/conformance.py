#!/usr/bin/python3
# tests/http2/conformance.py — frame-level HTTP/2 server conformance cases, by the sections of RFC 9113 (and RFC 7541 for HPACK), after h2spec's list.
#
#   conformance.py [--tls] [--only ID[,ID…]] [--list] ADDRESS PATH [FILE]
#
# ADDRESS is HOST:PORT or a unix socket path; PATH a resource the server
# answers with 200 and a body of at least 100 bytes (FILE, when given, is its
# content, compared byte for byte). Each case opens its own connection,
# sends frames as built (hyperframe, hpack, or raw bytes for the invalid
# ones) and checks what RFC 9113 requires of a server: a connection error is
# a GOAWAY with the error code, then the connection closed; a stream error is
# an RST_STREAM with the code (or the same as a connection error), and the
# connection still answers PING afterwards; "ignored" means the connection
# answers PING as if nothing happened. Every read waits at most 2 s.
# One line per case, "ID PASS" or "ID FAIL: why (frames seen)"; the exit
# status is 1 if any case failed.

import argparse
import os
import struct
import sys
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2raw import *  # noqa: E402,F401,F403

CASES = []


def case(cid, desc):
    def reg(fn):
        CASES.append((cid, desc, fn))
        return fn
    return reg


class Fail(Exception):
    pass


class Skip(Exception):
    pass


OPT = None  # the parsed arguments


def conn(*settings, handshake=True):
    c = Conn(OPT.address, tls=OPT.tls)
    if handshake:
        c.handshake(*settings)
    return c


def codes_text(codes):
    return "/".join(error_name(x) for x in codes)


# ---- what a case expects ----

def expect_conn_error(c, codes, close_ok=False):
    """GOAWAY with one of codes, then the server closes the connection.
    close_ok: a close without GOAWAY is allowed (an invalid preface)."""
    try:
        f = c.take(lambda f: f.type == GOAWAY)
    except Closed:
        if close_ok:
            return
        raise Fail("closed without GOAWAY(%s)" % codes_text(codes))
    except Timeout:
        raise Fail("no GOAWAY(%s) within %.0f s" % (codes_text(codes), c.timeout))
    if f.error_code not in codes:
        raise Fail("GOAWAY %s, expected %s" % (error_name(f.error_code), codes_text(codes)))
    # RFC 9113 5.4.1: after GOAWAY for an error, the endpoint MUST close.
    if not c.wait_closed(c.timeout):
        raise Fail("GOAWAY(%s) but the connection stays open" % error_name(f.error_code))


def expect_alive(c, what="after the stream error"):
    data = struct.pack(">Q", int(time.monotonic() * 1e6) & (2**64 - 1))
    try:
        c.ping(data)
        c.take(lambda f: (f.type == PING and f.flags_byte & ACK and bytes(f.opaque_data) == data)
               or f.type == GOAWAY)
    except Closed:
        raise Fail("connection closed %s (no PING ACK)" % what)
    except Timeout:
        raise Fail("no PING ACK %s" % what)
    g = [f for f in c.frames if f.type == GOAWAY]
    if g:
        raise Fail("GOAWAY %s %s" % (error_name(g[0].error_code), what))


def expect_stream_error(c, sid, codes, response_ok=False):
    """RST_STREAM(sid) with one of codes, or a connection error with one of
    them. response_ok: a malformed request may get a 4xx response first
    (RFC 9113 8.1.1)."""
    try:
        f = c.take(lambda f: f.type == GOAWAY or (f.stream_id == sid and (
            f.type == RST_STREAM or (response_ok and f.type == HEADERS))))
    except Closed:
        raise Fail("closed without RST_STREAM or GOAWAY(%s)" % codes_text(codes))
    except Timeout:
        raise Fail("no RST_STREAM(%s) on stream %d within %.0f s" % (codes_text(codes), sid,
                                                                     c.timeout))
    if f.type == GOAWAY:
        c.pending.insert(0, f)
        return expect_conn_error(c, codes)
    if f.type == HEADERS:
        status = dict(f.decoded or []).get(":status", "")
        if not status.startswith("4"):
            raise Fail("stream %d answered %s, expected a stream error %s or a 4xx" %
                       (sid, status, codes_text(codes)))
        return expect_alive(c, "after the 4xx")
    if f.error_code not in codes:
        raise Fail("RST_STREAM %s, expected %s" % (error_name(f.error_code), codes_text(codes)))
    expect_alive(c)


def expect_ignored_or_conn_error(c, codes):
    """What RFC 9113 leaves to the server (frames on a closed stream): ignored,
    or a connection error with one of codes; a stream error with them is
    fine too."""
    data = b"ignored?"
    c.ping(data)
    try:
        f = c.take(lambda f: f.type in (GOAWAY, RST_STREAM) or
                   (f.type == PING and f.flags_byte & ACK and bytes(f.opaque_data) == data))
    except Closed:
        raise Fail("closed without GOAWAY(%s)" % codes_text(codes))
    except Timeout:
        raise Fail("no PING ACK and no GOAWAY within %.0f s" % c.timeout)
    if f.type == PING:
        return
    if f.type == RST_STREAM:
        if f.error_code not in codes:
            raise Fail("RST_STREAM %s, expected %s" % (error_name(f.error_code),
                                                       codes_text(codes)))
        return
    c.pending.insert(0, f)
    expect_conn_error(c, codes)


def expect_response(c, sid, status=None):
    try:
        st, hdrs, body = c.response(sid)
    except Closed:
        raise Fail("closed before the response on stream %d" % sid)
    except Timeout:
        raise Fail("no complete response on stream %d within %.0f s" % (sid, c.timeout))
    except AssertionError as e:
        raise Fail(str(e))
    if st is None:
        raise Fail("stream %d: no :status" % sid)
    if status is not None and st != str(status):
        raise Fail("stream %d: status %s, expected %s" % (sid, st, status))
    return st, hdrs, body


def first_data(c, sid, timeout=None):
    try:
        return c.take(lambda f: (f.type == DATA and f.stream_id == sid) or f.type == GOAWAY or
                      (f.type == RST_STREAM and f.stream_id == sid), timeout)
    except Closed:
        raise Fail("closed before DATA on stream %d" % sid)
    except Timeout:
        raise Fail("no DATA on stream %d within %.0f s" % (sid, c.timeout if timeout is None
                                                            else timeout))


def no_data(c, sid, wait=0.3):
    """No DATA on sid comes (a zero window)."""
    try:
        f = c.take(lambda f: f.type == DATA and f.stream_id == sid and f.length > 0, wait)
    except Timeout:
        return
    raise Fail("DATA of %d bytes on stream %d with no window left" % (f.length, sid))


def hdr_block(c, path=None, method="GET", extra=(), scheme=None):
    h = c.request_headers(path or OPT.path, method, extra)
    if scheme:
        h = [(k, scheme if k == ":scheme" else v) for k, v in h]
    return c.block_for(h)


def literal_block(fields):
    return b"".join(lit(k, v) for k, v in fields)


def base_fields(method="GET", path=None):
    scheme = "https" if OPT.tls else "http"
    return [(":method", method), (":scheme", scheme), (":path", path or OPT.path),
            (":authority", "localhost")]


def malformed(fields, end_stream=True):
    """A request whose fields break RFC 9113 section 8: a stream error
    PROTOCOL_ERROR (or a 4xx)."""
    c = conn()
    c.headers(1, literal_block(fields), end_stream=end_stream)
    expect_stream_error(c, 1, [PROTOCOL_ERROR], response_ok=True)


def open_stream(c, sid=1, method="GET"):
    """A request whose stream stays open: no END_STREAM; the connection was
    set up with a zero window so that the answer cannot finish either."""
    c.headers(sid, hdr_block(c, method=method), end_stream=False)
    return sid


# =====================================================================
# 3.4/3.5 connection preface
# =====================================================================

@case("3.5/1", "the server's first frame is SETTINGS and it ACKs ours")
def _():
    conn()


@case("3.5/2", "an invalid client preface: connection closed (GOAWAY PROTOCOL_ERROR optional)")
def _():
    c = conn(handshake=False)
    c.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + raw_frame(SETTINGS, 0, 0))
    # Raw: the answer may not be frames at all.
    data = bytearray()
    deadline = time.monotonic() + c.timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Fail("the connection stays open after an invalid preface (got %r)" %
                       bytes(data[:60]))
        c.sock.settimeout(left)
        try:
            b = c.sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            b = b""
        if not b:
            break
        data += b
    if data.startswith(b"HTTP/1.1 4"):
        return
    # Frames: any GOAWAY must say PROTOCOL_ERROR.
    off = 0
    while off + 9 <= len(data):
        n = int.from_bytes(data[off:off + 3], "big")
        if data[off + 3] == GOAWAY and off + 17 <= len(data):
            code = int.from_bytes(data[off + 13:off + 17], "big")
            if code != PROTOCOL_ERROR:
                raise Fail("GOAWAY %s, expected PROTOCOL_ERROR" % error_name(code))
        off += 9 + n


# =====================================================================
# 4.1 frame format
# =====================================================================

@case("4.1/1", "a frame of unknown type is ignored")
def _():
    c = conn()
    c.frame(0xEE, 0, 0, b"unknown frame payload")
    c.frame(0xEE, 0xFF, 1, b"on a stream")
    expect_alive(c, "after a frame of unknown type")


@case("4.1/2", "undefined flags are ignored (PING with flags 0xfe)")
def _():
    c = conn()
    c.frame(PING, 0xFE, 0, b"flagged!")
    try:
        f = c.take(lambda f: f.type in (PING, GOAWAY))
    except (Timeout, Closed) as e:
        raise Fail("no PING ACK: %s" % type(e).__name__)
    if f.type == GOAWAY or not f.flags_byte & ACK or bytes(f.opaque_data) != b"flagged!":
        raise Fail("expected PING ACK 'flagged!', got " + describe(f))


@case("4.1/3", "the reserved bit of the stream identifier is ignored")
def _():
    c = conn()
    c.frame(HEADERS, END_STREAM | END_HEADERS, 0x80000001, hdr_block(c))
    expect_response(c, 1, 200)


# =====================================================================
# 4.2 frame size
# =====================================================================

@case("4.2/1", "a DATA frame of 16384 octets (the default SETTINGS_MAX_FRAME_SIZE) is accepted")
def _():
    c = conn()
    window = c.server_settings.get(INITIAL_WINDOW_SIZE, 65535)
    n = min(16384, window)
    c.send(raw_frame(HEADERS, END_HEADERS, 1, hdr_block(c, method="POST",
                                                          extra=[("content-length", str(n))]))
           + raw_frame(DATA, END_STREAM, 1, b"x" * n))
    expect_response(c, 1)
    expect_alive(c, "after the response")


@case("4.2/2", "a DATA frame over SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR")
def _():
    c = conn()
    limit = c.server_settings.get(MAX_FRAME_SIZE, 16384)
    c.send(raw_frame(HEADERS, END_HEADERS, 1, hdr_block(c, method="POST"))
           + raw_frame(DATA, END_STREAM, 1, b"x" * (limit + 1)))
    expect_stream_error(c, 1, [FRAME_SIZE_ERROR])


@case("4.2/3", "a HEADERS frame over SETTINGS_MAX_FRAME_SIZE: connection error FRAME_SIZE_ERROR")
def _():
    c = conn()
    limit = c.server_settings.get(MAX_FRAME_SIZE, 16384)
    block = literal_block(base_fields() + [("x-big", "a" * (limit + 10))])
    c.headers(1, block)
    expect_conn_error(c, [FRAME_SIZE_ERROR])


@case("4.2/4", "a frame header announcing 2^24-1 octets: connection error FRAME_SIZE_ERROR")
def _():
    c = conn()
    c.send(b"\xff\xff\xff" + bytes([PING, 0]) + b"\x00\x00\x00\x00" + b"x" * 100)
    expect_conn_error(c, [FRAME_SIZE_ERROR])


# =====================================================================
# 4.3 field section compression
# =====================================================================

@case("4.3/1", "an undecodable field block (truncated literal): COMPRESSION_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c) + b"\x40\x0aabc")
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("4.3/2", "a PRIORITY frame inside a field block: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c), end_headers=False)
    c.frame(PRIORITY, 0, 1, struct.pack(">IB", 0, 15))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("4.3/3", "HEADERS of another stream inside a field block: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c), end_headers=False)
    c.headers(3, hdr_block(c))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("4.3/4", "the dynamic table is kept across field blocks (same fields indexed)")
def _():
    c = conn()
    extra = [("x-paf-test", "a value to index")]
    s1 = c.request(OPT.path, extra=extra)
    s2 = c.request(OPT.path, extra=extra)  # hpack now sends indexed fields
    expect_response(c, s1, 200)
    expect_response(c, s2, 200)


# =====================================================================
# 5.1 stream states
# =====================================================================

@case("5.1/1", "idle: DATA: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(DATA, END_STREAM, 1, b"test")
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("5.1/2", "idle: RST_STREAM: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("5.1/3", "idle: WINDOW_UPDATE: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 100))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("5.1/4", "idle: CONTINUATION: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(CONTINUATION, END_HEADERS, 1, hdr_block(c))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("5.1/5", "half-closed (remote): DATA: stream error STREAM_CLOSED")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    c.headers(1, hdr_block(c))
    c.frame(DATA, END_STREAM, 1, b"test")
    expect_stream_error(c, 1, [STREAM_CLOSED])


@case("5.1/6", "half-closed (remote): HEADERS: stream error STREAM_CLOSED")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    c.headers(1, hdr_block(c))
    c.headers(1, hdr_block(c))
    expect_stream_error(c, 1, [STREAM_CLOSED])


@case("5.1/7", "half-closed (remote): CONTINUATION: STREAM_CLOSED or PROTOCOL_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    c.headers(1, hdr_block(c))
    c.frame(CONTINUATION, END_HEADERS, 1, hdr_block(c))
    expect_stream_error(c, 1, [STREAM_CLOSED, PROTOCOL_ERROR])


@case("5.1/8", "closed by the client's RST_STREAM: DATA: STREAM_CLOSED, or ignored")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1, "POST")
    c.frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL))
    c.frame(DATA, END_STREAM, 1, b"test")
    expect_ignored_or_conn_error(c, [STREAM_CLOSED])


@case("5.1/9", "closed by the client's RST_STREAM: HEADERS: STREAM_CLOSED, or ignored")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1, "POST")
    c.frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL))
    c.headers(1, literal_block([("x-trailer", "1")]))
    expect_ignored_or_conn_error(c, [STREAM_CLOSED])


@case("5.1/10", "closed by the client's RST_STREAM: CONTINUATION: PROTOCOL_ERROR or STREAM_CLOSED")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1, "POST")
    c.frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL))
    c.frame(CONTINUATION, END_HEADERS, 1, literal_block([("x-trailer", "1")]))
    # A CONTINUATION without HEADERS before it is a PROTOCOL_ERROR (6.10).
    expect_conn_error(c, [PROTOCOL_ERROR, STREAM_CLOSED])


@case("5.1/11", "closed (both END_STREAM): DATA: STREAM_CLOSED, or ignored")
def _():
    c = conn()
    s = c.request(OPT.path)
    expect_response(c, s, 200)
    c.frame(DATA, END_STREAM, s, b"test")
    expect_ignored_or_conn_error(c, [STREAM_CLOSED])


@case("5.1/12", "closed (both END_STREAM): HEADERS: STREAM_CLOSED, or ignored")
def _():
    c = conn()
    s = c.request(OPT.path)
    expect_response(c, s, 200)
    c.headers(s, hdr_block(c))
    expect_ignored_or_conn_error(c, [STREAM_CLOSED, PROTOCOL_ERROR])


@case("5.1/13", "closed (both END_STREAM): CONTINUATION: PROTOCOL_ERROR or STREAM_CLOSED")
def _():
    c = conn()
    s = c.request(OPT.path)
    expect_response(c, s, 200)
    c.frame(CONTINUATION, END_HEADERS, s, literal_block([("x-dummy", "1")]))
    expect_conn_error(c, [PROTOCOL_ERROR, STREAM_CLOSED])


@case("5.1/14", "closed: WINDOW_UPDATE and RST_STREAM right after END_STREAM are allowed")
def _():
    c = conn()
    s = c.request(OPT.path)
    expect_response(c, s, 200)
    c.frame(WINDOW_UPDATE, 0, s, struct.pack(">I", 1000))
    c.frame(RST_STREAM, 0, s, struct.pack(">I", CANCEL))
    expect_alive(c, "after WINDOW_UPDATE/RST_STREAM on a just closed stream")


# ---- 5.1.1 stream identifiers ----

@case("5.1.1/1", "an even stream identifier: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(2, hdr_block(c))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("5.1.1/2", "a stream identifier smaller than a previous one: PROTOCOL_ERROR, or ignored")
def _():
    # RFC 9113 5.1.1 wants a connection error. libnghttp2 ignores such a
    # HEADERS instead (it cannot tell a skipped stream from one it closed
    # and forgot, and trailers after its RST_STREAM are legitimate), so what
    # is checked is that stream 3 is never served and nothing else breaks.
    c = conn()
    c.headers(5, hdr_block(c))
    c.headers(3, hdr_block(c))
    expect_ignored_or_conn_error(c, [PROTOCOL_ERROR])
    if any(f.stream_id == 3 and f.type in (HEADERS, DATA) for f in c.frames):
        raise Fail("stream 3, below the stream 5 already opened, was answered")


# ---- 5.1.2 stream concurrency ----

@case("5.1.2/1", "over SETTINGS_MAX_CONCURRENT_STREAMS: stream error PROTOCOL_ERROR or REFUSED_STREAM")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    limit = c.server_settings.get(MAX_CONCURRENT_STREAMS)
    if limit is None or limit > 1000:
        raise Skip("the server sets no small SETTINGS_MAX_CONCURRENT_STREAMS (%s)" % limit)
    sid = 1
    out = bytearray()
    for _i in range(limit):
        out += raw_frame(HEADERS, END_HEADERS, sid, hdr_block(c))
        sid += 2
    c.send(bytes(out))
    c.headers(sid, hdr_block(c), end_stream=False)
    expect_stream_error(c, sid, [PROTOCOL_ERROR, REFUSED_STREAM])


@case("5.1.2/2", "streams up to SETTINGS_MAX_CONCURRENT_STREAMS are all answered")
def _():
    c = conn()
    limit = c.server_settings.get(MAX_CONCURRENT_STREAMS, 100)
    n = min(limit, 100)
    sids = [c.request(OPT.path) for _i in range(n)]
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 30))
    for s in sids:
        expect_response(c, s, 200)


# =====================================================================
# 5.3 priority (RFC 7540's scheme, deprecated but still parsed)
# =====================================================================

def no_priorities(c):
    return c.server_settings.get(0x9) == 1


@case("5.3.1/1", "HEADERS depending on its own stream: stream error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(1, struct.pack(">IB", 1, 15) + hdr_block(c), flags=PRIORITY_FLAG)
    if no_priorities(c):
        return expect_ignored_or_conn_error(c, [PROTOCOL_ERROR])
    expect_stream_error(c, 1, [PROTOCOL_ERROR])


@case("5.3.1/2", "PRIORITY depending on its own stream: stream error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(PRIORITY, 0, 1, struct.pack(">IB", 1, 15))
    if no_priorities(c):
        return expect_ignored_or_conn_error(c, [PROTOCOL_ERROR])
    expect_stream_error(c, 1, [PROTOCOL_ERROR])


@case("5.3/3", "PRIORITY on an idle stream is allowed, and the stream may then be opened")
def _():
    c = conn()
    c.frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 200))
    c.frame(PRIORITY, 0, 1, struct.pack(">IB", 0x80000003, 10))
    c.request(OPT.path, stream_id=1)
    c.request(OPT.path, stream_id=3)
    expect_response(c, 1, 200)
    expect_response(c, 3, 200)


# =====================================================================
# 5.4 error handling
# =====================================================================

@case("5.4.1/1", "after a connection error, GOAWAY names the last stream processed, then close")
def _():
    c = conn()
    s = c.request(OPT.path)
    expect_response(c, s, 200)
    c.frame(PING, 0, 3, b"bad ping")  # PING on a stream: PROTOCOL_ERROR
    try:
        f = c.take(lambda f: f.type == GOAWAY)
    except (Closed, Timeout) as e:
        raise Fail("no GOAWAY: %s" % type(e).__name__)
    if f.error_code != PROTOCOL_ERROR:
        raise Fail("GOAWAY %s, expected PROTOCOL_ERROR" % error_name(f.error_code))
    if f.last_stream_id != s:
        raise Fail("GOAWAY last stream %d, expected %d" % (f.last_stream_id, s))
    if not c.wait_closed(c.timeout):
        raise Fail("the connection stays open after GOAWAY")


# =====================================================================
# 5.5 extending HTTP/2
# =====================================================================

@case("5.5/1", "an unknown extension frame is ignored, on stream 0 and on an open stream")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1)
    c.frame(0x42, 0xFF, 0, b"x" * 100)
    c.frame(0x42, 0, 1, b"on stream 1")
    expect_alive(c, "after extension frames")


@case("5.5/2", "an unknown frame inside a field block: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c), end_headers=False)
    c.frame(0x42, 0, 1, b"in the middle")
    expect_conn_error(c, [PROTOCOL_ERROR])


# =====================================================================
# 6.1 DATA
# =====================================================================

@case("6.1/1", "DATA on stream 0: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(DATA, END_STREAM, 0, b"test")
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.1/2", "DATA on a stream in half-closed (remote): stream error STREAM_CLOSED")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    c.headers(1, hdr_block(c, method="POST"))
    c.frame(DATA, 0, 1, b"late")
    expect_stream_error(c, 1, [STREAM_CLOSED])


@case("6.1/3", "DATA whose padding is as long as the payload: connection error PROTOCOL_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1, "POST")
    c.frame(DATA, PADDED | END_STREAM, 1, bytes([6]) + b"x" * 5)
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.1/4", "padded DATA is counted with its padding, and accepted")
def _():
    c = conn()
    payload = b"abcd"
    c.send(raw_frame(HEADERS, END_HEADERS, 1, hdr_block(c, method="POST",
                                                          extra=[("content-length", "4")]))
           + raw_frame(DATA, PADDED | END_STREAM, 1, bytes([100]) + payload + b"\0" * 100))
    expect_response(c, 1)


# =====================================================================
# 6.2 HEADERS
# =====================================================================

@case("6.2/1", "HEADERS without END_HEADERS then PRIORITY: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c), end_headers=False)
    c.frame(PRIORITY, 0, 3, struct.pack(">IB", 0, 15))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.2/2", "HEADERS without END_HEADERS then DATA: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c, method="POST"), end_stream=False, end_headers=False)
    c.frame(DATA, END_STREAM, 1, b"test")
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.2/3", "HEADERS on stream 0: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(0, hdr_block(c))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.2/4", "HEADERS whose padding exceeds the payload: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    block = hdr_block(c)
    c.frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, bytes([len(block) + 10]) + block)
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.2/5", "padded HEADERS with a priority field are accepted")
def _():
    c = conn()
    block = hdr_block(c)
    c.frame(HEADERS, END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG, 1,
            bytes([8]) + struct.pack(">IB", 0, 20) + block + b"\0" * 8)
    expect_response(c, 1, 200)


# =====================================================================
# 6.3 PRIORITY
# =====================================================================

@case("6.3/1", "PRIORITY on stream 0: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(PRIORITY, 0, 0, struct.pack(">IB", 0, 15))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.3/2", "PRIORITY of 4 octets: stream error FRAME_SIZE_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1)
    c.frame(PRIORITY, 0, 1, b"\0\0\0\0")
    expect_stream_error(c, 1, [FRAME_SIZE_ERROR])


# =====================================================================
# 6.4 RST_STREAM
# =====================================================================

@case("6.4/1", "RST_STREAM on stream 0: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(RST_STREAM, 0, 0, struct.pack(">I", CANCEL))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.4/2", "RST_STREAM on an idle stream: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(RST_STREAM, 0, 7, struct.pack(">I", CANCEL))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.4/3", "RST_STREAM of 3 octets: connection error FRAME_SIZE_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1)
    c.frame(RST_STREAM, 0, 1, b"\0\0\0")
    expect_conn_error(c, [FRAME_SIZE_ERROR])


@case("6.4/4", "RST_STREAM on an open stream: the stream ends, the connection goes on")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1)
    c.frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL))
    expect_alive(c, "after RST_STREAM")
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 20))
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 65535)))
    s = c.request(OPT.path, stream_id=3)
    expect_response(c, s, 200)


# =====================================================================
# 6.5 SETTINGS
# =====================================================================

@case("6.5/1", "SETTINGS ACK with a payload: connection error FRAME_SIZE_ERROR")
def _():
    c = conn()
    c.frame(SETTINGS, ACK, 0, b"\0\0\0\0\0\0")
    expect_conn_error(c, [FRAME_SIZE_ERROR])


@case("6.5/2", "SETTINGS on a stream: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 1, settings_payload((INITIAL_WINDOW_SIZE, 100)))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.5/3", "SETTINGS whose length is not a multiple of 6: connection error FRAME_SIZE_ERROR")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 100))[:5])
    expect_conn_error(c, [FRAME_SIZE_ERROR])


@case("6.5.2/1", "SETTINGS_ENABLE_PUSH of 2: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 0, settings_payload((ENABLE_PUSH, 2)))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.5.2/2", "SETTINGS_INITIAL_WINDOW_SIZE of 2^31: connection error FLOW_CONTROL_ERROR")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 2**31)))
    expect_conn_error(c, [FLOW_CONTROL_ERROR])


@case("6.5.2/3", "SETTINGS_MAX_FRAME_SIZE of 16383: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 0, settings_payload((MAX_FRAME_SIZE, 16383)))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.5.2/4", "SETTINGS_MAX_FRAME_SIZE of 2^24: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 0, settings_payload((MAX_FRAME_SIZE, 2**24)))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.5.2/5", "an unknown setting is ignored, and ACKed")
def _():
    c = conn()
    before = c.settings_acked
    c.frame(SETTINGS, 0, 0, settings_payload((0xFF, 1), (0x4242, 0xFFFFFFFF)))
    try:
        c.take(lambda f: f.type == SETTINGS and f.flags_byte & ACK)
    except (Closed, Timeout) as e:
        raise Fail("no SETTINGS ACK: %s" % type(e).__name__)
    assert c.settings_acked == before + 1
    expect_alive(c, "after unknown settings")


@case("6.5.3/1", "several values of one setting in a frame: the last one applies")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 100), (INITIAL_WINDOW_SIZE, 1)))
    c.take(lambda f: f.type == SETTINGS and f.flags_byte & ACK)
    s = c.request(OPT.path)
    f = first_data(c, s)
    if f.type != DATA or f.length != 1:
        raise Fail("expected 1 byte of DATA (window 1), got " + describe(f))


@case("6.5.3/2", "SETTINGS is ACKed")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 1000)))
    try:
        c.take(lambda f: f.type == SETTINGS and f.flags_byte & ACK)
    except (Closed, Timeout) as e:
        raise Fail("no SETTINGS ACK: %s" % type(e).__name__)


@case("6.5.3/3", "SETTINGS_MAX_FRAME_SIZE is honoured: a 32 KiB frame limit, DATA up to it")
def _():
    c = conn((MAX_FRAME_SIZE, 32768))
    s = c.request(OPT.path)
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 24))
    st, _h, body = expect_response(c, s, 200)
    biggest = max([f.length for f in c.frames if f.type == DATA] + [0])
    if biggest > 32768:
        raise Fail("a DATA frame of %d bytes over the 32768 asked" % biggest)


# =====================================================================
# 6.7 PING
# =====================================================================

@case("6.7/1", "PING: ACK with the same payload")
def _():
    c = conn()
    c.ping(b"\x01\x02\x03\x04\x05\x06\x07\x08")
    try:
        f = c.take(lambda f: f.type in (PING, GOAWAY))
    except (Closed, Timeout) as e:
        raise Fail("no PING ACK: %s" % type(e).__name__)
    if f.type != PING or not f.flags_byte & ACK or \
            bytes(f.opaque_data) != b"\x01\x02\x03\x04\x05\x06\x07\x08":
        raise Fail("expected PING ACK with our payload, got " + describe(f))


@case("6.7/2", "PING with ACK set is not answered")
def _():
    c = conn()
    c.frame(PING, ACK, 0, b"unasked!")
    c.ping(b"asked!!!")
    f = c.take(lambda f: f.type in (PING, GOAWAY))
    if f.type != PING or bytes(f.opaque_data) != b"asked!!!":
        raise Fail("the first PING back is not the ACK of ours: " + describe(f))


@case("6.7/3", "PING on a stream: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(PING, 0, 1, b"12345678")
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.7/4", "PING of 6 octets: connection error FRAME_SIZE_ERROR")
def _():
    c = conn()
    c.frame(PING, 0, 0, b"123456")
    expect_conn_error(c, [FRAME_SIZE_ERROR])


# =====================================================================
# 6.8 GOAWAY
# =====================================================================

@case("6.8/1", "GOAWAY on a stream: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(GOAWAY, 0, 1, struct.pack(">II", 0, NO_ERROR))
    expect_conn_error(c, [PROTOCOL_ERROR])


# =====================================================================
# 6.9 WINDOW_UPDATE and flow control
# =====================================================================

@case("6.9/1", "WINDOW_UPDATE of 0 on the connection: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 0))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.9/2", "WINDOW_UPDATE of 0 on a stream: stream error PROTOCOL_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1)
    c.frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 0))
    expect_stream_error(c, 1, [PROTOCOL_ERROR])


@case("6.9/3", "WINDOW_UPDATE of 3 octets: connection error FRAME_SIZE_ERROR")
def _():
    c = conn()
    c.frame(WINDOW_UPDATE, 0, 0, b"\0\0\1")
    expect_conn_error(c, [FRAME_SIZE_ERROR])


@case("6.9.1/1", "SETTINGS_INITIAL_WINDOW_SIZE of 1: DATA of 1 octet")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 1))
    s = c.request(OPT.path)
    f = first_data(c, s)
    if f.type != DATA or f.length != 1:
        raise Fail("expected 1 byte of DATA, got " + describe(f))
    no_data(c, s)


@case("6.9.1/2", "the connection window over 2^31-1: connection error FLOW_CONTROL_ERROR")
def _():
    c = conn()
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1))
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 2**31 - 1))
    expect_conn_error(c, [FLOW_CONTROL_ERROR])


@case("6.9.1/3", "a stream window over 2^31-1: stream error FLOW_CONTROL_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1)
    c.frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1))
    c.frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1))
    expect_stream_error(c, 1, [FLOW_CONTROL_ERROR])


@case("6.9.1/4", "DATA beyond the window the server gave: FLOW_CONTROL_ERROR")
def _():
    c = conn()
    window = c.server_settings.get(INITIAL_WINDOW_SIZE, 65535)
    limit = c.server_settings.get(MAX_FRAME_SIZE, 16384)
    if window >= limit:
        raise Skip("the server's initial window (%d) is not below one frame (%d)" % (window,
                                                                                    limit))
    c.send(raw_frame(HEADERS, END_HEADERS, 1, hdr_block(c, method="POST"))
           + raw_frame(DATA, 0, 1, b"x" * (window + 1)))
    expect_stream_error(c, 1, [FLOW_CONTROL_ERROR])


@case("6.9.1/5", "a body far larger than the initial window arrives whole, paced by WINDOW_UPDATE")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 4096))
    s = c.request(OPT.path)
    deadline = time.monotonic() + 5
    body = bytearray()
    while True:
        try:
            f = c.take(lambda f: f.stream_id == s or f.type == GOAWAY,
                       max(0.01, deadline - time.monotonic()))
        except (Closed, Timeout) as e:
            raise Fail("%s after %d body bytes" % (type(e).__name__, len(body)))
        if f.type in (GOAWAY, RST_STREAM):
            raise Fail(describe(f))
        if f.type == DATA:
            body += bytes(f.data)
            if f.length and not f.flags_byte & END_STREAM:
                c.frame(WINDOW_UPDATE, 0, s, struct.pack(">I", f.length))
        if f.flags_byte & END_STREAM:
            break
    if OPT.file is not None and bytes(body) != OPT.file:
        raise Fail("body of %d bytes differs from the file's %d" % (len(body), len(OPT.file)))


@case("6.9.2/1", "SETTINGS_INITIAL_WINDOW_SIZE raised after HEADERS: the stream gets the new window")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    s = c.request(OPT.path)
    no_data(c, s)
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 1)))
    f = first_data(c, s)
    if f.type != DATA or f.length != 1:
        raise Fail("expected 1 byte of DATA, got " + describe(f))


@case("6.9.2/2", "a window made negative by SETTINGS: DATA only once it is positive again")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 3))
    s = c.request(OPT.path)
    got = 0
    while got < 3:
        f = first_data(c, s)
        if f.type != DATA:
            raise Fail(describe(f))
        got += f.length
    if got != 3:
        raise Fail("%d bytes of DATA on a window of 3" % got)
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 2)))  # window -1
    c.take(lambda f: f.type == SETTINGS and f.flags_byte & ACK)
    c.frame(WINDOW_UPDATE, 0, s, struct.pack(">I", 1))  # window 0
    no_data(c, s)
    c.frame(WINDOW_UPDATE, 0, s, struct.pack(">I", 1))  # window 1
    f = first_data(c, s)
    if f.type != DATA or f.length != 1:
        raise Fail("expected 1 byte of DATA, got " + describe(f))


@case("6.9.2/3", "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1 later on: FLOW_CONTROL_ERROR")
def _():
    c = conn()
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 2**31)))
    expect_conn_error(c, [FLOW_CONTROL_ERROR])


@case("6.9.2/4", "SETTINGS pushing an open stream's window over 2^31-1: FLOW_CONTROL_ERROR")
def _():
    # The stream's window opened wide, the connection's left to what the
    # server had (65535, below the 100 000 bytes asked): the answer cannot
    # finish, the stream stays open, and the SETTINGS adds to its window.
    c = conn((INITIAL_WINDOW_SIZE, 0))
    c.auto_window = False
    open_stream(c, 1)
    c.frame(WINDOW_UPDATE, 0, 1, struct.pack(">I", 2**31 - 1))
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 2**31 - 1)))
    # RFC 9113 6.9.2 says a connection error; libnghttp2 resets the stream
    # with FLOW_CONTROL_ERROR instead. Either way the window never wraps.
    expect_stream_error(c, 1, [FLOW_CONTROL_ERROR])


# =====================================================================
# 6.10 CONTINUATION
# =====================================================================

@case("6.10/1", "a field block in HEADERS and several CONTINUATION frames: answered")
def _():
    c = conn()
    block = hdr_block(c, extra=[("x-long", "v" * 300)])
    parts = [block[i:i + 40] for i in range(0, len(block), 40)]
    c.headers(1, parts[0], end_headers=False)
    for i, p in enumerate(parts[1:]):
        c.frame(CONTINUATION, END_HEADERS if i == len(parts) - 2 else 0, 1, p)
    expect_response(c, 1, 200)


@case("6.10/2", "CONTINUATION followed by a frame of another type: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    block = hdr_block(c)
    c.headers(1, block[:3], end_headers=False)
    c.frame(CONTINUATION, 0, 1, block[3:])
    c.frame(DATA, END_STREAM, 1, b"test")
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.10/3", "CONTINUATION on stream 0: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    block = hdr_block(c)
    c.headers(1, block[:3], end_headers=False)
    c.frame(CONTINUATION, END_HEADERS, 0, block[3:])
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.10/4", "CONTINUATION after HEADERS with END_HEADERS: connection error PROTOCOL_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    c.headers(1, hdr_block(c, method="POST"), end_stream=False)
    c.frame(CONTINUATION, END_HEADERS, 1, literal_block([("x-dummy", "1")]))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.10/5", "CONTINUATION after CONTINUATION with END_HEADERS: connection error PROTOCOL_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    block = hdr_block(c, method="POST")
    c.headers(1, block[:3], end_stream=False, end_headers=False)
    c.frame(CONTINUATION, END_HEADERS, 1, block[3:])
    c.frame(CONTINUATION, END_HEADERS, 1, literal_block([("x-dummy", "1")]))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.10/6", "CONTINUATION after DATA: connection error PROTOCOL_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1, "POST")
    c.frame(DATA, 0, 1, b"test")
    c.frame(CONTINUATION, END_HEADERS, 1, literal_block([("x-dummy", "1")]))
    expect_conn_error(c, [PROTOCOL_ERROR])


@case("6.10/7", "CONTINUATION of another stream inside a field block: connection error PROTOCOL_ERROR")
def _():
    c = conn()
    block = hdr_block(c)
    c.headers(1, block[:3], end_headers=False)
    c.frame(CONTINUATION, END_HEADERS, 3, block[3:])
    expect_conn_error(c, [PROTOCOL_ERROR])


# =====================================================================
# 8.1 HTTP message framing
# =====================================================================

@case("8.1/1", "a GET is answered 200 with the resource's bytes")
def _():
    c = conn()
    s = c.request(OPT.path)
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 24))
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 1 << 24)))
    st, hdrs, body = expect_response(c, s, 200)
    if OPT.file is not None and body != OPT.file:
        raise Fail("body of %d bytes differs from the file's %d" % (len(body), len(OPT.file)))


@case("8.1/2", "HEAD: the headers, no DATA")
def _():
    c = conn()
    s = c.request(OPT.path, method="HEAD")
    st, hdrs, body = expect_response(c, s, 200)
    if body:
        raise Fail("HEAD answered %d body bytes" % len(body))


@case("8.1/3", "a second HEADERS (trailers) without END_STREAM: stream error PROTOCOL_ERROR")
def _():
    c = conn((INITIAL_WINDOW_SIZE, 0))
    open_stream(c, 1, "POST")
    c.frame(DATA, 0, 1, b"test")
    c.headers(1, literal_block([("x-trailer", "1")]), end_stream=False)
    expect_stream_error(c, 1, [PROTOCOL_ERROR])


@case("8.1/4", "a request with trailers (HEADERS, DATA, HEADERS END_STREAM): answered")
def _():
    c = conn()
    c.headers(1, hdr_block(c, method="POST", extra=[("te", "trailers")]), end_stream=False)
    c.frame(DATA, 0, 1, b"test body")
    c.headers(1, c.block_for([("x-checksum", "1234")]))
    expect_response(c, 1)
    expect_alive(c, "after the response")


@case("8.1/5", "content-length larger than the DATA sent: stream error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c, method="POST", extra=[("content-length", "10")]), end_stream=False)
    c.frame(DATA, END_STREAM, 1, b"test")
    expect_stream_error(c, 1, [PROTOCOL_ERROR], response_ok=True)


@case("8.1/6", "DATA larger than content-length (over two frames): stream error PROTOCOL_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c, method="POST", extra=[("content-length", "4")]), end_stream=False)
    c.frame(DATA, 0, 1, b"tes")
    c.frame(DATA, END_STREAM, 1, b"ting")
    expect_stream_error(c, 1, [PROTOCOL_ERROR], response_ok=True)


@case("8.1/7", "a response's content-length matches its DATA")
def _():
    c = conn()
    s = c.request(OPT.path)
    c.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 24))
    c.frame(SETTINGS, 0, 0, settings_payload((INITIAL_WINDOW_SIZE, 1 << 24)))
    st, hdrs, body = expect_response(c, s, 200)
    cl = [v for k, v in hdrs if k == "content-length"]
    if cl and int(cl[0]) != len(body):
        raise Fail("content-length %s, %d bytes of DATA" % (cl[0], len(body)))


# =====================================================================
# 8.2 HTTP fields
# =====================================================================

@case("8.2/1", "an uppercase field name: stream error PROTOCOL_ERROR")
def _():
    malformed(base_fields() + [("X-Upper", "1")])


@case("8.2/2", "a field name with a space: malformed")
def _():
    malformed(base_fields() + [("x bad", "1")])


@case("8.2/3", "a field value with CR LF: malformed")
def _():
    malformed(base_fields() + [("x-smuggle", "a\r\nx-injected: 1")])


@case("8.2/4", "a field value with NUL: malformed")
def _():
    malformed(base_fields() + [("x-nul", "a\0b")])


@case("8.2/5", "a field value with leading whitespace: malformed")
def _():
    malformed(base_fields() + [("x-ws", " a")])


@case("8.2.2/1", "connection-specific fields (connection, keep-alive, proxy-connection, "
      "transfer-encoding, upgrade): malformed")
def _():
    for name, value in [("connection", "keep-alive"), ("keep-alive", "timeout=5"),
                        ("proxy-connection", "keep-alive"), ("transfer-encoding", "chunked"),
                        ("upgrade", "h2c")]:
        try:
            malformed(base_fields() + [(name, value)])
        except Fail as e:
            raise Fail("%s: %s" % (name, e))


@case("8.2.2/2", "TE other than \"trailers\": malformed")
def _():
    malformed(base_fields() + [("te", "trailers, deflate")])


@case("8.2.2/3", "TE: trailers is accepted")
def _():
    c = conn()
    c.headers(1, literal_block(base_fields() + [("te", "trailers")]))
    expect_response(c, 1, 200)


@case("8.2.3/1", "a cookie field split over several fields is accepted")
def _():
    c = conn()
    c.headers(1, literal_block(base_fields() + [("cookie", "a=1"), ("cookie", "b=2")]))
    expect_response(c, 1, 200)


# =====================================================================
# 8.3 pseudo-header fields
# =====================================================================

@case("8.3/1", "an unknown pseudo-header (:foo): malformed")
def _():
    malformed(base_fields() + [(":foo", "bar")])


@case("8.3/2", "a response pseudo-header (:status) in a request: malformed")
def _():
    malformed(base_fields() + [(":status", "200")])


@case("8.3/3", "a pseudo-header after a regular field: malformed")
def _():
    f = base_fields()
    malformed(f[:3] + [("x-regular", "1")] + f[3:])


@case("8.3/4", "a pseudo-header in trailers: malformed")
def _():
    c = conn()
    c.headers(1, hdr_block(c, method="POST"), end_stream=False)
    c.frame(DATA, 0, 1, b"test")
    c.headers(1, literal_block([(":method", "POST")]))
    expect_stream_error(c, 1, [PROTOCOL_ERROR], response_ok=True)


@case("8.3.1/1", "no :method: malformed")
def _():
    malformed([x for x in base_fields() if x[0] != ":method"])


@case("8.3.1/2", "no :scheme: malformed")
def _():
    malformed([x for x in base_fields() if x[0] != ":scheme"])


@case("8.3.1/3", "no :path: malformed")
def _():
    malformed([x for x in base_fields() if x[0] != ":path"])


@case("8.3.1/4", "an empty :path: malformed")
def _():
    malformed([(k, "" if k == ":path" else v) for k, v in base_fields()])


@case("8.3.1/5", "two :method: malformed")
def _():
    f = base_fields()
    malformed(f[:1] + [(":method", "GET")] + f[1:])


@case("8.3.1/6", "two :scheme: malformed")
def _():
    f = base_fields()
    malformed(f[:2] + [f[1]] + f[2:])


@case("8.3.1/7", "two :path: malformed")
def _():
    f = base_fields()
    malformed(f[:3] + [f[2]] + f[3:])


@case("8.3.1/8", "a :path that is neither absolute nor '*' (for GET): malformed or 400")
def _():
    malformed([(k, "noslash" if k == ":path" else v) for k, v in base_fields()])


@case("8.3.1/9", "no :authority but a Host field: answered")
def _():
    c = conn()
    f = [x for x in base_fields() if x[0] != ":authority"] + [("host", "localhost")]
    c.headers(1, literal_block(f))
    expect_response(c, 1, 200)


# =====================================================================
# HPACK (RFC 7541)
# =====================================================================

@case("hpack/2.3.3/1", "an indexed field beyond the tables: COMPRESSION_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c) + hpack_int(5000, 7, 0x80))
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("hpack/2.3.3/2", "a literal with an indexed name beyond the tables: COMPRESSION_ERROR")
def _():
    c = conn()
    c.headers(1, hdr_block(c) + hpack_int(5000, 4, 0x00) + b"\x01a")
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("hpack/4.2/1", "a table size update over SETTINGS_HEADER_TABLE_SIZE: COMPRESSION_ERROR")
def _():
    c = conn()
    size = c.server_settings.get(HEADER_TABLE_SIZE, 4096)
    c.headers(1, hpack_int(size + 1, 5, 0x20) + literal_block(base_fields()))
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("hpack/5.2/1", "a Huffman string containing EOS: COMPRESSION_ERROR")
def _():
    c = conn()
    # Name "x-eos" literal; value Huffman coded: EOS is 30 ones, then padding.
    value = b"\xff\xff\xff\xff"
    c.headers(1, literal_block(base_fields()) + b"\x00\x05x-eos" + bytes([0x80 | len(value)])
              + value)
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("hpack/5.2/2", "Huffman padding longer than 7 bits: COMPRESSION_ERROR")
def _():
    c = conn()
    # 'a' is 00011 (5 bits); then 11 bits of ones as padding.
    value = bytes([0b00011111, 0b11111111])
    c.headers(1, literal_block(base_fields()) + b"\x00\x05x-pad" + bytes([0x80 | len(value)])
              + value)
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("hpack/5.2/3", "Huffman padding that is not the EOS prefix (zeros): COMPRESSION_ERROR")
def _():
    c = conn()
    # 'a' (00011) then 000 padding.
    value = bytes([0b00011000])
    c.headers(1, literal_block(base_fields()) + b"\x00\x05x-pad" + bytes([0x80 | len(value)])
              + value)
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("hpack/6.1/1", "the index 0: COMPRESSION_ERROR")
def _():
    c = conn()
    c.headers(1, b"\x80" + literal_block(base_fields()))
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("hpack/6.3/1", "a table size update after a field: COMPRESSION_ERROR")
def _():
    c = conn()
    c.headers(1, literal_block(base_fields()) + hpack_int(100, 5, 0x20))
    expect_conn_error(c, [COMPRESSION_ERROR])


@case("hpack/6.3/2", "a table size update at the start of a block is accepted")
def _():
    c = conn()
    c.headers(1, hpack_int(0, 5, 0x20) + literal_block(base_fields()))
    expect_response(c, 1, 200)


@case("hpack/5.1/1", "an integer with too many continuation octets: COMPRESSION_ERROR")
def _():
    c = conn()
    c.headers(1, literal_block(base_fields()) + b"\x00\x7f" + b"\xff" * 10 + b"\x01" + b"a")
    expect_conn_error(c, [COMPRESSION_ERROR])


def main():
    global OPT
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--only", default="")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("address", nargs="?")
    ap.add_argument("path", nargs="?", default="/")
    ap.add_argument("file", nargs="?")
    OPT = ap.parse_args()
    if OPT.list:
        for cid, desc, _fn in CASES:
            print("%-16s %s" % (cid, desc))
        return 0
    if not OPT.address:
        ap.error("ADDRESS is needed")
    if OPT.file:
        with open(OPT.file, "rb") as f:
            OPT.file = f.read()
    only = [x for x in OPT.only.split(",") if x]
    n_pass = n_fail = n_skip = 0
    start = time.monotonic()
    for cid, desc, fn in CASES:
        if only and cid not in only:
            continue
        trace = False
        try:
            fn()
            status = "PASS"
            n_pass += 1
        except Skip as e:
            status = "SKIP: %s" % e
            n_skip += 1
        except Fail as e:
            status = "FAIL: %s" % e
            n_fail += 1
            trace = True
        except Exception as e:  # a broken case is a failure too, with its traceback
            status = "FAIL: %s: %s" % (type(e).__name__, e)
            n_fail += 1
            trace = True
            traceback.print_exc(file=sys.stdout)
        line = "%-16s %s (%s)" % (cid, status, desc)
        if trace and Conn.OPENED:
            line += "\n                 frames: " + Conn.OPENED[-1].trace()
        print(line, flush=True)
        for c in Conn.OPENED:
            c.close()
        del Conn.OPENED[:]
    print("%d passed, %d failed, %d skipped (%.1f s)" % (n_pass, n_fail, n_skip,
                                                         time.monotonic() - start))
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
