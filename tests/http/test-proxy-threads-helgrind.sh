#!/bin/sh
# tests/http/test-proxy-threads-helgrind.sh — the unit test http-proxy-threads (proxy protocols registered while other threads resolve on the same registry) under valgrind's helgrind: a race on the registry's protocol table is reported whatever the interleaving, where a plain or ASan run catches it only when the threads happen to collide.
set -eu
command -v valgrind >/dev/null 2>&1 || { echo "valgrind not found: skipping"; exit 77; }
bin="$PAF_TEST_BUILDDIR/tests/test-http-proxy-threads"
[ -x "$bin" ] || { echo "$bin: not built"; exit 1; }
# Sanitizer builds do not run under valgrind.
if nm -D "$bin" 2>/dev/null | grep -q __asan_init; then
        echo "an ASan build: skipping (the unit test itself runs under ASan)"
        exit 77
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
PAF_TEST_VALGRIND=1 timeout 240 valgrind --tool=helgrind --error-exitcode=99 \
        --suppressions="$PAF_TEST_SRCDIR/tests/http/helgrind.supp" "$bin" >"$log" 2>&1 || rc=$?
if [ $rc != 0 ]; then
        grep -B2 -A24 "Possible data race\|lock order" "$log" | head -n 120 >&2 || tail -n 40 "$log" >&2
        echo "FAIL: helgrind exit $rc" >&2
        exit 1
fi
grep -q "PASSED" "$log" || { tail -n 20 "$log" >&2; echo "FAIL: the test did not pass" >&2; exit 1; }
echo "ok: no race reported by helgrind"
