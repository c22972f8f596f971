#!/usr/bin/env bash
# Regenerates the ABI baseline (abi/) from a build: scripts/abi-baseline.sh [BUILDDIR]
# (default: build). Records libpaf (abi/libpaf.abi), the plugin headers (abi/plugin.abi,
# through tests/abi/plugin-abi.c) and which ABI they are (abi/VERSION). The meson test
# "abi" then checks every build against it. Commit abi/ with the change it records; an
# incompatible one also needs PAF_ABI_MAJOR and the soversion raised in the same commit.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
scripts/build.sh "$dir"
lib=$(find "$dir/core" -maxdepth 1 -name 'libpaf.so.*.*.*' -type f | head -n 1)
probe=$dir/tests/libpaf-plugin-abi.so
[ -n "$lib" ] || { echo "abi-baseline: no libpaf in $dir/core" >&2; exit 1; }
[ -f "$probe" ] || { echo "abi-baseline: no $probe (configured with -Dtests=false?)" >&2; exit 1; }
readelf -S "$lib" | grep -q '\.debug_info' ||
        { echo "abi-baseline: $lib has no debug info: use a debugoptimized or debug build" >&2; exit 1; }

major=$(sed -n 's/^#define PAF_ABI_MAJOR \([0-9]*\).*/\1/p' include/paf/plugin.h)
minor=$(sed -n 's/^#define PAF_ABI_MINOR \([0-9]*\).*/\1/p' include/paf/plugin.h)
so=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*libpaf\.so\.\([0-9]*\)\].*/\1/p')
[ -n "$major" ] && [ -n "$minor" ] && [ -n "$so" ] ||
        { echo "abi-baseline: cannot read the ABI version or the soname" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p abi "$tmp/old" "$tmp/new"
cp abi/*.abi abi/VERSION "$tmp/old/" 2>/dev/null || true
scripts/abi-check.sh dump "$lib" include/paf "$tmp/new/libpaf.abi"
scripts/abi-check.sh dump "$probe" include/paf "$tmp/new/plugin.abi"
{
        echo "# The ABI that libpaf.abi and plugin.abi record; written by scripts/abi-baseline.sh."
        echo "abi $major.$minor"
        echo "soversion $so"
} >"$tmp/new/VERSION"
cp "$tmp/new/libpaf.abi" "$tmp/new/plugin.abi" "$tmp/new/VERSION" abi/
echo "abi-baseline: abi/ now records ABI $major.$minor, soversion $so, from $lib"

if [ -f "$tmp/old/VERSION" ]; then
        if ! out=$(scripts/abi-check.sh bump "$tmp/old" abi include/paf); then
                echo "$out"
                echo "abi-baseline: written, but the ABI test will refuse it as it is" >&2
                exit 1
        fi
        echo "$out" | grep -v '^$' || true
fi
