#!/bin/sh
# tests/http/test-get-cookies.sh — `paf get -b/-c` side by side with curl against nginx: -b "name=value", -b FILE in the Netscape format, -c FILE byte for byte as curl writes it (header lines, #HttpOnly_, domains, paths, Secure, expiry), cookies per path, Set-Cookie on redirects with -L, Max-Age=0 removing a cookie.
set -eu
# shellcheck source=get-side-by-side.sh
. "$PAF_TEST_SRCDIR/tests/http/get-side-by-side.sh"
start_nginx '
    location = /echo { return 200 "cookie=[$http_cookie]\n"; }
    location = /sub/echo { return 200 "sub cookie=[$http_cookie]\n"; }
    location = /set {
      add_header Set-Cookie "a=1; Path=/";
      add_header Set-Cookie "b=2; Path=/sub; Expires=Wed, 01 Jan 2031 00:00:00 GMT; HttpOnly";
      add_header Set-Cookie "c=3; Domain=127.0.0.1; Secure";
      add_header Set-Cookie "bad=1; Domain=example.com";
      return 200 "set\n";
    }
    location = /login { add_header Set-Cookie "sid=xyz; Path=/; Max-Age=3600"; return 302 /echo; }
    location = /logout { add_header Set-Cookie "a=gone; Path=/; Max-Age=0"; return 200 "out\n"; }'
base="http://127.0.0.1:$port"

same -b "x=1; y=2" "$base/echo"
[ "$(cat "$tmp/paf.out")" = "cookie=[x=1; y=2]" ] || fail "-b string: $(cat "$tmp/paf.out")"
ok "-b 'name=value; …' sent as is, as curl"

same -c jar.txt "$base/set"
same_file jar.txt
grep -q "^#HttpOnly_127.0.0.1	FALSE	/sub	FALSE	1924992000	b	2\$" "$tmp/paf/jar.txt" ||
        fail "-c: $(cat "$tmp/paf/jar.txt")"
! grep -q bad "$tmp/paf/jar.txt" || fail "-c: a cookie for another domain was kept"
ok "-c: the jar as curl writes it (header, #HttpOnly_, path, expiry, Secure; another domain refused)"

for f in paf curl; do cp "$tmp/paf/jar.txt" "$tmp/$f/in.txt"; done
same -b in.txt "$base/echo"
same -b in.txt "$base/sub/echo"
[ "$(cat "$tmp/paf.out")" = "sub cookie=[b=2; a=1; c=3]" ] || fail "-b FILE: $(cat "$tmp/paf.out")"
ok "-b FILE: cookies by path, longest first, as curl"

same -L -b in.txt -c jar2.txt "$base/login"
same_file jar2.txt
grep -q "sid=xyz" "$tmp/paf.out" || fail "-L: the redirect's cookie was not sent: $(cat "$tmp/paf.out")"
ok "-L: Set-Cookie of a redirect is sent on the next hop and saved"

same -b in.txt -c jar3.txt "$base/logout"
same_file jar3.txt
! grep -q "	a	" "$tmp/paf/jar3.txt" || fail "Max-Age=0 did not remove the cookie"
ok "Max-Age=0 removes a cookie"

same -b nonexistent.txt -c jar4.txt "$base/echo"
same_file jar4.txt
ok "-b with a missing file goes on, -c with no cookie writes the header only"
echo "all $n_checks checks passed"
