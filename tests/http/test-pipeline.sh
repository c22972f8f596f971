#!/bin/sh
# tests/http/test-pipeline.sh — coalesced pipelining in `paf serve`: 16 GETs
# of 4 KiB files sent in one write are answered in order, byte-exact, and
# (with strace) the answers leave in one write call or a few, not one each.
set -eu
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http/lib.sh"
here=$PAF_TEST_SRCDIR/tests/http

serve_pid=
strace_pid=
cleanup_all() {
        for p in $strace_pid $serve_pid; do
                kill "$p" 2>/dev/null || true
        done
        cleanup
}
trap cleanup_all EXIT

n=16
root=$tmp/root
mkdir "$root"
i=0
while [ $i -lt $n ]; do
        head -c 4096 /dev/urandom >"$root/f$i"
        i=$((i + 1))
done

: >"$tmp/serve.err"
"$PAF_BIN" serve --quiet --workers 1 --listen 127.0.0.1:0 --root "$root" 2>>"$tmp/serve.err" &
serve_pid=$!
i=0
while ! grep -q 'listening on' "$tmp/serve.err"; do
        kill -0 "$serve_pid" 2>/dev/null || fail "paf serve exited: $(cat "$tmp/serve.err")"
        i=$((i + 1))
        [ $i -le 400 ] || fail "paf serve did not start"
        sleep 0.05
done
addr=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/serve.err")
echo "paf serve $serve_pid on $addr"

if command -v strace >/dev/null 2>&1 &&
        strace -qq -e trace=none -o /dev/null true 2>/dev/null; then
        strace -f -qq -e trace=sendmsg,writev,sendto,write -o "$tmp/trace" -p "$serve_pid" \
                2>"$tmp/strace.err" &
        strace_pid=$!
        python3 "$here/pipeline_batch.py" "$addr" "$root" $n "$tmp/trace" >"$tmp/out" ||
                { cat "$tmp/out"; fail "pipelined batch"; }
        kill "$strace_pid"
        wait "$strace_pid" 2>/dev/null || true
        strace_pid=
        cat "$tmp/out"
        writes=$(sed -n 's/^writes //p' "$tmp/out")
        # One sendmsg carries all 16 answers (68 KiB); a partial send may
        # take another or two. One each (16) is what this test rules out.
        [ "$writes" -ge 1 ] && [ "$writes" -le 3 ] ||
                fail "the $n answers took $writes write calls (want 1 to 3)"
        echo "ok: $n pipelined answers in $writes write call(s)"
else
        echo "no usable strace: the answers' order and bytes only"
        python3 "$here/pipeline_batch.py" "$addr" "$root" $n || fail "pipelined batch"
fi

kill -TERM "$serve_pid"
i=0
while kill -0 "$serve_pid" 2>/dev/null &&
        [ "$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$serve_pid/status" 2>/dev/null)" != Z ]; do
        i=$((i + 1))
        [ $i -le 200 ] || fail "paf serve did not exit within 10 s of SIGTERM"
        sleep 0.05
done
rc=0
wait "$serve_pid" || rc=$?
serve_pid=
[ $rc = 0 ] || fail "paf serve exited with status $rc"
