#!/bin/sh
# tests/tools/test-bench.sh — `paf bench` against `paf serve` and nginx on loopback: -n exact (the servers' access logs agree), -z on time, -R at its rate, a SIGSTOPped server in p99, TLS, unix sockets and a third party's transport, --new-connection counted by nginx, every failure kind with its reason and exit status, --json against the text, the histogram against --log.
set -eu
for tool in python3 certtool cc pkg-config timeout; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
nginx=/usr/sbin/nginx
[ -x "$nginx" ] || { echo "nginx not found: skipping"; exit 77; }
[ -f "$PAF_TEST_PLUGINDIR/tls.so" ] || { echo "no tls.so in $PAF_TEST_PLUGINDIR: skipping"; exit 77; }
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
here=$PAF_TEST_SRCDIR/tests/tools
# shellcheck source=../http/https-certs.sh
. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"
# shellcheck disable=SC3045 # dash and bash both have ulimit -n
ulimit -n 4096 2>/dev/null || true

tmp=$(mktemp -d)
chmod 0755 "$tmp"
# Everything the test started, stopped by pid (a stopped one is woken first).
pids=
cleanup() {
        for p in $pids; do
                kill -CONT "$p" 2>/dev/null || true
                kill -9 "$p" 2>/dev/null || true
        done
        for p in $pids; do
                wait "$p" 2>/dev/null || true
        done
        rm -rf "$tmp"
}
trap cleanup EXIT
# forget PID: it was waited for; its number may be reused.
forget() { pids=$(echo " $pids " | sed "s/ $1 / /"); }
trap 'exit 1' INT TERM HUP

n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok $n_checks: $*"
}
fail() {
        echo "FAIL: $*" >&2
        for f in "$tmp/serve.err" "$tmp/ng/logs/error.log"; do
                [ -s "$f" ] && { echo "--- $f (last 10 lines)" >&2; tail -n 10 "$f" >&2; }
        done
        exit 1
}
# show NAME WHY: fail with what bench run NAME printed.
show() {
        {
                echo "--- paf bench $2: exit $rc, $wall_ms ms"
                echo "--- stdout"
                cat "$tmp/$1.out"
                echo "--- stderr"
                cat "$tmp/$1.err"
        } >&2
        fail "$1: $3"
}

free_port() {
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_accepts() {
        python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null
}
# between X LO HI: LO <= X <= HI, as decimal numbers.
between() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x >= lo && x <= hi) }'; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ---- paf bench runs ----
# Every run writes $tmp/NAME.{out,err,json}; its exit status is in $rc, its
# wall time (as seen from here) in $wall_ms. Every run's --json is checked
# against its text summary (bench-check.py summary).
n_json=0
bench_bg() {
        name=$1
        shift
        bargs="$*"
        t0=$(now_ms)
        "$PAF_BIN" bench "$@" --json "$tmp/$name.json" >"$tmp/$name.out" 2>"$tmp/$name.err" </dev/null &
        bench_pid=$!
        pids="$pids $bench_pid"
}
# Bounded: a run still going after 20 s is killed, and fails.
bench_wait() {
        i=0
        hung=
        while [ -d "/proc/$bench_pid" ] &&
                [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$bench_pid/status" 2>/dev/null)" != Z ]; do
                i=$((i + 1))
                if [ $i -gt 1000 ]; then
                        kill -9 "$bench_pid" 2>/dev/null || true
                        hung=1
                        break
                fi
                sleep 0.02
        done
        rc=0
        wait "$bench_pid" || rc=$?
        forget "$bench_pid"
        wall_ms=$(($(now_ms) - t0))
        [ -z "$hung" ] || show "$name" "$bargs" "did not end within 20 s"
        [ $rc = 0 ] || [ $rc = 1 ] || show "$name" "$bargs" "exit $rc"
        # Not a terminal: no progress line, nothing on stderr.
        [ ! -s "$tmp/$name.err" ] || show "$name" "$bargs" "wrote on stderr"
        summary=$(python3 "$here/bench-check.py" summary "$tmp/$name.out" "$tmp/$name.json" 2>&1) ||
                show "$name" "$bargs" "--json does not match the summary: $summary"
        n_json=$((n_json + 1))
}
bench() {
        bench_bg "$@"
        bench_wait
}
jget() { python3 "$here/bench-check.py" get "$tmp/$1.json" "$2"; }
# expect_rc NAME WANT
expect_rc() { [ "$rc" = "$2" ] || show "$1" "$bargs" "exit $rc, not $2"; }
# expect_clean NAME N: exit 0, N requests (N ok), no failure.
expect_clean() {
        expect_rc "$1" 0
        [ "$(jget "$1" requests)/$(jget "$1" ok)/$(jget "$1" failed)" = "$2/$2/0" ] ||
                show "$1" "$bargs" "not $2 requests, all ok"
        grep -qx "  requests:   $2 ($2 ok, 0 failed) in [0-9.]* s" "$tmp/$1.out" ||
                show "$1" "$bargs" "the summary does not say $2 requests, $2 ok"
}

# count_lines FILE AWK-CONDITION WANT: how many lines of FILE match, once
# at least WANT do (a server logs a request after answering it), or after 3 s.
count_lines() {
        i=0
        while n=$(awk "$2" "$1" | wc -l) && [ "$n" -lt "$3" ] && [ $i -lt 60 ]; do
                i=$((i + 1))
                sleep 0.05
        done
        # More may still come: what a run sent beyond its count.
        sleep 0.1
        awk "$2" "$1" | wc -l
}
# serve_count RUN WANT: paf serve's access log lines for /?r=RUN.
serve_count() { count_lines "$tmp/serve.err" "index(\$0, \"\\\"GET /?r=$1 HTTP/1.1\\\" \")" "$2"; }
# nginx_count DIR RUN WANT: nginx's access log lines for /?r=RUN.
nginx_count() { count_lines "$1/logs/access.log" "{ u = \$4; sub(/^[^?]*[?]r=/, \"\", u) } u == \"$2\"" "$3"; }

# ---- certificates, the third party's plugin, the servers ----
certs=$tmp/certs
mkdir "$certs"
https_ca "$certs" ca || fail "certtool: CA"
https_ca "$certs" other || fail "certtool: second CA"
https_cert "$certs" srv ca localhost localhost 127.0.0.1 || fail "certtool: server"

# "relay" (bench-relay.c), built as a third party builds: pkg-config paf only.
mkdir "$tmp/plugins"
PKG_CONFIG_PATH=$PAF_TEST_BUILDDIR/pkgconfig/uninstalled
export PKG_CONFIG_PATH
# shellcheck disable=SC2046 # pkg-config's flags are words
cc -std=gnu11 -O1 -fPIC -fvisibility=hidden -Wall -Wextra -Werror -Wno-missing-field-initializers \
        $(pkg-config --cflags paf) -shared -o "$tmp/plugins/relay.so" "$here/bench-relay.c" \
        $(pkg-config --libs paf) >"$tmp/cc.log" 2>&1 || { cat "$tmp/cc.log" >&2; fail "relay.so did not build"; }
PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR:$tmp/plugins
export PAF_PLUGIN_PATH
relay=pafbench$$

mkdir "$tmp/www"
echo hello >"$tmp/www/index.html"
: >"$tmp/serve.err"
"$PAF_BIN" serve --root "$tmp/www" --listen 127.0.0.1:0 --listen "$tmp/serve.sock" \
        --listen "relay:$relay" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" \
        --key "$certs/srv.key" 2>"$tmp/serve.err" &
serve_pid=$!
pids="$pids $serve_pid"
i=0
while [ "$(grep -c 'listening on' "$tmp/serve.err")" -lt 4 ]; do
        kill -0 "$serve_pid" 2>/dev/null || fail "paf serve exited at start"
        i=$((i + 1))
        [ $i -le 400 ] || fail "paf serve did not start in 20 s"
        sleep 0.05
done
sport=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$tmp/serve.err")
tport=$(sed -n 's|.*listening on https://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$tmp/serve.err")
[ -n "$sport" ] && [ -n "$tport" ] || fail "paf serve's ports: $(cat "$tmp/serve.err")"
ok "paf serve on 127.0.0.1:$sport, https 127.0.0.1:$tport, $tmp/serve.sock and relay:$relay"

# start_nginx DIR: nginx (one process) on free ports, its access log one line a
# request: "$connection $connection_requests $status $request_uri". Sets
# ng_pid, ng_port (http) and ng_tls (https).
start_nginx() {
        d=$1
        mkdir -p "$d/www" "$d/tmp" "$d/logs"
        echo hello >"$d/www/index.html"
        head -c 1048576 /dev/zero >"$d/www/big"
        for _ in 1 2 3 4 5; do
                ng_port=$(free_port)
                ng_tls=$(free_port)
                cat >"$d/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 2048; }
http {
  log_format bench '\$connection \$connection_requests \$status \$request_uri';
  access_log $d/logs/access.log bench;
  client_body_temp_path $d/tmp;
  proxy_temp_path $d/tmp;
  fastcgi_temp_path $d/tmp;
  uwsgi_temp_path $d/tmp;
  scgi_temp_path $d/tmp;
  # No closes of nginx's own choosing in the middle of a run.
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$ng_port;
    listen 127.0.0.1:$ng_tls ssl;
    listen unix:$d/nginx.sock;
    ssl_certificate $certs/srv.pem;
    ssl_certificate_key $certs/srv.key;
    root $d/www;
    location = /500 { return 500 "boom\n"; }
    location = /nginx-status { stub_status; access_log off; }
    # Every answer says Connection: close, and nginx closes.
    location /close/ { alias $d/www/; keepalive_timeout 0; }
  }
}
EOF
                rm -f "$d/nginx.sock"
                "$nginx" -p "$d" -c "$d/nginx.conf" -e /dev/null </dev/null >/dev/null 2>"$d/nginx.err" &
                ng_pid=$!
                pids="$pids $ng_pid"
                i=0
                while kill -0 "$ng_pid" 2>/dev/null && [ $i -lt 200 ]; do
                        if [ -S "$d/nginx.sock" ] && port_accepts "$ng_port" && port_accepts "$ng_tls"; then
                                return 0
                        fi
                        i=$((i + 1))
                        sleep 0.05
                done
                kill -9 "$ng_pid" 2>/dev/null || true
                wait "$ng_pid" 2>/dev/null || true
                forget "$ng_pid"
        done
        cat "$d/nginx.err" "$d/logs/error.log" >&2 2>/dev/null || true
        fail "nginx did not start in $d"
}
# accepts PORT: the connections nginx has accepted so far (this one included).
accepts() {
        python3 -c "
import urllib.request
page = urllib.request.urlopen('http://127.0.0.1:$1/nginx-status', timeout=5).read().decode()
print(page.splitlines()[2].split()[0])"
}
ng=$tmp/ng
start_nginx "$ng"
nginx_pid=$ng_pid nport=$ng_port ntls=$ng_tls
ok "nginx on 127.0.0.1:$nport, https 127.0.0.1:$ntls and unix:$ng/nginx.sock"

# ---- -n is exact ----
for p in 1 8; do
        bench "n-serve-p$p" "http://127.0.0.1:$sport/?r=n-serve-p$p" -n 5000 -c 50 -t 2 -p $p
        expect_clean "n-serve-p$p" 5000
        logged=$(serve_count "n-serve-p$p" 5000)
        [ "$logged" = 5000 ] || show "n-serve-p$p" "$bargs" "paf serve logged $logged requests, not 5000"
        ok "-n 5000 -c 50 -t 2 -p $p against paf serve: summary, JSON and paf serve's access log say 5000 ($wall_ms ms)"
        a0=$(accepts "$nport")
        bench "n-nginx-p$p" "http://127.0.0.1:$nport/?r=n-nginx-p$p" -n 5000 -c 50 -t 2 -p $p
        made=$(($(accepts "$nport") - a0 - 1))
        expect_clean "n-nginx-p$p" 5000
        logged=$(nginx_count "$ng" "n-nginx-p$p" 5000)
        [ "$logged" = 5000 ] || show "n-nginx-p$p" "$bargs" "nginx logged $logged requests, not 5000"
        conns=$(awk '$4 == "/?r=n-nginx-p'$p'" { print $1 }' "$ng/logs/access.log" | sort -u | wc -l)
        # Every connection made carried requests, and at most -c were made
        # (fewer when one thread starts after the other took every request).
        [ "$conns" = "$made" ] && [ "$made" = "$(jget "n-nginx-p$p" connections_made)" ] &&
                [ "$made" -ge 25 ] && [ "$made" -le 50 ] ||
                show "n-nginx-p$p" "$bargs" "connections: $conns in nginx's log, $made accepted by nginx, $(jget "n-nginx-p$p" connections_made) made by paf bench; not the same 25-50"
        ok "-n 5000 -c 50 -t 2 -p $p against nginx: summary, JSON and nginx's access log say 5000, over $made connections, each carrying requests ($wall_ms ms)"
done

# ---- -z stops on time ----
bench z "http://127.0.0.1:$nport/?r=z" -z 2 -c 20
expect_rc z 0
zwall=$(jget z wall_seconds)
between "$wall_ms" 2000 2600 || show z "$bargs" "took $wall_ms ms, not 2.0-2.6 s"
between "$zwall" 1.95 2.3 || show z "$bargs" "wall_seconds $zwall, not about 2"
zn=$(jget z requests)
[ "$zn" -gt 1000 ] || show z "$bargs" "only $zn requests"
# What was in flight at the end was served but is not counted: at most one
# per connection more on nginx.
logged=$(nginx_count "$ng" z "$zn")
[ "$logged" -ge "$zn" ] && [ "$logged" -le $((zn + 20)) ] ||
        show z "$bargs" "nginx logged $logged requests, the run counted $zn"
ok "-z 2: $wall_ms ms in all, wall_seconds $zwall, $zn requests (nginx logged $logged)"

# ---- -R holds its rate ----
bench rate "http://127.0.0.1:$nport/?r=rate" -R 2000 -z 5 -c 50
expect_rc rate 0
rps=$(jget rate requests_per_second)
between "$rps" 1900 2100 || show rate "$bargs" "$rps requests/s, not 2000 within 5%"
ok "-R 2000 -z 5 against nginx: $rps requests/s, p99 $(jget rate latency.p99) us"

# ---- a stalled server shows in the percentiles ----
bench calm "http://127.0.0.1:$nport/?r=calm" -R 1000 -z 2 -c 50
expect_rc calm 0
calm99=$(jget calm latency.p99)
[ "$calm99" -lt 100000 ] || show calm "$bargs" "p99 $calm99 us without a stall, not under 100 ms"
bench_bg stall "http://127.0.0.1:$nport/?r=stall" -R 1000 -z 4 -c 50
sleep 1.5
kill -STOP "$nginx_pid"
sleep 1
kill -CONT "$nginx_pid"
bench_wait
expect_rc stall 0
[ "$(jget stall failed)" = 0 ] || show stall "$bargs" "failures"
st99=$(jget stall latency.p99)
stmax=$(jget stall latency.max)
[ "$st99" -ge 500000 ] && [ "$stmax" -ge 900000 ] ||
        show stall "$bargs" "p99 $st99 us, max $stmax us: the 1 s stall is hidden"
ok "SIGSTOP 1 s in -R 1000 -z 4: p99 $st99 us, max $stmax us; without the stall p99 $calm99 us"

# ---- TLS, unix sockets, a third party's transport ----
bench tls-serve "https://localhost:$tport/?r=tls-serve" --cacert "$certs/ca.pem" -n 2000 -c 20
expect_clean tls-serve 2000
logged=$(serve_count tls-serve 2000)
[ "$logged" = 2000 ] || show tls-serve "$bargs" "paf serve logged $logged, not 2000"
bench tls-nginx "https://localhost:$ntls/?r=tls-nginx" --cacert "$certs/ca.pem" -n 2000 -c 20
expect_clean tls-nginx 2000
logged=$(nginx_count "$ng" tls-nginx 2000)
[ "$logged" = 2000 ] || show tls-nginx "$bargs" "nginx logged $logged, not 2000"
ok "TLS (--cacert): 2000 requests to paf serve, 2000 to nginx; 0 failures"

pct_sock=$(printf '%s' "$tmp/serve.sock" | sed 's|%|%25|g; s|/|%2F|g')
bench unix-url "http+unix://$pct_sock/?r=unix-url" -n 2000 -c 20
expect_clean unix-url 2000
bench unix-opt "http://localhost/?r=unix-opt" --unix-socket "$tmp/serve.sock" -n 2000 -c 20
expect_clean unix-opt 2000
for r in unix-url unix-opt; do
        logged=$(serve_count $r 2000)
        [ "$logged" = 2000 ] || show $r "$bargs" "paf serve logged $logged, not 2000"
done
grep -q "^  over unix $tmp/serve.sock\$" "$tmp/unix-url.out" || show unix-url "$bargs" "not over unix"
bench unix-nginx "http://localhost/?r=unix-nginx" --unix-socket "$ng/nginx.sock" -n 2000 -c 20
expect_clean unix-nginx 2000
logged=$(nginx_count "$ng" unix-nginx 2000)
[ "$logged" = 2000 ] || show unix-nginx "$bargs" "nginx logged $logged, not 2000"
ok "unix sockets: http+unix://$pct_sock and --unix-socket to paf serve, --unix-socket to nginx: 3 × 2000 requests, 0 failures"

bench relay "http+relay://$relay/?r=relay" -n 2000 -c 20
expect_clean relay 2000
[ "$(jget relay endpoint)" = "relay relay:$relay" ] || show relay "$bargs" "endpoint $(jget relay endpoint)"
logged=$(serve_count relay 2000)
[ "$logged" = 2000 ] || show relay "$bargs" "paf serve logged $logged, not 2000"
ok "a third party's transport (relay.so, scheme +relay): 2000 requests to paf serve over $(jget relay endpoint), 0 failures"

# ---- --new-connection: one connection per request, counted by nginx ----
a0=$(accepts "$nport")
bench newconn "http://127.0.0.1:$nport/?r=newconn" -n 500 -c 10 --new-connection
made=$(($(accepts "$nport") - a0 - 1))
expect_clean newconn 500
logged=$(nginx_count "$ng" newconn 500)
conns=$(awk '$4 == "/?r=newconn" { print $1 }' "$ng/logs/access.log" | sort -u | wc -l)
reused=$(awk '$4 == "/?r=newconn" && $2 != 1' "$ng/logs/access.log" | wc -l)
[ "$logged" = 500 ] && [ "$conns" = 500 ] && [ "$reused" = 0 ] ||
        show newconn "$bargs" "nginx: $logged requests over $conns connections, $reused not the first on theirs"
# Not one more: a connection made for no request is one nginx accepted.
[ "$made" = 500 ] || show newconn "$bargs" "nginx accepted $made connections, not 500"
[ "$(jget newconn connections_made)" = 500 ] && [ "$(jget newconn connect.count)" = 500 ] ||
        show newconn "$bargs" "connections_made $(jget newconn connections_made), connect.count $(jget newconn connect.count)"
cp50=$(jget newconn connect.p50)
[ "$cp50" -gt 0 ] || show newconn "$bargs" "connect p50 $cp50"
grep -q "^  connect: p50 [1-9][0-9.]*[mu]s  p99 " "$tmp/newconn.out" || show newconn "$bargs" "no connect p50 in the text"
ok "--new-connection -n 500: nginx accepted 500 connections and logged one request on each; connect p50 $cp50 us"

# Answers that take more than one read: 1 MiB bodies, and TLS (whose
# records put head and body apart).
bench newconn-big "http://127.0.0.1:$nport/big?r=newconn-big" -n 50 -c 5 --new-connection
expect_clean newconn-big 50
[ "$(jget newconn-big body_bytes)" = $((50 * 1048576)) ] || show newconn-big "$bargs" "not 50 MiB of bodies"
logged=$(nginx_count "$ng" newconn-big 50)
[ "$logged" = 50 ] || show newconn-big "$bargs" "nginx logged $logged, not 50"
a0=$(accepts "$nport")
bench tls-new-nginx "https://localhost:$ntls/?r=tls-new-nginx" --cacert "$certs/ca.pem" -n 200 -c 10 --new-connection
made=$(($(accepts "$nport") - a0 - 1))
expect_clean tls-new-nginx 200
[ "$made" = 200 ] || show tls-new-nginx "$bargs" "nginx accepted $made connections, not 200"
bench tls-new "https://localhost:$tport/?r=tls-new" --cacert "$certs/ca.pem" -n 200 -c 10 --new-connection
expect_clean tls-new 200
[ "$(jget tls-new connections_made)" = 200 ] || show tls-new "$bargs" "$(jget tls-new connections_made) connections, not 200"
logged=$(serve_count tls-new 200)
[ "$logged" = 200 ] || show tls-new "$bargs" "paf serve logged $logged, not 200"
ok "--new-connection: 50 × 1 MiB from nginx; 200 TLS handshakes with nginx (200 accepted) and with paf serve (connect p50 $(jget tls-new connect.p50) us)"

# A server that closes after every answer, under -p 4: what was pipelined
# behind an answer goes again on the next connection; -n stays exact.
a0=$(accepts "$nport")
bench close "http://127.0.0.1:$nport/close/?r=close" -n 200 -c 5 -p 4
made=$(($(accepts "$nport") - a0 - 1))
expect_clean close 200
logged=$(nginx_count "$ng" close 200)
[ "$logged" = 200 ] && [ "$made" = 200 ] || show close "$bargs" "nginx logged $logged requests over $made connections, not 200 over 200"
ok "Connection: close after every answer, -p 4 -n 200: 200 ok, nginx logged 200 over 200 connections"

# ---- failures ----
# failures_of NAME: "reason<TAB>detail<TAB>count" lines.
failures_of() { python3 "$here/bench-check.py" failures "$tmp/$1.json"; }

# nginx killed in the middle of a -z run.
start_nginx "$tmp/ng2"
bench_bg killed "http://127.0.0.1:$ng_port/?r=killed" -z 3 -c 20 -t 2
sleep 1
kill -9 "$ng_pid"
wait "$ng_pid" 2>/dev/null || true
forget "$ng_pid"
bench_wait
expect_rc killed 1
kfailed=$(jget killed failed)
[ "$(jget killed ok)" -gt 0 ] && [ "$kfailed" -gt 0 ] || show killed "$bargs" "not some ok then failures"
other=$(failures_of killed | awk -F '\t' '$1 != "connection refused" && $1 != "reset"')
[ -z "$other" ] || show killed "$bargs" "failures other than refused or reset: $other"
failures_of killed | grep -q "^connection refused	127\.0\.0\.1:$ng_port	" ||
        show killed "$bargs" "no connection refused group for 127.0.0.1:$ng_port"
grep -q "^Failures:" "$tmp/killed.out" || show killed "$bargs" "no Failures section"
ok "nginx SIGKILLed in -z 3: exit 1, $(jget killed ok) ok, $kfailed failed: $(failures_of killed | awk -F '\t' '{ printf "%s%s%s%s × %s", sep, $1, $2 == "" ? "" : ": ", $2, $3; sep = "; " }')"

# A refused port: every request, and --allow-failures.
refused=$(free_port)
bench refused "http://127.0.0.1:$refused/" -n 100 -c 10 --log "$tmp/refused.log"
expect_rc refused 1
[ "$(jget refused requests)/$(jget refused ok)/$(jget refused failed)" = 100/0/100 ] ||
        show refused "$bargs" "not 100 requests, all failed"
[ "$(failures_of refused)" = "connection refused	127.0.0.1:$refused	100" ] ||
        show refused "$bargs" "failures: $(failures_of refused)"
grep -q "^  connection refused: 127\.0\.0\.1:$refused: 100 (first at [0-9.]* s, http://127\.0\.0\.1:$refused/)\$" \
        "$tmp/refused.out" || show refused "$bargs" "no 'connection refused: 127.0.0.1:$refused: 100' line"
[ "$(grep -vc '^#' "$tmp/refused.log")" = 100 ] &&
        [ "$(awk '!/^#/ && $7 == "connection_refused:127.0.0.1:'"$refused"'"' "$tmp/refused.log" | wc -l)" = 100 ] ||
        show refused "$bargs" "--log: not 100 lines of connection_refused: $(head -n 3 "$tmp/refused.log")"
bench refused-allowed "http://127.0.0.1:$refused/" -n 100 -c 10 --allow-failures
expect_rc refused-allowed 0
[ "$(jget refused-allowed failed)" = 100 ] || show refused-allowed "$bargs" "not 100 failed"
ok "a refused port: 100 of 100 'connection refused: 127.0.0.1:$refused', exit 1 (--log: 100 lines with the error); --allow-failures: exit 0"
# Thousands of refused connects a second from 2 threads at once.
bench refused-z "http://127.0.0.1:$refused/" -z 1 -c 100 -t 2
expect_rc refused-z 1
rz=$(jget refused-z failed)
[ "$(failures_of refused-z | cut -f 1,2)" = "connection refused	127.0.0.1:$refused" ] &&
        [ "$(jget refused-z ok)" = 0 ] && [ "$rz" -gt 100 ] ||
        show refused-z "$bargs" "not only 'connection refused': $(failures_of refused-z)"
ok "a refused port, -z 1 -c 100 -t 2: $rz of $rz 'connection refused', exit 1"

# Another CA: GnuTLS's reason.
for srv in serve:$tport nginx:$ntls; do
        r=wrong-ca-${srv%%:*}
        bench "$r" "https://localhost:${srv#*:}/" --cacert "$certs/other.pem" -n 20 -c 5
        expect_rc "$r" 1
        f=$(failures_of "$r")
        case $f in
        "TLS failure	"*[Ii]ssuer*unknown*"	20" | "TLS failure	"*"not trusted"*"	20") ;;
        *) show "$r" "$bargs" "not 20 TLS failures with GnuTLS's reason: $f" ;;
        esac
        [ "$(jget "$r" ok)" = 0 ] || show "$r" "$bargs" "some ok"
done
ok "--cacert of another CA (paf serve and nginx): 20 of 20 '$(failures_of wrong-ca-serve | cut -f 1,2 | sed 's/\t/: /')', exit 1"

# 500 under --expect-status 200; and the default takes 2xx and 3xx only.
bench status500 "http://127.0.0.1:$nport/500" -n 100 -c 10 --expect-status 200
expect_rc status500 1
[ "$(jget status500 status.500)" = 100 ] && [ "$(failures_of status500)" = "unexpected status	500	100" ] ||
        show status500 "$bargs" "not 100 × status 500 counted as unexpected status 500"
grep -q '^  unexpected status: 500: 100 (first at ' "$tmp/status500.out" || show status500 "$bargs" "no 'unexpected status: 500: 100'"
bench status404 "http://127.0.0.1:$nport/missing" -n 50 -c 5
expect_rc status404 1
[ "$(failures_of status404)" = "unexpected status	404	50" ] || show status404 "$bargs" "404 not unexpected by default"
bench status404ok "http://127.0.0.1:$nport/missing" -n 50 -c 5 --expect-status 200,404
expect_clean status404ok 50
ok "500 under --expect-status 200: 100 'unexpected status: 500', exit 1; 404 fails by default, succeeds under --expect-status 200,404"

# A server that closes in the middle of a body, and one that answers garbage.
for mode in short garbage; do
        rm -f "$tmp/$mode.port"
        python3 "$here/bench-peer.py" $mode "$tmp/$mode.port" &
        pids="$pids $!"
        i=0
        until [ -s "$tmp/$mode.port" ]; do
                i=$((i + 1))
                [ $i -le 100 ] || fail "bench-peer.py $mode did not start"
                sleep 0.05
        done
        bench "peer-$mode" "http://127.0.0.1:$(cat "$tmp/$mode.port")/" -n 20 -c 2
        expect_rc "peer-$mode" 1
done
case $(failures_of peer-short) in
"short body	"*"10 body bytes"*"	20") ;;
*) show peer-short "$bargs" "not 20 short bodies: $(failures_of peer-short)" ;;
esac
case $(failures_of peer-garbage) in
"parse error	"*"	20") ;;
*) show peer-garbage "$bargs" "not 20 parse errors: $(failures_of peer-garbage)" ;;
esac
ok "a body cut short: 20 '$(failures_of peer-short | cut -f 1,2 | sed 's/\t/: /')'; garbage: 20 '$(failures_of peer-garbage | cut -f 1,2 | sed 's/\t/: /')'; exit 1"

# ---- the histogram against --log ----
bench hist "http://127.0.0.1:$sport/?r=hist" -n 20000 -c 50 --log "$tmp/hist.log"
expect_clean hist 20000
res=$(python3 "$here/bench-check.py" log "$tmp/hist.log" "$tmp/hist.json" 2>&1) || show hist "$bargs" "$res"
ok "--log -n 20000: header and one line per request with start, connect, first byte, total, status, bytes, error; $res"
bench hist-rate "http://127.0.0.1:$nport/?r=hist-rate" -n 3000 -R 3000 -c 20 -p 4 --log "$tmp/hist-rate.log"
expect_clean hist-rate 3000
res=$(python3 "$here/bench-check.py" log "$tmp/hist-rate.log" "$tmp/hist-rate.json" 2>&1) ||
        show hist-rate "$bargs" "$res"
ok "--log -n 3000 -R 3000 -p 4: $res"

ok "--json parses and its requests, ok, failed, status codes and failure groups match the text summary in all $n_json runs"
