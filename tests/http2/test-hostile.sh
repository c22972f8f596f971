#!/bin/sh
# tests/http2/test-hostile.sh — HTTP/2 attacks on paf serve (hostile.py): rapid reset, server-provoked resets, a CONTINUATION flood, 1 MiB header lists, SETTINGS and PING floods that never read, a zero-window reader, a reader that stops reading; each while a normal client is answered within 1 s and the server's RSS stays within +64 MiB.
#
# Over h2c, then the floods and the zero-window reader again over TLS (whose
# layer buffers too). [http] write-timeout is 2 s here: the connections that
# never read or never open their window must be closed within it (+ slack).
#
# H2_PEER=nghttpd runs the cases against nghttpd, which is known to fail
# four of them (the check that those cases can fail, and that the others
# are right): continuation-flood (libnghttp2 stops the flood but nghttpd
# closes without GOAWAY), made-you-reset (libnghttp2 1.52 counts no
# server-sent resets), zero-window and stalled-reader (nghttpd has no
# write timeout).
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http2/lib.sh"
have_tls=1
if [ "$H2_PEER" = paf ] && [ ! -f "$PAF_TEST_PLUGINDIR/tls.so" ]; then
        echo "no tls.so in $PAF_TEST_PLUGINDIR: the TLS runs left out"
        have_tls=
fi
if [ -n "$have_tls" ]; then
        make_certs
fi
# Many connections from the prober, for the server and for us.
# shellcheck disable=SC3045 # dash and bash both have ulimit -n
ulimit -n 4096 2>/dev/null || true

write_timeout=2
tls_cases="settings-flood ping-flood zero-window stalled-reader"

# hostile NAME PID [--tls] ADDRESS CASES…: runs hostile.py; its output in
# $tmp/NAME.out, and the names of the failed cases in $failed.
hostile() {
        name=$1 server_pid=$2
        shift 2
        echo "---- $name"
        tls_opt=
        if [ "$1" = --tls ]; then
                tls_opt=--tls
                shift
        fi
        address=$1
        shift
        rc=0
        $py "$here/hostile.py" $tls_opt --pid "$server_pid" --write-timeout $write_timeout \
                "$address" /hello.txt /big.bin "$@" >"$tmp/$name.out" 2>&1 || rc=$?
        cat "$tmp/$name.out"
        failed=$(sed -n 's/^\([a-z-]*\) *FAIL.*/\1/p' "$tmp/$name.out" | tr '\n' ' ' | sed 's/ $//')
        grep -q '^[0-9]* passed, [0-9]* failed$' "$tmp/$name.out" || fail "$name: hostile.py broke (status $rc)"
}

if [ "$H2_PEER" = nghttpd ]; then
        start_nghttpd h2c h2c
        hostile h2c "$pid" "127.0.0.1:$port" all
        expected="made-you-reset continuation-flood zero-window stalled-reader"
        [ "$failed" = "$expected" ] ||
                fail "nghttpd: failed '$failed', expected exactly '$expected'"
        ok "nghttpd fails exactly the cases it is known to fail: $failed"
else
        printf '[http]\nwrite-timeout = %d\n' $write_timeout >"$tmp/hostile.conf"
        set -- --listen 127.0.0.1:0
        n=1
        if [ -n "$have_tls" ]; then
                set -- "$@" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" --key "$certs/srv.key"
                n=2
        fi
        start_paf main $n --quiet --config "$tmp/hostile.conf" --root "$root" "$@"
        main_pid=$pid
        speaks_h2c "$tcp" ||
                fail "paf serve does not answer the HTTP/2 preface with SETTINGS on its plain listener (no h2c)"
        all_failed=
        hostile h2c "$main_pid" "$tcp" all
        all_failed="$failed"
        if [ -n "$have_tls" ]; then
                # shellcheck disable=SC2086 # case names
                hostile tls "$main_pid" --tls "$tls" $tls_cases
                all_failed="$all_failed${failed:+ tls:}$(echo "$failed" | sed 's/ / tls:/g')"
        fi
        kill -0 "$main_pid" 2>/dev/null || fail "paf serve died"
        [ -z "$all_failed" ] || fail "failed cases: $all_failed"
        out=$(curl -sS --max-time 5 --http2-prior-knowledge "http://$tcp/hello.txt") ||
                fail "GET /hello.txt after the attacks"
        [ "$out" = "hello, h2" ] || fail "GET /hello.txt after the attacks: '$out'"
        stop_pid "$main_pid" main
        ok "every attack: the normal client answered, memory bounded, the attacker stopped"
fi
echo "$n_checks passed, 0 failed"
