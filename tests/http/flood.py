"""tests/http/flood.py — connection floods against a running server, with a normal client after each round.

Usage: flood.py PID HOST:PORT MODE [ROUNDS]
  MODE tls    silent connections, then garbage and truncated ClientHellos
  MODE http   silent connections, then garbage and half requests, each closed
  MODE hold N open N silent connections and keep them until stdin closes
  MODE states  one connection in each state of a request, kept until stdin closes
Each round: 50 silent connections, 300 that send junk and close (half of them
with a reset), then one normal request that must be answered within 1 s.
After the last round: the server's CPU over 2 s must be under 5 % and its fd
count back to what it was before the first round. Prints one line per round.
"""
import os
import random
import socket
import ssl
import struct
import sys
import time

pid, addr, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 4
host, port = addr.rsplit(":", 1)
port = int(port)
rnd = random.Random(9)
TRUNCATED_HELLO = bytes.fromhex("16030102000100 01fc0303".replace(" ", ""))
CA = os.environ.get("FLOOD_CA")


def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_ticks():
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def connect():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect((host, port))
    return s


def junk(s):
    if mode == "tls":
        data = TRUNCATED_HELLO if rnd.random() < 0.5 else rnd.randbytes(rnd.randint(100, 600))
    else:
        data = rnd.choice([b"GET / HTTP/1.1\r\nHost: x\r\n", rnd.randbytes(rnd.randint(100, 600)),
                           b"GET /" + b"a" * 300])
    try:
        s.sendall(data)
    except OSError:
        pass
    if rnd.random() < 0.5:
        # A reset rather than a FIN.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def normal_request():
    """One request as a client would send it; seconds it took."""
    t = time.monotonic()
    s = connect()
    s.settimeout(1.0)
    if mode == "tls":
        ctx = ssl.create_default_context(cafile=CA) if CA else ssl._create_unverified_context()
        if not CA:
            ctx.check_hostname = False
        s = ctx.wrap_socket(s, server_hostname="localhost")
    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    if not data.startswith(b"HTTP/1.1 "):
        raise SystemExit(f"FAIL: normal request: no response ({data[:80]!r})")
    return time.monotonic() - t


if mode == "hold":
    # N silent connections (a TLS listener holds them in handshake).
    held = [connect() for _ in range(int(sys.argv[4]))]
    print("held", len(held), flush=True)
    sys.stdin.read()
    sys.exit(0)

if mode == "states":
    # One connection in every state a plain HTTP server knows, then wait
    # for stdin to close: idle kept-alive, half a request line, headers
    # without their end, half a body, a big response not read, pipelined
    # requests not read, a closed write side, and a connection just opened.
    held = []
    s = connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.recv(65536)
    held.append(s)  # idle, kept alive
    for data in (b"GET / HT", b"GET / HTTP/1.1\r\nHost: x\r\n",
                 b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc",
                 b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 2000, b""):
        s = connect()
        if data:
            s.sendall(data)
        held.append(s)
    s = connect()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    s.shutdown(socket.SHUT_WR)
    held.append(s)
    print("held", len(held), flush=True)
    sys.stdin.read()
    sys.exit(0)

normal_request()
time.sleep(0.3)
baseline = fds()
for r in range(rounds):
    silent = [connect() for _ in range(50)]
    for _ in range(300):
        try:
            junk(connect())
        except OSError:
            pass
    try:
        took = normal_request()
    except (OSError, ssl.SSLError) as e:
        raise SystemExit(f"FAIL: round {r + 1}: normal request failed: {e}")
    if took > 1.0:
        raise SystemExit(f"FAIL: round {r + 1}: normal request took {took:.2f} s")
    for s in silent:
        s.close()
    print(f"round {r + 1}: normal request answered in {took * 1000:.0f} ms, server fds {fds()}", flush=True)

# The server notices the closed connections and goes idle.
deadline = time.monotonic() + 5
while fds() > baseline and time.monotonic() < deadline:
    time.sleep(0.1)
after = fds()
t0, c0 = time.monotonic(), cpu_ticks()
time.sleep(2)
cpu = (cpu_ticks() - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0) * 100
print(f"after the flood: cpu {cpu:.1f} %, fds {after} (baseline {baseline})", flush=True)
if cpu >= 5:
    raise SystemExit(f"FAIL: server still busy after the flood ({cpu:.1f} % CPU)")
if after > baseline:
    raise SystemExit(f"FAIL: fds did not return to the baseline ({after} > {baseline})")
