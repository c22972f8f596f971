# tests/http2/lib.sh — sourced by the http2 suites: a temporary directory, the server under test (paf serve, or nghttpd with H2_PEER=nghttpd to check the tests themselves), stopped by pid.
#
# H2_PEER=nghttpd runs a suite against nghttpd (package nghttp2-server)
# instead of paf: the way to tell a wrong test from a wrong engine. The
# cases nghttpd is known to fail are listed in each suite.

set -eu
# The Debian python3, which has the h2, hyperframe and hpack modules (a
# python3 earlier on PATH may be another one).
py=/usr/bin/python3
# shellcheck disable=SC2034 # here, and the addresses start_paf sets, are the suites'
here=$PAF_TEST_SRCDIR/tests/http2
PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
export PAF_PLUGIN_PATH
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
H2_PEER=${H2_PEER:-paf}

skip() {
        echo "$*: skipping"
        exit 77
}

[ -x $py ] || skip "no $py"
$py -c 'import h2, hyperframe, hpack' 2>/dev/null ||
        skip "$py has no h2/hyperframe/hpack (packages python3-h2 python3-hyperframe python3-hpack)"

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
chmod 0755 "$tmp"
fail_logs="$tmp/*.err"

# start_paf NAME N [paf serve options…]: waits (20 s at most) for N
# "listening on" lines; sets pid and, from those lines, tcp (HOST:PORT of
# http://), tls (of https://), unix and tls_unix (socket paths).
# shellcheck disable=SC2034
start_paf() {
        name=$1 want=$2
        shift 2
        : >"$tmp/$name.err"
        "$PAF_BIN" serve "$@" 2>>"$tmp/$name.err" &
        pid=$!
        pids="$pids $pid"
        i=0
        while n=$(grep -c 'listening on' "$tmp/$name.err" || true) && [ "${n:-0}" -lt "$want" ]; do
                kill -0 "$pid" 2>/dev/null || fail "$name: paf serve exited at start"
                i=$((i + 1))
                [ $i -lt 400 ] || fail "$name: paf serve did not start"
                sleep 0.05
        done
        tcp=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/$name.err" | head -n 1)
        tls=$(sed -n 's|^paf serve: listening on https://||p' "$tmp/$name.err" | head -n 1)
        # The socket path percent-encoded in the URL (only '/' is, in $tmp).
        unix=$(sed -n 's|^paf serve: listening on http+unix://||p' "$tmp/$name.err" |
                head -n 1 | sed 's|%2F|/|g')
        tls_unix=$(sed -n 's|^paf serve: listening on https+unix://||p' "$tmp/$name.err" |
                head -n 1 | sed 's|%2F|/|g')
}

# free_port: a TCP port nobody listens on now (for nghttpd, which cannot
# report the port it bound).
free_port() {
        $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: until 127.0.0.1:PORT accepts (10 s at most).
wait_port() {
        $py - "$1" <<'EOF' || fail "nothing listens on port $1"
import socket, sys, time
deadline = time.monotonic() + 10
while True:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
EOF
}

# start_nghttpd NAME h2c|tls [nghttpd options…]: nghttpd serving $root,
# over TLS with the certificate of make_certs; sets pid and port.
start_nghttpd() {
        name=$1 mode=$2
        shift 2
        command -v nghttpd >/dev/null 2>&1 || skip "nghttpd not found (package nghttp2-server)"
        port=$(free_port)
        : >"$tmp/$name.err"
        if [ "$mode" = h2c ]; then
                nghttpd --no-tls -d "$root" "$@" "$port" >/dev/null 2>>"$tmp/$name.err" &
        else
                nghttpd -d "$root" "$@" "$port" "$certs/srv.key" "$certs/srv.pem" \
                        >/dev/null 2>>"$tmp/$name.err" &
        fi
        pid=$!
        pids="$pids $pid"
        wait_port "$port"
}

# make_certs: a CA and a certificate for localhost and 127.0.0.1 in $certs
# (certtool; skips without it).
certs=$tmp/certs
make_certs() {
        command -v certtool >/dev/null 2>&1 || skip "certtool not found"
        # shellcheck source=../http/https-certs.sh
        . "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"
        mkdir -p "$certs"
        https_ca "$certs" ca || fail "certtool: CA"
        https_cert "$certs" srv ca localhost localhost 127.0.0.1 || fail "certtool: server"
}

# stop_pid PID NAME: SIGTERM; it must exit within 10 s.
stop_pid() {
        kill -TERM "$1" 2>/dev/null || fail "$2: already gone"
        i=0
        while kill -0 "$1" 2>/dev/null; do
                state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
                [ "$state" = Z ] && break
                i=$((i + 1))
                [ $i -le 200 ] || fail "$2: did not exit on SIGTERM"
                sleep 0.05
        done
        wait "$1" 2>/dev/null || true
}

# speaks_h2c HOST:PORT: whether the server answers the h2 preface with a
# SETTINGS frame (type 4 in the 4th byte of its first frame).
speaks_h2c() {
        $py - "$1" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=3)
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0")
data = b""
try:
    while len(data) < 9:
        b = s.recv(100)
        if not b:
            break
        data += b
except OSError:
    pass
sys.exit(0 if len(data) >= 9 and data[3] == 4 else 1)
EOF
}

# The tree served: a small file, 100 000 random bytes, a 64 MiB sparse one.
root=$tmp/root
mkdir "$root"
printf 'hello, h2\n' >"$root/hello.txt"
head -c 100000 /dev/urandom >"$root/data.bin"
truncate -s 64M "$root/big.bin"
