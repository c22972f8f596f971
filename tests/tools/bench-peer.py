"""tests/tools/bench-peer.py — a broken HTTP server for test-bench.sh, on a free loopback port.

    bench-peer.py MODE PORTFILE

MODE is how every request is answered:
  short    a 200 with Content-Length: 100 and 10 bytes of body, then close
  garbage  bytes that are no HTTP response, then close

Writes the port to PORTFILE once it listens; serves until killed.
"""
import os
import socket
import sys
import threading

ANSWERS = {
    "short": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789",
    "garbage": b"SPDY/9 banana\r\n\x00\x01\x02\r\n\r\n",
}


def serve(conn, answer):
    with conn:
        conn.settimeout(10)
        buf = b""
        try:
            # One request head, then the answer and the close.
            while b"\r\n\r\n" not in buf:
                data = conn.recv(4096)
                if not data:
                    return
                buf += data
            conn.sendall(answer)
            # Close with nothing unread: a FIN, not a reset.
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass
        except OSError:
            pass


def main():
    mode, portfile = sys.argv[1], sys.argv[2]
    answer = ANSWERS[mode]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    with open(portfile + ".tmp", "w") as f:
        f.write("%d\n" % ls.getsockname()[1])
    os.rename(portfile + ".tmp", portfile)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(conn, answer), daemon=True).start()


main()
