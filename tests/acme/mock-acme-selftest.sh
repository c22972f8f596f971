#!/bin/bash
# SPDX-License-Identifier: MIT
# Checks tests/acme/mock-acme.py against real ACME clients: certbot, uacme
# (with ualpn for tls-alpn-01) and a small JWS client below for what those
# clients never send (ARI, "replaces", keyChange conflicts, forged requests).
# Run by hand (not part of meson): tests/acme/mock-acme-selftest.sh [SECTION...]
# Sections: certbot polls date nonce ratelimit unavailable eab alt fail uacme client
# Needs certbot, uacme (root, for its mount-namespace CA trick), certtool, curl.
# The work directory is removed when everything passed (KEEP=1 keeps it).
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d /tmp/mock-acme-selftest.XXXXXX)
pids=()
fails=0
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
        for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
say() { printf '%s\n' "$*"; }
ok() { say "  ok: $*"; }
bad() { say "  FAIL: $*"; fails=$((fails + 1)); }
check() { # check DESCRIPTION COMMAND...
        local d=$1; shift
        if "$@"; then ok "$d"; else bad "$d"; fi
}
free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_mock NAME ARGS...: sets D (its dir), P (ACME port), M (mgmt port), MOCK_PID
start_mock() {
        D=$work/$1; shift
        mkdir -p "$D"
        HP=$(free_port)
        TP=$(free_port)
        $py "$here/mock-acme.py" --tls-ca-out "$D/tlsca.pem" --root-out "$D/root.pem" \
                --log "$D/log.jsonl" --ready-file "$D/ready" --http-port "$HP" --tls-port "$TP" \
                "$@" >"$D/stdout" 2>"$D/stderr" &
        MOCK_PID=$!
        pids+=("$MOCK_PID")
        for _ in $(seq 100); do [ -s "$D/ready" ] && break; sleep 0.1; done
        read -r _ P M <"$D/ready" || { bad "mock did not start: $(cat "$D/stderr")"; return 1; }
        URL=https://127.0.0.1:$P/dir
}
stop_mock() {
        kill "$MOCK_PID"
        local i
        for i in $(seq 50); do kill -0 "$MOCK_PID" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$MOCK_PID" 2>/dev/null && bad "mock did not stop on SIGTERM"
        wait "$MOCK_PID" 2>/dev/null
        local rc=$?
        [ "$rc" = 0 ] || bad "mock exit status $rc after SIGTERM"
}
cb() { # certbot against the current mock, its http-01 standalone server on $HP
        REQUESTS_CA_BUNDLE=$D/tlsca.pem timeout 120 certbot -n --agree-tos -m admin@paf.test --server "$URL" \
                --config-dir "$D/cb/etc" --work-dir "$D/cb/work" --logs-dir "$D/cb/log" "$@"
}
cb_issue() {
        cb certonly --standalone --http-01-address 127.0.0.1 --http-01-port "$HP" --key-type ecdsa "$@"
}
cb_err() { # the ACME error certbot got (certbot 2.1 on Python 3.11 often shows only an AttributeError)
        local e
        e=$(grep -h -m1 -o 'acme.messages.Error: .*' "$D"/cb/log/letsencrypt.log* 2>/dev/null | tail -1)
        printf '%s | certbot said: %s' "${e:-no acme error}" "$(grep -v -e '^Saving debug' -e '^Account registered' -e '^Requesting' "$1" | grep -m1 .)"
}
jq_log() { # jq_log PY-EXPR: evaluate over the list L of log entries of the current mock
        $py -c "import json,sys; L=[json.loads(l) for l in open('$D/log.jsonl')]; print($1)"
}
poll_gaps() { # for each answer with Retry-After: "resource:waited/asked" until the next poll of that resource
        $py - "$D/log.jsonl" <<'PY'
import email.utils, json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if '"method"' in l]
out = []
for i, a in enumerate(L):
    if "retry_after" not in a:
        continue
    ra = a["retry_after"]
    asked = ra if isinstance(ra, int) else email.utils.parsedate_to_datetime(ra).timestamp() - a["wall"]
    path = a["path"].rsplit("/", 1)[0] if a["resource"] == "finalize" else a["path"]
    if a["resource"] == "challenge":
        nxt = [b for b in L[i + 1:] if b["resource"] == "authz"]
    else:
        nxt = [b for b in L[i + 1:] if b["path"] == path]
    if nxt:
        out.append("%s:%.2f/%.2f" % (a["resource"], nxt[0]["t"] - a["t"], asked))
print(" ".join(out))
PY
}
verify_chain() { # verify_chain ROOT CHAIN
        certtool --verify --load-ca-certificate "$1" --infile "$2" 2>&1 | grep -q "Chain verification output: Verified"
}

run_certbot() {
        say "== certbot: issue two names, verify, revoke, update, unregister"
        start_mock certbot --validity 3600 || return
        cb_issue -d paf.test -d www.paf.test >"$D/out" 2>&1
        check "certbot issued ($(grep -c . "$D/out") lines of output)" grep -q "Successfully received certificate" "$D/out"
        local live=$D/cb/etc/live/paf.test
        check "chain verifies against --root-out (certtool)" verify_chain "$D/root.pem" "$live/fullchain.pem"
        local life
        life=$($py -c "
from cryptography import x509; c=x509.load_pem_x509_certificate(open('$live/cert.pem','rb').read())
print(int((c.not_valid_after-c.not_valid_before).total_seconds()))")
        check "leaf lifetime is --validity 3600 (got $life)" test "$life" = 3600
        say "  log: $(jq_log '" ".join(e.get("resource","") + ":" + str(e.get("status","")) for e in L if "method" in e)')"
        local serial
        serial=$(certtool -i --infile "$live/cert.pem" | awk '/Serial Number/ {print $4}')
        cb revoke --cert-path "$live/cert.pem" --reason superseded --no-delete-after-revoke >"$D/rev" 2>&1
        check "certbot revoke" grep -q "successfully revoked" "$D/rev"
        curl -s "http://127.0.0.1:$M/cert-status-by-serial/$serial" >"$D/status"
        check "mgmt cert-status: Revoked, reason 4" $py -c "
import json,sys; d=json.load(open('$D/status')); sys.exit(not (d['Status']=='Revoked' and d['Reason']==4))"
        cb revoke --cert-path "$live/cert.pem" --reason superseded --no-delete-after-revoke >"$D/rev2" 2>&1
        check "second revoke answered alreadyRevoked" test "$(jq_log 'L[-1].get("problem")')" = \
                urn:ietf:params:acme:error:alreadyRevoked
        say "  certbot on alreadyRevoked: $(cb_err "$D/rev2")"
        cb update_account -m new@paf.test >"$D/upd" 2>&1
        check "certbot update_account -> contact changed" grep -q '"mailto:new@paf.test"' \
                <(curl -s "http://127.0.0.1:$M/accounts")
        cb unregister >"$D/unreg" 2>&1
        check "certbot unregister -> account deactivated" grep -q '"deactivated"' \
                <(curl -s "http://127.0.0.1:$M/accounts")
        stop_mock
}

run_polls() {
        say "== certbot with --retry-after-poll 1 --pending-polls 2"
        start_mock polls --retry-after-poll 1 --pending-polls 2 || return
        cb_issue -d paf.test >"$D/out" 2>&1
        check "certbot issued" grep -q "Successfully received certificate" "$D/out"
        say "  log: $(jq_log '" ".join("%s:%s%s@%.2f" % (e["resource"], e["status"], "(RA %s)" % e["retry_after"] if "retry_after" in e else "", e["t"] - L[0]["t"]) for e in L if "method" in e)')"
        gaps=$(poll_gaps)
        say "  gaps after Retry-After (resource: waited/asked): $gaps"
        check "certbot waited >= Retry-After before each re-poll" $py -c "import sys; g='$gaps'.split(); sys.exit(not g or not all(float(x.split(':')[1].split('/')[0]) >= float(x.split('/')[1]) for x in g))"
        check "authz answered pending twice with Retry-After" test "$(jq_log 'sum(1 for e in L if e.get("resource") == "authz" and e.get("retry_after") == 1)')" -ge 2
        stop_mock
}

run_date() {
        say "== certbot with --retry-after-poll 2 --retry-after-date --pending-polls 1"
        start_mock date --retry-after-poll 2 --retry-after-date --pending-polls 1 || return
        cb_issue -d paf.test >"$D/out" 2>&1
        check "certbot issued" grep -q "Successfully received certificate" "$D/out"
        say "  Retry-After sent: $(jq_log 'sorted(set(e["retry_after"] for e in L if "retry_after" in e))')"
        say "  gaps after Retry-After (resource: waited/asked): $(poll_gaps)"
        stop_mock
}

run_nonce() {
        say "== certbot with --nonce-reject 30 (five runs)"
        start_mock nonce --nonce-reject 30 --seed 7 || return
        local i good=0
        for i in 1 2 3 4 5; do
                rm -rf "$D/cb"
                if cb_issue -d paf.test >"$D/out$i" 2>&1 && grep -q "Successfully received" "$D/out$i"; then
                        good=$((good + 1))
                else
                        say "  run $i failed: $(cb_err "$D/out$i")"
                fi
        done
        say "  $good/5 certbot runs succeeded; badNonce answers: $(jq_log 'sum(1 for e in L if e.get("nonce_rejected"))') of $(jq_log 'sum(1 for e in L if e.get("method") == "POST")') POSTs"
        say "  after a badNonce certbot sends: $(jq_log 'sorted(set(next((b["resource"] for b in L[i+1:] if "method" in b), "-") for i, e in enumerate(L) if e.get("nonce_rejected")))')"
        # certbot retries a badNonce once, with a nonce from HEAD newNonce (not the one in the error);
        # a second rejection of the same request ends the run.
        check "certbot retried after badNonce (HEAD newNonce, same POST again)" test "$(jq_log 'any(L[i+1].get("resource") == "newNonce" and L[i+2].get("path") == e["path"] for i, e in enumerate(L[:-2]) if e.get("nonce_rejected"))')" = True
        stop_mock
}

run_ratelimit() {
        say "== certbot with --rate-limit-neworder 1"
        start_mock ratelimit --rate-limit-neworder 1 --limit-retry-after 3 || return
        cb_issue -d paf.test >"$D/out1" 2>&1
        say "  first run (exit $?): $(cb_err "$D/out1")"
        check "newOrder answered 429 rateLimited with Retry-After 3" test \
                "$(jq_log '[(e["status"], e.get("retry_after")) for e in L if e.get("resource") == "newOrder"][0]')" = "(429, 3)"
        cb_issue -d paf.test >"$D/out2" 2>&1
        check "second run issues" grep -q "Successfully received certificate" "$D/out2"
        stop_mock
}

run_unavailable() {
        say "== certbot with --unavailable 1"
        start_mock unavailable --unavailable 1 --limit-retry-after 2 || return
        cb_issue -d paf.test >"$D/out1" 2>&1
        say "  certbot (exit $?): $(cb_err "$D/out1")"
        check "directory answered 503 with Retry-After 2" test \
                "$(jq_log '[(e["status"], e.get("retry_after")) for e in L if "method" in e][0]')" = "(503, 2)"
        cb_issue -d paf.test >"$D/out2" 2>&1
        check "second run issues" grep -q "Successfully received certificate" "$D/out2"
        stop_mock
}

run_eab() {
        say "== certbot with --eab (external account binding)"
        local key=c2VjcmV0LWtleS1mb3ItbW9jay1hY21lLWVhYi10ZXN0cw
        start_mock eab --eab "kid-1:$key" || return
        cb_issue -d paf.test >"$D/out1" 2>&1
        say "  without EAB: $(grep -m1 -iE 'error|external' "$D/out1")"
        check "certbot sent no newAccount (it reads meta.externalAccountRequired)" test \
                "$(jq_log 'sum(1 for e in L if e.get("resource") == "newAccount")')" = 0
        cb_issue -d paf.test --eab-kid kid-1 --eab-hmac-key "X${key#?}" >"$D/out2" 2>&1
        check "wrong HMAC key refused (unauthorized)" test \
                "$(jq_log '[e.get("problem") for e in L if e.get("resource") == "newAccount"][-1]')" = \
                urn:ietf:params:acme:error:unauthorized
        cb_issue -d paf.test --eab-kid kid-1 --eab-hmac-key "$key" >"$D/out3" 2>&1
        check "with EAB: issued" grep -q "Successfully received certificate" "$D/out3"
        check "account bound to kid-1" grep -q '"eab_kid": "kid-1"' <(curl -s "http://127.0.0.1:$M/accounts")
        stop_mock
}

run_alt() {
        say "== certbot with --alternate-chains 1 --preferred-chain 'Mock Alternate Root X2'"
        start_mock alt --alternate-chains 1 --alt-roots-out "$work/alt/altroots.pem" || return
        cb_issue -d paf.test --preferred-chain "Mock Alternate Root X2" >"$D/out" 2>&1
        check "certbot issued" grep -q "Successfully received certificate" "$D/out"
        local live=$D/cb/etc/live/paf.test
        check "chain verifies against the alternate root" verify_chain "$D/altroots.pem" "$live/fullchain.pem"
        check "and not against the primary root" bash -c "! certtool --verify --load-ca-certificate '$D/root.pem' --infile '$live/fullchain.pem' 2>&1 | grep -q 'output: Verified'"
        check "alternate root is also /roots/1" cmp -s "$D/altroots.pem" <(curl -s "http://127.0.0.1:$M/roots/1")
        stop_mock
}

run_fail() {
        say "== certbot with --fail-challenge bad.paf.test"
        start_mock fail --fail-challenge bad.paf.test --fail-challenge-type connection \
                --fail-challenge-detail "bad.paf.test: the mock's VA refuses this name" || return
        cb_issue -d bad.paf.test >"$D/out" 2>&1
        say "  certbot (exit $?): $(grep -A2 -m1 'Detail' "$D/out" | tr '\n' ' ')"
        check "certbot shows the problem detail" grep -q "the mock's VA refuses this name" "$D/out"
        check "certbot shows the problem type" grep -q "connection" "$D/out"
        stop_mock
}

run_uacme() {
        say "== uacme (http-01 with IP identifier, tls-alpn-01 with ualpn, newkey, revoke, deactivate)"
        start_mock uacme --alternate-chains 1 || return
        # uacme 1.7.4 trusts only the system bundle: a private mount namespace swaps it.
        U() { unshare -m sh -c 'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt && exec "$@"' "$D/tlsca.pem" "$@"; }
        mkdir -p "$D/www/.well-known/acme-challenge" "$D/conf"
        $py -m http.server "$HP" --bind 127.0.0.1 --directory "$D/www" >/dev/null 2>&1 &
        local www=$!
        pids+=("$www")
        cat >"$D/hook.sh" <<EOF
#!/bin/sh
[ "\$2" = http-01 ] || exit 1
case "\$1" in
begin) printf '%s' "\$5" > "$D/www/.well-known/acme-challenge/\$4" ;;
*) rm -f "$D/www/.well-known/acme-challenge/\$4" ;;
esac
EOF
        chmod +x "$D/hook.sh"
        U timeout 60 uacme -v -y -c "$D/conf" -a "$URL" -t EC new admin@paf.test >"$D/new" 2>&1
        local rc=$?
        check "uacme new account (exit $rc)" test "$rc" = 0
        U timeout 60 uacme -v -c "$D/conf" -a "$URL" -t EC -h "$D/hook.sh" issue paf.test www.paf.test 127.0.0.1 >"$D/issue" 2>&1
        rc=$?
        check "uacme issue paf.test www.paf.test 127.0.0.1 (exit $rc)" test "$rc" = 0
        check "chain verifies" verify_chain "$D/root.pem" "$D/conf/paf.test/cert.pem"
        check "leaf has IP SAN 127.0.0.1" grep -q "IPAddress: 127.0.0.1" <(certtool -i --infile "$D/conf/paf.test/cert.pem")
        U timeout 60 uacme -v -c "$D/conf" -a "$URL" newkey >"$D/newkey" 2>&1
        rc=$?
        check "uacme newkey (keyChange) (exit $rc)" test "$rc" = 0
        check "keyChange answered 200" test "$(jq_log '[e["status"] for e in L if e.get("resource") == "keyChange"]')" = "[200]"
        U timeout 60 uacme -v -c "$D/conf" -a "$URL" -r 1 revoke "$D/conf/paf.test/cert.pem" >"$D/revoke" 2>&1
        rc=$?
        check "uacme revoke -r 1 with the new account key (exit $rc)" test "$rc" = 0
        check "revoked with reason 1" test "$(curl -s "http://127.0.0.1:$M/certs" | $py -c 'import json,sys; print([c["revoked"] for c in json.load(sys.stdin)])')" = "[1]"

        # tls-alpn-01: ualpn answers on the mock's --tls-port; the hook tells it the authorization.
        ualpn -v -b "127.0.0.1@$TP" -b "::1@$TP" -c "127.0.0.1@$(free_port)" -P 0 -s "$D/ualpn.sock" -p "$D/ualpn.pid" \
                >"$D/ualpn.log" 2>&1 &
        local ua=$!
        pids+=("$ua")
        sleep 0.3
        cat >"$D/alpnhook.sh" <<EOF
#!/bin/sh
[ "\$2" = tls-alpn-01 ] || exit 1
case "\$1" in
begin) out=\$(echo "auth \$3 \$5" | ualpn -s "$D/ualpn.sock") ;;
*) out=\$(echo "unauth \$3" | ualpn -s "$D/ualpn.sock") ;;
esac
[ "\${out%% *}" = OK ]
EOF
        chmod +x "$D/alpnhook.sh"
        U timeout 60 uacme -v -c "$D/conf" -a "$URL" -t EC -h "$D/alpnhook.sh" -l 1 issue alpn.paf.test ::1 >"$D/alpn" 2>&1
        rc=$?
        check "uacme + ualpn tls-alpn-01 for alpn.paf.test and ::1, alternate chain 1 (exit $rc)" test "$rc" = 0
        check "tls-alpn-01 validations in the log" test "$(jq_log 'sorted(e["identifier"] for e in L if e.get("event") == "validate" and e["type"] == "tls-alpn-01" and e["ok"])')" = "['::1', 'alpn.paf.test']"
        check "uacme -l 1 fetched the alternate chain" grep -q "Mock Alternate Root X2" \
                <(certtool -i --infile "$D/conf/alpn.paf.test/cert.pem")
        # The same with a wrong authorization digest: the mock must refuse it.
        sed 's/auth \$3 \$5/auth \$3 AAAA\${5#????}/' "$D/alpnhook.sh" >"$D/badhook.sh"
        chmod +x "$D/badhook.sh"
        U timeout 60 uacme -v -c "$D/conf" -a "$URL" -t EC -h "$D/badhook.sh" issue wrong.paf.test >"$D/wrong" 2>&1
        rc=$?
        check "wrong acmeIdentifier digest -> uacme fails (exit $rc)" test "$rc" != 0
        say "  mock: $(jq_log '[e["detail"] for e in L if e.get("identifier") == "wrong.paf.test"]')"
        check "validation refused with an acmeIdentifier detail" grep -q '"identifier": "wrong.paf.test", "ok": false, "detail": "tls-alpn-01 .*acmeIdentifier is' "$D/log.jsonl"
        U timeout 60 uacme -v -y -c "$D/conf" -a "$URL" deactivate >"$D/deact" 2>&1
        check "uacme deactivate" grep -q '"deactivated"' <(curl -s "http://127.0.0.1:$M/accounts")
        kill "$ua" "$www"
        stop_mock
}

run_client() {
        say "== JWS client: protocol checks, ARI, replaces, keyChange, revocation by cert key"
        start_mock client --ari --ari-window 3600,7200 --ari-retry-after 5 --reject-name forbidden.paf.test || return
        $py "$work/client.py" "$URL" "$D/tlsca.pem" "$D/root.pem" "$HP" "$TP" "$M" 2>&1 | sed 's/^/  /'
        local rc=${PIPESTATUS[0]}
        check "client checks (exit $rc)" test "$rc" = 0
        stop_mock
}

cat >"$work/client.py" <<'EOF'
import base64, hashlib, http.server, json, ssl, sys, threading, time, urllib.request, urllib.error
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

dir_url, cafile, rootfile, hport, tport, mport = sys.argv[1:7]
ERR = "urn:ietf:params:acme:error:"
fails = 0
def check(what, cond, extra=""):
    global fails
    print(("ok: " if cond else "FAIL: ") + what + (f" ({extra})" if extra and not cond else ""))
    fails += not cond
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
ctx = ssl.create_default_context(cafile=cafile)

def req(method, url, body=None, ctype="application/jose+json"):
    r = urllib.request.Request(url, data=body, method=method)
    if body is not None: r.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(r, context=ctx) as f: st, h, b = f.status, f.headers, f.read()
    except urllib.error.HTTPError as e: st, h, b = e.code, e.headers, e.read()
    if method == "GET" and b and "json" in h.get("Content-Type", ""): b = json.loads(b)
    return st, h, b

def jwk(key):
    n = key.public_key().public_numbers()
    if isinstance(key, rsa.RSAPrivateKey):
        i = lambda v: v.to_bytes((v.bit_length() + 7) // 8, "big")
        return {"e": b64(i(n.e)), "kty": "RSA", "n": b64(i(n.n))}
    sz = (key.curve.key_size + 7) // 8
    return {"crv": "P-%d" % key.curve.key_size, "kty": "EC", "x": b64(n.x.to_bytes(sz, "big")), "y": b64(n.y.to_bytes(sz, "big"))}
def thumb(key): return b64(hashlib.sha256(json.dumps(jwk(key), sort_keys=True, separators=(",", ":")).encode()).digest())
def sign(key, data):
    if isinstance(key, rsa.RSAPrivateKey): return "RS256", key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    sz = (key.curve.key_size + 7) // 8
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256() if sz == 32 else hashes.SHA384())))
    return "ES256" if sz == 32 else "ES384", r.to_bytes(sz, "big") + s.to_bytes(sz, "big")
def jws(key, url, payload, kid=None, nonce=None, extra=None):
    alg, _ = sign(key, b"")
    prot = {"alg": alg, "url": url}
    if nonce is not None: prot["nonce"] = nonce
    if kid: prot["kid"] = kid
    else: prot["jwk"] = jwk(key)
    prot.update(extra or {})
    p64 = b64(json.dumps(prot).encode())
    pl64 = "" if payload is None else b64(json.dumps(payload).encode())
    return {"protected": p64, "payload": pl64, "signature": b64(sign(key, f"{p64}.{pl64}".encode())[1])}

D = req("GET", dir_url)[2]
class Acct:
    def __init__(s, key=None): s.key = key or ec.generate_private_key(ec.SECP256R1()); s.kid = None; s.nonce = None
    def fresh(s):
        st, h, _ = req("HEAD", D["newNonce"]); s.nonce = h["Replay-Nonce"]
    def post(s, url, payload, use_jwk=False, raw=None, retry=True, nonce=None):
        for _ in range(10):
            if not s.nonce: s.fresh()
            body = raw if raw is not None else jws(s.key, url, payload, None if use_jwk else s.kid, nonce or s.nonce)
            st, h, b = req("POST", url, json.dumps(body).encode())
            s.nonce = h.get("Replay-Nonce")
            j = json.loads(b) if b and h.get("Content-Type", "").endswith("json") else b
            if retry and st == 400 and isinstance(j, dict) and j.get("type") == ERR + "badNonce": continue
            return st, h, j
        return st, h, j
    def new(s, **kw):
        st, h, j = s.post(D["newAccount"], dict({"termsOfServiceAgreed": True, "contact": ["mailto:t@paf.test"]}, **kw), use_jwk=True)
        if st in (200, 201): s.kid = h["Location"]
        return st, h, j

# An http-01 responder for this client's tokens.
tokens = {}
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        v = tokens.get(self.path.rsplit("/", 1)[-1])
        self.send_response(200 if v else 404); self.send_header("Content-Length", str(len(v or ""))); self.end_headers()
        self.wfile.write((v or "").encode())
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(hport)), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()

def wait(a, url, want, n=30):
    for _ in range(n):
        st, h, j = a.post(url, None)
        if j.get("status") in want: return st, h, j
        time.sleep(0.1)
    return st, h, j

def issue(a, names, replaces=None, ckey=None, csr_names=None):
    ids = [{"type": "ip" if n[0].isdigit() else "dns", "value": n} for n in names]
    pl = {"identifiers": ids}
    if replaces: pl["replaces"] = replaces
    st, h, o = a.post(D["newOrder"], pl)
    if st != 201: return st, o, None, None
    ourl = h["Location"]
    for az in o["authorizations"]:
        st, _, z = a.post(az, None)
        if z["status"] == "valid": continue
        ch = next(c for c in z["challenges"] if c["type"] == "http-01")
        tokens[ch["token"]] = ch["token"] + "." + thumb(a.key)
        a.post(ch["url"], {})
        wait(a, az, ("valid", "invalid"))
    ckey = ckey or ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(__import__("ipaddress").ip_address(n)) if n[0].isdigit() else x509.DNSName(n) for n in (csr_names or names)]
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
        x509.SubjectAlternativeName(sans), False).sign(ckey, hashes.SHA256())
    st, h, o = a.post(o["finalize"], {"csr": b64(csr.public_bytes(serialization.Encoding.DER))})
    if st != 200: return st, o, None, None
    st, h, o = wait(a, ourl, ("valid", "invalid"))
    st, h, chain = a.post(o["certificate"], None)
    return st, o, chain, ckey

def certid(pem):
    c = x509.load_pem_x509_certificate(pem)
    aki = c.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    n = c.serial_number
    return b64(aki) + "." + b64(n.to_bytes(n.bit_length() // 8 + 1, "big")), c

a = Acct()
# newAccount signed with kid
a.kid = dir_url.rsplit("/", 1)[0] + "/acct/0000"
st, h, j = a.post(D["newAccount"], {"termsOfServiceAgreed": True})
check("newAccount with kid -> malformed", st == 400 and j["type"] == ERR + "malformed", j)
a.kid = None
st, h, j = a.post(D["newAccount"], {"contact": ["mailto:t@paf.test"]}, use_jwk=True)
check("newAccount without termsOfServiceAgreed -> malformed", st == 400 and "terms" in j["detail"], j)
st, h, j = a.post(D["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
check("onlyReturnExisting for a new key -> accountDoesNotExist", j.get("type") == ERR + "accountDoesNotExist", j)
st, h, j = a.post(D["newAccount"], {"termsOfServiceAgreed": True, "contact": ["tel:+1"]}, use_jwk=True)
check("tel: contact -> unsupportedContact", j.get("type") == ERR + "unsupportedContact", j)
st, h, j = a.new()
check("newAccount -> 201 + Location", st == 201 and a.kid and j["status"] == "valid", (st, j))
st, h, j = a.new()
check("newAccount again -> 200, same account", st == 200 and h["Location"] == a.kid, st)
st, h, j = a.post(D["newAccount"], {"onlyReturnExisting": True}, use_jwk=True)
check("onlyReturnExisting -> 200 + Location", st == 200 and h["Location"] == a.kid, st)

for name, k in (("ES384", ec.generate_private_key(ec.SECP384R1())), ("RS256", rsa.generate_private_key(65537, 2048))):
    x = Acct(k); st, h, j = x.new()
    st2, h2, j2 = x.post(x.kid, None)
    check(f"{name} account: newAccount + POST-as-GET", st == 201 and st2 == 200 and j2["key"] == jwk(k), (st, st2, j2))
small = Acct(rsa.generate_private_key(65537, 1024))
st, h, j = small.new()
check("RSA 1024 account key -> badPublicKey", j.get("type") == ERR + "badPublicKey", j)
bad = jws(a.key, D["newAccount"], {"termsOfServiceAgreed": True}, None, a.nonce)
bad["protected"] = b64(json.dumps(dict(json.loads(base64.urlsafe_b64decode(bad["protected"] + "==")), alg="ES384")).encode())
st, h, j = a.post(D["newAccount"], None, raw=bad)
check("ES384 alg with a P-256 key -> malformed", st == 400 and "does not fit" in j.get("detail", ""), j)

# Nonces, URL, signature, content type.
used = a.nonce
a.post(a.kid, None)
st, h, j = a.post(a.kid, None, nonce=used, retry=False)
check("reused nonce -> badNonce with a fresh Replay-Nonce", st == 400 and j["type"] == ERR + "badNonce" and h.get("Replay-Nonce") not in (None, used), j)
st, h, j = a.post(a.kid, None, nonce="made-up", retry=False)
check("unknown nonce -> badNonce", j.get("type") == ERR + "badNonce", j)
st, h, j = a.post(a.kid, None, raw=jws(a.key, a.kid + "x", None, a.kid, a.nonce))
check("url mismatch -> 404 (wrong path) or unauthorized", st in (403, 404), (st, j))
st, h, j = a.post(D["newOrder"], None, raw=jws(a.key, D["keyChange"], {"identifiers": []}, a.kid, a.nonce))
check("protected url != request url -> unauthorized", st == 403 and j["type"] == ERR + "unauthorized", j)
forged = jws(a.key, a.kid, None, a.kid, a.nonce); forged["signature"] = b64(b"\x01" * 64)
st, h, j = a.post(a.kid, None, raw=forged)
check("bad signature -> malformed", st == 400 and "signature" in j["detail"], j)
other = ec.generate_private_key(ec.SECP256R1())
st, h, j = a.post(a.kid, None, raw=jws(other, a.kid, None, a.kid, a.nonce))
check("kid signed with another key -> malformed", st == 400 and j["type"] == ERR + "malformed", j)
st, hh, b = req("POST", a.kid, json.dumps(jws(a.key, a.kid, None, a.kid, a.nonce)).encode(), "application/json")
check("Content-Type application/json -> 415", st == 415 and "Replay-Nonce" in hh, st)
a.nonce = hh.get("Replay-Nonce")
st, h, b = req("GET", D["newOrder"])
check("GET on newOrder -> 405", st == 405, st)
st, h, b = req("GET", D["newNonce"])
check("GET newNonce -> 204 + Replay-Nonce + no-store", st == 204 and h["Replay-Nonce"] and h["Cache-Control"] == "no-store", st)

# Identifiers.
st, h, j = a.post(D["newOrder"], {"identifiers": [{"type": "dns", "value": "UPPER.test"}, {"type": "dns", "value": "*.w.test"},
              {"type": "ip", "value": "127.000.0.1"}, {"type": "email", "value": "x@y"}, {"type": "dns", "value": "forbidden.paf.test"},
              {"type": "dns", "value": "fine.paf.test"}]})
check("4 bad identifiers -> 4 subproblems (UPPER.test is lower-cased)", st == 400 and len(j.get("subproblems", [])) == 4, j)
print("   newOrder problem:", j.get("type"), "|", j.get("detail"))

# Issuance with a dns and an ip identifier; CSR checks.
st, h, o = a.post(D["newOrder"], {"identifiers": [{"type": "dns", "value": "a.paf.test"}, {"type": "ip", "value": "127.0.0.1"}]})
check("newOrder dns+ip -> 201 pending, 2 authz", st == 201 and o["status"] == "pending" and len(o["authorizations"]) == 2, o)
st, h, j = a.post(o["finalize"], {"csr": "AAAA"})
check("finalize while pending -> orderNotReady", st == 403 and j["type"] == ERR + "orderNotReady", j)
st, o, chain, ckey = issue(a, ["a.paf.test", "127.0.0.1"], csr_names=["a.paf.test"])
check("CSR missing the ip -> badCSR naming it", st == 400 and o["type"] == ERR + "badCSR" and "127.0.0.1" in o["detail"], o)
st, o, chain, ckey = issue(a, ["a.paf.test", "127.0.0.1"], ckey=a.key)
check("CSR with the account key -> badCSR", st == 400 and "account key" in o.get("detail", ""), o)
st, o, chain, ckey = issue(a, ["a.paf.test", "127.0.0.1"])
check("issue a.paf.test + 127.0.0.1 (authz reused)", st == 200 and o["status"] == "valid" and chain.startswith(b"-----BEGIN CERTIFICATE"), (st, o))
open(rootfile + ".chain.pem", "wb").write(chain)
import subprocess
v = subprocess.run(["certtool", "--verify", "--load-ca-certificate", rootfile, "--infile", rootfile + ".chain.pem"], capture_output=True, text=True)
check("chain verifies (certtool)", "Chain verification output: Verified" in v.stdout, v.stdout[-200:])

# tls-alpn-01 against nothing -> invalid with a connection problem, order invalid with subproblems.
st, h, o2 = a.post(D["newOrder"], {"identifiers": [{"type": "dns", "value": "nobody.paf.test"}]})
ourl = h["Location"]
st, h, z = a.post(o2["authorizations"][0], None)
ch = next(c for c in z["challenges"] if c["type"] == "tls-alpn-01")
st, h, c = a.post(ch["url"], {})
check("challenge response: processing, Link up", c["status"] == "processing" and 'rel="up"' in " ".join(h.get_all("Link")), (c, h.get_all("Link")))
st, h, z = wait(a, o2["authorizations"][0], ("valid", "invalid"))
err = z["challenges"][[c["type"] for c in z["challenges"]].index("tls-alpn-01")].get("error", {})
check("tls-alpn-01 to a closed port -> invalid, connection", z["status"] == "invalid" and err.get("type") == ERR + "connection", z)
print("   detail:", err.get("detail"))
st, h, o2 = a.post(ourl, None)
check("order invalid with a per-identifier subproblem", o2["status"] == "invalid" and o2["error"]["subproblems"][0]["identifier"]["value"] == "nobody.paf.test", o2)

# ARI.
cid, cert = certid(chain)
st, h, j = req("GET", D["renewalInfo"] + "/" + cid)
win = j.get("suggestedWindow", {}) if st == 200 else {}
def ts(s): return __import__("datetime").datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=__import__("datetime").timezone.utc).timestamp()
check("renewalInfo: window ~ now+3600..now+7200, Retry-After 5", st == 200 and abs(ts(win["start"]) - time.time() - 3600) < 120 and
      abs(ts(win["end"]) - time.time() - 7200) < 120 and h["Retry-After"] == "5", (st, j, h.get("Retry-After")))
st, h, j = req("GET", D["renewalInfo"] + "/AAAA.AAAA")
check("renewalInfo for an unknown certID -> 404", st == 404, st)
st, h, j = req("GET", D["renewalInfo"] + "/not-a-cert-id")
check("renewalInfo for a malformed certID -> 400", st == 400, st)
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{mport}/set", data=json.dumps({"ari_window": "-60,60"}).encode(), method="POST"))
st, h, j = req("GET", D["renewalInfo"] + "/" + cid)
check("mgmt /set ari_window -60,60 -> window now open", ts(j["suggestedWindow"]["start"]) < time.time() < ts(j["suggestedWindow"]["end"]), j)
st, o, j2, _ = issue(a, ["a.paf.test"], replaces="AAAA.AAAA")
check("replaces an unknown certID -> malformed", st == 400 and "replaces" in o["detail"], o)
b = Acct(); b.new()
st, o, _, _ = issue(b, ["a.paf.test"], replaces=cid)
check("replaces another account's cert -> unauthorized", st == 403, o)
st, o, chain2, _ = issue(a, ["a.paf.test", "127.0.0.1"], replaces=cid)
check("newOrder replaces=certID -> issued, order shows replaces", st == 200 and o.get("replaces") == cid, o)
st, o, _, _ = issue(a, ["a.paf.test"], replaces=cid)
check("replacing it again -> alreadyReplaced 409", st == 409 and o["type"] == ERR + "alreadyReplaced", o)
certs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{mport}/certs").read())
check("mgmt /certs records replaced_by", any(c["replaced_by"] for c in certs), certs)

# keyChange.
newkey = ec.generate_private_key(ec.SECP256R1())
def keychange(acct, nk, old=None):
    inner = jws(nk, D["keyChange"], {"account": acct.kid, "oldKey": jwk(old or acct.key)})
    return acct.post(D["keyChange"], inner)
st, h, j = keychange(a, newkey, old=newkey)
check("keyChange with a wrong oldKey -> malformed", st == 400 and "oldKey" in j["detail"], j)
st, h, j = keychange(a, b.key)
check("keyChange to another account's key -> 409 + Location", st == 409 and h.get("Location") == b.kid, (st, j))
st, h, j = keychange(a, newkey)
check("keyChange -> 200", st == 200, j)
st, h, j = a.post(a.kid, None)
check("old key no longer signs for the account", st == 400, j)
a.key = newkey
st, h, j = a.post(a.kid, None)
check("new key does", st == 200 and j["key"] == jwk(newkey), j)

# Revocation by the certificate key (jwk), reason 1; then ARI shows a past window.
st, o3, chain3, ck3 = issue(a, ["c.paf.test"])
der3 = x509.load_pem_x509_certificate(chain3).public_bytes(serialization.Encoding.DER)
r = Acct(ck3)
st, h, j = r.post(D["revokeCert"], {"certificate": b64(der3), "reason": 7}, use_jwk=True)
check("reason 7 -> badRevocationReason", j.get("type") == ERR + "badRevocationReason", j)
st, h, j = b.post(D["revokeCert"], {"certificate": b64(der3), "reason": 1})
check("revoke by an unrelated account -> unauthorized", st == 403, j)
st, h, j = r.post(D["revokeCert"], {"certificate": b64(der3), "reason": 1}, use_jwk=True)
check("revoke signed by the certificate key -> 200", st == 200, (st, j))
cid3, _ = certid(chain3)
st, h, j = req("GET", D["renewalInfo"] + "/" + cid3)
check("renewalInfo of a revoked cert -> window in the past", ts(j["suggestedWindow"]["end"]) < time.time(), j)

# Deactivation.
st, h, j = b.post(b.kid, {"status": "deactivated"})
check("account deactivate -> 200 deactivated", st == 200 and j["status"] == "deactivated", j)
st, h, j = b.post(b.kid, None)
check("deactivated account -> unauthorized", st == 403 and j["type"] == ERR + "unauthorized", j)

# 503 from the directory, without a nonce, with Retry-After.
urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{mport}/set", data=json.dumps({"unavailable": 1, "limit_retry_after": 4}).encode(), method="POST"))
st, h, j = req("GET", dir_url)
check("unavailable -> 503 Retry-After 4, no nonce", st == 503 and h["Retry-After"] == "4" and "Replay-Nonce" not in h, (st, dict(h)))
st, h, j = req("GET", dir_url)
check("then 200 again", st == 200, st)
sys.exit(1 if fails else 0)
EOF

sections=${*:-certbot polls date nonce ratelimit unavailable eab alt fail uacme client}
for s in $sections; do "run_$s"; done
if [ "$fails" = 0 ] && [ -z "${KEEP:-}" ]; then
        cleanup
        pids=()
        rm -rf "$work"
        say "== all passed"
        exit 0
fi
say "== $fails failure(s); logs in $work"
[ "$fails" = 0 ]
