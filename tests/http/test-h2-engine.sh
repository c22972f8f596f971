#!/bin/sh
# The HTTP/2 engine behind the paf_http_request API, against echo-server:
# h2c prior knowledge and h2 by ALPN (curl), the same handlers as HTTP/1.1,
# 64 MiB echoed both ways, trailers both ways, request bodies held by the
# flow-control window while the handler does not read them, resets, the
# [http] limits per stream (431, 413), [http2] enabled = no, and a graceful
# stop (GOAWAY, the stream in flight completes). Frame-level cases use
# python3-h2 (tests/http/h2-engine.py).
set -eu
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http/lib.sh"
here=$PAF_TEST_SRCDIR/tests/http
py=/usr/bin/python3
$py -c 'import h2, hyperframe' 2>/dev/null || { echo "python3-h2 missing: skipping"; exit 77; }
curl -V | grep -q HTTP2 || { echo "curl without HTTP/2: skipping"; exit 77; }
c() { curl -sS --max-time 30 "$@"; }
eng() { $py "$here/h2-engine.py" "$@" || fail "h2-engine.py $*"; }

start_server 2 --listen 127.0.0.1:0 --listen "$tmp/echo.sock"
tcp=$(echo "$server_addrs" | grep '^127\.0\.0\.1:[0-9]*$') || fail "no tcp address in: $server_addrs"
host=${tcp%:*}
port=${tcp##*:}

# curl, prior knowledge, over TCP and a unix socket: the protocol is 2, the
# same handler answers.
for how in tcp unix; do
        if [ $how = tcp ]; then set -- "http://$tcp"; else set -- --unix-socket "$tmp/echo.sock" http://localhost; fi
        out=$(c --http2-prior-knowledge -w ' %{http_version} %{http_code}' "$@/hello")
        [ "$out" = "hello
 2 200" ] || fail "$how: GET /hello over h2c: $out"
done
echo "ok: h2c prior knowledge over tcp and unix: /hello answered by the same handler"
# HTTP/1.1 still works on the same listener.
out=$(c -w ' %{http_version}' "http://$tcp/hello")
[ "$out" = "hello
 1.1" ] || fail "HTTP/1.1 on the same listener: $out"

# 64 MiB echoed back byte-exact, both ways at once (the handler pauses the
# body while it writes: the window is the backpressure).
head -c 67108864 /dev/urandom >"$tmp/64m"
c --http2-prior-knowledge --data-binary @"$tmp/64m" -H 'Content-Type: application/octet-stream' \
        -o "$tmp/64m.back" "http://$tcp/echo"
cmp -s "$tmp/64m" "$tmp/64m.back" || fail "64 MiB /echo over h2c: not byte-exact"
rm -f "$tmp/64m.back"
echo "ok: 64 MiB /echo over h2c, byte-exact"
# 64 MiB down with Content-Length, checked against the pattern.
out=$(c --http2-prior-knowledge -o "$tmp/down" -w '%{http_code} %{size_download}' "http://$tcp/stream?bytes=67108864")
[ "$out" = "200 67108864" ] || fail "/stream of 64 MiB: $out"
$py - "$tmp/down" <<'EOF' || fail "/stream: the body is not the pattern"
import sys
d = open(sys.argv[1], 'rb').read()
p = bytes(ord('a') + i % 26 for i in range(26))
sys.exit(0 if d == (p * (len(d) // 26 + 1))[:len(d)] else 1)
EOF
echo "ok: 64 MiB streamed down, byte-exact"

eng "$host" "$port" trailers
eng "$host" "$port" window
eng "$host" "$port" echo 3000000
eng "$host" "$port" abort
eng "$host" "$port" continue
grep -q '/slow aborted' "$tmp/server.err" || fail "the handler was not told of the reset"
eng "$host" "$port" big-headers
stop_server

# h2 by ALPN on paf serve's TLS listener (h2 first, http/1.1 still
# offered), and without h2 when [http2] enabled = no.
if command -v certtool >/dev/null; then
        certtool --generate-privkey --key-type ecdsa --outfile "$tmp/key.pem" 2>/dev/null
        printf 'cn=localhost\ndns_name=localhost\nip_address=127.0.0.1\nexpiration_days=30\n' >"$tmp/tpl"
        certtool --generate-self-signed --load-privkey "$tmp/key.pem" --template "$tmp/tpl" \
                --outfile "$tmp/cert.pem" 2>/dev/null
        mkdir "$tmp/root"
        head -c 300000 /dev/urandom >"$tmp/root/f.bin"
        for mode in on off; do
                conf=/dev/null
                [ $mode = off ] && conf=$tmp/off.conf && printf '[http2]\nenabled = no\n' >"$conf"
                : >"$tmp/serve.err"
                "$PAF_BIN" serve --quiet --workers 1 --config "$conf" --listen-tls 127.0.0.1:0 \
                        --cert "$tmp/cert.pem" --key "$tmp/key.pem" --root "$tmp/root" \
                        2>"$tmp/serve.err" &
                serve_pid=$!
                i=0
                until grep -q 'listening on https://' "$tmp/serve.err"; do
                        i=$((i + 1))
                        [ $i -le 200 ] || { kill $serve_pid; fail "paf serve did not start: $(cat "$tmp/serve.err")"; }
                        sleep 0.05
                done
                url=$(sed -n 's/.*listening on \(https:[^ ]*\).*/\1/p' "$tmp/serve.err" | head -n1)
                want=2
                [ $mode = off ] && want=1.1
                out=$(c --cacert "$tmp/cert.pem" -r 1000-200999 -o "$tmp/part" -w '%{http_version} %{http_code}' "$url/f.bin") ||
                        { kill $serve_pid; fail "curl over TLS ($mode)"; }
                tail -c +1001 "$tmp/root/f.bin" | head -c 200000 | cmp -s - "$tmp/part" ||
                        { kill $serve_pid; fail "Range over TLS ($mode): not byte-exact"; }
                out2=$(c --http1.1 --cacert "$tmp/cert.pem" -o /dev/null -w '%{http_version}' "$url/f.bin")
                kill $serve_pid
                wait $serve_pid || true
                [ "$out" = "$want 206" ] || fail "TLS with HTTP/2 $mode: curl got $out, expected $want 206"
                [ "$out2" = 1.1 ] || fail "TLS with HTTP/2 $mode: ALPN http/1.1 got $out2"
        done
        echo "ok: TLS: ALPN picks h2 (a Range byte-exact over it), http/1.1 still offered; with [http2] enabled = no, only http/1.1"
fi

# The [http] limits per stream: max-body.
printf '[http]\nmax-body = 1000\n' >"$tmp/limits.conf"
start_server 1 -c "$tmp/limits.conf" --listen 127.0.0.1:0
tcp=$(echo "$server_addrs" | head -n1)
eng "${tcp%:*}" "${tcp##*:}" big-body
# Graceful stop: GOAWAY, the stream in flight completes, the server exits 0.
echo "$server_pid" >"$tmp/pid"
eng "${tcp%:*}" "${tcp##*:}" stop "$tmp/pid"
wait_server 100
[ "$server_rc" = 0 ] || fail "echo-server exited with $server_rc after a graceful stop"

# HTTP/2 off: the preface gets 505, HTTP/1.1 goes on.
printf '[http2]\nenabled = no\n' >"$tmp/off.conf"
start_server 1 -c "$tmp/off.conf" --listen 127.0.0.1:0
tcp=$(echo "$server_addrs" | head -n1)
eng "${tcp%:*}" "${tcp##*:}" preface-refused
[ "$(c "http://$tcp/hello")" = hello ] || fail "HTTP/1.1 with [http2] enabled = no"
stop_server
echo "all HTTP/2 engine checks passed"
