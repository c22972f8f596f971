#!/bin/sh
# tests/http/test-get-curl-flags.sh — `paf get` and curl side by side, same arguments, same
# servers (nginx, and get_echo.py where the request itself must be seen): the same bytes on
# stdout, the same files written, the same exit code. Output, saving, identity, bodies, transfer.
set -eu
nginx=/usr/sbin/nginx
[ -x "$nginx" ] || { echo "nginx not found: skipping"; exit 77; }
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH="$PAF_TEST_PLUGINDIR"
export PYTHONDONTWRITEBYTECODE=1
command -v certtool >/dev/null 2>&1 || { echo "certtool not found: skipping"; exit 77; }
# shellcheck source=tests/http/https-certs.sh
. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"

# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/c.err $tmp/p.err $tmp/nginx/logs/error.log"

# run WHO ARGS…: curl or paf get in $tmp/WHO (a fresh directory: the files
# each writes), stdout to $tmp/WHO.out, stderr to $tmp/WHO.err, status in $tmp/WHO.rc.
run() {
        who=$1
        shift
        rm -rf "${tmp:?}/$who" && mkdir "$tmp/$who"
        [ -z "${seed:-}" ] || cp -R "$seed"/. "$tmp/$who"/
        rc=0
        if [ "$who" = c ]; then
                (cd "$tmp/c" && timeout 30 curl "$@") >"$tmp/c.out" 2>"$tmp/c.err" </dev/null || rc=$?
        else
                (cd "$tmp/p" && timeout 30 "$PAF_BIN" get "$@") >"$tmp/p.out" 2>"$tmp/p.err" </dev/null || rc=$?
        fi
        [ $rc != 124 ] || fail "$who $*: hung"
        echo $rc >"$tmp/$who.rc"
}
# same ARGS…: curl and paf get exit alike, write the same stdout and the same files.
same() {
        run c "$@"
        run p "$@"
        [ "$(cat "$tmp/c.rc")" = "$(cat "$tmp/p.rc")" ] ||
                fail "$*: exit: curl $(cat "$tmp/c.rc"), paf $(cat "$tmp/p.rc")"
        cmp -s "$tmp/c.out" "$tmp/p.out" ||
                fail "$*: stdout differs: curl:
$(head -c 1500 "$tmp/c.out")
paf:
$(head -c 1500 "$tmp/p.out")"
        diff -r "$tmp/c" "$tmp/p" >"$tmp/diff" 2>&1 || fail "$*: files differ: $(head -20 "$tmp/diff")"
}
# A response head of nginx changes with the date and the version: only stable fields.
heads() { tr -d '\r' <"$1" | grep -viE '^(date|server|last-modified|etag|expires):'; }
same_heads() {
        run c "$@"
        run p "$@"
        [ "$(cat "$tmp/c.rc")" = "$(cat "$tmp/p.rc")" ] ||
                fail "$*: exit: curl $(cat "$tmp/c.rc"), paf $(cat "$tmp/p.rc")"
        heads "$tmp/c.out" >"$tmp/c.h"
        heads "$tmp/p.out" >"$tmp/p.h"
        cmp -s "$tmp/c.h" "$tmp/p.h" || fail "$*: heads differ: $(diff "$tmp/c.h" "$tmp/p.h")"
}


# ---- nginx ----
ng=$tmp/nginx
mkdir -p "$ng/www/dir" "$ng/www/up" "$ng/tmp" "$ng/logs"
printf 'small file\n' >"$ng/www/small.txt"
head -c 100000 /dev/urandom >"$ng/www/rand.bin"
printf 'in a dir\n' >"$ng/www/dir/f.txt"
chmod -R a+rwX "$tmp"
start_nginx() {
        port=$(free_port)
        cat >"$ng/nginx.conf" <<NGINX
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
  server_tokens off;
  server {
    listen 127.0.0.1:$port;
    root $ng/www;
    location = /r0 { return 302 /r1; }
    location = /r1 { return 301 /r2; }
    location = /r2 { return 301 /small.txt; }
    location = /loop { return 301 /loop; }
    location = /e500 { return 500 "no\n"; }
    location = /conn { return 200 "\$connection\n"; }
    location /up/ { dav_methods PUT; create_full_put_path on; }
  }
}
NGINX
        "$nginx" -p "$ng" -c "$ng/nginx.conf" -e /dev/null </dev/null >/dev/null 2>"$tmp/nginx.err" &
        nginx_pid=$!
        pids="$pids $nginx_pid"
        i=0
        while ! python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
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
done
[ -n "$started" ] || fail "nginx did not start"
url=http://127.0.0.1:$port

python3 "$PAF_TEST_SRCDIR/tests/http/get_echo.py" "$tmp/echo.port" "$tmp" &
pids="$pids $!"
i=0
while [ ! -s "$tmp/echo.port" ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "get_echo.py did not start"
        sleep 0.05
done
echo_url=http://127.0.0.1:$(cat "$tmp/echo.port")
ok "nginx on $url, echo on $echo_url"

# ---- output and reporting ----
same -s "$url/small.txt"
same -s http://127.0.0.1:1/
[ ! -s "$tmp/p.err" ] || fail "-s printed an error: $(cat "$tmp/p.err")"
same -sS http://127.0.0.1:1/
[ -s "$tmp/p.err" ] || fail "-sS printed no error"
ok "-s hides errors, -S shows them again (exit 7 either way)"

same -s -o /dev/null -w '%{http_code} %{url_effective} %{size_download} %{num_redirects} %{content_type} %{remote_ip} %{remote_port} %{exitcode}\n' -L "$url/r1"
same -s -o /dev/null -w '%{http_code}|%{size_header}|%{exitcode}\n' "$url/small.txt"
same -s -w '%{http_code} %{exitcode} %{remote_ip}|\n' http://127.0.0.1:1/
same -s -o /dev/null -w '%%{http_code}\t%{http_code}\n' "$url/dir/f.txt"
printf '%s' '%{http_code} from @file\n' >"$tmp/fmt"
same -s -o /dev/null -w "@$tmp/fmt" "$url/small.txt"
# %{json}: times and curl_version are each tool's own; the stable fields agree.
for who in c p; do
        run $who -s -o /dev/null -w '%{json}' "$url/small.txt"
        python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print({k: d[k] for k in ("http_code", "size_download", "content_type", "exitcode", "url_effective", "remote_ip", "remote_port", "num_redirects", "method")})' "$tmp/$who.out" >"$tmp/$who.json" || fail "-w %{json}: not JSON: $(cat "$tmp/$who.out")"
done
cmp -s "$tmp/c.json" "$tmp/p.json" || fail "-w %{json}: $(cat "$tmp/c.json") vs $(cat "$tmp/p.json")"
for who in c p; do
        run $who -s -o /dev/null -w '%{header_json}' "$url/small.txt"
        python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print({k: d[k] for k in ("content-type", "content-length", "accept-ranges")})' "$tmp/$who.out" >"$tmp/$who.json" || fail "-w %{header_json}: not JSON: $(cat "$tmp/$who.out")"
done
cmp -s "$tmp/c.json" "$tmp/p.json" || fail "-w %{header_json}: $(cat "$tmp/c.json") vs $(cat "$tmp/p.json")"
ok "-w: http_code, url_effective, size_download, size_header, num_redirects, content_type, remote_ip/port, exitcode, %%, \\t, @file, json, header_json"

# -D, -i with -L: every response of the chain, status lines as they came
# (nginx's 302 is "Moved Temporarily", not RFC 9110's "Found").
same_heads -s -D - -o /dev/null -L "$url/r0"
same_heads -s -i -L "$url/r0"
same -s -o /dev/null -w '%{size_header} %{num_redirects}\n' -L "$url/r0"
run p -s -D "h.txt" "$url/small.txt"
grep -q '^HTTP/1.1 200 OK' "$tmp/p/h.txt" || fail "-D FILE: $(cat "$tmp/p/h.txt")"
ok "-D and -i with -L show every response of the chain"

# -v: the request's headers and every response's, on stderr (wording is paf's own).
run p -s -v -L "$url/r1"
grep -q '^> Accept: \*/\*' "$tmp/p.err" || fail "-v: no request headers: $(cat "$tmp/p.err")"
[ "$(grep -c '^< HTTP/1.1' "$tmp/p.err")" = 3 ] || fail "-v -L: not 3 responses: $(cat "$tmp/p.err")"
ok "-v: request headers and every response of the chain"

# ---- saving ----
same -s -O "$url/small.txt"
same -s -O "$url/dir/f.txt" -O "$url/rand.bin"
same -s --remote-name-all "$url/small.txt" "$url/dir/f.txt"
same -s -o a.txt "$url/small.txt" -o b.bin "$url/rand.bin"
same -s -O "$url/"
same -s --create-dirs -o x/y/z.txt "$url/small.txt"
same -s -OJ "$echo_url/cd/named.txt"
same -s -OJ "$echo_url/cd/..%2F..%2Fup.txt"
seed=$tmp/seed
mkdir -p "$seed" && printf 'mine\n' >"$seed/named.txt"
same -s -OJ "$echo_url/cd/named.txt"
seed=
ok "-O, several -O, --remote-name-all, -o per URL, -O without a name (23), --create-dirs, -J (path cut off, no overwrite)"
# paf's own: no leading dot from a server's name (curl 7.88 would write .hidden).
run p -s -OJ "$echo_url/cd/.hidden"
[ -f "$tmp/p/hidden" ] && [ ! -e "$tmp/p/.hidden" ] || fail "-J .hidden: $(ls -a "$tmp/p")"
ok "-J: leading dots dropped"

# ---- identity and headers ----
same -s -u alice:s3cret "$echo_url/h"
same -s "http://bob:p%40ss@127.0.0.1:$(cat "$tmp/echo.port")/h"
same -s -A 'agent/1' -e 'http://from/' "$echo_url/h"
same -s -H 'Accept:' -H 'X-Empty;' -H 'X-A: 1' "$echo_url/h"
same -s -H 'Accept: text/html' "$echo_url/h"
same -s "$echo_url/ua"
same -s -H 'User-Agent:' "$echo_url/ua"
grep -q 'user-agent' "$tmp/p.out" && fail "-H 'User-Agent:': paf still sent one: $(cat "$tmp/p.out")"
same -s "127.0.0.1:$port/small.txt"
ok "-u, userinfo in the URL, -A, -e, -H 'Name:' removes, -H 'Name;' empty, Accept: */*, a URL without scheme"

# ---- bodies ----
printf 'a=1\nb=2\n' >"$tmp/form.txt"
same -s -d x=1 "$echo_url/b"
same -s -d @"$tmp/form.txt" "$echo_url/b"
same -s --data-binary @"$tmp/form.txt" "$echo_url/b"
same -s -d x=1 -H 'Content-Type: text/plain' "$echo_url/b"
same -s --data-urlencode 'q=a b&c' --data-urlencode '=x/y' --data-urlencode "f@$tmp/form.txt" "$echo_url/b"
same -s -G -d a=1 -d b=2 "$echo_url/q?x=0"
same -s --json '{"a":1}' "$echo_url/b"
printf 'file body\n' >"$tmp/up.txt"
same -s -F name=value -F "file=@$tmp/up.txt" -F "other=@$tmp/up.txt;type=text/x-mine;filename=o.txt" -F "f2=<$tmp/up.txt" "$echo_url/b"
# curl asks "Expect: 100-continue" before a -T body; paf sends the body at
# once (RFC 9110 10.1.1 lets a client), so -H 'Expect:' takes curl's off.
same -s -H 'Expect:' -T "$tmp/up.txt" "$echo_url/b/"
# nginx answers 201 for a new file: each client creates its own.
for who in c p; do
        rm -f "$ng/www/up/put.txt"
        run $who -s -H 'Expect:' -T "$tmp/up.txt" "$url/up/put.txt" -w '%{http_code}\n'
        [ "$(cat "$tmp/$who.out")" = 201 ] || fail "-T to nginx ($who): $(cat "$tmp/$who.out")"
        cmp -s "$ng/www/up/put.txt" "$tmp/up.txt" || fail "-T ($who): nginx has not the file"
done
ok "-d (form type, @file without newlines), --data-binary, -H type, --data-urlencode, -G, --json, -F (files, type=, filename=, <), -T (PUT to nginx)"

# ---- transfer ----
same -s -r 0-9 "$url/rand.bin"
same -s -r 99990- "$url/rand.bin"
seed=$tmp/seed
rm -rf "$seed" && mkdir -p "$seed" && head -c 40000 "$ng/www/rand.bin" >"$seed/rand.bin"
same -s -C - -o rand.bin "$url/rand.bin"
cmp -s "$tmp/p/rand.bin" "$ng/www/rand.bin" || fail "-C -: not resumed to the whole file"
# A whole file: nginx's 416, and the file stays as it is.
cp "$ng/www/rand.bin" "$seed/rand.bin"
same -s -C - -o rand.bin -w '%{http_code}\n' "$url/rand.bin"
cmp -s "$tmp/p/rand.bin" "$ng/www/rand.bin" || fail "-C - on a whole file: changed"
seed=
ok "-r ranges, -C - resumes (and leaves a whole file alone)"

same -s --retry 2 --retry-delay 0 "$echo_url/flaky?a&1"
# As curl: the 503's body is written too (stdout cannot be taken back), then the 200's.
[ "$(tail -n 1 "$tmp/p.out")" = "ok after 1" ] || fail "--retry: $(cat "$tmp/p.out")"
same -s --retry 1 --retry-delay 0 "$echo_url/flaky?b&5" -w '%{http_code}\n'
same -s -f --retry 1 --retry-delay 0 "$echo_url/flaky?c&5"
same -s --retry 3 --retry-delay 0 --retry-connrefused http://127.0.0.1:1/
t0=$(date +%s)
same -s --retry 1 --retry-delay 0 "$echo_url/flaky?d&1&ra"
[ $(($(date +%s) - t0)) -ge 2 ] || fail "Retry-After: 1 not waited for (over --retry-delay 0, as curl)"
same -s --retry 3 --retry-delay 0 "$url/small.txt"
# --retry-max-time 1: the first Retry-After (1 s) fits, the second (at 1 s) not.
same -s --retry 5 --retry-max-time 1 "$echo_url/flaky?e&9&ra"
[ "$(grep -c busy "$tmp/p.out")" = 2 ] || fail "--retry-max-time: $(cat "$tmp/p.out")"
same -s -L --max-redirs 1 "$url/r1"
same -s -L --max-redirs 2 "$url/r1"
same -s --limit-rate 200K -o out.bin "$url/rand.bin"
same -s --connect-timeout 2 "$url/small.txt"
ok "--retry (503 then 200; exhausted; -f 22; connrefused), Retry-After, --retry-max-time, --max-redirs (47), --limit-rate, --connect-timeout"

same -s --resolve "paf.test:$port:127.0.0.1" "http://paf.test:$port/small.txt"
same -s -i --resolve "paf.test:$port:127.0.0.1" -L "http://paf.test:$port/r1" -H 'X: 1' -o /dev/null -w '%{url_effective} %{remote_ip}\n'
same -s -4 "http://localhost:$port/small.txt"
# (Not -6 localhost: curl 7.88 makes localhost ::1 itself, paf asks the
# system, whose /etc/hosts may have no ::1.)
same -s -o /dev/null -w '%{http_code}\n' -6 "http://[::1]:$port/small.txt"
ok "--resolve HOST:PORT:ADDR (Host and redirects keep the name), -4, -6 (nginx is on 127.0.0.1 only)"

# ---- protocol versions ----
same -s --http1.0 "$echo_url/h"
same -s -0 -d x=1 "$echo_url/h"
same_heads -s -i --http1.0 "$url/small.txt"
same -s --http1.1 "$echo_url/h"
ok "--http1.0 (-0), --http1.1"

# ---- several URLs: one connection ----
# nginx's $connection numbers the connections: one number for the three.
for who in c p; do
        run $who -s "$url/conn" "$url/conn" "$url/conn"
        [ "$(sort -u "$tmp/$who.out" | wc -l)" = 1 ] && [ "$(wc -l <"$tmp/$who.out")" = 3 ] ||
                fail "several URLs ($who): not one connection: $(cat "$tmp/$who.out")"
done
ok "several URLs in one call share the connection, as curl's"

# ---- paf serve over TLS: --cacert ----
mkdir "$tmp/certs"
https_ca "$tmp/certs" ca || fail "certtool: CA"
https_cert "$tmp/certs" srv ca localhost localhost 127.0.0.1 || fail "certtool: cert"
: >"$tmp/serve.err"
"$PAF_BIN" serve --quiet --listen-tls 127.0.0.1:0 --root "$ng/www" \
        --cert "$tmp/certs/srv.pem" --key "$tmp/certs/srv.key" 2>>"$tmp/serve.err" &
pids="$pids $!"
i=0
while ! grep -q 'listening on https://' "$tmp/serve.err"; do
        i=$((i + 1))
        [ $i -lt 400 ] || fail "paf serve did not start: $(cat "$tmp/serve.err")"
        sleep 0.05
done
tls=$(sed -n 's|^paf serve: listening on https://||p' "$tmp/serve.err" | head -n 1)
same -s --cacert "$tmp/certs/ca.pem" "https://$tls/small.txt"
printf 'not a certificate\n' >"$tmp/bad.pem"
same -s --cacert "$tmp/nonexistent.pem" "https://$tls/small.txt"
[ "$(cat "$tmp/p.rc")" = 77 ] || fail "--cacert missing: exit $(cat "$tmp/p.rc")"
same -s --cacert "$tmp/bad.pem" "https://$tls/small.txt"
[ "$(cat "$tmp/p.rc")" = 77 ] || fail "--cacert not a certificate: exit $(cat "$tmp/p.rc")"
run p --cacert "$tmp/bad.pem" "https://$tls/small.txt"
grep -qF "error setting certificate file: $tmp/bad.pem" "$tmp/p.err" || fail "--cacert: message: $(cat "$tmp/p.err")"
ok "--cacert: a missing file or no certificate exits 77 with curl's message"

# -v over TLS: the transport stack, the TLS version, cipher and peer certificate.
run p -s -v --cacert "$tmp/certs/ca.pem" "https://$tls/small.txt"
grep -q '^\* transport: tls over tcp 127.0.0.1:' "$tmp/p.err" || fail "-v: no transport stack: $(cat "$tmp/p.err")"
# curl's lines, in curl's words where GnuTLS's and OpenSSL's names agree: the
# expiry and cipher alike; DNs in each library's order (RFC 4514 for GnuTLS).
run c -s -v --cacert "$tmp/certs/ca.pem" "https://$tls/small.txt"
for pat in '^\*  expire date: ' '^\* SSL connection using .* / '; do
        c_line=$(grep "$pat" "$tmp/c.err" | sed "s/.* //")
        p_line=$(grep "$pat" "$tmp/p.err" | sed "s/.* //")
        [ -n "$p_line" ] && [ "$c_line" = "$p_line" ] || fail "-v: '$pat': curl '$c_line', paf '$p_line': $(cat "$tmp/p.err")"
done
grep -q '^\*  subject: CN=localhost,O=paf tests$' "$tmp/p.err" || fail "-v: subject: $(cat "$tmp/p.err")"
grep -q '^\*  issuer: CN=paf test ca,O=paf tests$' "$tmp/p.err" || fail "-v: issuer: $(cat "$tmp/p.err")"
grep -q '^\* SSL connection using TLS1\.[23] / ' "$tmp/p.err" || fail "-v: TLS version: $(cat "$tmp/p.err")"
same -s -o /dev/null -w '%{remote_ip} %{remote_port} %{http_code}\n' --cacert "$tmp/certs/ca.pem" "https://$tls/small.txt"
ok "-v over TLS: transport stack, TLS version, cipher (as curl's), subject, issuer, expiry (as curl's)"
echo "$n_checks checks passed"
