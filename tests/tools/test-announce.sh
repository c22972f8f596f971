#!/bin/sh
# paf serve announces each listener by the URL that reaches it, in one form
# for plain and TLS and for every transport: a third party's (the example
# loop plugin, built out of tree) gets http+loop:// and https+loop://, the
# schemes it and the tls layer registered, like tcp's http:// and https://.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
pid=
cleanup() {
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
        [ -z "$pid" ] || wait "$pid" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT
chmod 0755 "$tmp"

PKG_CONFIG_PATH=$PAF_TEST_BUILDDIR/pkgconfig/uninstalled \
        make -s -C "$PAF_TEST_SRCDIR/examples/plugin" O="$tmp" >"$tmp/make.log" 2>&1 ||
        { cat "$tmp/make.log" >&2; fail "example plugin did not build"; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
        -subj /CN=localhost -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/openssl.log" ||
        { cat "$tmp/openssl.log" >&2; fail "no test certificate"; }
mkdir "$tmp/root"

# Made here: the background job's own redirection may come after the first grep.
: >"$tmp/serve.err"
PAF_PLUGIN_PATH="$tmp:$PAF_TEST_PLUGINDIR" "$PAF_BIN" serve --root "$tmp/root" \
        --listen loop:plain --listen-tls loop:sealed --listen 127.0.0.1:0 \
        --listen-tls 127.0.0.1:0 --cert "$tmp/cert.pem" --key "$tmp/key.pem" 2>>"$tmp/serve.err" &
pid=$!
i=0
while [ "$(grep -c 'listening on' "$tmp/serve.err" || true)" -lt 4 ]; do
        kill -0 "$pid" 2>/dev/null || { cat "$tmp/serve.err" >&2; fail "paf serve exited"; }
        i=$((i + 1))
        [ $i -le 400 ] || { cat "$tmp/serve.err" >&2; fail "paf serve did not announce 4 listeners in 20 s"; }
        sleep 0.05
done
cat "$tmp/serve.err"
grep -qx 'paf serve: listening on http+loop://plain' "$tmp/serve.err" ||
        fail "plain loop listener not announced as http+loop://plain"
grep -qx 'paf serve: listening on https+loop://sealed' "$tmp/serve.err" ||
        fail "TLS loop listener not announced as https+loop://sealed"
grep -qx 'paf serve: listening on http://127\.0\.0\.1:[0-9]*' "$tmp/serve.err" ||
        fail "plain tcp listener not announced as http://127.0.0.1:PORT"
grep -qx 'paf serve: listening on https://127\.0\.0\.1:[0-9]*' "$tmp/serve.err" ||
        fail "TLS tcp listener not announced as https://127.0.0.1:PORT"
echo "ok: one form: http+loop://, https+loop://, http://, https://"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ $rc = 0 ] || fail "paf serve: exit status $rc on SIGTERM"
