#!/bin/sh
# tests/http/test-get-cookies.sh — `paf get -b/-c` side by side with curl against nginx: -b "name=value", -b FILE in the Netscape format, -c FILE byte for byte as curl writes it (header lines, #HttpOnly_, domains, paths, Secure, expiry), cookies per path, Set-Cookie on redirects with -L, Max-Age=0 removing a cookie.
set -eu
nginx=/usr/sbin/nginx
[ -x "$nginx" ] || { echo "nginx not found: skipping"; exit 77; }
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
unset http_proxy https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

tmp=$(mktemp -d)
pids=
cleanup() {
        for p in $pids; do
                kill "$p" 2>/dev/null || true
                wait "$p" 2>/dev/null || true
        done
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok $n_checks: $*"
}
fail() {
        echo "FAIL: $*" >&2
        for f in "$tmp"/*.err "$tmp/ng/error.log"; do
                [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
        exit 1
}
free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# both ARGS…: paf get and curl -s with the same arguments, run in $tmp/paf
# and $tmp/curl (files they write land there); stdout in $tmp/paf.out and
# $tmp/curl.out, exit codes in $prc and $crc.
mkdir "$tmp/paf" "$tmp/curl"
both() {
        prc=0
        (cd "$tmp/paf" && timeout 20 "$PAF_BIN" get -sS "$@") >"$tmp/paf.out" 2>"$tmp/paf.err" || prc=$?
        crc=0
        (cd "$tmp/curl" && timeout 20 curl -sS "$@") >"$tmp/curl.out" 2>"$tmp/curl.err" || crc=$?
        [ $prc != 124 ] && [ $crc != 124 ] || fail "$*: hung"
}
same() {
        both "$@"
        [ $prc = $crc ] || fail "$*: paf exit $prc, curl exit $crc: $(cat "$tmp/paf.err")"
        cmp -s "$tmp/paf.out" "$tmp/curl.out" ||
                fail "$*: paf and curl wrote different bytes: $(head -c 300 "$tmp/paf.out") / $(head -c 300 "$tmp/curl.out")"
}
same_file() {
        cmp -s "$tmp/paf/$1" "$tmp/curl/$1" ||
                fail "$1: paf and curl wrote different files: $(diff "$tmp/paf/$1" "$tmp/curl/$1")"
}

# start_nginx SERVER-BLOCK-LINES: nginx on 127.0.0.1:$port, root $tmp/ng/www.
ng=$tmp/ng
mkdir -p "$ng/www" "$ng/tmp"
start_nginx() {
        port=$(free_port)
        cat >"$ng/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $ng/tmp;
  proxy_temp_path $ng/tmp;
  fastcgi_temp_path $ng/tmp;
  uwsgi_temp_path $ng/tmp;
  scgi_temp_path $ng/tmp;
  default_type application/octet-stream;
  types { text/plain txt; }
  server {
    listen 127.0.0.1:$port;
    root $ng/www;
$1
  }
}
CONF
        chmod -R a+rX "$tmp"
        "$nginx" -p "$ng" -c "$ng/nginx.conf" -e /dev/null </dev/null >/dev/null 2>"$tmp/nginx.err" &
        pids="$pids $!"
        i=0
        while ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
                i=$((i + 1))
                [ $i -lt 200 ] || fail "nginx did not start"
                sleep 0.05
        done
}

start_nginx '
    location = /echo { return 200 "cookie=[$http_cookie]\n"; }
    location = /sub/echo { return 200 "sub cookie=[$http_cookie]\n"; }
    location = /set {
      add_header Set-Cookie "a=1; Path=/";
      add_header Set-Cookie "b=2; Path=/sub; Expires=Wed, 01 Jan 2031 00:00:00 GMT; HttpOnly";
      add_header Set-Cookie "c=3; Domain=127.0.0.1; Secure";
      add_header Set-Cookie "bad=1; Domain=example.com";
      return 200 "set\n";
    }
    location = /login { add_header Set-Cookie "sid=xyz; Path=/; Max-Age=3600"; return 302 /echo; }
    location = /logout { add_header Set-Cookie "a=gone; Path=/; Max-Age=0"; return 200 "out\n"; }'
base="http://127.0.0.1:$port"

same -b "x=1; y=2" "$base/echo"
[ "$(cat "$tmp/paf.out")" = "cookie=[x=1; y=2]" ] || fail "-b string: $(cat "$tmp/paf.out")"
ok "-b 'name=value; …' sent as is, as curl"

same -c jar.txt "$base/set"
same_file jar.txt
grep -q "^#HttpOnly_127.0.0.1	FALSE	/sub	FALSE	1924992000	b	2\$" "$tmp/paf/jar.txt" ||
        fail "-c: $(cat "$tmp/paf/jar.txt")"
! grep -q bad "$tmp/paf/jar.txt" || fail "-c: a cookie for another domain was kept"
ok "-c: the jar as curl writes it (header, #HttpOnly_, path, expiry, Secure; another domain refused)"

for f in paf curl; do cp "$tmp/paf/jar.txt" "$tmp/$f/in.txt"; done
same -b in.txt "$base/echo"
same -b in.txt "$base/sub/echo"
[ "$(cat "$tmp/paf.out")" = "sub cookie=[b=2; a=1; c=3]" ] || fail "-b FILE: $(cat "$tmp/paf.out")"
ok "-b FILE: cookies by path, longest first, as curl"

same -L -b in.txt -c jar2.txt "$base/login"
same_file jar2.txt
grep -q "sid=xyz" "$tmp/paf.out" || fail "-L: the redirect's cookie was not sent: $(cat "$tmp/paf.out")"
ok "-L: Set-Cookie of a redirect is sent on the next hop and saved"

same -b in.txt -c jar3.txt "$base/logout"
same_file jar3.txt
! grep -q "	a	" "$tmp/paf/jar3.txt" || fail "Max-Age=0 did not remove the cookie"
ok "Max-Age=0 removes a cookie"

same -b nonexistent.txt -c jar4.txt "$base/echo"
same_file jar4.txt
ok "-b with a missing file goes on, -c with no cookie writes the header only"
echo "all $n_checks checks passed"
