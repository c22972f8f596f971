#!/bin/sh
# Hostile input: a corpus of malformed and smuggling requests, each refused
# with a 4xx/505 and its connection closed, then 200 slowloris connections
# closed by the header timeout; a well-behaved client is answered throughout.
set -eu
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http/lib.sh"
here=$PAF_TEST_SRCDIR/tests/http

# Small limits so that 413 and the slowloris timeout come quickly.
printf '[http]\nmax-body = 4096\nheader-timeout = 2\n' >"$tmp/hostile.conf"
start_server 1 --config "$tmp/hostile.conf" --listen 127.0.0.1:0
addr=$server_addrs
echo "server $server_pid on $addr"

python3 "$here/hostile.py" "$addr" corpus || fail "hostile corpus"
kill -0 "$server_pid" || fail "echo-server died"
# The error handler saw each refusal (one line each).
n_err=$(grep -cE '^echo-server: [^ ]+: (400|413|414|431|505) ' "$tmp/server.err" || true)
echo "error handler lines for refused requests: $n_err"
# 3 rounds of at least 30 refusals.
[ "$n_err" -ge 90 ] || fail "expected at least 90 error-handler lines, got $n_err"

python3 "$here/hostile.py" "$addr" slowloris || fail "slowloris"
kill -0 "$server_pid" || fail "echo-server died"

out=$(curl -sS --max-time 5 "http://$addr/hello") || fail "GET /hello after the attacks"
[ "$out" = hello ] || fail "GET /hello after the attacks gave '$out'"
stop_server
echo "ok: hostile corpus, slowloris, clean exit"
