#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: once plainly, once
# under AddressSanitizer + UndefinedBehaviorSanitizer, and the unit suites
# once more under valgrind. Ends with one summary line.
set -uo pipefail
cd "$(dirname "$0")"
scripts/deps.sh || exit 1

passed=0 failed=0 skipped=0
status=0

# run_suite NAME DIR [meson test options…]
run_suite() {
        local name=$1 dir=$2
        shift 2
        echo "=== $name"
        meson test -C "$dir" --print-errorlogs "$@"
        local rc=$?
        [ $rc -eq 0 ] || status=1
        # meson names the log after the setup: testlog-valgrind.json …
        local log
        log=$(ls -t "$dir"/meson-logs/testlog*.json 2>/dev/null | head -n 1)
        if [ -n "$log" ] && [ -f "$log" ]; then
                read -r p f s < <("$(command -v /usr/bin/python3 || command -v python3)" - "$log" <<'PY'
import json, sys
p = f = s = 0
for line in open(sys.argv[1]):
    r = json.loads(line).get("result")
    if r in ("OK", "EXPECTEDFAIL"): p += 1
    elif r == "SKIP": s += 1
    else: f += 1
print(p, f, s)
PY
)
                passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
        fi
}

if scripts/build.sh build; then
        run_suite "tests" build
else
        echo "build failed" >&2
        status=1 failed=$((failed + 1))
fi

if scripts/build.sh build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
        run_suite "tests under ASan+UBSan" build-asan
else
        echo "sanitizer build failed" >&2
        status=1 failed=$((failed + 1))
fi

if [ -f build/build.ninja ]; then
        run_suite "unit tests under valgrind" build --setup=valgrind --suite=unit
fi

# libFuzzer harnesses (clang, in build-fuzz): each runs PAF_FUZZ_SECONDS (default 5) and
# fails on any crash, leak or sanitizer report. Longer campaigns: scripts/fuzz.sh --time SECS.
if scripts/fuzz.sh --build-only; then
        # fuzz.sh built what the suite runs; the rest of build-fuzz is not needed.
        run_suite "fuzz harnesses (${PAF_FUZZ_SECONDS:-5} s each)" build-fuzz --suite=fuzz --no-rebuild
else
        echo "fuzz build failed" >&2
        status=1 failed=$((failed + 1))
fi

echo "summary: $passed passed, $failed failed, $skipped skipped"
exit $status
