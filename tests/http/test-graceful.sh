#!/bin/sh
# Clients that vanish mid-request (every abort path of echo-server), then a
# graceful stop: SIGTERM while 50 slow responses are in flight; all of them
# complete, new connections are refused, idle ones closed, and the server
# exits 0 (under ASan: without a leak).
set -eu
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http/lib.sh"
here=$PAF_TEST_SRCDIR/tests/http

start_server 1 --listen 127.0.0.1:0
addr=$server_addrs
echo "server $server_pid on $addr"

# graceful.py sends SIGTERM itself once the 50 requests are in flight.
python3 "$here/graceful.py" "$addr" "$server_pid" || fail "graceful.py"
wait_server 200
echo "server exit status: $server_rc"
[ "$server_rc" = 0 ] || fail "echo-server exited with status $server_rc after SIGTERM"
grep -q 'stopped after' "$tmp/server.err" || fail "the server never reported done"
for route in stream echo sink slow; do
        grep -q "^echo-server: /$route aborted: " "$tmp/server.err" ||
                fail "/$route: the abort handler never ran"
done
echo "ok: graceful stop with 50 requests in flight"
