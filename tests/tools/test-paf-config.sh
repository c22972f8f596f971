#!/bin/sh
# `paf config check FILE`: a valid file passes; each kind of error exits
# non-zero printing FILE:LINE: and the key or section at fault.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR

cat >"$tmp/ok.conf" <<'CONF'
# A complete, valid paf.conf.
[paf]
load = tcp, unix
log-level = info

CONF
out=$("$PAF_BIN" config check "$tmp/ok.conf" 2>&1) || fail "valid config rejected: $out"
echo "$out" | grep -q ": ok$" || fail "no ok line: $out"

# expect_error NAME LINE PATTERN: the file $tmp/NAME.conf fails at LINE with PATTERN.
expect_error() {
        name=$1 line=$2 pattern=$3
        if out=$("$PAF_BIN" config check "$tmp/$name.conf" 2>&1); then
                fail "$name: accepted, expected an error at line $line"
        fi
        echo "$name -> $out"
        echo "$out" | grep -q "$tmp/$name.conf:$line: " || fail "$name: no $name.conf:$line: in: $out"
        echo "$out" | grep -q -- "$pattern" || fail "$name: no \"$pattern\" in: $out"
}

printf '[paf]\nload = tcp\n[paf\n' >"$tmp/syntax.conf"
expect_error syntax 3 "syntax error"

printf '# paths\n[paf]\nplugin-paht = /nowhere\n' >"$tmp/unknown-key.conf"
expect_error unknown-key 3 'key "plugin-paht": unknown option (did you mean "plugin-path"?)'

printf '[paf]\n\nlog-level = loud\n' >"$tmp/bad-level.conf"
expect_error bad-level 3 'key "log-level"'

printf '[paf]\nload = tcp Bad/Name\n' >"$tmp/bad-load.conf"
expect_error bad-load 2 'Bad/Name'

printf '[paf]\nload = tcp\n\n[tpc]\nfoo = 1\n' >"$tmp/unknown-section.conf"
expect_error unknown-section 4 '\[tpc\]: unknown section (did you mean "tcp"?)'

# Numbers: out of range, or too big for any integer, is refused with the
# range, never wrapped (header-timeout in µs would wrap to 448 ms).
printf '[http]\nheader-timeout = 18446744073710\n' >"$tmp/wrap.conf"
expect_error wrap 2 '\[http\] key "header-timeout": value out of range (0-86400)$'

printf '[http]\nmax-body = 1024\nwrite-timeout = -1\n' >"$tmp/negative-timeout.conf"
expect_error negative-timeout 3 '\[http\] key "write-timeout": value out of range (0-86400)$'

printf '[http]\nmax-body = -5\n' >"$tmp/negative-body.conf"
expect_error negative-body 2 '\[http\] key "max-body": value out of range (0-9223372036854775807)$'

printf '[http]\nmax-connections = 99999999999999999999999\n' >"$tmp/huge.conf"
expect_error huge 2 '\[http\] key "max-connections": value out of range (0-16777216)$'

# A plugin's numbers: the ranges of its option table.
printf '[paf]\nload = tcp tls\n\n[tls]\nhandshake-timeout = 0\n' >"$tmp/tls-timeout.conf"
expect_error tls-timeout 5 '\[tls\] key "handshake-timeout": value out of range (1-3600)$'

printf '[paf]\nload = tls\n[tls]\nmax-handshakes = 65537\n' >"$tmp/tls-handshakes.conf"
expect_error tls-handshakes 4 '\[tls\] key "max-handshakes": value out of range (1-65536)$'

printf '[paf]\nload = tcp tls\n[http]\nheader-timeout = 86400\nmax-body = 0\n[tls]\nhandshake-timeout = 3600\n' >"$tmp/bounds.conf"
out=$("$PAF_BIN" config check "$tmp/bounds.conf" 2>&1) || fail "bounds rejected: $out"

# A plugin the config asks for but that does not exist.
printf '[paf]\nload = tcp nosuchplugin\n' >"$tmp/missing-plugin.conf"
if out=$("$PAF_BIN" config check "$tmp/missing-plugin.conf" 2>&1); then
        fail "missing plugin accepted"
fi
echo "$out" | grep -q 'nosuchplugin' || fail "missing plugin not named: $out"
echo "$out" | grep -q 'not found' || fail "missing plugin reason not given: $out"

if out=$("$PAF_BIN" config check "$tmp/absent.conf" 2>&1); then
        fail "absent file accepted"
fi
echo "$out" | grep -q "$tmp/absent.conf: No such file or directory" || fail "absent file: $out"

# ---- one validation path: check refuses what serve and get refuse, saying the same ----

# refusal CMD FILE LINE: run CMD on FILE, which must refuse it (no server
# left running: serve is bounded by timeout); print its message from
# "FILE:LINE: " on.
refusal() {
        cmd=$1 file=$2 line=$3
        case $cmd in
        check) set -- config check "$file" ;;
        serve) set -- serve --config "$file" --quiet --root "$tmp" --listen 127.0.0.1:0 ;;
        get) set -- get --config "$file" -s -o /dev/null http://127.0.0.1:1/ ;;
        esac
        if out=$(timeout 10 "$PAF_BIN" "$@" 2>&1 </dev/null); then
                fail "$cmd $file: accepted"
        fi
        msg=$(printf '%s\n' "$out" | awk -v at="$file:$line: " '
                /^paf/ && (i = index($0, at)) { print substr($0, i); exit }')
        [ -n "$msg" ] || fail "$cmd $file: no \"paf …: $file:$line: …\" line in: $out"
        printf '%s\n' "$msg"
}

# same_refusal NAME LINE PATTERN [get]: `paf config check`, `paf serve
# --config` and, with get, `paf get --config` refuse $tmp/NAME.conf with
# one message, at LINE, matching PATTERN.
same_refusal() {
        name=$1 line=$2 pattern=$3
        file=$tmp/$name.conf
        want=$(refusal check "$file" "$line")
        echo "$name -> $want"
        printf '%s\n' "$want" | grep -q -- "$pattern" || fail "$name: no \"$pattern\" in: $want"
        for cmd in serve ${4:-}; do
                got=$(refusal "$cmd" "$file" "$line")
                [ "$got" = "$want" ] || fail "$name: $cmd says \"$got\", config check \"$want\""
        done
}

printf '[tls]\npriority = GARBAGE\n' >"$tmp/tls-priority.conf"
same_refusal tls-priority 2 \
        '\[tls\] key "priority": "GARBAGE" is not a GnuTLS priority string (invalid at "GARBAGE")$' get
printf '[paf]\nload = tcp tls\n[tls]\npriority = NORMAL:+NONSENSE\n' >"$tmp/tls-priority-load.conf"
same_refusal tls-priority-load 4 'key "priority": "NORMAL:+NONSENSE" is not a GnuTLS priority' get
printf '[paf]\nload = tcp tls\n\n[tls]\nhandshake-timeout = 0\n' >"$tmp/tls-timeout.conf"
same_refusal tls-timeout 5 '\[tls\] key "handshake-timeout": value out of range (1-3600)$' get
printf '[http]\nmax-body = -5\n' >"$tmp/negative-body.conf"
same_refusal negative-body 2 '\[http\] key "max-body": value out of range (0-9223372036854775807)$' get

# A key set twice: the second would silently win over the first.
printf '[http]\nmax-body = 10\n\nmax-body = 20\n' >"$tmp/twice.conf"
same_refusal twice 4 '\[http\] key "max-body": set twice (first on line 2)$' get
printf '[tls]\nhandshake-timeout = 5\n[http]\nmax-body = 1\n[tls]\nhandshake-timeout = 6\n' >"$tmp/twice-plugin.conf"
same_refusal twice-plugin 6 '\[tls\] key "handshake-timeout": set twice (first on line 2)$' get
# Lists add up: not twice.
printf '[paf]\nload = tcp\nload = tls\n' >"$tmp/list.conf"
out=$("$PAF_BIN" config check "$tmp/list.conf" 2>&1) || fail "a list set on two lines refused: $out"

printf '[tls]\nprority = NORMAL\n' >"$tmp/tls-typo.conf"
same_refusal tls-typo 2 '\[tls\] key "prority": unknown option (did you mean "priority"?)$' get
printf '[paf]\nload = tcp\n[listen]\naddress = 8080\n' >"$tmp/listen-noname.conf"
same_refusal listen-noname 3 '\[listen\]: a listener section needs a name: \[listen.NAME\]$' get

# [listen.NAME]: what serve would listen on, checked without listening.
printf '[paf]\nload = tcp\n[listen.web]\naddress = nonsense:addr\n' >"$tmp/bad-address.conf"
same_refusal bad-address 4 \
        '\[listen.web\] key "address": "nonsense:addr": no protocol understands this address$'
printf '[paf]\nload = tcp\n[listen.web]\naddress = 127.0.0.1:99999\n' >"$tmp/bad-port.conf"
same_refusal bad-port 4 '\[listen.web\] key "address": "127.0.0.1:99999": port out of range'

. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"
https_ca "$tmp" ca || fail "certtool: cannot make a CA"
https_cert "$tmp" a ca localhost 127.0.0.1 || fail "certtool: cannot make a certificate"
https_cert "$tmp" b ca localhost 127.0.0.1 || fail "certtool: cannot make a certificate"
# tls_conf NAME CERT KEY [MORE]: a TLS listener section (relative files: from $tmp).
tls_conf() {
        printf '[paf]\nload = tcp tls\n\n[listen.web]\naddress = 127.0.0.1:0\ntls = yes\ncertificate = %s\nkey = %s\n%b' \
                "$2" "$3" "${4:-}" >"$tmp/$1.conf"
}
tls_conf tls-good a.pem a.key 'client-ca = ca.pem\n'
out=$(cd / && "$PAF_BIN" config check "$tmp/tls-good.conf" 2>&1) || fail "a good TLS listener refused: $out"
tls_conf missing-cert missing.pem a.key
same_refusal missing-cert 7 "\[listen.web\] key \"certificate\": $tmp/missing.pem: No such file or directory\$"
tls_conf missing-key a.pem missing.key
same_refusal missing-key 8 "\[listen.web\] key \"key\": $tmp/missing.key: No such file or directory\$"
tls_conf mismatch a.pem b.key
same_refusal mismatch 8 "\[listen.web\] key \"key\": $tmp/a.pem with $tmp/b.key: "
tls_conf not-a-cert a.key a.key
same_refusal not-a-cert 7 "\[listen.web\] key \"certificate\": $tmp/a.key: "
tls_conf missing-ca a.pem a.key 'client-ca = nowhere.pem\n'
same_refusal missing-ca 9 "\[listen.web\] key \"client-ca\": $tmp/nowhere.pem: No such file or directory\$"
# TLS asked for, and no tls plugin to serve it.
tls_conf no-tls-plugin a.pem a.key
sed -i 's/^load = tcp tls$/load = tcp/' "$tmp/no-tls-plugin.conf"
same_refusal no-tls-plugin 6 '\[listen.web\] key "tls": tls: .*no such protocol'

# `paf plugins --config` exits 2 on a configuration error, naming FILE:LINE.
if out=$("$PAF_BIN" plugins --config "$tmp/unknown-key.conf" 2>&1); then
        fail "paf plugins accepted a bad config"
else
        [ $? -eq 2 ] || fail "paf plugins: wrong exit code for a bad config"
fi
echo "$out" | grep -q "unknown-key.conf:3: " || fail "paf plugins: no FILE:LINE: $out"
echo "all paf config checks passed"
