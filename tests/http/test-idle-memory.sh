#!/bin/sh
# tests/http/test-idle-memory.sh — idle keep-alive connections are cheap: `paf serve` holding a few thousand of them (each after one request, then never-used ones) grows its RSS by at most 1 KiB per connection (measured from /proc/PID/status), and answers a normal client meanwhile, on a keep-alive connection and on new ones.
#
# The connections are held by bench/idle-hold.py, which bench/idle.sh runs at
# RLIMIT_NOFILE's scale against nginx too. Under AddressSanitizer (whose
# allocator keeps freed memory in quarantine and pads every block) the RSS
# says nothing about paf's: the connections are still held and the client
# still answered, but the bound is not checked.
set -eu
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
hold=$PAF_TEST_SRCDIR/bench/idle-hold.py
max_bytes=1024

# paf serve, stopped at exit (a test that reaped it clears pid).
pid=
cleanup_extra() {
        if [ -n "$pid" ]; then
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
        fi
}
# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/serve.err $tmp/hold.err"

# Room for the connections, in the server and in the client (each holds
# one fd per connection): up to the hard limit.
# shellcheck disable=SC3045 # dash and bash both have ulimit -n
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
want=3200
[ "$hard" -lt "$want" ] && want=$hard
# shellcheck disable=SC3045
ulimit -n "$want" 2>/dev/null || true
# shellcheck disable=SC3045
nofile=$(ulimit -n)
count=3000
[ $((nofile - 100)) -lt $count ] && count=$((nofile - 100))
[ "$count" -ge 1000 ] || { echo "RLIMIT_NOFILE is $nofile: too few fds for 1000 connections; skipping"; exit 77; }

mkdir "$tmp/www"
printf 'hello, idle world\n' >"$tmp/www/index.html"
# Accepting stops at [http] max-connections (1024 by default); the timeouts
# must not close what is held while it is measured.
printf '[http]\nmax-connections = %d\nheader-timeout = 60\nidle-timeout = 60\n' $((count + 100)) \
        >"$tmp/paf.conf"
# serve: a new paf serve for each hold, so that none reuses what the one
# before freed; sets $pid, $addr and $asan.
serve() {
        : >"$tmp/serve.err"
        "$PAF_BIN" serve --quiet --workers 1 --config "$tmp/paf.conf" --listen 127.0.0.1:0 \
                --root "$tmp/www" 2>>"$tmp/serve.err" &
        pid=$!
        i=0
        while ! grep -q 'listening on http://' "$tmp/serve.err"; do
                kill -0 "$pid" 2>/dev/null || fail "paf serve exited at start"
                i=$((i + 1))
                [ $i -lt 400 ] || fail "paf serve did not start"
                sleep 0.05
        done
        addr=$(sed -n 's|.*listening on http://||p' "$tmp/serve.err" | head -n 1)
        asan=false
        if grep -q 'libasan' "/proc/$pid/maps"; then asan=true; fi
}

stop() {
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
        pid=
}

# hold MODE [--fresh]: prints what idle-hold.py measured; sets $bytes.
hold() {
        mode=$1
        shift
        out=$(python3 "$hold" --addr "$addr" --pid "$pid" --count "$count" --target /index.html \
                --probes 50 --settle 0.3 --timeout 30 "$@" 2>"$tmp/hold.err") ||
                fail "$mode: holding $count connections failed"
        echo "$mode: $out"
        bytes=$(echo "$out" | sed -n 's/.*bytes_per_conn=\([-0-9]*\).*/\1/p')
        [ -n "$bytes" ] || fail "$mode: no figure in \"$out\""
}

serve
hold "after one request"
stop
ok "$count connections held after one request each, and a normal client answered meanwhile"
if $asan; then
        echo "under AddressSanitizer: $bytes bytes per connection, not checked"
else
        [ "$bytes" -le $max_bytes ] ||
                fail "an idle keep-alive connection costs $bytes bytes of RSS, more than $max_bytes"
        ok "an idle keep-alive connection costs $bytes bytes of RSS (at most $max_bytes)"
fi

serve
hold "never used" --fresh
stop
ok "$count never-used connections held, and a normal client answered meanwhile"
if $asan; then
        echo "under AddressSanitizer: $bytes bytes per connection, not checked"
else
        [ "$bytes" -le $max_bytes ] ||
                fail "a never-used connection costs $bytes bytes of RSS, more than $max_bytes"
        ok "a never-used connection costs $bytes bytes of RSS (at most $max_bytes)"
fi

if $asan; then
        echo "ok: idle connections held and the server still answers (RSS not checked under ASan)"
else
        echo "ok: idle connections cost at most $max_bytes bytes each, and the server still answers"
fi
