#!/usr/bin/env bash
# Installs the Debian packages paf needs to build and test, if any is missing.
set -euo pipefail

packages=(
        # build
        gcc make meson ninja-build pkg-config
        scdoc man-db # the man pages: written in scdoc, checked with man -l
        libsystemd-dev libinih-dev libcmocka-dev node-llhttp liburiparser-dev
        libjansson-dev # ACME's JSON (core/acme/)
        zlib1g-dev # paf serve's on-the-fly gzip (core/http/static.c)
        libbrotli-dev libzstd-dev brotli zstd time # paf get --compressed's br and zstd (tools/decode.c); the CLIs and GNU time for its tests
        media-types # /etc/mime.types, the static handler's MIME types
        # real peers for the HTTP tests and benchmarks
        libgnutls28-dev
        curl nginx-light wrk python3 gnutls-bin systemd netcat-openbsd openssl
        nghttp2-client # h2load, a client to compare paf bench with (bench/client.sh)
        libnghttp2-dev nghttp2-server python3-h2 python3-hyperframe python3-hpack # HTTP/2: the engine, nghttpd as a peer, frame-level tests
        tinyproxy # a real HTTP proxy for paf get -x (tests/http/test-get-proxy.sh)
        microsocks dante-server stunnel4 # SOCKS5 (with credentials), SOCKS4 and a TLS front as an HTTPS proxy, for the same test
        # tests: private network namespaces, sanitizers' symbolizer, valgrind
        iproute2 util-linux valgrind binutils
        chromium # a real browser on paf serve's listings (tests/http/test-serve-content.sh)
        strace # a server's write calls per pipelined batch (tests/http/test-pipeline.sh)
        # the ABI check: abidw and abidiff (scripts/abi-baseline.sh, tests/abi)
        abigail-tools
        # ACME: a real ACME server and its DNS, peers to compare with (tests/acme, bench/acme.sh)
        pebble certbot uacme python3-cryptography # pebble ships pebble-challtestsrv
        # fuzzing: libFuzzer harnesses (scripts/fuzz.sh)
        clang libclang-rt-14-dev llvm
)

missing=()
for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
                missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
