# bench/lib.sh — what the benchmark scripts share: options, a release build,
# server bookkeeping, CPU accounting, and rows measured in rounds that
# alternate paf and nginx, compared by their medians.
#
# A script sets `name` (for messages) and `tools` (commands it needs), defines
# run_wrk URL MODE SECS (prints "requests|errors"), sources this file and
# calls bench_init "$@". Then: bench_row for each row, bench_table at the end.

duration=10
rounds=3
build=build-bench
connections=50
threads=1 # wrk and the server each get one of a 2-core machine's cores
scale=1   # requests per request wrk counts

bench_init() {
        while [ $# -gt 0 ]; do
                case $1 in
                --quick) duration=3 rounds=1 ;;
                --rounds) rounds=$2; shift ;;
                --duration) duration=$2; shift ;;
                --build) build=$2; shift ;;
                -h | --help) sed -n '2,14p' "$0"; exit 0 ;;
                *) echo "$name: unknown option $1" >&2; exit 2 ;;
                esac
                shift
        done
        local tool
        for tool in $tools; do
                command -v "$tool" >/dev/null ||
                        { echo "$name: $tool not found (scripts/deps.sh installs it)" >&2; exit 1; }
        done

        # A release build of our own, so that a debug build/ does not skew the figures.
        if [ ! -f "$build/build.ninja" ]; then
                meson setup "$build" --buildtype=release -Dtests=false >/dev/null
        fi
        local out
        if ! out=$(ninja -C "$build" 2>&1); then
                echo "$out" >&2
                echo "$name: build failed in $build" >&2
                exit 1
        fi
        build=$(cd "$build" && pwd)
        export PAF_PLUGIN_PATH=$build/plugins

        tmp=$(mktemp -d)
        chmod 0755 "$tmp"
        pids=()
        trap bench_cleanup EXIT
        clk_tck=$(getconf CLK_TCK)
        rows=()
}

bench_cleanup() {
        local p
        for p in "${pids[@]}"; do
                kill "$p" 2>/dev/null || true
        done
        for p in "${pids[@]}"; do
                wait "$p" 2>/dev/null || true
        done
        rm -rf "$tmp"
}

# bench_page FILE: the 4 KiB HTML page the static rows serve.
bench_page() {
        {
                echo '<!DOCTYPE html><html><head><title>bench</title></head><body>'
                head -c 3000 /dev/zero | tr '\0' 'x' | fold -w 100
                echo '</body></html>'
        } >"$1"
        truncate -s 4096 "$1"
}

# nginx_conf_head: what every script's nginx.conf starts with, in
# $tmp/nginx: one process, access_log off, long keep-alive, sendfile; it
# opens the http block, which the script goes on with and closes.
nginx_conf_head() {
        cat <<EOF
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
EOF
}

free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Fields after the command name: utime and stime are the 12th and 13th.
cpu_ticks() {
        sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

median() {
        printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

# measure LABEL SERVER PID URL MODE: a warm-up, then one measured run;
# prints its line and sets $us (CPU us per request) and $rps.
measure() {
        local label=$1 server=$2 pid=$3 url=$4 mode=$5
        run_wrk "$url" "$mode" 1 >/dev/null
        local t0 t1 res requests errors cpu
        t0=$(cpu_ticks "$pid")
        res=$(run_wrk "$url" "$mode" "$duration")
        t1=$(cpu_ticks "$pid")
        requests=$((${res%%|*} * scale))
        errors=${res#*|}
        cpu=$(echo "scale=3; ($t1 - $t0) / $clk_tck" | bc)
        us=$(echo "scale=2; ($t1 - $t0) * 1000000 / $clk_tck / $requests" | bc)
        rps=$((requests / duration))
        printf '%-34s %-10s %10d %9d %8.2f %10.2f %s\n' "$label" "$server" "$requests" "$rps" \
                "$cpu" "$us" "${errors:+  ($errors)}"
}

bench_header() {
        echo
        echo "wrk -t$threads -c$connections -d${duration}s, $rounds round(s) per row${1:+; $1}"
        printf '%-34s %-10s %10s %9s %8s %10s\n' "row" "server" "requests" "req/s" "cpu s" \
                "cpu us/req"
}

# bench_row LABEL PAF_NAME PAF_PID PAF_URL NGINX_PID NGINX_URL MODE: rounds
# alternating paf and nginx; keeps the medians for bench_table.
bench_row() {
        local label=$1 name=$2 ppid=$3 purl=$4 npid=$5 nurl=$6 mode=$7 r
        local pus=() prps=() nus=() nrps=()
        for ((r = 0; r < rounds; r++)); do
                measure "$label" "$name" "$ppid" "$purl" "$mode"
                pus+=("$us") prps+=("$rps")
                measure "$label" "nginx" "$npid" "$nurl" "$mode"
                nus+=("$us") nrps+=("$rps")
        done
        rows+=("$label|$(median "${pus[@]}")|$(median "${nus[@]}")|$(median "${prps[@]}")|$(median "${nrps[@]}")")
}

bench_table() {
        echo
        printf '%-34s %12s %12s %9s %11s %11s %9s\n' "row" "paf us/req" "nginx us/req" \
                "cpu ratio" "paf req/s" "nginx req/s" "rps ratio"
        local entry label pus nus prps nrps ratio rratio
        for entry in "${rows[@]}"; do
                IFS='|' read -r label pus nus prps nrps <<<"$entry"
                ratio=$(printf "%.2f" "$(echo "scale=4; $pus / $nus" | bc)")
                rratio=$(printf "%.2f" "$(echo "scale=4; $prps / $nrps" | bc)")
                printf '%-34s %12s %12s %9s %11s %11s %9s\n' "$label" "$pus" "$nus" "$ratio" \
                        "$prps" "$nrps" "$rratio"
        done
        echo
        echo "medians of $rounds round(s); cpu ratio = paf CPU us per request / nginx's (lower is better for paf)"
}
