#!/bin/sh
# tests/acme/test-serve-acme.sh — `paf serve --acme` against Debian's pebble on loopback: issue then serve (curl verifies against pebble's root), plain HTTP redirected and challenges answered before the app, a restart that reuses the stored certificate, tls-alpn-01 on the TLS listener alone, a failing issuance retried while serving goes on, and a live renewal under a kept-alive client.
#
# Two pebbles: one with its defaults (5-year certificates), then one with
# 20-second certificates, renewed by paf serve about 10 s after issuance.
set -eu
for tool in pebble pebble-challtestsrv certtool curl python3 setpriv openssl timeout; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
[ -f "$PAF_TEST_PLUGINDIR/tls.so" ] || { echo "no tls.so in $PAF_TEST_PLUGINDIR: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
# shellcheck source=pebble.sh
. "$PAF_TEST_SRCDIR/tests/acme/pebble.sh"

tmp=$(mktemp -d)
pid=
client=
cleanup() {
        for p in $pid $client; do
                kill -9 "$p" 2>/dev/null || true
        done
        for p in $pid $client; do
                wait "$p" 2>/dev/null || true
        done
        pebble_cleanup
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
        [ ! -s "$tmp/serve.err" ] || { echo "--- paf serve stderr (last 30 lines):" >&2; tail -n 30 "$tmp/serve.err" >&2; }
        [ ! -s "$tmp/client.out" ] || { echo "--- kept-alive client (last 10 lines):" >&2; tail -n 10 "$tmp/client.out" >&2; }
        if [ -n "$PEBBLE_LOG" ] && [ -s "$PEBBLE_LOG" ]; then
                echo "--- pebble log (last 30 lines):" >&2
                tail -n 30 "$PEBBLE_LOG" >&2
        fi
        exit 1
}

root=$tmp/www
mkdir -p "$root/.well-known/acme-challenge"
echo hello >"$root/index.html"
# What the app would answer for a challenge path: it must never be reached.
echo "from the app" >"$root/.well-known/acme-challenge/unknown-token"
D=$tmp/state

# wait_log PATTERN SECS: until paf serve's stderr matches PATTERN (grep -E),
# while it runs.
wait_log() {
        _i=0
        until grep -qE -- "$1" "$tmp/serve.err"; do
                [ -d "/proc/$pid" ] || fail "paf serve exited while waiting for \"$1\""
                _i=$((_i + 1))
                [ $_i -le $(($2 * 20)) ] || fail "paf serve did not log \"$1\" within $2 s"
                sleep 0.05
        done
}
# serve ARGS…: paf serve --acme … against the running pebble; returns once it
# listens on everything it was asked to. Sets $pid.
serve() {
        : >"$tmp/serve.err"
        "$PAF_BIN" serve --root "$root" --acme-url "$PEBBLE_DIR_URL" --acme-cacert "$PEBBLE_CA" \
                --agree-tos --email admin@paf.test --acme-dir "$D" "$@" 2>"$tmp/serve.err" &
        pid=$!
        wait_log 'listening on https://' 10
}
# term: SIGTERM; paf serve must exit with status 0 within 5 s.
term() {
        kill -TERM "$pid"
        _i=0
        while [ -d "/proc/$pid" ] &&
                [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)" != Z ]; do
                _i=$((_i + 1))
                [ $_i -le 100 ] || fail "SIGTERM: paf serve still running after 5 s"
                sleep 0.05
        done
        _rc=0
        wait "$pid" || _rc=$?
        pid=
        [ "$_rc" = 0 ] || fail "SIGTERM: paf serve exited with status $_rc"
}
# https NAME PORT [PATH]: the body over HTTPS, verified against pebble's root.
https() {
        curl -sS --max-time 5 --cacert "$PEBBLE_ROOT" --resolve "$1:$2:127.0.0.1" "https://$1:$2${3:-/}"
}
# http NAME PORT PATH: "CODE LOCATION" over plain HTTP; the body in $tmp/body.
http() {
        curl -sS --max-time 5 -o "$tmp/body" -w '%{http_code} %{redirect_url}' \
                --resolve "$1:$2:127.0.0.1" "http://$1:$2$3" || true
}
# served_serial NAME PORT: the serial of the certificate a new TLS
# connection gets, as cert_serial prints it (empty if none).
served_serial() {
        timeout 5 openssl s_client -connect "127.0.0.1:$2" -servername "$1" </dev/null 2>/dev/null |
                openssl x509 >"$tmp/served.pem" 2>/dev/null || true
        cert_serial "$tmp/served.pem"
}

# ---- 1. pebble with its defaults ----
pebble_start
H=$PEBBLE_HTTP_PORT T=$PEBBLE_TLS_PORT
N=serve.paf.test

# -- issue, then serve
start=$(date +%s)
serve --acme $N --listen "127.0.0.1:$H" --listen-tls "127.0.0.1:$T"
wait_log "ACME: certificate for $N, serial [0-9a-f]+, .*\\(new\\)" 15
body=$(https $N "$T") || fail "https://$N:$T/ after issuance: curl failed"
[ "$body" = hello ] || fail "https://$N:$T/: \"$body\""
serial=$(served_serial $N "$T")
[ -n "$serial" ] && [ "$serial" = "$(cert_serial "$D/$N/fullchain.pem")" ] ||
        fail "the served serial \"$serial\" is not the stored certificate's"
pebble_verify_chain "$D/$N/fullchain.pem" || fail "the stored chain does not verify against pebble's root"
ok "issue then serve: $N obtained in $(($(date +%s) - start)) s; curl verifies https://$N:$T/ against pebble's root; serial $serial"

got=$(http $N "$H" '/some/page?q=1')
[ "$got" = "301 https://$N:$T/some/page?q=1" ] || fail "plain HTTP: \"$got\", expected a 301 to https://$N:$T/some/page?q=1"
ok "plain HTTP: 301 to https://$N:$T/… (the TLS listener's port), path and query kept"

got=$(http $N "$H" /.well-known/acme-challenge/unknown-token)
[ "$got" = "404 " ] || fail "unknown challenge token: \"$got\", expected 404"
! grep -q "from the app" "$tmp/body" || fail "unknown challenge token: the app answered"
token=$(sed -n "s|.*validate w/ HTTP: http://$N:[0-9]*/.well-known/acme-challenge/\\([A-Za-z0-9_-]*\\).*|\\1|p" "$PEBBLE_LOG" | head -n 1)
[ -n "$token" ] || fail "no http-01 validation of $N in pebble's log"
got=$(http $N "$H" "/.well-known/acme-challenge/$token")
[ "$got" = "404 " ] || fail "the validated token $token: \"$got\", expected 404 (it must be withdrawn)"
ok "/.well-known/acme-challenge/: an unknown token gets 404 (not the app's file, not a redirect); the validated token is withdrawn"

# -- restart: the stored certificate at once, no new order
orders=$(pebble_count_orders)
term
ok "SIGTERM: paf serve --acme exits with status 0"
serve --acme $N --listen "127.0.0.1:$H" --listen-tls "127.0.0.1:$T"
body=$(https $N "$T") || fail "https://$N:$T/ right after the restart: curl failed"
[ "$body" = hello ] || fail "https://$N:$T/ after the restart: \"$body\""
[ "$(served_serial $N "$T")" = "$serial" ] || fail "after the restart: serial $(served_serial $N "$T"), expected $serial"
wait_log "ACME: certificate for $N, serial $serial, .*\\(stored\\)" 10
[ "$(pebble_count_orders)" = "$orders" ] || fail "after the restart: pebble logged $(($(pebble_count_orders) - orders)) new orders"
! grep -q '(new)' "$tmp/serve.err" || fail "after the restart: a new certificate was obtained"
ok "restart with the same --acme-dir: serves the stored certificate ($serial) from its first connection, no new order"
term

# -- tls-alpn-01 on the TLS listener alone
A=alpn.paf.test
serve --acme $A --acme-challenge tls-alpn-01 --listen-tls "127.0.0.1:$T"
! grep -q 'listening on http://' "$tmp/serve.err" || fail "tls-alpn-01: a plain HTTP listener was opened"
wait_log "ACME: certificate for $A, serial [0-9a-f]+, .*\\(new\\)" 15
body=$(https $A "$T") || fail "https://$A:$T/ after tls-alpn-01 issuance: curl failed"
[ "$body" = hello ] || fail "https://$A:$T/: \"$body\""
! grep -q "validate w/ HTTP: http://$A" "$PEBBLE_LOG" || fail "tls-alpn-01: pebble validated $A over http-01"
# Once valid, the acme-tls/1 certificate is withdrawn: that ALPN is refused.
alpn=$(timeout 5 openssl s_client -connect "127.0.0.1:$T" -servername $A -alpn acme-tls/1 </dev/null 2>&1 || true)
case $alpn in
*"ALPN protocol: acme-tls/1"*) fail "tls-alpn-01: acme-tls/1 still answered after issuance" ;;
esac
ok "tls-alpn-01 with only --listen-tls: the certificate is obtained through paf's own TLS listener and served; acme-tls/1 is refused afterwards"
term

# -- a failing issuance: serving goes on, the error is logged and retried
F=fail.paf.test
challtest_set_a $F 127.0.0.2
serve --acme $F --listen "127.0.0.1:$H" --listen-tls "127.0.0.1:$T"
wait_log "acme: $F: issuance failed \\(1 in a row\\), retrying at " 10
for detail in "$F" http-01 127.0.0.2 "connection refused"; do
        grep "issuance failed" "$tmp/serve.err" | grep -qF -- "$detail" ||
                fail "the issuance failure lacks \"$detail\""
done
got=$(http $F "$H" /)
[ "$got" = "200 " ] && [ "$(cat "$tmp/body")" = hello ] ||
        fail "plain HTTP during the failed issuance: \"$got\", expected the app's 200"
ok "a failing challenge ($F -> 127.0.0.2): paf serve keeps serving plain HTTP, logs pebble's problem detail and the retry time"

challtest_clear_a $F
wait_log "ACME: certificate for $F, serial [0-9a-f]+, .*\\(new\\)" 20
body=$(https $F "$T") || fail "https://$F:$T/ after the retry: curl failed"
[ "$body" = hello ] || fail "https://$F:$T/ after the retry: \"$body\""
got=$(http $F "$H" /)
[ "$got" = "301 https://$F:$T/" ] || fail "plain HTTP once the certificate is there: \"$got\""
ok "the retry (10 s later) obtains the certificate once the name resolves: HTTPS served, plain HTTP now redirected"
term
pebble_cleanup

# ---- 2. 20-second certificates: a live renewal ----
pebble_start --validity 20
H=$PEBBLE_HTTP_PORT T=$PEBBLE_TLS_PORT
D=$tmp/state-renew
R=renew.paf.test
serve --acme $R --listen "127.0.0.1:$H" --listen-tls "127.0.0.1:$T"
wait_log "ACME: certificate for $R, serial [0-9a-f]+, .*\\(new\\)" 15
first=$(served_serial $R "$T")
[ -n "$first" ] || fail "no certificate served for $R"

# One connection, a request every 0.5 s; never reconnects (auto_open off),
# every answer must be 200 "hello".
cat >"$tmp/keepalive.py" <<'EOF'
import http.client, os, socket, ssl, sys, time
port, name, ca, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                       server_hostname=name)
local = sock.getsockname()
serial = sock.getpeercert()["serialNumber"]
conn = http.client.HTTPSConnection(name, port, context=ctx, timeout=5)
conn.sock = sock
conn.auto_open = 0
deadline = time.monotonic() + 40
n = 0
while time.monotonic() < deadline:
    conn.request("GET", "/")
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200 or body != b"hello\n":
        sys.exit(f"request {n + 1}: {resp.status} {body!r}")
    if conn.sock is not sock or resp.will_close or sock.getsockname() != local:
        sys.exit(f"request {n + 1}: the connection is not kept")
    n += 1
    print(f"request {n}: 200 on {local[0]}:{local[1]}, serial {serial}", flush=True)
    if os.path.exists(stop):
        break
    time.sleep(0.5)
else:
    sys.exit("not stopped within 40 s")
print(f"done: {n} requests on one connection", flush=True)
EOF
: >"$tmp/client.out"
python3 "$tmp/keepalive.py" "$T" $R "$PEBBLE_ROOT" "$tmp/stop" >"$tmp/client.out" 2>&1 &
client=$!
i=0
until grep -q '^request 1:' "$tmp/client.out"; do
        [ -d "/proc/$client" ] || fail "the kept-alive client failed at start"
        i=$((i + 1))
        [ $i -le 100 ] || fail "the kept-alive client made no request in 5 s"
        sleep 0.05
done

# Renewal at half the lifetime (less up to a tenth): ~10 s after issuance.
start=$(date +%s)
new=$first
i=0
while [ "$new" = "$first" ]; do
        i=$((i + 1))
        [ $i -le 50 ] || fail "no new certificate served within 25 s (still $first)"
        sleep 0.5
        new=$(served_serial $R "$T")
done
swapped=$(grep -c '^request' "$tmp/client.out")
# The kept-alive client goes on across the swap.
sleep 1.5
touch "$tmp/stop"
crc=0
wait "$client" || crc=$?
client=
[ "$crc" = 0 ] || fail "the kept-alive client failed across the renewal: $(tail -n 1 "$tmp/client.out")"
total=$(sed -n 's/^done: \([0-9]*\) requests.*/\1/p' "$tmp/client.out")
[ -n "$total" ] && [ "$total" -gt "$swapped" ] || fail "the kept-alive client made no request after the swap"
[ "$new" = "$(cert_serial "$D/$R/fullchain.pem")" ] || fail "the served serial $new is not the stored one"
pebble_verify_chain "$D/$R/fullchain.pem" || fail "the renewed chain does not verify"
body=$(https $R "$T") || fail "https://$R:$T/ after the renewal: curl failed"
[ "$body" = hello ] || fail "https://$R:$T/ after the renewal: \"$body\""
issued=$(pebble_issued_serials)
for s in "$first" "$new"; do
        printf '%s\n' "$issued" | grep -qx "$s" || fail "pebble did not issue $s"
done
[ "$(printf '%s\n' "$issued" | wc -l)" -ge 2 ] || fail "pebble issued fewer than 2 certificates"
ok "live renewal: new serial $new served $(($(date +%s) - start)) s after the first request; the kept-alive client made $total requests on one connection, all 200, $((total - swapped)) after the swap"
term

echo "all $n_checks checks passed"
