#!/usr/bin/env bash
# Captures the first flight (ClientHello) of gnutls-cli, openssl s_client and curl into the
# seed corpus of the tls-server harness: tests/fuzz/capture-clienthello.sh [CORPUS_DIR]
# Each file is the harness's two option bytes, then the bytes the client sent, as it sent
# them, to a loopback listener that answers nothing.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-corpus/tls-server}
mkdir -p "$out"
py=$(command -v python3)

# capture NAME OPTIONS COMMAND…: the listener prints its port, then saves what arrives.
capture() {
        local name=$1 opts=$2
        shift 2
        local tmp
        tmp=$(mktemp)
        "$py" - "$tmp" "$opts" >"$tmp.port" <<'PY' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
print(s.getsockname()[1], flush=True)
s.settimeout(10)
c, _ = s.accept()
c.settimeout(1.5)
data = b""
end = time.time() + 1.5
while time.time() < end:
    try:
        b = c.recv(65536)
    except socket.timeout:
        break
    if not b:
        break
    data += b
open(sys.argv[1], "wb").write(bytes([int(sys.argv[2], 0), 0]) + data)
PY
        local pid=$!
        for _ in $(seq 50); do [ -s "$tmp.port" ] && break; sleep 0.1; done
        local port
        port=$(cat "$tmp.port")
        # The client gives up on its own once the listener closes.
        "${@//PORT/$port}" </dev/null >/dev/null 2>&1 || true
        wait "$pid"
        mv "$tmp" "$out/$name"
        chmod 644 "$out/$name"
        rm -f "$tmp.port"
        echo "$out/$name: $(($(stat -c %s "$out/$name") - 2)) bytes"
}

# Options byte: 0x01 HTTP on top, 0x10 offer h2 (see fuzz-tls-server.c).
capture gnutls-cli 0x01 timeout 3 gnutls-cli --insecure --port=PORT localhost
capture gnutls-cli-tls12 0x00 timeout 3 gnutls-cli --insecure --priority=NORMAL:-VERS-ALL:+VERS-TLS1.2 \
        --port=PORT localhost
capture openssl 0x01 timeout 3 openssl s_client -connect 127.0.0.1:PORT -servername localhost
capture openssl-tls12 0x11 timeout 3 openssl s_client -connect 127.0.0.1:PORT -servername localhost \
        -tls1_2 -alpn h2,http/1.1
capture curl 0x11 timeout 3 curl -sk --max-time 2 https://localhost:PORT/
