#!/bin/sh
# tests/http/test-get-password.sh — `paf get -u USER` without a password asks for it as curl
# 7.88 does, side by side with curl against get_echo.py (which answers with the request it
# got): on a pseudo-terminal (pty_run.py) the same prompt, echo off while it asks and back on
# after; without a terminal the answer read from stdin; the same Authorization either way.
set -eu
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
command -v setsid >/dev/null 2>&1 || { echo "setsid not found: skipping"; exit 77; }
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3) || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
export PYTHONDONTWRITEBYTECODE=1
unset http_proxy https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/*.err"

"$py" "$PAF_TEST_SRCDIR/tests/http/get_echo.py" "$tmp/echo.port" "$tmp" 2>"$tmp/echo.err" &
pids="$pids $!"
i=0
while [ ! -s "$tmp/echo.port" ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "get_echo.py did not start"
        sleep 0.05
done
url="http://127.0.0.1:$(cat "$tmp/echo.port")/h"
# What the server saw of the credentials.
auth() { grep '^authorization: ' "$1" || echo "(none)"; }

# ---- on a terminal ----
# on_tty WHO ANSWER ARGS…: curl or paf get ARGS on a new terminal, ANSWER typed at the
# prompt; the terminal's bytes in $tmp/WHO.tty, stdout in $tmp/WHO.out, pty_run's report
# in $tmp/WHO.report. $stdin: a file for stdin instead of the terminal.
stdin=
on_tty() {
        who=$1 answer=$2
        shift 2
        if [ "$who" = curl ]; then set -- curl "$@"; else set -- "$PAF_BIN" get "$@"; fi
        timeout 30 "$py" "$PAF_TEST_SRCDIR/tests/http/pty_run.py" ${stdin:+--stdin "$stdin"} \
                "password for user" "$answer" \
                "$tmp/$who.out" "$tmp/$who.tty" -- "$@" >"$tmp/$who.report" 2>"$tmp/$who.err" ||
                fail "$who: pty_run.py failed"
}
for who in curl paf; do
        on_tty "$who" 's3cret' -s -u bob "$url"
        [ "$(cat "$tmp/$who.report")" = "echo-at-prompt=off echo-after=on status=0" ] ||
                fail "$who on a terminal: $(cat "$tmp/$who.report")"
done
cmp -s "$tmp/curl.tty" "$tmp/paf.tty" ||
        fail "the terminal shows $(od -c "$tmp/paf.tty" | head -n 4), curl's $(od -c "$tmp/curl.tty" | head -n 4)"
printf "Enter host password for user 'bob':\r\n" | cmp -s - "$tmp/paf.tty" ||
        fail "not curl 7.88's prompt: $(od -c "$tmp/paf.tty" | head -n 4)"
cmp -s "$tmp/curl.out" "$tmp/paf.out" || fail "on a terminal: paf sent $(auth "$tmp/paf.out"), curl $(auth "$tmp/curl.out")"
[ "$(auth "$tmp/paf.out")" = "authorization: Basic Ym9iOnMzY3JldA==" ] ||
        fail "on a terminal: $(auth "$tmp/paf.out")"
ok "-u bob on a terminal: curl's prompt, echo off while asking and on after, Basic bob:s3cret"

# The terminal, not stdin, answers when there is one; ";OPTIONS" stay out of the prompt.
printf 'stdin pw\n' >"$tmp/stdin"
stdin=$tmp/stdin
for who in curl paf; do
        on_tty "$who" 'tty pw' -s -u 'bob;x=y' "$url"
        mv "$tmp/$who.out" "$tmp/$who.tty-out"
        mv "$tmp/$who.tty" "$tmp/$who.tty-shown"
done
stdin=
[ "$(auth "$tmp/paf.tty-out")" = "authorization: Basic $(printf 'bob;x=y:tty pw' | base64)" ] ||
        fail "-u 'bob;x=y' with stdin not the terminal: $(auth "$tmp/paf.tty-out")"
cmp -s "$tmp/curl.tty-shown" "$tmp/paf.tty-shown" ||
        fail "-u 'bob;x=y': the terminal shows $(od -c "$tmp/paf.tty-shown" | head -n 3), curl's $(od -c "$tmp/curl.tty-shown" | head -n 3)"
[ "$(auth "$tmp/paf.tty-out")" = "$(auth "$tmp/curl.tty-out")" ] ||
        fail "-u 'bob;x=y': paf sent $(auth "$tmp/paf.tty-out"), curl $(auth "$tmp/curl.tty-out")"
ok "-u 'bob;x=y' with stdin a file: the terminal answers, the prompt names bob, as curl"

# --proxy-user the same, with curl's "proxy" prompt (get_echo.py as the proxy: it shows the
# request it got, Proxy-Authorization included).
proxy="http://127.0.0.1:$(cat "$tmp/echo.port")"
pauth() { grep '^proxy-authorization: ' "$1" || echo "(none)"; }
for who in curl paf; do
        on_tty "$who" 'proxy pw' -s -x "$proxy" -U bob http://example.test/h
        [ "$(cat "$tmp/$who.report")" = "echo-at-prompt=off echo-after=on status=0" ] ||
                fail "$who -U on a terminal: $(cat "$tmp/$who.report")"
done
cmp -s "$tmp/curl.tty" "$tmp/paf.tty" ||
        fail "-U: the terminal shows $(od -c "$tmp/paf.tty" | head -n 4), curl's $(od -c "$tmp/curl.tty" | head -n 4)"
printf "Enter proxy password for user 'bob':\r\n" | cmp -s - "$tmp/paf.tty" ||
        fail "-U: not curl 7.88's prompt: $(od -c "$tmp/paf.tty" | head -n 4)"
[ "$(pauth "$tmp/paf.out")" = "$(pauth "$tmp/curl.out")" ] ||
        fail "-U on a terminal: paf sent $(pauth "$tmp/paf.out"), curl $(pauth "$tmp/curl.out")"
[ "$(pauth "$tmp/paf.out")" = "proxy-authorization: Basic $(printf 'bob:proxy pw' | base64)" ] ||
        fail "-U on a terminal: $(pauth "$tmp/paf.out")"
ok "--proxy-user bob on a terminal: curl's proxy prompt, Proxy-Authorization bob:proxy pw"

# ---- no terminal: stdin ----
# no_tty WHO STDIN ARGS…: curl or paf get ARGS in a session without a terminal, STDIN on
# its stdin; stdout in $tmp/WHO.out, stderr in $tmp/WHO.err.
no_tty() {
        who=$1 input=$2
        shift 2
        if [ "$who" = curl ]; then set -- curl "$@"; else set -- "$PAF_BIN" get "$@"; fi
        rc=0
        printf '%s' "$input" | timeout 30 setsid -w "$@" >"$tmp/$who.out" 2>"$tmp/$who.err" || rc=$?
        [ $rc = 0 ] || fail "$who $* without a terminal: exit $rc"
}
# same_no_tty STDIN ARGS…: both; the same stderr and the same request.
same_no_tty() {
        no_tty curl "$@"
        no_tty paf "$@"
        cmp -s "$tmp/curl.err" "$tmp/paf.err" ||
                fail "$*: paf said $(od -c "$tmp/paf.err" | head -n 3), curl $(od -c "$tmp/curl.err" | head -n 3)"
        cmp -s "$tmp/curl.out" "$tmp/paf.out" ||
                fail "$*: paf sent $(auth "$tmp/paf.out"), curl $(auth "$tmp/curl.out")"
}
same_no_tty 'piped pw
' -s -u bob "$url"
[ "$(auth "$tmp/paf.out")" = "authorization: Basic $(printf 'bob:piped pw' | base64)" ] ||
        fail "from stdin: $(auth "$tmp/paf.out")"
[ "$(cat "$tmp/paf.err")" = "Enter host password for user 'bob':" ] || fail "from stdin: $(cat "$tmp/paf.err")"
same_no_tty '' -s -u bob "$url"
[ "$(auth "$tmp/paf.out")" = "authorization: Basic $(printf 'bob:' | base64)" ] ||
        fail "stdin at its end: $(auth "$tmp/paf.out")"
same_no_tty 'pw
' -s -u '' "$url"
ok "without a terminal: the prompt on stderr, the line read from stdin (nothing: an empty password)"

same_no_tty 'unread
' -s -u ';opt' "$url"
same_no_tty 'unread
' -s -u bob:given "$url"
[ ! -s "$tmp/paf.err" ] || fail "-u bob:given asked: $(cat "$tmp/paf.err")"
ok "-u ';opt' and -u USER:PASSWORD ask nothing, as curl"

# -U from stdin, and after -u as curl asks. (curl reads both answers with one read(2): from a
# pipe the first takes every line there is; paf reads a line each, as from a terminal.)
for who in curl paf; do
        no_tty "$who" 'pp
' -s -x "$proxy" -U bob http://example.test/h
        mv "$tmp/$who.out" "$tmp/$who.proxy-out"
        mv "$tmp/$who.err" "$tmp/$who.proxy-err"
done
cmp -s "$tmp/curl.proxy-err" "$tmp/paf.proxy-err" || fail "-U from stdin: paf said $(cat "$tmp/paf.proxy-err")"
[ "$(pauth "$tmp/paf.proxy-out")" = "$(pauth "$tmp/curl.proxy-out")" ] ||
        fail "-U from stdin: paf sent $(pauth "$tmp/paf.proxy-out"), curl $(pauth "$tmp/curl.proxy-out")"
no_tty paf 'hp
pp
' -s -x "$proxy" -U bob -u al http://example.test/h
[ "$(cat "$tmp/paf.err")" = "Enter host password for user 'al':
Enter proxy password for user 'bob':" ] || fail "-u and -U: $(cat "$tmp/paf.err")"
[ "$(auth "$tmp/paf.out")" = "authorization: Basic $(printf 'al:hp' | base64)" ] ||
        fail "-u and -U: $(auth "$tmp/paf.out")"
[ "$(pauth "$tmp/paf.out")" = "proxy-authorization: Basic $(printf 'bob:pp' | base64)" ] ||
        fail "-u and -U: $(pauth "$tmp/paf.out")"
ok "-U from stdin as curl; with -u, the host's password asked first, then the proxy's"
