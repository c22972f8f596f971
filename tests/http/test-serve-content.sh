#!/bin/sh
# tests/http/test-serve-content.sh — what `paf serve --gzip` serves, seen by curl: MIME types, listings (HTML, sorted, JSON), precompressed siblings by q-value, on-the-fly gzip gunzipped back, HTML or plain error pages; and by headless Chromium: the listing's DOM, a link followed, a screenshot.
set -eu
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR

tmp=$(mktemp -d)
pid=
cleanup() {
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
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
        [ -f "$tmp/serve.err" ] && { echo "--- paf serve:" >&2; tail -n 20 "$tmp/serve.err" >&2; }
        exit 1
}
c() { curl -sS --max-time 20 "$@"; }
# hdr NAME FILE: the value of a response header in a curl -D dump.
hdr() { tr -d '\r' <"$2" | sed -n "s/^$1: //Ip" | head -n 1; }

root=$tmp/root
mkdir -p "$root/docs/sub dir" "$root/assets"
python3 -c 'import sys; sys.stdout.write("".join("line %d of a text file that compresses\n" % i for i in range(20000)))' \
        >"$root/docs/big.txt"
printf 'small\n' >"$root/docs/small.txt"
printf 'x' >"$root/docs/m.mjs"
printf 'x' >"$root/docs/w.wasm"
printf 'x' >"$root/docs/c.yaml"
printf 'x' >"$root/docs/i.avif"
printf '<p>in sub dir</p>\n' >"$root/docs/sub dir/page.html"
printf 'console.log("identity");\n' >"$root/assets/app.js"
printf 'gzip-sibling' >"$root/assets/app.js.gz"
printf 'brotli-sibling' >"$root/assets/app.js.br"
mkdir "$root/many"
i=0
while [ $i -lt 40 ]; do
        printf 'x' >"$root/many/entry-$i.txt"
        i=$((i + 1))
done

: >"$tmp/serve.err"
"$PAF_BIN" serve --listen 127.0.0.1:0 --root "$root" --gzip 2>>"$tmp/serve.err" &
pid=$!
i=0
while ! grep -q 'listening on http://' "$tmp/serve.err"; do
        kill -0 "$pid" 2>/dev/null || fail "paf serve exited early"
        i=$((i + 1))
        [ $i -lt 200 ] || fail "paf serve did not start"
        sleep 0.05
done
url=http://$(sed -n 's|^paf serve: listening on http://||p' "$tmp/serve.err")

# ---- MIME types ----
for pair in m.mjs:text/javascript w.wasm:application/wasm c.yaml:application/yaml \
        i.avif:image/avif; do
        got=$(c -o /dev/null -w '%{content_type}' "$url/docs/${pair%%:*}")
        case $got in "${pair#*:}" | "${pair#*:};"*) ;; *) fail ".${pair%%:*} is '$got'" ;; esac
done
ok "MIME: .mjs, .wasm, .yaml, .avif"

# ---- on-the-fly gzip ----
c -D "$tmp/h" -H 'Accept-Encoding: gzip' -o "$tmp/big.gz" "$url/docs/big.txt"
[ "$(hdr content-encoding "$tmp/h")" = gzip ] || fail "gzip: no Content-Encoding: $(cat "$tmp/h")"
[ "$(hdr vary "$tmp/h")" = Accept-Encoding ] || fail "gzip: no Vary"
case $(hdr etag "$tmp/h") in W/\"*) ;; *) fail "gzip: ETag not weak: $(hdr etag "$tmp/h")" ;; esac
gunzip -c <"$tmp/big.gz" | cmp - "$root/docs/big.txt" || fail "gzip: gunzip differs from the file"
[ "$(wc -c <"$tmp/big.gz")" -lt $(($(wc -c <"$root/docs/big.txt") / 4)) ] || fail "gzip: not smaller"
# curl --compressed decodes it to the very bytes.
c --compressed -o "$tmp/big.out" "$url/docs/big.txt"
cmp "$tmp/big.out" "$root/docs/big.txt" || fail "gzip: curl --compressed differs"
# Without Accept-Encoding: the file, with Vary; with a range: the file's bytes.
c -D "$tmp/h" -o "$tmp/big.id" "$url/docs/big.txt"
cmp "$tmp/big.id" "$root/docs/big.txt" || fail "identity differs"
[ "$(hdr vary "$tmp/h")" = Accept-Encoding ] || fail "identity: no Vary"
[ -z "$(hdr content-encoding "$tmp/h")" ] || fail "identity: Content-Encoding"
got=$(c -H 'Accept-Encoding: gzip' -r 5-14 -D "$tmp/h" "$url/docs/big.txt")
[ "$got" = "$(head -c 15 "$root/docs/big.txt" | tail -c 10)" ] || fail "gzip+range: '$got'"
[ -z "$(hdr content-encoding "$tmp/h")" ] || fail "gzip+range: gzipped"
# Below the threshold: as it is.
c -D "$tmp/h" -H 'Accept-Encoding: gzip' -o "$tmp/small" "$url/docs/small.txt"
cmp "$tmp/small" "$root/docs/small.txt" || fail "small file changed"
[ -z "$(hdr content-encoding "$tmp/h")" ] || fail "small file gzipped"
ok "--gzip: gunzip gives the file, Vary, weak ETag, no gzip for ranges and short files"
# Streamed: 256 MiB gzipped leave the server's peak memory where it was
# (one piece in, one out, whatever the size).
truncate -s 256M "$root/docs/zeros.txt"
hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status"; }
before=$(hwm)
[ -n "$before" ] || fail "no VmHWM in /proc/$pid/status"
got=$(c -H 'Accept-Encoding: gzip' "$url/docs/zeros.txt" | gunzip | wc -c)
[ "$got" = $((256 * 1024 * 1024)) ] || fail "gzip of 256 MiB: $got bytes"
after=$(hwm)
[ $((after - before)) -lt 16384 ] || fail "gzip of 256 MiB: peak memory $before -> $after kB"
rm "$root/docs/zeros.txt"
ok "--gzip: 256 MiB streamed, peak memory $before -> $after kB"

# ---- precompressed siblings ----
# coding  Accept-Encoding  expected body
while read -r want ae; do
        c -D "$tmp/h" -H "Accept-Encoding: $ae" -o "$tmp/app" "$url/assets/app.js"
        case $want in
        br) cmp -s "$tmp/app" "$root/assets/app.js.br" ;;
        gzip) cmp -s "$tmp/app" "$root/assets/app.js.gz" ;;
        *) cmp -s "$tmp/app" "$root/assets/app.js" ;;
        esac || fail "Accept-Encoding '$ae': not the $want body: $(cat "$tmp/app")"
        [ "$(hdr content-encoding "$tmp/h")" = "${want#identity}" ] ||
                fail "Accept-Encoding '$ae': Content-Encoding '$(hdr content-encoding "$tmp/h")'"
        [ "$(hdr vary "$tmp/h")" = Accept-Encoding ] || fail "Accept-Encoding '$ae': no Vary"
        case $(hdr content-type "$tmp/h") in text/javascript*) ;; *) fail "sibling type" ;; esac
done <<'LIST'
br gzip, deflate, br
gzip gzip, br;q=0.5
br gzip;q=0.1, br;q=0.9
gzip br;q=0, *
identity br;q=0, gzip;q=0
identity identity
LIST
e_id=$(c -D - -o /dev/null "$url/assets/app.js" | tr -d '\r' | sed -n 's/^etag: //Ip')
e_br=$(c -D - -o /dev/null -H 'Accept-Encoding: br' "$url/assets/app.js" | tr -d '\r' | sed -n 's/^etag: //Ip')
[ -n "$e_br" ] && [ "$e_id" != "$e_br" ] || fail "sibling ETag '$e_br' vs '$e_id'"
got=$(c -H 'Accept-Encoding: br' -r 0-5 "$url/assets/app.js")
[ "$got" = brotli ] || fail "range of the sibling: '$got'"
c -I -H 'Accept-Encoding: gzip' -o /dev/null -D "$tmp/h" "$url/assets/app.js"
[ "$(hdr content-length "$tmp/h")" = 12 ] || fail "HEAD of the sibling: $(cat "$tmp/h")"
ok "precompressed siblings chosen by q-value, own ETag, ranges, HEAD"

# ---- listings ----
c -D "$tmp/h" -o "$tmp/list.html" "$url/docs/?sort=size&order=desc"
grep -qF '<title>Index of /docs/</title>' "$tmp/list.html" || fail "listing title"
grep -qF '<a href="../">../</a>' "$tmp/list.html" || fail "listing parent link"
grep -qF "<a href=\"./sub%20dir/\">sub dir/</a>" "$tmp/list.html" || fail "listing subdir"
size=$(wc -c <"$root/docs/big.txt")
grep -qF "<a href=\"./big.txt\">big.txt</a></td><td class=\"size\">$size</td>" "$tmp/list.html" ||
        fail "listing size"
# Directories first, then by size, largest first.
order=$(grep -o 'href="\./[^"]*"' "$tmp/list.html" | tr '\n' ' ')
case $order in 'href="./sub%20dir/" href="./big.txt" href="./small.txt" '*) ;; *) fail "order: $order" ;; esac
c -H 'Accept: application/json' -D "$tmp/h" -o "$tmp/list.json" "$url/docs/"
[ "$(hdr content-type "$tmp/h")" = application/json ] || fail "JSON type"
python3 - "$tmp/list.json" "$size" <<'PY' || fail "JSON listing: $(cat "$tmp/list.json")"
import json, sys
entries = json.load(open(sys.argv[1]))
by_name = {e["name"]: e for e in entries}
assert by_name["sub dir"]["type"] == "directory" and "size" not in by_name["sub dir"]
assert by_name["big.txt"] == {"name": "big.txt", "type": "file", "size": int(sys.argv[2]),
                              "mtime": by_name["big.txt"]["mtime"]}
assert by_name["big.txt"]["mtime"].endswith(" GMT")
assert [e["name"] for e in entries][0] == "sub dir"
PY
ok "listing: parent link, sizes, sorting, JSON with Accept: application/json"
# --gzip covers listings too, as any text answer: HTML and JSON, gzipped for
# a client that takes gzip, the same listing once gunzipped.
for accept in text/html application/json; do
        c -H "Accept: $accept" -D "$tmp/h" -o "$tmp/list.id" "$url/many/"
        [ "$(hdr vary "$tmp/h")" = "Accept, Accept-Encoding" ] ||
                fail "$accept listing without gzip: Vary '$(hdr vary "$tmp/h")'"
        [ -z "$(hdr content-encoding "$tmp/h")" ] || fail "$accept listing: gzip not asked for"
        [ "$(wc -c <"$tmp/list.id")" -gt 1024 ] || fail "$accept listing: below --gzip's threshold"
        c -H "Accept: $accept" -H 'Accept-Encoding: gzip' -D "$tmp/h" -o "$tmp/list.gz" "$url/many/"
        [ "$(hdr content-encoding "$tmp/h")" = gzip ] ||
                fail "$accept listing: Content-Encoding '$(hdr content-encoding "$tmp/h")'"
        [ "$(hdr vary "$tmp/h")" = "Accept, Accept-Encoding" ] ||
                fail "$accept listing: Vary '$(hdr vary "$tmp/h")'"
        case $(hdr content-type "$tmp/h") in "$accept"*) ;; *) fail "$accept listing: type" ;; esac
        gunzip -c <"$tmp/list.gz" | cmp - "$tmp/list.id" || fail "$accept listing: gunzip differs"
        [ "$(wc -c <"$tmp/list.gz")" -lt "$(wc -c <"$tmp/list.id")" ] || fail "$accept listing: not smaller"
        c --compressed -H "Accept: $accept" -o "$tmp/list.out" "$url/many/"
        cmp "$tmp/list.out" "$tmp/list.id" || fail "$accept listing: curl --compressed differs"
        c -I --compressed -H "Accept: $accept" -D "$tmp/h" -o /dev/null "$url/many/"
        [ "$(hdr content-encoding "$tmp/h")" = gzip ] || fail "$accept listing: HEAD not as GET"
done
ok "--gzip: listings (HTML and JSON) gzipped, Vary: Accept, Accept-Encoding, gunzip gives the listing"

# ---- error pages ----
code=$(c -H 'Accept: text/html,*/*;q=0.8' -o "$tmp/e" -w '%{http_code} %{content_type}' "$url/nope")
[ "$code" = "404 text/html; charset=utf-8" ] || fail "HTML 404: $code"
grep -qF '<title>404 Not Found</title>' "$tmp/e" || fail "HTML 404 body"
[ "$(c "$url/nope")" = "404 Not Found" ] || fail "plain 404 for curl"
ok "error pages: HTML for browsers, plain for curl"

# ---- a real browser ----
if ! command -v chromium >/dev/null 2>&1; then
        echo "chromium not found (Debian package chromium): skipping the browser checks"
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        pid=
        exit 0
fi
# HOME and its profile in $tmp: nothing of the user's is read or written.
export HOME=$tmp/home
mkdir -p "$HOME"
chrome() {
        timeout 25 chromium --headless --no-sandbox --disable-gpu --no-first-run \
                --user-data-dir="$tmp/profile" --disable-extensions "$@" 2>>"$tmp/chromium.err"
}
chrome --dump-dom "$url/docs/" >"$tmp/dom" || fail "chromium --dump-dom failed: $(tail -5 "$tmp/chromium.err")"
grep -qF '<title>Index of /docs/</title>' "$tmp/dom" || fail "browser: no title in the DOM: $(head -c 500 "$tmp/dom")"
grep -qF 'href="./sub%20dir/"' "$tmp/dom" || fail "browser: no link in the DOM"
grep -qF '<table>' "$tmp/dom" || fail "browser: no table"
# A page of the test's own loads the listing in a frame and clicks a link
# in it, as a user would; the server then sees the browser come from the
# listing (Referer).
cat >"$root/follow.html" <<'HTML'
<!DOCTYPE html><html><head><title>follow</title></head><body>
<iframe id="f" src="/docs/"></iframe><pre id="out">waiting</pre>
<script>
var f = document.getElementById("f"), clicked = false;
f.onload = function () {
  var d = f.contentDocument;
  if (!clicked) {
    var a = Array.from(d.querySelectorAll("a")).find(function (x) { return x.textContent === "sub dir/"; });
    clicked = true;
    a.click();
  } else {
    document.getElementById("out").textContent = "landed " + d.title + " " + f.contentWindow.location.pathname;
  }
};
</script></body></html>
HTML
chrome --virtual-time-budget=5000 --dump-dom "$url/follow.html" >"$tmp/follow" || fail "chromium on follow.html"
grep -qF 'landed Index of /docs/sub dir/ /docs/sub%20dir/' "$tmp/follow" ||
        fail "browser: the link was not followed: $(grep -o '<pre[^<]*' "$tmp/follow")"
grep -qF "\"GET /docs/sub%20dir/ HTTP/1.1\" 200" "$tmp/serve.err" || fail "the server did not see the click"
grep "GET /docs/sub%20dir/ " "$tmp/serve.err" | grep -qF "$url/docs/" || fail "no Referer from the listing"
ok "chromium: the listing's title and links in the DOM, a link followed"

chrome --window-size=800,600 --screenshot="$tmp/shot.png" "$url/docs/" >/dev/null ||
        fail "chromium --screenshot failed"
python3 - "$tmp/shot.png" <<'PY' || fail "screenshot"
# A PNG of the window's size, with text on a light page: decoded here
# (stdlib zlib, PNG filters) rather than trusted by its size alone.
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
assert 2000 < len(data) < 5000000, "size %d" % len(data)
pos, idat = 8, b""
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, color = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
assert (w, h) == (800, 600), (w, h)
assert depth == 8 and color in (2, 6), (depth, color)
bpp = 3 if color == 2 else 4
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
dark = light = 0
for y in range(h):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp * 2):
        s = line[x] + line[x + 1] + line[x + 2]
        if s < 300: dark += 1
        elif s > 600: light += 1
    prev = line
total = dark + light
# Mostly a light page, with some text on it: neither blank nor black.
assert light > 0.7 * total and 0.001 * total < dark < 0.2 * total, (dark, light)
print("screenshot: %dx%d, %d dark samples of %d" % (w, h, dark, total))
PY
ok "chromium: a screenshot, an 800x600 PNG of a light page with text"

kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
