#!/usr/bin/env bash
# bench/http2.sh — HTTP/2 server CPU per request: paf serve vs nginx (1 worker, http2 on), under h2load -c 50 -m 10, over TLS (h2 by ALPN) and cleartext (h2c, prior knowledge).
#
#   bench/http2.sh [--quick] [--duration SECS] [--rounds N] [--build DIR]
#
# Rows: a 13-byte file and a 4 KiB page, each over TLS 1.3 and over h2c,
# h2load -t1 -c50 -m10 (50 connections, 10 streams in flight on each). The
# server's CPU is utime+stime from /proc/PID/stat around the measured run.
# nginx runs as one process, access_log off, sendfile and open_file_cache
# on, like paf serve --quiet --workers 1; rounds alternate paf and nginx
# and the medians are compared, as in bench/http1.sh. Each server is pinned
# to CPU 0 and h2load to CPU 1 when the machine has two. Run by hand, not by
# test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

name=http2.sh
tools="h2load nginx certtool curl bc python3 taskset"
# shellcheck source=lib.sh
. bench/lib.sh
bench_init "$@"

[ -f "$build/plugins/tls.so" ] || { echo "http2.sh: no tls.so in $build/plugins" >&2; exit 1; }
paf_bin=$build/tools/paf
streams=10
server_cpu=
client_cpu=
if [ "$(nproc)" -ge 2 ]; then
        server_cpu="taskset -c 0"
        client_cpu="taskset -c 1"
fi

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

$server_cpu "$paf_bin" serve --quiet --workers 1 --listen 127.0.0.1:0 --listen-tls 127.0.0.1:0 \
        --root "$tmp/www" --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key" \
        2>"$tmp/paf.err" &
paf_pid=$!
pids+=("$paf_pid")
paf_h2c= paf_tls=
for _ in $(seq 200); do
        paf_h2c=$(sed -n 's|.*listening on http://||p' "$tmp/paf.err" | head -n 1)
        paf_tls=$(sed -n 's|.*listening on https://||p' "$tmp/paf.err" | head -n 1)
        [ -n "$paf_h2c" ] && [ -n "$paf_tls" ] && break
        kill -0 $paf_pid 2>/dev/null || { cat "$tmp/paf.err" >&2; exit 1; }
        sleep 0.05
done
[ -n "$paf_tls" ] || { echo "http2.sh: paf serve did not start: $(cat "$tmp/paf.err")" >&2; exit 1; }

nginx_tls_port=$(free_port)
nginx_h2c_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<CONF
$(nginx_conf_head)
        types { text/html html; text/plain txt; }
        tcp_nopush on;
        open_file_cache max=1000 inactive=20s;
        open_file_cache_valid 1s;
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        http2_max_concurrent_streams 100;
        server {
                listen 127.0.0.1:$nginx_tls_port ssl http2;
                listen 127.0.0.1:$nginx_h2c_port http2;
                ssl_certificate $tmp/certs/server.pem;
                ssl_certificate_key $tmp/certs/server.key;
                root $tmp/www;
        }
}
CONF
$server_cpu nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.err" &
nginx_pid=$!
pids+=("$nginx_pid")
for _ in $(seq 200); do
        curl -s -o /dev/null --cacert "$cacert" "https://127.0.0.1:$nginx_tls_port/hello.txt" && break
        sleep 0.05
done

# Both answer the same bytes over h2, by ALPN and with prior knowledge.
for url in "https://$paf_tls" "https://127.0.0.1:$nginx_tls_port" "http://$paf_h2c" \
        "http://127.0.0.1:$nginx_h2c_port"; do
        for f in hello.txt index.html; do
                out=$(curl -s --http2-prior-knowledge --cacert "$cacert" -o "$tmp/got" \
                        -w '%{http_version}' "$url/$f")
                [ "$out" = 2 ] && cmp -s "$tmp/got" "$tmp/www/$f" ||
                        { echo "http2.sh: $url/$f: wrong answer (HTTP/$out)" >&2; exit 1; }
        done
done

# run_wrk URL MODE SECS (the name bench/lib.sh calls): h2load, prints
# "requests|errors".
run_wrk() {
        local url=$1 secs=$3 out
        out=$($client_cpu h2load -t1 -c$connections -m$streams -D "$secs" "$url" 2>&1)
        echo "$out" >>"$tmp/h2load.log"
        local requests errors
        requests=$(echo "$out" | sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p')
        errors=$(echo "$out" | sed -n 's/^requests: .* succeeded, \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2/p' |
                awk '$1 + $2 > 0 { print $1 " failed, " $2 " errored" }')
        echo "${requests:-0}|$errors"
}

row() {
        local base_paf base_nginx
        if [ "$2" = tls ]; then
                base_paf=https://$paf_tls base_nginx=https://127.0.0.1:$nginx_tls_port
        else
                base_paf=http://$paf_h2c base_nginx=http://127.0.0.1:$nginx_h2c_port
        fi
        bench_row "$1" "paf serve" "$paf_pid" "$base_paf$3" "$nginx_pid" "$base_nginx$3" keep-alive
}
echo
echo "h2load -t1 -c$connections -m$streams -D ${duration}s, $rounds round(s) per row"
printf '%-34s %-10s %10s %9s %8s %10s\n' "row" "server" "requests" "req/s" "cpu s" "cpu us/req"
row "hello 13 B, h2 over TLS" tls /hello.txt
row "static 4 KiB, h2 over TLS" tls /index.html
row "hello 13 B, h2c" h2c /hello.txt
row "static 4 KiB, h2c" h2c /index.html

bench_table
