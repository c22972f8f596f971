#!/bin/sh
# tests/http/test-get.sh — `paf get` against nginx (TCP and unix socket) and `paf serve` (unix, HTTPS): methods, bodies, chunked, redirects (where they may go: --proto-redir; what they carry: credentials, --location-trusted, Host), -o of 100 MiB, -i/-I/-f/-v, URLs over unix sockets, and every error with curl's exit code.
set -eu
nginx=/usr/sbin/nginx
[ -x "$nginx" ] || { echo "nginx not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
command -v certtool >/dev/null 2>&1 || { echo "certtool not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
export PYTHONDONTWRITEBYTECODE=1
# shellcheck source=tests/http/https-certs.sh
. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/*.err $tmp/nginx/logs/error.log"

# get ARGS…: paf get, bounded (a hang fails the test); stdout to $tmp/out,
# stderr to $tmp/get.err, exit status in $rc.
get() {
        rc=0
        timeout 60 "$PAF_BIN" get "$@" >"$tmp/out" 2>"$tmp/get.err" || rc=$?
        [ $rc != 124 ] || fail "paf get $*: hung"
}
# expect_ok ARGS…: get, and it must exit 0.
expect_ok() {
        get "$@"
        [ $rc = 0 ] || fail "paf get $*: exit $rc: $(cat "$tmp/get.err")"
}
# expect_body BODY ARGS…: exit 0 and exactly BODY (plus the newline) on stdout.
expect_body() {
        e_want=$1
        shift
        expect_ok "$@"
        [ "$(cat "$tmp/out")" = "$e_want" ] || fail "paf get $*: body '$(cat "$tmp/out")', not '$e_want'"
}
# expect_error CODE PATTERN URL ARGS…: exit CODE, stderr naming URL and matching PATTERN.
expect_error() {
        e_code=$1 e_pattern=$2 e_url=$3
        shift 3
        get "$@" "$e_url"
        [ $rc = "$e_code" ] || fail "paf get $* $e_url: exit $rc, not $e_code: $(cat "$tmp/get.err")"
        grep -qF "paf get: $e_url" "$tmp/get.err" || fail "paf get $e_url: message does not name the URL: $(cat "$tmp/get.err")"
        grep -qiE "$e_pattern" "$tmp/get.err" || fail "paf get $e_url: no /$e_pattern/ in: $(cat "$tmp/get.err")"
        [ ! -s "$tmp/out" ] || fail "paf get $e_url: wrote output on error: $(cat "$tmp/out")"
}

# urlencode the socket path for http+unix://.
pct() { printf '%s' "$1" | sed 's|%|%25|g; s|/|%2F|g'; }

# ---- nginx: methods, redirects, 404, static files, chunked ----
ng=$tmp/nginx
mkdir -p "$ng/www/sub" "$ng/tmp" "$ng/logs"
big_size=104857600
head -c $big_size /dev/urandom >"$ng/www/big.bin"
i=0
while [ $i -lt 2000 ]; do
        echo "line $i AAAA paf"
        i=$((i + 1))
done >"$ng/www/text.txt"
printf 'small file\n' >"$ng/www/small.txt"
head -c 70000 /dev/urandom >"$tmp/put.bin"
# nginx may drop to nobody: it must read the tree.
chmod -R a+rX "$tmp"

start_nginx() {
        port=$(free_port)
        cat >"$ng/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/logs/error.log info;
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
  client_max_body_size 8m;
  server {
    listen 127.0.0.1:$port;
    listen unix:$ng/nginx.sock;
    root $ng/www;
    location = /method { return 200 "\$request_method \$content_length\n"; }
    location = /type { return 200 "\$content_type\n"; }
    location = /agent { return 200 "\$http_x_paf_test\n"; }
    location = /r1 { return 302 /r2; }
    location = /r2 { return 301 /r3; }
    location = /r3 { return 307 /final; }
    location = /final { return 200 "final\n"; }
    location = /loop { return 302 /loop; }
    location /sub/ { alias $ng/www/; sub_filter 'AAAA' 'BBBB'; sub_filter_once off;
                     sub_filter_types text/plain; }
    location /gz/ { alias $ng/www/; gzip on; gzip_types text/plain; gzip_min_length 1; }
  }
}
EOF
        "$nginx" -p "$ng" -c "$ng/nginx.conf" -e /dev/null </dev/null >/dev/null 2>"$tmp/nginx.err" &
        nginx_pid=$!
        pids="$pids $nginx_pid"
        i=0
        while ! [ -S "$ng/nginx.sock" ] ||
                ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
                kill -0 "$nginx_pid" 2>/dev/null || return 1
                i=$((i + 1))
                [ $i -lt 200 ] || return 1
                sleep 0.05
        done
}
started=
for _ in 1 2 3 4 5; do
        if start_nginx; then
                started=1
                break
        fi
        kill "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
        rm -f "$ng/nginx.sock"
done
[ -n "$started" ] || fail "nginx did not start"
url=http://127.0.0.1:$port
ok "nginx on $url and unix:$ng/nginx.sock"

# ---- methods and bodies ----
expect_body "GET " "$url/method"
expect_body "POST 5" -d hello "$url/method"
expect_body "POST 8" -d a=1 -d b=22 "$url/method" # a=1&b=22
expect_body "application/x-www-form-urlencoded" -d a=1 "$url/type"
expect_body "PUT 70000" -X PUT --data-binary @"$tmp/put.bin" "$url/method"
expect_body "PATCH 3" -X PATCH --data-binary @- "$url/method" <<EOF
ab
EOF
expect_body "DELETE " -X DELETE "$url/method"
expect_body "hi there" -H 'X-Paf-Test: hi there' "$url/agent"
ok "GET, POST (-d, repeated -d joined with &), PUT (--data-binary @FILE), PATCH (@-), DELETE, -H"

# HEAD: the status line and headers, no body.
expect_ok -I "$url/small.txt"
head -n 1 "$tmp/out" | grep -q '^HTTP/1.1 200' || fail "-I status line: $(cat "$tmp/out")"
tr -d '\r' <"$tmp/out" | grep -qix 'content-length: 11' || fail "-I Content-Length: $(cat "$tmp/out")"
grep -q 'small file' "$tmp/out" && fail "-I printed the body"
[ "$(tail -c 2 "$tmp/out" | od -An -c | tr -d ' ')" = '\r\n' ] || fail "-I: no blank line at the end"
ok "-I: HEAD, status line and headers only"

# -i: the status line and headers before the body.
expect_ok -i "$url/small.txt"
head -n 1 "$tmp/out" | grep -q '^HTTP/1.1 200 OK' || fail "-i status line: $(cat "$tmp/out")"
tr -d '\r' <"$tmp/out" | grep -qi '^content-type: text/plain' || fail "-i headers: $(cat "$tmp/out")"
[ "$(tail -n 1 "$tmp/out")" = "small file" ] || fail "-i body: $(cat "$tmp/out")"
ok "-i: status line, headers, body"

# Chunked: sub_filter streams a changed length.
expect_ok -i "$url/sub/text.txt"
tr -d '\r' <"$tmp/out" | grep -qix 'transfer-encoding: chunked' || fail "/sub/ is not chunked: $(head -n 12 "$tmp/out")"
expect_ok "$url/sub/text.txt"
sed 's/AAAA/BBBB/' "$ng/www/text.txt" | cmp -s - "$tmp/out" || fail "chunked body differs"
# gzip on request: the compressed bytes, chunked, as they came.
expect_ok -H 'Accept-Encoding: gzip' -o "$tmp/text.gz" "$url/gz/text.txt"
gzip -dc <"$tmp/text.gz" | cmp -s - "$ng/www/text.txt" || fail "gzip body does not inflate to the file"
ok "chunked responses (sub_filter, gzip with -H Accept-Encoding)"

# ---- redirects ----
expect_ok -i "$url/r1"
head -n 1 "$tmp/out" | grep -q '^HTTP/1.1 302' || fail "without -L: $(head -n 1 "$tmp/out")"
tr -d '\r' <"$tmp/out" | grep -qi '^location: .*/r2$' || fail "without -L: Location: $(cat "$tmp/out")"
expect_ok "$url/r1"
grep -q '302 Found' "$tmp/out" || fail "without -L: the 302 body: $(cat "$tmp/out")"
expect_body final -L "$url/r1"
expect_ok -v -L "$url/r1"
grep -qF "$url/final" "$tmp/get.err" || fail "-v -L does not tell the final URL: $(cat "$tmp/get.err")"
expect_error 47 'redirect' "$url/loop" -L
ok "redirects: returned without -L, followed with -L (302, 301, 307), a loop stops: exit 47"

# ---- redirects: where they may go, and what they carry there ----
# A server of our own: answers 307 to the Location given for a path, echoes
# anything else with the headers a redirect must not carry away, and logs
# every connection it accepts.
cat >"$tmp/redirector.py" <<'EOF'
import http.server, os, socket, socketserver, sys
name, spec, portfile, logfile = sys.argv[1:5]
routes = dict(a.split("=", 1) for a in sys.argv[5:])

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if self.path in routes:
            self.send_response(307)
            self.send_header("Location", routes[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        h = lambda k: self.headers.get(k, "-")
        body = ("%s %s %s auth=%s cookie=%s proxy=%s host=%s\n" % (
            name, self.command, self.path, h("Authorization"), h("Cookie"),
            h("Proxy-Authorization"), h("Host"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_HEAD = answer

class Logged:
    daemon_threads = True
    def get_request(self):
        conn = super().get_request()
        with open(logfile, "a") as f:
            f.write("accepted\n")
        return conn

kind, _, where = spec.partition(":")
if kind == "unix":
    class Server(Logged, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        pass
    server = Server(where, Handler)
    port = where
else:
    class Server(Logged, http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6 if kind == "tcp6" else socket.AF_INET
    server = Server((where, 0), Handler)
    port = server.server_address[1]
with open(portfile + ".tmp", "w") as f:
    f.write("%s\n" % port)
os.rename(portfile + ".tmp", portfile)
server.serve_forever()
EOF
# start_redirector NAME SPEC [PATH=LOCATION…]: its port (or socket) in $r_port.
start_redirector() {
        r_name=$1 r_spec=$2
        shift 2
        : >"$tmp/$r_name.log"
        python3 "$tmp/redirector.py" "$r_name" "$r_spec" "$tmp/$r_name.port" "$tmp/$r_name.log" "$@" \
                2>"$tmp/$r_name.err" &
        pids="$pids $!"
        i=0
        while ! [ -s "$tmp/$r_name.port" ]; do
                kill -0 $! 2>/dev/null || return 1
                i=$((i + 1))
                [ $i -lt 200 ] || fail "$r_name did not start"
                sleep 0.05
        done
        r_port=$(cat "$tmp/$r_name.port")
}
start_redirector local "unix:$tmp/local.sock" || fail "the unix server did not start"
start_redirector other tcp:127.0.0.1 || fail "the other server did not start"
other_port=$r_port
to_unix="http+unix://$(pct "$tmp/local.sock")/containers/create"
start_redirector web tcp:127.0.0.1 /to-unix="$to_unix" /to-other="http://127.0.0.1:$other_port/echo" \
        /to-self=/echo /to-vsock=http+vsock://2:2375/x /to-plugin=thirdparty+pipe://docker/x ||
        fail "the redirecting server did not start"
web=http://127.0.0.1:$r_port

# SSRF: a server's 307 to a local socket connects nowhere, and says why.
expect_error 1 'refused: scheme "http\+unix" is not allowed for redirects' "$web/to-unix" \
        -L -d '{"Image":"evil"}'
grep -qF "307 redirect to $to_unix refused" "$tmp/get.err" || fail "the refused URL is not named: $(cat "$tmp/get.err")"
[ ! -s "$tmp/local.log" ] || fail "the unix socket was connected to: $(cat "$tmp/local.log")"
for target in to-vsock to-plugin; do
        expect_error 1 'is not allowed for redirects' "$web/$target" -L
done
if command -v curl >/dev/null 2>&1; then
        crc=0
        curl -sS -L -o /dev/null "$web/to-unix" 2>"$tmp/curl.err" || crc=$?
        [ $crc = 1 ] || fail "curl's exit for that redirect is $crc, not 1: $(cat "$tmp/curl.err")"
fi
ok "a 307 to http+unix:// (POST body), http+vsock://, a plugin's scheme: refused, exit 1 as curl, no connection: $(cut -c 1-160 "$tmp/get.err")"

# Allowed by --proto-redir, in curl's syntax: then it goes there.
for list in =http,https,http+unix +http+unix all; do
        expect_body "local POST /containers/create auth=- cookie=- proxy=- host=localhost" \
                -L --proto-redir "$list" -d '{}' "$web/to-unix"
done
expect_body "local GET /containers/create auth=- cookie=- proxy=- host=localhost" \
        -L --proto-redir -all --proto-redir +http+unix "$web/to-unix"
[ "$(grep -c accepted "$tmp/local.log")" = 4 ] || fail "unix server: $(cat "$tmp/local.log")"
expect_error 1 'refused' "$web/to-unix" -L --proto-redir +http+unix,-http+unix
expect_error 1 'scheme "http" is not allowed' "$web/to-other" -L --proto-redir =https
expect_body "web GET /echo auth=- cookie=- proxy=- host=127.0.0.1:${web##*:}" -L --proto-redir =https "$web/to-self"
get -L --proto-redir 'ht tp' "$web/to-unix"
[ $rc = 2 ] || fail "--proto-redir 'ht tp': exit $rc"
grep -q -- '--proto-redir "ht tp"' "$tmp/get.err" || fail "bad --proto-redir: $(cat "$tmp/get.err")"
ok "--proto-redir: =LIST, +SCHEME, all, repeated, -SCHEME, =https (same origin still followed), a bad list: exit 2"

# Credentials stay with the URL's origin, as curl's -L; --location-trusted sends them on.
set -- -H 'Authorization: Bearer s3cret' -H 'Cookie: session=42' -H 'Proxy-Authorization: Basic eA=='
expect_body "other GET /echo auth=- cookie=- proxy=- host=127.0.0.1:$other_port" -L "$@" "$web/to-other"
expect_body "web GET /echo auth=Bearer s3cret cookie=session=42 proxy=Basic eA== host=127.0.0.1:${web##*:}" \
        -L "$@" "$web/to-self"
expect_body "other GET /echo auth=Bearer s3cret cookie=session=42 proxy=Basic eA== host=127.0.0.1:$other_port" \
        --location-trusted "$@" "$web/to-other"
if command -v curl >/dev/null 2>&1; then
        # curl keeps Proxy-Authorization (for a proxy, which paf has not).
        curl -sS -L -H 'Authorization: Bearer s3cret' -H 'Cookie: session=42' "$web/to-other" >"$tmp/curl.out" ||
                fail "curl -L: $(cat "$tmp/curl.out")"
        grep -q 'auth=- cookie=- ' "$tmp/curl.out" || fail "curl sent credentials on: $(cat "$tmp/curl.out")"
fi
set --
ok "Authorization, Cookie, Proxy-Authorization: dropped on a redirect to another port (as curl), kept on the same origin and with --location-trusted"

# Host: an IPv6 literal as written, brackets and all, through a redirect too.
if start_redirector web6 tcp6:::1 /to-self=/echo 2>/dev/null; then
        expect_body "web6 GET /echo auth=- cookie=- proxy=- host=[::1]:$r_port" "http://[::1]:$r_port/echo"
        expect_body "web6 GET /echo auth=- cookie=- proxy=- host=[::1]:$r_port" -L "http://[::1]:$r_port/to-self"
        ok "Host for http://[::1]:$r_port/: [::1]:$r_port, also after a redirect"
else
        echo "skip: no IPv6 loopback; the Host of an IPv6 literal is not checked here"
fi

# ---- -o: 100 MiB streamed to a file, exactly ----
big_sum=$(sha256sum <"$ng/www/big.bin")
expect_ok -o "$tmp/big.out" "$url/big.bin"
[ ! -s "$tmp/out" ] || fail "-o wrote to stdout too"
[ "$(sha256sum <"$tmp/big.out")" = "$big_sum" ] || fail "-o: 100 MiB differ"
rm -f "$tmp/big.out"
# To stdout, with bounded memory: no 100 MiB buffer.
/usr/bin/time -f '%M' -o "$tmp/rss" "$PAF_BIN" get "$url/big.bin" 2>"$tmp/get.err" | sha256sum >"$tmp/sum" ||
        fail "100 MiB to stdout: $(cat "$tmp/get.err")"
[ "$(cat "$tmp/sum")" = "$big_sum" ] || fail "100 MiB to stdout differ"
rss=$(tail -n 1 "$tmp/rss")
[ "$rss" -lt 81920 ] || fail "100 MiB download used $rss KiB: the body is held in memory"
ok "-o and stdout: 100 MiB byte-exact (sha256), max RSS $rss KiB"

# A progress bar on a terminal: script(1) gives paf a pty for stderr.
if command -v script >/dev/null 2>&1; then
        script -qec "'$PAF_BIN' get -o '$tmp/bar.out' '$url/big.bin'" /dev/null >"$tmp/bar.tty" </dev/null ||
                fail "progress run: $(cat "$tmp/bar.tty")"
        grep -q '100%' "$tmp/bar.tty" || fail "no progress bar on a tty: $(head -c 300 "$tmp/bar.tty")"
        cmp -s "$tmp/bar.out" "$ng/www/big.bin" || fail "progress run: bytes differ"
        rm -f "$tmp/bar.out"
        updates=$(tr '\r' '\n' <"$tmp/bar.tty" | grep -c '%' || true)
        ok "progress bar on a terminal ($updates updates, ends with 100%)"
fi

# No progress bar when stderr is not a terminal.
expect_ok -o "$tmp/small.out" "$url/small.txt"
[ ! -s "$tmp/get.err" ] || fail "stderr not a tty, yet: $(cat "$tmp/get.err")"
ok "no progress output when stderr is not a terminal"

# ---- -f ----
expect_ok "$url/nothing-here" # without -f: the 404 page, exit 0
grep -q '404' "$tmp/out" || fail "without -f: the 404 page: $(cat "$tmp/out")"
rm -f "$tmp/f.out"
get -f -o "$tmp/f.out" "$url/nothing-here"
[ $rc = 22 ] || fail "-f on 404: exit $rc"
[ "$(cat "$tmp/get.err")" = "paf get: $url/nothing-here: The requested URL returned error: 404" ] ||
        fail "-f message: $(cat "$tmp/get.err")"
[ ! -e "$tmp/f.out" ] || fail "-f created the output file"
get -f -i "$url/nothing-here"
[ $rc = 22 ] || fail "-f -i: exit $rc"
[ ! -s "$tmp/out" ] || fail "-f -i: output $(cat "$tmp/out")"
ok "-f: exit 22 on 404, curl's message, nothing written"

# ---- -v: the transport and the resolution ----
expect_ok -v "$url/small.txt"
grep -q 'transport: tcp ' "$tmp/get.err" || fail "-v has no transport: $(cat "$tmp/get.err")"
grep -q 'resolution' "$tmp/get.err" || fail "-v has no resolution report: $(cat "$tmp/get.err")"
grep -q '^\*   tcp [^ ]*: used$' "$tmp/get.err" || fail "-v: the transport used is not said so: $(cat "$tmp/get.err")"
grep -q '^< HTTP/1.1 200' "$tmp/get.err" || fail "-v has no response head: $(cat "$tmp/get.err")"
[ "$(cat "$tmp/out")" = "small file" ] || fail "-v changed the output"
ok "-v: transport ($(sed -n 's/^\* transport: //p' "$tmp/get.err")) and resolution report on stderr"

# ---- unix sockets ----
expect_body "GET " --unix-socket "$ng/nginx.sock" "http://localhost/method"
expect_ok -v --unix-socket "$ng/nginx.sock" "http://localhost/small.txt"
grep -q 'transport: unix' "$tmp/get.err" || fail "--unix-socket: not over unix: $(cat "$tmp/get.err")"
grep -q "^\*   unix $ng/nginx.sock: used$" "$tmp/get.err" || fail "--unix-socket -v: $(cat "$tmp/get.err")"
expect_body "POST 3" -d abc "http+unix://$(pct "$ng/nginx.sock")/method"
expect_ok -o "$tmp/u.out" "http+unix://$(pct "$ng/nginx.sock")/small.txt"
cmp -s "$tmp/u.out" "$ng/www/small.txt" || fail "http+unix://: body differs"
ok "nginx over its unix socket: --unix-socket and http+unix://%2F…"

# paf serve on a unix socket and HTTPS.
mkdir "$tmp/certs"
https_ca "$tmp/certs" ca || fail "certtool: CA"
https_cert "$tmp/certs" srv ca localhost localhost 127.0.0.1 || fail "certtool: cert"
: >"$tmp/serve.err"
"$PAF_BIN" serve --quiet --listen "$tmp/paf.sock" --listen-tls 127.0.0.1:0 --root "$ng/www" \
        --cert "$tmp/certs/srv.pem" --key "$tmp/certs/srv.key" 2>>"$tmp/serve.err" &
serve_pid=$!
pids="$pids $serve_pid"
i=0
while n=$(grep -c 'listening on' "$tmp/serve.err" || true) && [ "${n:-0}" -lt 2 ]; do
        kill -0 "$serve_pid" 2>/dev/null || fail "paf serve exited early"
        i=$((i + 1))
        [ $i -lt 400 ] || fail "paf serve did not start"
        sleep 0.05
done
tls=$(sed -n 's|^paf serve: listening on https://||p' "$tmp/serve.err" | head -n 1)
[ -n "$tls" ] || fail "no https listening line: $(cat "$tmp/serve.err")"

expect_ok --unix-socket "$tmp/paf.sock" -o "$tmp/s.out" "http://localhost/small.txt"
cmp -s "$tmp/s.out" "$ng/www/small.txt" || fail "paf serve --unix-socket: body differs"
expect_body "small file" "http+unix://$(pct "$tmp/paf.sock")/small.txt"
ok "paf serve over a unix socket: --unix-socket and http+unix://"

expect_body "small file" --cacert "$tmp/certs/ca.pem" "https://$tls/small.txt"
expect_ok -v --cacert "$tmp/certs/ca.pem" -o "$tmp/tls.out" "https://$tls/big.bin"
[ "$(sha256sum <"$tmp/tls.out")" = "$big_sum" ] || fail "HTTPS: 100 MiB differ"
rm -f "$tmp/tls.out"
grep -qi 'transport: .*tls' "$tmp/get.err" || fail "https: transport not tls: $(cat "$tmp/get.err")"
expect_body "small file" -k "https://$tls/small.txt"
ok "HTTPS from paf serve: --cacert (100 MiB byte-exact), -k"
expect_error 60 'certificate|verif|signer|trust' "https://$tls/small.txt"
ok "HTTPS without --cacert: exit 60, $(cut -c 1-150 "$tmp/get.err")"

# ---- errors: each names the URL and the reason, with curl's exit code ----
expect_error 1 'gopher' "gopher://x/"
ok "unknown scheme: exit 1: $(cat "$tmp/get.err")"

refused=$(free_port)
expect_error 7 'Connection refused' "http://127.0.0.1:$refused/"
ok "refused port: exit 7"
expect_error 7 'No such file|not found|ENOENT' "http+unix://$(pct "$tmp/none.sock")/"
ok "missing unix socket: exit 7"

# A TLS handshake with a plain HTTP server fails.
expect_error 35 'tls|handshake|packet|record' "https://127.0.0.1:$port/"
ok "TLS failure (https:// to plain nginx): exit 35"

# --max-time: a server that accepts and never answers.
cat >"$tmp/silent.py" <<'EOF'
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    c, _ = s.accept()
    conns.append(c)
EOF
python3 "$tmp/silent.py" >"$tmp/silent.port" &
silent_pid=$!
pids="$pids $silent_pid"
i=0
while ! [ -s "$tmp/silent.port" ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "silent server did not start"
        sleep 0.05
done
silent=http://127.0.0.1:$(cat "$tmp/silent.port")/
start=$(date +%s%N)
expect_error 28 'time' "$silent" --max-time 0.5
elapsed=$((($(date +%s%N) - start) / 1000000))
[ $elapsed -lt 5000 ] || fail "--max-time 0.5 took $elapsed ms"
ok "--max-time 0.5 against a silent server: exit 28 after $elapsed ms"

# Unresolvable names, in a private network namespace: no query leaves the machine.
if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && unshare -mn true 2>/dev/null; then
        bad=http://no-such-host.invalid/x
        rc=0
        timeout 60 "$PAF_TEST_SRCDIR/tests/run-test.sh" --netns "$PAF_BIN" get "$bad" \
                >"$tmp/out" 2>"$tmp/get.err" || rc=$?
        [ $rc = 6 ] || fail "$bad: exit $rc, not 6: $(cat "$tmp/get.err")"
        grep -qF "paf get: $bad" "$tmp/get.err" || fail "$bad: message: $(cat "$tmp/get.err")"
        grep -q 'no-such-host.invalid' "$tmp/get.err" || fail "$bad: host not named: $(cat "$tmp/get.err")"
        grep -q 'tcp' "$tmp/get.err" || fail "$bad: transports tried not listed: $(cat "$tmp/get.err")"
        ok "unresolvable host (netns): exit 6: $(cut -c 1-200 "$tmp/get.err")"
else
        echo "skip: no private network namespace here; the unresolvable host is not tried"
fi

# ---- usage ----
get --help
[ $rc = 0 ] || fail "--help: exit $rc"
grep -q 'Usage: paf get URL' "$tmp/out" || fail "--help: $(cat "$tmp/out")"
get
[ $rc = 2 ] || fail "no URL: exit $rc"
get --no-such-option "$url/"
[ $rc = 2 ] || fail "bad option: exit $rc"
get -H 'no colon' "$url/"
[ $rc = 2 ] || fail "bad -H: exit $rc"
get --max-time soon "$url/"
[ $rc = 2 ] || fail "bad --max-time: exit $rc"
get --data-binary @"$tmp/does-not-exist" "$url/method"
[ $rc = 26 ] || fail "--data-binary @missing: exit $rc"
grep -q 'does-not-exist' "$tmp/get.err" || fail "--data-binary @missing: $(cat "$tmp/get.err")"
get --config "$tmp/does-not-exist.conf" "$url/method"
[ $rc != 0 ] || fail "--config missing: exit 0"
grep -q 'does-not-exist.conf' "$tmp/get.err" || fail "--config missing: $(cat "$tmp/get.err")"
ok "usage: --help, no URL, unknown option, bad -H, bad --max-time, unreadable body, bad --config"

echo "all $n_checks checks passed"
