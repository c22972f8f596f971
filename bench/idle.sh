#!/usr/bin/env bash
# bench/idle.sh — what idle keep-alive connections cost: paf serve vs nginx, RSS per connection (each after one request, and never used), and a normal client's latency while they are open.
#
#   bench/idle.sh [--quick] [--count N] [--probes M] [--build DIR]
#
# As many connections as RLIMIT_NOFILE allows (its hard limit, less 1000 for
# the rest: 19 000 under a limit of 20 000), held by bench/idle-hold.py
# against paf serve --quiet --workers 1 and against nginx (one process,
# master_process off, access_log off, as tuned as bench/http1.sh's), both on
# 127.0.0.1. Each server's VmRSS (/proc/PID/status) is read before and once
# every connection is accepted and the RSS settled; the difference divided
# by the count is a connection's cost, which also gives what 100 000 would
# cost. Meanwhile a normal client asks M requests on one keep-alive
# connection, then M/10 on a new connection each; their p50 and p99 are
# printed. Note: nginx allocates its connection structures for all of
# worker_connections at start, so its baseline holds part of what paf
# allocates per connection. --quick: 5000 connections, 500 probes. Run by
# hand, not by test.sh; about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

name=idle.sh
tools="nginx python3 curl bc"
count=
probes=2000
args=()
while [ $# -gt 0 ]; do
        case $1 in
        --count) count=$2; shift ;;
        --probes) probes=$2; shift ;;
        --quick) count=${count:-5000} probes=500 ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
        *) args+=("$1") ;;
        esac
        shift
done
# shellcheck source=lib.sh
. bench/lib.sh
bench_init "${args[@]}"

hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
ulimit -n "$hard"
if [ -z "$count" ]; then
        count=$((hard - 1000))
        [ "$count" -gt 100000 ] && count=100000
fi
[ "$count" -ge 100 ] || { echo "$name: RLIMIT_NOFILE is $hard: too few fds" >&2; exit 1; }
if [ $((count + 200)) -gt "$hard" ]; then
        echo "$name: $count connections need $((count + 200)) fds, RLIMIT_NOFILE is $hard" >&2
        exit 1
fi

paf_bin=$build/tools/paf
mkdir -p "$tmp/www"
printf 'hello, world\n' >"$tmp/www/index.html"

# ---- servers: a new one for each row, so that none reuses what a row before freed ----

# The timeouts must not close what is held while it is measured; accepting
# stops at [http] max-connections (1024 by default).
printf '[http]\nmax-connections = %d\nheader-timeout = 600\nidle-timeout = 600\n' \
        $((count + 100)) >"$tmp/paf.conf"

# start_paf: sets $pid and $addr.
start_paf() {
        : >"$tmp/paf.err"
        "$paf_bin" serve --quiet --workers 1 --config "$tmp/paf.conf" --listen 127.0.0.1:0 \
                --root "$tmp/www" 2>"$tmp/paf.err" &
        pid=$!
        pids+=("$pid")
        local _
        for _ in $(seq 200); do
                grep -q 'listening on http://' "$tmp/paf.err" && break
                sleep 0.05
        done
        addr=$(sed -n 's|.*listening on http://||p' "$tmp/paf.err" | head -n 1)
        [ -n "$addr" ] || { echo "$name: paf serve did not start: $(cat "$tmp/paf.err")" >&2; exit 1; }
}

mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf.in" <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $hard;
error_log $tmp/nginx/error.log;
pid $tmp/nginx/nginx.pid;
# Above count by a sixteenth and more: with fewer than a sixteenth of its
# connections free, nginx closes idle keep-alive ones to make room.
events { worker_connections $((count * 17 / 16 + 500)); }
http {
        access_log off;
        default_type text/plain;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
        client_header_timeout 600s;
        sendfile on;
        tcp_nopush on;
        open_file_cache max=1000 inactive=20s;
        open_file_cache_valid 1s;
        client_body_temp_path $tmp/nginx/body;
        proxy_temp_path $tmp/nginx/proxy;
        fastcgi_temp_path $tmp/nginx/fastcgi;
        uwsgi_temp_path $tmp/nginx/uwsgi;
        scgi_temp_path $tmp/nginx/scgi;
        types { text/html html; }
        server {
                listen 127.0.0.1:@PORT@ backlog=4096;
                root $tmp/www;
        }
}
EOF

# start_nginx: sets $pid and $addr. A new port each time: the last one may
# be some held connection's, closed but not gone.
start_nginx() {
        local port
        port=$(free_port)
        sed "s/@PORT@/$port/" "$tmp/nginx/nginx.conf.in" >"$tmp/nginx/nginx.conf"
        nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.err" &
        pid=$!
        pids+=("$pid")
        addr=127.0.0.1:$port
        local _
        for _ in $(seq 200); do
                curl -s -o /dev/null "http://$addr/" && return 0
                sleep 0.05
        done
        echo "$name: nginx did not start: $(cat "$tmp/nginx.err")" >&2
        exit 1
}

stop() {
        kill "$1"
        wait "$1" 2>/dev/null || true
}

# Both answer the same bytes before anything is measured.
start_paf
cmp -s <(curl -s "http://$addr/index.html") "$tmp/www/index.html" ||
        { echo "$name: paf serve: wrong file" >&2; exit 1; }
stop "$pid"
start_nginx
cmp -s <(curl -s "http://$addr/index.html") "$tmp/www/index.html" ||
        { echo "$name: nginx: wrong file" >&2; exit 1; }
stop "$pid"

# ---- the rows ----

# field LINE KEY: the value of KEY=… in LINE.
field() {
        echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# row SERVER KIND [--fresh]: one hold against a new server; prints its line,
# keeps it.
results=()
row() {
        local server=$1 kind=$2 out
        shift 2
        if [ "$server" = nginx ]; then start_nginx; else start_paf; fi
        if ! out=$(python3 bench/idle-hold.py --addr "$addr" --pid "$pid" --count "$count" \
                --target /index.html --probes "$probes" --new-probes $((probes / 10)) \
                --timeout 120 "$@"); then
                echo "$name: $server, $kind: holding $count connections failed" >&2
                exit 1
        fi
        stop "$pid"
        echo "$out" >>"$tmp/hold.log"
        local bytes before after mib
        bytes=$(field "$out" bytes_per_conn)
        before=$(field "$out" rss_before_kib)
        after=$(field "$out" rss_after_kib)
        mib=$(echo "scale=1; $bytes * 100000 / 1048576" | bc)
        printf '%-10s %-16s %10s %10s %10s %12s %8s %8s %8s %8s\n' "$server" "$kind" "$before" \
                "$after" "$bytes" "$mib" "$(field "$out" ka_p50_ms)" "$(field "$out" ka_p99_ms)" \
                "$(field "$out" new_p50_ms)" "$(field "$out" new_p99_ms)"
        results+=("$server|$kind|$bytes|$(field "$out" ka_p99_ms)|$(field "$out" new_p99_ms)")
}

echo
echo "$count idle connections held; a normal client meanwhile: $probes requests keep-alive, $((probes / 10)) on new connections"
printf '%-10s %-16s %10s %10s %10s %12s %8s %8s %8s %8s\n' "server" "connections" "RSS KiB" \
        "RSS KiB" "bytes" "100 000" "ka p50" "ka p99" "new p50" "new p99"
printf '%-10s %-16s %10s %10s %10s %12s %8s %8s %8s %8s\n' "" "" "before" "held" "per conn" \
        "cost MiB" "ms" "ms" "ms" "ms"
row "paf serve" "after 1 request"
row nginx "after 1 request"
row "paf serve" "never used" --fresh
row nginx "never used" --fresh

echo
printf '%-16s %14s %14s %10s %14s\n' "connections" "paf bytes" "nginx bytes" "ratio" "paf p99 ms"
for kind in "after 1 request" "never used"; do
        p="" n="" p99=""
        for entry in "${results[@]}"; do
                IFS='|' read -r server k bytes ka new <<<"$entry"
                [ "$k" = "$kind" ] || continue
                if [ "$server" = nginx ]; then
                        n=$bytes
                else
                        p=$bytes
                        p99="$ka / $new"
                fi
        done
        ratio=n/a
        [ "${n:-0}" -gt 0 ] && ratio=$(printf '%.2f' "$(echo "scale=4; $p / $n" | bc)")
        printf '%-16s %14s %14s %10s %14s\n' "$kind" "$p" "$n" "$ratio" "$p99"
done
echo
echo "bytes: VmRSS growth per held connection; 100 000 cost: that times 100 000 (the"
echo "kernel's socket memory comes on top, in neither figure); ratio = paf / nginx;"
echo "p99: keep-alive / new connection. paf serve stops accepting at [http] max-connections"
echo "(1024 by default): raise it, and RLIMIT_NOFILE (LimitNOFILE= under systemd), for more."
