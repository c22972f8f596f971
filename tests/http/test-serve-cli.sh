#!/bin/sh
# tests/http/test-serve-cli.sh — `paf serve`'s command line and logs, with curl: PORT as python's http.server takes it (on 127.0.0.1, port 0 too), -l/-r/-q, --listen with a host name (localhost: 127.0.0.1 and ::1, each announced, the same port 0; ::1 skipped without IPv6; nothing to bind; unknown names), --access-log and --error-log reopened on SIGUSR1 after a logrotate rename with --workers 2 (each worker writing to the new file), a reopen that fails, a unix-socket client logged by its pid and uid, and the errors (bad PORT, port in use, unwritable logs, --quiet with --access-log).
#
# Run by meson through run-test.sh --netns: a private network namespace with
# only loopback and tests/hosts as /etc/hosts, where localhost is 127.0.0.1
# and ::1. Without one (not root), the parts that need it are skipped.
set -eu
for tool in curl python3; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/*.err $tmp/*.log $tmp/*.log.*"

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

# serve NAME N ARGS…: paf serve ARGS in the background, stderr in $tmp/NAME.err;
# waits for its N "listening on" lines. Sets $pid.
serve() {
        name=$1 want=$2
        shift 2
        : >"$tmp/$name.err"
        "$PAF_BIN" serve "$@" 2>>"$tmp/$name.err" &
        pid=$!
        pids="$pids $pid"
        i=0
        while n=$(grep -c 'listening on' "$tmp/$name.err" || true) && [ "${n:-0}" -lt "$want" ]; do
                kill -0 "$pid" 2>/dev/null || fail "$name: paf serve exited at start"
                i=$((i + 1))
                [ $i -lt 400 ] || fail "$name: paf serve did not start in 20 s"
                sleep 0.05
        done
}

# stop PID: SIGTERM, then at most 20 s for exit 0.
stop() {
        kill -TERM "$1"
        rc=0
        wait "$1" || rc=$?
        [ $rc = 0 ] || fail "paf serve exited $rc after SIGTERM"
}

# run ARGS…: paf serve ARGS, bounded; stderr in $tmp/run.err, status in $rc.
run() {
        rc=0
        timeout 20 "$PAF_BIN" serve "$@" >"$tmp/run.out" 2>"$tmp/run.err" </dev/null || rc=$?
        [ $rc != 124 ] || fail "paf serve $*: hung"
}
has() { grep -qF -- "$1" "$tmp/run.err" || fail "$2: no '$1' in: $(cat "$tmp/run.err")"; }

# Two connections held open at once, one request each (GET PATH?w=A, then
# ?w=B), each answer read whole before the next connection opens. With
# [http] max-connections = 2 over 2 workers, each worker takes one: the two
# requests are answered by different workers.
cat >"$tmp/pair.py" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
held = []
for w in sys.argv[3:]:
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(("GET %s?w=%s HTTP/1.1\r\nHost: x\r\n\r\n" % (sys.argv[2], w)).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("closed before the head of ?w=" + w)
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("short body for ?w=" + w)
        body += chunk
    if not head.startswith(b"HTTP/1.1 200"):
        sys.exit("?w=%s: %r" % (w, head.split(b"\r\n")[0]))
    held.append(s)
for s in held:
    s.close()
EOF

root=$tmp/root
mkdir -p "$root"
printf 'hello, cli\n' >"$root/hello.txt"

# Whether this is run-test.sh's namespace: its hosts file is in place.
private=no
grep -q 'dualstack\.paf\.test' /etc/hosts 2>/dev/null && private=yes
[ $private = yes ] || echo "note: no private network namespace (tests/hosts not in place): name tests partly skipped"

# ---- PORT: python's http.server form, but on 127.0.0.1 ----
# From the root itself: the current directory is served by default.
(cd "$root" && exec "$PAF_BIN" serve 0 2>"$tmp/port.err") &
pid=$!
pids="$pids $pid"
wait_for "$tmp/port.err" 'listening on'
[ "$(grep -c 'listening on' "$tmp/port.err")" = 1 ] || fail "PORT: not one listener: $(cat "$tmp/port.err")"
addr=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/port.err")
case $addr in
127.0.0.1:0 | 127.0.0.1:) fail "PORT 0: no real port: $addr" ;;
127.0.0.1:[0-9]*) ;;
*) fail "PORT 0 listens on '$addr', not 127.0.0.1" ;;
esac
[ "$(c "http://$addr/hello.txt")" = "hello, cli" ] || fail "PORT: GET /hello.txt"
wait_for "$tmp/port.err" '"GET /hello.txt HTTP/1.1" 200 '
stop "$pid"
ok "paf serve 0: one listener, http://$addr (loopback, a free port), the current directory served"

# PORT adds to the other listeners; short options.
serve short 2 -r "$root" -q -l "$tmp/short.sock" 0
addr=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/short.err")
case $addr in 127.0.0.1:[1-9]*) ;; *) fail "-l SOCK PORT: tcp listener '$addr'" ;; esac
grep -q 'listening on http+unix://' "$tmp/short.err" || fail "-l SOCK PORT: no unix listener"
[ "$(c "http://$addr/hello.txt")" = "hello, cli" ] || fail "-r: GET over tcp"
[ "$(c --unix-socket "$tmp/short.sock" http://x/hello.txt)" = "hello, cli" ] || fail "-r: GET over unix"
stop "$pid"
! grep -q '"GET ' "$tmp/short.err" || fail "-q: an access log line: $(cat "$tmp/short.err")"
ok "-l SOCK -r DIR -q PORT: both listeners, DIR served, no access log"

# The port taken: the message names PORT, the address and the reason.
port=${addr#127.0.0.1:}
serve busy 1 -r "$root" -q "$port"
run -r "$root" "$port"
[ $rc = 1 ] || fail "PORT in use: exit $rc"
has "paf serve: PORT \"$port\": 127.0.0.1:$port: Address already in use" "PORT in use"
ok "PORT in use: exit 1: $(head -n 1 "$tmp/run.err")"
stop "$pid"

for bad in abc 70000 8x; do
        run -r "$root" "$bad"
        [ $rc = 2 ] || fail "PORT $bad: exit $rc"
        has "paf serve: PORT \"$bad\": not a port number (0 to 65535)" "PORT $bad"
        has 'Try "paf serve --help".' "PORT $bad"
done
run -r "$root" 8080 8081
[ $rc = 2 ] || fail "two PORTs: exit $rc"
has 'paf serve: unexpected argument "8081"' "two PORTs"
ok "a bad PORT (abc, 70000, 8x) and a second one: exit 2 with the reason"

# ---- --listen with a host name ----
v6=no
if getent ahosts localhost 2>/dev/null | grep -q '^::1 ' &&
        python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
        v6=yes
fi
serve name "$([ $v6 = yes ] && echo 2 || echo 1)" -r "$root" -l localhost:0
grep -q 'listening on http://127\.0\.0\.1:[1-9]' "$tmp/name.err" || fail "localhost: no 127.0.0.1 listener"
port=$(sed -n 's|^paf serve: listening on http://127\.0\.0\.1:||p' "$tmp/name.err")
[ "$(c "http://127.0.0.1:$port/hello.txt")" = "hello, cli" ] || fail "localhost: GET over 127.0.0.1"
if [ $v6 = yes ]; then
        grep -qF "listening on http://[::1]:$port" "$tmp/name.err" ||
                fail "localhost: no [::1]:$port listener (port 0: the same port on each)"
        [ "$(c -g "http://[::1]:$port/hello.txt")" = "hello, cli" ] || fail "localhost: GET over ::1"
        wait_for "$tmp/name.err" '^::1 - - .*"GET /hello.txt HTTP/1.1" 200 '
fi
wait_for "$tmp/name.err" '^127\.0\.0\.1 - - .*"GET /hello.txt HTTP/1.1" 200 '
[ "$(grep -c 'listening on' "$tmp/name.err")" = "$([ $v6 = yes ] && echo 2 || echo 1)" ] ||
        fail "localhost: listeners: $(grep 'listening on' "$tmp/name.err")"
stop "$pid"
if [ $v6 = yes ]; then
        ok "--listen localhost:0: http://127.0.0.1:$port and http://[::1]:$port, both announced and served"
else
        echo "note: localhost is not ::1 here (or no IPv6 loopback): the ::1 part is skipped"
        ok "--listen localhost:0: http://127.0.0.1:$port announced and served"
fi

if [ $private = yes ]; then
        # In a namespace of our own (nested), without IPv6: ::1 is skipped,
        # and a name that is only ::1 has nothing to bind.
        if unshare -n sh -c 'ip link set lo up && sysctl -qw net.ipv6.conf.lo.disable_ipv6=1' 2>/dev/null; then
                # shellcheck disable=SC2016 # expanded by the inner shell
                unshare -n sh -c '
                        ip link set lo up
                        sysctl -qw net.ipv6.conf.lo.disable_ipv6=1
                        "$1" serve -q -r "$2" -l localhost:0 2>"$3/nov6.err" &
                        pid=$!
                        i=0
                        until grep -q "listening on" "$3/nov6.err" || [ $i -ge 400 ]; do
                                sleep 0.05
                                i=$((i + 1))
                        done
                        port=$(sed -n "s|^paf serve: listening on http://127\.0\.0\.1:||p" "$3/nov6.err")
                        curl -sS --max-time 10 "http://127.0.0.1:$port/hello.txt" >"$3/nov6.out" || true
                        kill -TERM $pid
                        wait $pid
                        echo "exit $?" >>"$3/nov6.out"
                        timeout 20 "$1" serve -r "$2" -l v6only.paf.test:8080 2>"$3/v6only.err"
                        echo "exit $?" >"$3/v6only.out"' sh "$PAF_BIN" "$root" "$tmp"
                if ! grep -qF 'paf serve: --listen "localhost:0": [::1]:' "$tmp/nov6.err" ||
                        ! grep -q ': skipped$' "$tmp/nov6.err"; then
                        fail "no IPv6: ::1 not skipped: $(cat "$tmp/nov6.err")"
                fi
                [ "$(cat "$tmp/nov6.out")" = "hello, cli
exit 0" ] || fail "no IPv6: 127.0.0.1 not served: $(cat "$tmp/nov6.out" "$tmp/nov6.err")"
                ok "--listen localhost:0 without IPv6: $(grep skipped "$tmp/nov6.err"); 127.0.0.1 served"
                [ "$(cat "$tmp/v6only.out")" = "exit 1" ] || fail "v6only.paf.test without IPv6: $(cat "$tmp/v6only.out")"
                grep -qF 'paf serve: --listen "v6only.paf.test:8080": nothing to bind: "v6only.paf.test" resolves to no address this machine has' \
                        "$tmp/v6only.err" || fail "nothing to bind: $(cat "$tmp/v6only.err")"
                ok "a name with only ::1, without IPv6: exit 1: $(tail -n 1 "$tmp/v6only.err")"
        else
                echo "note: no nested network namespace without IPv6: the skip and nothing-to-bind parts are skipped"
        fi

        # No DNS server in the namespace: the lookup fails here, never
        # leaves the machine.
        run -r "$root" -l nosuch.invalid:8080
        [ $rc = 1 ] || fail "unresolvable name: exit $rc"
        grep -qE '^paf serve: --listen "nosuch\.invalid:8080": (unknown host "nosuch\.invalid" \(|cannot resolve "nosuch\.invalid": )' \
                "$tmp/run.err" || fail "unresolvable name: $(cat "$tmp/run.err")"
        ok "an unresolvable name: exit 1: $(cat "$tmp/run.err")"
fi

# ---- --access-log, --error-log, SIGUSR1, --workers 2, unix peers ----
printf '[http]\nmax-connections = 2\n' >"$tmp/two.conf"
cd "$tmp"
serve logs 2 -r "$root" -c "$tmp/two.conf" --workers 2 -l 127.0.0.1:0 -l "$tmp/logs.sock" \
        --access-log access.log --error-log error.log
addr=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/logs.err")
wait_for "$tmp/logs.err" '^paf serve: messages go to --error-log "error.log" from now on$'
# Once it serves: the listening lines, again, in the error log.
wait_for error.log 'listening on' 2
ok "--error-log: stderr says so, and the log starts with the listening lines: $(grep -c 'listening on' error.log)"

python3 "$tmp/pair.py" "$addr" /hello.txt 1 2 || fail "two connections before the rotation"
# A unix client: its pid and uid, as SO_PEERCRED tells them.
curl -sS --max-time 10 -o /dev/null --unix-socket "$tmp/logs.sock" http://x/hello.txt?w=unix &
curl_pid=$!
wait $curl_pid || fail "curl over the unix socket"
wait_for access.log '"GET /hello.txt\?w=unix '
grep -qE "^unix:pid=$curl_pid,uid=$(id -u) - - \[.*\] \"GET /hello.txt\?w=unix HTTP/1.1\" 200 11 " access.log ||
        fail "the unix client is not logged as unix:pid=$curl_pid,uid=$(id -u): $(grep 'w=unix' access.log)"
ok "a unix-socket client is logged by its pid ($curl_pid, curl's) and uid: $(grep 'w=unix' access.log | cut -d' ' -f1)"
wait_for access.log '"GET /hello.txt\?w=[12] ' 2
! grep -q '"GET /' "$tmp/logs.err" error.log || fail "access lines outside --access-log"
ok "--access-log: every line in the file, none on stderr or in the error log"

# logrotate: rename, then SIGUSR1.
mv access.log access.log.1
mv error.log error.log.1
before=$(wc -l <access.log.1)
kill -USR1 "$pid"
wait_for error.log '^paf serve: SIGUSR1: reopened --access-log "access.log" and --error-log "error.log"$'
python3 "$tmp/pair.py" "$addr" /hello.txt 3 4 || fail "two connections after the rotation"
[ "$(c "http://$addr/hello.txt?w=5")" = "hello, cli" ] || fail "GET after the rotation"
wait_for access.log '"GET /hello.txt\?w=[345] ' 3
[ "$(wc -l <access.log.1)" = "$before" ] || fail "lines went on to the renamed access log"
[ "$(wc -l <access.log)" = 3 ] || fail "the new access log: $(cat access.log)"
! grep -q 'w=[345]' access.log.1 || fail "the renamed access log got a new request"
ok "SIGUSR1 after renaming: the 3 new requests, on both workers, in the new access log; the old one kept its $before lines"

# A reopen that fails keeps the file it had.
mv access.log access.log.2
mkdir access.log
kill -USR1 "$pid"
wait_for error.log 'SIGUSR1: --access-log "access.log": Is a directory; still writing to the file it had open'
[ "$(c "http://$addr/hello.txt?w=6")" = "hello, cli" ] || fail "GET after a failed reopen"
wait_for access.log.2 '"GET /hello.txt\?w=6 '
rmdir access.log
ok "a reopen that fails: $(grep -o 'SIGUSR1: --access-log.*' error.log); lines go on to the old file"

stop "$pid"
grep -qE '^paf serve: 7 requests served \(per worker: [1-9][0-9]*, [1-9][0-9]*\)$' error.log ||
        fail "the new error log lacks the counts of both workers: $(cat error.log)"
! grep -q 'requests served' error.log.1 || fail "the renamed error log got the stop line"
ok "the stop line in the new error log: $(grep 'requests served' error.log)"
cd - >/dev/null

# SIGUSR1 without log files: said, not fatal (its default action ends the process).
serve nolog 1 -r "$root" -q -l 127.0.0.1:0
kill -USR1 "$pid"
wait_for "$tmp/nolog.err" 'SIGUSR1: no --access-log or --error-log: nothing to reopen'
addr=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/nolog.err")
[ "$(c "http://$addr/hello.txt")" = "hello, cli" ] || fail "serving after SIGUSR1 without logs"
stop "$pid"
ok "SIGUSR1 without --access-log or --error-log: said, and serving goes on"

# ---- the errors ----
for opt in --access-log --error-log; do
        run -r "$root" -l 127.0.0.1:0 "$opt" "$tmp/no/such/dir/x.log"
        [ $rc = 1 ] || fail "$opt in a missing directory: exit $rc"
        has "paf serve: $opt \"$tmp/no/such/dir/x.log\": No such file or directory" "$opt"
        ! grep -q 'listening on' "$tmp/run.err" || fail "$opt unwritable: it listened first"
        run -r "$root" -l 127.0.0.1:0 "$opt" "$tmp"
        [ $rc = 1 ] || fail "$opt on a directory: exit $rc"
        has "paf serve: $opt \"$tmp\": Is a directory" "$opt"
done
ok "an unwritable --access-log or --error-log: exit 1 before listening, naming the file and the reason"
run -r "$root" -q --access-log "$tmp/a.log"
[ $rc = 2 ] || fail "-q --access-log: exit $rc"
has 'paf serve: --quiet and --access-log: --quiet turns the access log off' "-q --access-log"
ok "--quiet with --access-log: exit 2"

echo "all $n_checks checks passed"
