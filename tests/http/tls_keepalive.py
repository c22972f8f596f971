"""tests/http/tls_keepalive.py — one kept-alive HTTPS connection driven by a control file.

Usage: tls_keepalive.py HOST:PORT CONTROL
Sends a request at once and prints "1 STATUS"; then, each time CONTROL
says "next", one more request on the same connection ("2 STATUS", …);
"quit" ends. Uses $FLOOD_CA to verify the server.
"""
import os
import socket
import ssl
import sys
import time

host, port = sys.argv[1].rsplit(":", 1)
control = sys.argv[2]
ctx = ssl.create_default_context(cafile=os.environ["FLOOD_CA"])
s = ctx.wrap_socket(socket.create_connection((host, int(port)), timeout=5), server_hostname="localhost")


def request(n):
    s.sendall(b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"hello\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit(f"request {n}: connection closed")
        data += chunk
    print(n, data.split(b" ")[1].decode(), flush=True)


request(1)
n = 1
deadline = time.monotonic() + 60
seen = ""
while time.monotonic() < deadline:
    try:
        with open(control) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    if text != seen:
        seen = text
        if "quit" in text:
            break
        if "next" in text:
            n += 1
            request(n)
    time.sleep(0.05)
