#!/bin/sh
# The write timeout measures progress, not whole writes: with write-timeout =
# 2 s, clients reading slowly but steadily get whole responses that take many
# timeouts (echo-server writing 8 MiB at once over TCP; paf serve sending a
# file in 128 KiB pieces over a unix socket, plain and TLS), while one that
# stops reading is cut about 2 s after the transport last took a byte.
# Each body is larger than what the kernel buffers (TCP's send buffer grows
# to 4 MiB; a unix socket's stays near 200 KiB), so that the server's writes
# really wait on the reader.
set -eu
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http/lib.sh"
here=$PAF_TEST_SRCDIR/tests/http
# shellcheck source=https-certs.sh
. "$here/https-certs.sh"

serve_pid=
peers=
# Ours too, by pid: lib.sh's cleanup stops echo-server.
cleanup_all() {
        for p in $peers $serve_pid; do
                kill "$p" 2>/dev/null || true
        done
        cleanup
}
trap cleanup_all EXIT

printf '[http]\nwrite-timeout = 2\n' >"$tmp/slow.conf"
start_server 1 --config "$tmp/slow.conf" --listen 127.0.0.1:0
addr=$server_addrs
echo "echo-server $server_pid on $addr"

# paf serve: a file, over TCP and TLS.
root=$tmp/root
mkdir "$root"
file_size=393216
head -c $file_size /dev/urandom >"$root/file.bin"
tls=
if command -v certtool >/dev/null 2>&1 && [ -f "$PAF_TEST_PLUGINDIR/tls.so" ]; then
        https_ca "$tmp" ca || fail "certtool: CA"
        https_cert "$tmp" srv ca localhost localhost 127.0.0.1 || fail "certtool: server"
        set -- --listen-tls "$tmp/tls.sock" --cert "$tmp/srv.pem" --key "$tmp/srv.key"
        tls=1
else
        echo "no certtool or tls.so: the TLS case is skipped"
        set --
fi
: >"$tmp/serve.err"
"$PAF_BIN" serve --config "$tmp/slow.conf" --listen "$tmp/plain.sock" "$@" --root "$root" \
        2>>"$tmp/serve.err" &
serve_pid=$!
want=$((1 + ${tls:-0}))
i=0
while [ "$(grep -c 'listening on' "$tmp/serve.err" || true)" -lt $want ]; do
        kill -0 "$serve_pid" 2>/dev/null || fail "paf serve exited: $(cat "$tmp/serve.err")"
        i=$((i + 1))
        [ $i -le 400 ] || fail "paf serve did not start"
        sleep 0.05
done
echo "paf serve $serve_pid on $tmp/plain.sock${tls:+ and $tmp/tls.sock (TLS)}"

# At once, so that the whole takes the time of one: 8 MiB in one write at
# 1 MiB/s (8 s); the file at 48 KiB/s, 2.7 s per 128 KiB piece (8 s).
stream_size=8388608
python3 "$here/slowpeer.py" slow "$addr" "/stream?bytes=$stream_size&piece=$stream_size" \
        $stream_size 1048576 4 >"$tmp/stream.out" 2>&1 &
p1=$!
python3 "$here/slowpeer.py" slow "$tmp/plain.sock" /file.bin $file_size 49152 4 "$root/file.bin" \
        >"$tmp/file.out" 2>&1 &
p2=$!
peers="$p1 $p2"
p3=
if [ -n "$tls" ]; then
        SLOWPEER_TLS_CA=$tmp/ca.pem python3 "$here/slowpeer.py" slow "$tmp/tls.sock" /file.bin \
                $file_size 49152 4 "$root/file.bin" >"$tmp/tls.out" 2>&1 &
        p3=$!
        peers="$peers $p3"
fi
rc=0
wait "$p1" || rc=1
sed 's/^/stream: /' "$tmp/stream.out"
wait "$p2" || rc=1
sed 's/^/file: /' "$tmp/file.out"
if [ -n "$p3" ]; then
        wait "$p3" || rc=1
        sed 's/^/tls file: /' "$tmp/tls.out"
fi
peers=
if [ $rc != 0 ]; then
        echo "--- paf serve stderr:" >&2
        tail -n 20 "$tmp/serve.err" >&2
        fail "a slow reader did not get its whole response"
fi
if grep -q 'write timeout' "$tmp/server.err" "$tmp/serve.err"; then
        fail "a write timeout while the readers read: $(grep 'write timeout' "$tmp/server.err" "$tmp/serve.err")"
fi

# A reader that stops: cut about 2 s later (16 MiB: more than the buffers).
python3 "$here/slowpeer.py" stall "$addr" "/stream?bytes=16777216&piece=16777216" \
        "$tmp/server.err" 2 || fail "stalled reader"
grep -q 'write timeout (2 s)' "$tmp/server.err" || fail "no 'write timeout (2 s)' report"
# Likewise when the handler answers later, from outside the engine's driver.
python3 "$here/slowpeer.py" stall "$addr" "/stream?bytes=16777216&piece=16777216&delay=200" \
        "$tmp/server.err" 2 || fail "stalled reader of a response begun 200 ms late"

out=$(curl -sS --max-time 5 "http://$addr/hello") || fail "GET /hello afterwards"
[ "$out" = hello ] || fail "GET /hello afterwards gave '$out'"
kill -TERM "$serve_pid"
i=0
while kill -0 "$serve_pid" 2>/dev/null &&
        [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$serve_pid/status" 2>/dev/null)" != Z ]; do
        i=$((i + 1))
        [ $i -le 200 ] || fail "paf serve did not exit within 10 s of SIGTERM"
        sleep 0.05
done
serve_rc=0
wait "$serve_pid" || serve_rc=$?
serve_pid=
[ $serve_rc = 0 ] || fail "paf serve exited with status $serve_rc"
stop_server
echo "ok: slow readers get whole responses, a stalled one is cut at the write timeout"
