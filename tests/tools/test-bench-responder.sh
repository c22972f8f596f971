#!/bin/sh
# tests/tools/test-bench-responder.sh — bench/client.sh's canned responder answers what the clients send: one response per request head (also one split across reads, and runs of pipelined ones), its status port counts them, and paf bench's count agrees.
set -eu
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
responder=$PAF_TEST_BENCH_RESPONDER
PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
export PAF_PLUGIN_PATH
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/responder.err"

# Bad arguments: a usage message or the reason, exit 2.
rc=0
"$responder" 1 2 >/dev/null 2>"$tmp/usage.err" || rc=$?
[ $rc = 2 ] && grep -q "usage:" "$tmp/usage.err" || fail "two arguments: exit $rc, $(cat "$tmp/usage.err")"
rc=0
"$responder" 0 1 13 2>"$tmp/bad.err" || rc=$?
[ $rc = 2 ] && grep -q "bad port" "$tmp/bad.err" || fail "port 0: exit $rc, $(cat "$tmp/bad.err")"
ok "bad arguments: exit 2 with the usage or the reason"

port=$(free_port) status=$(free_port)
"$responder" "$port" "$status" 13 2>"$tmp/responder.err" &
pids="$pids $!"
big_port=$(free_port) big_status=$(free_port)
"$responder" "$big_port" "$big_status" 4096 2>>"$tmp/responder.err" &
pids="$pids $!"
i=0
until curl -s -o /dev/null "http://127.0.0.1:$port/" && curl -s -o /dev/null "http://127.0.0.1:$big_port/"; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "the responders do not answer: $(cat "$tmp/responder.err")"
        sleep 0.05
done
served() { curl -sf "http://127.0.0.1:$1/"; }

curl -si "http://127.0.0.1:$port/any/path" >"$tmp/r13"
head -n 1 "$tmp/r13" | grep -q "^HTTP/1.1 200 OK" || fail "status line: $(head -n 1 "$tmp/r13")"
grep -qi "^Content-Length: 13" "$tmp/r13" || fail "no Content-Length: 13: $(cat "$tmp/r13")"
[ "$(curl -s "http://127.0.0.1:$port/")" = "hello, world" ] || fail "13-byte body"
[ "$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$big_port/")" = 4096 ] ||
        fail "the 4096-byte body"
ok "a 200 with Content-Length 13 and hello, world; the other one 4096 bytes"

# A head split in the middle of its blank line, then two heads in one write:
# three responses, and nothing more.
/usr/bin/python3 - "$port" >"$tmp/split" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r")
time.sleep(0.1)
s.sendall(b"\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n")
s.settimeout(0.5)
data = b""
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
except socket.timeout:
    pass
print(data.count(b"HTTP/1.1 200 OK"), len(data))
PY
read -r n len <"$tmp/split"
one=$(wc -c <"$tmp/r13")
[ "$n" = 3 ] && [ "$len" = $((3 * one)) ] || fail "split and pipelined heads: $n responses, $len bytes (one is $one)"
ok "a head split across reads and two in one write: exactly 3 responses"

# paf bench, pipelined 16 deep: its count is the responder's.
before=$(served "$status")
"$PAF_BIN" bench -n 2000 -c 10 -p 16 --json "$tmp/b.json" "http://127.0.0.1:$port/" >"$tmp/b.out" 2>&1 ||
        fail "paf bench: $(cat "$tmp/b.out")"
after=$(served "$status")
[ $((after - before)) = 2000 ] || fail "the responder counted $((after - before)) requests, not 2000"
grep -q '"ok": 2000,' "$tmp/b.json" || fail "paf bench: $(grep '"ok"' "$tmp/b.json")"
ok "paf bench -n 2000 -c 10 -p 16: 2000 ok, and the responder counted 2000"
before=$(served "$big_status")
"$PAF_BIN" bench -n 500 -c 5 -p 4 --json "$tmp/b2.json" "http://127.0.0.1:$big_port/" >"$tmp/b2.out" 2>&1 ||
        fail "paf bench, 4096 bytes: $(cat "$tmp/b2.out")"
after=$(served "$big_status")
[ $((after - before)) = 500 ] || fail "the 4096-byte responder counted $((after - before)), not 500"
ok "paf bench -n 500 -p 4 on 4096-byte bodies: the responder counted 500"
echo "all $n_checks checks passed"
