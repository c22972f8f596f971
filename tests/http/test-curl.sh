#!/bin/sh
# curl against echo-server over TCP and over a unix socket: GET, HEAD, bodies
# echoed byte-exact (Content-Length, chunked, 100-continue), connection
# reuse, pipelining in order, and 1 GiB streamed with the server's memory flat.
set -eu
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http/lib.sh"
here=$PAF_TEST_SRCDIR/tests/http
n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok: $*"
}

start_server 2 --listen 127.0.0.1:0 --listen "$tmp/echo.sock"
tcp=$(echo "$server_addrs" | grep '^127\.0\.0\.1:[0-9]*$') || fail "no tcp address in: $server_addrs"
unix=$(echo "$server_addrs" | grep '^/') || fail "no unix address in: $server_addrs"
[ "$unix" = "$tmp/echo.sock" ] || fail "unix listener reported $unix"
echo "server $server_pid on $tcp and $unix"

# Bodies: small, 100 KiB and 3 MiB of random bytes.
printf 'a small body\n' >"$tmp/small"
head -c 102400 /dev/urandom >"$tmp/100k"
head -c 3145728 /dev/urandom >"$tmp/3m"

# Bounded: no curl call may hang the test.
c() { curl -sS --max-time 20 "$@"; }

for transport in tcp unix; do
        if [ $transport = tcp ]; then
                url=http://$tcp
                set -- # no extra options
        else
                url=http://localhost
                set -- --unix-socket "$unix"
        fi

        out=$(c "$@" -w ' %{http_code}' "$url/hello") || fail "$transport: GET /hello"
        [ "$out" = "hello
 200" ] || fail "$transport: GET /hello gave '$out'"
        ok "$transport: GET /hello"

        c "$@" -I "$url/hello" >"$tmp/head" || fail "$transport: HEAD"
        tr -d '\r' <"$tmp/head" | grep -qi '^content-length: 6$' || fail "$transport: HEAD has no Content-Length: 6: $(cat "$tmp/head")"
        grep -q '^HTTP/1.1 200' "$tmp/head" || fail "$transport: HEAD status"
        # -I never reads a body; that none is sent is checked by pipeline.py.
        ok "$transport: HEAD"

        for f in small 100k; do
                c "$@" -H 'Expect:' -H 'Content-Type: application/octet-stream' \
                        --data-binary "@$tmp/$f" -o "$tmp/out" "$url/echo" || fail "$transport: POST $f"
                cmp "$tmp/$f" "$tmp/out" || fail "$transport: POST $f not echoed byte-exact"
                ok "$transport: POST $f with Content-Length echoed"
        done

        c "$@" -H 'Expect:' -H 'Transfer-Encoding: chunked' --data-binary "@$tmp/3m" \
                -o "$tmp/out" "$url/echo" || fail "$transport: chunked POST"
        cmp "$tmp/3m" "$tmp/out" || fail "$transport: chunked 3 MiB upload not echoed byte-exact"
        ok "$transport: chunked 3 MiB upload echoed"

        out=$(c "$@" -H 'Expect:' --data-binary "@$tmp/3m" "$url/sink") || fail "$transport: POST /sink"
        [ "$out" = 3145728 ] || fail "$transport: /sink counted '$out' bytes of 3145728"
        ok "$transport: 3 MiB read to the end before the answer"

        c "$@" -v -H 'Expect: 100-continue' --data-binary "@$tmp/100k" -o "$tmp/out" \
                "$url/echo" 2>"$tmp/verbose" || fail "$transport: 100-continue POST"
        grep -q '^< HTTP/1.1 100 Continue' "$tmp/verbose" || fail "$transport: no 100 Continue: $(cat "$tmp/verbose")"
        cmp "$tmp/100k" "$tmp/out" || fail "$transport: 100-continue body not echoed"
        ok "$transport: Expect: 100-continue"

        out=$(c "$@" -X POST --data-binary '' -w '%{http_code}' "$url/echo") || fail "$transport: empty POST"
        [ "$out" = 200 ] || fail "$transport: empty POST gave '$out'"
        ok "$transport: empty POST"

        c "$@" -v -o /dev/null -o /dev/null "$url/hello" "$url/hello?again" 2>"$tmp/verbose" ||
                fail "$transport: two GETs"
        grep -qi 're-using existing connection' "$tmp/verbose" || fail "$transport: connection not reused: $(cat "$tmp/verbose")"
        [ "$(grep -c '^< HTTP/1.1 200' "$tmp/verbose")" = 2 ] || fail "$transport: two 200s expected"
        ok "$transport: connection reused"

        out=$(c "$@" -o /dev/null -w '%{http_code}' "$url/missing") || fail "$transport: GET /missing"
        [ "$out" = 404 ] || fail "$transport: /missing gave $out"
        ok "$transport: 404"

        addr=$tcp
        [ $transport = unix ] && addr=$unix
        python3 "$here/pipeline.py" "$addr" || fail "$transport: pipeline.py"
        ok "$transport: pipelining, HEAD without body, Connection: close, HTTP/1.0"
done

# 1 GiB with Content-Length, over TCP: the server writes 64 KiB at a time
# after the previous write completed, so its memory must stay flat.
rss0=$(status_kb "$server_pid" VmRSS)
hwm0=$(status_kb "$server_pid" VmHWM)
t0=$(date +%s.%N)
size=$(curl -sS --max-time 120 -o /dev/null -w '%{size_download}' "http://$tcp/stream?bytes=1073741824") ||
        fail "1 GiB stream"
t1=$(date +%s.%N)
rss1=$(status_kb "$server_pid" VmRSS)
hwm1=$(status_kb "$server_pid" VmHWM)
[ "$size" = 1073741824 ] || fail "1 GiB stream: got $size bytes"
growth=$((hwm1 - rss0))
echo "1 GiB stream: $(echo "$t0 $t1" | awk '{printf "%.2f s, %.0f MiB/s", $2 - $1, 1024 / ($2 - $1)}');" \
        "server VmRSS $rss0 -> $rss1 KiB, VmHWM $hwm0 -> $hwm1 KiB, peak growth $growth KiB"
[ $growth -lt 16384 ] || fail "server memory grew by $growth KiB while streaming"
ok "1 GiB stream, memory flat"

stop_server
ok "SIGTERM: exit 0"
echo "$n_checks checks passed"
