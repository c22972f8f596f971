#!/usr/bin/python3
"""tests/http/h2-engine.py — the HTTP/2 engine's semantics, frame by frame, with python3-h2.

Usage: h2-engine.py HOST PORT CASE [ARG]. Each case prints "ok: …" lines and
exits 0, or prints "FAIL: …" and exits 1. Every read has a deadline.
"""
import socket
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings

DEADLINE = 5.0


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


class Client:
    def __init__(self, host, port, settings=None):
        self.sock = socket.create_connection((host, port), timeout=DEADLINE)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.flush()
        self.events = []
        self.closed = False

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self, until, deadline=DEADLINE):
        """Read and collect events until until(events) holds or the deadline."""
        end = time.monotonic() + deadline
        while not until(self.events):
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
                return until(self.events)
            self.events.extend(self.conn.receive_data(data))
            self.flush()
        return True

    def of(self, kind, stream=None):
        return [e for e in self.events if isinstance(e, kind) and
                (stream is None or getattr(e, "stream_id", None) == stream)]

    def body(self, sid):
        return b"".join(e.data for e in self.of(h2.events.DataReceived, sid))

    def ack(self, sid):
        # Give the window back for what was read, as a reading client does.
        for e in self.of(h2.events.DataReceived, sid):
            if e.flow_controlled_length and not getattr(e, "_acked", False):
                self.conn.acknowledge_received_data(e.flow_controlled_length, sid)
                e._acked = True
        self.flush()

    def ended(self, sid):
        return lambda ev: any(isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)) and
                              e.stream_id == sid for e in ev) or \
            any(isinstance(e, h2.events.ConnectionTerminated) for e in ev)

    def status(self, sid):
        for e in self.of(h2.events.ResponseReceived, sid):
            return dict(e.headers).get(b":status", b"").decode()
        return None


def req(c, method, path, extra=(), end=True):
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", method), (":scheme", "http"),
                              (":authority", "localhost"), (":path", path)] + list(extra),
                        end_stream=end)
    c.flush()
    return sid


def case_trailers(host, port):
    c = Client(host, port)
    sid = req(c, "POST", "/trailers", end=False)
    c.conn.send_data(sid, b"abc")
    c.conn.send_headers(sid, [("x-req-a", "1"), ("x-req-b", "2")], end_stream=True)
    c.flush()
    if not c.pump(c.ended(sid)):
        fail("/trailers: no end of stream")
    if c.status(sid) != "200":
        fail(f"/trailers: status {c.status(sid)}")
    if c.body(sid) != b"body\n":
        fail(f"/trailers: body {c.body(sid)!r}")
    t = c.of(h2.events.TrailersReceived, sid)
    if not t:
        fail("/trailers: no trailers")
    tr = dict(t[0].headers)
    if tr.get(b"x-checksum") != b"body-ok":
        fail(f"/trailers: trailers {tr}")
    if tr.get(b"x-request-trailers") != b"2":
        fail(f"/trailers: the handler saw {tr.get(b'x-request-trailers')} request trailers, sent 2")
    print("ok: response trailers follow the body, request trailers reach the handler")


def case_window(host, port):
    """A handler that does not read the body holds the client at its window."""
    c = Client(host, port)
    sid = req(c, "POST", "/slow?ms=1500", end=False)
    sent = 0
    # Send as much as the windows let us.
    chunk = b"x" * 16384
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        w = min(c.conn.local_flow_control_window(sid), len(chunk))
        if w > 0:
            c.conn.send_data(sid, chunk[:w])
            c.flush()
            sent += w
            continue
        c.pump(lambda ev: False, deadline=0.2)
    win = c.conn.remote_settings.initial_window_size
    if sent != win:
        fail(f"sent {sent} bytes before the stream's window shut, the server's initial "
             f"window is {win}")
    ups = [e for e in c.of(h2.events.WindowUpdated, sid)]
    if ups:
        fail(f"the server opened the window of a body nobody reads: {ups}")
    print(f"ok: a body nobody reads stops at the initial window ({sent} bytes), no WINDOW_UPDATE")
    # The answer comes; the body it did not read is reset with NO_ERROR
    # (RFC 9113 §8.1) rather than left hanging.
    if not c.pump(lambda ev: c.status(sid) is not None and c.ended(sid)(ev), deadline=4):
        fail("no response to /slow")
    if c.status(sid) != "200":
        fail(f"/slow: status {c.status(sid)}")
    rst = c.of(h2.events.StreamReset, sid)
    if not c.pump(lambda ev: c.of(h2.events.StreamReset, sid), deadline=2):
        fail("no RST_STREAM after a response that left the request body unread")
    rst = c.of(h2.events.StreamReset, sid)
    if rst[0].error_code != 0:
        fail(f"RST_STREAM {rst[0].error_code}, expected NO_ERROR")
    # The connection's window came back: a second request goes through.
    sid2 = req(c, "GET", "/hello")
    if not c.pump(c.ended(sid2)) or c.body(sid2) != b"hello\n":
        fail("the connection did not go on after an unread body")
    print("ok: answered, RST_STREAM(NO_ERROR) for the unread rest, the connection goes on")


def case_echo(host, port, size):
    """/echo reads and pauses as it writes: the client's window opens as it reads."""
    size = int(size)
    c = Client(host, port)
    sid = req(c, "POST", "/echo", end=False)
    data = bytes((i * 7) & 0xff for i in range(size))
    off = 0
    end = time.monotonic() + 30
    while c.status(sid) is None or not c.ended(sid)(c.events):
        if time.monotonic() > end:
            fail(f"/echo of {size} bytes: no end after 30 s (sent {off})")
        w = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                size - off)
        if w > 0:
            c.conn.send_data(sid, data[off:off + w], end_stream=off + w == size)
            off += w
            c.flush()
            if off < size:
                continue
        c.pump(lambda ev: False, deadline=0.05)
        c.ack(sid)
    if c.body(sid) != data:
        fail(f"/echo: {len(c.body(sid))} bytes back, sent {size}, or not the same")
    print(f"ok: /echo of {size} bytes, byte-exact, the window following the reads")


def case_abort(host, port):
    c = Client(host, port)
    sid = req(c, "GET", "/slow?ms=3000")
    time.sleep(0.3)
    c.conn.reset_stream(sid, error_code=8)  # CANCEL
    c.flush()
    sid2 = req(c, "GET", "/hello")
    if not c.pump(c.ended(sid2)) or c.body(sid2) != b"hello\n":
        fail("the connection did not go on after a reset stream")
    print("ok: a reset stream leaves the connection going")


def case_big_headers(host, port):
    c = Client(host, port)
    sid = req(c, "GET", "/hello", extra=[("x-big", "a" * 8000), ("x-big2", "b" * 9000)])
    if not c.pump(c.ended(sid)):
        fail("no answer to a too large header list")
    if c.status(sid) != "431":
        fail(f"a 17 kB header list got {c.status(sid)}, expected 431")
    sid = req(c, "GET", "/hello", extra=[(f"x-f{i}", "v") for i in range(150)])
    if not c.pump(c.ended(sid)) or c.status(sid) != "431":
        fail(f"150 header fields got {c.status(sid)}, expected 431")
    sid = req(c, "GET", "/hello")
    if not c.pump(c.ended(sid)) or c.body(sid) != b"hello\n":
        fail("the connection did not go on after 431")
    print("ok: header lists beyond [http] max-header-bytes and max-headers get 431, the connection goes on")


def case_continue(host, port):
    """Expect: 100-continue: the 100 comes when the handler starts reading."""
    c = Client(host, port)
    sid = req(c, "POST", "/sink", extra=[("expect", "100-continue"), ("content-length", "5")],
              end=False)
    if not c.pump(lambda ev: c.of(h2.events.InformationalResponseReceived, sid)):
        fail("no 100 Continue for Expect: 100-continue")
    st = dict(c.of(h2.events.InformationalResponseReceived, sid)[0].headers).get(b":status")
    if st != b"100":
        fail(f"informational response {st}, expected 100")
    c.conn.send_data(sid, b"12345", end_stream=True)
    c.flush()
    if not c.pump(c.ended(sid)) or c.body(sid) != b"5\n":
        fail(f"after 100 Continue: {c.status(sid)} {c.body(sid)!r}")
    # A handler that answers without reading sends no 100.
    sid = req(c, "POST", "/hello", extra=[("expect", "100-continue"), ("content-length", "5")],
              end=False)
    if not c.pump(c.ended(sid)) or c.status(sid) != "200":
        fail(f"/hello with Expect: {c.status(sid)}")
    if c.of(h2.events.InformationalResponseReceived, sid):
        fail("100 Continue sent for a body the handler never read")
    print("ok: Expect: 100-continue answered 100 when the handler reads, not when it does not")


def case_big_body(host, port):
    c = Client(host, port)
    sid = req(c, "POST", "/sink", extra=[("content-length", "5000")], end=False)
    if not c.pump(c.ended(sid)) or c.status(sid) != "413":
        fail(f"Content-Length 5000 over max-body 1000: {c.status(sid)}, expected 413")
    sid = req(c, "POST", "/sink", end=False)
    c.conn.send_data(sid, b"y" * 3000, end_stream=False)
    c.flush()
    if not c.pump(c.ended(sid)) or c.status(sid) != "413":
        fail(f"3000 bytes without Content-Length over max-body 1000: {c.status(sid)}")
    sid = req(c, "POST", "/sink", end=False)
    c.conn.send_data(sid, b"z" * 900, end_stream=True)
    c.flush()
    if not c.pump(c.ended(sid)) or c.body(sid) != b"900\n":
        fail(f"a 900 byte body: {c.status(sid)} {c.body(sid)!r}")
    print("ok: bodies beyond [http] max-body get 413 (announced or counted), smaller ones go through")


def case_stop(host, port, pidfile):
    """Frames read raw: python3-h2 4.1 takes a GOAWAY for the end of everything."""
    import os
    import signal
    import hyperframe.frame as hf
    c = Client(host, port)
    sid = req(c, "GET", "/slow?ms=1000")
    time.sleep(0.2)
    os.kill(int(open(pidfile).read()), signal.SIGTERM)
    buf = b""
    goaways, data, ended, closed = [], b"", False, False
    end = time.monotonic() + 5
    while not closed and time.monotonic() < end:
        c.sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = c.sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            closed = True
        buf += chunk
        while len(buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            f.parse_body(memoryview(buf[9:9 + length]))
            buf = buf[9 + length:]
            if isinstance(f, hf.GoAwayFrame):
                goaways.append((f.last_stream_id, f.error_code, time.monotonic()))
            elif isinstance(f, hf.DataFrame) and f.stream_id == sid:
                data += f.data
                ended = ended or "END_STREAM" in f.flags
            elif isinstance(f, hf.HeadersFrame) and f.stream_id == sid:
                ended = ended or "END_STREAM" in f.flags
    if not goaways:
        fail("no GOAWAY after SIGTERM")
    if any(code != 0 for _, code, _ in goaways):
        fail(f"GOAWAY with an error: {goaways}")
    last = goaways[-1][0]
    if last < sid:
        fail(f"the last GOAWAY names stream {last}, stream {sid} was in flight")
    if not ended or data != b"slow 1000\n":
        fail(f"the request in flight did not complete: {data!r}, ended {ended}")
    if not closed:
        fail("the connection stayed open after its last stream")
    print(f"ok: SIGTERM: GOAWAY(NO_ERROR) ({len(goaways)}, the last naming stream {last}), "
          "the stream in flight completes, then the connection closes")


def case_preface_refused(host, port):
    s = socket.create_connection((host, port), timeout=DEADLINE)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    data = b""
    end = time.monotonic() + DEADLINE
    while b"\r\n\r\n" not in data and time.monotonic() < end:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    if not data.startswith(b"HTTP/1.1 505 "):
        fail(f"with [http2] enabled = no, the preface got {data[:40]!r}, expected 505")
    print("ok: with HTTP/2 off, the preface gets 505")


def main():
    host, port, case = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    args = sys.argv[4:]
    fn = globals().get("case_" + case.replace("-", "_"))
    if not fn:
        fail(f"no case {case}")
    fn(host, port, *args)


if __name__ == "__main__":
    main()
