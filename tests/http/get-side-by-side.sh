# tests/http/get-side-by-side.sh — sourced by test-get-cookies.sh, test-get-compressed.sh and test-get-timings.sh:
# $tmp, ok/fail, paf get and curl run side by side (both, same, same_file), and
# start_nginx SERVER-BLOCK-LINES for an nginx on loopback, stopped at exit.
nginx=/usr/sbin/nginx
[ -x "$nginx" ] || { echo "nginx not found: skipping"; exit 77; }
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
unset http_proxy https_proxy HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/*.err $tmp/ng/error.log"
# both ARGS…: paf get and curl -s with the same arguments, run in $tmp/paf
# and $tmp/curl (files they write land there); stdout in $tmp/paf.out and
# $tmp/curl.out, exit codes in $prc and $crc.
mkdir "$tmp/paf" "$tmp/curl"
both() {
        prc=0
        (cd "$tmp/paf" && timeout 20 "$PAF_BIN" get -sS "$@") >"$tmp/paf.out" 2>"$tmp/paf.err" || prc=$?
        crc=0
        (cd "$tmp/curl" && timeout 20 curl -sS "$@") >"$tmp/curl.out" 2>"$tmp/curl.err" || crc=$?
        [ $prc != 124 ] && [ $crc != 124 ] || fail "$*: hung"
}
same() {
        both "$@"
        [ $prc = $crc ] || fail "$*: paf exit $prc, curl exit $crc: $(cat "$tmp/paf.err")"
        cmp -s "$tmp/paf.out" "$tmp/curl.out" ||
                fail "$*: paf and curl wrote different bytes: $(head -c 300 "$tmp/paf.out") / $(head -c 300 "$tmp/curl.out")"
}
same_file() {
        cmp -s "$tmp/paf/$1" "$tmp/curl/$1" ||
                fail "$1: paf and curl wrote different files: $(diff "$tmp/paf/$1" "$tmp/curl/$1")"
}

# start_nginx SERVER-BLOCK-LINES: nginx on 127.0.0.1:$port, root $tmp/ng/www.
ng=$tmp/ng
mkdir -p "$ng/www" "$ng/tmp"
start_nginx() {
        port=$(free_port)
        cat >"$ng/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $ng/tmp;
  proxy_temp_path $ng/tmp;
  fastcgi_temp_path $ng/tmp;
  uwsgi_temp_path $ng/tmp;
  scgi_temp_path $ng/tmp;
  default_type application/octet-stream;
  types { text/plain txt; }
  server {
    listen 127.0.0.1:$port;
    root $ng/www;
$1
  }
}
CONF
        chmod -R a+rX "$tmp"
        "$nginx" -p "$ng" -c "$ng/nginx.conf" -e /dev/null </dev/null >/dev/null 2>"$tmp/nginx.err" &
        pids="$pids $!"
        i=0
        while ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
                i=$((i + 1))
                [ $i -lt 200 ] || fail "nginx did not start"
                sleep 0.05
        done
}

