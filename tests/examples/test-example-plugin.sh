#!/bin/sh
# The example third-party plugin builds out of tree with only `pkg-config paf`
# (the uninstalled paf.pc), loads through PAF_PLUGIN_PATH, and works.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"

PKG_CONFIG_PATH=$PAF_TEST_BUILDDIR/pkgconfig/uninstalled \
        make -s -C "$PAF_TEST_SRCDIR/examples/plugin" O="$tmp" >"$tmp/make.log" 2>&1 ||
        { cat "$tmp/make.log" >&2; fail "example plugin did not build"; }
[ -f "$tmp/loop.so" ] || fail "no loop.so"
grep -q -- "-I$PAF_TEST_SRCDIR/include" "$tmp/make.log" 2>/dev/null ||
        PKG_CONFIG_PATH=$PAF_TEST_BUILDDIR/pkgconfig/uninstalled pkg-config --cflags paf |
        grep -q -- "-I$PAF_TEST_SRCDIR/include" || fail "paf.pc does not point at the headers"
[ "$(PKG_CONFIG_PATH=$PAF_TEST_BUILDDIR/pkgconfig/uninstalled pkg-config --variable=pluginsdir paf)" = \
  "$PAF_TEST_BUILDDIR/plugins" ] || fail "pluginsdir variable is wrong"

out=$(PAF_PLUGIN_PATH="$tmp" "$PAF_BIN" plugins) || fail "paf plugins failed: $out"
echo "$out"
echo "$out" | grep -E "^loop +1\.0\.0 +loop +$tmp/loop\.so$" >/dev/null ||
        fail "loop plugin not listed with its version, protocol and file"
# Its own URL scheme, registered by the plugin, not known to the core.
echo "$out" | grep -E "^  scheme +\+loop +loop$" >/dev/null || fail "loop's scheme +loop not listed"

# paf get takes http+loop:// URLs: the loop transport itself answers (no
# server in this process), where the core once said "unknown scheme".
set +e
PAF_PLUGIN_PATH="$tmp" "$PAF_BIN" get http+loop://nobody/x >"$tmp/get.out" 2>"$tmp/get.err"
rc=$?
set -e
cat "$tmp/get.err"
[ $rc -eq 7 ] || fail "paf get http+loop://nobody/x: exit $rc, not 7 (connection failed)"
grep -q "nothing listens on loop:nobody" "$tmp/get.err" || fail "paf get http+loop: not the loop's error"
grep -qi "unknown scheme" "$tmp/get.err" && fail "paf get http+loop: unknown scheme"

PAF_PLUGIN_PATH="$tmp" "$PAF_TEST_LOOP_BIN"
