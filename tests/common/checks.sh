# tests/common/checks.sh — sourced by the script tests: a private $tmp, removed at
# exit; what the test started, stopped by pid at exit; numbered checks (ok); fail,
# which shows the logs that explain a failure and exits 1; free_port.
#
#   pids       the pids to stop at exit, space-separated (a process stopped with
#              SIGSTOP is woken first, so that it can die)
#   fail_logs  files whose last 20 lines fail() shows, space-separated; patterns
#              are expanded when it runs ("$tmp/*.err")
#   cleanup_extra
#              a function the test may define: run first at exit

tmp=$(mktemp -d)
pids=
fail_logs=
checks_cleanup() {
        if command -v cleanup_extra >/dev/null 2>&1; then
                cleanup_extra || true
        fi
        for p in $pids; do
                kill -CONT "$p" 2>/dev/null || true
                kill "$p" 2>/dev/null || true
        done
        for p in $pids; do
                wait "$p" 2>/dev/null || true
        done
        rm -rf "$tmp"
}
trap checks_cleanup EXIT
trap 'exit 1' INT TERM HUP

n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok $n_checks: $*"
}
fail() {
        echo "FAIL: $*" >&2
        for f in $fail_logs; do
                [ -s "$f" ] && { echo "--- $f (last 20 lines)" >&2; tail -n 20 "$f" >&2; }
        done
        exit 1
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
        /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
