#!/bin/sh
# Half-close: a client that sends its request and then shuts its write side
# down (nc -N, HTTP/1.0 scripts) gets the whole response, also when the
# handler answers later with a large streamed body, over HTTP/1.1 and 1.0;
# the connection then closes. A client that resets instead still makes the
# abort handler run, and the server goes on (and exits clean: no leak, no
# connection left behind).
set -eu
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http/lib.sh"
here=$PAF_TEST_SRCDIR/tests/http

start_server 1 --listen 127.0.0.1:0
addr=$server_addrs
echo "server $server_pid on $addr"

# Answered 300 ms after the client's end of stream: 4 MiB, 64 KiB a write.
size=4194304
for version in 1.1 1.0; do
        python3 "$here/slowpeer.py" halfclose "$addr" "/stream?bytes=$size&delay=300" $size $version ||
                fail "half-closed HTTP/$version client"
done
# At once, in one write of 4 MiB.
python3 "$here/slowpeer.py" halfclose "$addr" "/stream?bytes=$size&piece=$size" $size 1.1 ||
        fail "half-closed client, one big write"

if command -v nc >/dev/null 2>&1 && nc -h 2>&1 | grep -q -- '-N'; then
        port=${addr##*:}
        printf 'GET /slow?ms=300 HTTP/1.0\r\n\r\n' |
                timeout 10 nc -N 127.0.0.1 "$port" >"$tmp/nc-slow.out" || fail "nc -N /slow"
        tr -d '\r' <"$tmp/nc-slow.out" | tail -n 1 | grep -qx 'slow 300' ||
                fail "nc -N /slow: $(cat "$tmp/nc-slow.out")"
        printf 'GET /stream?bytes=1048576&delay=200 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' |
                timeout 10 nc -N 127.0.0.1 "$port" >"$tmp/nc-stream.out" || fail "nc -N /stream"
        head -n 1 "$tmp/nc-stream.out" | grep -q '^HTTP/1.1 200 ' || fail "nc -N /stream: no 200"
        body=$(sed '1,/^\r$/d' "$tmp/nc-stream.out" | wc -c)
        [ "$body" -eq 1048576 ] || fail "nc -N /stream: $body body bytes, want 1048576"
        echo "ok: nc -N gets /slow and 1 MiB of /stream whole"
else
        echo "no nc with -N (netcat-openbsd): the nc case is skipped"
fi

# Resets: while the handler waits to answer (the server is reading: the read
# fails), and after a half-close (not reading any more: the first write
# fails). Each runs the abort handler.
n_before=$(grep -c '^echo-server: /stream aborted: ' "$tmp/server.err" || true)
python3 "$here/slowpeer.py" reset "$addr" "/stream?bytes=1073741824&delay=400" || fail "reset"
python3 "$here/slowpeer.py" reset "$addr" "/stream?bytes=1073741824&delay=400" halfclose ||
        fail "reset after a half-close"
python3 "$here/slowpeer.py" reset "$addr" "/slow?ms=400" || fail "reset /slow"
i=0
while [ "$(grep -c '^echo-server: /stream aborted: ' "$tmp/server.err" || true)" -lt $((n_before + 2)) ] ||
        ! grep -q '^echo-server: /slow aborted: ' "$tmp/server.err"; do
        i=$((i + 1))
        [ $i -le 100 ] || fail "the abort handlers did not all run within 5 s"
        sleep 0.05
done
echo "ok: resets abort: $(grep -c ' aborted: ' "$tmp/server.err") abort handler runs"

out=$(curl -sS --max-time 5 "http://$addr/hello") || fail "GET /hello afterwards"
[ "$out" = hello ] || fail "GET /hello afterwards gave '$out'"
# A connection left behind would hold the graceful stop.
stop_server
echo "ok: half-closed clients get whole responses; resets abort; clean exit"
