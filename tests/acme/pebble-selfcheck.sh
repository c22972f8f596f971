#!/bin/sh
# tests/acme/pebble-selfcheck.sh — checks tests/acme/pebble.sh with certbot as the client; run by hand (not by meson): sh tests/acme/pebble-selfcheck.sh
#
# Issues, verifies and revokes a certificate; then badNonce at 50 %, EAB
# required (without and with credentials), a challenge that fails because
# challtestsrv points the name elsewhere, a short validity, and that
# pebble_stop leaves nothing running. About 15 s, most of it certbot.
set -eu
cd "$(dirname "$0")/../.."
. tests/acme/pebble.sh

command -v certbot >/dev/null || { echo "selfcheck: certbot not found (scripts/deps.sh)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'pebble_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

fail() {
        echo "FAIL: $*" >&2
        [ ! -s "$tmp/certbot.out" ] || { echo "--- certbot:" >&2; tail -n 20 "$tmp/certbot.out" >&2; }
        exit 1
}
ok() {
        echo "ok: $*"
}

# cb DIR ARGS…: certbot with its state in DIR, trusting pebble's HTTPS.
cb() {
        _d=$1
        shift
        REQUESTS_CA_BUNDLE=$PEBBLE_CA certbot "$@" -n --server "$PEBBLE_DIR_URL" \
                --config-dir "$_d/etc" --work-dir "$_d/work" --logs-dir "$_d/log" \
                >"$tmp/certbot.out" 2>&1
}
# issue DIR NAME… [certbot options]: an http-01 issuance, certbot answering
# on the port pebble's VA dials.
issue() {
        _d=$1
        shift
        cb "$_d" certonly --agree-tos -m admin@paf.test --standalone \
                --http-01-address 127.0.0.1 --http-01-port "$PEBBLE_HTTP_PORT" --key-type ecdsa "$@"
}

# 1. issue two names, verify, revoke
pebble_start
ok "pebble up: $PEBBLE_DIR_URL, VA http-01 port $PEBBLE_HTTP_PORT, tls-alpn-01 port $PEBBLE_TLS_PORT"
[ "$(pebble_count_orders)" = 0 ] || fail "orders before any client: $(pebble_count_orders)"
issue "$tmp/a" -d paf.test -d www.paf.test || fail "certbot could not issue"
chain=$tmp/a/etc/live/paf.test/fullchain.pem
[ "$(grep -c 'BEGIN CERTIFICATE' "$chain")" = 2 ] || fail "chain is not leaf + intermediate"
pebble_verify_chain "$chain" || fail "chain does not verify against $PEBBLE_ROOT"
ok "issued, chain verifies against this run's root"
# The chain must not verify against another root: the check can fail.
certtool --generate-privkey --key-type=ecdsa --no-text --outfile "$tmp/other.key" 2>/dev/null
printf '%s\n' 'cn = "other"' ca cert_signing_key >"$tmp/other.tmpl"
certtool --generate-self-signed --load-privkey "$tmp/other.key" --template "$tmp/other.tmpl" \
        --no-text --outfile "$tmp/other.pem" 2>/dev/null
if PEBBLE_ROOT=$tmp/other.pem pebble_verify_chain "$chain" 2>/dev/null; then
        fail "chain verifies against an unrelated root"
fi
ok "pebble_verify_chain refuses an unrelated root"
[ "$(pebble_count_orders)" = 1 ] || fail "pebble_count_orders: $(pebble_count_orders), expected 1"
ok "pebble_count_orders: 1"
serial=$(cert_serial "$chain")
[ "$(pebble_cert_status "$serial")" = Valid ] || fail "status of $serial: $(pebble_cert_status "$serial")"
cb "$tmp/a" revoke --cert-path "$chain" --reason keycompromise --no-delete-after-revoke ||
        fail "certbot could not revoke"
[ "$(pebble_cert_status "$serial")" = Revoked ] || fail "status of $serial after revoke: $(pebble_cert_status "$serial")"
pebble_cert_status "$serial" --json | grep -q '"Reason": 1' || fail "revocation reason is not 1"
ok "revoked: serial $serial is Revoked, reason 1 (keyCompromise)"

# 2. a name that challtestsrv points elsewhere: the VA cannot connect
challtest_set_a bad.paf.test 127.0.0.2
if issue "$tmp/b" -d bad.paf.test; then
        fail "issued although bad.paf.test points to 127.0.0.2"
fi
grep -q '127.0.0.2' "$tmp/certbot.out" || fail "certbot's error does not name 127.0.0.2"
ok "challenge failed: $(grep -m1 -o 'Detail: .*' "$tmp/certbot.out")"
challtest_clear_a bad.paf.test
issue "$tmp/b" -d bad.paf.test || fail "bad.paf.test still fails after challtest_clear_a"
ok "challtest_clear_a: bad.paf.test issues again"
pids="$PEBBLE_PID $CHALLTEST_PID"
pebble_stop
for p in $pids; do
        ! kill -0 "$p" 2>/dev/null || fail "pid $p still running after pebble_stop"
done
ok "pebble_stop: pids $pids gone"
pebble_cleanup

# 3. half of the good nonces refused. certbot 2.1's acme library retries a
# badNonce once only (and then trips over a josepy AttributeError), so at 50 %
# most of its runs fail: what is checked is that pebble refuses nonces, seen
# from certbot's side; an issuance in up to 5 tries is reported, not required.
pebble_start --nonce-reject 50
grep -q 'Configured to reject 50% of good nonces' "$PEBBLE_LOG" || fail "pebble does not say it rejects 50%"
tries=0 rejected=0 issued=no
while [ $tries -lt 5 ]; do
        tries=$((tries + 1))
        rm -rf "$tmp/c"
        issue "$tmp/c" -d paf.test && issued=yes
        n=$(grep -c '"type": "urn:ietf:params:acme:error:badNonce"' "$tmp/c/log/letsencrypt.log" || true)
        rejected=$((rejected + n))
        [ $issued = no ] || break
done
[ $rejected -gt 0 ] || fail "no badNonce in certbot's logs at 50%"
if [ $issued = yes ]; then
        pebble_verify_chain "$tmp/c/etc/live/paf.test/fullchain.pem" || fail "chain does not verify (nonce 50)"
fi
ok "nonce-reject 50: certbot met $rejected badNonce in $tries run(s); issued: $issued"
pebble_cleanup

# 3b. a short certificate lifetime
pebble_start --validity 600
grep -q 'Using certificate validity period of 600 seconds' "$PEBBLE_LOG" || fail "pebble ignores --validity"
issue "$tmp/v" -d paf.test || fail "certbot could not issue (validity 600)"
life=$(certtool -i --infile "$tmp/v/etc/live/paf.test/cert.pem" | python3 -c '
import re, sys, datetime
t = [datetime.datetime.strptime(m, "%a %b %d %H:%M:%S UTC %Y")
     for m in re.findall(r"(?:Not Before|Not After): (.*)", sys.stdin.read())]
print(int((t[1] - t[0]).total_seconds()))')
[ "$life" -le 601 ] || fail "--validity 600: certificate lives $life s"
ok "validity 600: the certificate lives $life s"
pebble_cleanup

# 4. EAB required
kid='kid-1'
key=$(pebble_eab_key)
pebble_start --eab "$kid:$key"
grep -q '"externalAccountRequired": true' "$PEBBLE_WORK/dir.json" || fail "directory does not require EAB"
if issue "$tmp/d" -d paf.test; then
        fail "issued without EAB although it is required"
fi
ok "EAB missing: $(grep -m1 -i 'external' "$tmp/certbot.out")"
issue "$tmp/e" -d paf.test --eab-kid "$PEBBLE_EAB_KID" --eab-hmac-key "$PEBBLE_EAB_KEY" ||
        fail "certbot could not issue with EAB"
pebble_verify_chain "$tmp/e/etc/live/paf.test/fullchain.pem" || fail "chain does not verify (EAB)"
ok "EAB given: issued, chain verifies"
if issue "$tmp/f" -d paf.test --eab-kid "$kid" --eab-hmac-key "$(pebble_eab_key)"; then
        fail "issued with a wrong EAB key"
fi
ok "EAB wrong key: $(grep -m1 -i 'Error' "$tmp/certbot.out")"
pebble_cleanup

# 5. longer chains and alternate roots are what pebble says they are
pebble_start --chain-length 2 --alternate-roots 1
issue "$tmp/g" -d paf.test --preferred-chain "$(certtool -i --infile "$PEBBLE_ROOT" |
        sed -n 's/.*Subject: CN=//p' | head -n 1)" || fail "certbot could not issue (chain length 2)"
n=$(grep -c 'BEGIN CERTIFICATE' "$tmp/g/etc/live/paf.test/fullchain.pem")
[ "$n" = 3 ] || fail "--chain-length 2: $n certificates in the chain, expected 3"
pebble_verify_chain "$tmp/g/etc/live/paf.test/fullchain.pem" || fail "chain does not verify (length 2)"
_pebble_get "$PEBBLE_MGMT/roots/1" "$tmp/root1.pem" || fail "no /roots/1 with --alternate-roots 1"
cmp -s "$tmp/root1.pem" "$PEBBLE_ROOT" && fail "/roots/1 is /roots/0"
ok "chain length 2: 3 certificates, verifies; /roots/1 exists"
pebble_cleanup
echo "selfcheck: all passed"
