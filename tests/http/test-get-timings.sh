#!/bin/sh
# tests/http/test-get-timings.sh — paf get -w's time_namelookup, _connect, _appconnect,
# _pretransfer, _starttransfer and _redirect side by side with curl 7.88, on the same peers:
# timing_peer.py (an answer, or a TLS handshake, 300 ms late), nginx over TLS, paf serve over
# tcp, TLS, HTTP/2 and a unix socket. Each must be ordered as curl orders them and show a
# delay in the interval it happened in.
set -eu
# shellcheck source=get-side-by-side.sh
. "$PAF_TEST_SRCDIR/tests/http/get-side-by-side.sh"
command -v certtool >/dev/null 2>&1 || { echo "certtool not found: skipping"; exit 77; }
py=/usr/bin/python3
[ -x "$py" ] || py=$(command -v python3)
export PYTHONDONTWRITEBYTECODE=1
# shellcheck source=tests/http/https-certs.sh
. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"

# wait_for FILE PATTERN WHAT: at most 20 s for PATTERN in FILE.
wait_for() {
        i=0
        while ! grep -q "$2" "$1" 2>/dev/null; do
                i=$((i + 1))
                [ $i -lt 400 ] || fail "$3 did not start"
                sleep 0.05
        done
}

# One line per transfer, after the bodies' lines (which never start with "T ").
W='T %{time_namelookup} %{time_connect} %{time_appconnect} %{time_pretransfer} %{time_starttransfer} %{time_total} %{time_redirect}\n'
# times WHO ARGS…: curl or paf get -s -w "$W" ARGS; its time lines in $tmp/WHO.t.
times_of() {
        who=$1
        shift
        rc=0
        if [ "$who" = curl ]; then
                timeout 30 curl -s -w "$W" "$@" >"$tmp/out" 2>"$tmp/curl.err" || rc=$?
        else
                timeout 30 "$PAF_BIN" get -s -w "$W" "$@" >"$tmp/out" 2>"$tmp/paf.err" || rc=$?
        fi
        [ $rc = 0 ] || fail "$who $*: exit $rc"
        grep '^T ' "$tmp/out" >"$tmp/$who.t" || fail "$who $*: no -w line: $(cat "$tmp/out")"
}
# expect WHO N CONDITION WHAT: the Nth transfer's times hold CONDITION (awk, on nl c ac pt
# st t rd: namelookup, connect, appconnect, pretransfer, starttransfer, total, redirect).
expect() {
        sed -n "$2p" "$tmp/$1.t" |
                awk "{ nl = \$2; c = \$3; ac = \$4; pt = \$5; st = \$6; t = \$7; rd = \$8
                       exit !(($3) && NF == 8) }" ||
                fail "$1: $4: $(sed -n "$2p" "$tmp/$1.t") does not hold $3"
}
# curl's order; appconnect is 0 without TLS.
ORDER='0 < nl && nl <= c && c <= pt && (ac == 0 || (c <= ac && ac <= pt)) && pt <= st && st <= t'
# Along -L, the sums: a hop on the kept-alive connection adds to namelookup (the time it took
# to take it) and nothing to connect, so namelookup may pass connect, in curl's sums too.
CHAIN='0 < nl && c <= pt && (ac == 0 || (c <= ac && ac <= pt)) && pt <= st && st <= t'

mkdir "$tmp/certs" "$tmp/www"
https_ca "$tmp/certs" ca || fail "certtool: CA"
https_cert "$tmp/certs" srv ca localhost localhost 127.0.0.1 || fail "certtool: cert"
cafile=$tmp/certs/ca.pem
printf 'a file\n' >"$tmp/www/f.txt"

# ---- a peer that answers late, or handshakes late ----
"$py" "$PAF_TEST_SRCDIR/tests/http/timing_peer.py" "$tmp/http.port" 2>"$tmp/peer.err" &
pids="$pids $!"
"$py" "$PAF_TEST_SRCDIR/tests/http/timing_peer.py" "$tmp/tls.port" \
        --tls "$tmp/certs/srv.pem" "$tmp/certs/srv.key" 2>"$tmp/tlspeer.err" &
pids="$pids $!"
wait_for "$tmp/http.port" . "timing_peer.py"
wait_for "$tmp/tls.port" . "timing_peer.py --tls"
hp=$(cat "$tmp/http.port")
tp=$(cat "$tmp/tls.port")

# The connect is quick, the answer 300 ms late: the wait is between pretransfer and
# starttransfer, not before connect (the times were the response's, all of them, until paf
# timed the connect apart). By address, by name (the resolver), by --resolve.
for url in "http://127.0.0.1:$hp/slow" "http://localhost:$hp/slow" \
        "--resolve timing.test:$hp:127.0.0.1 http://timing.test:$hp/slow"; do
        for who in curl paf; do
                # shellcheck disable=SC2086 # the --resolve case is two words
                times_of "$who" $url
                expect "$who" 1 "$ORDER && ac == 0" "$url: order"
                expect "$who" 1 "st - pt >= 0.29 && c < 0.25 && pt < 0.25" "$url: the answer's wait"
        done
done
for who in curl paf; do
        times_of "$who" "http://127.0.0.1:$hp/slow"
        expect "$who" 1 "nl < 0.1" "an IP literal: no lookup"
        times_of "$who" --resolve "timing.test:$hp:127.0.0.1" "http://timing.test:$hp/slow"
        expect "$who" 1 "nl < 0.1" "--resolve: no lookup"
done
ok "an answer 300 ms late: starttransfer - pretransfer >= 0.3 s, connect quick, appconnect 0; --resolve and an address look nothing up"

# The TLS handshake 300 ms late: the wait is between connect and appconnect.
for who in curl paf; do
        times_of "$who" --cacert "$cafile" "https://localhost:$tp/fast"
        expect "$who" 1 "$ORDER" "TLS: order"
        expect "$who" 1 "ac - c >= 0.29 && c < 0.25 && pt - ac < 0.25" "TLS: the handshake's wait"
done
ok "a TLS handshake 300 ms late: appconnect - connect >= 0.3 s"

# -L: as curl 7.88, each time is the sum over the chain of the time from each request's
# start (so a 300 ms redirect shows in starttransfer and time_redirect, not in namelookup).
for who in curl paf; do
        times_of "$who" -L "http://127.0.0.1:$hp/redirect"
        expect "$who" 1 "$CHAIN" "-L: order"
        expect "$who" 1 "rd >= 0.29 && st >= 0.29 && st - pt >= 0.29 && nl < 0.25 && c < 0.25" \
                "-L: a 300 ms redirect"
        times_of "$who" --cacert "$cafile" -L "https://localhost:$tp/redirect"
        expect "$who" 1 "$CHAIN && ac - c >= 0.29 && rd >= 0.58 && rd <= t" "-L over TLS"
done
ok "-L: the chain's times add up as curl's, time_redirect the redirect's"

# Two URLs on one connection: the second one's has no connect nor handshake (0), as curl's.
for who in curl paf; do
        times_of "$who" --cacert "$cafile" "https://localhost:$tp/slow" "https://localhost:$tp/fast"
        [ "$(wc -l <"$tmp/$who.t")" = 2 ] || fail "$who: two URLs: $(cat "$tmp/$who.t")"
        expect "$who" 1 "$ORDER && ac - c >= 0.29 && st - pt >= 0.29" "first URL"
        expect "$who" 2 "c == 0 && ac == 0 && nl < 0.25 && nl <= pt && pt <= st && st <= t && t < 0.25" \
                "kept-alive connection"
done
ok "a kept-alive connection: connect and appconnect 0, nothing waited for"

# ---- real servers: nginx over TLS, paf serve over tcp, TLS, HTTP/2, a unix socket ----
ng=$tmp/ng
mkdir -p "$ng/tmp"
ngport=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$ng/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $ng/tmp;
  proxy_temp_path $ng/tmp;
  fastcgi_temp_path $ng/tmp;
  uwsgi_temp_path $ng/tmp;
  scgi_temp_path $ng/tmp;
  server {
    listen 127.0.0.1:$ngport ssl;
    ssl_certificate $tmp/certs/srv.pem;
    ssl_certificate_key $tmp/certs/srv.key;
    root $tmp/www;
  }
}
CONF
chmod -R a+rX "$tmp"
"$nginx" -p "$ng" -c "$ng/nginx.conf" -e /dev/null </dev/null >/dev/null 2>"$tmp/nginx.err" &
pids="$pids $!"
i=0
while ! "$py" -c "import socket; socket.create_connection(('127.0.0.1', $ngport), 1)" 2>/dev/null; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "nginx did not start"
        sleep 0.05
done

: >"$tmp/serve.err"
"$PAF_BIN" serve --quiet --listen 127.0.0.1:0 --listen-tls 127.0.0.1:0 --listen "$tmp/s.sock" \
        --root "$tmp/www" --cert "$tmp/certs/srv.pem" --key "$tmp/certs/srv.key" \
        2>>"$tmp/serve.err" &
pids="$pids $!"
wait_for "$tmp/serve.err" 'listening on https://' "paf serve"
wait_for "$tmp/serve.err" 'listening on http+unix://' "paf serve (unix)"
http=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/serve.err" | head -n 1)
https=$(sed -n 's|^paf serve: listening on https://||p' "$tmp/serve.err" | head -n 1)

for who in curl paf; do
        times_of "$who" --cacert "$cafile" "https://localhost:$ngport/f.txt"
        expect "$who" 1 "$ORDER && ac > c" "nginx over TLS"
        times_of "$who" "http://$http/f.txt"
        expect "$who" 1 "$ORDER && ac == 0" "paf serve"
        times_of "$who" --cacert "$cafile" "https://$https/f.txt"
        expect "$who" 1 "$ORDER && ac > c" "paf serve over TLS"
        times_of "$who" --cacert "$cafile" --http2 "https://$https/f.txt" "https://$https/f.txt"
        expect "$who" 1 "$ORDER && ac > c" "paf serve, HTTP/2"
        expect "$who" 2 "c == 0 && ac == 0 && pt <= st && st <= t" "paf serve, HTTP/2, second stream"
        times_of "$who" --unix-socket "$tmp/s.sock" "http://localhost/f.txt"
        expect "$who" 1 "$ORDER && ac == 0" "paf serve on a unix socket"
done
ok "nginx over TLS, paf serve over tcp, TLS, HTTP/2 and unix: curl's order, appconnect > connect with TLS only"

# %{json}: the same time_* members as curl's, with the values -w gives.
set -- -s -o /dev/null --cacert "$cafile" -w '%{json}' "https://localhost:$tp/fast"
timeout 30 curl "$@" >"$tmp/curl.json" || fail "curl %{json}"
timeout 30 "$PAF_BIN" get "$@" >"$tmp/paf.json" || fail "paf get %{json}"
"$py" - "$tmp/curl.json" "$tmp/paf.json" <<'EOF' || fail "%{json}: $(cat "$tmp/paf.json")"
import json, sys
curl, paf = (json.load(open(f)) for f in sys.argv[1:])
want = sorted(k for k in curl if k.startswith("time_"))
got = sorted(k for k in paf if k.startswith("time_"))
assert got == want, (got, want)
for j in (curl, paf):
    assert (0 < j["time_namelookup"] <= j["time_connect"] < j["time_appconnect"]
            <= j["time_pretransfer"] <= j["time_starttransfer"] <= j["time_total"]), j
    assert j["time_appconnect"] - j["time_connect"] >= 0.29, j
EOF
ok "%{json}: curl's time_* members, measured"
