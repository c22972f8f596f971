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

# `paf plugins --config` exits 2 on a configuration error, naming FILE:LINE.
if out=$("$PAF_BIN" plugins --config "$tmp/unknown-key.conf" 2>&1); then
        fail "paf plugins accepted a bad config"
else
        [ $? -eq 2 ] || fail "paf plugins: wrong exit code for a bad config"
fi
echo "$out" | grep -q "unknown-key.conf:3: " || fail "paf plugins: no FILE:LINE: $out"
echo "all paf config checks passed"
