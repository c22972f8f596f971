# tests/http/lib.sh — sourced by the http script tests: start and stop echo-server.
# Sets $tmp (removed at exit) and, after start_server, $server_pid and the
# addresses it printed in $server_addrs (one per line).

fail() {
        echo "FAIL: $*" >&2
        if [ -n "${server_pid:-}" ] && [ -s "$tmp/server.err" ]; then
                echo "--- echo-server stderr (last 30 lines):" >&2
                tail -n 30 "$tmp/server.err" >&2
        fi
        exit 1
}

tmp=$(mktemp -d)
server_pid=
# The server is stopped by its pid, never by name; a test that already reaped
# it clears server_pid.
cleanup() {
        if [ -n "$server_pid" ]; then
                kill "$server_pid" 2>/dev/null || true
                wait "$server_pid" 2>/dev/null || true
        fi
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# Plugins from the build tree only: the test must not read the developer's.
PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
export PAF_PLUGIN_PATH
# No __pycache__ in the source tree.
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
# 200 slowloris connections and then some, for the server and the clients.
# shellcheck disable=SC3045 # dash and bash both have ulimit -n
ulimit -n 4096 2>/dev/null || true

# start_server N ARGS…: run echo-server with ARGS and wait (at most 20 s, it
# may run under valgrind) for its N "listening on" lines.
start_server() {
        want=$1
        shift
        # Created here: the background job's redirections may come late.
        : >"$tmp/server.out"
        : >"$tmp/server.err"
        "$PAF_TEST_ECHO_SERVER" "$@" >"$tmp/server.out" 2>"$tmp/server.err" &
        server_pid=$!
        i=0
        while [ "$(grep -c '^listening on ' "$tmp/server.out")" -lt "$want" ]; do
                kill -0 "$server_pid" 2>/dev/null || {
                        cat "$tmp/server.err" >&2
                        server_pid=
                        fail "echo-server exited at start"
                }
                i=$((i + 1))
                [ $i -le 400 ] || fail "echo-server did not print $want listening lines in 20 s"
                sleep 0.05
        done
        # shellcheck disable=SC2034 # read by the tests
        server_addrs=$(sed -n 's/^listening on //p' "$tmp/server.out")
}

# stop_server: SIGTERM, then wait at most 20 s; fails unless it exits 0.
stop_server() {
        kill -TERM "$server_pid"
        wait_server 400
        [ "$server_rc" = 0 ] || fail "echo-server exited with status $server_rc"
}

# wait_server TICKS: wait up to TICKS × 50 ms for the server to exit; sets
# $server_rc to its exit status (from wait, i.e. waitpid).
wait_server() {
        i=0
        while kill -0 "$server_pid" 2>/dev/null; do
                # A zombie still answers kill -0: stop polling once it is one.
                state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$server_pid/status" 2>/dev/null || true)
                [ "$state" = Z ] && break
                i=$((i + 1))
                [ $i -le "$1" ] || fail "echo-server did not exit within $(($1 / 20)) s"
                sleep 0.05
        done
        server_rc=0
        wait "$server_pid" || server_rc=$?
        server_pid=
}

# The server's memory, in KiB: status_kb PID VmRSS|VmHWM.
status_kb() {
        sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"
}
