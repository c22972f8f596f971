#!/bin/sh
# tests/http/test-get-proxy.sh — `paf get` through a real HTTP proxy (tinyproxy on loopback), side by side with curl: -x for http (absolute form) and https (CONNECT, TLS through the tunnel), http_proxy/https_proxy/HTTPS_PROXY/no_proxy (HTTP_PROXY ignored), --noproxy, -x "", and curl's exit codes: 7 for a proxy that refuses connections, 56 for a CONNECT the proxy answers 403.
set -eu
tinyproxy=/usr/bin/tinyproxy
[ -x "$tinyproxy" ] || { echo "tinyproxy not found: skipping"; exit 77; }
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
command -v certtool >/dev/null 2>&1 || { echo "certtool not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
# The developer's proxies must not apply.
unset http_proxy https_proxy HTTPS_PROXY HTTP_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
# shellcheck source=tests/http/https-certs.sh
. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"

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
        for f in "$tmp"/*.err "$tmp/tp.log"; do
                [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
        exit 1
}
free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_port() {
        i=0
        while ! python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
                i=$((i + 1))
                [ $i -lt 100 ] || fail "nothing listens on port $1"
                sleep 0.05
        done
}

# both ARGS…: paf get and curl -s with the same arguments; their stdout in
# $tmp/paf.out and $tmp/curl.out, exit codes in $prc and $crc.
both() {
        prc=0
        timeout 20 "$PAF_BIN" get -s "$@" >"$tmp/paf.out" 2>"$tmp/paf.err" || prc=$?
        crc=0
        timeout 20 curl -s "$@" >"$tmp/curl.out" 2>"$tmp/curl.err" || crc=$?
        [ $prc != 124 ] && [ $crc != 124 ] || fail "$*: hung"
}
same() {
        both "$@"
        [ $prc = $crc ] || fail "$*: paf exit $prc, curl exit $crc: $(cat "$tmp/paf.err")"
        cmp -s "$tmp/paf.out" "$tmp/curl.out" || fail "$*: paf and curl wrote different bytes"
}
# The proxy's log lines for requests: how many it saw so far.
proxied() {
        grep -c "Request (file descriptor [0-9]*): $1" "$tmp/tp.log" || true
}

mkdir "$tmp/www"
printf 'through the proxy\n' >"$tmp/www/a.txt"
https_ca "$tmp" ca
https_cert "$tmp" srv ca localhost localhost 127.0.0.1

http_port=$(free_port)
https_port=$(free_port)
proxy_port=$(free_port)
"$PAF_BIN" serve -q -l "127.0.0.1:$http_port" -r "$tmp/www" 2>"$tmp/serve.err" &
pids="$pids $!"
"$PAF_BIN" serve -q --listen-tls "127.0.0.1:$https_port" --cert "$tmp/srv.pem" \
        --key "$tmp/srv.key" -r "$tmp/www" 2>"$tmp/serve-tls.err" &
pids="$pids $!"
# CONNECT to the https server's port only: any other is refused with 403.
cat >"$tmp/tp.conf" <<CONF
Port $proxy_port
Listen 127.0.0.1
Timeout 10
MaxClients 20
ConnectPort $https_port
LogLevel Connect
CONF
"$tinyproxy" -d -c "$tmp/tp.conf" >"$tmp/tp.log" 2>&1 &
pids="$pids $!"
wait_port "$http_port"
wait_port "$https_port"
wait_port "$proxy_port"

http_url="http://127.0.0.1:$http_port/a.txt"
https_url="https://127.0.0.1:$https_port/a.txt"
proxy="127.0.0.1:$proxy_port"

# -x for http: the absolute form to the proxy.
n=$(proxied "GET $http_url")
same -x "$proxy" "$http_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "-x http: $(cat "$tmp/paf.out")"
[ "$(proxied "GET $http_url")" = $((n + 2)) ] || fail "-x http: the proxy did not see both requests"
ok "-x http://: absolute form through the proxy, as curl"
same -x "http://$proxy/" "$http_url"
ok "-x http://HOST:PORT/: the same"

# -x for https: CONNECT, then TLS to the server through the tunnel.
n=$(proxied "CONNECT 127.0.0.1:$https_port")
same --cacert "$tmp/ca.pem" -x "$proxy" "$https_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "-x https: $(cat "$tmp/paf.out")"
[ "$(proxied "CONNECT 127.0.0.1:$https_port")" = $((n + 2)) ] ||
        fail "-x https: the proxy did not see both CONNECTs"
ok "-x https://: CONNECT tunnel, TLS through it, as curl"

# The environment, as curl reads it.
n=$(proxied "GET $http_url")
export http_proxy="$proxy"
same "$http_url"
unset http_proxy
[ "$(proxied "GET $http_url")" = $((n + 2)) ] || fail "http_proxy: not used"
ok "http_proxy"
n=$(proxied "GET $http_url")
export HTTP_PROXY="$proxy"
same "$http_url"
unset HTTP_PROXY
[ "$(proxied "GET $http_url")" = "$n" ] || fail "HTTP_PROXY: used (curl ignores it)"
ok "HTTP_PROXY is ignored, as curl"
for var in https_proxy HTTPS_PROXY; do
        n=$(proxied "CONNECT 127.0.0.1:$https_port")
        env "$var=$proxy" "$PAF_BIN" get -s --cacert "$tmp/ca.pem" "$https_url" >"$tmp/paf.out" ||
                fail "$var: exit $?"
        [ "$(proxied "CONNECT 127.0.0.1:$https_port")" = $((n + 1)) ] || fail "$var: not used"
        ok "$var"
done
n=$(proxied "GET $http_url")
for noproxy in '*' 127.0.0.1 '.0.0.1' 'example.com, 127.0.0.1'; do
        no_proxy="$noproxy" http_proxy="$proxy" "$PAF_BIN" get -s "$http_url" >"$tmp/paf.out" ||
                fail "no_proxy=$noproxy: exit $?"
        "$PAF_BIN" get -s -x "$proxy" --noproxy "$noproxy" "$http_url" >"$tmp/paf.out" ||
                fail "--noproxy $noproxy: exit $?"
done
http_proxy="$proxy" "$PAF_BIN" get -s -x "" "$http_url" >"$tmp/paf.out" || fail "-x \"\": exit $?"
[ "$(proxied "GET $http_url")" = "$n" ] || fail "no_proxy, --noproxy or -x \"\": went through the proxy"
no_proxy=example.com http_proxy="$proxy" "$PAF_BIN" get -s "$http_url" >"$tmp/paf.out"
[ "$(proxied "GET $http_url")" = $((n + 1)) ] || fail "no_proxy=example.com: did not use the proxy"
ok "no_proxy, --noproxy ('*', names, suffixes, lists) and -x \"\" go direct"

# Failures, with curl's exit codes.
dead=$(free_port)
same -S -x "127.0.0.1:$dead" "$http_url"
[ $prc = 7 ] || fail "refused proxy (http): exit $prc"
grep -q "127.0.0.1:$dead" "$tmp/paf.err" || fail "refused proxy: not named: $(cat "$tmp/paf.err")"
same -S -x "127.0.0.1:$dead" --cacert "$tmp/ca.pem" "$https_url"
[ $prc = 7 ] || fail "refused proxy (https): exit $prc"
grep -q "proxy 127.0.0.1:$dead" "$tmp/paf.err" || fail "refused proxy: not named: $(cat "$tmp/paf.err")"
ok "a proxy refusing connections: exit 7, as curl, naming it"
same -S -x "$proxy" --cacert "$tmp/ca.pem" "https://127.0.0.1:$http_port/a.txt"
[ $prc = 56 ] || fail "CONNECT refused: exit $prc"
grep -q "CONNECT tunnel failed, response 403" "$tmp/paf.err" ||
        fail "CONNECT refused: $(cat "$tmp/paf.err")"
ok "CONNECT answered 403: exit 56 'CONNECT tunnel failed, response 403', as curl"
echo "all $n_checks checks passed"
