#!/bin/sh
# tests/acme/test-cert-mock.sh — `paf cert` against tests/acme/mock-acme.py, the ACME server that does what pebble 2.4 does not: Retry-After (seconds and HTTP dates) while polling and on 429/503, ARI renewal windows and "replaces", alternate chains, problem documents with subproblems, badNonce storms.
set -eu
for tool in python3 certtool openssl curl; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
python3 -c 'import cryptography' 2>/dev/null || { echo "python3-cryptography missing: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
here=$PAF_TEST_SRCDIR/tests/acme
. "$here/pebble.sh" # free_port
. "$here/mock-lib.sh"

cleanup_extra() { mock_stop; }
# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/out $tmp/mock.err"

# paf_cert SUBCOMMAND [args…]: against the mock, state in $tmp/state, output in $tmp/out.
paf_cert() {
        sub=$1
        shift
        extra=
        case $sub in issue | renew) extra="--listen 127.0.0.1:$HTTP_PORT" ;; esac
        # shellcheck disable=SC2086
        "$PAF_BIN" cert "$sub" --acme-url "$ACME_URL" --cacert "$tmp/ca.pem" --dir "$tmp/state" \
                $extra "$@" >"$tmp/out" 2>&1
}

# ---- Retry-After while polling: seconds, then HTTP dates ----
mock_start --retry-after-poll 1 --pending-polls 2 --no-authz-reuse
paf_cert issue --email admin@paf.test --agree-tos -d poll.paf.test -v || fail "issue with Retry-After polling"
certtool --verify --load-ca-certificate "$tmp/root.pem" --infile "$tmp/state/poll.paf.test/fullchain.pem" \
        >"$tmp/verify" 2>&1 || fail "the chain does not verify: $(cat "$tmp/verify")"
# Every poll that followed an answer with Retry-After: 1 came at least 1 s later.
gaps=$(log_query '[round(b["t"] - a["t"], 2) for a, b in zip(L, L[1:]) if a.get("retry_after") == 1 and b["resource"] in ("authz", "order", "challenge")]')
echo "gaps after Retry-After: 1: $gaps"
python3 -c "import sys; g = $gaps; sys.exit(0 if len(g) >= 3 and min(g) >= 0.95 else 1)" ||
        fail "paf polled sooner than Retry-After asked: $gaps"
ok "polling honours Retry-After in seconds ($gaps s between polls), and the chain verifies"

mock_start --retry-after-poll 2 --retry-after-date --pending-polls 1 --no-authz-reuse
paf_cert issue --agree-tos -d date.paf.test || fail "issue with Retry-After dates"
gaps=$(log_query '[round(b["t"] - a["t"], 2) for a, b in zip(L, L[1:]) if isinstance(a.get("retry_after"), str) and b["resource"] in ("authz", "order", "challenge")]')
python3 -c "import sys; g = $gaps; sys.exit(0 if len(g) >= 2 and min(g) >= 1.0 else 1)" ||
        fail "paf polled sooner than the Retry-After date: $gaps"
ok "polling honours Retry-After as an HTTP date ($gaps s)"

# ---- 429 on newOrder, 503 on the directory: waited out as asked ----
mock_start --rate-limit-neworder 1 --limit-retry-after 2 --unavailable 1
paf_cert issue --agree-tos -d busy.paf.test || fail "issue through 503 and 429"
seq=$(log_query '[(l["resource"], l["status"]) for l in L if l["resource"] in ("newOrder",)]')
gap=$(log_query '[round(b["t"] - a["t"], 2) for a, b in zip(L, L[1:]) if a["status"] == 429][0]')
echo "newOrder: $seq, then $gap s"
case $seq in "[('newOrder', 429), ('newOrder', 201)]") ;; *) fail "newOrder sequence: $seq" ;; esac
python3 -c "import sys; sys.exit(0 if $gap >= 1.95 else 1)" || fail "retried after $gap s, asked 2"
first=$(log_query 'L[0]["status"]')
[ "$first" = 503 ] || fail "the first request was not the 503: $first"
ok "a 503 and a 429 with Retry-After are waited out (${gap} s for 2) and the order goes on"

# ---- badNonce storm: every retry with the error's nonce ----
mock_start --nonce-reject 40 --seed 7
for i in 1 2 3; do
        paf_cert issue --agree-tos -d "nonce$i.paf.test" || fail "issue $i under 40% badNonce"
done
rejected=$(log_query 'sum(1 for l in L if l.get("nonce_rejected"))')
heads=$(log_query 'sum(1 for l in L if l["resource"] == "newNonce")')
[ "$rejected" -ge 3 ] || fail "only $rejected nonces rejected: the test proves nothing"
# One newNonce per run at most: after a badNonce the error's own nonce is used.
[ "$heads" -le 3 ] || fail "$heads newNonce requests for 3 runs: the error's nonce was not used"
ok "3 issuances under 40% badNonce ($rejected rejected), $heads newNonce requests"

# ---- ARI: the CA's window sets the renewal; asked again; "replaces" on renewal ----
mock_start --ari --ari-window 3600,7200 --ari-retry-after 120
now=$(date +%s)
paf_cert issue --agree-tos -d ari.paf.test || fail "issue with ARI"
renew=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["renew_at"])' "$tmp/state/ari.paf.test/meta.json")
[ "$renew" -ge $((now + 3600)) ] && [ "$renew" -le $((now + 7200 + 5)) ] ||
        fail "renewal at $renew, not in the CA's window [$((now + 3600)), $((now + 7200))]"
"$PAF_BIN" cert show --dir "$tmp/state" ari.paf.test >"$tmp/show" || fail "show"
grep -q "renewal:" "$tmp/show" || fail "show has no renewal time: $(cat "$tmp/show")"
ok "ARI: the renewal time is in the CA's window (+$((renew - now)) s)"
paf_cert renew ari.paf.test || fail "renew before the window"
grep -q "not due" "$tmp/out" || fail "renew before the window should say not due: $(cat "$tmp/out")"
orders=$(log_query 'sum(1 for l in L if l["resource"] == "newOrder")')
[ "$orders" = 1 ] || fail "$orders orders"
ok "before the window, renew makes no order"
# The CA moves the window into the past (an incident); once the check time
# comes (Retry-After, here 120 s: the stored time is moved back instead of
# waiting), renew asks ARI again and renews, naming the certificate replaced.
curl -sf -d '{"ari_window": "-120,-60"}' "$MGMT/set" >/dev/null || fail "mock /set"
python3 - "$tmp/state/ari.paf.test/meta.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["ari_check_at"] > 0, m
m["ari_check_at"] = 1
json.dump(m, open(sys.argv[1], "w"))
EOF
old=$(certtool -i <"$tmp/state/ari.paf.test/fullchain.pem" | sed -n 's/.*Serial Number (hex): //p' | head -1)
paf_cert renew ari.paf.test || fail "renew once ARI says now"
grep -q "renewed" "$tmp/out" || fail "not renewed: $(cat "$tmp/out")"
new=$(certtool -i <"$tmp/state/ari.paf.test/fullchain.pem" | sed -n 's/.*Serial Number (hex): //p' | head -1)
[ "$old" != "$new" ] || fail "same serial after renewal"
replaced=$(curl -sf "$MGMT/certs" | python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin) if c.get("replaced_by")))')
[ "$replaced" = 1 ] || fail "the new order did not name the replaced certificate (replaced: $replaced)"
ok "ARI asked again at its check time: a window in the past renews at once, with \"replaces\""

# ---- polling without Retry-After: exponential backoff ----
mock_start --pending-polls 4 --no-authz-reuse
paf_cert issue --agree-tos -d backoff.paf.test || fail "issue with slow validation"
gaps=$(log_query '[round(b["t"] - a["t"], 2) for a, b in zip(L, L[1:]) if a["resource"] == "authz" and b["resource"] == "authz"]')
echo "authorization polls, gaps: $gaps"
# The first gap also holds the challenge's answer; from the second on, each doubles.
python3 -c "import sys; g = $gaps[1:]; sys.exit(0 if len(g) >= 3 and all(b >= a * 1.5 for a, b in zip(g, g[1:])) and g[0] >= 0.05 else 1)" ||
        fail "no exponential backoff between polls: $gaps"
ok "without Retry-After, polls back off exponentially ($gaps s)"

# ---- a valid authorization is reused: no challenge the second time ----
mock_start
paf_cert issue --agree-tos -d reuse.paf.test || fail "first issue"
paf_cert issue --agree-tos -d reuse.paf.test --force -v || fail "second issue"
challenges=$(log_query 'sum(1 for l in L if l["resource"] == "challenge" and l["method"] == "POST" and l["status"] == 200)')
orders=$(log_query 'sum(1 for l in L if l["resource"] == "newOrder" and l["status"] == 201)')
[ "$orders" = 2 ] || fail "$orders orders, expected 2"
grep -q "already valid" "$tmp/out" || fail "the reuse is not reported: $(cat "$tmp/out")"
# A challenge is answered by one POST, and polled by POST-as-GET of the authorization.
answered=$(log_query 'sum(1 for l in L if l["resource"] == "challenge")')
[ "$answered" = 1 ] || fail "$answered challenge requests: the valid authorization was not reused"
ok "the second order reuses the valid authorization ($orders orders, $answered challenge answered)"

# ---- certificate keys: a new one per certificate, or kept; RSA on request ----
pubkey() { openssl pkey -in "$1" -pubout 2>/dev/null; }
k1=$(pubkey "$tmp/state/reuse.paf.test/key.pem")
paf_cert issue --agree-tos -d reuse.paf.test --force || fail "third issue"
k2=$(pubkey "$tmp/state/reuse.paf.test/key.pem")
[ -n "$k1" ] && [ "$k1" != "$k2" ] || fail "the renewal kept the key without --keep-key"
paf_cert issue --agree-tos -d reuse.paf.test --force --keep-key || fail "issue --keep-key"
k3=$(pubkey "$tmp/state/reuse.paf.test/key.pem")
[ "$k2" = "$k3" ] || fail "--keep-key made a new key"
paf_cert issue --agree-tos -d rsa.paf.test --key-type rsa3072 || fail "issue --key-type rsa3072"
certtool -i <"$tmp/state/rsa.paf.test/fullchain.pem" | grep -q "RSA.*3072\|3072 bits" ||
        fail "not an RSA 3072 certificate: $(certtool -i <"$tmp/state/rsa.paf.test/fullchain.pem" | grep -i algorithm | head -3)"
ok "each certificate gets a new key, --keep-key keeps it, --key-type rsa3072 is RSA 3072"

# ---- an existing RSA account key is used, with RS256 ----
mock_start
mkdir -p -m 0700 "$tmp/rsa-state/_accounts"
host=$(echo "$ACME_URL" | sed 's|https://||; s|/.*||; s|:|_|')
mkdir -m 0700 "$tmp/rsa-state/_accounts/$host"
certtool --generate-privkey --key-type=rsa --bits=2048 --no-text \
        --outfile "$tmp/rsa-state/_accounts/$host/account.key" 2>/dev/null
chmod 0600 "$tmp/rsa-state/_accounts/$host/account.key"
before=$(sha256sum <"$tmp/rsa-state/_accounts/$host/account.key")
"$PAF_BIN" cert issue --acme-url "$ACME_URL" --cacert "$tmp/ca.pem" --dir "$tmp/rsa-state" \
        --listen "127.0.0.1:$HTTP_PORT" --agree-tos -d rsa-account.paf.test >"$tmp/out" 2>&1 ||
        fail "issue with an existing RSA account key"
after=$(sha256sum <"$tmp/rsa-state/_accounts/$host/account.key")
[ "$before" = "$after" ] || fail "the RSA account key was replaced"
# The CA's account has this RSA key's RFC 7638 thumbprint.
want=$(python3 - "$tmp/rsa-state/_accounts/$host/account.key" <<'EOF2'
import base64, hashlib, json, sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
k = load_pem_private_key(open(sys.argv[1], "rb").read(), None).public_key().public_numbers()
b = lambda i: base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()
jwk = json.dumps({"e": b(k.e), "kty": "RSA", "n": b(k.n)}, separators=(",", ":"), sort_keys=True)
print(base64.urlsafe_b64encode(hashlib.sha256(jwk.encode()).digest()).rstrip(b"=").decode())
EOF2
)
alg=$(curl -sf "$MGMT/accounts" | python3 -c 'import json,sys; print(" ".join(a["thumbprint"] for a in json.load(sys.stdin)))')
[ "$alg" = "$want" ] || fail "the CA's account ($alg) is not the RSA key's ($want)"
ok "an existing RSA account key is used as it is (RS256; thumbprint $want)"

# ---- two processes sharing the state directory order one certificate ----
mock_start --pending-polls 2 --retry-after-poll 1 --no-authz-reuse
# The first answers the challenge on the port the CA checks; the second starts
# once the first has ordered, on another port: it can only succeed by waiting
# for the lock and taking the first one's certificate.
"$PAF_BIN" cert issue --acme-url "$ACME_URL" --cacert "$tmp/ca.pem" --dir "$tmp/state" \
        --listen "127.0.0.1:$HTTP_PORT" --agree-tos -d shared.paf.test >"$tmp/out1" 2>&1 &
p1=$!
i=0
until [ "$(log_query 'sum(1 for l in L if l["resource"] == "newOrder")')" = 1 ]; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "the first process made no order"
        sleep 0.1
done
"$PAF_BIN" cert issue --acme-url "$ACME_URL" --cacert "$tmp/ca.pem" --dir "$tmp/state" \
        --listen "127.0.0.1:$(free_port)" --agree-tos -d shared.paf.test >"$tmp/out2" 2>&1 &
p2=$!
wait "$p1" || fail "process 1: $(cat "$tmp/out1")"
wait "$p2" || fail "process 2: $(cat "$tmp/out2")"
orders=$(log_query 'sum(1 for l in L if l["resource"] == "newOrder")')
[ "$orders" = 1 ] || fail "two processes made $orders orders for one name"
grep -q "kept" "$tmp/out2" || fail "the second process did not take the first one's certificate: $(cat "$tmp/out2")"
cmp -s "$tmp/out1" "$tmp/out2" && fail "same output"
[ "$(sed -n 's/.*serial \([0-9a-f]*\).*/\1/p' "$tmp/out1")" = "$(sed -n 's/.*serial \([0-9a-f]*\).*/\1/p' "$tmp/out2")" ] ||
        fail "the two processes report different certificates"
ok "two processes sharing the state directory: one order, the other takes its certificate"

# ---- alternate chains: --preferred-chain ----
mock_start --alternate-chains 1
paf_cert issue --agree-tos -d alt.paf.test --preferred-chain "Mock Alternate Root X2" || fail "issue, alternate"
certtool --verify --load-ca-certificate "$tmp/alt-roots.pem" --infile "$tmp/state/alt.paf.test/fullchain.pem" \
        >"$tmp/verify" 2>&1 || fail "the preferred chain does not verify against the alternate root"
if certtool --verify --load-ca-certificate "$tmp/root.pem" --infile "$tmp/state/alt.paf.test/fullchain.pem" \
        >/dev/null 2>&1; then
        fail "the default chain was kept"
fi
paf_cert issue --agree-tos -d alt2.paf.test --preferred-chain "No Such Root" || fail "issue, no match"
certtool --verify --load-ca-certificate "$tmp/root.pem" --infile "$tmp/state/alt2.paf.test/fullchain.pem" \
        >/dev/null 2>&1 || fail "no match: the default chain should be kept"
ok "--preferred-chain picks the alternate chain by its top issuer, the default one otherwise"

# ---- problems: subproblems per identifier, a failed challenge's detail ----
mock_start --reject-name bad.paf.test --fail-challenge fail.paf.test --fail-challenge-detail "no answer from the moon"
if paf_cert issue --agree-tos -d good.paf.test -d bad.paf.test; then fail "a rejected name issued"; fi
grep -q "rejectedIdentifier" "$tmp/out" && grep -q "bad.paf.test" "$tmp/out" ||
        fail "the problem's subproblem is not shown: $(cat "$tmp/out")"
if paf_cert issue --agree-tos -d fail.paf.test; then fail "a failed challenge issued"; fi
grep -q "fail.paf.test" "$tmp/out" && grep -q "no answer from the moon" "$tmp/out" ||
        fail "the challenge's problem detail is not shown: $(cat "$tmp/out")"
ok "problems are shown with type, detail and per-identifier subproblems: $(tail -n 1 "$tmp/out")"

# ---- EAB required by the directory ----
mock_start --eab "kid-1:$(pebble_eab_key)"
if paf_cert issue --agree-tos -d eab.paf.test; then fail "issued without the required EAB"; fi
grep -q "external account binding" "$tmp/out" || fail "no EAB hint: $(cat "$tmp/out")"
ok "an EAB-requiring directory without --eab-kid: $(tail -n 1 "$tmp/out")"
mock_stop

echo "all $n_checks checks passed"
