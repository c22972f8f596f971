#!/usr/bin/env bash
# bench/client.sh — HTTP/1.1 client speed: paf bench vs wrk vs h2load --h1, requests/s and the client's CPU per request, against nginx and against a server that costs less than the clients.
#
#   bench/client.sh [--quick] [--duration SECS] [--rounds N] [--build DIR]
#                   [--server nginx|responder|both]
#
# The server runs on CPU 0 and every client on CPU 1, each with -c 50 and
# the same threads (-t 1, then -t 2), for a fixed duration, on a 4 KiB and
# a 13-byte body, keep-alive and then pipelined 16 deep (paf bench -p 16,
# h2load -m 16, wrk with bench/pipeline.lua). Two servers, in turn:
# - nginx (one process, access_log off). It costs more per request than
#   any of the clients, so it is the bottleneck: every client gets about
#   the requests/s nginx can give, and these rows show the client keeping
#   up with a real server;
# - bench/responder.c, a canned responder that costs less per request than
#   the clients (no routing, one write for a run of pipelined requests), so
#   that the requests/s are the client's own speed.
# The client's CPU is its utime+stime from wait4() (bash's time: the client
# has exited, so /proc/PID/stat is gone), divided by the requests it
# completed; the server's own count (nginx's stub_status, the responder's
# status port) checks every tool's count, server% is the server's share of
# its core (near 100: it is the bottleneck), and /proc/stat gives the CPU
# the rest of the machine took meanwhile. Rounds alternate the tools; medians
# are compared.
set -euo pipefail
cd "$(dirname "$0")/.."

name=client.sh
tools="wrk h2load nginx curl bc python3 taskset"
# shellcheck source=lib.sh
. bench/lib.sh
duration=5
rounds=5 # parity rows: a round varies by a few per cent
servers="nginx responder"
args=()
while [ $# -gt 0 ]; do
        case $1 in
        --server)
                case ${2:-} in
                nginx | responder) servers=$2 ;;
                both) ;;
                *) echo "$name: --server takes nginx, responder or both" >&2; exit 2 ;;
                esac
                shift 2
                ;;
        *) args+=("$1"); shift ;;
        esac
done
bench_init ${args[@]+"${args[@]}"}
depth=16
clients="paf wrk h2load"

paf_bin=$build/tools/paf

# The server on one core, the client on the other, so that neither takes the
# other's CPU time and the client's figure is its own. With one core, no pinning.
if [ "$(nproc)" -ge 2 ]; then
        server_pin=(taskset -c 0)
        client_pin=(taskset -c 1)
else
        echo "$name: one CPU: the server and the clients share it" >&2
        server_pin=()
        client_pin=()
fi

# ---- files and the servers ----

mkdir -p "$tmp/www"
printf 'hello, world\n' >"$tmp/www/hello.txt"
bench_page "$tmp/www/index.html"

port=$(free_port)
status_port=$(free_port)
mkdir -p "$tmp/nginx"
cat >"$tmp/nginx/nginx.conf" <<EOF
$(nginx_conf_head)
        types { text/html html; text/plain txt; }
        server {
                listen 127.0.0.1:$port;
                root $tmp/www;
        }
        server {
                listen 127.0.0.1:$status_port;
                location / { stub_status; }
        }
}
EOF
"${server_pin[@]}" nginx -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" 2>"$tmp/nginx.err" &
nginx_pid=$!
pids+=($nginx_pid)
for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        kill -0 $nginx_pid 2>/dev/null || { cat "$tmp/nginx.err" >&2; exit 1; }
        sleep 0.05
done
cmp -s <(curl -s "http://127.0.0.1:$port/index.html") "$tmp/www/index.html" ||
        { echo "$name: nginx: wrong file" >&2; exit 1; }

# The responders: 4 KiB and 13-byte bodies, as nginx's two files; their
# ports, status ports and pids by body size.
declare -A responder_port responder_status responder_pid
for size in 4096 13; do
        responder_port[$size]=$(free_port) responder_status[$size]=$(free_port)
        "${server_pin[@]}" "$build/bench/responder" "${responder_port[$size]}" \
                "${responder_status[$size]}" $size 2>>"$tmp/responder.err" &
        responder_pid[$size]=$!
        pids+=("${responder_pid[$size]}")
done
for _ in $(seq 200); do
        [ "$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:${responder_port[4096]}/")" = 4096 ] &&
                [ "$(curl -s "http://127.0.0.1:${responder_port[13]}/")" = "hello, world" ] && break
        for size in 4096 13; do
                kill -0 "${responder_pid[$size]}" 2>/dev/null || { cat "$tmp/responder.err" >&2; exit 1; }
        done
        sleep 0.05
done

# set_server nginx|responder SIZE: the server a row runs against; sets
# $server_kind, $server_port, $server_pid and $server_status_port.
set_server() {
        server_kind=$1
        if [ "$1" = nginx ]; then
                server_port=$port server_pid=$nginx_pid server_status_port=$status_port
        else
                server_port=${responder_port[$2]} server_pid=${responder_pid[$2]}
                server_status_port=${responder_status[$2]}
        fi
}

# The requests the row's server has answered so far (nginx: this query
# included; the responder counts only its own port's).
served() {
        if [ "$server_kind" = nginx ]; then
                curl -s "http://127.0.0.1:$server_status_port/" | awk 'NR == 3 { print $3 }'
        else
                curl -s "http://127.0.0.1:$server_status_port/"
        fi
}

# The machine's busy CPU time so far, in clock ticks (all CPUs).
busy_ticks() {
        awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# seconds TEXT: "3.02s", "500.00ms", "1.00m" → seconds.
seconds() {
        awk -v t="$1" 'BEGIN {
                v = t + 0
                if (t ~ /us$/) v /= 1e6; else if (t ~ /ms$/) v /= 1e3; else if (t ~ /m$/) v *= 60
                print v }'
}

# run_client TOOL URL MODE THREADS SECS: one run, the client pinned; sets
# $requests (answered ok), $wall (s, the tool's own), $cpu_us (the client's
# utime+stime) and $errors.
run_client() {
        local tool=$1 url=$2 mode=$3 t=$4 secs=$5 out=$tmp/out.$1 cmd rc=0 times
        case $tool in
        paf)
                cmd=("$paf_bin" bench -c "$connections" -t "$t" -z "$secs" --json "$tmp/paf.json")
                [ "$mode" = pipelined ] && cmd+=(-p $depth)
                cmd+=("$url")
                ;;
        wrk)
                cmd=(wrk -c"$connections" -t"$t" -d"${secs}s")
                [ "$mode" = pipelined ] && cmd+=(-s bench/pipeline.lua)
                cmd+=("$url")
                [ "$mode" = pipelined ] && cmd+=(-- $depth)
                ;;
        h2load)
                cmd=(h2load --h1 -c "$connections" -t "$t" -D "$secs")
                [ "$mode" = pipelined ] && cmd+=(-m $depth)
                cmd+=("$url")
                ;;
        esac
        local TIMEFORMAT='%3U %3S'
        { time "${client_pin[@]}" "${cmd[@]}" >"$out" 2>&1; } 2>"$tmp/time" || rc=$?
        echo "== ${cmd[*]} (exit $rc)" >>"$tmp/clients.log"
        cat "$out" >>"$tmp/clients.log"
        times=$(tail -n 1 "$tmp/time")
        cpu_us=$(echo "$times" | awk '{ printf "%d", ($1 + $2) * 1000000 }')
        errors=
        case $tool in
        paf)
                requests=$(sed -n 's/^ *"ok": \([0-9]*\),/\1/p' "$tmp/paf.json")
                wall=$(sed -n 's/^ *"wall_seconds": \([0-9.]*\),/\1/p' "$tmp/paf.json")
                local failed
                failed=$(sed -n 's/^ *"failed": \([0-9]*\),/\1/p' "$tmp/paf.json")
                [ "${failed:-0}" = 0 ] || errors="$failed failed"
                ;;
        wrk)
                requests=$(sed -n 's/^ *\([0-9]*\) requests in \([^,]*\),.*/\1/p' "$out")
                wall=$(seconds "$(sed -n 's/^ *[0-9]* requests in \([^,]*\),.*/\1/p' "$out")")
                errors=$(awk '/Socket errors|Non-2xx/ { sub(/^ */, ""); e = e $0 "; " } END { print e }' "$out")
                ;;
        h2load)
                requests=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$out")
                wall=$(seconds "$(sed -n 's/^finished in \([^,]*\),.*/\1/p' "$out")")
                errors=$(sed -n 's/^requests: .* \([0-9]*\) failed, \([0-9]*\) errored.*/\1 \2/p' "$out" |
                        awk '$1 + $2 > 0 { print $1 " failed, " $2 " errored" }')
                ;;
        esac
        if [ -z "$requests" ] || [ "$requests" = 0 ] || [ -z "$wall" ]; then
                echo "$name: $tool gave no count (exit $rc); its output:" >&2
                cat "$out" >&2
                exit 1
        fi
        [ $rc = 0 ] || [ -n "$errors" ] || errors="exit $rc"
        return 0
}

# measure LABEL TOOL URL MODE THREADS: one measured run; prints its line and
# sets $us (client CPU µs per request) and $rps.
measure() {
        local label=$1 tool=$2 url=$3 mode=$4 t=$5 s0 s1 n0 n1 b0 b1 e0 e1 server_us server_busy others
        local check=
        s0=$(served)
        n0=$(cpu_ticks "$server_pid")
        b0=$(busy_ticks) e0=$(date +%s%N)
        run_client "$tool" "$url" "$mode" "$t" "$duration"
        b1=$(busy_ticks) e1=$(date +%s%N)
        n1=$(cpu_ticks "$server_pid")
        s1=$(served)
        # The server's count (nginx's less the stub_status query that read
        # s1); the tool's must not exceed it, and is short of it only by
        # what was in flight.
        local answered=$((s1 - s0))
        [ "$server_kind" = nginx ] && answered=$((answered - 1))
        if [ "$requests" -gt "$answered" ] || [ "$requests" -lt $((answered * 9 / 10)) ]; then
                check="count? the server answered $answered"
        fi
        us=$(echo "scale=3; $cpu_us / $requests" | bc)
        rps=$(echo "scale=0; $requests / $wall" | bc)
        server_us=$(echo "scale=2; ($n1 - $n0) * 1000000 / $clk_tck / $answered" | bc)
        # What the rest of the machine ran meanwhile, in % of one CPU: on
        # a shared machine, a figure measured beside a busy neighbour is
        # not comparable (nginx, pinned, loses its core to it).
        others=$(echo "scale=3; v = (($b1 - $b0) / $clk_tck - ($n1 - $n0) / $clk_tck - $cpu_us / 1000000) * 100 * 1000000000 / ($e1 - $e0);
                if (v < 0) v = 0; scale=0; v / 1" | bc)
        # The server's share of its core: near 100, it is the bottleneck.
        server_busy=$(echo "scale=0; ($n1 - $n0) * 100 * 1000000000 / $clk_tck / ($e1 - $e0)" | bc)
        printf '%-40s %-7s %9d %9d %8.3f %9.3f %9.2f %8s %7s%s\n' "$label" "$tool" "$requests" "$rps" \
                "$(echo "scale=3; $cpu_us / 1000000" | bc)" "$us" "$server_us" "$server_busy" "$others" \
                "${errors:+  ($errors)}${check:+  ($check)}"
        [ "$others" -lt 10 ] || busy_runs=$((busy_runs + 1))
        return 0
}

# bench_client_row LABEL URL MODE THREADS: a warm-up, then rounds in which
# every client runs once, in an order that rotates from round to round.
bench_client_row() {
        local label=$1 url=$2 mode=$3 t=$4 r i tool
        local -A all_us all_rps
        run_client wrk "$url" "$mode" "$t" 1
        local order=($clients)
        for ((r = 0; r < rounds; r++)); do
                for ((i = 0; i < ${#order[@]}; i++)); do
                        tool=${order[(i + r) % ${#order[@]}]}
                        measure "$label" "$tool" "$url" "$mode" "$t"
                        all_us[$tool]+="$us " all_rps[$tool]+="$rps "
                done
        done
        local entry=$label
        for tool in $clients; do
                # shellcheck disable=SC2086 # the lists are words on purpose
                entry+="|$(median ${all_rps[$tool]})|$(median ${all_us[$tool]})"
        done
        rows+=("$entry")
}

ratio() {
        printf "%.2f" "$(echo "scale=4; $1 / $2" | bc)"
}

echo
echo "the server on CPU 0, the client on CPU 1; -c $connections, ${duration}s per run," \
        "$rounds round(s) per row; pipelined: $depth requests in flight per connection"
printf '%-40s %-7s %9s %9s %8s %9s %9s %8s %7s\n' "row" "client" "requests" "req/s" "cpu s" "cpu us/req" \
        "server us/req" "server%" "others%"
busy_runs=0
for server in $servers; do
        for t in 1 2; do
                for file in "4 KiB:index.html:4096" "13 B:hello.txt:13"; do
                        label=${file%%:*} path=${file#*:} size=${path#*:} path=${path%%:*}
                        set_server "$server" "$size"
                        url=http://127.0.0.1:$server_port/$path
                        for mode in keep-alive pipelined; do
                                bench_client_row "$server: $label, $mode, -t $t" "$url" "$mode" "$t"
                        done
                done
        done
done

echo
printf '%-40s %9s %9s %9s %8s %8s %8s %8s %8s %8s\n' "row" "paf req/s" "wrk req/s" "h2load" \
        "paf/wrk" "paf us" "wrk us" "h2load us" "paf/wrk" "paf/h2l"
declare -A met total
for entry in "${rows[@]}"; do
        IFS='|' read -r label prps pus wrps wus hrps hus <<<"$entry"
        rr=$(ratio "$prps" "$wrps")
        cr=$(ratio "$pus" "$wus")
        printf '%-40s %9s %9s %9s %8s %8s %8s %8s %8s %8s\n' "$label" "$prps" "$wrps" "$hrps" "$rr" \
                "$pus" "$wus" "$hus" "$cr" "$(ratio "$pus" "$hus")"
        server=${label%%:*}
        total[$server]=$((${total[$server]:-0} + 1))
        [ "$(echo "$rr >= 1 && $cr <= 1" | bc)" = 1 ] && met[$server]=$((${met[$server]:-0} + 1))
done
echo
echo "medians of $rounds round(s); req/s: each client's own count over its own wall time;"
echo "us = the client's CPU (user + system) per request it completed; paf/wrk and paf/h2l"
echo "are paf bench's over the other's (req/s: higher is better for paf; us: lower is better)."
echo "nginx costs more per request than the clients: its rows' req/s are nginx's, whichever"
echo "client drives it; the responder costs less, and its rows' req/s are the client's."
for server in $servers; do
        echo "$server: targets (req/s >= 1.00x wrk's and cpu <= 1.00x wrk's) met in" \
                "${met[$server]:-0} of ${total[$server]:-0} rows"
done
if [ "$busy_runs" -gt 0 ]; then
        echo "$name: in $busy_runs run(s) the rest of the machine took 10% of a CPU or more" \
                "(others%): those figures are not comparable; run again on a quiet machine" >&2
fi
