#!/bin/sh
# tests/http/test-get-compressed.sh — `paf get --compressed` side by side with curl against nginx (gzip on, gzip_static): the same decoded bytes, deflate, identity untouched, -o files equal, and a corrupt gzip body failing with exit 61.
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
echo "all $n_checks checks passed"
