#!/bin/sh
# tests/acme/test-serve-mock.sh — `paf serve` with [acme] in paf.conf against tests/acme/mock-acme.py: ACME turned on by the file, sd_notify STATUS= with the certificate's state, challenge tokens gone once validated, redirect-http = no, and a renewal that fails while the current certificate is served, retried, then succeeds live.
set -eu
for tool in python3 certtool curl openssl; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
python3 -c 'import cryptography' 2>/dev/null || { echo "python3-cryptography missing: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
here=$PAF_TEST_SRCDIR/tests/acme
. "$here/pebble.sh" # free_port
. "$here/mock-lib.sh"

serve_pid=
notify_pid=
cleanup_extra() {
        for p in $serve_pid $notify_pid; do
                kill "$p" 2>/dev/null || true
                wait "$p" 2>/dev/null || true
        done
        mock_stop
}
# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/serve.err $tmp/mock.err"
# wait_for FILE REGEX [TENTHS]: until a line of FILE matches (default 10 s).
wait_for() {
        i=0
        until grep -q -- "$2" "$1" 2>/dev/null; do
                i=$((i + 1))
                [ $i -lt "${3:-100}" ] || fail "no \"$2\" in $1 after $((${3:-100} / 10)) s"
                sleep 0.1
        done
}
# serial: the serial of the certificate the HTTPS listener serves now.
serial() {
        openssl s_client -connect "127.0.0.1:$TLS_PORT" -servername web.paf.test </dev/null 2>/dev/null |
                openssl x509 -noout -serial 2>/dev/null | sed 's/serial=//'
}

name=web.paf.test
mkdir -p "$tmp/www"
echo "hello from paf" >"$tmp/www/index.html"
# A 30 s lifetime: renewal due at half, 15 s (minus up to 1.5 s of jitter).
mock_start --validity 30 --no-authz-reuse
cat >"$tmp/paf.conf" <<EOF
[acme]
names = $name
directory = $ACME_URL
ca-file = $tmp/ca.pem
state-dir = $tmp/state
agree-tos = yes
email = admin@paf.test
redirect-http = no

# Two workers, one connection each: two connections held open are one on
# each worker.
[http]
workers = 2
max-connections = 2
EOF
"$PAF_BIN" config check "$tmp/paf.conf" >/dev/null || fail "paf config check refuses the [acme] section"
python3 "$PAF_TEST_SRCDIR/tests/http/systemd-notify.py" "$tmp/notify.sock" "$tmp/notify.log" &
notify_pid=$!
wait_for "$tmp/notify.log" '^bound$'
start=$(date +%s)
NOTIFY_SOCKET=$tmp/notify.sock "$PAF_BIN" serve --config "$tmp/paf.conf" --root "$tmp/www" \
        --listen "127.0.0.1:$HTTP_PORT" --listen-tls "127.0.0.1:$TLS_PORT" >"$tmp/serve.out" 2>"$tmp/serve.err" &
serve_pid=$!
wait_for "$tmp/serve.err" "ACME: certificate for $name"
body=$(curl -sS --cacert "$tmp/root.pem" --resolve "$name:$TLS_PORT:127.0.0.1" "https://$name:$TLS_PORT/") ||
        fail "HTTPS with the certificate obtained through [acme]"
[ "$body" = "hello from paf" ] || fail "HTTPS body: $body"
ok "[acme] in paf.conf turns ACME on: the certificate is obtained and HTTPS verifies against the CA's root"

# The token the CA fetched is not served any more.
token=$(python3 -c 'import json,sys; print([l for l in map(json.loads, open(sys.argv[1])) if l.get("event") == "validate"][0]["token"])' "$tmp/log")
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/.well-known/acme-challenge/$token")
[ "$code" = 404 ] || fail "the validated token still answers $code"
ok "the validated challenge token is removed (404)"

# redirect-http = no: plain HTTP serves the files too.
body=$(curl -sS "http://127.0.0.1:$HTTP_PORT/") || fail "plain HTTP"
[ "$body" = "hello from paf" ] || fail "redirect-http = no, yet: $body"
ok "redirect-http = no: plain HTTP is served, not redirected"

wait_for "$tmp/notify.log" "STATUS=.*certificate for $name valid until" 30
ok "sd_notify STATUS= shows the certificate: $(grep -o 'certificate for [^|]*' "$tmp/notify.log" | tail -n 1)"

# The renewal fails (the CA cannot validate any more): logged, retried, and
# the current certificate is still served; then the CA recovers and the
# retry installs a new certificate without a restart.
first=$(serial)
[ -n "$first" ] || fail "no certificate served"
curl -sf -d "{\"fail_challenge\": [\"$name\"], \"fail_challenge_detail\": \"the CA cannot reach you\"}" \
        "$MGMT/set" >/dev/null || fail "mock /set"
wait_for "$tmp/serve.err" "renewal failed.*the CA cannot reach you" 300
grep -q "retrying at" "$tmp/serve.err" || fail "the failed renewal is not retried"
[ "$(serial)" = "$first" ] || fail "the certificate changed although the renewal failed"
curl -sS --cacert "$tmp/root.pem" --resolve "$name:$TLS_PORT:127.0.0.1" "https://$name:$TLS_PORT/" >/dev/null ||
        fail "HTTPS stopped after the failed renewal"
wait_for "$tmp/notify.log" "STATUS=.*renewal failed" 30
ok "a failed renewal is logged with the CA's detail, retried, and HTTPS goes on with the current certificate ($((`date +%s` - start)) s in)"
curl -sf -d '{"fail_challenge": []}' "$MGMT/set" >/dev/null || fail "mock /set"
i=0
while [ "$(serial)" = "$first" ]; do
        i=$((i + 1))
        [ $i -lt 300 ] || fail "no new certificate 30 s after the CA recovered"
        sleep 0.1
done
second=$(serial)
body=$(curl -sS --cacert "$tmp/root.pem" --resolve "$name:$TLS_PORT:127.0.0.1" "https://$name:$TLS_PORT/") ||
        fail "HTTPS with the renewed certificate"
kill -0 "$serve_pid" || fail "paf serve died"
ok "the retry renews: serial $first, then $second, served live by the same process"

# The manager runs once, and its certificate reaches every worker.
[ "$(grep -c "ACME: certificate for $name" "$tmp/serve.err")" = 2 ] ||
        fail "not one certificate message per issuance: $(grep "ACME: certificate" "$tmp/serve.err")"
rm -f "$tmp/quit"
python3 "$PAF_TEST_SRCDIR/tests/http/workers.py" hold "127.0.0.1:$TLS_PORT" 2 "$tmp/quit" \
        --ca "$tmp/root.pem" --name "$name" --serial "$second" >"$tmp/hold.out" 2>&1 &
holder=$!
i=0
until grep -q '^held 2$' "$tmp/hold.out"; do
        kill -0 "$holder" 2>/dev/null || fail "$(cat "$tmp/hold.out")"
        i=$((i + 1))
        [ $i -lt 100 ] || fail "workers.py hold: no 2 connections in 10 s"
        sleep 0.1
done
: >"$tmp/quit"
wait "$holder" || fail "$(cat "$tmp/hold.out")"
ok "one certificate message per issuance; a connection to each of the 2 workers gets serial $second"

kill "$serve_pid"
wait "$serve_pid" || fail "paf serve did not exit 0 on SIGTERM"
serve_pid=
ok "SIGTERM stops paf serve --acme cleanly"
echo "all $n_checks checks passed"
