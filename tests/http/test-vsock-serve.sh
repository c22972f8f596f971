#!/bin/sh
# tests/http/test-vsock-serve.sh — `paf serve --listen vsock::PORT`: announces the listener, holds the port, SIGTERM exits 0 and frees it.
set -eu
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
reason=$(python3 -c '
import socket
try:
    socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
except (AttributeError, OSError) as e:
    print(e)
') || { echo "python3 failed: skipping"; exit 77; }
[ -z "$reason" ] || { echo "AF_VSOCK sockets cannot be created ($reason): skipping"; exit 77; }

export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"

tmp=$(mktemp -d)
pid=
cleanup() {
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT

n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok $n_checks: $*"
}
fail() {
        echo "FAIL: $*" >&2
        [ -f "$tmp/serve.err" ] && { echo "--- paf serve stderr:" >&2; tail -n 20 "$tmp/serve.err" >&2; }
        exit 1
}

# bind_vsock PORT: what binding (any CID, PORT) does: "ok" or the errno's name.
bind_vsock() {
        python3 -c '
import errno, socket, sys
s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
try:
    s.bind((socket.VMADDR_CID_ANY, int(sys.argv[1])))
    print("ok")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)))
finally:
    s.close()
' "$1"
}

# start_serve PORT: run paf serve on vsock::PORT and wait (at most 20 s, it
# may run under valgrind) for its listening line. Returns 1 if the port was
# taken by someone else, so the caller can pick another.
start_serve() {
        : >"$tmp/serve.err"
        "$PAF_BIN" serve --listen "vsock::$1" --root "$tmp/root" 2>"$tmp/serve.err" &
        pid=$!
        i=0
        while ! grep -q 'listening on' "$tmp/serve.err"; do
                if ! kill -0 "$pid" 2>/dev/null; then
                        wait "$pid" 2>/dev/null || true
                        pid=
                        grep -q 'Address already in use' "$tmp/serve.err" && return 1
                        fail "paf serve exited at start"
                fi
                i=$((i + 1))
                [ $i -le 400 ] || fail "paf serve did not announce its listener in 20 s"
                sleep 0.05
        done
}

mkdir "$tmp/root"
echo hello >"$tmp/root/index.html"

# A high port, different on every run; another taken is retried.
port=
tries=0
while [ -z "$port" ]; do
        tries=$((tries + 1))
        [ $tries -le 20 ] || fail "no free vsock port in 20 tries"
        candidate=$((40000 + ($$ * 31 + tries * 977 + $(date +%N | sed 's/^0*//;s/^$/0/')) % 20000))
        if start_serve "$candidate"; then
                port=$candidate
        fi
done
line=$(grep 'listening on' "$tmp/serve.err")
case $line in
"paf serve: listening on http+vsock://"*":$port") ok "announced: $line" ;;
*) fail "unexpected listening line: $line" ;;
esac

# The port is held, for every CID.
got=$(bind_vsock "$port")
[ "$got" = EADDRINUSE ] || fail "binding vsock::$port while paf serves it: $got, want EADDRINUSE"
ok "vsock::$port is taken (EADDRINUSE)"

# A second server on the same port says why it cannot start.
if "$PAF_BIN" serve --listen "vsock::$port" --root "$tmp/root" 2>"$tmp/second.err"; then
        fail "a second paf serve on vsock::$port started"
fi
grep -q "vsock::$port: Address already in use" "$tmp/second.err" ||
        fail "second server's message: $(cat "$tmp/second.err")"
ok "a second server fails: $(cat "$tmp/second.err")"

# SIGTERM: exits 0 and releases the port.
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" = 0 ] || fail "paf serve exited with status $rc after SIGTERM"
ok "SIGTERM: exit status 0"
got=$(bind_vsock "$port")
[ "$got" = ok ] || fail "vsock::$port after paf serve exited: $got, want free"
ok "vsock::$port is free again"

# Malformed addresses are refused with the part that is wrong.
for case in 'vsock:x:80|invalid CID "x"' 'vsock:2:|missing port' 'vsock:2:99999999999|out of range'; do
        address=${case%%|*}
        want=${case#*|}
        if "$PAF_BIN" serve --listen "$address" --root "$tmp/root" 2>"$tmp/bad.err"; then
                fail "paf serve --listen $address started"
        fi
        grep -qF "$want" "$tmp/bad.err" || fail "--listen $address: $(cat "$tmp/bad.err")"
        ok "--listen $address: $(cat "$tmp/bad.err")"
done

echo "all $n_checks checks passed"
