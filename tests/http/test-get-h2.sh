#!/bin/sh
# tests/http/test-get-h2.sh — `paf get` over HTTP/2: against nginx (http2 on its TLS listener, plain HTTP/1.1 beside it) and nghttpd (h2c, and TLS), h2 by default for https as curl, --http2, --http2-prior-knowledge, --http1.1, -v and -i showing the version, 64 MiB down and up byte-exact (sha256), and prior knowledge refused by an HTTP/1.1 server.
set -eu
nginx=/usr/sbin/nginx
nghttpd=/usr/sbin/nghttpd
[ -x "$nginx" ] || { echo "nginx not found: skipping"; exit 77; }
"$nginx" -V 2>&1 | grep -q http_v2_module || { echo "nginx without http_v2: skipping"; exit 77; }
[ -x "$nghttpd" ] || { echo "nghttpd (nghttp2-server) not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
command -v certtool >/dev/null 2>&1 || { echo "certtool not found: skipping"; exit 77; }
command -v sha256sum >/dev/null 2>&1 || { echo "sha256sum not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
# shellcheck source=tests/http/https-certs.sh
. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/*.err $tmp/ng/logs/error.log"

# get ARGS…: paf get, bounded; stdout to $tmp/out, stderr to $tmp/get.err, status in $rc.
get() {
        rc=0
        timeout 60 "$PAF_BIN" get "$@" >"$tmp/out" 2>"$tmp/get.err" || rc=$?
        [ $rc != 124 ] || fail "paf get $*: hung"
}
expect_ok() {
        get "$@"
        [ $rc = 0 ] || fail "paf get $*: exit $rc: $(cat "$tmp/get.err")"
}
# expect_version VERSION: -v said it used VERSION ("HTTP/2", "HTTP/1.1"), curl's way.
expect_version() {
        grep -qx "\* using $1" "$tmp/get.err" || fail "-v: not '* using $1': $(cat "$tmp/get.err")"
        grep -q "^> GET /[^ ]* $1\$" "$tmp/get.err" || fail "-v: no '> GET … $1': $(cat "$tmp/get.err")"
        grep -q "^< $1 200" "$tmp/get.err" || fail "-v: no '< $1 200': $(cat "$tmp/get.err")"
}

accepts() {
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null
}
# wait_port PID PORT: until PORT accepts (5 s), or PID exited.
wait_port() {
        i=0
        while ! accepts "$2"; do
                kill -0 "$1" 2>/dev/null || return 1
                i=$((i + 1))
                [ $i -lt 100 ] || return 1
                sleep 0.05
        done
}

# ---- the peers ----
mkdir -p "$tmp/certs" "$tmp/www" "$tmp/ng/logs" "$tmp/ng/tmp"
https_ca "$tmp/certs" ca || fail "certtool: CA"
https_cert "$tmp/certs" srv ca localhost localhost 127.0.0.1 || fail "certtool: certificate"
ca=$tmp/certs/ca.pem
printf 'small file\n' >"$tmp/www/small.txt"
head -c 67108864 /dev/urandom >"$tmp/www/big.bin"
big_sum=$(sha256sum <"$tmp/www/big.bin")
# nginx may drop to nobody: it must read the tree.
chmod -R a+rX "$tmp"

start_nginx() {
        tls_port=$(free_port)
        plain_port=$(free_port)
        [ "$tls_port" != "$plain_port" ] || return 1
        # nginx 1.22: "listen … http2" (1.25 prefers "http2 on" and still takes this).
        cat >"$tmp/ng/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $tmp/ng/nginx.pid;
error_log $tmp/ng/logs/error.log info;
events { worker_connections 64; }
http {
  log_format proto '\$server_protocol \$request_uri';
  access_log $tmp/ng/logs/access.log proto;
  client_body_temp_path $tmp/ng/tmp;
  proxy_temp_path $tmp/ng/tmp;
  fastcgi_temp_path $tmp/ng/tmp;
  uwsgi_temp_path $tmp/ng/tmp;
  scgi_temp_path $tmp/ng/tmp;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$tls_port ssl http2;
    listen 127.0.0.1:$plain_port;
    ssl_certificate $tmp/certs/srv.pem;
    ssl_certificate_key $tmp/certs/srv.key;
    root $tmp/www;
  }
}
EOF
        "$nginx" -p "$tmp/ng" -c "$tmp/ng/nginx.conf" -e /dev/null </dev/null >/dev/null 2>"$tmp/nginx.err" &
        nginx_pid=$!
        pids="$pids $nginx_pid"
        wait_port "$nginx_pid" "$tls_port" && wait_port "$nginx_pid" "$plain_port"
}
# start_nghttpd VAR [KEY CERT]: nghttpd on a free port (its number in $VAR), echoing
# uploads; h2c without KEY and CERT.
start_nghttpd() {
        var=$1
        shift
        p=$(free_port)
        [ $# = 2 ] || set -- --no-tls
        case $1 in
        --no-tls) set -- --no-tls "$p" ;;
        *) set -- "$p" "$1" "$2" ;;
        esac
        "$nghttpd" -a 127.0.0.1 -d "$tmp/www" --echo-upload "$@" </dev/null >/dev/null 2>"$tmp/nghttpd-$var.err" &
        pid=$!
        pids="$pids $pid"
        wait_port "$pid" "$p" || return 1
        eval "$var=\$p"
}
started=
for _ in 1 2 3 4 5; do
        if start_nginx; then
                started=1
                break
        fi
        kill "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
done
[ -n "$started" ] || fail "nginx did not start"
h2c_port= h2s_port=
for _ in 1 2 3 4 5; do
        [ -n "$h2c_port" ] || start_nghttpd h2c_port || true
        [ -n "$h2s_port" ] || start_nghttpd h2s_port "$tmp/certs/srv.key" "$tmp/certs/srv.pem" || true
done
[ -n "$h2c_port" ] && [ -n "$h2s_port" ] || fail "nghttpd did not start"
https=https://localhost:$tls_port
ok "nginx on $https (h2) and http://127.0.0.1:$plain_port, nghttpd h2c on $h2c_port and TLS on $h2s_port"

# ---- which version ----
expect_ok -v --cacert "$ca" "$https/small.txt"
expect_version HTTP/2
[ "$(cat "$tmp/out")" = "small file" ] || fail "h2 body: $(cat "$tmp/out")"
expect_ok -v --http2 --cacert "$ca" "$https/small.txt"
expect_version HTTP/2
ok "https: HTTP/2 by ALPN by default and with --http2; -v says '* using HTTP/2', '> GET /small.txt HTTP/2', '< HTTP/2 200'"

expect_ok -v --http1.1 --cacert "$ca" "$https/small.txt"
expect_version HTTP/1.1
grep -q '^< HTTP/1.1 200 OK' "$tmp/get.err" || fail "--http1.1: $(cat "$tmp/get.err")"
expect_ok -v --http2 "http://127.0.0.1:$plain_port/small.txt"
expect_version HTTP/1.1
ok "--http1.1 over TLS and --http2 on http:// (no Upgrade: h2c) stay HTTP/1.1"

# The server's view.
grep -qx 'HTTP/2.0 /small.txt' "$tmp/ng/logs/access.log" || fail "nginx saw no HTTP/2 request: $(cat "$tmp/ng/logs/access.log")"
[ "$(grep -c '^HTTP/1.1 /small.txt$' "$tmp/ng/logs/access.log")" = 2 ] || fail "nginx: $(cat "$tmp/ng/logs/access.log")"
ok "nginx logged the versions paf get said"

expect_ok -i --cacert "$ca" "$https/small.txt"
# curl 7.88's status line, with the space before an empty reason phrase.
head -n 1 "$tmp/out" | tr -d '\r' | grep -qx 'HTTP/2 200 ' || fail "-i over h2: $(head -n 1 "$tmp/out")"
[ "$(tail -n 1 "$tmp/out")" = "small file" ] || fail "-i body: $(cat "$tmp/out")"
head -n 1 "$tmp/out" >"$tmp/paf.line"
curl -si --max-time 10 --cacert "$ca" "$https/small.txt" | head -n 1 >"$tmp/curl.line"
cmp -s "$tmp/paf.line" "$tmp/curl.line" ||
        fail "-i over h2: paf's status line $(od -c "$tmp/paf.line" | head -n 2), curl's $(od -c "$tmp/curl.line" | head -n 2)"
ok "-i: 'HTTP/2 200 ', byte for byte as curl's"

expect_ok -v --http2-prior-knowledge "http://127.0.0.1:$h2c_port/small.txt"
expect_version HTTP/2
[ "$(cat "$tmp/out")" = "small file" ] || fail "h2c body: $(cat "$tmp/out")"
expect_ok -v --http2 --cacert "$ca" "https://localhost:$h2s_port/small.txt"
expect_version HTTP/2
ok "nghttpd: h2c with --http2-prior-knowledge, TLS with --http2"

# ---- 64 MiB down and up ----
expect_ok --cacert "$ca" -o "$tmp/down.bin" "$https/big.bin"
[ "$(sha256sum <"$tmp/down.bin")" = "$big_sum" ] || fail "64 MiB from nginx over h2: sha256 differs"
grep -qx 'HTTP/2.0 /big.bin' "$tmp/ng/logs/access.log" || fail "/big.bin was not HTTP/2"
expect_ok --http2 --cacert "$ca" --data-binary @"$tmp/www/big.bin" -o "$tmp/echo.bin" "https://localhost:$h2s_port/echo"
[ "$(sha256sum <"$tmp/echo.bin")" = "$big_sum" ] || fail "64 MiB up to nghttpd and back over h2: sha256 differs"
expect_ok --http2-prior-knowledge --data-binary @"$tmp/www/big.bin" -o "$tmp/echo.bin" "http://127.0.0.1:$h2c_port/echo"
[ "$(sha256sum <"$tmp/echo.bin")" = "$big_sum" ] || fail "64 MiB up to nghttpd and back over h2c: sha256 differs"
rm -f "$tmp/down.bin" "$tmp/echo.bin"
ok "64 MiB down from nginx and up to nghttpd and back (TLS and h2c), sha256 equal"

# ---- prior knowledge, and an HTTP/1.1 server ----
get --http2-prior-knowledge "http://127.0.0.1:$plain_port/small.txt"
[ $rc = 8 ] || fail "prior knowledge against HTTP/1.1: exit $rc, not 8: $(cat "$tmp/get.err")"
grep -q "paf get: http://127.0.0.1:$plain_port/small.txt: GET /small.txt: tcp 127.0.0.1:$plain_port: HTTP/2" "$tmp/get.err" ||
        fail "prior knowledge against HTTP/1.1: $(cat "$tmp/get.err")"
[ ! -s "$tmp/out" ] || fail "prior knowledge against HTTP/1.1 wrote: $(cat "$tmp/out")"
ok "--http2-prior-knowledge against an HTTP/1.1 server: exit 8, naming the endpoint ($(sed -n 's/.*tcp [^ ]*: //p' "$tmp/get.err" | head -n 1))"

echo "all $n_checks checks passed"
