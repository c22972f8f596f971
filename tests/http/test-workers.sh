#!/bin/sh
# tests/http/test-workers.sh — `paf serve --workers 2`: both workers answer (STATUS= and the exit line count each one's requests), [http] max-connections is the whole server's, shared out (a worker at its share leaves connections to the other), SIGHUP reloads the certificate in every worker, SIGTERM drains both, socket-activated sockets are shared, [http] workers and --workers' errors.
#
# [http] max-connections pins the connections to workers: with N workers and
# max-connections = N, each takes exactly one, so the Nth connection held
# open is on the last worker free.
set -eu
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
fail_logs="$tmp/*.err $tmp/*.log $tmp/*.out"

c() { curl -sS --max-time 10 "$@"; }


# wait_for FILE PATTERN [N]: at most 20 s for N (default 1) lines matching PATTERN (grep -E).
wait_for() {
        i=0
        while n=$(grep -cE -- "$2" "$1" 2>/dev/null || true) && [ "${n:-0}" -lt "${3:-1}" ]; do
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

# serve NAME ARGS…: paf serve ARGS under a notify socket logging to
# $tmp/NAME.log, stderr in $tmp/NAME.err; returns at READY=1. Sets pid.
serve() {
        name=$1
        shift
        : >"$tmp/$name.log"
        : >"$tmp/$name.err"
        python3 "$here/systemd-notify.py" "$tmp/$name.sock" "$tmp/$name.log" &
        pids="$pids $!"
        wait_for "$tmp/$name.log" '^bound$'
        NOTIFY_SOCKET=$tmp/$name.sock "$PAF_BIN" serve --root "$root" "$@" 2>>"$tmp/$name.err" &
        pid=$!
        pids="$pids $pid"
        i=0
        until grep -q 'READY=1' "$tmp/$name.log"; do
                kill -0 "$pid" 2>/dev/null || fail "paf serve $*: exited at start: $(head -n 3 "$tmp/$name.err")"
                i=$((i + 1))
                [ $i -lt 400 ] || fail "paf serve $*: no READY=1 in 20 s"
                sleep 0.05
        done
}

# hold NAME ADDR N [OPTIONS…]: workers.py hold in the background, until release NAME.
hold() {
        hname=$1
        shift
        rm -f "$tmp/$hname.quit"
        haddr=$1 hn=$2
        shift 2
        python3 "$here/workers.py" hold "$haddr" "$hn" "$tmp/$hname.quit" "$@" >"$tmp/$hname.out" 2>&1 &
        holder=$!
        pids="$pids $holder"
}
# wait_held NAME N: until workers.py says its N connections are held.
wait_held() {
        i=0
        until grep -q "^held $2\$" "$tmp/$1.out" 2>/dev/null; do
                kill -0 "$holder" 2>/dev/null || fail "workers.py hold: $(cat "$tmp/$1.out")"
                i=$((i + 1))
                [ $i -lt 400 ] || fail "workers.py hold: $2 connections not held in 20 s"
                sleep 0.05
        done
}
release() {
        : >"$tmp/$1.quit"
        wait "$holder" || fail "workers.py hold: $(cat "$tmp/$1.out")"
}

# term NAME: SIGTERM; exit 0 within 20 s.
term() {
        kill -TERM "$pid"
        wait_exit "$pid"
        [ "$rc" = 0 ] || fail "$1: SIGTERM: exit status $rc"
}

certs=$tmp/certs
mkdir "$certs"
https_ca "$certs" ca || fail "certtool: CA"
https_cert "$certs" a ca localhost localhost 127.0.0.1 || fail "certtool: a"
https_cert "$certs" b ca localhost localhost 127.0.0.1 || fail "certtool: b"
root=$tmp/root
mkdir "$root"
printf 'hello, workers\n' >"$root/index.html"
head -c 8388608 /dev/urandom >"$root/big.bin"

# ---- 1. both workers answer; max-connections is the server's, shared out ----
port=$(free_port)
printf '[http]\nmax-connections = 4\n' >"$tmp/four.conf"
serve one --workers 2 --config "$tmp/four.conf" --listen "127.0.0.1:$port"
[ "$(grep -c 'listening on' "$tmp/one.err")" = 1 ] || fail "not one \"listening on\" line for 2 workers"
hold h1 "127.0.0.1:$port" 4
wait_held h1 4
# The counts come from each worker once a second.
wait_for "$tmp/one.log" 'STATUS=Serving: 4 connections open, 4 requests served \(per worker: 2, 2\)'
ok "4 connections, max-connections = 4 over 2 workers: each worker holds 2 and answered 2 (STATUS=)"
# Its request waits in the backlog with it, and is answered (to nobody) later.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port/" || true)
[ "$code" = 000 ] || fail "a fifth connection was answered ($code) while both workers were at their share"
ok "a fifth connection waits in the backlog: max-connections counts the whole server"
release h1
body=$(c "http://127.0.0.1:$port/") || fail "curl once the 4 connections closed"
[ "$body" = "hello, workers" ] || fail "got \"$body\""
ok "then it is served"
term one
grep -qE '^paf serve: 6 requests served \(per worker: [2-4], [2-4]\)$' "$tmp/one.err" ||
        fail "no exit line with each worker's requests"
ok "exit 0; $(grep 'requests served' "$tmp/one.err")"

# ---- 1b. connections that come one after another are spread too ----
# EPOLLEXCLUSIVE wakes the first idle loop of the socket's wait queue: with
# no limit to push connections off it, one worker used to take every
# connection that arrived while it was idle (20 in a row: 20 and 0).
port=$(free_port)
serve seq --workers 3 --listen "127.0.0.1:$port"
for i in $(seq 30); do
        body=$(c "http://127.0.0.1:$port/") || fail "curl $i of 30"
        [ "$body" = "hello, workers" ] || fail "curl $i: got \"$body\""
done
term seq
line=$(grep 'requests served' "$tmp/seq.err") || fail "no exit line"
echo "$line" | grep -qE '^paf serve: 30 requests served \(per worker: ([5-9]|[1-2][0-9]), ([5-9]|[1-2][0-9]), ([5-9]|[1-2][0-9])\)$' ||
        fail "30 connections one after another were not spread over the 3 workers: $line"
ok "30 connections one after another, 3 workers: $line"

# ---- 2. SIGHUP reloads the certificate in every worker ----
port=$(free_port)
printf '[http]\nmax-connections = 2\n' >"$tmp/two.conf"
cp "$certs/a.pem" "$tmp/live.pem"
cp "$certs/a.key" "$tmp/live.key"
serve tls --workers 2 --config "$tmp/two.conf" --listen-tls "127.0.0.1:$port" \
        --cert "$tmp/live.pem" --key "$tmp/live.key"
hold h2 "127.0.0.1:$port" 2 --ca "$certs/ca.pem" --expect "$certs/a.pem"
wait_held h2 2
wait_for "$tmp/tls.log" 'STATUS=Serving: 2 connections open, 2 requests served \(per worker: 1, 1\)'
release h2
ok "HTTPS: a connection to each worker, both with certificate a"
cp "$certs/b.pem" "$tmp/live.pem"
cp "$certs/b.key" "$tmp/live.key"
kill -HUP "$pid"
wait_for "$tmp/tls.err" 'certificates reloaded'
wait_for "$tmp/tls.log" 'READY=1' 2
awk '/RELOADING=1/ { r = NR } /READY=1/ { last = NR } END { exit !(r && last > r) }' "$tmp/tls.log" ||
        fail "no RELOADING=1 followed by READY=1"
[ "$(grep -c 'certificates reloaded' "$tmp/tls.err")" = 1 ] || fail "not one reload message"
hold h3 "127.0.0.1:$port" 2 --ca "$certs/ca.pem" --expect "$certs/b.pem"
wait_held h3 2
wait_for "$tmp/tls.log" 'STATUS=Serving: 2 connections open, 4 requests served \(per worker: 2, 2\)'
release h3
ok "SIGHUP: RELOADING=1, one \"certificates reloaded\", READY=1; then a new connection to each worker gets certificate b"
term tls
ok "exit 0"

# ---- 3. SIGTERM drains both workers ([http] workers) ----
port=$(free_port)
printf '[http]\nmax-connections = 2\nworkers = 2\n' >"$tmp/drain.conf"
serve drain --config "$tmp/drain.conf" --listen "127.0.0.1:$port"
python3 "$here/workers.py" drain "127.0.0.1:$port" 2 "$pid" "$root/big.bin" >"$tmp/drain.out" 2>&1 ||
        fail "workers.py drain: $(cat "$tmp/drain.out")"
wait_exit "$pid"
[ "$rc" = 0 ] || fail "drain: exit status $rc"
grep -q 'STOPPING=1' "$tmp/drain.log" || fail "no STOPPING=1"
grep -qE '^paf serve: 2 requests served \(per worker: 1, 1\)$' "$tmp/drain.err" ||
        fail "the two downloads were not one per worker"
ok "SIGTERM with an 8 MiB download in flight on each worker: new connections refused, both complete byte-exact, STOPPING=1, exit 0"

# ---- 4. a socket-activated socket is shared by the workers ----
sa=$(command -v systemd-socket-activate 2>/dev/null || true)
if [ -n "$sa" ]; then
        port=$(free_port)
        : >"$tmp/act.log"
        python3 "$here/systemd-notify.py" "$tmp/act.sock" "$tmp/act.log" &
        pids="$pids $!"
        wait_for "$tmp/act.log" '^bound$'
        NOTIFY_SOCKET=$tmp/act.sock "$sa" -E PAF_PLUGIN_PATH -E ASAN_OPTIONS -E UBSAN_OPTIONS \
                -E NOTIFY_SOCKET -l "127.0.0.1:$port" "$PAF_BIN" serve --workers 2 \
                --config "$tmp/two.conf" --root "$root" 2>>"$tmp/act.err" &
        pid=$!
        pids="$pids $pid"
        wait_for "$tmp/act.err" '^Listening on'
        hold h4 "127.0.0.1:$port" 2
        wait_held h4 2
        wait_for "$tmp/act.log" 'STATUS=Serving: 2 connections open, 2 requests served \(per worker: 1, 1\)'
        release h4
        term act
        ok "socket activation: both workers accept on the passed socket"
fi

# ---- 5. what --workers takes ----
rc=0
"$PAF_BIN" serve --workers 2x --listen "127.0.0.1:$port" 2>"$tmp/bad.err" || rc=$?
[ "$rc" = 2 ] || fail "--workers 2x: exit $rc, not 2"
grep -q -- '--workers "2x": not a number from 0 to 1024' "$tmp/bad.err" || fail "--workers 2x: $(cat "$tmp/bad.err")"
printf '[http]\nworkers = 2000\n' >"$tmp/big.conf"
rc=0
"$PAF_BIN" serve --config "$tmp/big.conf" --listen "127.0.0.1:$port" 2>"$tmp/bad.err" || rc=$?
[ "$rc" != 0 ] || fail "[http] workers = 2000 accepted"
grep -q 'workers' "$tmp/bad.err" || fail "[http] workers = 2000: $(cat "$tmp/bad.err")"
ok "--workers 2x: usage error; [http] workers = 2000: $(head -n 1 "$tmp/bad.err")"

# Under ASan/UBSan: every exit above was clean.
if grep -l 'AddressSanitizer\|LeakSanitizer\|ThreadSanitizer\|runtime error' "$tmp"/*.err; then
        fail "sanitizer report"
fi
ok "no sanitizer report"

echo "all $n_checks checks passed"
