# tests/acme/pebble.sh — sourced by the ACME tests and bench/acme.sh: Debian's pebble 2.4 and pebble-challtestsrv, on loopback, started and stopped by pid.
#
#   pebble_start [--nonce-reject N] [--authz-reuse N] [--validity SECS]
#                [--http-port P] [--tls-port P] [--eab KID:B64URLKEY]…
#                [--chain-length N] [--alternate-roots N]
#                        start challtestsrv and pebble in a new $PEBBLE_WORK;
#                        returns once /dir answers and the root is fetched
#   pebble_stop          stop both (SIGTERM, then SIGKILL after 5 s) and reap
#   pebble_cleanup       pebble_stop, then remove $PEBBLE_WORK; never fails,
#                        may run twice: meant for `trap … EXIT`
#   pebble_cert_status SERIAL_HEX [--json]
#                        "Valid" or "Revoked" (or the JSON document)
#   pebble_count_orders  new orders pebble logged since its start
#   pebble_count_validations
#                        challenge validations pebble's VA started
#   pebble_issued_serials
#                        serials pebble issued, hex, one per line
#   pebble_verify_chain FILE
#                        0 only if certtool verifies FILE's chain to $PEBBLE_ROOT
#   cert_serial FILE     the first certificate's serial, hex, as pebble wants it
#   challtest_set_a NAME IP, challtest_clear_a NAME
#                        what challtestsrv's DNS answers for NAME (A records);
#                        every other name is 127.0.0.1, and no name has AAAA
#   free_port            a TCP port on 127.0.0.1 that is free right now
#   pebble_eab_key       a random HMAC key, base64url, for --eab
#
# After pebble_start: PEBBLE_DIR_URL (https://127.0.0.1:P/dir), PEBBLE_CA
# (verifies pebble's HTTPS, both ACME and management), PEBBLE_ROOT (this run's
# issuing root: a new one on every start), PEBBLE_INTERMEDIATE, PEBBLE_MGMT,
# PEBBLE_HTTP_PORT and PEBBLE_TLS_PORT (where pebble's VA connects for
# http-01 and tls-alpn-01: paf listens there), PEBBLE_LOG (pebble's stdout and
# stderr), CHALLTEST_MGMT (http://127.0.0.1:P), CHALLTEST_LOG, PEBBLE_PID,
# CHALLTEST_PID; with --eab, PEBBLE_EAB_KID and PEBBLE_EAB_KEY (the first).
#
# Call pebble_start in the test's own shell, not in $(…) or a subshell: the
# daemons are its children (so `wait` reaps them), and they get SIGKILL when
# that shell dies, even by SIGKILL (setpriv --pdeathsig), so a test killed by
# meson's timeout leaves nothing behind. A test that traps EXIT should also
# trap INT/TERM/HUP to `exit`, or the EXIT trap does not run on those.
#
# Plain POSIX sh: works sourced from dash (meson's `sh`) and from bash.
# Nothing here leaves loopback, and every wait is bounded in time.

# Set by pebble_start; empty before, so that a script under set -u may call
# pebble_cleanup (or anything else here) at any time.
PEBBLE_WORK='' PEBBLE_PID='' CHALLTEST_PID='' PEBBLE_DIR_URL='' PEBBLE_CA='' PEBBLE_ROOT=''
PEBBLE_INTERMEDIATE='' PEBBLE_MGMT='' PEBBLE_HTTP_PORT='' PEBBLE_TLS_PORT='' PEBBLE_LOG=''
CHALLTEST_MGMT='' CHALLTEST_LOG='' PEBBLE_EAB_KID='' PEBBLE_EAB_KEY=''

# free_ports N: N distinct ports, one per line, free on 127.0.0.1 for TCP and
# UDP (challtestsrv's DNS serves both) at the time of the call. All are held
# at once while choosing, so that no two are equal.
free_ports() {
        python3 - "$1" <<'EOF'
import socket, sys
held = []
while len(held) < int(sys.argv[1]):
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", port))
    except OSError:
        t.close()
        continue
    held += [(t, u)]
    print(port)
EOF
}

free_port() {
        free_ports 1
}

pebble_eab_key() {
        python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))'
}

_pebble_fail() {
        echo "pebble.sh: $*" >&2
        for _pf in "$PEBBLE_WORK/challtestsrv.log" "$PEBBLE_WORK/pebble.log"; do
                if [ -s "$_pf" ]; then
                        echo "--- $_pf (last 20 lines):" >&2
                        tail -n 20 "$_pf" >&2
                fi
        done
        pebble_stop
        return 1
}

# _pebble_gen_certs DIR: a CA and, signed by it, pebble's certificate for
# 127.0.0.1, ::1 and localhost (both its listeners use it).
_pebble_gen_certs() {
        for _pk in ca pebble; do
                certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --no-text \
                        --outfile "$1/$_pk.key" 2>/dev/null || return 1
        done
        printf '%s\n' 'cn = "paf tests: pebble TLS CA"' ca cert_signing_key \
                'expiration_days = 30' >"$1/ca.tmpl"
        certtool --generate-self-signed --load-privkey "$1/ca.key" --template "$1/ca.tmpl" \
                --no-text --outfile "$1/ca.pem" 2>/dev/null || return 1
        printf '%s\n' 'cn = "localhost"' 'dns_name = "localhost"' 'ip_address = "127.0.0.1"' \
                'ip_address = "::1"' tls_www_server signing_key 'expiration_days = 30' \
                >"$1/pebble.tmpl"
        certtool --generate-certificate --load-privkey "$1/pebble.key" \
                --load-ca-certificate "$1/ca.pem" --load-ca-privkey "$1/ca.key" \
                --template "$1/pebble.tmpl" --no-text --outfile "$1/pebble.pem" 2>/dev/null
}

# _pebble_get URL FILE: GET over pebble's HTTPS into FILE, 2 s at most.
_pebble_get() {
        curl -sf --max-time 2 --cacert "$PEBBLE_CA" -o "$2" "$1"
}

pebble_start() {
        if [ -n "$PEBBLE_PID$CHALLTEST_PID" ]; then
                echo "pebble.sh: pebble_start: already running (pid $PEBBLE_PID)" >&2
                return 1
        fi
        _nonce_reject=0 _authz_reuse=0 _validity='' _http_port='' _tls_port=''
        _eab_keys='' _chain_length='' _alternate_roots=''
        PEBBLE_EAB_KID='' PEBBLE_EAB_KEY=''
        while [ $# -gt 0 ]; do
                case $1 in
                --nonce-reject | --authz-reuse | --validity | --http-port | --tls-port | \
                        --eab | --chain-length | --alternate-roots)
                        [ $# -ge 2 ] || { echo "pebble.sh: pebble_start: $1 needs a value" >&2; return 1; }
                        ;;
                *) echo "pebble.sh: pebble_start: unknown option $1" >&2; return 1 ;;
                esac
                case $1 in
                --nonce-reject) _nonce_reject=$2 ;;
                --authz-reuse) _authz_reuse=$2 ;;
                --validity) _validity=$2 ;;
                --http-port) _http_port=$2 ;;
                --tls-port) _tls_port=$2 ;;
                --chain-length) _chain_length=$2 ;;
                --alternate-roots) _alternate_roots=$2 ;;
                --eab)
                        case $2 in
                        ?*:?*) ;;
                        *) echo "pebble.sh: pebble_start: --eab $2: not KID:KEY" >&2; return 1 ;;
                        esac
                        _eab_keys="$_eab_keys${_eab_keys:+, }\"${2%%:*}\": \"${2#*:}\""
                        if [ -z "$PEBBLE_EAB_KID" ]; then
                                PEBBLE_EAB_KID=${2%%:*} PEBBLE_EAB_KEY=${2#*:}
                        fi
                        ;;
                esac
                shift 2
        done
        for _pt in pebble pebble-challtestsrv certtool curl python3 setpriv; do
                command -v $_pt >/dev/null ||
                        { echo "pebble.sh: $_pt not found (scripts/deps.sh installs it)" >&2; return 1; }
        done

        PEBBLE_WORK=$(mktemp -d "${TMPDIR:-/tmp}/pebble.XXXXXX") || return 1
        _pebble_gen_certs "$PEBBLE_WORK" || _pebble_fail "certtool failed" || return 1
        PEBBLE_CA=$PEBBLE_WORK/ca.pem
        PEBBLE_ROOT=$PEBBLE_WORK/root.pem
        PEBBLE_INTERMEDIATE=$PEBBLE_WORK/intermediate.pem
        PEBBLE_LOG=$PEBBLE_WORK/pebble.log
        CHALLTEST_LOG=$PEBBLE_WORK/challtestsrv.log

        # Six ports, none of them one the caller gave for the VA.
        _ports=$(free_ports 8) || _pebble_fail "no free ports" || return 1
        _acme_port='' _mgmt_port='' _dns_port='' _ct_port=''
        for _p in $_ports; do
                case $_p in "$_http_port" | "$_tls_port") continue ;; esac
                if [ -z "$_acme_port" ]; then _acme_port=$_p
                elif [ -z "$_mgmt_port" ]; then _mgmt_port=$_p
                elif [ -z "$_dns_port" ]; then _dns_port=$_p
                elif [ -z "$_ct_port" ]; then _ct_port=$_p
                elif [ -z "$_http_port" ]; then _http_port=$_p
                elif [ -z "$_tls_port" ]; then _tls_port=$_p
                fi
        done
        [ -n "$_tls_port" ] || _pebble_fail "no free ports" || return 1
        PEBBLE_HTTP_PORT=$_http_port
        PEBBLE_TLS_PORT=$_tls_port
        PEBBLE_DIR_URL=https://127.0.0.1:$_acme_port/dir
        PEBBLE_MGMT=https://127.0.0.1:$_mgmt_port
        CHALLTEST_MGMT=http://127.0.0.1:$_ct_port

        {
                echo '{ "pebble": {'
                echo "  \"listenAddress\": \"127.0.0.1:$_acme_port\","
                echo "  \"managementListenAddress\": \"127.0.0.1:$_mgmt_port\","
                echo "  \"certificate\": \"$PEBBLE_WORK/pebble.pem\","
                echo "  \"privateKey\": \"$PEBBLE_WORK/pebble.key\","
                echo "  \"httpPort\": $_http_port,"
                echo "  \"tlsPort\": $_tls_port,"
                echo '  "ocspResponderURL": "",'
                [ -z "$_validity" ] || echo "  \"certificateValidityPeriod\": $_validity,"
                if [ -n "$_eab_keys" ]; then
                        echo "  \"externalAccountMACKeys\": { $_eab_keys },"
                        echo '  "externalAccountBindingRequired": true'
                else
                        echo '  "externalAccountBindingRequired": false'
                fi
                echo '} }'
        } >"$PEBBLE_WORK/pebble.json"

        # DNS for every name: A 127.0.0.1, and no AAAA, since pebble's VA dials
        # the first address of the AAAA answer first and paf listens on IPv4.
        # Its own challenge servers stay off: paf answers the challenges.
        setpriv --pdeathsig KILL pebble-challtestsrv -management "127.0.0.1:$_ct_port" \
                -dns01 "127.0.0.1:$_dns_port" -http01 "" -https01 "" -tlsalpn01 "" \
                -defaultIPv4 127.0.0.1 -defaultIPv6 "" >"$CHALLTEST_LOG" 2>&1 &
        CHALLTEST_PID=$!

        # No random VA sleeps; no badNonce and no authz reuse unless asked.
        env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT="$_nonce_reject" \
                PEBBLE_AUTHZREUSE="$_authz_reuse" \
                ${_chain_length:+PEBBLE_CHAIN_LENGTH=$_chain_length} \
                ${_alternate_roots:+PEBBLE_ALTERNATE_ROOTS=$_alternate_roots} \
                setpriv --pdeathsig KILL pebble -config "$PEBBLE_WORK/pebble.json" \
                -dnsserver "127.0.0.1:$_dns_port" >"$PEBBLE_LOG" 2>&1 &
        PEBBLE_PID=$!

        # Both up within 10 s: pebble answers /dir, challtestsrv its API.
        _i=0
        until _pebble_get "$PEBBLE_DIR_URL" "$PEBBLE_WORK/dir.json" &&
                curl -s --max-time 2 -o /dev/null "$CHALLTEST_MGMT/"; do
                kill -0 "$PEBBLE_PID" 2>/dev/null || _pebble_fail "pebble exited at start" || return 1
                kill -0 "$CHALLTEST_PID" 2>/dev/null ||
                        _pebble_fail "pebble-challtestsrv exited at start" || return 1
                _i=$((_i + 1))
                [ $_i -le 100 ] || _pebble_fail "pebble did not answer $PEBBLE_DIR_URL in 10 s" || return 1
                sleep 0.1
        done
        _pebble_get "$PEBBLE_MGMT/roots/0" "$PEBBLE_ROOT" &&
                _pebble_get "$PEBBLE_MGMT/intermediates/0" "$PEBBLE_INTERMEDIATE" ||
                _pebble_fail "could not fetch the root from $PEBBLE_MGMT/roots/0" || return 1
        export PEBBLE_WORK PEBBLE_DIR_URL PEBBLE_CA PEBBLE_ROOT PEBBLE_INTERMEDIATE PEBBLE_MGMT \
                PEBBLE_HTTP_PORT PEBBLE_TLS_PORT PEBBLE_LOG CHALLTEST_MGMT CHALLTEST_LOG \
                PEBBLE_PID CHALLTEST_PID PEBBLE_EAB_KID PEBBLE_EAB_KEY
}

# _pebble_kill PID: SIGTERM, up to 5 s, then SIGKILL; reaps it if it is ours.
_pebble_kill() {
        # Under set -e too: wait returns the daemon's status, 143 after SIGTERM.
        kill "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }
        _k=0
        while kill -0 "$1" 2>/dev/null; do
                # A zombie still answers kill -0.
                _st=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$1/status" 2>/dev/null || true)
                [ "$_st" = Z ] && break
                _k=$((_k + 1))
                if [ $_k -gt 50 ]; then
                        kill -KILL "$1" 2>/dev/null || true
                        break
                fi
                sleep 0.1
        done
        wait "$1" 2>/dev/null || true
        return 0
}

pebble_stop() {
        [ -z "$PEBBLE_PID" ] || _pebble_kill "$PEBBLE_PID"
        [ -z "$CHALLTEST_PID" ] || _pebble_kill "$CHALLTEST_PID"
        PEBBLE_PID='' CHALLTEST_PID=''
        return 0
}

pebble_cleanup() {
        pebble_stop
        [ -z "$PEBBLE_WORK" ] || rm -rf "$PEBBLE_WORK"
        PEBBLE_WORK=
        return 0
}

cert_serial() {
        # certtool prints the DER integer's bytes, with the 00 that keeps a
        # serial whose top bit is set positive; paf (as openssl x509
        # -serial) names the number without it. One serial in 256 has it.
        certtool -i --infile "$1" 2>/dev/null |
                sed -n '/^[[:space:]]*Serial Number (hex): */{s///;s/^00\([89a-fA-F]\)/\1/;p;q;}'
}

# pebble_cert_status SERIAL_HEX [--json]: pebble's /cert-status-by-serial.
# Its JSON carries Status ("Valid" or "Revoked"), Reason and RevokedAt.
pebble_cert_status() {
        _cs=$(curl -sf --max-time 5 --cacert "$PEBBLE_CA" \
                "$PEBBLE_MGMT/cert-status-by-serial/$1") ||
                { echo "pebble.sh: no certificate with serial $1 at $PEBBLE_MGMT" >&2; return 1; }
        if [ "${2:-}" = --json ]; then
                printf '%s\n' "$_cs"
        else
                printf '%s\n' "$_cs" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Status"])'
        fi
}

# pebble 2.4 logs, per newOrder it accepts: Added order "ID" to the db
pebble_count_orders() {
        grep -c 'Added order "' "$PEBBLE_LOG" || true
}

# Per challenge the client asked to validate: Pulled a task from the Tasks
# queue (an authorization reused, by pebble or by the client, makes none).
pebble_count_validations() {
        grep -c 'Pulled a task from the Tasks queue' "$PEBBLE_LOG" || true
}

# The serials pebble issued, oldest first, hex as cert_serial prints them:
# from "Issued certificate serial HEX for order ID".
pebble_issued_serials() {
        sed -n 's/.* Issued certificate serial \([0-9a-f]*\) for order .*/\1/p' "$PEBBLE_LOG"
}

pebble_verify_chain() {
        _vout=$(certtool --verify --load-ca-certificate "$PEBBLE_ROOT" --infile "$1" 2>&1) || {
                printf '%s\n' "$_vout" >&2
                return 1
        }
        case $_vout in
        *"Chain verification output: Verified."*) return 0 ;;
        esac
        printf '%s\n' "$_vout" >&2
        return 1
}

# challtest_set_a NAME IP…: challtestsrv answers NAME with these A records.
challtest_set_a() {
        _name=$1
        shift
        _ips=
        for _ip in "$@"; do
                _ips="$_ips${_ips:+, }\"$_ip\""
        done
        curl -sf --max-time 5 -o /dev/null -d "{\"host\": \"$_name\", \"addresses\": [$_ips]}" \
                "$CHALLTEST_MGMT/add-a" ||
                { echo "pebble.sh: challtestsrv refused A $_name $*" >&2; return 1; }
}

challtest_clear_a() {
        curl -sf --max-time 5 -o /dev/null -d "{\"host\": \"$1\"}" "$CHALLTEST_MGMT/clear-a" ||
                { echo "pebble.sh: challtestsrv refused to clear A $1" >&2; return 1; }
}
