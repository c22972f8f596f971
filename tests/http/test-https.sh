#!/bin/sh
# tests/http/test-https.sh — `paf serve` over TLS: curl over TCP and a unix socket, ALPN, SNI, SIGHUP reload under load, a handshake attack, mutual TLS, [listen.NAME], a refused renegotiation, `paf get` against OpenSSL's server (session tickets), and HTTPS over the third-party "loop" transport.
set -eu
for tool in curl certtool gnutls-cli python3 openssl; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
[ -f "$PAF_TEST_PLUGINDIR/tls.so" ] || { echo "no tls.so in $PAF_TEST_PLUGINDIR: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
here=$PAF_TEST_SRCDIR/tests/http
# shellcheck source=https-certs.sh
. "$here/https-certs.sh"
# 1050 attacking connections, for the server and for the attacker.
# shellcheck disable=SC3045 # dash and bash both have ulimit -n
ulimit -n 4096 2>/dev/null || true

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
chmod 0755 "$tmp"
fail_logs="$tmp/*.err"

# Bounded: no client call may hang the test.
c() { curl -sS --max-time 20 "$@"; }

# ---- certificates: a CA, server certificates, a client certificate ----
certs=$tmp/certs
mkdir "$certs"
https_ca "$certs" ca || fail "certtool: CA"
https_ca "$certs" rogue || fail "certtool: rogue CA"
https_cert "$certs" a ca localhost localhost 127.0.0.1 || fail "certtool: a"
https_cert "$certs" b ca "reloaded.localhost" localhost 127.0.0.1 || fail "certtool: b"
https_cert "$certs" other ca other.test other.test || fail "certtool: other"
https_cert "$certs" client ca "test client" --client || fail "certtool: client"
https_cert "$certs" stranger rogue "stranger" --client || fail "certtool: stranger"
ok "certificates made with certtool (ECDSA P-256)"

root=$tmp/root
mkdir "$root"
printf 'hello, https\n' >"$root/hello.txt"
head -c 3000000 /dev/urandom >"$root/big.bin"

# start_server NAME N [paf serve options…]: waits for N listening lines; sets
# pid and, from them, tls (HOST:PORT) and tls_unix (path), when present.
start_server() {
        name=$1 want=$2
        shift 2
        : >"$tmp/$name.err"
        "$PAF_BIN" serve "$@" 2>>"$tmp/$name.err" &
        pid=$!
        pids="$pids $pid"
        i=0
        while n=$(grep -c 'listening on' "$tmp/$name.err" || true) && [ "${n:-0}" -lt "$want" ]; do
                kill -0 "$pid" 2>/dev/null || fail "$name: server exited early"
                i=$((i + 1))
                [ $i -lt 400 ] || fail "$name: server did not start"
                sleep 0.05
        done
        tls=$(sed -n 's|^paf serve: listening on https://||p' "$tmp/$name.err" | head -n 1)
        # The path percent-encoded in the URL (only '/' is, in $tmp).
        tls_unix=$(sed -n 's|^paf serve: listening on https+unix://||p' "$tmp/$name.err" |
                head -n 1 | sed 's|%2F|/|g')
        port=${tls##*:}
}

# stop_server PID NAME: SIGTERM; it must exit 0 within 10 s.
stop_server() {
        kill -TERM "$1"
        i=0
        while kill -0 "$1" 2>/dev/null; do
                state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
                [ "$state" = Z ] && break
                i=$((i + 1))
                [ $i -le 200 ] || fail "$2: did not exit on SIGTERM"
                sleep 0.05
        done
        rc=0
        wait "$1" || rc=$?
        [ $rc = 0 ] || fail "$2: exit status $rc"
}

# subject HOST: the CN of the certificate served for that name (SNI).
subject() {
        c -v --cacert "$certs/ca.pem" --resolve "$1:$port:127.0.0.1" -o /dev/null \
                "https://$1:$port/hello.txt" 2>&1 | sed -n 's/^\*  subject: .*CN=\([^;]*\).*/\1/p'
}

# ---- TCP and unix socket, two certificates ----
start_server main 2 --listen-tls 127.0.0.1:0 --listen-tls "$tmp/tls.sock" --root "$root" \
        --cert "$certs/a.pem" --key "$certs/a.key" --cert "$certs/other.pem" --key "$certs/other.key"
main_pid=$pid
case $tls in
127.0.0.1:0 | "") fail "no real TLS address: '$tls'" ;;
esac
[ "$tls_unix" = "$tmp/tls.sock" ] || fail "unix TLS listener reported '$tls_unix'"
ok "listening on https://$tls and https+unix:// $tls_unix"

for f in hello.txt big.bin; do
        c --cacert "$certs/ca.pem" --resolve "localhost:$port:127.0.0.1" -o "$tmp/out" \
                "https://localhost:$port/$f" || fail "tcp: GET /$f"
        cmp -s "$tmp/out" "$root/$f" || fail "tcp: GET /$f: bytes differ"
        c --cacert "$certs/ca.pem" "https://127.0.0.1:$port/$f" -o "$tmp/out" ||
                fail "tcp: GET https://127.0.0.1/$f (IP SAN)"
        cmp -s "$tmp/out" "$root/$f" || fail "tcp by IP: GET /$f: bytes differ"
        c --unix-socket "$tls_unix" --cacert "$certs/ca.pem" -o "$tmp/out" "https://localhost/$f" ||
                fail "unix: GET /$f"
        cmp -s "$tmp/out" "$root/$f" || fail "unix: GET /$f: bytes differ"
done
ok "curl --cacert: bodies equal the files over TCP (by name and by IP) and over a unix socket"

# Keep-alive: three requests on one TLS connection.
c -v --cacert "$certs/ca.pem" --resolve "localhost:$port:127.0.0.1" -o /dev/null -o /dev/null \
        -o /dev/null "https://localhost:$port/hello.txt" "https://localhost:$port/hello.txt" \
        "https://localhost:$port/big.bin" 2>"$tmp/keepalive.log" || fail "keep-alive"
n=$(grep -c 'Re-using existing connection' "$tmp/keepalive.log" || true)
[ "$n" -ge 2 ] || fail "keep-alive: the connection was not reused ($n)"
ok "keep-alive over TLS: 3 requests, 1 connection"

# No plain text on a TLS port.
if out=$(curl -sS --max-time 5 "http://127.0.0.1:$port/hello.txt" 2>&1); then
        case $out in *"hello, https"*) fail "plain HTTP answered on the TLS port" ;; esac
fi
ok "plain HTTP on the TLS port gets no answer"

out=$(timeout 20 gnutls-cli --alpn=http/1.1 --x509cafile "$certs/ca.pem" -p "$port" localhost \
        </dev/null 2>&1) || true
echo "$out" | grep -q 'Application protocol: http/1.1' ||
        fail "gnutls-cli: no ALPN http/1.1: $out"
echo "$out" | grep -q 'The certificate is trusted' || fail "gnutls-cli: not trusted: $out"
ok "gnutls-cli: ALPN negotiated http/1.1, certificate trusted ($(echo "$out" | sed -n 's/^- Description: (\([^)]*\)).*/\1/p'))"

# TLS 1.2 renegotiation: refused with a no_renegotiation warning, where it
# used to drop the connection (gnutls-cli asks again after each warning, and
# is refused each time). That the connection stays usable is asserted in
# tests/plugins/test-tls.c.
out=$(timeout 20 gnutls-cli --rehandshake --priority NORMAL:-VERS-ALL:+VERS-TLS1.2 \
        --x509cafile "$certs/ca.pem" -p "$port" localhost </dev/null 2>&1) || true
echo "$out" | grep -q 'Received alert \[100\]: No renegotiation is allowed' ||
        fail "gnutls-cli --rehandshake: no no_renegotiation warning: $(echo "$out" | tail -n 3)"
echo "$out" | grep -q 'non-properly terminated' && fail "gnutls-cli --rehandshake: connection dropped"
ok "TLS 1.2 renegotiation refused with the warning \"$(echo "$out" | sed -n 's/^\*\*\* Received alert \[100\]: //p' | head -n 1)\""

# SNI: each name gets its certificate; an unknown name gets the default.
[ "$(subject localhost)" = localhost ] || fail "SNI localhost: '$(subject localhost)'"
[ "$(subject other.test)" = other.test ] || fail "SNI other.test: '$(subject other.test)'"
c --cacert "$certs/ca.pem" --resolve "other.test:$port:127.0.0.1" -o "$tmp/out" \
        "https://other.test:$port/hello.txt" || fail "SNI: GET https://other.test/"
cmp -s "$tmp/out" "$root/hello.txt" || fail "SNI other.test: body"
if c --cacert "$certs/ca.pem" --resolve "unknown.test:$port:127.0.0.1" -o /dev/null \
        "https://unknown.test:$port/hello.txt" 2>"$tmp/unknown.log"; then
        fail "unknown.test verified"
fi
ok "SNI: localhost gets CN=localhost, other.test gets CN=other.test (verified), unknown.test fails verification"

# The access log names the TLS peer like any other.
grep -Eq '^127\.0\.0\.1 - - \[.*\] "GET /hello.txt HTTP/(1\.1|2\.0)" 200 13 ' "$tmp/main.err" ||
        fail "no access log line for the TCP request"
grep -Eq '^unix - - \[.*\] "GET /big.bin HTTP/(1\.1|2\.0)" 200 3000000 ' "$tmp/main.err" ||
        grep -Eq '^[^ ]* - - \[.*\] "GET /big.bin HTTP/(1\.1|2\.0)" 200 3000000 ' "$tmp/main.err" ||
        fail "no access log line for the unix request"
ok "access log lines for HTTPS requests"
stop_server "$main_pid" main
ok "SIGTERM: clean exit"

# ---- SIGHUP: new certificates under load ----
cp "$certs/a.pem" "$tmp/live.pem"
cp "$certs/a.key" "$tmp/live.key"
start_server reload 1 --quiet --listen-tls 127.0.0.1:0 --root "$root" \
        --cert "$tmp/live.pem" --key "$tmp/live.key"
reload_pid=$pid
[ "$(subject localhost)" = localhost ] || fail "reload: before: '$(subject localhost)'"
python3 "$here/https_clients.py" load "$tls" "$certs/ca.pem" 5 "$tmp/go" "$tmp/seen" \
        >"$tmp/load.out" 2>&1 &
load_pid=$!
pids="$pids $load_pid"
sleep 1.5
# Replace both files before the signal: the reload reads them from disk.
cp "$certs/b.pem" "$tmp/live.pem.new" && mv "$tmp/live.pem.new" "$tmp/live.pem"
cp "$certs/b.key" "$tmp/live.key.new" && mv "$tmp/live.key.new" "$tmp/live.key"
kill -HUP "$reload_pid"
i=0
until grep -q 'certificates reloaded' "$tmp/reload.err"; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "no reload message"
        grep -q 'reload failed' "$tmp/reload.err" && fail "reload failed"
        sleep 0.05
done
# From here on, every new connection must get B (the log line is written
# once the listener took it).
: >"$tmp/go"
rc=0
wait "$load_pid" || rc=$?
cat "$tmp/load.out"
[ $rc = 0 ] || fail "requests failed across the reload"
grep -q '^before localhost ' "$tmp/seen" || fail "no request saw certificate A before the reload"
grep -q '^after reloaded.localhost ' "$tmp/seen" || fail "no request saw certificate B after the reload"
! grep -q '^after localhost ' "$tmp/seen" || fail "a connection after the reload saw certificate A"
[ "$(subject localhost)" = reloaded.localhost ] || fail "reload: after: '$(subject localhost)'"
ok "SIGHUP under load: $(sed -n 's/^requests: \([0-9]*\), failures: \([0-9]*\)/\1 requests, \2 failed/p' "$tmp/load.out"); new connections see the new certificate"

# A broken file: the reload fails, says why, and the old certificate stays.
echo "not a certificate" >"$tmp/live.pem"
kill -HUP "$reload_pid"
i=0
until grep -q 'reload failed' "$tmp/reload.err"; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "no message for the failed reload"
        sleep 0.05
done
[ "$(subject localhost)" = reloaded.localhost ] || fail "after a failed reload: '$(subject localhost)'"
ok "SIGHUP with a broken certificate: '$(grep -m1 'reload failed' "$tmp/reload.err")'; the previous one is kept"
stop_server "$reload_pid" reload

# ---- [listen.NAME] and a TLS handshake attack ----
# Relative files are taken from the configuration's directory.
cp "$certs/a.pem" "$certs/a.key" "$tmp/"
cat >"$tmp/hostile.conf" <<EOF
[tls]
handshake-timeout = 2

[listen.secure]
address = 127.0.0.1:0
tls = yes
certificate = a.pem
key = a.key

[listen.plain]
address = $tmp/plain.sock
EOF
start_server hostile 2 --quiet --config "$tmp/hostile.conf" --root "$root"
hostile_pid=$pid
c --unix-socket "$tmp/plain.sock" -o "$tmp/out" http://localhost/hello.txt ||
        fail "[listen.plain]: plain HTTP on the unix socket"
cmp -s "$tmp/out" "$root/hello.txt" || fail "[listen.plain]: body"
c --cacert "$certs/ca.pem" "https://$tls/hello.txt" -o "$tmp/out" || fail "[listen.secure]: GET"
cmp -s "$tmp/out" "$root/hello.txt" || fail "[listen.secure]: body"
ok "paf.conf [listen.secure] (tls, relative certificate files) and [listen.plain] (unix socket)"

baseline=$(ls "/proc/$hostile_pid/fd" | wc -l)
python3 "$here/https_clients.py" attack "$tls" 1000 50 2 >"$tmp/attack.out" 2>&1 &
attack_pid=$!
pids="$pids $attack_pid"
# A normal client meanwhile: each request, on a new connection, within 1 s.
slowest=0
n_good=0
while kill -0 "$attack_pid" 2>/dev/null && [ $n_good -lt 100 ]; do
        t=$(curl -sS --max-time 5 --cacert "$certs/ca.pem" -o "$tmp/out" -w '%{time_total}' \
                "https://$tls/hello.txt") || fail "a normal client failed during the attack"
        cmp -s "$tmp/out" "$root/hello.txt" || fail "a normal client got a wrong body during the attack"
        slowest=$(echo "$t $slowest" | awk '{ print ($1 > $2) ? $1 : $2 }')
        n_good=$((n_good + 1))
        sleep 0.1
done
rc=0
wait "$attack_pid" || rc=$?
cat "$tmp/attack.out"
[ $rc = 0 ] || fail "attack: the server did not close every connection"
[ $n_good -ge 5 ] || fail "only $n_good normal requests during the attack"
awk "BEGIN { exit !($slowest < 1.0) }" || fail "a normal request took $slowest s during the attack"
i=0
while now=$(ls "/proc/$hostile_pid/fd" | wc -l) && [ "$now" -gt "$baseline" ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "fds: $now open, baseline $baseline"
        sleep 0.05
done
ok "1000 garbage/truncated handshakes + 50 silent connections: all closed by the server, $n_good normal requests meanwhile (slowest ${slowest} s), fds back to $baseline"
stop_server "$hostile_pid" hostile

# ---- [listen.NAME] errors name the file and line ----
printf '[listen.web]\naddress = 127.0.0.1:0\ntls = yes\ncertificate = a.pem\n' >"$tmp/bad.conf"
if "$PAF_BIN" serve --config "$tmp/bad.conf" 2>"$tmp/bad.err"; then fail "bad.conf accepted"; fi
grep -q "bad.conf:3: \[listen.web\] key \"key\": required with tls" "$tmp/bad.err" ||
        fail "bad.conf: $(cat "$tmp/bad.err")"
printf '[listen.Web]\naddress = 1\n' >"$tmp/bad.conf"
if "$PAF_BIN" serve --config "$tmp/bad.conf" 2>"$tmp/bad.err"; then fail "bad name accepted"; fi
grep -q 'bad.conf:1: \[listen.Web\]: "Web" is not a valid listener name' "$tmp/bad.err" ||
        fail "bad name: $(cat "$tmp/bad.err")"
printf '[listen.web]\ntls = yes\n' >"$tmp/bad.conf"
if "$PAF_BIN" serve --config "$tmp/bad.conf" 2>"$tmp/bad.err"; then fail "no address accepted"; fi
grep -q 'bad.conf:1: \[listen.web\] key "address": required' "$tmp/bad.err" ||
        fail "no address: $(cat "$tmp/bad.err")"
if "$PAF_BIN" serve --listen-tls 127.0.0.1:0 2>"$tmp/bad.err"; then fail "--listen-tls without --cert"; fi
grep -q -- '--listen-tls needs --cert and --key' "$tmp/bad.err" || fail "$(cat "$tmp/bad.err")"
if "$PAF_BIN" serve --listen-tls 127.0.0.1:0 --cert "$certs/a.pem" --key "$tmp/nothing.key" \
        2>"$tmp/bad.err"; then fail "missing key file accepted"; fi
grep -q 'listen-tls "127.0.0.1:0"' "$tmp/bad.err" || fail "missing key: $(cat "$tmp/bad.err")"
ok "errors: '$(head -n 1 "$tmp/bad.err")'"

# ---- mutual TLS ----
start_server mtls 1 --listen-tls 127.0.0.1:0 --root "$root" --cert "$certs/a.pem" \
        --key "$certs/a.key" --client-ca "$certs/ca.pem"
mtls_pid=$pid
if c --cacert "$certs/ca.pem" "https://$tls/hello.txt" -o /dev/null 2>"$tmp/nocert.log"; then
        fail "mTLS: a client without a certificate was served"
fi
if c --cacert "$certs/ca.pem" --cert "$certs/stranger.pem" --key "$certs/stranger.key" \
        "https://$tls/hello.txt" -o /dev/null 2>"$tmp/stranger.log"; then
        fail "mTLS: a certificate from another CA was accepted"
fi
c --cacert "$certs/ca.pem" --cert "$certs/client.pem" --key "$certs/client.key" \
        "https://$tls/hello.txt" -o "$tmp/out" || fail "mTLS: the client certificate was refused"
cmp -s "$tmp/out" "$root/hello.txt" || fail "mTLS: body"
# The handler sees the verified subject: the access log's user field.
grep -Eq '^127\.0\.0\.1 - CN=test\\x20client,O=paf\\x20tests \[.*"GET /hello.txt HTTP/(1\.1|2\.0)" 200 ' \
        "$tmp/mtls.err" || fail "mTLS: no peer DN in the access log"
ok "mTLS: no certificate refused, a stranger's refused, the CA's client served; the log shows $(grep -o 'CN=test[^ ]*' "$tmp/mtls.err" | head -n 1)"
stop_server "$mtls_pid" mtls

# ---- paf get against OpenSSL's server: two TLS 1.3 session tickets ----
# openssl s_server sends two tickets after the handshake, as nginx and
# Apache do by default. The records behind them must be read without waiting
# for more input: before, about 4 requests in 5 hung here.
: >"$tmp/s_server.out"
openssl s_server -accept 127.0.0.1:0 -cert "$certs/a.pem" -key "$certs/a.key" -www -tls1_3 \
        -num_tickets 2 </dev/null >"$tmp/s_server.out" 2>"$tmp/s_server.err" &
s_server_pid=$!
pids="$pids $s_server_pid"
i=0
until s_port=$(sed -n 's/^ACCEPT 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/s_server.out") && [ -n "$s_port" ]; do
        kill -0 "$s_server_pid" 2>/dev/null || fail "openssl s_server exited: $(cat "$tmp/s_server.err")"
        i=$((i + 1))
        [ $i -lt 200 ] || fail "openssl s_server did not start"
        sleep 0.05
done
slowest=0
for i in 1 2 3 4 5; do
        start=$(date +%s%N)
        rc=0
        timeout 10 "$PAF_BIN" get --cacert "$certs/ca.pem" -o "$tmp/s_server.html" \
                "https://localhost:$s_port/" 2>"$tmp/get-openssl.err" || rc=$?
        [ $rc = 124 ] && fail "paf get against openssl s_server: no answer in 10 s (request $i)"
        [ $rc = 0 ] || fail "paf get against openssl s_server: exit $rc: $(cat "$tmp/get-openssl.err")"
        grep -q '^New, TLSv1.3, Cipher is ' "$tmp/s_server.html" || fail "openssl s_server: not its status page over TLS 1.3"
        ms=$((($(date +%s%N) - start) / 1000000))
        [ $ms -gt $slowest ] && slowest=$ms
done
kill "$s_server_pid"
wait "$s_server_pid" 2>/dev/null || true
ok "paf get against openssl s_server (TLS 1.3, two session tickets): 5 requests answered, slowest ${slowest} ms"

# ---- HTTPS over the third-party "loop" transport ----
if [ -n "${PAF_TEST_HTTPS_LOOP:-}" ] && command -v make >/dev/null 2>&1; then
        mkdir "$tmp/loop"
        PKG_CONFIG_PATH=$PAF_TEST_BUILDDIR/pkgconfig/uninstalled \
                make -s -C "$PAF_TEST_SRCDIR/examples/plugin" O="$tmp/loop" >"$tmp/make.log" 2>&1 ||
                { cat "$tmp/make.log" >&2; fail "example plugin did not build"; }
        PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR:$tmp/loop" "$PAF_TEST_HTTPS_LOOP" "$certs" ||
                fail "HTTPS over loop"
        ok "HTTPS over the out-of-tree loop plugin (listen loop:x, wrap with tls, connect with loop.name + tls.server-name)"
fi

echo "all $n_checks checks passed"
