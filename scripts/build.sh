#!/usr/bin/env bash
# Configures (once) and builds a build directory: scripts/build.sh DIR [meson options…]
set -euo pipefail
dir=$1
shift
if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" >/dev/null
fi
meson compile -C "$dir" >/dev/null || meson compile -C "$dir"
