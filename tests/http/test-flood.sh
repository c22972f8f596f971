#!/bin/sh
# tests/http/test-flood.sh — `paf serve` under connection floods: TLS and plain floods in rounds (a normal client answered within 1 s each round, idle and back to its fd baseline afterwards), SIGTERM after load, during a flood and with connections in every state, and [http] max-connections / [tls] max-handshakes counting TLS handshakes.
set -eu
for tool in python3 certtool curl; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
[ -f "$PAF_TEST_PLUGINDIR/tls.so" ] || { echo "no tls.so in $PAF_TEST_PLUGINDIR: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
here=$PAF_TEST_SRCDIR/tests/http
# shellcheck source=https-certs.sh
. "$here/https-certs.sh"
# shellcheck disable=SC3045 # dash and bash both have ulimit -n
ulimit -n 4096 2>/dev/null || true

tmp=$(mktemp -d)
chmod 0755 "$tmp"
pid=
pids=
cleanup() {
        for p in $pid $pids; do
                kill -9 "$p" 2>/dev/null || true
        done
        for p in $pid $pids; do
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
        [ -s "$tmp/serve.err" ] && { echo "--- paf serve stderr" >&2; tail -n 20 "$tmp/serve.err" >&2; }
        if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
                echo "--- paf serve still running: $(ps -o pcpu=,stat= -p "$pid") % CPU" >&2
        fi
        exit 1
}

certs=$tmp/certs
mkdir "$certs"
https_ca "$certs" ca || fail "certtool: CA"
https_cert "$certs" srv ca localhost localhost 127.0.0.1 || fail "certtool: server"
root=$tmp/www
mkdir "$root"
echo hello >"$root/index.html"
head -c 8388608 /dev/zero >"$root/big"
export FLOOD_CA=$certs/ca.pem

# serve ARGS…: start paf serve, wait for its "listening on" line; sets $pid
# and $addr (HOST:PORT).
serve() {
        : >"$tmp/serve.err"
        "$PAF_BIN" serve --root "$root" --quiet "$@" 2>"$tmp/serve.err" &
        pid=$!
        i=0
        while ! grep -q 'listening on' "$tmp/serve.err"; do
                kill -0 "$pid" 2>/dev/null || fail "paf serve exited at start"
                i=$((i + 1))
                [ $i -le 400 ] || fail "paf serve did not start in 20 s"
                sleep 0.05
        done
        addr=$(sed -n 's|.*listening on https\{0,1\}://\([^ ]*\).*|\1|p' "$tmp/serve.err" | head -n 1)
}

# term WHAT: SIGTERM, then paf serve must exit (status 0) within 5 s.
term() {
        kill -TERM "$pid"
        i=0
        while [ -d "/proc/$pid" ] && [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)" != Z ]; do
                i=$((i + 1))
                [ $i -le 100 ] || fail "SIGTERM $1: paf serve still running after 5 s"
                sleep 0.05
        done
        rc=0
        wait "$pid" || rc=$?
        pid=
        [ "$rc" = 0 ] || fail "SIGTERM $1: paf serve exited with status $rc"
        ok "SIGTERM $1: paf serve exited within $((i * 50)) ms"
}

# hold MODE [N]: flood.py opens connections (see its MODEs) and keeps them
# until release; sets $holder.
hold() {
        rm -f "$tmp/hold"
        mkfifo "$tmp/hold"
        : >"$tmp/held.out"
        python3 "$here/flood.py" "$pid" "$addr" "$@" <"$tmp/hold" >"$tmp/held.out" &
        holder=$!
        pids="$pids $holder"
        exec 3>"$tmp/hold"
        i=0
        until grep -q held "$tmp/held.out"; do
                i=$((i + 1))
                [ $i -le 100 ] || fail "flood.py $*: the connections were not set up"
                sleep 0.05
        done
}
release() {
        exec 3>&-
        wait "$holder" 2>/dev/null || true
        pids=
}

# Sockets only: the loop's socket poller (an epoll fd) comes and goes with
# the first and last connection.
sockets_of() { find "/proc/$1/fd" -lname 'socket:*' | wc -l; }

# ---- 1. TLS flood in rounds ----
printf '[tls]\nhandshake-timeout = 3\n' >"$tmp/tls.conf"
serve --config "$tmp/tls.conf" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" --key "$certs/srv.key"
python3 "$here/flood.py" "$pid" "$addr" tls 4 || fail "TLS flood"
ok "TLS flood: 4 rounds of 50 silent and 300 garbage/truncated-ClientHello connections"
term "after a TLS flood"

# ---- 2. plain flood in rounds ----
serve --listen 127.0.0.1:0
python3 "$here/flood.py" "$pid" "$addr" http 4 || fail "plain flood"
ok "plain flood: 4 rounds"
term "after a plain flood"

# ---- 3. SIGTERM after keep-alive and pipelined load (wrk) ----
if command -v wrk >/dev/null 2>&1; then
        for try in 1 2 3; do
                serve --listen 127.0.0.1:0
                wrk -t1 -c50 -d1s "http://$addr/index.html" >/dev/null
                wrk -t1 -c50 -d1s -s "$PAF_TEST_SRCDIR/bench/pipeline.lua" "http://$addr/index.html" >/dev/null
                term "after wrk and pipelined wrk (try $try)"
        done
fi

# ---- 4. SIGTERM during a flood ----
serve --config "$tmp/tls.conf" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" --key "$certs/srv.key"
python3 "$here/flood.py" "$pid" "$addr" tls 20 >/dev/null 2>&1 &
flooder=$!
pids="$flooder"
sleep 1
term "during a TLS flood"
kill "$flooder" 2>/dev/null || true
wait "$flooder" 2>/dev/null || true
pids=

# ---- 5. SIGTERM with connections in every state ----
printf '[http]\nheader-timeout = 2\nbody-timeout = 2\nwrite-timeout = 2\n' >"$tmp/short.conf"
serve --config "$tmp/short.conf" --listen 127.0.0.1:0
hold states
sleep 0.3
term "with connections in every state"
release

# ---- 6. [http] max-connections counts TLS handshakes ----
printf '[http]\nmax-connections = 5\n[tls]\nhandshake-timeout = 30\n' >"$tmp/max.conf"
serve --config "$tmp/max.conf" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" --key "$certs/srv.key"
# An established connection, kept alive across the flood.
python3 "$here/tls_keepalive.py" "$addr" "$tmp/ka.ctl" >"$tmp/ka.out" 2>&1 &
ka=$!
pids="$ka"
i=0
until grep -q "^1 " "$tmp/ka.out" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 100 ] || fail "keep-alive client: $(cat "$tmp/ka.out")"
        sleep 0.05
done
# The listening socket, without the established connection.
base=$(($(sockets_of "$pid") - 1))
hold hold 60
sleep 0.5
held=$(($(sockets_of "$pid") - base))
echo "max-connections = 5: 1 established + 60 silent TLS connections hold $held fds beyond the baseline"
[ "$held" -le 5 ] || fail "max-connections = 5, yet $held connection fds"
ok "max-connections = 5 holds $held fds with 61 TLS connections"
# Paused, not spinning.
c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
sleep 1
c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
[ $((c1 - c0)) -le 5 ] || fail "paused at max-connections, paf serve used $((c1 - c0)) ticks in 1 s"
ok "paused at max-connections: $((c1 - c0)) CPU ticks in 1 s"
# The established connection is still served.
echo next >"$tmp/ka.ctl"
i=0
until grep -q "^2 " "$tmp/ka.out" 2>/dev/null; do
        i=$((i + 1))
        [ $i -le 40 ] || fail "the established connection was not served while at the limit: $(cat "$tmp/ka.out")"
        sleep 0.05
done
ok "the established connection is served while accepting is paused"
release
echo quit >"$tmp/ka.ctl"
wait "$ka" 2>/dev/null || true
# Freed slots are taken again: a new client is answered.
out=$(curl -sS --max-time 5 --cacert "$certs/ca.pem" "https://localhost:${addr##*:}/index.html") ||
        fail "a new client after the silent ones left"
[ "$out" = hello ] || fail "a new client got '$out'"
ok "accepting resumes once the silent connections are gone"
term "after max-connections"

# ---- 7. [tls] max-handshakes ----
printf '[tls]\nmax-handshakes = 4\nhandshake-timeout = 30\n' >"$tmp/hs.conf"
# One worker: each has TLS listeners of its own, so the limit is per worker.
serve --workers 1 --config "$tmp/hs.conf" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" --key "$certs/srv.key"
base=$(sockets_of "$pid")
hold hold 40
sleep 0.5
held=$(($(sockets_of "$pid") - base))
[ "$held" -le 4 ] || fail "max-handshakes = 4, yet $held connection fds"
ok "max-handshakes = 4 holds $held fds with 40 silent TLS connections"
release
out=$(curl -sS --max-time 5 --cacert "$certs/ca.pem" "https://localhost:${addr##*:}/index.html") ||
        fail "a client after the silent ones left"
[ "$out" = hello ] || fail "a client after the silent ones got '$out'"
ok "accepting resumes under max-handshakes"
term "after max-handshakes"

echo "all $n_checks checks passed"
