#!/usr/bin/env bash
# bench/acme.sh — wall time of one ACME issuance against pebble on loopback: paf cert issue vs uacme vs certbot, each with a fresh account.
#
#   bench/acme.sh [--quick] [--rounds N] [--paf FILE]
#
# One pebble (tests/acme/pebble.sh: no VA sleeps, no badNonce, no authz
# reuse) serves every round. A round is, for each tool in turn, one command
# line from nothing to a certificate: a new state directory, so a new account
# key, newAccount, newOrder for paf.test, http-01, finalize, download. The
# chain must verify against pebble's root, or the round counts as failed.
#   certbot certonly --standalone: it answers http-01 itself, as paf does;
#   uacme new + uacme issue, run in a private mount namespace in which
#     $PEBBLE_CA is bind-mounted over the system CA bundle (uacme 1.7.4 has no
#     CA option); its http-01 hook writes into the webroot of a python
#     http.server that runs all along (not timed);
#   paf cert issue --challenge http-01 --listen 127.0.0.1:PORT: its own
#     listener. paf is --paf FILE, else $PAF, else build/tools/paf (not
#     built here), with the plugins of its build tree unless PAF_PLUGIN_PATH
#     is set; the row says "not available" until `paf cert issue --help` works.
# Prints every round, then per tool the best and median of the rounds, and
# the ratios paf/uacme and paf/certbot (below 1: paf is faster). Run by hand,
# not by test.sh; needs root (or user namespaces) for uacme's mount namespace.
# shellcheck disable=SC2317 # cleanup and the run_* functions are called indirectly
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
paf=${PAF:-build/tools/paf}
while [ $# -gt 0 ]; do
        case $1 in
        --quick) rounds=1 ;;
        --rounds) rounds=$2; shift ;;
        --paf) paf=$2; shift ;;
        -h | --help) sed -n '2,/^[^#]/{/^# shellcheck/d;/^#/p}' "$0"; exit 0 ;;
        *) echo "acme.sh: unknown option $1" >&2; exit 2 ;;
        esac
        shift
done
for tool in certbot uacme pebble certtool curl python3 unshare; do
        command -v "$tool" >/dev/null ||
                { echo "acme.sh: $tool not found (scripts/deps.sh installs it)" >&2; exit 1; }
done

# shellcheck source=../tests/acme/pebble.sh
. tests/acme/pebble.sh
tmp=$(mktemp -d)
www_pid=
cleanup() {
        if [ -n "$www_pid" ]; then
                kill "$www_pid" 2>/dev/null || true
                wait "$www_pid" 2>/dev/null || true
        fi
        pebble_cleanup
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# shellcheck disable=SC2119 # the defaults: see tests/acme/pebble.sh
pebble_start

# ---- the tools, one round each: run_TOOL DIR; 0 with DIR/fullchain.pem ----

run_certbot() {
        REQUESTS_CA_BUNDLE=$PEBBLE_CA certbot certonly -n --agree-tos -m admin@paf.test \
                --server "$PEBBLE_DIR_URL" --config-dir "$1/etc" --work-dir "$1/work" \
                --logs-dir "$1/log" --standalone --http-01-address 127.0.0.1 \
                --http-01-port "$PEBBLE_HTTP_PORT" --key-type ecdsa -d paf.test >"$1/out" 2>&1 &&
                cp "$1/etc/live/paf.test/fullchain.pem" "$1/fullchain.pem"
}

# uacme trusts only the system bundle: a private mount namespace (propagation
# private, unshare's default) sees pebble's CA there instead, nobody else does.
if [ "$(id -u)" = 0 ]; then
        unshare_opts=-m
else
        unshare_opts=-rm
fi
uacme_ns() {
        # shellcheck disable=SC2016 # $0 and $@ are the inner shell's
        unshare "$unshare_opts" sh -c 'mount --bind "$0" /etc/ssl/certs/ca-certificates.crt &&
                exec "$@"' "$PEBBLE_CA" uacme "$@"
}
mkdir -p "$tmp/www/.well-known/acme-challenge"
# uacme's hook: METHOD TYPE IDENT TOKEN KEY_AUTH; 0 = handled, 1 = not this type.
cat >"$tmp/uacme-hook.sh" <<EOF
#!/bin/sh
[ "\$2" = http-01 ] || exit 1
f=$tmp/www/.well-known/acme-challenge/\$4
case \$1 in
begin) printf '%s' "\$5" >"\$f" ;;
*) rm -f "\$f" ;;
esac
EOF
chmod +x "$tmp/uacme-hook.sh"
run_uacme() {
        {
                uacme_ns -y -c "$1/conf" -a "$PEBBLE_DIR_URL" -t EC new admin@paf.test &&
                        uacme_ns -c "$1/conf" -a "$PEBBLE_DIR_URL" -t EC -h "$tmp/uacme-hook.sh" \
                                issue paf.test
        } >"$1/out" 2>&1 && cp "$1/conf/paf.test/cert.pem" "$1/fullchain.pem"
}

run_paf() {
        "$paf" cert issue --acme-url "$PEBBLE_DIR_URL" --cacert "$PEBBLE_CA" \
                --email admin@paf.test --agree-tos -d paf.test --challenge http-01 \
                --listen "127.0.0.1:$PEBBLE_HTTP_PORT" --dir "$1/state" >"$1/out" 2>&1 &&
                cp "$1/state/paf.test/fullchain.pem" "$1/fullchain.pem"
}

# A build tree's paf takes that tree's plugins, as bench/lib.sh does.
if [ -z "${PAF_PLUGIN_PATH:-}" ] && [ -d "$(dirname "$paf")/../plugins" ]; then
        PAF_PLUGIN_PATH=$(cd "$(dirname "$paf")/../plugins" && pwd)
        export PAF_PLUGIN_PATH
fi
tools="certbot uacme"
paf_note=
if [ -x "$paf" ] && "$paf" cert issue --help >/dev/null 2>&1; then
        tools="$tools paf"
else
        paf_note="paf: not available ($paf cert issue --help fails)"
fi

# ---- the rounds ----

now_ms() {
        echo "${EPOCHREALTIME/[.,]/}" | awk '{ printf "%.1f", $1 / 1000 }'
}
median() {
        printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
best() {
        printf '%s\n' "$@" | sort -g | head -n 1
}

echo "pebble $PEBBLE_DIR_URL, http-01 on 127.0.0.1:$PEBBLE_HTTP_PORT; $rounds round(s), a fresh account every round"
[ -z "$paf_note" ] || echo "$paf_note"
declare -A times
failed=0
printf '%-6s %-8s %10s\n' round tool "wall ms"
for ((r = 1; r <= rounds; r++)); do
        for tool in $tools; do
                d=$tmp/$tool-$r
                mkdir -p "$d"
                if [ "$tool" = uacme ]; then
                        python3 -m http.server "$PEBBLE_HTTP_PORT" --bind 127.0.0.1 \
                                --directory "$tmp/www" >"$tmp/www.log" 2>&1 &
                        www_pid=$!
                        for _ in $(seq 100); do
                                curl -s -o /dev/null "http://127.0.0.1:$PEBBLE_HTTP_PORT/" && break
                                sleep 0.05
                        done
                fi
                t0=$(now_ms)
                rc=0
                "run_$tool" "$d" || rc=$?
                t1=$(now_ms)
                if [ "$tool" = uacme ]; then
                        kill "$www_pid"
                        wait "$www_pid" 2>/dev/null || true
                        www_pid=
                fi
                ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }')
                if [ $rc = 0 ] && pebble_verify_chain "$d/fullchain.pem" 2>"$d/verify"; then
                        printf '%-6s %-8s %10s\n' "$r" "$tool" "$ms"
                        times[$tool]="${times[$tool]:-} $ms"
                else
                        printf '%-6s %-8s %10s  FAILED (exit %s):\n' "$r" "$tool" "$ms" "$rc"
                        tail -n 5 "$d/out" "$d/verify" 2>/dev/null | sed 's/^/        /' || true
                        failed=1
                fi
        done
done

echo
printf '%-8s %10s %10s\n' tool "best ms" "median ms"
declare -A med bst
for tool in certbot uacme paf; do
        # shellcheck disable=SC2086 # a list of numbers
        if [ -n "${times[$tool]:-}" ]; then
                bst[$tool]=$(best ${times[$tool]})
                med[$tool]=$(median ${times[$tool]})
                printf '%-8s %10s %10s\n' "$tool" "${bst[$tool]}" "${med[$tool]}"
        elif [ $tool = paf ] && [ -n "$paf_note" ]; then
                printf '%-8s %10s %10s\n' paf "-" "-"
        else
                printf '%-8s %10s %10s\n' "$tool" failed failed
        fi
done
echo
if [ -n "${med[paf]:-}" ]; then
        for other in uacme certbot; do
                [ -n "${med[$other]:-}" ] || continue
                printf 'paf/%-8s best %s  median %s\n' "$other" \
                        "$(awk -v a="${bst[paf]}" -v b="${bst[$other]}" 'BEGIN { printf "%.2f", a / b }')" \
                        "$(awk -v a="${med[paf]}" -v b="${med[$other]}" 'BEGIN { printf "%.2f", a / b }')"
        done
        echo "(below 1: paf is faster; target: paf/uacme <= 1)"
else
        echo "${paf_note:-paf: every round failed}"
fi
echo "pebble: $(pebble_count_orders) orders for $((rounds * $(wc -w <<<"$tools"))) runs"
exit $failed
