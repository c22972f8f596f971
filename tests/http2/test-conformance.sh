#!/bin/sh
# tests/http2/test-conformance.sh — the frame-level cases of conformance.py (RFC 9113, RFC 7541) against paf serve: h2c over TCP and a unix socket, h2 over TLS by ALPN, and the flow-control cases again under a small [http2] initial-window.
#
# H2_PEER=nghttpd runs the same cases against nghttpd (h2c and TLS), which
# passes them all: the check that the cases themselves are right.
# shellcheck source=lib.sh
. "$PAF_TEST_SRCDIR/tests/http2/lib.sh"
have_tls=1
if [ "$H2_PEER" = paf ] && [ ! -f "$PAF_TEST_PLUGINDIR/tls.so" ]; then
        echo "no tls.so in $PAF_TEST_PLUGINDIR: h2 over TLS left out"
        have_tls=
fi
if [ -n "$have_tls" ]; then
        make_certs
fi

# conformance NAME [--tls] [--only IDS] ADDRESS: every case must pass; with
# --only, none may be skipped either.
n_fail=0
conformance() {
        name=$1
        shift
        echo "---- $name"
        rc=0
        $py "$here/conformance.py" "$@" /data.bin "$root/data.bin" >"$tmp/conf.out" 2>&1 || rc=$?
        cat "$tmp/conf.out"
        if [ $rc != 0 ]; then
                echo "FAIL: $name: $(grep -c '^[^ ]* *FAIL' "$tmp/conf.out") cases failed" >&2
                n_fail=$((n_fail + 1))
                return 0
        fi
        case "$*" in
        *--only*)
                if grep -q ' SKIP' "$tmp/conf.out"; then
                        echo "FAIL: $name: a case meant to run was skipped" >&2
                        n_fail=$((n_fail + 1))
                        return 0
                fi
                ;;
        esac
        ok "$name: $(tail -n 1 "$tmp/conf.out")"
}

# The cases that need the server's initial window below one frame (16384).
small_window_cases=6.9.1/4,4.2/1,6.1/4

if [ "$H2_PEER" = nghttpd ]; then
        start_nghttpd h2c h2c
        conformance h2c "127.0.0.1:$port"
        start_nghttpd tls tls
        conformance tls --tls "127.0.0.1:$port"
        # -w 10: a stream window of 2^10.
        start_nghttpd small h2c -w 10
        conformance small-window --only $small_window_cases "127.0.0.1:$port"
else
        set -- --listen 127.0.0.1:0 --listen "$tmp/h2c.sock"
        n=2
        if [ -n "$have_tls" ]; then
                set -- "$@" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" --key "$certs/srv.key"
                n=3
        fi
        start_paf main $n --quiet --root "$root" "$@"
        main_pid=$pid
        speaks_h2c "$tcp" ||
                fail "paf serve does not answer the HTTP/2 preface with SETTINGS on its plain listener (no h2c)"
        conformance h2c "$tcp"
        conformance h2c-unix "$unix"
        if [ -n "$have_tls" ]; then
                conformance tls --tls "$tls"
        fi
        printf '[http2]\ninitial-window = 1024\n' >"$tmp/small.conf"
        start_paf small 1 --quiet --config "$tmp/small.conf" --root "$root" --listen 127.0.0.1:0
        small_pid=$pid
        conformance small-window --only $small_window_cases "$tcp"
        kill -0 "$main_pid" 2>/dev/null || fail "paf serve died during the cases"
        stop_pid "$main_pid" main
        stop_pid "$small_pid" small
fi
[ $n_fail = 0 ] || fail "$n_fail runs had failing cases (above)"
echo "$n_checks passed, 0 failed"
