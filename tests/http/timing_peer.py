#!/usr/bin/env python3
"""tests/http/timing_peer.py — a loopback HTTP/1.1 server that takes its time where told,
for checking curl -w's time_* variables: /slow answers after 300 ms, /redirect sends a 302 to
/fast after 300 ms, /fast answers at once. With --tls CERT KEY, every TLS handshake waits
300 ms before the server reads the ClientHello. Connections are kept alive.

Usage: timing_peer.py PORTFILE [--tls CERT KEY]"""
import os
import socket
import ssl
import sys
import threading
import time

DELAY = 0.3


def answer(conn, status, body, extra=b""):
    conn.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n%s\r\n%s"
                 % (status, len(body), extra, body))


def serve(conn, context):
    try:
        if context:
            time.sleep(DELAY)
            conn = context.wrap_socket(conn, server_side=True)
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            target = head.split(b" ")[1]
            if target == b"/slow":
                time.sleep(DELAY)
                answer(conn, b"200 OK", b"slow\n")
            elif target == b"/redirect":
                time.sleep(DELAY)
                answer(conn, b"302 Found", b"", b"Location: /fast\r\n")
            else:
                answer(conn, b"200 OK", b"fast\n")
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()


def main():
    context = None
    if len(sys.argv) == 5 and sys.argv[2] == "--tls":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[3], sys.argv[4])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write("%d\n" % listener.getsockname()[1])
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn, context), daemon=True).start()


main()
