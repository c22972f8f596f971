# tests/http2/h2raw.py — a raw HTTP/2 client connection for the frame-level tests: frames out as built, frames in parsed (hyperframe), header blocks through hpack, every read bounded in time.
#
# Imported by conformance.py and hostile.py. It does only what the tests need
# to see: it answers the server's SETTINGS and PING (unless told not to) and
# keeps every frame it received, so that a failing case can print them.

import select
import socket
import ssl
import struct
import time

import hpack
from hyperframe.frame import Frame

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
TYPE_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
              "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes (section 7).
ERRORS = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
          "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
          "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
          "HTTP_1_1_REQUIRED"]
for _i, _n in enumerate(ERRORS):
    globals()[_n] = _i

# SETTINGS identifiers (section 6.5.2).
HEADER_TABLE_SIZE = 0x1
ENABLE_PUSH = 0x2
MAX_CONCURRENT_STREAMS = 0x3
INITIAL_WINDOW_SIZE = 0x4
MAX_FRAME_SIZE = 0x5
MAX_HEADER_LIST_SIZE = 0x6
SETTING_NAMES = {1: "HEADER_TABLE_SIZE", 2: "ENABLE_PUSH", 3: "MAX_CONCURRENT_STREAMS",
                 4: "INITIAL_WINDOW_SIZE", 5: "MAX_FRAME_SIZE", 6: "MAX_HEADER_LIST_SIZE",
                 8: "ENABLE_CONNECT_PROTOCOL", 9: "NO_RFC7540_PRIORITIES"}


def error_name(code):
    return ERRORS[code] if 0 <= code < len(ERRORS) else "0x%x" % code


def raw_frame(ftype, flags, stream_id, payload=b""):
    """A frame as bytes, whatever its contents: the tests send invalid ones."""
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, stream_id) + payload


def settings_payload(*pairs):
    return b"".join(struct.pack(">HI", k, v) for k, v in pairs)


def lit(name, value):
    """An HPACK literal field without indexing, no Huffman: exactly the bytes
    given, so that invalid names (uppercase, pseudo-headers in the wrong
    place) reach the server as written."""
    if isinstance(name, str):
        name = name.encode()
    if isinstance(value, str):
        value = value.encode()
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def hpack_int(v, prefix, first=0):
    """An HPACK integer (RFC 7541 5.1) with an N-bit prefix; first holds the
    bits above the prefix."""
    limit = (1 << prefix) - 1
    if v < limit:
        return bytes([first | v])
    out = bytearray([first | limit])
    v -= limit
    while v >= 128:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def describe(f):
    """One line for a received frame."""
    t = f.type
    name = TYPE_NAMES[t] if t < len(TYPE_NAMES) else "type 0x%x" % t
    s = "%s stream=%d flags=0x%x len=%d" % (name, f.stream_id, f.flags_byte, f.length)
    if t == GOAWAY:
        s += " last=%d error=%s debug=%r" % (f.last_stream_id, error_name(f.error_code),
                                              bytes(f.additional_data)[:80])
    elif t == RST_STREAM:
        s += " error=%s" % error_name(f.error_code)
    elif t == SETTINGS:
        s += " " + ",".join("%s=%d" % (SETTING_NAMES.get(k, hex(k)), v)
                            for k, v in f.settings.items())
    elif t == WINDOW_UPDATE:
        s += " increment=%d" % f.window_increment
    elif t in (HEADERS, CONTINUATION) and getattr(f, "decoded", None) is not None:
        s += " " + " ".join("%s: %s" % (k, v) for k, v in f.decoded)
    return s


class Closed(Exception):
    """The server closed the connection (or reset it)."""


class Timeout(Exception):
    """Nothing the test waited for came in time."""


class Conn:
    """One HTTP/2 connection from the client side."""

    # The connections opened since the caller last emptied this list, the
    # newest last: a test runner closes them and shows the last one's frames.
    OPENED = []

    def __init__(self, target, tls=False, timeout=2.0, sock=None):
        """sock: a socket of the right family not yet connected, for
        options that must be set before connect()."""
        self.target = target
        self.tls = tls
        Conn.OPENED.append(self)
        if target.startswith("/"):
            self.sock = sock or socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(target)
        else:
            host, port = target.rsplit(":", 1)
            self.sock = sock or socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect((host.strip("[]"), int(port)))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
            if self.sock.selected_alpn_protocol() != "h2":
                raise RuntimeError("ALPN selected %r, not h2" % self.sock.selected_alpn_protocol())
        self.timeout = timeout
        self.buf = bytearray()
        self.frames = []           # every frame received, in order
        self.pending = []          # received and not yet taken by expect()
        self.server_settings = {}
        self.got_settings = False
        self.settings_acked = 0
        self.closed = False
        self.close_reason = None
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.block = None          # (frame, bytes) of a header block in progress
        self.auto_ack = True       # SETTINGS and PING answered
        self.auto_window = True    # the connection's window given back
        self.next_stream = 1

    # ---- out ----
    def send(self, data):
        """All of data, as a client with its own event loop would: while the
        server takes nothing, what it sends is taken in (kept for the next
        read), so that neither side waits on the other for ever. A server
        that takes nothing for the whole timeout counts as gone."""
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        self.sock.setblocking(False)
        try:
            while len(view):
                try:
                    n = self.sock.send(view)
                    view = view[n:]
                    continue
                except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    pass
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as e:
                    # What the server wrote before closing may still be read.
                    self.close_reason = "send: %s" % e
                    raise Closed(self.close_reason)
                left = deadline - time.monotonic()
                if left <= 0:
                    self.close_reason = "send: the server took nothing for %.0f s" % self.timeout
                    raise Closed(self.close_reason)
                r, _w, _x = select.select([self.sock], [self.sock], [], left)
                if r and not self.closed:
                    self._take_in()
        finally:
            self.sock.settimeout(self.timeout)

    def _take_in(self):
        """What can be received now, into buf (socket non-blocking)."""
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except (ConnectionResetError, ssl.SSLError, OSError) as e:
            data = b""
            self.close_reason = "recv: %s" % e
        if not data:
            self.closed = True
            self.close_reason = self.close_reason or "end of stream"
            return
        self.buf += data

    def frame(self, ftype, flags, stream_id, payload=b""):
        self.send(raw_frame(ftype, flags, stream_id, payload))

    def preface(self, *settings):
        self.send(PREFACE + raw_frame(SETTINGS, 0, 0, settings_payload(*settings)))

    def handshake(self, *settings):
        """Preface and our SETTINGS; wait for the server's SETTINGS (which
        must come first) and for its ACK of ours."""
        self.preface(*settings)
        f = self.read_frame(time.monotonic() + self.timeout)
        if f.type != SETTINGS or f.flags_byte & ACK:
            raise AssertionError("the server's first frame is not SETTINGS: " + describe(f))
        self.pending.remove(f)
        deadline = time.monotonic() + self.timeout
        while self.settings_acked == 0:
            self.read_frame(deadline)
        self.pending = [p for p in self.pending if p.type != SETTINGS]
        return self

    def block_for(self, headers):
        return self.encoder.encode(headers)

    def request_headers(self, path, method="GET", extra=()):
        authority = "localhost"
        return [(":method", method), (":scheme", "https" if self.tls else "http"), (":path", path),
                (":authority", authority)] + list(extra)

    def headers(self, stream_id, block, end_stream=True, end_headers=True, flags=0):
        flags |= (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        self.frame(HEADERS, flags, stream_id, block)

    def request(self, path, stream_id=None, method="GET", end_stream=True, extra=()):
        if stream_id is None:
            stream_id = self.next_stream
        self.next_stream = max(self.next_stream, stream_id + 2)
        self.headers(stream_id, self.block_for(self.request_headers(path, method, extra)),
                     end_stream=end_stream)
        return stream_id

    def ping(self, data=b"pafping!"):
        self.frame(PING, 0, 0, data)

    # ---- in ----
    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout()
        except (ConnectionResetError, ssl.SSLError, OSError) as e:
            data = b""
            self.close_reason = "recv: %s" % e
        if not data:
            self.closed = True
            self.close_reason = self.close_reason or "end of stream"
            raise Closed(self.close_reason)
        self.buf += data

    def read_frame(self, deadline):
        """The next frame (also appended to pending). Raises Timeout or Closed."""
        while True:
            f = self._parse_one()
            if f is not None:
                return f
            if self.closed:
                raise Closed(self.close_reason)
            self._fill(deadline)

    def _parse_one(self):
        if len(self.buf) < 9:
            return None
        length = int.from_bytes(self.buf[:3], "big")
        if len(self.buf) < 9 + length:
            return None
        f, length = Frame.parse_frame_header(memoryview(bytes(self.buf[:9])))
        body = bytes(self.buf[9:9 + length])
        del self.buf[:9 + length]
        f.parse_body(memoryview(body))
        f.length = length
        f.flags_byte = body_flags(f)
        f.decoded = None
        self._account(f, body)
        self.frames.append(f)
        self.pending.append(f)
        return f

    def poll(self):
        """Take in what has arrived, without waiting; the frames complete
        so far go to pending. Returns False once the server has closed."""
        if not self.closed:
            self.sock.setblocking(False)
            try:
                n = -1
                while not self.closed and len(self.buf) != n:
                    n = len(self.buf)
                    self._take_in()
            finally:
                self.sock.settimeout(self.timeout)
        while self._parse_one() is not None:
            pass
        return not self.closed

    def _account(self, f, body):
        t = f.type
        if t == SETTINGS:
            if f.flags_byte & ACK:
                self.settings_acked += 1
            else:
                self.server_settings.update(f.settings)
                self.got_settings = True
                if self.auto_ack:
                    self.frame(SETTINGS, ACK, 0)
        elif t == PING and not f.flags_byte & ACK and self.auto_ack:
            self.frame(PING, ACK, 0, bytes(f.opaque_data))
        elif t == DATA and f.length and self.auto_window:
            # The connection's window goes back as soon as DATA arrives, so
            # that one stream left unread does not stall the others; stream
            # windows go back as response() reads (or never: the tests).
            self.frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", f.length))
        elif t in (HEADERS, PUSH_PROMISE):
            self.block = (f, bytes(f.data))
            if f.flags_byte & END_HEADERS:
                self._decode()
        elif t == CONTINUATION and self.block:
            self.block = (self.block[0], self.block[1] + bytes(f.data))
            if f.flags_byte & END_HEADERS:
                self._decode()

    def _decode(self):
        first, data = self.block
        self.block = None
        try:
            first.decoded = [(k.decode("latin-1") if isinstance(k, bytes) else k,
                              v.decode("latin-1") if isinstance(v, bytes) else v)
                             for k, v in self.decoder.decode(data)]
        except Exception as e:  # the server's HPACK is what is tested then
            first.decoded = [("<hpack error>", str(e))]

    def take(self, pred, timeout=None):
        """The first frame satisfying pred, waiting at most timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            for f in self.pending:
                if pred(f):
                    self.pending.remove(f)
                    return f
            self.read_frame(deadline)

    def drain(self, timeout):
        """Read whatever comes during timeout; True if the server closed."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.read_frame(deadline)
        except Timeout:
            return False
        except Closed:
            return True

    def wait_closed(self, timeout):
        return self.drain(timeout)

    def response(self, stream_id, timeout=None):
        """(status, headers, body) of stream_id, read through END_STREAM."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        status, hdrs, body = None, None, bytearray()
        while True:
            for f in list(self.pending):
                if f.stream_id != stream_id and f.type != GOAWAY:
                    continue
                self.pending.remove(f)
                if f.type == GOAWAY:
                    raise AssertionError("GOAWAY while waiting for stream %d: %s" %
                                         (stream_id, describe(f)))
                if f.type == RST_STREAM:
                    raise AssertionError("stream %d reset: %s" % (stream_id, describe(f)))
                if f.type == HEADERS and f.decoded is not None and hdrs is None:
                    hdrs = f.decoded
                    status = dict(hdrs).get(":status")
                elif f.type == DATA:
                    body += bytes(f.data)
                    # Read as a client reads: the windows given back.
                    if f.length and not f.flags_byte & END_STREAM:
                        self.frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", f.length))
                if f.flags_byte & END_STREAM and f.type in (HEADERS, DATA):
                    return status, hdrs, bytes(body)
            self.read_frame(deadline)

    def trace(self):
        return "; ".join(describe(f) for f in self.frames[-12:]) + \
            ("; closed (%s)" % self.close_reason if self.closed else "")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def body_flags(f):
    """The flag byte as received: hyperframe keeps only the flags it knows."""
    v = 0
    bits = {"END_STREAM": 0x1, "ACK": 0x1, "END_HEADERS": 0x4, "PADDED": 0x8, "PRIORITY": 0x20}
    for name in f.flags:
        v |= bits.get(name, 0)
    return v
