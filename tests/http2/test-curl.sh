#!/bin/sh
# tests/http2/test-curl.sh — HTTP/2 served by paf to real clients: curl --http2 (TLS, ALPN) and --http2-prior-knowledge (h2c, TCP and unix socket) for GET, HEAD, Range, 304 and a 64 MiB POST echoed; HTTP/1.1 still on the same listeners; nghttp -nv for the SETTINGS and the [http2] keys; h2load -c 10 -m 10 -n 100000 over TLS and a unix socket.
#
# H2_PEER=nghttpd runs the client side against nghttpd instead (the tests'
# own check); the paf-only parts (unix sockets, HTTP/1.1 fallback, the
# [http2] keys) are left out then.
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http2/lib.sh"
command -v curl >/dev/null 2>&1 || skip "curl not found"
curl --version | grep -q 'HTTP2' || skip "this curl has no HTTP/2"
have_tls=1
[ -f "$PAF_TEST_PLUGINDIR/tls.so" ] || have_tls=
if [ "$H2_PEER" = nghttpd ]; then
        have_tls=1
fi
if [ -n "$have_tls" ]; then
        make_certs
fi

# Bounded: no client call may hang the test.
c() { curl -sS --max-time 60 "$@"; }
data_size=$(wc -c <"$root/data.bin")

# ---- the servers: static files, and the echo fixture for POST ----
if [ "$H2_PEER" = nghttpd ]; then
        start_nghttpd h2c h2c
        h2c_addr=127.0.0.1:$port
        start_nghttpd tls tls
        tls_port=$port
        start_nghttpd echo h2c --echo-upload
        echo_addr=127.0.0.1:$port
        h2c_unix="" tls_unix="" echo_unix=""
else
        set -- --listen 127.0.0.1:0 --listen "$tmp/h2c.sock"
        n=2
        if [ -n "$have_tls" ]; then
                set -- "$@" --listen-tls 127.0.0.1:0 --listen-tls "$tmp/tls.sock" \
                        --cert "$certs/srv.pem" --key "$certs/srv.key"
                n=4
        fi
        start_paf main $n --quiet --root "$root" "$@"
        main_pid=$pid
        h2c_addr=$tcp
        tls_port=${tls##*:}
        speaks_h2c "$h2c_addr" ||
                fail "paf serve does not answer the HTTP/2 preface with SETTINGS on its plain listener (no h2c)"
        # The echo fixture: any paf_http_server speaks h2.
        # Created here: the background job's redirections may come late.
        : >"$tmp/echo.out"
        : >"$tmp/echo.err"
        "$PAF_TEST_ECHO_SERVER" --listen 127.0.0.1:0 --listen "$tmp/echo.sock" \
                >"$tmp/echo.out" 2>"$tmp/echo.err" &
        echo_pid=$!
        pids="$pids $echo_pid"
        i=0
        while [ "$(grep -c '^listening on ' "$tmp/echo.out")" -lt 2 ]; do
                kill -0 $echo_pid 2>/dev/null || fail "echo-server exited at start"
                i=$((i + 1))
                [ $i -le 400 ] || fail "echo-server did not start"
                sleep 0.05
        done
        echo_addr=$(sed -n 's/^listening on \([0-9.]*:[0-9]*\)$/\1/p' "$tmp/echo.out" | head -n 1)
        echo_unix=$tmp/echo.sock
        h2c_unix=$tmp/h2c.sock
        tls_unix=
        if [ -n "$have_tls" ]; then
                tls_unix=$tmp/tls.sock
        fi
fi
echo "h2c $h2c_addr, tls port ${tls_port:-none}, echo $echo_addr"

# The ways to reach the static server: NAME and curl options, one a line.
{
        echo "h2c --http2-prior-knowledge http://$h2c_addr"
        if [ -n "$h2c_unix" ]; then
                echo "h2c-unix --http2-prior-knowledge --unix-socket $h2c_unix http://localhost"
        fi
        if [ -n "$have_tls" ]; then
                echo "tls --http2 --cacert $certs/ca.pem https://localhost:$tls_port"
        fi
        if [ -n "$tls_unix" ]; then
                echo "tls-unix --http2 --cacert $certs/ca.pem --unix-socket $tls_unix https://localhost"
        fi
} >"$tmp/ways"

# header NAME FILE: a header's value from a dump (-D), without CR.
header() { tr -d '\r' <"$2" | sed -n "s/^$1: //Ip" | tail -n 1; }

while read -r name rest; do
        # The last word is the URL base, the others curl options.
        base=${rest##* }
        # shellcheck disable=SC2086 # options without spaces
        set -- ${rest% *}

        # GET: HTTP/2, the bytes of the files.
        for f in hello.txt data.bin; do
                out=$(c "$@" -o "$tmp/out" -w '%{http_code} %{http_version}' "$base/$f") ||
                        fail "$name: GET /$f"
                [ "$out" = "200 2" ] || fail "$name: GET /$f: status and version '$out', expected '200 2'"
                cmp -s "$tmp/out" "$root/$f" || fail "$name: GET /$f: bytes differ"
        done
        ok "$name: GET over HTTP/2, bodies equal the files"

        # HEAD: the headers, no body.
        # (-I writes the headers as the output: the body is size_download.)
        out=$(c "$@" -I -D "$tmp/h" -o /dev/null -w '%{http_code} %{http_version} %{size_download}' \
                "$base/data.bin") || fail "$name: HEAD"
        [ "$out" = "200 2 0" ] || fail "$name: HEAD: '$out' (status, version, body bytes)"
        [ "$(header content-length "$tmp/h")" = "$data_size" ] ||
                fail "$name: HEAD content-length: $(cat "$tmp/h")"
        etag=$(header etag "$tmp/h")
        lastmod=$(header last-modified "$tmp/h")
        ok "$name: HEAD: content-length $data_size, no body"

        # Range: 206 with exactly those bytes (nghttpd has no ranges).
        if [ "$H2_PEER" = paf ]; then
                out=$(c "$@" -r 1000-1999 -D "$tmp/h" -o "$tmp/out" -w '%{http_code} %{http_version}' \
                        "$base/data.bin") || fail "$name: Range"
                [ "$out" = "206 2" ] || fail "$name: Range: '$out'"
                dd if="$root/data.bin" of="$tmp/want" bs=1000 skip=1 count=1 2>/dev/null
                cmp -s "$tmp/out" "$tmp/want" || fail "$name: Range: bytes differ"
                [ "$(header content-range "$tmp/h")" = "bytes 1000-1999/$data_size" ] ||
                        fail "$name: Content-Range: $(cat "$tmp/h")"
                ok "$name: Range 1000-1999: 206, the bytes, Content-Range"
        fi

        # 304: If-None-Match with the ETag (nghttpd sends none), and
        # If-Modified-Since with the date.
        if [ "$H2_PEER" = paf ] || [ -n "$etag" ]; then
                [ -n "$etag" ] || fail "$name: no ETag to revalidate with"
                rm -f "$tmp/out"
                out=$(c "$@" -H "If-None-Match: $etag" -o "$tmp/out" -w '%{http_code} %{http_version}' \
                        "$base/data.bin") || fail "$name: If-None-Match"
                [ "$out" = "304 2" ] || fail "$name: If-None-Match $etag: '$out'"
                [ ! -s "$tmp/out" ] || fail "$name: 304 had a body"
        fi
        [ -n "$lastmod" ] || fail "$name: no Last-Modified"
        rm -f "$tmp/out"
        out=$(c "$@" -H "If-Modified-Since: $lastmod" -o "$tmp/out" -w '%{http_code} %{http_version}' \
                "$base/data.bin") || fail "$name: If-Modified-Since"
        [ "$out" = "304 2" ] || fail "$name: If-Modified-Since $lastmod: '$out'"
        [ ! -s "$tmp/out" ] || fail "$name: 304 had a body"
        ok "$name: 304 for${etag:+ If-None-Match $etag and} If-Modified-Since, no body"
done <"$tmp/ways"

# ---- a 64 MiB POST echoed back, byte for byte, both ways at once ----
head -c 67108864 /dev/urandom >"$tmp/post.bin"
{
        echo "h2c --http2-prior-knowledge http://$echo_addr"
        if [ -n "$echo_unix" ]; then
                echo "h2c-unix --http2-prior-knowledge --unix-socket $echo_unix http://localhost"
        fi
} >"$tmp/echo-ways"
while read -r name rest; do
        base=${rest##* }
        # shellcheck disable=SC2086
        set -- ${rest% *}
        out=$(c "$@" --data-binary @"$tmp/post.bin" -H 'Content-Type: application/octet-stream' \
                -o "$tmp/echoed" -w '%{http_code} %{http_version}' "$base/echo") ||
                fail "$name: POST 64 MiB to /echo"
        [ "$out" = "200 2" ] || fail "$name: POST /echo: '$out'"
        cmp -s "$tmp/echoed" "$tmp/post.bin" ||
                fail "$name: the echoed body differs ($(wc -c <"$tmp/echoed") bytes back)"
        rm -f "$tmp/echoed"
        ok "$name: a 64 MiB POST echoed back byte for byte over HTTP/2"
done <"$tmp/echo-ways"
rm -f "$tmp/post.bin"

# ---- HTTP/1.1 stays on the same listeners (paf only) ----
if [ "$H2_PEER" = paf ]; then
        out=$(c --http1.1 -o "$tmp/out" -w '%{http_code} %{http_version}' "http://$h2c_addr/hello.txt") ||
                fail "HTTP/1.1 on the h2c listener"
        [ "$out" = "200 1.1" ] || fail "HTTP/1.1 on the h2c listener: '$out'"
        cmp -s "$tmp/out" "$root/hello.txt" || fail "HTTP/1.1 on the h2c listener: bytes differ"
        if [ -n "$have_tls" ]; then
                out=$(c --http1.1 --cacert "$certs/ca.pem" -o /dev/null -w '%{http_code} %{http_version}' \
                        "https://localhost:$tls_port/hello.txt") || fail "HTTP/1.1 by ALPN"
                [ "$out" = "200 1.1" ] || fail "ALPN http/1.1: '$out'"
                c -v --http2 --cacert "$certs/ca.pem" -o /dev/null "https://localhost:$tls_port/hello.txt" \
                        2>"$tmp/alpn.log" || fail "curl -v --http2"
                grep -q 'ALPN.*server accepted h2\|ALPN, server accepted to use h2' "$tmp/alpn.log" ||
                        fail "ALPN did not select h2: $(grep -i alpn "$tmp/alpn.log")"
        fi
        ok "HTTP/1.1 on the plain listener and by ALPN on the TLS one; ALPN h2 otherwise"
fi

# ---- the SETTINGS paf advertises (nghttp -nv) ----
command -v nghttp >/dev/null 2>&1 || skip "nghttp not found (package nghttp2-client)"
# settings_of URL: the server's first SETTINGS frame, as nghttp prints it.
settings_of() {
        timeout 20 nghttp -nv "$1" >"$tmp/nghttp.log" 2>&1 ||
                fail "nghttp -nv $1: $(tail -n 5 "$tmp/nghttp.log")"
        # The lines under "recv SETTINGS frame <…, flags=0x00, …>" (not an ACK).
        awk '/recv SETTINGS frame <.*flags=0x00/ { on = 1; next }
             on && /^ +\[SETTINGS_/ { gsub(/[ \[\]]/, ""); print; next }
             on && /^ +\(niv=/ { next }
             { on = 0 }' "$tmp/nghttp.log"
}
settings_of "http://$h2c_addr/hello.txt" >"$tmp/settings"
grep -qx 'SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100' "$tmp/settings" ||
        fail "h2c: SETTINGS without MAX_CONCURRENT_STREAMS 100: $(tr '\n' ' ' <"$tmp/settings")"
ok "nghttp -nv over h2c: SETTINGS $(tr '\n' ' ' <"$tmp/settings")"
if [ -n "$have_tls" ]; then
        settings_of "https://127.0.0.1:$tls_port/hello.txt" >"$tmp/settings"
        grep -qx 'SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100' "$tmp/settings" ||
                fail "TLS: SETTINGS without MAX_CONCURRENT_STREAMS 100: $(tr '\n' ' ' <"$tmp/settings")"
        ok "nghttp -nv over TLS: SETTINGS $(tr '\n' ' ' <"$tmp/settings")"
fi

# ---- [http2] in paf.conf: the limits advertised, and h2 switched off (paf only) ----
if [ "$H2_PEER" = paf ]; then
        printf '[http2]\nmax-concurrent-streams = 7\ninitial-window = 1048576\n' >"$tmp/h2.conf"
        start_paf conf 1 --quiet --config "$tmp/h2.conf" --root "$root" --listen 127.0.0.1:0
        conf_pid=$pid
        settings_of "http://$tcp/hello.txt" >"$tmp/settings"
        grep -qx 'SETTINGS_MAX_CONCURRENT_STREAMS(0x03):7' "$tmp/settings" ||
                fail "[http2] max-concurrent-streams = 7 not advertised: $(tr '\n' ' ' <"$tmp/settings")"
        grep -qx 'SETTINGS_INITIAL_WINDOW_SIZE(0x04):1048576' "$tmp/settings" ||
                fail "[http2] initial-window = 1048576 not advertised: $(tr '\n' ' ' <"$tmp/settings")"
        stop_pid "$conf_pid" conf
        ok "[http2] max-concurrent-streams and initial-window are what SETTINGS says"

        printf '[http2]\nenabled = false\n' >"$tmp/off.conf"
        set -- --listen 127.0.0.1:0
        n=1
        if [ -n "$have_tls" ]; then
                set -- "$@" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" --key "$certs/srv.key"
                n=2
        fi
        start_paf off $n --quiet --config "$tmp/off.conf" --root "$root" "$@"
        off_pid=$pid
        ! speaks_h2c "$tcp" || fail "[http2] enabled = false: the plain listener still speaks h2c"
        out=$(c --http1.1 -o /dev/null -w '%{http_code} %{http_version}' "http://$tcp/hello.txt") ||
                fail "h2 off: HTTP/1.1"
        [ "$out" = "200 1.1" ] || fail "h2 off: HTTP/1.1: '$out'"
        if [ -n "$have_tls" ]; then
                out=$(c --http2 --cacert "$certs/ca.pem" -o /dev/null -w '%{http_code} %{http_version}' \
                        "https://localhost:${tls##*:}/hello.txt") || fail "h2 off: curl --http2"
                [ "$out" = "200 1.1" ] || fail "[http2] enabled = false: ALPN still gave '$out'"
        fi
        stop_pid "$off_pid" off
        ok "[http2] enabled = false: no h2c, ALPN gives http/1.1"
fi

# ---- h2load: 100 000 requests, 10 connections × 10 streams ----
command -v h2load >/dev/null 2>&1 || skip "h2load not found (package nghttp2-client)"
# h2load_ok NAME ARGS…: every request succeeded.
h2load_ok() {
        name=$1
        shift
        timeout 120 h2load -c 10 -m 10 -n 100000 "$@" >"$tmp/h2load.log" 2>&1 ||
                fail "$name: h2load exited $?: $(tail -n 8 "$tmp/h2load.log")"
        line=$(grep '^requests:' "$tmp/h2load.log") || fail "$name: no h2load summary: $(tail -n 8 "$tmp/h2load.log")"
        echo "$line" | grep -q ' 100000 succeeded, 0 failed, 0 errored, 0 timeout' ||
                fail "$name: h2load: $line"
        grep -q '^status codes: 100000 2xx' "$tmp/h2load.log" ||
                fail "$name: h2load: $(grep '^status codes' "$tmp/h2load.log")"
        grep -q '^Application protocol: h2' "$tmp/h2load.log" ||
                fail "$name: h2load did not speak h2: $(grep -i protocol "$tmp/h2load.log")"
        ok "$name: h2load -c 10 -m 10 -n 100000: $line ($(sed -n 's/^finished in \([^,]*\),.*/\1/p' "$tmp/h2load.log"))"
}
if [ -n "$have_tls" ]; then
        h2load_ok tls "https://127.0.0.1:$tls_port/hello.txt"
fi
if [ -n "$h2c_unix" ]; then
        # h2load reaches a unix socket with -B unix:PATH; an http:// URL makes
        # it speak h2c with prior knowledge there.
        h2load_ok unix -B "unix:$h2c_unix" "http://localhost/hello.txt"
else
        # nghttpd listens on TCP only.
        h2load_ok h2c "http://$h2c_addr/hello.txt"
fi

if [ "$H2_PEER" = paf ]; then
        kill -0 "$main_pid" || fail "paf serve died"
        stop_pid "$main_pid" main
        stop_pid "$echo_pid" echo-server
fi
echo "$n_checks passed, 0 failed"
