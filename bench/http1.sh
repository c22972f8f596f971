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

name=http1.sh
tools="wrk nginx curl bc python3"
# shellcheck source=lib.sh
. bench/lib.sh
bench_init "$@"
depth=16

hello_bin=$build/examples/hello
paf_bin=$build/tools/paf

# The static file: 4 KiB of HTML.
mkdir -p "$tmp/www"
bench_page "$tmp/www/index.html"

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
$(nginx_conf_head)
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

bench_header "pipelined: $depth requests per write"
for mode in keep-alive pipelined; do
        bench_row "hello, $mode" "paf hello" $hello_pid "http://$hello_addr/" \
                $nginx_pid "http://127.0.0.1:$nginx_hello_port/" $mode
done
for mode in keep-alive pipelined; do
        bench_row "static 4 KiB, $mode" "paf serve" $paf_pid "http://$paf_addr/index.html" \
                $nginx_pid "http://127.0.0.1:$nginx_static_port/index.html" $mode
done
bench_table
