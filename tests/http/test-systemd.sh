#!/bin/sh
# tests/http/test-systemd.sh — `paf serve` under systemd's protocols: socket activation (TCP, unix, a TLS [listen.NAME] by FileDescriptorName, mixed with configured listeners), sd_notify (READY only once listening, STATUS, RELOADING, STOPPING, WATCHDOG) and a socket paf cannot use.
set -eu
sa=$(command -v systemd-socket-activate 2>/dev/null || true)
[ -n "$sa" ] || { echo "systemd-socket-activate not found: skipping"; exit 77; }
for tool in curl certtool python3; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
[ -f "$PAF_TEST_PLUGINDIR/tls.so" ] || { echo "no tls.so in $PAF_TEST_PLUGINDIR: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
here=$PAF_TEST_SRCDIR/tests/http
# shellcheck source=https-certs.sh
. "$here/https-certs.sh"

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
chmod 0755 "$tmp"
fail_logs="$tmp/*.err $tmp/*.log"

# Bounded: no client call may hang the test.
c() { curl -sS --max-time 20 "$@"; }


# wait_for FILE PATTERN [N]: at most 20 s for N (default 1) lines matching PATTERN.
wait_for() {
        i=0
        while n=$(grep -c -- "$2" "$1" 2>/dev/null || true) && [ "${n:-0}" -lt "${3:-1}" ]; do
                i=$((i + 1))
                [ $i -lt 400 ] || fail "$1: no ${3:-1} lines matching \"$2\" in 20 s"
                sleep 0.05
        done
}

# wait_exit PID: at most 20 s for it to exit; sets rc to its status.
wait_exit() {
        i=0
        while kill -0 "$1" 2>/dev/null; do
                state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
                [ "$state" = Z ] && break
                i=$((i + 1))
                [ $i -lt 400 ] || fail "pid $1 did not exit within 20 s"
                sleep 0.05
        done
        rc=0
        wait "$1" || rc=$?
}

# activate NAME [systemd-socket-activate options…] -- [paf serve options…]:
# paf serve under systemd-socket-activate, which passes the environment paf
# needs; waits for its "Listening on" lines. Sets pid (paf's, once it execs).
activate() {
        name=$1
        shift
        : >"$tmp/$name.err"
        set -- -E PAF_PLUGIN_PATH -E ASAN_OPTIONS -E UBSAN_OPTIONS -E NOTIFY_SOCKET "$@"
        n_listen=0
        for a in "$@"; do
                [ "$a" = -- ] && break
                case $a in -l | --listen=*) n_listen=$((n_listen + 1)) ;; esac
        done
        # Replace "--" by the command.
        first=1
        for a in "$@"; do
                if [ -n "$first" ]; then
                        set --
                        first=
                fi
                if [ "$a" = -- ]; then
                        set -- "$@" "$PAF_BIN" serve
                else
                        set -- "$@" "$a"
                fi
        done
        "$sa" "$@" 2>>"$tmp/$name.err" &
        pid=$!
        pids="$pids $pid"
        wait_for "$tmp/$name.err" '^Listening on' "$n_listen"
}

# notify_start NAME [ADDR…]: a notify socket in $tmp/NAME.sock, logging to
# $tmp/NAME.log, that connects to each ADDR when READY=1 arrives.
notify_start() {
        nname=$1
        shift
        : >"$tmp/$nname.log"
        python3 "$here/systemd-notify.py" "$tmp/$nname.sock" "$tmp/$nname.log" "$@" &
        pids="$pids $!"
        wait_for "$tmp/$nname.log" '^bound$'
}

certs=$tmp/certs
mkdir "$certs"
https_ca "$certs" ca || fail "certtool: CA"
https_cert "$certs" a ca localhost localhost 127.0.0.1 || fail "certtool: a"
root=$tmp/root
mkdir "$root"
printf 'hello, systemd\n' >"$root/hello.txt"
head -c 300000 /dev/urandom >"$root/big.bin"

# ---- 1. TCP and unix sockets from socket activation, nothing else ----
port=$(free_port)
sock=$tmp/paf.sock
activate plain -l "127.0.0.1:$port" -l "$sock" -- --root "$root"
# The first connection makes systemd-socket-activate start paf; it waits in
# the backlog meanwhile.
body=$(c "http://127.0.0.1:$port/hello.txt") || fail "curl over the activated TCP socket"
[ "$body" = "hello, systemd" ] || fail "TCP: got \"$body\""
ok "activated TCP socket serves files"
body=$(c --unix-socket "$sock" http://paf/hello.txt) || fail "curl over the activated unix socket"
[ "$body" = "hello, systemd" ] || fail "unix: got \"$body\""
c --unix-socket "$sock" -o "$tmp/big.out" http://paf/big.bin || fail "curl big.bin over unix"
cmp -s "$root/big.bin" "$tmp/big.out" || fail "big.bin differs over the unix socket"
ok "activated unix socket serves files"
wait_for "$tmp/plain.err" 'paf serve: listening on' 2
[ "$(grep -c 'paf serve: listening on' "$tmp/plain.err")" = 2 ] || fail "not exactly 2 listeners"
grep -q "paf serve: listening on http://127.0.0.1:$port (socket-activated" "$tmp/plain.err" ||
        fail "the TCP listener is not reported as socket-activated"
grep -q '127.0.0.1:8080' "$tmp/plain.err" && fail "the default listener was added"
ok "exactly the activated sockets, no default 127.0.0.1:8080"
kill -TERM "$pid"
wait_exit "$pid"
[ "$rc" = 0 ] || fail "SIGTERM: exit status $rc"
ok "SIGTERM: exit 0"

# ---- 2. FileDescriptorName=https takes [listen.https]: TLS, not its address ----
port=$(free_port)
unused=$(free_port)
plain_port=$(free_port)
cli_port=$(free_port)
cat >"$tmp/paf.conf" <<EOF
[listen.https]
# Never bound: the activated socket named "https" takes its place.
address = 127.0.0.1:$unused
tls = yes
certificate = certs/a.pem
key = certs/a.key

[listen.plain]
address = 127.0.0.1:$plain_port
EOF
notify_start tls "127.0.0.1:$port" "127.0.0.1:$plain_port" "127.0.0.1:$cli_port"
NOTIFY_SOCKET=$tmp/tls.sock activate tls -l "127.0.0.1:$port" --fdname=https -- \
        --config "$tmp/paf.conf" --listen "127.0.0.1:$cli_port" --root "$root"
body=$(c --cacert "$certs/ca.pem" --resolve "localhost:$port:127.0.0.1" \
        "https://localhost:$port/hello.txt") || fail "curl https over the activated socket"
[ "$body" = "hello, systemd" ] || fail "https: got \"$body\""
ok "activated socket named https serves TLS from [listen.https]"
c -o /dev/null "http://127.0.0.1:$port/hello.txt" 2>/dev/null &&
        fail "plain HTTP answered on the TLS socket"
ok "no plain HTTP on the TLS socket"
wait_for "$tmp/tls.err" 'paf serve: listening on' 3
body=$(c "http://127.0.0.1:$plain_port/hello.txt") || fail "curl [listen.plain]"
[ "$body" = "hello, systemd" ] || fail "[listen.plain]: got \"$body\""
body=$(c "http://127.0.0.1:$cli_port/hello.txt") || fail "curl --listen"
[ "$body" = "hello, systemd" ] || fail "--listen: got \"$body\""
ok "mixed with --listen and a [listen.plain] not activated"
grep -q "$unused" "$tmp/tls.err" && fail "[listen.https]'s address was bound too"
c -o /dev/null "http://127.0.0.1:$unused/" 2>/dev/null && fail "[listen.https]'s address answers"
ok "[listen.https]'s own address is not bound"
wait_for "$tmp/tls.log" 'READY=1'
wait_for "$tmp/tls.log" '^connect ' 3
[ "$(grep -c '^connect .* ok$' "$tmp/tls.log")" = 3 ] ||
        fail "READY=1 before every listener took connections"
ok "socket-activated: READY=1 once all 3 listeners take connections"

# SIGHUP with a TLS listener: RELOADING=1, then READY=1 again.
kill -HUP "$pid"
wait_for "$tmp/tls.log" 'READY=1' 2
wait_for "$tmp/tls.err" 'certificates reloaded'
awk '/RELOADING=1/ { r = NR } /READY=1/ { last = NR } END { exit !(r && last > r) }' "$tmp/tls.log" ||
        fail "no RELOADING=1 followed by READY=1"
grep 'RELOADING=1' "$tmp/tls.log" | grep -q 'MONOTONIC_USEC=[0-9]' ||
        fail "RELOADING=1 without MONOTONIC_USEC"
ok "SIGHUP: RELOADING=1 (with MONOTONIC_USEC) then READY=1"
body=$(c --cacert "$certs/ca.pem" --resolve "localhost:$port:127.0.0.1" \
        "https://localhost:$port/hello.txt") || fail "curl https after SIGHUP"
[ "$body" = "hello, systemd" ] || fail "https after SIGHUP: got \"$body\""
ok "https after the reload"
kill -TERM "$pid"
wait_exit "$pid"
[ "$rc" = 0 ] || fail "SIGTERM: exit status $rc"
grep -q 'STOPPING=1' "$tmp/tls.log" || fail "no STOPPING=1"
ok "SIGTERM: STOPPING=1, exit 0"

# ---- 3. sd_notify without socket activation: READY, STATUS, WATCHDOG, STOPPING ----
port=$(free_port)
tls_port=$(free_port)
notify_start n "127.0.0.1:$port" "127.0.0.1:$tls_port"
: >"$tmp/n.err"
# WATCHDOG_PID must be paf's pid: the shell's, which exec keeps.
NOTIFY_SOCKET=$tmp/n.sock WATCHDOG_USEC=400000 \
        sh -c 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"' sh \
        "$PAF_BIN" serve --listen "127.0.0.1:$port" --listen-tls "127.0.0.1:$tls_port" \
        --cert "$certs/a.pem" --key "$certs/a.key" --root "$root" 2>>"$tmp/n.err" &
pid=$!
pids="$pids $pid"
wait_for "$tmp/n.log" 'READY=1'
wait_for "$tmp/n.log" '^connect ' 2
grep -q "^connect 127.0.0.1:$port ok" "$tmp/n.log" || fail "READY=1 before --listen took connections"
grep -q "^connect 127.0.0.1:$tls_port ok" "$tmp/n.log" ||
        fail "READY=1 before --listen-tls took connections"
ok "READY=1 only once every listener takes connections"
grep 'READY=1' "$tmp/n.log" | grep -q 'STATUS=Serving: 0 connections open, 0 requests served' ||
        fail "no STATUS= with READY=1"
ok "STATUS= with READY=1"
c -o /dev/null "http://127.0.0.1:$port/hello.txt" || fail "curl"
c -o /dev/null --cacert "$certs/ca.pem" --resolve "localhost:$tls_port:127.0.0.1" \
        "https://localhost:$tls_port/hello.txt" || fail "curl https"
wait_for "$tmp/n.log" 'STATUS=Serving: 0 connections open, 2 requests served'
ok "STATUS= follows the requests"
n0=$(grep -c 'WATCHDOG=1' "$tmp/n.log" || true)
sleep 1.2
n1=$(grep -c 'WATCHDOG=1' "$tmp/n.log" || true)
[ $((n1 - n0)) -ge 4 ] || fail "WATCHDOG=1: $((n1 - n0)) pings in 1.2 s with WATCHDOG_USEC=400000"
ok "WATCHDOG=1 every 200 ms with WATCHDOG_USEC=400000 ($((n1 - n0)) in 1.2 s)"
[ "$(grep -c 'READY=1' "$tmp/n.log")" = 1 ] || fail "READY=1 more than once"
ok "READY=1 exactly once"
kill -TERM "$pid"
wait_exit "$pid"
[ "$rc" = 0 ] || fail "SIGTERM: exit status $rc"
grep -q 'STOPPING=1' "$tmp/n.log" || fail "no STOPPING=1"
ok "SIGTERM: STOPPING=1, exit 0"

# No watchdog for another process (WATCHDOG_PID not ours).
port=$(free_port)
notify_start w
: >"$tmp/w.err"
NOTIFY_SOCKET=$tmp/w.sock WATCHDOG_USEC=400000 WATCHDOG_PID=1 \
        "$PAF_BIN" serve --listen "127.0.0.1:$port" --root "$root" 2>>"$tmp/w.err" &
pid=$!
pids="$pids $pid"
wait_for "$tmp/w.log" 'READY=1'
sleep 0.5
grep -q 'WATCHDOG=1' "$tmp/w.log" && fail "WATCHDOG=1 sent for WATCHDOG_PID=1"
kill -TERM "$pid"
wait_exit "$pid"
[ "$rc" = 0 ] || fail "SIGTERM: exit status $rc"
ok "no WATCHDOG=1 when WATCHDOG_PID is another process"

# ---- 4. a socket paf cannot use: a clear error naming the fd ----
port=$(free_port)
notify_start bad
NOTIFY_SOCKET=$tmp/bad.sock activate bad --datagram -l "127.0.0.1:$port" --fdname=metrics -- \
        --root "$root"
# A datagram starts the service.
python3 -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", int(sys.argv[1])))' "$port"
wait_exit "$pid"
[ "$rc" = 1 ] || fail "a datagram socket: exit status $rc, not 1"
grep -q '^paf serve: socket-activated fd 3 (FileDescriptorName=metrics): .*datagram' "$tmp/bad.err" ||
        fail "no error naming fd 3, its name and the reason"
grep -q 'READY=1' "$tmp/bad.log" && fail "READY=1 sent although paf failed"
ok "datagram socket: exit $rc, $(grep '^paf serve: ' "$tmp/bad.err")"

# Under ASan/UBSan: every exit above was clean, no report anywhere.
if grep -l 'AddressSanitizer\|LeakSanitizer\|runtime error' "$tmp"/*.err; then
        fail "sanitizer report"
fi
ok "no sanitizer report"

echo "all $n_checks checks passed"
