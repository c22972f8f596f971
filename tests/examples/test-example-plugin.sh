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

PAF_PLUGIN_PATH="$tmp" "$PAF_TEST_LOOP_BIN"
