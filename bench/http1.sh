#!/usr/bin/env bash
# bench/http1.sh — HTTP/1.1 server CPU per request: examples/hello vs nginx, and paf serve vs nginx on a static file, under wrk (keep-alive, then pipelined 16 deep).
#
#   bench/http1.sh [--quick] [--duration SECS] [--rounds N] [--build DIR]
#
# Each row: a server on 127.0.0.1, a 1 s warm-up, then a measured wrk run;
# the server's CPU is utime+stime from /proc/PID/stat before and after,
# divided by CLK_TCK. nginx runs as one process (master_process off), with
# access_log off, like paf serve --quiet. wrk runs one thread so that on a
# 2-core machine it and the server each have a core; every row is measured
# in several rounds alternating paf and nginx, and the median is compared,
# since one run on a shared machine can be off by a third. Run by hand, not
# by test.sh.
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
        *) echo "http1.sh: unknown option $1" >&2; exit 2 ;;
        esac
        shift
done
connections=50
threads=1
depth=16

for tool in wrk nginx; do
        command -v $tool >/dev/null || { echo "http1.sh: $tool not found (apt-get install wrk nginx-light)" >&2; exit 1; }
done

# A release build of our own, so that a debug build/ does not skew the figures.
if [ ! -f "$build/build.ninja" ]; then
        meson setup "$build" --buildtype=release -Dtests=false >/dev/null
fi
if ! out=$(ninja -C "$build" 2>&1); then
        echo "$out" >&2
        echo "http1.sh: build failed in $build" >&2
        exit 1
fi
build=$(cd "$build" && pwd)
export PAF_PLUGIN_PATH=$build/plugins
hello_bin=$build/examples/hello
paf_bin=$build/tools/paf

tmp=$(mktemp -d)
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

# The static file: 4 KiB of HTML.
mkdir -p "$tmp/www"
{
        echo '<!DOCTYPE html><html><head><title>bench</title></head><body>'
        head -c 3000 /dev/zero | tr '\0' 'x' | fold -w 100
        echo '</body></html>'
} >"$tmp/www/index.html"
truncate -s 4096 "$tmp/www/index.html"

# ---- servers ----

# wait_address FILE: prints the address of its first listening line, waiting ≤ 10 s.
wait_address() {
        local file=$1 i
        for i in $(seq 200); do
                if grep -q 'listening on http://' "$file" 2>/dev/null; then
                        sed -n 's|.*listening on http://||p' "$file" | head -n 1
                        return 0
                fi
                sleep 0.05
        done
        echo "http1.sh: no listening line in $file: $(cat "$file")" >&2
        return 1
}

"$hello_bin" 127.0.0.1:0 2>"$tmp/hello.err" &
hello_pid=$!
pids+=($hello_pid)
hello_addr=$(wait_address "$tmp/hello.err")

"$paf_bin" serve --quiet --listen 127.0.0.1:0 --root "$tmp/www" 2>"$tmp/paf.err" &
paf_pid=$!
pids+=($paf_pid)
paf_addr=$(wait_address "$tmp/paf.err")

nginx_hello_port=$(free_port)
nginx_static_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
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
        types { text/html html; }
        server {
                listen 127.0.0.1:$nginx_hello_port;
                location / { return 200 "hello, world\n"; }
        }
        server {
                listen 127.0.0.1:$nginx_static_port;
                root $tmp/www;
        }
}
EOF
nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.err" &
nginx_pid=$!
pids+=($nginx_pid)
for i in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$nginx_static_port/" && break
        sleep 0.05
done

# Every server answers the same bytes before we time anything.
[ "$(curl -s "http://$hello_addr/")" = "hello, world" ] || { echo "hello: wrong answer" >&2; exit 1; }
[ "$(curl -s "http://127.0.0.1:$nginx_hello_port/")" = "hello, world" ] || { echo "nginx: wrong answer" >&2; exit 1; }
cmp -s <(curl -s "http://$paf_addr/index.html") "$tmp/www/index.html" || { echo "paf serve: wrong file" >&2; exit 1; }
cmp -s <(curl -s "http://127.0.0.1:$nginx_static_port/index.html") "$tmp/www/index.html" || { echo "nginx: wrong file" >&2; exit 1; }

cpu_ticks() {
        # Fields after the command name: utime and stime are the 12th and 13th.
        sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# run_wrk URL MODE SECS: prints "requests errors".
run_wrk() {
        local url=$1 mode=$2 secs=$3 out
        if [ "$mode" = pipelined ]; then
                out=$(wrk -t$threads -c$connections -d${secs}s -s bench/pipeline.lua "$url" -- $depth)
        else
                out=$(wrk -t$threads -c$connections -d${secs}s "$url")
        fi
        echo "$out" >>"$tmp/wrk.log"
        local requests errors
        requests=$(echo "$out" | sed -n 's/^ *\([0-9]*\) requests in .*/\1/p')
        errors=$(echo "$out" | awk '/Socket errors|Non-2xx/ { e = e $0 "; " } END { print e }')
        echo "$requests|$errors"
}

# ---- calibration: how wrk counts pipelined requests ----
# nginx logs one line per request it answered; wrk's total must match it
# (give or take the requests in flight when wrk stops).
cal_port=$(free_port)
mkdir -p "$tmp/cal"
sed -e "s|access_log off;|access_log $tmp/cal/access.log;|" \
    -e "s|listen 127.0.0.1:$nginx_hello_port;|listen 127.0.0.1:$cal_port;|" \
    -e "s|listen 127.0.0.1:$nginx_static_port;|listen 127.0.0.1:$(free_port);|" \
    -e "s|pid $tmp/nginx/nginx.pid;|pid $tmp/cal/nginx.pid;|" \
    -e "s|error_log $tmp/nginx/error.log;|error_log $tmp/cal/error.log;|" \
    "$tmp/nginx/nginx.conf" >"$tmp/cal/nginx.conf"
nginx -p "$tmp/nginx" -c "$tmp/cal/nginx.conf" 2>"$tmp/cal.err" &
cal_pid=$!
pids+=($cal_pid)
for i in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$cal_port/" && break
        sleep 0.05
done
before=$(wc -l <"$tmp/cal/access.log")
cal=$(run_wrk "http://127.0.0.1:$cal_port/" pipelined 1)
kill "$cal_pid"
wait "$cal_pid" 2>/dev/null || true
logged=$(($(wc -l <"$tmp/cal/access.log") - before))
wrk_count=${cal%%|*}
echo "calibration: wrk reported $wrk_count requests pipelined $depth deep; nginx logged $logged"
if [ "$logged" -gt $((wrk_count * 2)) ]; then
        echo "http1.sh: wrk counts pipelined batches, not requests: multiply by $depth" >&2
        scale=$depth
else
        scale=1
fi

# ---- the rows ----

# measure LABEL SERVER PID URL MODE: one measured run; prints its line and
# sets $us (CPU us per request) and $rps.
measure() {
        local label=$1 server=$2 pid=$3 url=$4 mode=$5
        run_wrk "$url" "$mode" 1 >/dev/null # warm-up
        local t0 t1 res requests errors
        t0=$(cpu_ticks "$pid")
        res=$(run_wrk "$url" "$mode" "$duration")
        t1=$(cpu_ticks "$pid")
        requests=$(( ${res%%|*} * scale ))
        errors=${res#*|}
        local cpu
        cpu=$(echo "scale=3; ($t1 - $t0) / $clk_tck" | bc)
        us=$(echo "scale=2; ($t1 - $t0) * 1000000 / $clk_tck / $requests" | bc)
        rps=$(( requests / duration ))
        printf '%-28s %-12s %12d %10d %9.2f %9.2f %s\n' "$label" "$server" "$requests" "$rps" \
                "$cpu" "$us" "${errors:+  ($errors)}"
}

median() {
        printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

rows=()
# row LABEL PAF_NAME PAF_PID PAF_URL NGINX_URL MODE: rounds alternating paf
# and nginx; keeps the medians.
row() {
        local label=$1 name=$2 pid=$3 purl=$4 nurl=$5 mode=$6 r
        local pus=() prps=() nus=() nrps=()
        for ((r = 0; r < rounds; r++)); do
                measure "$label" "$name" "$pid" "$purl" "$mode"
                pus+=("$us") prps+=("$rps")
                measure "$label" "nginx" "$nginx_pid" "$nurl" "$mode"
                nus+=("$us") nrps+=("$rps")
        done
        rows+=("$label|$(median "${pus[@]}")|$(median "${nus[@]}")|$(median "${prps[@]}")|$(median "${nrps[@]}")")
}

echo
echo "wrk -t$threads -c$connections -d${duration}s, $rounds round(s) per row; pipelined: $depth requests per write"
printf '%-28s %-12s %12s %10s %9s %9s\n' "row" "server" "requests" "req/s" "cpu s" "cpu us/req"
for mode in keep-alive pipelined; do
        row "hello, $mode" "paf hello" $hello_pid "http://$hello_addr/" \
                "http://127.0.0.1:$nginx_hello_port/" $mode
done
for mode in keep-alive pipelined; do
        row "static 4 KiB, $mode" "paf serve" $paf_pid "http://$paf_addr/index.html" \
                "http://127.0.0.1:$nginx_static_port/index.html" $mode
done

# ---- the table: paf against nginx, row by row ----
echo
printf '%-28s %14s %14s %10s %12s %12s %10s\n' "row" "paf us/req" "nginx us/req" "cpu ratio" \
        "paf req/s" "nginx req/s" "rps ratio"
for entry in "${rows[@]}"; do
        IFS='|' read -r label pus nus prps nrps <<<"$entry"
        ratio=$(printf "%.2f" "$(echo "scale=4; $pus / $nus" | bc)")
        rratio=$(printf "%.2f" "$(echo "scale=4; $prps / $nrps" | bc)")
        printf '%-28s %14s %14s %10s %12s %12s %10s\n' "$label" "$pus" "$nus" "$ratio" "$prps" \
                "$nrps" "$rratio"
done
echo
echo "medians of $rounds round(s); cpu ratio = paf CPU us per request / nginx's (lower is better for paf)"
