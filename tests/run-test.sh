#!/bin/sh
# Runs one test program: under $PAF_TEST_WRAPPER when set (valgrind, say), and
# with --netns in a private network namespace with only loopback up and an
# /etc/hosts of our own, so that name lookups never leave the machine. Where
# namespaces are refused, runs directly and says so.
set -eu
netns=no
if [ "${1:-}" = --netns ]; then
        netns=yes
        shift
fi
# shellcheck disable=SC2086 # the wrapper is a command line
set -- ${PAF_TEST_WRAPPER:-} "$@"
if [ $netns = yes ]; then
        hosts=$(dirname "$0")/hosts
        if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 &&
           unshare -mn true 2>/dev/null; then
                exec unshare -mn sh -c '
                        ip link set lo up
                        mount --bind "$0" /etc/hosts
                        exec "$@"' "$hosts" "$@"
        fi
        echo "run-test: no private network namespace here; running directly" >&2
fi
exec "$@"
