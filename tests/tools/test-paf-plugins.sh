#!/bin/sh
# `paf plugins` lists loaded plugins and refused ones, each refusal naming the
# file and its own reason, while good plugins next to them load; it exits 1
# only when a plugin the config asks for was refused.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
mkdir -m 0755 "$tmp/p" "$tmp/ww"

# The real plugins alone.
out=$(PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR "$PAF_BIN" plugins) || fail "paf plugins failed: $out"
echo "$out"
echo "$out" | grep -E "^tcp +[0-9.]+ +tcp +$PAF_TEST_PLUGINDIR/tcp\.so$" >/dev/null || fail "tcp not listed"
echo "$out" | grep -E "^unix +[0-9.]+ +unix +$PAF_TEST_PLUGINDIR/unix\.so$" >/dev/null || fail "unix not listed"
echo "$out" | grep -q "refused" && fail "nothing should be refused"
# Each plugin's URL schemes, as the plugin registered them, and its options.
# The section of a plugin: from its "NAME: description" line to the next blank one.
section() { echo "$out" | sed -n "/^$1: /,/^\$/p"; }
expect_line() { # PLUGIN REGEX WHAT
        section "$1" | grep -E "$2" >/dev/null || fail "$1: $3 not listed: $(section "$1")"
}
expect_line tcp "^  scheme +http +tcp, port 80, host names$" "scheme http"
expect_line tcp "^  scheme +https +tcp, port 443, host names$" "scheme https"
expect_line unix "^  scheme +\+unix +unix$" "scheme +unix"
expect_line vsock "^  scheme +\+vsock +vsock, port 80$" "scheme +vsock"
expect_line tls "^  scheme +https +layer tls$" "layer https"
expect_line tls "^  option +handshake-timeout +integer +default 10, 1-3600$" "option handshake-timeout"
expect_line tcp "^  option +\(none\)$" "no option"
section tls | grep -q "Seconds a TLS handshake" && fail "tls: option help shown without -v"
out=$(PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR "$PAF_BIN" plugins -v) || fail "paf plugins -v failed: $out"
expect_line tls "^ +Seconds a TLS handshake may take" "help of handshake-timeout with -v"

# Good and broken plugins side by side.
cp "$PAF_TEST_FIXTUREDIR"/*.so "$tmp/p/"
printf 'this is not a shared object\n' >"$tmp/p/text.so"
cp "$PAF_TEST_FIXTUREDIR/good.so" "$tmp/ww/writable.so"
chmod o+w "$tmp/ww/writable.so"
out=$(PAF_PLUGIN_PATH="$tmp/p:$tmp/ww:$PAF_TEST_PLUGINDIR" "$PAF_BIN" plugins) ||
        fail "refusals of plugins nobody asked for must not fail the command: $out"
echo "$out"
expect_refused() {
        echo "$out" | grep -E "^$1 +$2: .*$3" >/dev/null || fail "$1: expected refusal \"$3\""
}
expect_refused abi-major "$tmp/p/abi-major.so" "ABI major 2"
expect_refused abi-minor "$tmp/p/abi-minor.so" "is newer than this host.s"
expect_refused no-descriptor "$tmp/p/no-descriptor.so" "no plugin descriptor"
expect_refused bad-name "$tmp/p/bad-name.so" "invalid plugin name"
expect_refused wrong-name "$tmp/p/wrong-name.so" "does not match the file name"
expect_refused init-fail "$tmp/p/init-fail.so" "init failed: Operation not permitted"
expect_refused undefined-symbol "$tmp/p/undefined-symbol.so" "undefined symbol"
expect_refused text "$tmp/p/text.so" "not an ELF file"
expect_refused writable "$tmp/ww/writable.so" "writable"
echo "$out" | grep -E "^good +1\.2\.3 +good " >/dev/null || fail "good plugin not loaded"
# A third party's plugin: its own scheme, and its options with their defaults.
expect_line pipe "^  scheme +\+pipe +pipe, port 7, host names$" "scheme +pipe"
expect_line good "^  scheme +\(none\)$" "no scheme"
expect_line good "^  option +greeting +string +default hi$" "option greeting"
expect_line good "^  option +count +integer +no default$" "option count"
echo "$out" | grep -E "^tcp +" >/dev/null || fail "tcp not loaded next to broken plugins"
# Every reason is different.
n=$(echo "$out" | sed -n '/^refused:/,$p' | grep -c .)
u=$(echo "$out" | sed -n '/^refused:/,$p' | sed 's/^[^ ]* *[^ ]*: //' | sort -u | grep -c .)
[ "$n" = "$u" ] || fail "refusal reasons are not distinct"

# A refused plugin that the config asks for makes the command exit 1.
printf '[paf]\nload = tcp abi-major\n' >"$tmp/asks.conf"
set +e
out=$(PAF_PLUGIN_PATH="$tmp/p:$PAF_TEST_PLUGINDIR" "$PAF_BIN" plugins --config "$tmp/asks.conf")
rc=$?
set -e
echo "$out"
[ $rc -eq 1 ] || fail "expected exit 1 when a requested plugin is refused, got $rc"
echo "$out" | grep -E "^abi-major .*ABI major 2.*\(requested\)" >/dev/null || fail "requested refusal not shown"
echo "$out" | grep -E "^tcp +" >/dev/null || fail "tcp not loaded"
echo "$out" | grep -E "^good +" >/dev/null && fail "load list not honoured: good was loaded"

# And only what it asks for is loaded when all is well.
printf '[paf]\nload = unix\n' >"$tmp/unix.conf"
out=$(PAF_PLUGIN_PATH="$tmp/p:$PAF_TEST_PLUGINDIR" "$PAF_BIN" plugins --config "$tmp/unix.conf") ||
        fail "load = unix failed: $out"
echo "$out" | grep -E "^unix +" >/dev/null || fail "unix not loaded"
echo "$out" | grep -E "^tcp +" >/dev/null && fail "tcp loaded though not asked for"
echo "all paf plugins checks passed"
