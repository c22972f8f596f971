#!/usr/bin/env bash
# bench/server.sh — issue 13's target table: paf serve and examples/hello against a tuned nginx, server CPU per request under wrk and h2load, each pinned to its core.
#
#   bench/server.sh [--quick] [--duration SECS] [--rounds N (5)] [--build DIR]
#
# nginx runs one process as its documentation recommends for static files
# (sendfile on, tcp_nopush on, open_file_cache max=1000 inactive=20s,
# open_file_cache_valid 1s, access_log off); paf serve runs --quiet
# --workers 1. The servers run on CPU 0 and the load generator on CPU 1
# (taskset), so that each has a core of its own. Every row is measured under
# wrk and under h2load --h1, in rounds that alternate paf and nginx; the
# medians are compared. The server's CPU is utime+stime from /proc/PID/stat
# around the run, divided by the requests the tool completed (for the large
# file: by the GiB it received). Rows: 4 KiB static keep-alive; hello
# (examples/hello vs nginx `return 200`) keep-alive; 4 KiB pipelined 16 deep
# (wrk with bench/pipeline.lua, h2load -m 16); a 100 MiB file, CPU per GiB;
# HTTPS 4 KiB keep-alive (TLS 1.3, ECDSA P-256, no session resumption on
# either side). Then `paf serve --workers 2` under load, with the requests
# each worker answered. Run by hand, not by test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

name=server.sh
tools="wrk h2load nginx curl bc python3 taskset certtool"
# shellcheck source=lib.sh
. bench/lib.sh
# Five rounds by default: the keep-alive rows' margins are a few per cent,
# about what one round varies by.
rounds=5
bench_init "$@"
depth=16
paf_bin=$build/tools/paf
hello_bin=$build/examples/hello
[ -f "$build/plugins/tls.so" ] || { echo "$name: no tls.so in $build/plugins" >&2; exit 1; }

if [ "$(nproc)" -ge 2 ]; then
        server_pin=(taskset -c 0)
        client_pin=(taskset -c 1)
else
        echo "$name: one CPU: the servers and the clients share it" >&2
        server_pin=()
        client_pin=()
fi

# ---- files and certificates ----

mkdir -p "$tmp/www"
bench_page "$tmp/www/index.html"
head -c $((100 * 1024 * 1024)) /dev/urandom >"$tmp/www/big.bin"

# shellcheck source=../tests/http/https-certs.sh
. tests/http/https-certs.sh
mkdir "$tmp/certs"
https_ca "$tmp/certs" ca
https_cert "$tmp/certs" server ca localhost localhost 127.0.0.1
chmod 0644 "$tmp/certs"/*

# ---- servers ----

# wait_address FILE SCHEME: the address of its first "listening on SCHEME://" line.
wait_address() {
        local file=$1 scheme=$2 i
        for i in $(seq 200); do
                if grep -q "listening on $scheme://" "$file" 2>/dev/null; then
                        sed -n "s|.*listening on $scheme://||p" "$file" | head -n 1
                        return 0
                fi
                sleep 0.05
        done
        echo "$name: no listening line in $file: $(cat "$file")" >&2
        return 1
}

"${server_pin[@]}" "$hello_bin" 127.0.0.1:0 2>"$tmp/hello.err" &
hello_pid=$!
pids+=($hello_pid)
hello_addr=$(wait_address "$tmp/hello.err" http)

http_port=$(free_port)
https_port=$(free_port)
"${server_pin[@]}" "$paf_bin" serve --quiet --workers 1 --root "$tmp/www" \
        --listen "127.0.0.1:$http_port" --listen-tls "127.0.0.1:$https_port" \
        --cert "$tmp/certs/server.pem" --key "$tmp/certs/server.key" 2>"$tmp/paf.err" &
paf_pid=$!
pids+=($paf_pid)
wait_address "$tmp/paf.err" https >/dev/null
paf_http=127.0.0.1:$http_port
paf_https=127.0.0.1:$https_port

n_hello=$(free_port)
n_http=$(free_port)
n_https=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
$(nginx_conf_head)
        tcp_nopush on;
        open_file_cache max=1000 inactive=20s;
        open_file_cache_valid 1s;
        types { text/html html; application/octet-stream bin; }
        ssl_protocols TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        server {
                listen 127.0.0.1:$n_hello;
                location / { return 200 "hello, world\n"; }
        }
        server {
                listen 127.0.0.1:$n_http;
                root $tmp/www;
        }
        server {
                listen 127.0.0.1:$n_https ssl;
                ssl_certificate $tmp/certs/server.pem;
                ssl_certificate_key $tmp/certs/server.key;
                root $tmp/www;
        }
}
EOF
"${server_pin[@]}" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.err" &
nginx_pid=$!
pids+=($nginx_pid)
for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$n_http/" && break
        kill -0 $nginx_pid 2>/dev/null || { cat "$tmp/nginx.err" >&2; exit 1; }
        sleep 0.05
done

# Both answer the same bytes before anything is timed.
ca=$tmp/certs/ca.pem
[ "$(curl -s "http://$hello_addr/")" = "hello, world" ] || { echo "$name: hello: wrong answer" >&2; exit 1; }
[ "$(curl -s "http://127.0.0.1:$n_hello/")" = "hello, world" ] || { echo "$name: nginx: wrong answer" >&2; exit 1; }
for url in "http://$paf_http" "http://127.0.0.1:$n_http" "https://$paf_https" "https://127.0.0.1:$n_https"; do
        for f in index.html big.bin; do
                cmp -s <(curl -s --cacert "$ca" "$url/$f") "$tmp/www/$f" ||
                        { echo "$name: $url/$f: wrong answer" >&2; exit 1; }
        done
done

# ---- one measured run ----

# run_tool TOOL URL MODE SECS: runs the load generator pinned; sets
# $requests (completed, non-failed), $bytes (received) and $errors.
run_tool() {
        local tool=$1 url=$2 mode=$3 secs=$4 warmup=${5:-} out=$tmp/out c=$connections
        local cmd
        [ "$mode" = large ] && c=4
        case $tool in
        wrk)
                cmd=(wrk -t1 -c$c -d"${secs}s")
                [ "$mode" = pipelined ] && cmd+=(-s bench/pipeline.lua)
                cmd+=("$url")
                [ "$mode" = pipelined ] && cmd+=(-- $depth)
                ;;
        h2load)
                cmd=(h2load --h1 -t1 -c$c -D "$secs")
                [ "$mode" = pipelined ] && cmd+=(-m $depth)
                cmd+=("$url")
                ;;
        esac
        "${client_pin[@]}" "${cmd[@]}" >"$out" 2>&1 || true
        echo "== ${cmd[*]}" >>"$tmp/clients.log"
        cat "$out" >>"$tmp/clients.log"
        case $tool in
        wrk)
                requests=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$out")
                # wrk -s pipeline.lua counts every request of a batch (checked
                # against nginx's stub-less count by bench/http1.sh's calibration).
                bytes=$(sed -n 's/^ *[0-9]* requests in [^,]*, \([0-9.]*[KMGT]*B\) read.*/\1/p' "$out" |
                        awk '{ v = $1 + 0; u = substr($1, length($1) - 1, 1)
                               if (u == "K") v *= 1024; else if (u == "M") v *= 1048576
                               else if (u == "G") v *= 1073741824; else if (u == "T") v *= 1099511627776
                               printf "%d", v }')
                errors=$(awk '/Socket errors|Non-2xx/ { sub(/^ */, ""); e = e $0 "; " } END { print e }' "$out")
                ;;
        h2load)
                requests=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$out")
                bytes=$(sed -n 's/^traffic: .*(\([0-9]*\)) total.*/\1/p' "$out")
                errors=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2/p' "$out" |
                        awk '$1 + $2 > 0 { print $1 " failed, " $2 " errored" }')
                ;;
        esac
        # The large file's row counts bytes: a busy machine may end a
        # short run before any 100 MiB response did. A warm-up counts
        # nothing.
        local count=$requests
        [ "$mode" = large ] && count=$bytes
        [ -n "$warmup" ] && return 0
        if [ -z "$count" ] || [ "$count" = 0 ]; then
                echo "$name: $tool gave no count; its output:" >&2
                cat "$out" >&2
                exit 1
        fi
}

# measure LABEL SERVER PID URL MODE TOOL: warm-up, then one run; sets $us
# (server CPU µs per request, or per GiB for the large file).
measure() {
        local label=$1 server=$2 pid=$3 url=$4 mode=$5 tool=$6 t0 t1 per
        run_tool "$tool" "$url" "$mode" 1 warmup
        t0=$(cpu_ticks "$pid")
        run_tool "$tool" "$url" "$mode" "$duration"
        t1=$(cpu_ticks "$pid")
        if [ "$mode" = large ]; then
                us=$(echo "scale=2; ($t1 - $t0) * 1000000 / $clk_tck / ($bytes / 1073741824)" | bc)
                per=GiB
        else
                us=$(echo "scale=2; ($t1 - $t0) * 1000000 / $clk_tck / $requests" | bc)
                per=req
        fi
        printf '%-28s %-7s %-10s %10d %12.2f us/%s%s\n' "$label" "$tool" "$server" "$requests" \
                "$us" "$per" "${errors:+  ($errors)}"
}

# row LABEL TARGET PAF_NAME PAF_PID PAF_URL NGINX_URL MODE: both tools,
# rounds alternating the servers.
row() {
        local label=$1 target=$2 pname=$3 ppid=$4 purl=$5 nurl=$6 mode=$7 tool r
        for tool in wrk h2load; do
                local pus=() nus=()
                for ((r = 0; r < rounds; r++)); do
                        measure "$label" "$pname" "$ppid" "$purl" "$mode" "$tool"
                        pus+=("$us")
                        measure "$label" nginx "$nginx_pid" "$nurl" "$mode" "$tool"
                        nus+=("$us")
                done
                rows+=("$label|$tool|$target|$(median "${pus[@]}")|$(median "${nus[@]}")")
        done
}

echo
echo "servers on CPU 0, the load generator on CPU 1; -c $connections (4 for the 100 MiB file)," \
        "${duration}s per run, $rounds round(s), pipelined $depth deep"
printf '%-28s %-7s %-10s %10s %15s\n' "row" "tool" "server" "requests" "server CPU"
row "4 KiB static, keep-alive" 0.8 "paf serve" $paf_pid "http://$paf_http/index.html" \
        "http://127.0.0.1:$n_http/index.html" keep-alive
row "hello, keep-alive" 0.9 "paf hello" $hello_pid "http://$hello_addr/" \
        "http://127.0.0.1:$n_hello/" keep-alive
row "4 KiB static, pipelined x16" 0.5 "paf serve" $paf_pid "http://$paf_http/index.html" \
        "http://127.0.0.1:$n_http/index.html" pipelined
row "100 MiB file, CPU per GiB" 1.1 "paf serve" $paf_pid "http://$paf_http/big.bin" \
        "http://127.0.0.1:$n_http/big.bin" large
row "HTTPS 4 KiB, keep-alive" 0.9 "paf serve" $paf_pid "https://$paf_https/index.html" \
        "https://127.0.0.1:$n_https/index.html" keep-alive

echo
printf '%-28s %-7s %12s %12s %7s %7s %s\n' "row" "tool" "paf" "nginx" "ratio" "target" ""
met=0
for entry in "${rows[@]}"; do
        IFS='|' read -r label tool target pus nus <<<"$entry"
        ratio=$(printf "%.2f" "$(echo "scale=4; $pus / $nus" | bc)")
        ok=$(echo "$ratio <= $target" | bc)
        [ "$ok" = 1 ] && met=$((met + 1))
        printf '%-28s %-7s %12s %12s %7s %7s %s\n' "$label" "$tool" "$pus" "$nus" "$ratio" \
                "<= $target" "$([ "$ok" = 1 ] && echo met || echo NOT met)"
done
echo
echo "medians of $rounds round(s); server CPU us per request (per GiB for the 100 MiB file);"
echo "ratio = paf's / nginx's; targets met in $met of ${#rows[@]} rows"

# ---- two workers ----

kill "$paf_pid"
wait "$paf_pid" 2>/dev/null || true
w_port=$(free_port)
"$paf_bin" serve --quiet --workers 2 --root "$tmp/www" --listen "127.0.0.1:$w_port" 2>"$tmp/w.err" &
w_pid=$!
pids+=($w_pid)
wait_address "$tmp/w.err" http >/dev/null
# wrk with two threads, one per worker's worth of load. Connections that
# come one after another go to the idle workers in turn (a worker that took
# some goes to the end of the socket's queue); a burst of simultaneous
# connects can still land unevenly, which the per-worker counts show.
w_out=$(wrk -t2 -c"$connections" -d"${duration}s" "http://127.0.0.1:$w_port/index.html")
kill -TERM "$w_pid"
wait "$w_pid" 2>/dev/null || true
echo
echo "paf serve --workers 2 (not pinned), wrk -t2 -c $connections for ${duration}s:" \
        "$(echo "$w_out" | sed -n 's/^ *\([0-9]*\) requests in .*/\1/p') requests;" \
        "at exit: $(sed -n 's/^paf serve: //p' "$tmp/w.err" | grep -i served | tail -n 1)"
