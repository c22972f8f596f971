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

duration=10
rounds=3
build=build-bench
while [ $# -gt 0 ]; do
        case $1 in
        --quick) duration=3 rounds=1 ;;
        --rounds) rounds=$2; shift ;;
        --duration) duration=$2; shift ;;
        --build) build=$2; shift ;;
        -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "https.sh: unknown option $1" >&2; exit 2 ;;
        esac
        shift
done
connections=50
threads=1

for tool in wrk nginx certtool curl bc python3; do
        command -v $tool >/dev/null || { echo "https.sh: $tool not found (apt-get install wrk nginx-light gnutls-bin curl bc)" >&2; exit 1; }
done

# A release build of our own, so that a debug build/ does not skew the figures.
if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" --buildtype=release -Dtests=false >/dev/null
fi
if ! out=$(ninja -C "$build" 2>&1); then
        echo "$out" >&2
        echo "https.sh: build failed in $build" >&2
        exit 1
fi
build=$(cd "$build" && pwd)
[ -f "$build/plugins/tls.so" ] || { echo "https.sh: no tls.so in $build/plugins" >&2; exit 1; }
export PAF_PLUGIN_PATH=$build/plugins
paf_bin=$build/tools/paf

tmp=$(mktemp -d)
chmod 0755 "$tmp"
pids=()
cleanup() {
        for p in "${pids[@]}"; do
                kill "$p" 2>/dev/null || true
        done
        for p in "${pids[@]}"; do
                wait "$p" 2>/dev/null || true
        done
        rm -rf "$tmp"
}
trap cleanup EXIT

clk_tck=$(getconf CLK_TCK)
free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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
{
        echo '<!DOCTYPE html><html><head><title>bench</title></head><body>'
        head -c 3000 /dev/zero | tr '\0' 'x' | fold -w 100
        echo '</body></html>'
} >"$tmp/www/index.html"
truncate -s 4096 "$tmp/www/index.html"

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
daemon off;
master_process off;
worker_processes 1;
error_log $tmp/nginx/error.log;
pid $tmp/nginx/nginx.pid;
events { worker_connections 4096; }
http {
        access_log off;
        default_type text/plain;
        keepalive_requests 100000000;
        keepalive_timeout 60s;
        sendfile on;
        client_body_temp_path $tmp/nginx/body;
        proxy_temp_path $tmp/nginx/proxy;
        fastcgi_temp_path $tmp/nginx/fastcgi;
        uwsgi_temp_path $tmp/nginx/uwsgi;
        scgi_temp_path $tmp/nginx/scgi;
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

cpu_ticks() {
        sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

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

# measure LABEL SERVER PID URL MODE: one measured run; sets $us and $rps.
measure() {
        local label=$1 server=$2 pid=$3 url=$4 mode=$5
        run_wrk "$url" "$mode" 1 >/dev/null # warm-up
        local t0 t1 res requests errors cpu
        t0=$(cpu_ticks "$pid")
        res=$(run_wrk "$url" "$mode" "$duration")
        t1=$(cpu_ticks "$pid")
        requests=${res%%|*}
        errors=${res#*|}
        cpu=$(echo "scale=3; ($t1 - $t0) / $clk_tck" | bc)
        us=$(echo "scale=2; ($t1 - $t0) * 1000000 / $clk_tck / $requests" | bc)
        rps=$((requests / duration))
        printf '%-34s %-10s %10d %9d %8.2f %10.2f %s\n' "$label" "$server" "$requests" "$rps" \
                "$cpu" "$us" "${errors:+  ($errors)}"
}

median() {
        printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

rows=()
row() {
        local label=$1 path=$2 mode=$3 r
        local pus=() prps=() nus=() nrps=()
        for ((r = 0; r < rounds; r++)); do
                measure "$label" "paf serve" "$paf_pid" "https://$paf_addr$path" "$mode"
                pus+=("$us") prps+=("$rps")
                measure "$label" "nginx" "$nginx_pid" "https://$nginx_addr$path" "$mode"
                nus+=("$us") nrps+=("$rps")
        done
        rows+=("$label|$(median "${pus[@]}")|$(median "${nus[@]}")|$(median "${prps[@]}")|$(median "${nrps[@]}")")
}

echo
echo "wrk -t$threads -c$connections -d${duration}s, $rounds round(s) per row"
printf '%-34s %-10s %10s %9s %8s %10s\n' "row" "server" "requests" "req/s" "cpu s" "cpu us/req"
row "hello 13 B, keep-alive" /hello.txt keep-alive
row "static 4 KiB, keep-alive" /index.html keep-alive
row "new TLS connection per request" /hello.txt new-connection

echo
printf '%-34s %12s %12s %9s %11s %11s %9s\n' "row" "paf us/req" "nginx us/req" "cpu ratio" \
        "paf req/s" "nginx req/s" "rps ratio"
for entry in "${rows[@]}"; do
        IFS='|' read -r label pus nus prps nrps <<<"$entry"
        ratio=$(printf "%.2f" "$(echo "scale=4; $pus / $nus" | bc)")
        rratio=$(printf "%.2f" "$(echo "scale=4; $prps / $nrps" | bc)")
        printf '%-34s %12s %12s %9s %11s %11s %9s\n' "$label" "$pus" "$nus" "$ratio" "$prps" \
                "$nrps" "$rratio"
done
echo
echo "medians of $rounds round(s); cpu ratio = paf CPU us per request / nginx's (lower is better for paf)."
echo "In the last row each request is a full TLS 1.3 handshake: req/s = handshakes/s, us/req = CPU per handshake."
