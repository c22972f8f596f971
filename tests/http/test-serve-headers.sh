#!/bin/sh
# paf serve --header and [serve] header: the fields go on every response,
# over HTTP/1.1 and HTTP/2, the engine's own error answers included; a field
# the handler set is not doubled; framing and hop-by-hop fields, bad names
# and bad lines are refused before anything listens, naming them.
set -eu
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http/lib.sh"
c() { curl -sS --max-time 10 "$@"; }

mkdir "$tmp/www"
echo hello >"$tmp/www/index.html"
printf '[serve]\nheader = Cache-Control: no-cache\nheader = X-From-Conf: 1\n' >"$tmp/paf.conf"
"$PAF_BIN" serve -q -c "$tmp/paf.conf" --header "Strict-Transport-Security: max-age=63072000" \
        --header "Content-Type: text/x-never" -l 127.0.0.1:0 -r "$tmp/www" 2>"$tmp/serve.err" &
serve_pid=$!
i=0
until grep -q 'listening on http://' "$tmp/serve.err"; do
        i=$((i + 1))
        [ $i -le 200 ] || { kill $serve_pid; fail "paf serve did not start: $(cat "$tmp/serve.err")"; }
        sleep 0.05
done
addr=$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' "$tmp/serve.err" | head -n1)
stop() { kill $serve_pid 2>/dev/null || true; wait $serve_pid 2>/dev/null || true; }

check() { # check WHAT HEADFILE: the three fields once each, the handler's Content-Type alone
        for f in 'strict-transport-security: max-age=63072000' 'cache-control: no-cache' 'x-from-conf: 1'; do
                n=$(tr -d '\r' <"$2" | grep -ic "^$f\$" || true)
                [ "$n" = 1 ] || { stop; fail "$1: \"$f\" $n times in: $(cat "$2")"; }
        done
        if grep -qi '^content-type: text/x-never' "$2"; then stop; fail "$1: the handler's Content-Type was doubled"; fi
}
c -D "$tmp/h1" -o /dev/null "http://$addr/index.html"
check "HTTP/1.1 200" "$tmp/h1"
grep -qi '^content-type: text/html' "$tmp/h1" || { stop; fail "the handler's Content-Type is gone"; }
c --http2-prior-knowledge -D "$tmp/h2" -o /dev/null "http://$addr/missing"
grep -q '^HTTP/2 404' "$tmp/h2" || { stop; fail "h2 404: $(cat "$tmp/h2")"; }
check "HTTP/2 404" "$tmp/h2"
# The engine's own answer to a malformed request carries them too.
printf 'GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n' | timeout 5 nc 127.0.0.1 "${addr##*:}" >"$tmp/bad" || true
grep -q '^HTTP/1.1 400 ' "$tmp/bad" || { stop; fail "no 400: $(cat "$tmp/bad")"; }
sed '/^\r$/q' "$tmp/bad" >"$tmp/bad.head"
check "the engine's 400" "$tmp/bad.head"
stop
echo "ok: --header and [serve] header on 200 (HTTP/1.1), 404 (HTTP/2) and the engine's 400; the handler's Content-Type not doubled"

refused() { # refused EXIT PATTERN ARGS…: paf serve exits EXIT saying PATTERN, listening on nothing
        want=$1 pat=$2
        shift 2
        rc=0
        "$PAF_BIN" serve -l 127.0.0.1:0 -r "$tmp/www" "$@" 2>"$tmp/err" || rc=$?
        [ "$rc" = "$want" ] || fail "paf serve $*: exit $rc, expected $want ($(cat "$tmp/err"))"
        grep -q "$pat" "$tmp/err" || fail "paf serve $*: no \"$pat\" in: $(cat "$tmp/err")"
        if grep -q 'listening on' "$tmp/err"; then fail "paf serve $*: listened before refusing"; fi
}
refused 2 "server's own fields" --header "Content-Length: 5"
refused 2 "server's own fields" --header "connection: close"
refused 2 '"Bad Name" is not a field name' --header "Bad Name: 5"
refused 2 'expected "Name: value"' --header "NoColon"
printf '[serve]\nheader = Transfer-Encoding: gzip\n' >"$tmp/bad1.conf"
refused 1 'bad1.conf:2: \[serve\] key "header": "Transfer-Encoding": the server.s own field' -c "$tmp/bad1.conf"
printf '[serve]\nheader = no colon here\n' >"$tmp/bad2.conf"
refused 1 'bad2.conf:2: \[serve\] key "header"' -c "$tmp/bad2.conf"
echo "ok: framing and hop-by-hop fields, bad names and lines refused before listening, naming them"
