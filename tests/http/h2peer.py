#!/usr/bin/python3
# tests/http/h2peer.py — an HTTP/2 server (python3-h2) that misbehaves on request, for the
# HTTP/2 client's suite (test-h2-client.c): h2peer.py h2c PORT, or h2peer.py garbage PORT
# CERT KEY (TLS that picks h2 by ALPN, then writes HTTP/1.1 at the client).
#
# h2c paths: /reset (RST_STREAM INTERNAL_ERROR at once), /reset-body (headers, 1000 bytes of
# body, then RST_STREAM), /silent (never answered), /big (BIG_SIZE bytes, byte i = i % 256,
# as fast as flow control lets), /sent (how many bytes of /big went so far on this
# connection), /connections (how many connections were accepted), /goaway (the streams up to
# it answered, then GOAWAY with it as the last stream: those above were not processed);
# anything else: 200 "ok PATH".
import socket
import ssl
import sys
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events

BIG_SIZE = 4 * 1024 * 1024
BIG = bytes(range(256)) * (BIG_SIZE // 256)

lock = threading.Lock()
n_connections = 0


def respond(c, sid, status, body):
    c.send_headers(sid, [(":status", str(status)), ("content-length", str(len(body)))])
    c.send_data(sid, body, end_stream=True)


def serve_h2c(sock):
    global n_connections
    with lock:
        n_connections += 1
    c = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    c.initiate_connection()
    sock.sendall(c.data_to_send())
    big = {}  # stream id -> bytes of /big sent
    gone = False
    while True:
        try:
            data = sock.recv(65536)
        except OSError:
            break
        if not data:
            break
        if gone:
            continue  # after GOAWAY: drained, not read
        requests = []
        for ev in c.receive_data(data):
            if isinstance(ev, h2.events.RequestReceived):
                requests.append((ev.stream_id, dict(ev.headers)[":path"]))
            elif isinstance(ev, h2.events.DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                big.pop(ev.stream_id, None)  # the client went: stop sending
        goaway = [sid for sid, path in requests if path == "/goaway"]
        for sid, path in requests:
            if goaway and sid > goaway[0]:
                continue  # not processed: above the GOAWAY's last stream
            if path == "/reset":
                c.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            elif path == "/reset-body":
                c.send_headers(sid, [(":status", "200")])
                c.send_data(sid, b"x" * 1000)
                c.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
            elif path == "/silent":
                pass
            elif path == "/big":
                c.send_headers(sid, [(":status", "200"), ("content-length", str(BIG_SIZE))])
                big[sid] = 0
            elif path == "/sent":
                respond(c, sid, 200, str(sum(big.values())).encode())
            elif path == "/connections":
                with lock:
                    n = n_connections
                respond(c, sid, 200, str(n).encode())
            else:
                respond(c, sid, 200, ("ok " + path).encode())
        # /big: as much as the windows allow now; the rest on WINDOW_UPDATE.
        for sid in list(big):
            while big[sid] < BIG_SIZE:
                n = min(c.local_flow_control_window(sid), c.max_outbound_frame_size,
                        BIG_SIZE - big[sid])
                if n <= 0:
                    break
                c.send_data(sid, BIG[big[sid]:big[sid] + n],
                            end_stream=big[sid] + n == BIG_SIZE)
                big[sid] += n
        if goaway:
            c.close_connection(error_code=0, last_stream_id=goaway[0])
            gone = True
        sock.sendall(c.data_to_send())
    sock.close()


def serve_garbage(sock, ctx):
    try:
        tls = ctx.wrap_socket(sock, server_side=True)
    except (ssl.SSLError, OSError):
        sock.close()
        return
    try:
        tls.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        while tls.recv(65536):
            pass
    except (ssl.SSLError, OSError):
        pass
    tls.close()


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    ctx = None
    if mode == "garbage":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        ctx.set_alpn_protocols(["h2"])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    while True:
        sock, _ = srv.accept()
        if mode == "garbage":
            t = threading.Thread(target=serve_garbage, args=(sock, ctx), daemon=True)
        else:
            t = threading.Thread(target=serve_h2c, args=(sock,), daemon=True)
        t.start()


if __name__ == "__main__":
    main()
