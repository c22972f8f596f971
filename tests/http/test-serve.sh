#!/bin/sh
# tests/http/test-serve.sh — `paf serve` against curl over TCP and a unix socket: files, HEAD, index and listings, MIME, 404/405, ranges, 304, traversal, access log, 1 GiB with flat memory, reuse, SIGTERM, bad options.
set -eu
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR

tmp=$(mktemp -d)
pids=
cleanup() {
        for p in $pids; do
                kill "$p" 2>/dev/null || true
        done
        rm -rf "$tmp"
}
trap cleanup EXIT

n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok $n_checks: $*"
}
fail() {
        echo "FAIL: $*" >&2
        for f in "$tmp"/*.err; do
                [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
        done
        exit 1
}

# Bounded: no curl call may hang the test.
c() { curl -sS --max-time 30 "$@"; }

# ---- the tree served, and a secret next to it ----
root=$tmp/root
mkdir -p "$root/dir/subdir" "$root/sub" "$root/withindex"
echo TOPSECRET >"$tmp/secret"
printf 'hello, file\n' >"$root/hello.txt"
printf '<h1>home</h1>\n' >"$root/index.html"
printf '<p>inner index</p>\n' >"$root/withindex/index.html"
printf 'in sub\n' >"$root/sub/file.txt"
head -c 100000 /dev/urandom >"$root/big.bin"
for ext in css js json png jpg gif svg ico pdf wasm xml mp4 woff2 unknownext; do
        echo "$ext" >"$root/file.$ext"
done
echo noext >"$root/noext"
: >"$root/dir/a&b<c>.txt"
: >"$root/dir/space name.txt"
: >"$root/dir/\"quote'.txt"
ln -s ../secret "$root/link-rel"
ln -s "$tmp/secret" "$root/link-abs"
ln -s "$tmp" "$root/link-dir"
ln -s hello.txt "$root/link-inside"
truncate -s 1G "$root/huge"
big_size=$(wc -c <"$root/big.bin")

# start_server NAME [paf serve options…]: sets pid, tcp, unix (or empty).
start_server() {
        name=$1
        shift
        # Created here: the background shell might open it only after our first look.
        : >"$tmp/$name.err"
        "$PAF_BIN" serve "$@" 2>>"$tmp/$name.err" &
        pid=$!
        pids="$pids $pid"
        i=0
        while n=$(grep -c 'listening on' "$tmp/$name.err" || true) && [ "${n:-0}" -lt 2 ]; do
                kill -0 "$pid" 2>/dev/null || fail "$name: server exited early"
                i=$((i + 1))
                [ $i -lt 200 ] || fail "$name: server did not start"
                sleep 0.05
        done
        tcp=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/$name.err")
        [ -n "$tcp" ] || fail "$name: no TCP listening line"
        # The unix socket's URL: its path percent-encoded (only '/' is, in $tmp).
        unix=$(sed -n 's|^paf serve: listening on http+unix://||p' "$tmp/$name.err" | sed 's|%2F|/|g')
}

start_server main --listen 127.0.0.1:0 --listen "$tmp/paf.sock" --root "$root"
main_pid=$pid
case $tcp in
127.0.0.1:0 | "") fail "no real TCP address: '$tcp'" ;;
127.0.0.1:*) ;;
*) fail "tcp address '$tcp'" ;;
esac
[ "$unix" = "$tmp/paf.sock" ] || fail "unix listener reported '$unix'"
ok "listening on http://$tcp and http+unix:// $unix"

# header NAME FILE: a header's value from a dump (-D), without CR.
header() { tr -d '\r' <"$2" | sed -n "s/^$1: //Ip" | tail -n 1; }

for transport in tcp unix; do
        if [ $transport = tcp ]; then
                url=http://$tcp
                set --
        else
                url=http://localhost
                set -- --unix-socket "$unix"
        fi
        t=$transport

        # GET: the bytes of the file.
        for f in hello.txt big.bin; do
                code=$(c "$@" -o "$tmp/out" -w '%{http_code}' "$url/$f")
                [ "$code" = 200 ] || fail "$t: GET /$f: $code"
                cmp -s "$tmp/out" "$root/$f" || fail "$t: GET /$f: bytes differ"
        done
        ok "$t: GET bytes equal the files"

        # HEAD: headers without a body. Two HEADs on one connection: a body
        # after the first would be read as the second's status line.
        c "$@" -I -D "$tmp/h" -o /dev/null "$url/big.bin" "$url/hello.txt" >/dev/null ||
                fail "$t: HEAD"
        [ "$(grep -c '^HTTP/1.1 200' "$tmp/h")" = 2 ] || fail "$t: HEAD statuses: $(cat "$tmp/h")"
        tr -d '\r' <"$tmp/h" | grep -qix "content-length: $big_size" ||
                fail "$t: HEAD Content-Length: $(cat "$tmp/h")"
        tr -d '\r' <"$tmp/h" | grep -qix 'content-length: 12' || fail "$t: HEAD 2: $(cat "$tmp/h")"
        tr -d '\r' <"$tmp/h" | grep -qi '^etag: "' || fail "$t: HEAD has no ETag"
        tr -d '\r' <"$tmp/h" | grep -qi '^last-modified: ' || fail "$t: HEAD has no Last-Modified"
        ok "$t: HEAD: headers, no body"

        # index.html, listing, redirect.
        [ "$(c "$@" "$url/")" = "<h1>home</h1>" ] || fail "$t: / is not index.html"
        [ "$(c "$@" "$url/withindex/")" = "<p>inner index</p>" ] || fail "$t: /withindex/"
        code=$(c "$@" -D "$tmp/h" -o /dev/null -w '%{http_code}' "$url/dir?x=1")
        [ "$code" = 301 ] || fail "$t: /dir: $code"
        [ "$(header location "$tmp/h")" = "/dir/?x=1" ] || fail "$t: /dir Location: $(cat "$tmp/h")"
        c "$@" -D "$tmp/h" -o "$tmp/list" "$url/dir/" || fail "$t: GET /dir/"
        header content-type "$tmp/h" | grep -q '^text/html' || fail "$t: listing type"
        grep -qF '>a&amp;b&lt;c&gt;.txt<' "$tmp/list" || fail "$t: listing escapes: $(cat "$tmp/list")"
        grep -qF 'href="./a%26b%3Cc%3E.txt"' "$tmp/list" || fail "$t: listing hrefs: $(cat "$tmp/list")"
        grep -qF 'href="./space%20name.txt"' "$tmp/list" || fail "$t: listing space"
        grep -qF 'href="./%22quote%27.txt">&quot;quote&#39;.txt<' "$tmp/list" ||
                fail "$t: listing quotes: $(cat "$tmp/list")"
        grep -qF 'href="./subdir/"' "$tmp/list" || fail "$t: listing subdir"
        grep -qF '<a href="../">' "$tmp/list" || fail "$t: listing parent"
        ok "$t: index.html, listing (escaped, encoded), 301 to /dir/"

        # MIME types by extension.
        for pair in css:text/css js:text/javascript json:application/json png:image/png \
                jpg:image/jpeg gif:image/gif svg:image/svg+xml ico:image/vnd.microsoft.icon \
                pdf:application/pdf wasm:application/wasm xml:application/xml mp4:video/mp4 \
                woff2:font/woff2 unknownext:application/octet-stream; do
                ext=${pair%%:*} type=${pair#*:}
                got=$(c "$@" -o /dev/null -w '%{content_type}' "$url/file.$ext")
                case $got in
                "$type" | "$type;"*) ;;
                *) fail "$t: .$ext served as '$got', not $type" ;;
                esac
        done
        got=$(c "$@" -o /dev/null -w '%{content_type}' "$url/hello.txt")
        [ "$got" = "text/plain; charset=utf-8" ] || fail "$t: .txt is '$got'"
        got=$(c "$@" -o /dev/null -w '%{content_type}' "$url/noext")
        [ "$got" = "application/octet-stream" ] || fail "$t: noext is '$got'"
        ok "$t: MIME types"

        # 404, 405.
        [ "$(c "$@" -o /dev/null -w '%{http_code}' "$url/nope")" = 404 ] || fail "$t: 404"
        [ "$(c "$@" -o /dev/null -w '%{http_code}' "$url/hello.txt/")" = 404 ] || fail "$t: file/"
        for m in POST DELETE PUT OPTIONS; do
                code=$(c "$@" -X $m -D "$tmp/h" -o /dev/null -w '%{http_code}' "$url/hello.txt")
                [ "$code" = 405 ] || fail "$t: $m: $code"
                [ "$(header allow "$tmp/h")" = "GET, HEAD" ] || fail "$t: $m Allow: $(cat "$tmp/h")"
        done
        code=$(c "$@" -d 'a body' -o /dev/null -w '%{http_code}' "$url/hello.txt")
        [ "$code" = 405 ] || fail "$t: POST with a body: $code"
        ok "$t: 404, 405 with Allow"

        # Ranges.
        code=$(c "$@" -r 10-19 -D "$tmp/h" -o "$tmp/out" -w '%{http_code}' "$url/big.bin")
        [ "$code" = 206 ] || fail "$t: range 10-19: $code"
        tail -c +11 "$root/big.bin" | head -c 10 | cmp -s - "$tmp/out" || fail "$t: range bytes"
        [ "$(header content-range "$tmp/h")" = "bytes 10-19/$big_size" ] ||
                fail "$t: Content-Range: $(cat "$tmp/h")"
        c "$@" -r -100 -D "$tmp/h" -o "$tmp/out" "$url/big.bin"
        tail -c 100 "$root/big.bin" | cmp -s - "$tmp/out" || fail "$t: suffix range bytes"
        [ "$(header content-range "$tmp/h")" = "bytes $((big_size - 100))-$((big_size - 1))/$big_size" ] ||
                fail "$t: suffix Content-Range: $(cat "$tmp/h")"
        c "$@" -r 99990- -o "$tmp/out" "$url/big.bin"
        tail -c +99991 "$root/big.bin" | cmp -s - "$tmp/out" || fail "$t: open range bytes"
        code=$(c "$@" -r 99990-200000 -o "$tmp/out" -w '%{http_code}' "$url/big.bin")
        [ "$code" = 206 ] && [ "$(wc -c <"$tmp/out")" = 10 ] || fail "$t: clamped range"
        code=$(c "$@" -r 200000- -D "$tmp/h" -o /dev/null -w '%{http_code}' "$url/big.bin")
        [ "$code" = 416 ] || fail "$t: unsatisfiable range: $code"
        [ "$(header content-range "$tmp/h")" = "bytes */$big_size" ] ||
                fail "$t: 416 Content-Range: $(cat "$tmp/h")"
        code=$(c "$@" -r 0-1,5-6 -o "$tmp/out" -w '%{http_code}' "$url/big.bin")
        [ "$code" = 200 ] && cmp -s "$tmp/out" "$root/big.bin" || fail "$t: multi-range: $code"
        ok "$t: ranges: 206 with Content-Range, 416, multi-range as 200"

        # Conditional requests.
        c "$@" -D "$tmp/h" -o /dev/null "$url/hello.txt"
        etag=$(header etag "$tmp/h")
        lm=$(header last-modified "$tmp/h")
        [ -n "$etag" ] && [ -n "$lm" ] || fail "$t: no validators: $(cat "$tmp/h")"
        rm -f "$tmp/out"
        code=$(c "$@" -H "If-None-Match: $etag" -o "$tmp/out" -w '%{http_code}' "$url/hello.txt")
        [ "$code" = 304 ] && [ ! -s "$tmp/out" ] || fail "$t: If-None-Match: $code"
        code=$(c "$@" -H "If-None-Match: \"other\", $etag" -o /dev/null -w '%{http_code}' "$url/hello.txt")
        [ "$code" = 304 ] || fail "$t: If-None-Match list: $code"
        code=$(c "$@" -H 'If-None-Match: "other"' -o /dev/null -w '%{http_code}' "$url/hello.txt")
        [ "$code" = 200 ] || fail "$t: If-None-Match other: $code"
        code=$(c "$@" -H "If-Modified-Since: $lm" -o /dev/null -w '%{http_code}' "$url/hello.txt")
        [ "$code" = 304 ] || fail "$t: If-Modified-Since: $code"
        code=$(c "$@" -H "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT" -o /dev/null \
                -w '%{http_code}' "$url/hello.txt")
        [ "$code" = 200 ] || fail "$t: If-Modified-Since old: $code"
        code=$(c "$@" -H 'If-Range: "other"' -r 0-1 -o "$tmp/out" -w '%{http_code}' "$url/hello.txt")
        [ "$code" = 200 ] || fail "$t: If-Range mismatch: $code"
        ok "$t: 304 via If-None-Match and If-Modified-Since; If-Range"

        # Traversal: never the secret.
        for p in /../secret /%2e%2e/secret /%2E%2E/secret /..%2fsecret /..%2Fsecret \
                /sub/../../secret /sub/%2e%2e/%2e%2e/secret /link-rel /link-abs \
                /link-dir/secret /link-dir/ "/sub/..%5c..%5csecret" /%00secret; do
                code=$(c "$@" --path-as-is -o "$tmp/out" -w '%{http_code}' "$url$p")
                case $code in
                403 | 404 | 400) ;;
                *) fail "$t: $p answered $code" ;;
                esac
                ! grep -q TOPSECRET "$tmp/out" || fail "$t: $p leaked the secret"
        done
        [ "$(c "$@" "$url/link-inside")" = "hello, file" ] || fail "$t: symlink inside the root"
        [ "$(c "$@" --path-as-is "$url/sub/../hello.txt")" = "hello, file" ] || fail "$t: /sub/../"
        ok "$t: traversal answered 403/404, symlinks out refused, symlinks in followed"

        # Keep-alive: curl reuses the connection for a second URL.
        c "$@" -v -o /dev/null -o /dev/null "$url/hello.txt" "$url/big.bin" 2>"$tmp/v" ||
                fail "$t: two URLs"
        grep -q 'Re-using existing connection' "$tmp/v" || fail "$t: no reuse: $(cat "$tmp/v")"
        ok "$t: connection reused for two URLs"
done

# Access log: one combined-format line per request.
grep -Eq '^127\.0\.0\.1 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} \+0000\] "GET /hello\.txt HTTP/1\.1" 200 12 "-" "curl/[0-9.]+"$' \
        "$tmp/main.err" || fail "no access log line for GET /hello.txt"
grep -Eq '"GET /big\.bin HTTP/1\.1" 206 10 "-" "curl/' "$tmp/main.err" || fail "no log line for the range"
grep -Eq '"GET /nope HTTP/1\.1" 404 ' "$tmp/main.err" || fail "no log line for the 404"
grep -Eq '^[^ ]+ - - \[.*\] "HEAD /big\.bin HTTP/1\.1" 200 0 ' "$tmp/main.err" || fail "no HEAD log line"
ok "access log: $(grep -c '" [0-9][0-9][0-9] [0-9]* "' "$tmp/main.err") combined-format lines"

# 1 GiB, sparse: streamed with the server's memory flat.
rss() { sed -n "s/^$1:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$main_pid/status"; }
rss_before=$(rss VmRSS)
hwm_before=$(rss VmHWM)
start=$(date +%s.%N)
got=$(curl -sS --max-time 240 -o /dev/null -w '%{http_code} %{size_download}' "http://$tcp/huge")
end=$(date +%s.%N)
[ "$got" = "200 1073741824" ] || fail "1 GiB: $got"
rss_after=$(rss VmRSS)
hwm_after=$(rss VmHWM)
secs=$(echo "$end - $start" | bc 2>/dev/null || echo "?")
echo "1 GiB in ${secs}s; server VmRSS ${rss_before} -> ${rss_after} kB, VmHWM ${hwm_before} -> ${hwm_after} kB"
growth=$((hwm_after - rss_before))
[ $growth -lt 16384 ] || fail "1 GiB: server memory grew by $growth kB"
ok "1 GiB streamed; server memory grew by $growth kB (< 16 MiB)"

# A client leaving in the middle of a large body: the server drops the
# response, logs what it sent, and carries on.
curl -sS --max-time 30 "http://$tcp/huge" 2>/dev/null | head -c 1000000 >/dev/null || true
[ "$(c -o /dev/null -w '%{http_code}' "http://$tcp/hello.txt")" = 200 ] || fail "after an abort"
i=0
until grep -Eq '"GET /huge HTTP/1\.1" 200 [0-9]+ ' "$tmp/main.err" &&
        [ "$(grep -Ec '"GET /huge HTTP/1\.1" 200 ' "$tmp/main.err")" = 2 ]; do
        i=$((i + 1))
        [ $i -lt 100 ] || fail "no log line for the aborted transfer"
        sleep 0.05
done
short=$(grep -E '"GET /huge HTTP/1\.1" 200 ' "$tmp/main.err" | tail -n 1 | sed 's/.*" 200 \([0-9]*\) .*/\1/')
[ "$short" -lt 1073741824 ] || fail "aborted transfer logged $short bytes"
ok "client gone mid-body: logged with $short bytes sent, server serving on"

# SIGTERM: graceful stop, exit 0.
kill -TERM "$main_pid"
rc=0
wait "$main_pid" || rc=$?
[ $rc = 0 ] || fail "SIGTERM: exit $rc"
[ ! -e "$tmp/paf.sock" ] || echo "note: the unix socket file stays after stop"
ok "SIGTERM: exit 0"

# --quiet: no access log.
start_server quiet --quiet --listen 127.0.0.1:0 --listen "$tmp/quiet.sock" --root "$root"
c -o /dev/null "http://$tcp/hello.txt"
c -o /dev/null --unix-socket "$unix" http://localhost/nope
[ "$(grep -vc 'listening on' "$tmp/quiet.err")" = 0 ] || fail "--quiet logged: $(cat "$tmp/quiet.err")"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ $rc = 0 ] || fail "--quiet: SIGTERM: exit $rc"
ok "--quiet: no access log"

# Bad options: non-zero, with a message naming the thing.
expect_error() {
        what=$1 pattern=$2
        shift 2
        rc=0
        "$PAF_BIN" serve "$@" >"$tmp/bad.out" 2>"$tmp/bad.err" || rc=$?
        [ $rc != 0 ] || fail "$what: exit 0"
        grep -qF -- "$pattern" "$tmp/bad.err" || fail "$what: message does not name '$pattern': $(cat "$tmp/bad.err")"
        ok "$what: exit $rc: $(head -n 1 "$tmp/bad.err")"
}
expect_error "missing --root" "$tmp/missing" --listen 127.0.0.1:0 --root "$tmp/missing"
expect_error "file as --root" "$root/hello.txt" --listen 127.0.0.1:0 --root "$root/hello.txt"
expect_error "bad --listen" "999.1.2.3:80" --listen 999.1.2.3:80 --root "$root"
expect_error "nonsense --listen" "not an address" --listen "not an address" --root "$root"
expect_error "missing --config" "$tmp/missing.conf" --config "$tmp/missing.conf" --root "$root"
printf '[http]\nmax-headerz = 3\n' >"$tmp/bad.conf"
expect_error "bad --config" "max-headerz" --config "$tmp/bad.conf" --listen 127.0.0.1:0 --root "$root"

# Dotfiles and dot-directories (.git, .env …) answer 404 by default, are left
# out of listings, and are served with --dotfiles; /.well-known/ always is.
dots=$tmp/dots
mkdir -p "$dots/.git" "$dots/dir/.d" "$dots/.well-known" "$dots/sub/.well-known"
echo GITCONFIG >"$dots/.git/config"
echo HIDDEN >"$dots/.hidden"
echo DOTX >"$dots/dir/.x"
echo INDOTDIR >"$dots/dir/.d/f"
echo visible >"$dots/dir/visible.txt"
echo CONTACT >"$dots/.well-known/security.txt"
echo NESTED >"$dots/sub/.well-known/x"
start_server dots --listen 127.0.0.1:0 --listen "$tmp/dots.sock" --root "$dots"
for p in /.git/config /.git/ /.git /.hidden /dir/.x /dir/.d/f /dir/.d/ /%2egit/config \
        /%2Ehidden /dir/%2ex /sub/.well-known/x /dir/./.x /dir/sub/../.x; do
        code=$(c --path-as-is -o "$tmp/out" -w '%{http_code}' "http://$tcp$p")
        [ "$code" = 404 ] || fail "dotfiles: $p answered $code"
        ! grep -Eq 'GITCONFIG|HIDDEN|DOTX|INDOTDIR|NESTED' "$tmp/out" || fail "dotfiles: $p leaked"
done
code=$(c -o /dev/null -w '%{http_code}' --unix-socket "$unix" http://localhost/.git/config)
[ "$code" = 404 ] || fail "dotfiles over unix: $code"
[ "$(c "http://$tcp/.well-known/security.txt")" = CONTACT ] || fail "/.well-known/ not served"
[ "$(c "http://$tcp/dir/visible.txt")" = visible ] || fail "dotfiles: a plain file next to them"
c -o "$tmp/list" "http://$tcp/dir/"
grep -qF 'visible.txt' "$tmp/list" || fail "dotfiles: listing: $(cat "$tmp/list")"
! grep -qF '.x' "$tmp/list" && ! grep -qF '.d/' "$tmp/list" ||
        fail "dotfiles: the listing names them: $(cat "$tmp/list")"
c -o "$tmp/list" "http://$tcp/"
grep -qF '.well-known/' "$tmp/list" || fail "dotfiles: root listing lacks .well-known"
! grep -qF '.git' "$tmp/list" && ! grep -qF '.hidden' "$tmp/list" ||
        fail "dotfiles: the root listing names them: $(cat "$tmp/list")"
kill -TERM "$pid"
wait "$pid" || true
ok "dotfiles: 404 by default (encoded, nested, dot-directories), not listed; /.well-known/ served"

start_server dotfiles --dotfiles --listen 127.0.0.1:0 --listen "$tmp/dotfiles.sock" --root "$dots"
[ "$(c "http://$tcp/.git/config")" = GITCONFIG ] || fail "--dotfiles: /.git/config"
[ "$(c "http://$tcp/.hidden")" = HIDDEN ] || fail "--dotfiles: /.hidden"
[ "$(c "http://$tcp/dir/.x")" = DOTX ] || fail "--dotfiles: /dir/.x"
[ "$(c "http://$tcp/dir/.d/f")" = INDOTDIR ] || fail "--dotfiles: /dir/.d/f"
[ "$(c "http://$tcp/sub/.well-known/x")" = NESTED ] || fail "--dotfiles: /sub/.well-known/x"
c -o "$tmp/list" "http://$tcp/dir/"
grep -qF 'href="./.x"' "$tmp/list" || fail "--dotfiles: listing: $(cat "$tmp/list")"
for p in /../secret /.git/../../secret /%2e%2e/secret /.git/%2e%2e/%2e%2e/secret /..%2fsecret; do
        code=$(c --path-as-is -o "$tmp/out" -w '%{http_code}' "http://$tcp$p")
        case $code in
        403 | 404 | 400) ;;
        *) fail "--dotfiles: $p answered $code" ;;
        esac
        ! grep -q TOPSECRET "$tmp/out" || fail "--dotfiles: $p leaked the secret"
done
kill -TERM "$pid"
wait "$pid" || true
ok "--dotfiles: dotfiles served (200), traversal still refused"

# A config with [http] limits is applied: a header block over max-header-bytes is refused.
printf '[http]\nmax-header-bytes = 1024\n' >"$tmp/small.conf"
start_server conf --config "$tmp/small.conf" --listen 127.0.0.1:0 --listen "$tmp/conf.sock" --root "$root"
code=$(c -o /dev/null -w '%{http_code}' -H "X-Big: $(head -c 2000 /dev/zero | tr '\0' a)" \
        "http://$tcp/hello.txt" 2>"$tmp/curl.out" || true)
[ "$code" = 431 ] || fail "--config [http] max-header-bytes: $code $(cat "$tmp/curl.out")"
kill -TERM "$pid"
wait "$pid" || true
ok "--config [http] limits applied (431 beyond max-header-bytes)"

echo "all $n_checks checks passed"
