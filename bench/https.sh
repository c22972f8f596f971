#!/usr/bin/env bash
# bench/https.sh — HTTPS server CPU per request and per handshake: paf serve --listen-tls (tls.so, GnuTLS) vs nginx ssl (OpenSSL), ECDSA P-256, TLS 1.3, under wrk.
#
#   bench/https.sh [--quick] [--duration SECS] [--rounds N] [--build DIR]
#
# Rows: keep-alive (wrk -t1 -c50) on a 13-byte and a 4 KiB file; then a new
# TLS connection per request (wrk -H 'Connection: close'): requests per
# second are full handshakes per second (neither server resumes sessions:
# nginx runs with its session cache and tickets off, like tls.so). The
# server's CPU is utime+stime from /proc/PID/stat around the measured run.
# nginx runs as one process, access_log off, like paf serve --quiet; rounds
# alternate paf and nginx and the medians are compared, as in bench/http1.sh.
# Run by hand, not by test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

name=https.sh
tools="wrk nginx certtool curl bc python3"
# shellcheck source=lib.sh
. bench/lib.sh
bench_init "$@"

[ -f "$build/plugins/tls.so" ] || { echo "https.sh: no tls.so in $build/plugins" >&2; exit 1; }
paf_bin=$build/tools/paf

# ---- certificates and files ----
# shellcheck source=../tests/http/https-certs.sh
. tests/http/https-certs.sh
mkdir "$tmp/certs"
https_ca "$tmp/certs" ca
https_cert "$tmp/certs" server ca localhost localhost 127.0.0.1
chmod 0644 "$tmp/certs"/*
cacert=$tmp/certs/ca.pem

mkdir -p "$tmp/www"
printf 'hello, world\n' >"$tmp/www/hello.txt"
bench_page "$tmp/www/index.html"

# ---- servers ----

"$paf_bin" serve --quiet --listen-tls 127.0.0.1:0 --root "$tmp/www" \
        --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key" 2>"$tmp/paf.err" &
paf_pid=$!
pids+=("$paf_pid")
paf_addr=
for _ in $(seq 200); do
        paf_addr=$(sed -n 's|.*listening on https://||p' "$tmp/paf.err" | head -n 1)
        [ -n "$paf_addr" ] && break
        kill -0 $paf_pid 2>/dev/null || { cat "$tmp/paf.err" >&2; exit 1; }
        sleep 0.05
done
[ -n "$paf_addr" ] || { echo "https.sh: paf serve did not start: $(cat "$tmp/paf.err")" >&2; exit 1; }

nginx_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<CONF
$(nginx_conf_head)
        types { text/html html; text/plain txt; }
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        server {
                listen 127.0.0.1:$nginx_port ssl;
                ssl_certificate $tmp/certs/server.pem;
                ssl_certificate_key $tmp/certs/server.key;
                root $tmp/www;
        }
}
CONF
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.err" &
nginx_pid=$!
pids+=("$nginx_pid")
nginx_addr=127.0.0.1:$nginx_port
for _ in $(seq 200); do
        curl -s -o /dev/null --cacert "$cacert" "https://$nginx_addr/hello.txt" && break
        sleep 0.05
done

# Both answer the same bytes over TLS 1.3 with the same certificate.
for addr in "$paf_addr" "$nginx_addr"; do
        for f in hello.txt index.html; do
                cmp -s <(curl -s --cacert "$cacert" "https://$addr/$f") "$tmp/www/$f" ||
                        { echo "https.sh: https://$addr/$f: wrong answer" >&2; exit 1; }
        done
        v=$(curl -sv --cacert "$cacert" -o /dev/null "https://$addr/hello.txt" 2>&1 |
                sed -n 's/^\* SSL connection using \([^ ]*\) \/ \(.*\)/\1 \2/p')
        echo "https://$addr: $v"
done

# run_wrk URL MODE SECS: prints "requests|errors".
run_wrk() {
        local url=$1 mode=$2 secs=$3 out
        if [ "$mode" = new-connection ]; then
                out=$(wrk -t$threads -c$connections -d${secs}s -H 'Connection: close' "$url")
        else
                out=$(wrk -t$threads -c$connections -d${secs}s "$url")
        fi
        echo "$out" >>"$tmp/wrk.log"
        local requests errors
        requests=$(echo "$out" | sed -n 's/^ *\([0-9]*\) requests in .*/\1/p')
        errors=$(echo "$out" | awk '/Socket errors|Non-2xx/ { e = e $0 "; " } END { print e }')
        echo "$requests|$errors"
}

row() {
        bench_row "$1" "paf serve" "$paf_pid" "https://$paf_addr$2" "$nginx_pid" \
                "https://$nginx_addr$2" "$3"
}
bench_header
row "hello 13 B, keep-alive" /hello.txt keep-alive
row "static 4 KiB, keep-alive" /index.html keep-alive
row "new TLS connection per request" /hello.txt new-connection

bench_table
echo "In the last row each request is a full TLS 1.3 handshake: req/s = handshakes/s, us/req = CPU per handshake."
