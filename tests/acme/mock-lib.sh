# tests/acme/mock-lib.sh — sourced by the tests that run tests/acme/mock-acme.py: start and stop it on free loopback ports, and query its request log.
# Needs: $tmp (the test's directory), fail() and free_port (tests/acme/pebble.sh).

mock_pid=

# mock_start [mock flags…]: a new mock on free ports; sets ACME_URL, MGMT, HTTP_PORT, TLS_PORT.
mock_start() {
        mock_stop
        HTTP_PORT=$(free_port)
        TLS_PORT=$(free_port)
        rm -f "$tmp/ready" "$tmp/log"
        python3 "$here/mock-acme.py" --http-port "$HTTP_PORT" --tls-port "$TLS_PORT" \
                --tls-ca-out "$tmp/ca.pem" --root-out "$tmp/root.pem" \
                --alt-roots-out "$tmp/alt-roots.pem" --ready-file "$tmp/ready" --log "$tmp/log" \
                "$@" >"$tmp/mock.out" 2>"$tmp/mock.err" &
        mock_pid=$!
        i=0
        while [ ! -s "$tmp/ready" ]; do
                i=$((i + 1))
                [ $i -lt 100 ] || fail "mock-acme.py did not start"
                kill -0 "$mock_pid" 2>/dev/null || fail "mock-acme.py exited"
                sleep 0.1
        done
        set -- $(cat "$tmp/ready")
        ACME_URL=https://127.0.0.1:$2/dir
        MGMT=http://127.0.0.1:$3
}
mock_stop() {
        if [ -n "$mock_pid" ]; then
                kill "$mock_pid" 2>/dev/null || true
                wait "$mock_pid" 2>/dev/null || true
                mock_pid=
        fi
}

# log_query PYTHON-EXPR: evaluated with L, the request lines of the mock's log (dicts).
log_query() {
        python3 - "$tmp/log" "$1" <<'EOF'
import json, sys
L = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
L = [l for l in L if 'method' in l]
print(eval(sys.argv[2]))
EOF
}

