#!/bin/sh
# tests/http/test-get-compressed.sh — `paf get --compressed` side by side with curl: against nginx (gzip on, gzip_static) the same decoded bytes, deflate, identity untouched, -o files equal, a corrupt gzip body failing with exit 61; against paf serve (precompressed .br and .zst siblings) and a raw server of fixed bodies made by the brotli and zstd CLIs: the same Accept-Encoding, br, zstd, stacked codings, corrupt, unknown and too many codings, bytes after the end, the same exit codes; 32 MiB decoded with a bounded peak memory.
set -eu
# shellcheck source=get-side-by-side.sh
. "$PAF_TEST_SRCDIR/tests/http/get-side-by-side.sh"
i=0
while [ $i -lt 20000 ]; do
        echo "line $i of a text that compresses well"
        i=$((i + 1))
done >"$ng/www/text.txt"
mkdir "$ng/www/static"
printf 'precompressed body\n' >"$tmp/pre.txt"
gzip -c "$tmp/pre.txt" >"$ng/www/static/pre.txt.gz"
python3 -c 'import zlib,sys; sys.stdout.buffer.write(zlib.compress(b"deflated body\n" * 100))' >"$ng/www/deflate.bin"
printf 'this is not gzip at all\n' >"$ng/www/bad.bin"
start_nginx '
    location / { gzip on; gzip_types text/plain; gzip_min_length 1; }
    location /static/ { gzip_static always; }
    location = /deflate.bin { add_header Content-Encoding deflate; default_type text/plain; }
    location = /bad.bin { add_header Content-Encoding gzip; default_type text/plain; }'
base="http://127.0.0.1:$port"

same --compressed "$base/text.txt"
cmp -s "$tmp/paf.out" "$ng/www/text.txt" || fail "--compressed: not the file"
same --compressed -i "$base/text.txt" -o out.txt
grep -qi "^Content-Encoding: gzip" "$tmp/paf/out.txt" || fail "--compressed: nginx did not gzip"
same --compressed "$base/text.txt" -o body.txt
same_file body.txt
ok "gzip on: the decoded body, as curl (stdout and -o)"

same "$base/text.txt"
ok "without --compressed: the file as is"

same --compressed "$base/static/pre.txt"
cmp -s "$tmp/paf.out" "$tmp/pre.txt" || fail "gzip_static: $(cat "$tmp/paf.out")"
ok "gzip_static: the precompressed sibling, decoded"

same --compressed "$base/deflate.bin"
grep -q "deflated body" "$tmp/paf.out" || fail "deflate: $(head -c 100 "$tmp/paf.out")"
ok "deflate (zlib format), as curl"

same --compressed "$base/bad.bin"
[ $prc = 61 ] || fail "corrupt gzip: exit $prc"
grep -q "content unencoding" "$tmp/paf.err" || fail "corrupt gzip: $(cat "$tmp/paf.err")"
ok "a corrupt gzip body: exit 61, as curl"

# ---- br and zstd ----
command -v brotli >/dev/null 2>&1 && command -v zstd >/dev/null 2>&1 ||
        { echo "brotli or zstd CLI not found (Debian packages brotli, zstd): skipping the rest"; exit 0; }
# Debian's own interpreter: the one on PATH may lack nothing here, but
# it is not the one the packages are tested with.
py=/usr/bin/python3
[ -x $py ] || py=python3

# paf serve answers with the precompressed sibling the client accepts.
www=$tmp/serve
mkdir -p "$www"
cp "$ng/www/text.txt" "$www/a.txt"
brotli -c "$www/a.txt" >"$www/a.txt.br"
cp "$ng/www/text.txt" "$www/z.txt"
zstd -q -c "$www/z.txt" >"$www/z.txt.zst"
$py - "$www/big.txt" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    i = n = 0
    while n < 32 * 1024 * 1024:
        line = "line %d of a body that compresses well, %d\n" % (i, i * 7 % 1000)
        f.write(line)
        n += len(line)
        i += 1
PY
# A 1 MiB window (-w 20), as servers use: the decoder holds the window
# the stream asks for (the CLI's default is 16 MiB).
brotli -q 5 -w 20 -c "$www/big.txt" >"$www/big.txt.br"
zstd -q -c "$www/big.txt" >"$www/big.txt.zst"
"$PAF_BIN" serve --listen 127.0.0.1:0 --root "$www" 2>"$tmp/serve.err" &
pids="$pids $!"
i=0
while ! grep -q 'listening on http://' "$tmp/serve.err"; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "paf serve did not start"
        sleep 0.05
done
serve=http://$(sed -n 's|^paf serve: listening on http://||p' "$tmp/serve.err")
for pair in a:br z:zstd; do
        f=${pair%:*}
        # -i into a file: its Date may differ from curl's by a second.
        same --compressed -i "$serve/$f.txt" -o head.txt
        grep -qi "^Content-Encoding: ${pair#*:}" "$tmp/paf/head.txt" ||
                fail "paf serve did not send ${pair#*:}"
        same --compressed "$serve/$f.txt" -o $f.txt
        same_file $f.txt
        cmp -s "$tmp/paf/$f.txt" "$www/$f.txt" || fail "$f.txt: not the file"
done
ok "paf serve's .br and .zst siblings, decoded as curl does (stdout and -o)"

# A raw server: fixed bodies under fixed Content-Encoding fields, and the
# Accept-Encoding it was sent as the body of /accept-encoding.
raw=$tmp/raw
mkdir "$raw"
printf 'hello from a fixed body\n' >"$raw/plain"
brotli -c "$raw/plain" >"$raw/br"
zstd -q -c "$raw/plain" >"$raw/zst"
gzip -c "$raw/plain" >"$raw/gz"
brotli -c "$raw/gz" >"$raw/gz.br"
zstd -q -c "$raw/gz.br" >"$raw/gz.br.zst"
printf 'not brotli, not zstd\n' >"$raw/junk"
cat "$raw/br" "$raw/junk" >"$raw/br+junk"
cat "$raw/zst" "$raw/zst" >"$raw/zst+zst"
cat "$raw/zst" "$raw/junk" >"$raw/zst+junk"
head -c $(($(wc -c <"$www/a.txt.br") / 2)) "$www/a.txt.br" >"$raw/br-cut"
cat >"$raw/server.py" <<'PY'
import os, socket, sys, threading
root = sys.argv[1]
# path: (Content-Encoding fields, body file)
routes = {
    "/br": (["br"], "br"),
    "/zstd": (["zstd"], "zst"),
    "/stacked": (["gzip, br, zstd"], "gz.br.zst"),
    "/fields": (["gzip", "br"], "gz.br"),
    "/br-corrupt": (["br"], "junk"),
    "/zstd-corrupt": (["zstd"], "junk"),
    "/unknown": (["compress"], "br"),
    "/too-many": (["identity, br, identity, identity, identity, identity"], "br"),
    "/br-then-junk": (["br"], "br+junk"),
    "/zstd-two-frames": (["zstd"], "zst+zst"),
    "/zstd-then-junk": (["zstd"], "zst+junk"),
    "/br-cut": (["br"], "br-cut"),
}
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
with open(os.path.join(root, "port.tmp"), "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(os.path.join(root, "port.tmp"), os.path.join(root, "port"))
def answer(c):
    with c:
        c.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return
            head += d
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        fields = []
        if path == "/accept-encoding":
            body = "".join(l.split(":", 1)[1].strip() + "\n" for l in lines[1:]
                           if l.lower().startswith("accept-encoding:")).encode()
        elif path in routes:
            fields, name = routes[path]
            body = open(os.path.join(root, name), "rb").read()
        else:
            body = b"no such route\n"
        out = "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n" % len(body)
        out += "".join("Content-Encoding: %s\r\n" % v for v in fields)
        c.sendall(out.encode() + b"\r\n" + body)
while True:
    c, _ = s.accept()
    threading.Thread(target=answer, args=(c,), daemon=True).start()
PY
$py "$raw/server.py" "$raw" 2>"$tmp/raw.err" &
pids="$pids $!"
i=0
while [ ! -s "$raw/port" ]; do
        i=$((i + 1))
        [ $i -lt 200 ] || fail "the raw server did not start: $(cat "$tmp/raw.err")"
        sleep 0.05
done
rs=http://127.0.0.1:$(cat "$raw/port")

same --compressed "$rs/accept-encoding"
[ "$(cat "$tmp/paf.out")" = "deflate, gzip, br, zstd" ] || fail "Accept-Encoding: $(cat "$tmp/paf.out")"
ok "Accept-Encoding: deflate, gzip, br, zstd, as curl"

cat "$raw/plain" "$raw/plain" >"$raw/plain2"
for pair in br:plain zstd:plain stacked:plain fields:plain zstd-two-frames:plain2; do
        route=${pair%:*}
        same --compressed "$rs/$route"
        [ $prc = 0 ] || fail "$route: exit $prc: $(cat "$tmp/paf.err")"
        cmp -s "$tmp/paf.out" "$raw/${pair#*:}" || fail "$route: $(cat "$tmp/paf.out")"
done
same "$rs/br"
cmp -s "$tmp/paf.out" "$raw/br" || fail "without --compressed: br decoded"
ok "br, zstd, stacked (gzip, br, zstd), two Content-Encoding fields, two zstd frames: as curl"

# Failures, with curl's exit codes: 61 for a corrupt body, an unknown or
# more than 5 codings; 23 (curl's write error) for bytes after a stream's
# end; zstd takes them as another frame, which is not one: 61.
for pair in br-corrupt:61 zstd-corrupt:61 unknown:61 too-many:61 br-then-junk:23 zstd-then-junk:61; do
        route=${pair%:*}
        same --compressed "$rs/$route"
        [ $prc = "${pair#*:}" ] || fail "$route: exit $prc: $(cat "$tmp/paf.err")"
        [ -s "$tmp/paf.err" ] || fail "$route: no message"
done
same --compressed "$rs/br-then-junk"
grep -q "br: bytes after the end of the stream" "$tmp/paf.err" || fail "br-then-junk: $(cat "$tmp/paf.err")"
same --compressed "$rs/br-corrupt"
grep -q "content unencoding: br: corrupt data" "$tmp/paf.err" || fail "br-corrupt: $(cat "$tmp/paf.err")"
ok "corrupt br and zstd, unknown and too many codings, bytes after the end: curl's exit codes"

# A stream cut short inside a complete body: curl 7.88 exits 0 with what
# it decoded; paf says so and exits 61, as the file it wrote is not whole.
both --compressed "$rs/br-cut"
[ $crc = 0 ] || fail "br-cut: curl exit $crc"
[ $prc = 61 ] || fail "br-cut: paf exit $prc"
grep -q "ended before its end" "$tmp/paf.err" || fail "br-cut: $(cat "$tmp/paf.err")"
ok "a cut br stream: exit 61 (curl takes it and exits 0)"

# 32 MiB out of a few hundred KiB: decoded as it streams, the peak memory
# far below the body's size; the same file as curl's.
# rss ARGS…: paf get's peak resident memory in kB, by GNU time (a small C
# parent: a Python one would lend the child its own size until exec).
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (Debian package time): skipping the memory check"; exit 0; }
rss() { timeout 60 /usr/bin/time -f %M -o "$tmp/rss" "$PAF_BIN" get -sS "$@" && cat "$tmp/rss"; }
base=$(rss -o /dev/null "$rs/br") || fail "paf get of a small body failed"
for f in br zst; do
        [ $f = br ] && ae=br || ae=zstd
        peak=$(rss --compressed -H "Accept-Encoding: $ae" -o "$tmp/paf/big.$f" "$serve/big.txt") ||
                fail "32 MiB $ae: paf get failed"
        cmp -s "$tmp/paf/big.$f" "$www/big.txt" || fail "32 MiB $ae: not the file"
        [ $((peak - base)) -lt 16384 ] || fail "32 MiB $ae: peak memory $base -> $peak kB"
        echo "32 MiB $ae: peak memory $base -> $peak kB"
        rm "$tmp/paf/big.$f"
done
same --compressed "$serve/big.txt" -o big.txt
same_file big.txt
ok "32 MiB of br and of zstd decoded as it streams (peak memory bounded), as curl"
echo "all $n_checks checks passed"
