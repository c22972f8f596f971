#!/bin/sh
# tests/tools/test-paf-cli.sh — the errors a newcomer meets first: no plugin
# (or none for the address or URL) says so with the search path; `paf get -v`
# says which transport was used, one attempt a line; every command has
# --help, and a bad flag gets one line and "Try …".
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
n_checks=0
ok() { n_checks=$((n_checks + 1)); echo "ok $n_checks - $*"; }
tmp=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
mkdir -m 0755 "$tmp/empty" "$tmp/unix-only" "$tmp/tcp-only"
cp "$PAF_TEST_PLUGINDIR/unix.so" "$tmp/unix-only/"
cp "$PAF_TEST_PLUGINDIR/tcp.so" "$tmp/tcp-only/"

# run ARGS…: paf, bounded; stdout in $tmp/out, stderr in $tmp/err, status in $rc.
run() {
        rc=0
        timeout 20 "$PAF_BIN" "$@" >"$tmp/out" 2>"$tmp/err" </dev/null || rc=$?
        [ $rc != 124 ] || fail "paf $*: hung"
}
has() { grep -qF -- "$1" "$tmp/err" || fail "$2: no '$1' in: $(cat "$tmp/err")"; }
lacks() { ! grep -qF -- "$1" "$tmp/err" || fail "$2: '$1' in: $(cat "$tmp/err")"; }

# ---- no plugin at all ----
# The compiled-in pluginsdir is searched too: it must be empty for this part.
run plugins
if grep -q '^[a-z]' "$tmp/out" && [ "$(wc -l <"$tmp/out")" -gt 1 ]; then
        echo "skip: plugins installed in the compiled-in directory; no plugin-less run here"
else
        has 'paf plugins: no plugin loaded (searched: ' "paf plugins without plugins"
        export PAF_PLUGIN_PATH="$tmp/empty"
        run serve --root "$tmp"
        [ $rc != 0 ] || fail "paf serve without plugins: exit 0"
        has 'paf serve: no plugin loaded (searched: '"$tmp/empty"':' "paf serve without plugins"
        has 'set PAF_PLUGIN_PATH or [paf] plugin-path)' "paf serve without plugins"
        lacks '--listen' "paf serve without plugins"
        ok "paf serve, no plugin: $(cat "$tmp/err")"

        run get http://127.0.0.1:1/
        [ $rc = 1 ] || fail "paf get without plugins: exit $rc, not 1 (curl's unsupported protocol)"
        has 'paf get: no plugin loaded (searched: '"$tmp/empty"':' "paf get without plugins"
        lacks 'no transport for this request' "paf get without plugins"
        ok "paf get, no plugin: exit 1: $(cat "$tmp/err")"
fi

# ---- plugins, but none for the address or the URL ----
export PAF_PLUGIN_PATH="$tmp/unix-only"
run serve --root "$tmp"
[ $rc != 0 ] || fail "paf serve with unix.so only: exit 0"
has 'paf serve: the default listener 127.0.0.1:8080: ' "the default listener"
has 'plugins loaded: unix; searched: '"$tmp/unix-only"':' "the default listener"
has 'PAF_PLUGIN_PATH' "the default listener"
lacks '--listen' "the default listener (no --listen was typed)"
ok "the default listener, no tcp: $(cat "$tmp/err")"

run serve --root "$tmp" --listen vsock::5000
[ $rc != 0 ] || fail "--listen vsock with unix.so only: exit 0"
has 'paf serve: --listen "vsock::5000": ' "--listen vsock::5000"
has 'plugins loaded: unix; searched: ' "--listen vsock::5000"
ok "--listen with no plugin for it: $(cat "$tmp/err")"

export PAF_PLUGIN_PATH="$tmp/tcp-only"
run get "http+unix://$(printf %s "$tmp/none.sock" | sed 's|/|%2F|g')/"
[ $rc = 1 ] || fail "http+unix:// with tcp.so only: exit $rc, not 1: $(cat "$tmp/err")"
has 'paf get: http+unix://' "http+unix:// with tcp.so only"
has 'plugins loaded: tcp; searched: '"$tmp/tcp-only"':' "http+unix:// with tcp.so only"
ok "a URL no plugin serves: exit 1: $(cat "$tmp/err")"

# ---- paf get -v: what the connect did, one attempt a line ----
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
mkdir "$tmp/www"
echo hello >"$tmp/www/hello.txt"
: >"$tmp/serve.err"
"$PAF_BIN" serve --quiet --listen 127.0.0.1:0 --root "$tmp/www" 2>"$tmp/serve.err" &
pid=$!
i=0
until grep -q 'listening on' "$tmp/serve.err"; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "paf serve did not start: $(cat "$tmp/serve.err")"
        kill -0 "$pid" 2>/dev/null || fail "paf serve exited: $(cat "$tmp/serve.err")"
        sleep 0.05
done
grep -q '^paf serve: listening on http://127\.0\.0\.1:' "$tmp/serve.err" ||
        fail "the listening line is not paf serve's: $(cat "$tmp/serve.err")"
addr=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/serve.err")
run get -v "http://$addr/hello.txt"
[ $rc = 0 ] || fail "paf get -v: exit $rc: $(cat "$tmp/err")"
[ "$(cat "$tmp/out")" = hello ] || fail "paf get -v: body $(cat "$tmp/out")"
sed -n '/^\* resolution:$/,$p' "$tmp/err" | sed 1d | grep '^\*   ' >"$tmp/report" ||
        fail "no resolution report: $(cat "$tmp/err")"
grep -qx "\*   tcp $addr: used" "$tmp/report" || fail "the transport used is not 'used': $(cat "$tmp/report")"
lacks 'not tried' "paf get -v"
! grep -q ';' "$tmp/report" || fail "attempts joined on one line: $(cat "$tmp/report")"
while IFS= read -r line; do
        case $line in
        "*   "*": used" | "*   "*": failed: "* | "*   "*": not a candidate: "*) ;;
        *) fail "not one attempt a line with its outcome: '$line'" ;;
        esac
done <"$tmp/report"
grep -q '^\*   unix: not a candidate: ' "$tmp/report" || fail "unix is not listed: $(cat "$tmp/report")"
ok "paf get -v: $(tr '\n' '|' <"$tmp/report")"

# A refused port: the message names it, prefixed by the command.
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
run get "http://$addr/"
[ $rc = 7 ] || fail "refused: exit $rc, not 7"
head -n 1 "$tmp/err" | grep -q "^paf get: http://$addr/: GET /: tcp $addr: " ||
        fail "refused: $(cat "$tmp/err")"
ok "refused: exit 7: $(cat "$tmp/err")"

# ---- usage: --help everywhere, one line and "Try" for a bad flag ----
for cmd in serve get plugins config version; do
        run "$cmd" --help
        [ $rc = 0 ] || fail "paf $cmd --help: exit $rc: $(cat "$tmp/err")"
        head -n 1 "$tmp/out" | grep -q "^Usage: paf $cmd" || fail "paf $cmd --help: $(cat "$tmp/out")"
        [ ! -s "$tmp/err" ] || fail "paf $cmd --help wrote to stderr: $(cat "$tmp/err")"

        run "$cmd" --no-such-flag
        [ $rc = 2 ] || fail "paf $cmd --no-such-flag: exit $rc"
        [ ! -s "$tmp/out" ] || fail "paf $cmd --no-such-flag: stdout: $(cat "$tmp/out")"
        printf 'paf %s: unknown option "--no-such-flag"\nTry "paf %s --help".\n' "$cmd" "$cmd" >"$tmp/want"
        cmp -s "$tmp/err" "$tmp/want" || fail "paf $cmd --no-such-flag said: $(cat "$tmp/err")"
done
ok "--help on stdout (exit 0), a bad flag: one line and Try (exit 2), for serve, get, plugins, config, version"

run get --output
[ $rc = 2 ] || fail "get --output: exit $rc"
has 'paf get: option "--output" needs a value' "get --output"
has 'Try "paf get --help".' "get --output"
run serve -sz
[ $rc = 2 ] || fail "serve -sz: exit $rc"
has 'paf serve: unknown option "-s"' "serve -sz"
run get --he http://x/
has 'paf get: option "--he" is ambiguous (--header, --head, --help)' "get --he"
run get
[ $rc = 2 ] || fail "get without URL: exit $rc"
has 'paf get: no URL' "get without URL"
has 'Try "paf get --help".' "get without URL"
ok "missing values, short and ambiguous options, no URL"

run serve --help
for form in 'PORT' 'HOST:PORT' '[V6]:PORT' '/path.sock' '@abstract' 'vsock:CID:PORT' 'vsock::PORT'; do
        grep -qF -- " $form " "$tmp/out" || fail "paf serve --help lacks the listen form $form: $(cat "$tmp/out")"
done
ok "paf serve --help lists every listen form, vsock included"

run --help
for cmd in get serve plugins config version; do
        grep -q "^  $cmd" "$tmp/out" || fail "paf --help lacks $cmd"
done
run no-such-command
[ $rc = 2 ] || fail "unknown command: exit $rc"
printf 'paf: unknown command "no-such-command"\nTry "paf --help".\n' >"$tmp/want"
cmp -s "$tmp/err" "$tmp/want" || fail "unknown command said: $(cat "$tmp/err")"
ok "paf --help lists every command; an unknown command: one line and Try"

echo "all $n_checks checks passed"
