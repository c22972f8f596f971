"""tests/http/httpraw.py — raw HTTP/1.1 over loopback or unix sockets for the http tests."""
import socket
import time


class Closed(Exception):
    """The server closed (or reset) the connection before a whole response."""


def connect(addr, timeout=5.0):
    """A socket to "127.0.0.1:P", "[::1]:P" or a unix socket path."""
    if addr.startswith("/") or addr.startswith("@"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = "\0" + addr[1:] if addr.startswith("@") else addr
        s.settimeout(timeout)
        s.connect(path)
        return s
    host, _, port = addr.rpartition(":")
    family = socket.AF_INET
    if host.startswith("["):
        host, family = host[1:-1], socket.AF_INET6
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, int(port)))
    return s


class Response:
    def __init__(self, status, reason, version, headers, body):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers  # [(lowercase name, value)]
        self.body = body

    def header(self, name):
        for n, v in self.headers:
            if n == name.lower():
                return v
        return None

    def __repr__(self):
        return "<%d %r %d bytes>" % (self.status, self.reason, len(self.body))


class Conn:
    """A connection and what it has received but not parsed yet. Every read is
    bounded by the deadline given to the call."""

    def __init__(self, addr, timeout=5.0, sock=None):
        self.sock = sock or connect(addr, timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        if self.eof:
            raise Closed("connection closed")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            raise Closed("connection closed")
        self.buf += data

    def _line(self, deadline):
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exactly(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_response(self, timeout=5.0, head=False, informational=False):
        """The next response; 1xx ones are skipped unless informational."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._line(deadline)
            version, _, rest = line.decode("latin-1").partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ValueError("bad status line %r" % line)
            status = int(code)
            headers = []
            while True:
                h = self._line(deadline)
                if not h:
                    break
                n, _, v = h.decode("latin-1").partition(":")
                headers.append((n.strip().lower(), v.strip()))
            r = Response(status, reason, version, headers, b"")
            if 100 <= status < 200 and status != 101:
                if informational:
                    return r
                continue
            break
        if head or status in (204, 304):
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if te is not None and "chunked" in te.lower():
            body = b""
            while True:
                size = int(self._line(deadline).split(b";")[0], 16)
                if size == 0:
                    while self._line(deadline):  # trailers
                        pass
                    break
                body += self._exactly(size, deadline)
                if self._line(deadline) != b"":
                    raise ValueError("chunk not followed by CRLF")
            r.body = body
        elif cl is not None:
            r.body = self._exactly(int(cl), deadline)
        else:
            # Until close (HTTP/1.0 streaming).
            try:
                while True:
                    self._fill(deadline)
            except Closed:
                pass
            r.body, self.buf = self.buf, b""
        return r

    def wait_eof(self, timeout):
        """Whether the server closes (or resets) within timeout; bytes that
        arrive meanwhile are kept in buf."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except Closed:
            return True
        except (TimeoutError, socket.timeout):
            return False
