#!/bin/sh
# tests/http/test-get-proxy.sh — `paf get` through real proxies on loopback, side by side with curl (same bytes on stdout, same exit code): tinyproxy as an HTTP proxy (absolute form for http, CONNECT for https, the environment's proxies, --noproxy, -x ""), tinyproxy with BasicAuth (credentials in -x, percent-decoded, and -U: Proxy-Authorization on forwarded requests and on CONNECT, never to the origin; 407 with and without -f), microsocks and dante (socks5, socks5h, socks4, socks4a, --socks5, --socks5-hostname, RFC 1929 credentials; refused proxies, rejected credentials, refused targets: curl's 7 and 97), stunnel in front of tinyproxy as an HTTPS proxy (--proxy-cacert, --proxy-insecure, -k not applying to the proxy), no_proxy/--noproxy rules with CIDR, and proxy strings curl refuses (5, 7).
set -eu
tinyproxy=/usr/bin/tinyproxy
[ -x "$tinyproxy" ] || { echo "tinyproxy not found: skipping"; exit 77; }
# scripts/deps.sh installs them (microsocks, dante-server, stunnel4).
for p in microsocks danted stunnel4; do
        command -v $p >/dev/null 2>&1 || [ -x /usr/sbin/$p ] ||
                { echo "$p not found: skipping"; exit 77; }
done
danted=$(command -v danted || echo /usr/sbin/danted)
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
command -v certtool >/dev/null 2>&1 || { echo "certtool not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
# The developer's proxies must not apply.
unset http_proxy https_proxy HTTPS_PROXY HTTP_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
# shellcheck source=tests/http/https-certs.sh
. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/*.err $tmp/*.log"
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
https_cert "$tmp" px ca localhost localhost 127.0.0.1

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
for noproxy in '*' 127.0.0.1 127.0.0.0/8 'example.com, 127.0.0.1'; do
        no_proxy="$noproxy" http_proxy="$proxy" "$PAF_BIN" get -s "$http_url" >"$tmp/paf.out" ||
                fail "no_proxy=$noproxy: exit $?"
        "$PAF_BIN" get -s -x "$proxy" --noproxy "$noproxy" "$http_url" >"$tmp/paf.out" ||
                fail "--noproxy $noproxy: exit $?"
done
http_proxy="$proxy" "$PAF_BIN" get -s -x "" "$http_url" >"$tmp/paf.out" || fail "-x \"\": exit $?"
[ "$(proxied "GET $http_url")" = "$n" ] || fail "no_proxy, --noproxy or -x \"\": went through the proxy"
no_proxy=example.com http_proxy="$proxy" "$PAF_BIN" get -s "$http_url" >"$tmp/paf.out"
[ "$(proxied "GET $http_url")" = $((n + 1)) ] || fail "no_proxy=example.com: did not use the proxy"
ok "no_proxy, --noproxy ('*', addresses, CIDR, lists) and -x \"\" go direct"

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

# ---- Credentials: tinyproxy with BasicAuth ----
auth_port=$(free_port)
cat >"$tmp/tpa.conf" <<CONF
Port $auth_port
Listen 127.0.0.1
Timeout 10
MaxClients 20
ConnectPort $https_port
BasicAuth alice secret
LogLevel Connect
CONF
"$tinyproxy" -d -c "$tmp/tpa.conf" >"$tmp/tpa.log" 2>&1 &
pids="$pids $!"
python3 "$PAF_TEST_SRCDIR/tests/http/get_echo.py" "$tmp/echo.port" "$tmp" 2>"$tmp/echo.err" &
pids="$pids $!"
i=0
while [ ! -s "$tmp/echo.port" ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "get_echo.py did not start"
        sleep 0.05
done
echo_port=$(cat "$tmp/echo.port")
wait_port "$auth_port"
aproxy="127.0.0.1:$auth_port"
echo_url="http://127.0.0.1:$echo_port/echo"

same -x "$aproxy" "$http_url"
grep -q "407 Proxy Authentication Required" "$tmp/paf.out" || fail "no credentials: $(cat "$tmp/paf.out")"
[ $prc = 0 ] || fail "no credentials, without -f: exit $prc"
same -S -f -x "$aproxy" "$http_url"
[ $prc = 22 ] || fail "no credentials, -f: exit $prc"
grep -q "returned error: 407" "$tmp/paf.err" || fail "no credentials, -f: $(cat "$tmp/paf.err")"
ok "forwarded request without credentials: the proxy's 407 (exit 0; 22 with -f), as curl"
same -x "http://alice:secret@$aproxy" "$http_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "-x USER:PASSWORD@: $(cat "$tmp/paf.out")"
same -x "http://%61lice:s%65cret@$aproxy/" "$http_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "-x percent-encoded: $(cat "$tmp/paf.out")"
same -x "$aproxy" -U alice:secret "$http_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "-U: $(cat "$tmp/paf.out")"
# The URL's credentials win over -U, as curl.
same -x "http://alice:secret@$aproxy" -U alice:wrong "$http_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "-x USER@ and -U: $(cat "$tmp/paf.out")"
same -x "http://alice:wrong@$aproxy" "$http_url"
ok "forwarded requests with credentials from -x (percent-decoded) and -U, as curl"

same -S --cacert "$tmp/ca.pem" -x "$aproxy" "$https_url"
[ $prc = 56 ] || fail "CONNECT without credentials: exit $prc"
grep -q "CONNECT tunnel failed, response 407" "$tmp/paf.err" ||
        fail "CONNECT without credentials: $(cat "$tmp/paf.err")"
same -S -f --cacert "$tmp/ca.pem" -x "$aproxy" "$https_url"
[ $prc = 22 ] || fail "CONNECT without credentials, -f: exit $prc"
same --cacert "$tmp/ca.pem" -x "http://alice:secret@$aproxy" "$https_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "CONNECT with credentials: $(cat "$tmp/paf.out")"
same --cacert "$tmp/ca.pem" -x "$aproxy" -U alice:secret "$https_url"
same -S --cacert "$tmp/ca.pem" -x "http://alice:wrong@$aproxy" "$https_url"
[ $prc = 56 ] || fail "CONNECT with wrong credentials: exit $prc"
ok "CONNECT: Proxy-Authorization from -x and -U; 407 exits 56 'CONNECT tunnel failed, response 407' (22 with -f), as curl"

# What the proxy and the origin get: get_echo.py answers with the request.
same -x "http://u:p%40ss@127.0.0.1:$echo_port" http://example.test/x
grep -q "^proxy-authorization: Basic dTpwQHNz" "$tmp/paf.out" ||
        fail "Proxy-Authorization to the proxy: $(cat "$tmp/paf.out")"
ok "the request to the proxy, Proxy-Authorization included: the same bytes as curl's"
same -x "http://alice:secret@$aproxy" "$echo_url"
grep -qi "proxy-authorization" "$tmp/paf.out" && fail "the origin got the proxy's credentials"
same -U alice:secret -x "$aproxy" --noproxy 127.0.0.1 "$echo_url"
grep -qi "proxy-authorization" "$tmp/paf.out" && fail "a direct request sent the proxy's credentials"
ok "the proxy's credentials never reach the origin (through the proxy or direct)"

# ---- SOCKS: microsocks (socks5, RFC 1929) and dante (socks4, socks5) ----
socks_port=$(free_port)
socks_auth_port=$(free_port)
dante_port=$(free_port)
microsocks -i 127.0.0.1 -p "$socks_port" >"$tmp/ms.log" 2>&1 &
pids="$pids $!"
microsocks -i 127.0.0.1 -p "$socks_auth_port" -u bob -P 'p@ss' >"$tmp/msa.log" 2>&1 &
pids="$pids $!"
cat >"$tmp/danted.conf" <<CONF
logoutput: $tmp/danted.log
internal: 127.0.0.1 port = $dante_port
external: 127.0.0.1
clientmethod: none
socksmethod: none
user.privileged: root
user.unprivileged: nobody
client pass {
        from: 127.0.0.0/8 to: 0.0.0.0/0
}
socks pass {
        from: 127.0.0.0/8 to: 0.0.0.0/0
        protocol: tcp
}
CONF
"$danted" -f "$tmp/danted.conf" -p "$tmp/danted.pid" -N 1 >"$tmp/danted.err" 2>&1 &
pids="$pids $!"
wait_port "$socks_port"
wait_port "$socks_auth_port"
wait_port "$dante_port"
name_url="http://localhost:$http_port/a.txt"
names_url="https://localhost:$https_port/a.txt"

for url in "$http_url" "$name_url"; do
        for scheme in socks5 socks5h; do
                same -x "$scheme://127.0.0.1:$socks_port" "$url"
                [ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "$scheme $url: $(cat "$tmp/paf.out")"
                same --cacert "$tmp/ca.pem" -x "$scheme://127.0.0.1:$socks_port" "$names_url"
                [ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "$scheme https: $(cat "$tmp/paf.out")"
        done
done
same --socks5 "127.0.0.1:$socks_port" "$http_url"
same --socks5-hostname "127.0.0.1:$socks_port" "$name_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "--socks5-hostname: $(cat "$tmp/paf.out")"
# The last of -x and --socks5 wins.
same -x "127.0.0.1:$(free_port)" --socks5 "127.0.0.1:$socks_port" "$http_url"
[ $prc = 0 ] || fail "-x then --socks5: exit $prc"
export http_proxy="socks5h://127.0.0.1:$socks_port"
same "$name_url"
unset http_proxy
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "http_proxy=socks5h: $(cat "$tmp/paf.out")"
export https_proxy="socks5://127.0.0.1:$socks_port"
same --cacert "$tmp/ca.pem" "$names_url"
unset https_proxy
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "https_proxy=socks5: $(cat "$tmp/paf.out")"
ok "socks5:// and socks5h:// (http, https over the tunnel), --socks5, --socks5-hostname, *_proxy: the same bytes as curl"

same -x "socks5://bob:p%40ss@127.0.0.1:$socks_auth_port" "$http_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "socks5 credentials: $(cat "$tmp/paf.out")"
same -x "socks5h://127.0.0.1:$socks_auth_port" -U 'bob:p@ss' --cacert "$tmp/ca.pem" "$names_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "socks5h -U: $(cat "$tmp/paf.out")"
same -S -x "socks5://127.0.0.1:$socks_auth_port" "$http_url"
[ $prc = 97 ] || fail "socks5 without credentials: exit $prc"
grep -q "No authentication method was acceptable" "$tmp/paf.err" || fail "socks5 no method: $(cat "$tmp/paf.err")"
same -S -x "socks5://bob:wrong@127.0.0.1:$socks_auth_port" "$http_url"
[ $prc = 97 ] || fail "socks5 wrong credentials: exit $prc"
grep -q "User was rejected by the SOCKS5 server" "$tmp/paf.err" || fail "socks5 rejected: $(cat "$tmp/paf.err")"
ok "SOCKS5 user/password (RFC 1929) from -x and -U; none or wrong exits 97, as curl"

dead=$(free_port)
same -S -x "socks5://127.0.0.1:$dead" "$http_url"
[ $prc = 7 ] || fail "refused SOCKS proxy: exit $prc"
same -S -x "socks5://127.0.0.1:$socks_port" "http://127.0.0.1:$dead/"
[ $prc = 97 ] || fail "SOCKS5 target refused: exit $prc"
grep -q "connection refused" "$tmp/paf.err" || fail "SOCKS5 target refused: $(cat "$tmp/paf.err")"
same -S -x "socks5://127.0.0.1:$socks_port" "http://nonexistent.invalid/"
[ $prc = 97 ] || fail "socks5 unresolved name (here): exit $prc"
grep -q "Could not resolve host: nonexistent.invalid" "$tmp/paf.err" || fail "socks5 name: $(cat "$tmp/paf.err")"
same -S -x "socks5h://127.0.0.1:$socks_port" "http://nonexistent.invalid/"
[ $prc = 97 ] || fail "socks5h unresolved name (at the proxy): exit $prc"
ok "SOCKS failures: refused proxy 7; refused target, unresolved name (here or at the proxy) 97, as curl"

for scheme in socks4 socks5; do
        same -x "$scheme://127.0.0.1:$dante_port" "$http_url"
        [ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "dante $scheme: $(cat "$tmp/paf.out")"
        same -x "$scheme://127.0.0.1:$dante_port" "$name_url"
        same --cacert "$tmp/ca.pem" -x "$scheme://127.0.0.1:$dante_port" "$names_url"
        [ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "dante $scheme https: $(cat "$tmp/paf.out")"
done
same -S -x "socks4://127.0.0.1:$dante_port" "http://127.0.0.1:$dead/"
[ $prc = 97 ] || fail "SOCKS4 target refused: exit $prc"
# dante takes no SOCKS4a (a name for the proxy to resolve): refused, for both.
same -S -x "socks4a://127.0.0.1:$dante_port" "$name_url"
[ $prc = 97 ] || fail "socks4a to dante: exit $prc"
grep -q "SOCKS4 connection to localhost:$http_port refused (91" "$tmp/paf.err" ||
        fail "socks4a: $(cat "$tmp/paf.err")"
same -S -x "socks4://127.0.0.1:$socks_port" "$http_url"
[ $prc = 97 ] || fail "socks4 to a SOCKS5-only proxy: exit $prc"
ok "socks4:// through dante (http, https, names resolved here), refusals (91, SOCKS4a, a SOCKS5-only proxy) exit 97, as curl"

# ---- An HTTPS proxy: stunnel (TLS) in front of tinyproxy ----
tls_proxy_port=$(free_port)
cat >"$tmp/stunnel.conf" <<CONF
foreground = yes
pid =
debug = 3
output = $tmp/stunnel.log
[proxy]
accept = 127.0.0.1:$tls_proxy_port
connect = 127.0.0.1:$proxy_port
cert = $tmp/px.pem
key = $tmp/px.key
CONF
stunnel4 "$tmp/stunnel.conf" >"$tmp/stunnel.err" 2>&1 &
pids="$pids $!"
wait_port "$tls_proxy_port"
tproxy="https://127.0.0.1:$tls_proxy_port"
same -S -x "$tproxy" "$http_url"
[ $prc = 60 ] || fail "HTTPS proxy, unknown CA: exit $prc"
n=$(proxied "GET $http_url")
same -x "$tproxy" --proxy-cacert "$tmp/ca.pem" "$http_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "HTTPS proxy, http: $(cat "$tmp/paf.out")"
[ "$(proxied "GET $http_url")" = $((n + 2)) ] || fail "HTTPS proxy, http: not through tinyproxy"
n=$(proxied "CONNECT 127.0.0.1:$https_port")
same --cacert "$tmp/ca.pem" -x "https://localhost:$tls_proxy_port" --proxy-cacert "$tmp/ca.pem" "$https_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "HTTPS proxy, https: $(cat "$tmp/paf.out")"
[ "$(proxied "CONNECT 127.0.0.1:$https_port")" = $((n + 2)) ] || fail "HTTPS proxy, https: no CONNECT"
same --cacert "$tmp/ca.pem" -x "$tproxy" --proxy-insecure "$https_url"
[ "$(cat "$tmp/paf.out")" = "through the proxy" ] || fail "--proxy-insecure: $(cat "$tmp/paf.out")"
# -k and --cacert are the origin's, not the proxy's.
same -S -k -x "$tproxy" "$https_url"
[ $prc = 60 ] || fail "HTTPS proxy, -k: exit $prc"
same -S -x "$tproxy" --proxy-cacert "$tmp/missing.pem" "$https_url"
[ $prc = 77 ] || fail "--proxy-cacert missing: exit $prc"
ok "https:// proxy (TLS to stunnel, then absolute form or CONNECT): --proxy-cacert, --proxy-insecure, -k not for the proxy (60), missing CA file (77), as curl"

# ---- no_proxy rules, as curl reads them (through a dead proxy: exit 0 is direct) ----
for v in '*' '*,x' 'x,*' 127.0.0.1 .0.0.1 127.0.0.0/8 127.0.0.1/32 127.0.0.2/31 127.0.0.0/33 \
        127.0.0.0/0 127.0.0.1/abc '10.0.0.0/8 127.0.0.1' 'a,,127.0.0.1' 127.0.0.1:$http_port; do
        same --noproxy "$v" -x "127.0.0.1:$dead" "$http_url"
done
for v in localhost .localhost LOCALHOST localhost. calhost host '*.localhost' 127.0.0.0/8 'x, .localhost'; do
        same --noproxy "$v" -x "127.0.0.1:$dead" "$name_url"
done
export no_proxy=127.0.0.0/8 http_proxy="127.0.0.1:$dead"
same "$http_url"
unset no_proxy http_proxy
[ $prc = 0 ] || fail "no_proxy=127.0.0.0/8: went through the proxy"
ok "--noproxy and no_proxy: '*' alone, names and suffixes, addresses and CIDR, as curl"
# IPv6: curl 7.88 compares the text of an IPv6 host with each entry (its
# bug, fixed after 8.17): ::1/128 never matches there. paf compares addresses,
# as curl's documentation says; a direct attempt names [::1], one through
# the proxy names the proxy.
for v in ::1 ::1/128 ::/64 0:0::1; do
        "$PAF_BIN" get -sS --noproxy "$v" -x "127.0.0.1:$dead" "http://[::1]:$dead/" \
                >/dev/null 2>"$tmp/v6.err" || true
        grep -q "127.0.0.1:$dead" "$tmp/v6.err" && fail "--noproxy $v: [::1] went through the proxy"
done
for v in ::2/127 fe80::/10 ::1/129 127.0.0.1; do
        "$PAF_BIN" get -sS --noproxy "$v" -x "127.0.0.1:$dead" "http://[::1]:$dead/" \
                >/dev/null 2>"$tmp/v6.err" || true
        grep -q "127.0.0.1:$dead" "$tmp/v6.err" || fail "--noproxy $v: [::1] went direct"
done
ok "--noproxy with IPv6 addresses and CIDR (::1/128, ::/64) for [::1]"

# ---- proxy strings curl refuses ----
same -S -x "ftp://127.0.0.1:$dead" "$http_url"
[ $prc = 7 ] || fail "ftp:// proxy: exit $prc"
grep -q "Unsupported proxy scheme for 'ftp://127.0.0.1:$dead'" "$tmp/paf.err" || fail "ftp://: $(cat "$tmp/paf.err")"
for bad in 'http://[::1' 'http://127.0.0.1:99999' 'socks5://:1080'; do
        same -S -x "$bad" "$http_url"
        [ $prc = 5 ] || fail "-x $bad: exit $prc"
done
ok "an unknown proxy scheme exits 7, a malformed proxy 5, as curl"
echo "all $n_checks checks passed"
