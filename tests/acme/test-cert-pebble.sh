#!/bin/sh
# tests/acme/test-cert-pebble.sh — `paf cert` against Debian's pebble on loopback: http-01 with two names and an IP in one order, tls-alpn-01, a stored certificate kept and --force, badNonce at 50 %, EAB required, revocation, key rollover, deactivation, renew (due and not due), and the failures (a failing challenge, an unreachable or untrusted ACME server, a wildcard, usage errors).
#
# Two pebbles: the first with its defaults (5-year certificates, no badNonce,
# no EAB), the second with EAB required, half the good nonces rejected and
# 10-second certificates, so that a renewal comes due within the test.
set -eu
for tool in pebble pebble-challtestsrv certtool curl python3 setpriv openssl; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
[ -f "$PAF_TEST_PLUGINDIR/tls.so" ] || { echo "no tls.so in $PAF_TEST_PLUGINDIR: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
# shellcheck source=pebble.sh
. "$PAF_TEST_SRCDIR/tests/acme/pebble.sh"

tmp=$(mktemp -d)
cleanup() {
        pebble_cleanup
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok $n_checks: $*"
}
fail() {
        echo "FAIL: $*" >&2
        if [ -n "$last" ]; then
                echo "--- paf cert $last (exit $rc)" >&2
                [ ! -s "$tmp/out" ] || { echo "--- stdout:" >&2; cat "$tmp/out" >&2; }
                if grep -q 'Sanitizer' "$tmp/err"; then
                        echo "--- stderr, with a sanitizer's report (first 60 lines):" >&2
                        head -n 60 "$tmp/err" >&2
                elif [ -s "$tmp/err" ]; then
                        echo "--- stderr (last 30 lines):" >&2
                        tail -n 30 "$tmp/err" >&2
                fi
        fi
        if [ -n "$PEBBLE_LOG" ] && [ -s "$PEBBLE_LOG" ]; then
                echo "--- pebble log (last 30 lines):" >&2
                tail -n 30 "$PEBBLE_LOG" >&2
        fi
        exit 1
}

# cert ARGS…: paf cert, stdout in $tmp/out, stderr in $tmp/err, status in $rc.
last='' rc=0
cert() {
        last="$*"
        rc=0
        "$PAF_BIN" cert "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
}
# acme SUB ARGS…: paf cert SUB against the running pebble.
acme() {
        _sub=$1
        shift
        cert "$_sub" --acme-url "$PEBBLE_DIR_URL" --cacert "$PEBBLE_CA" "$@"
}
# issue DIR ARGS…: an http-01 issuance into DIR, answered where pebble's VA dials.
issue() {
        _dir=$1
        shift
        acme issue --email admin@paf.test --agree-tos --listen "127.0.0.1:$PEBBLE_HTTP_PORT" \
                --dir "$_dir" "$@"
}
expect_rc() {
        [ "$rc" = "$1" ] || fail "paf cert $last: exit status $rc, expected $1${2:+ ($2)}"
}
# expect_out|expect_err STRING: the output contains STRING, literally.
expect_out() {
        grep -qF -- "$1" "$tmp/out" || fail "paf cert $last: stdout lacks \"$1\""
}
expect_err() {
        grep -qF -- "$1" "$tmp/err" || fail "paf cert $last: stderr lacks \"$1\""
}

# Times as paf prints them ("2031-12-01 14:09:50 UTC") and as epoch seconds.
fmt_time() { date -u -d "@$1" '+%Y-%m-%d %H:%M:%S UTC'; }
epoch() { date -u -d "$1" +%s; }
not_before() { epoch "$(openssl x509 -noout -startdate -in "$1" | sed 's/^notBefore=//')"; }
not_after() { epoch "$(openssl x509 -noout -enddate -in "$1" | sed 's/^notAfter=//')"; }
# show_field FIELD: that line of the last `paf cert show` ("  issuer:    CN=…").
show_field() { sed -n "s/^  $1: *//p" "$tmp/out" | head -n 1; }
mode() { stat -c %a "$1"; }
pubkey() { openssl pkey -pubout -in "$1"; }
cert_pubkey() { openssl x509 -noout -pubkey -in "$1"; }
count() { grep -c -- "$1" "$2" || true; }

# ---- 1. pebble with its defaults ----
pebble_start
D=$tmp/state
LEAF=$D/paf.test/fullchain.pem
KEY=$D/paf.test/key.pem

# -- http-01: two names and an IP identifier in one order
issue "$D" -d paf.test -d www.paf.test -d 127.0.0.1
expect_rc 0
[ -s "$LEAF" ] && [ -s "$KEY" ] || fail "issue: no $LEAF or $KEY"
pebble_verify_chain "$LEAF" || fail "issue: $LEAF does not verify against pebble's root"
sans=$(openssl x509 -noout -ext subjectAltName -in "$LEAF")
for san in DNS:paf.test DNS:www.paf.test "IP Address:127.0.0.1"; do
        case $sans in *"$san"*) ;; *) fail "issue: the certificate lacks $san: $sans" ;; esac
done
[ "$(pebble_count_orders)" = 1 ] || fail "issue: $(pebble_count_orders) orders, expected one for the three identifiers"
[ "$(pebble_count_validations)" = 3 ] || fail "issue: $(pebble_count_validations) validations, expected 3"
ok "http-01: one order for paf.test, www.paf.test and 127.0.0.1 (3 validations); the chain verifies against this run's pebble root and carries the three SANs"

[ "$(cert_pubkey "$LEAF")" = "$(pubkey "$KEY")" ] || fail "issue: key.pem is not the certificate's key"
openssl x509 -noout -text -in "$LEAF" | grep -q 'NIST CURVE: P-256' || fail "issue: the default key is not P-256"
[ "$(mode "$KEY")" = 600 ] || fail "issue: $KEY has mode $(mode "$KEY"), expected 600"
account_key=$(find "$D/_accounts" -name account.key)
[ -n "$account_key" ] || fail "issue: no account key under $D/_accounts"
[ "$(mode "$account_key")" = 600 ] || fail "issue: $account_key has mode $(mode "$account_key"), expected 600"
ok "key.pem is the certificate's P-256 key; key.pem and the account key have mode 0600"

until_str=$(fmt_time "$(not_after "$LEAF")")
serial=$(cert_serial "$LEAF")
expect_out "paf.test www.paf.test 127.0.0.1: issued, valid until $until_str (serial $serial)"
expect_out "certificate: $LEAF"
grep -q "key: *$KEY\$" "$tmp/out" || fail "issue: stdout does not name $KEY"
ok "issue prints the names, the expiry ($until_str), the serial and both files"

cert show --dir "$D"
expect_rc 0
[ "$(show_field names)" = "paf.test www.paf.test 127.0.0.1" ] || fail "show: names \"$(show_field names)\""
issuer=$(openssl x509 -noout -subject -nameopt RFC2253 -in "$PEBBLE_INTERMEDIATE" | sed 's/^subject=//')
[ "$(show_field issuer)" = "$issuer" ] || fail "show: issuer \"$(show_field issuer)\", expected \"$issuer\""
[ "$(show_field serial)" = "$serial" ] || fail "show: serial \"$(show_field serial)\", expected $serial"
case $(show_field valid) in
*" to $until_str ("*" days left)") ;;
*) fail "show: valid \"$(show_field valid)\", expected to end $until_str" ;;
esac
# Five years: the renewal comes when a third of the lifetime is left, less up
# to a tenth of that third (jitter); a second of slack for the rounding.
nb=$(not_before "$LEAF") na=$(not_after "$LEAF")
renew_at=$(epoch "$(show_field renewal)")
third=$(((na - nb) / 3))
[ "$renew_at" -le $((na - third + 1)) ] && [ "$renew_at" -ge $((na - third - third / 10 - 1)) ] ||
        fail "show: renewal $(show_field renewal) is not a third of the lifetime before $until_str (less up to a tenth)"
ok "show lists the names, the issuer ($issuer), the expiry and the renewal time ($(show_field renewal): a third of the lifetime left)"

# -- the same names again: kept; --force: a new order, a new key
orders=$(pebble_count_orders)
cp "$KEY" "$tmp/key.before"
issue "$D" -d paf.test -d www.paf.test -d 127.0.0.1
expect_rc 0
expect_out "stored certificate still good, kept"
[ "$(pebble_count_orders)" = "$orders" ] || fail "issue again: a new order was made"
[ "$(cert_serial "$LEAF")" = "$serial" ] || fail "issue again: the certificate changed"
cmp -s "$KEY" "$tmp/key.before" || fail "issue again: the key changed"
ok "issue for the same names again: no new order, the stored certificate is kept and said so"

issue "$D" -d paf.test -d www.paf.test -d 127.0.0.1 --force
expect_rc 0
expect_out "paf.test www.paf.test 127.0.0.1: issued"
[ "$(pebble_count_orders)" = $((orders + 1)) ] || fail "issue --force: $(pebble_count_orders) orders, expected $((orders + 1))"
[ "$(cert_serial "$LEAF")" != "$serial" ] || fail "issue --force: the serial did not change"
! cmp -s "$KEY" "$tmp/key.before" || fail "issue --force: the certificate key was reused"
pebble_verify_chain "$LEAF" || fail "issue --force: the new chain does not verify"
serial=$(cert_serial "$LEAF")
ok "issue --force: one new order, a new serial ($serial) and a new key"

# -- tls-alpn-01, on paf's own TLS listener, with a P-384 key
issue "$D" -d alpn.paf.test --challenge tls-alpn-01 --listen "127.0.0.1:$PEBBLE_TLS_PORT" --key-type p384 -v
expect_rc 0
expect_err 'answered the tls-alpn-01 challenge for "alpn.paf.test"'
pebble_verify_chain "$D/alpn.paf.test/fullchain.pem" || fail "tls-alpn-01: the chain does not verify"
! grep -q 'validate w/ HTTP: http://alpn.paf.test' "$PEBBLE_LOG" || fail "tls-alpn-01: pebble validated alpn.paf.test over http-01"
openssl x509 -noout -text -in "$D/alpn.paf.test/fullchain.pem" | grep -q 'NIST CURVE: P-384' ||
        fail "tls-alpn-01: --key-type p384 did not give a P-384 key"
ok "tls-alpn-01: pebble's VA got the acme-tls/1 certificate from paf's TLS listener; P-384 key; the chain verifies"

# -- revocation
cert revoke paf.test --reason 4 --acme-url "$PEBBLE_DIR_URL" --cacert "$PEBBLE_CA" --dir "$D"
expect_rc 0
expect_out "paf.test: revoked (reason 4)"
[ "$(pebble_cert_status "$serial")" = Revoked ] || fail "revoke: pebble says $(pebble_cert_status "$serial") for $serial"
reason=$(pebble_cert_status "$serial" --json | python3 -c 'import json, sys; print(json.load(sys.stdin).get("Reason"))')
[ "$reason" = 4 ] || fail "revoke: pebble's reason is $reason, expected 4"
cert show paf.test --dir "$D"
expect_rc 0
expect_out "(REVOKED)"
ok "revoke --reason 4: pebble's /cert-status-by-serial says Revoked, reason 4; show says REVOKED"

cert revoke paf.test --reason 4 --acme-url "$PEBBLE_DIR_URL" --cacert "$PEBBLE_CA" --dir "$D"
expect_rc 1
expect_err "alreadyRevoked"
expect_err "Certificate has already been revoked"
ok "revoking again: exit 1 with pebble's alreadyRevoked problem and its detail"

orders=$(pebble_count_orders)
issue "$D" -d paf.test -d www.paf.test -d 127.0.0.1
expect_rc 0
expect_out ": issued"
[ "$(pebble_count_orders)" = $((orders + 1)) ] || fail "issue after revocation: no new order"
[ "$(pebble_cert_status "$(cert_serial "$LEAF")")" = Valid ] || fail "issue after revocation: the stored certificate is not valid"
ok "issue after revocation: the revoked certificate is not kept, a new one is ordered"

# -- key rollover: the CA takes the new key, and the old one no longer works
acct_dir=$(dirname "$account_key")
acct_url=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["url"])' "$acct_dir/account.json")
cp -a "$D" "$tmp/old-key"
cert key-change --acme-url "$PEBBLE_DIR_URL" --cacert "$PEBBLE_CA" --dir "$D"
expect_rc 0
expect_out "account key replaced"
! cmp -s "$account_key" "$tmp/old-key/_accounts/$(basename "$acct_dir")/account.key" ||
        fail "key-change: the stored account key did not change"
[ "$(mode "$account_key")" = 600 ] || fail "key-change: the new account key has mode $(mode "$account_key")"
issue "$D" -d rollover.paf.test -v
expect_rc 0
expect_out "rollover.paf.test: issued"
! grep -q 'account .* created' "$tmp/err" || fail "key-change: the issuance after it created a new account"
issue "$tmp/old-key" -d old-key.paf.test
expect_rc 1 "the replaced account key must be refused"
expect_err "JWS verification error"
ok "key-change: a new 0600 key, the same account issues with it, the old key is refused by pebble"

# -- deactivation: the account is gone; a copy of its key is refused, and
# the next issuance makes a new account
cp -a "$D" "$tmp/pre-deactivate"
cert deactivate --acme-url "$PEBBLE_DIR_URL" --cacert "$PEBBLE_CA" --dir "$D"
expect_rc 0
expect_out "account deactivated"
[ ! -e "$account_key" ] || fail "deactivate: the account key is still stored"
issue "$tmp/pre-deactivate" -d deactivated.paf.test
expect_rc 1 "a deactivated account must be refused"
expect_err "Account has been deactivated"
issue "$D" -d after-deactivate.paf.test -v
expect_rc 0
new_url=$(sed -n 's/^acme: account \([^ ]*\) created$/\1/p' "$tmp/err")
[ -n "$new_url" ] && [ "$new_url" != "$acct_url" ] ||
        fail "deactivate: the next issuance did not create a new account (was $acct_url, now \"$new_url\")"
ok "deactivate: the stored account is removed, its key is refused by pebble, the next issue creates a new account"

# -- failures
challtest_set_a bad.paf.test 127.0.0.2
issue "$D" -d bad.paf.test -d good.paf.test
expect_rc 1
expect_err "bad.paf.test"
expect_err "http-01"
expect_err "127.0.0.2"
expect_err "connection refused"
[ ! -e "$D/bad.paf.test/fullchain.pem" ] || fail "failed challenge: a certificate was stored"
challtest_clear_a bad.paf.test
ok "a failing http-01 challenge (bad.paf.test -> 127.0.0.2): exit 1, the identifier and pebble's problem detail"

closed=$(free_port)
cert issue --acme-url "https://127.0.0.1:$closed/dir" --cacert "$PEBBLE_CA" --email admin@paf.test \
        --agree-tos --listen "127.0.0.1:$PEBBLE_HTTP_PORT" --dir "$D" -d unreachable.paf.test
expect_rc 1
expect_err "https://127.0.0.1:$closed/dir"
expect_err "refused"
ok "ACME server unreachable: exit 1, the message names the URL and the reason"

cert issue --acme-url "$PEBBLE_DIR_URL" --email admin@paf.test --agree-tos \
        --listen "127.0.0.1:$PEBBLE_HTTP_PORT" --dir "$D" -d untrusted.paf.test
expect_rc 1
expect_err "$PEBBLE_DIR_URL"
expect_err "NOT trusted"
cert issue --acme-url "$PEBBLE_DIR_URL" --cacert "$PEBBLE_ROOT" --email admin@paf.test --agree-tos \
        --listen "127.0.0.1:$PEBBLE_HTTP_PORT" --dir "$D" -d untrusted.paf.test
expect_rc 1
expect_err "NOT trusted"
ok "ACME server's certificate not trusted (no --cacert, or another CA): exit 1, the URL and the TLS reason"

orders=$(pebble_count_orders)
issue "$D" -d '*.paf.test'
expect_rc 1
expect_err "*.paf.test"
expect_err "wildcard"
[ "$(pebble_count_orders)" = "$orders" ] || fail "wildcard: an order was made"
ok "a wildcard is refused before any order, saying it needs dns-01"

cert issue --acme-url "$PEBBLE_DIR_URL" --cacert "$PEBBLE_CA" --email admin@paf.test \
        --listen "127.0.0.1:$PEBBLE_HTTP_PORT" --dir "$tmp/no-tos" -d tos.paf.test
expect_rc 1
expect_err "terms of service"
expect_err "--agree-tos"
ok "a new account without --agree-tos: exit 1, naming the terms of service and --agree-tos"

issue "$D" -d x.paf.test --key-type ed448
expect_rc 2
expect_err "--key-type"
issue "$D" -d x.paf.test --challenge dns-01
expect_rc 2
expect_err "--challenge"
ok "bad --key-type and --challenge: usage errors (exit 2) naming the option"
pebble_cleanup

# ---- 2. EAB required, half the good nonces rejected, 10 s certificates ----
pebble_start --eab "kid-1:$(pebble_eab_key)" --nonce-reject 50 --validity 10
# Debug: paf logs each badNonce retry.
printf '[paf]\nlog-level = debug\n' >"$tmp/debug.conf"
E=$tmp/eab
issue "$E" -d renew.paf.test
expect_rc 1
expect_err "external account binding"
[ "$(count 'POST /sign-me-up' "$PEBBLE_LOG")" = 0 ] || fail "EAB missing: a newAccount request was sent"
[ ! -e "$E/_accounts" ] || [ -z "$(find "$E/_accounts" -name account.json)" ] ||
        fail "EAB missing: an account was stored"
issue "$E" -d renew.paf.test --eab-kid kid-1 --eab-hmac-key "$(pebble_eab_key)"
expect_rc 1
expect_err "external account binding JWS verification error"
ok "EAB required: without credentials exit 1 naming external account binding; a wrong HMAC key gets pebble's refusal"

bad_nonces=0
# issue_nonce DIR ARGS…: an issuance that must succeed under badNonce, and
# reuse the nonce of each badNonce answer (one newNonce per process).
issue_nonce() {
        _before=$(count nonce-plz "$PEBBLE_LOG")
        issue "$@" --config "$tmp/debug.conf"
        expect_rc 0 "under 50 % badNonce"
        _after=$(count nonce-plz "$PEBBLE_LOG")
        [ $((_after - _before)) = 1 ] ||
                fail "badNonce: $((_after - _before)) newNonce requests in one issuance, expected 1 (the error's nonce is to be used)"
        bad_nonces=$((bad_nonces + $(count 'badNonce, retry' "$tmp/err")))
}
issue_nonce "$E" -d renew.paf.test --eab-kid kid-1 --eab-hmac-key "$PEBBLE_EAB_KEY"
expect_out "renew.paf.test: issued"
pebble_verify_chain "$E/renew.paf.test/fullchain.pem" || fail "EAB: the chain does not verify"
ok "EAB required: with --eab-kid/--eab-hmac-key the account is created and the certificate issued"
renew_serial=$(cert_serial "$E/renew.paf.test/fullchain.pem")

orders=$(pebble_count_orders)
acme renew renew.paf.test --listen "127.0.0.1:$PEBBLE_HTTP_PORT" --dir "$E"
expect_rc 0
expect_out "renew.paf.test: not due"
[ "$(pebble_count_orders)" = "$orders" ] || fail "renew: an order for a certificate not due"
[ "$(cert_serial "$E/renew.paf.test/fullchain.pem")" = "$renew_serial" ] || fail "renew: not due, yet replaced"
ok "renew right after issuance: \"not due\", no order"

issue_nonce "$E" -d nonce1.paf.test
issue_nonce "$E" -d nonce2.paf.test -d 127.0.0.1
[ "$bad_nonces" -ge 1 ] || fail "badNonce: pebble rejected no nonce in three issuances at 50 %"
ok "badNonce at 50 %: three issuances, $bad_nonces badNonce answers retried, one newNonce per issuance"

# Wait until renew.paf.test is due (10 s certificates: at half the lifetime,
# less up to a tenth of that), then issue fresh.paf.test, not due for ~4 s.
cert show renew.paf.test --dir "$E"
due=$(epoch "$(show_field renewal)")
now=$(date +%s)
[ $((due - now)) -le 10 ] || fail "renew: the 10 s certificate is due only at $(show_field renewal)"
[ "$now" -gt "$due" ] || sleep $((due - now + 1))
issue "$E" -d fresh.paf.test
expect_rc 0
orders=$(pebble_count_orders)
# fresh.paf.test first: checked at once, well before it comes due.
acme renew fresh.paf.test renew.paf.test --listen "127.0.0.1:$PEBBLE_HTTP_PORT" --dir "$E"
expect_rc 0
expect_out "renew.paf.test: renewed"
expect_out "fresh.paf.test: not due"
[ "$(pebble_count_orders)" = $((orders + 1)) ] || fail "renew: $(($(pebble_count_orders) - orders)) orders, expected one"
[ "$(cert_serial "$E/renew.paf.test/fullchain.pem")" != "$renew_serial" ] || fail "renew: renew.paf.test still has serial $renew_serial"
pebble_verify_chain "$E/renew.paf.test/fullchain.pem" || fail "renew: the renewed chain does not verify"
ok "renew: the certificate that is due is renewed (new serial, one order), the other says \"not due\""

echo "all $n_checks checks passed"
