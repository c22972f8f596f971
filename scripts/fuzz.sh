#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan+UBSan, libpaf and the plugins instrumented for
# coverage) in build-fuzz and runs each one; fails on any crash, leak or sanitizer report.
#
#   scripts/fuzz.sh [--time SECS] [--jobs N] [--build-only] [HARNESS…]
#
# --time SECS   per harness (default: $PAF_FUZZ_SECONDS, else 5)
# --jobs N      processes per harness sharing its corpus (default 1)
# HARNESS       http-server, http-client, conf, url, tls-server (default: all)
# The grown corpus is kept in build-fuzz/fuzz-corpus/HARNESS (seeds: tests/fuzz/corpus/HARNESS);
# logs and crashing inputs go to build-fuzz/fuzz-out/HARNESS. Prints the executions per harness.
# PAF_FUZZ_FLAGS adds libFuzzer flags.
set -uo pipefail
cd "$(dirname "$0")/.."

dir=${PAF_FUZZ_BUILDDIR:-build-fuzz}
secs=${PAF_FUZZ_SECONDS:-5}
jobs=1
build_only=false
all=(http-server http-client conf url tls-server)
harnesses=()
while [ $# -gt 0 ]; do
        case $1 in
        --time) secs=${2:?--time needs seconds}; shift 2 ;;
        --jobs) jobs=${2:?--jobs needs a number}; shift 2 ;;
        --build-only) build_only=true; shift ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) harnesses+=("$1"); shift ;;
        esac
done
[ ${#harnesses[@]} -gt 0 ] || harnesses=("${all[@]}")
for h in "${harnesses[@]}"; do
        [ -d "tests/fuzz/corpus/$h" ] || { echo "fuzz.sh: no harness \"$h\" (${all[*]})" >&2; exit 2; }
done

command -v clang >/dev/null || { echo "fuzz.sh: clang is needed (scripts/deps.sh installs it)" >&2; exit 1; }
if [ ! -f "$dir/build.ninja" ]; then
        # fuzzer-no-link: coverage for libpaf, llhttp and the plugins, which the harnesses
        # reach through the shared library and dlopen.
        CC=clang meson setup "$dir" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
                -Dc_args=-fsanitize=fuzzer-no-link >"$dir.setup.log" 2>&1 ||
                { cat "$dir.setup.log" >&2; exit 1; }
        rm -f "$dir.setup.log"
elif ! grep -q '"name": "fuzz", "value": true' "$dir/meson-info/intro-buildoptions.json" 2>/dev/null; then
        meson configure "$dir" -Dfuzz=true >/dev/null || exit 1
fi
targets=()
for h in "${all[@]}"; do targets+=("tests/fuzz/fuzz-$h"); done
meson compile -C "$dir" "${targets[@]}" plugins/tcp plugins/unix plugins/tls plugins/vsock >/dev/null ||
        meson compile -C "$dir" "${targets[@]}" plugins/tcp plugins/unix plugins/tls plugins/vsock ||
        exit 1
$build_only && exit 0

status=0 total=0
for h in "${harnesses[@]}"; do
        mkdir -p "$dir/fuzz-corpus/$h"
        line=$(PAF_FUZZ_SECONDS=$secs PAF_FUZZ_JOBS=$jobs PAF_FUZZ_CORPUS=$dir/fuzz-corpus/$h \
                PAF_FUZZ_OUT=$dir/fuzz-out PAF_PLUGIN_PATH= \
                tests/fuzz/run-fuzz.sh "$h" "$dir/tests/fuzz/fuzz-$h" "tests/fuzz/corpus/$h")
        rc=$?
        echo "$line"
        [ $rc -eq 0 ] || status=1
        n=$(echo "$line" | sed -n 's/^fuzz [^:]*: \([0-9]*\) executions.*/\1/p' | tail -n 1)
        total=$((total + ${n:-0}))
done
echo "fuzz: $total executions in all, $([ $status -eq 0 ] && echo "no crash" || echo "FAILED")"
exit $status
