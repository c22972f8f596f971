#!/bin/sh
# tests/http/test-sendfile.sh — `paf serve` file bodies against curl: a 64 MiB file whole and in ranges, byte-exact (compared with dd) over TCP, a unix socket and TLS; sendfile(2) on the sockets, the core's copy under TLS (seen in the server's /proc/PID/io); the open-file cache of paf.conf sees a file changed, replaced or deleted after its validity time.
set -eu
for tool in curl certtool dd cmp; do
        command -v $tool >/dev/null 2>&1 || { echo "$tool not found: skipping"; exit 77; }
done
[ -f "$PAF_TEST_PLUGINDIR/tls.so" ] || { echo "no tls.so in $PAF_TEST_PLUGINDIR: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR
# shellcheck source=https-certs.sh
. "$PAF_TEST_SRCDIR/tests/http/https-certs.sh"

# paf serve, stopped at exit (a test that reaped it clears pid).
pid=
cleanup_extra() {
        if [ -n "$pid" ]; then
                kill "$pid" 2>/dev/null || true
                wait "$pid" 2>/dev/null || true
        fi
}
# shellcheck source=tests/common/checks.sh
. "$PAF_TEST_SRCDIR/tests/common/checks.sh"
fail_logs="$tmp/serve.err"
# Bounded: no curl call may hang the test.
c() { curl -sS --max-time 60 "$@"; }

certs=$tmp/certs
mkdir "$certs"
https_ca "$certs" ca || fail "certtool: CA"
https_cert "$certs" srv ca localhost localhost 127.0.0.1 || fail "certtool: server"

root=$tmp/root
mkdir "$root"
size=$((64 * 1024 * 1024))
head -c $size /dev/urandom >"$root/big.bin"
printf 'version one\n' >"$root/c.txt"

# The cache's validity from paf.conf: 1 s, the default, said out loud.
printf '[http]\nopen-file-cache = 100\nopen-file-cache-valid = 1\n' >"$tmp/paf.conf"
: >"$tmp/serve.err"
"$PAF_BIN" serve --quiet --config "$tmp/paf.conf" --root "$root" --listen 127.0.0.1:0 \
        --listen "$tmp/s.sock" --listen-tls 127.0.0.1:0 --cert "$certs/srv.pem" \
        --key "$certs/srv.key" 2>>"$tmp/serve.err" &
pid=$!
i=0
while [ "$(grep -c 'listening on' "$tmp/serve.err" || true)" -lt 3 ]; do
        kill -0 "$pid" 2>/dev/null || fail "paf serve exited at start"
        i=$((i + 1))
        [ $i -lt 400 ] || fail "paf serve did not start"
        sleep 0.05
done
tcp=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/serve.err")
tls=$(sed -n 's|^paf serve: listening on https://||p' "$tmp/serve.err")
[ -n "$tcp" ] && [ -n "$tls" ] || fail "listening lines: $(cat "$tmp/serve.err")"

# The server's write system calls: sendfile(2) counts as one, sendmsg(2)
# does not (and --quiet writes no log).
syscw() { sed -n 's/^syscw: //p' "/proc/$pid/io"; }

# get TRANSPORT PATH [curl options…]: curl against the server over TRANSPORT.
get() {
        t=$1 p=$2
        shift 2
        case $t in
        tcp) c "$@" "http://$tcp$p" ;;
        unix) c --unix-socket "$tmp/s.sock" "$@" "http://localhost$p" ;;
        tls) c --cacert "$certs/ca.pem" "$@" "https://$tls$p" ;;
        esac
}

last=$((size - 1))
for t in tcp unix tls; do
        w0=$(syscw)
        code=$(get $t /big.bin -o "$tmp/out" -w '%{http_code}')
        w1=$(syscw)
        [ "$code" = 200 ] || fail "$t: GET /big.bin: $code"
        cmp -s "$tmp/out" "$root/big.bin" || fail "$t: 64 MiB body differs from the file"
        # 64 MiB in 1 MiB pieces: one sendfile call at least for each.
        if [ $t = tls ]; then
                [ $((w1 - w0)) -lt 8 ] || fail "tls: $((w1 - w0)) write calls: not the core's copy?"
                how="copied (pread and TLS records; $((w1 - w0)) write calls)"
        else
                [ $((w1 - w0)) -ge 64 ] || fail "$t: $((w1 - w0)) write calls: not sendfile"
                how="by sendfile ($((w1 - w0)) calls)"
        fi
        ok "$t: 64 MiB byte-exact, $how"

        w0=$(syscw)
        for r in 0-0 1-65536 65537-20000000 33554432- -1000000 12345-$last 67000000-99999999 \
                $last-$last; do
                case $r in
                -*)
                        n=${r#-} first=$((size - n)) ;;
                *-)
                        first=${r%-} n=$((size - first)) ;;
                *)
                        first=${r%-*} end=${r#*-}
                        [ "$end" -gt $last ] && end=$last
                        n=$((end - first + 1)) ;;
                esac
                code=$(get $t /big.bin -r "$r" -D "$tmp/h" -o "$tmp/out" -w '%{http_code}')
                [ "$code" = 206 ] || fail "$t: range $r: $code"
                dd if="$root/big.bin" bs=1M iflag=skip_bytes,count_bytes skip=$first count=$n \
                        status=none | cmp -s - "$tmp/out" || fail "$t: range $r: bytes differ"
                cr=$(tr -d '\r' <"$tmp/h" | sed -n 's/^content-range: //Ip')
                [ "$cr" = "bytes $first-$((first + n - 1))/$size" ] ||
                        fail "$t: range $r: Content-Range '$cr'"
        done
        w1=$(syscw)
        [ $t = tls ] || [ $((w1 - w0)) -ge 6 ] || fail "$t: ranges: $((w1 - w0)) sendfile calls"
        ok "$t: 8 ranges byte-exact against dd, with their Content-Range"
done

# A range within what one request asks while another range of the same file
# is in flight on another connection: the file's descriptor is shared, the
# offsets are each response's own.
get tcp /big.bin -r 1000-30000000 -o "$tmp/a" &
a=$!
get unix /big.bin -r 30000000-60000000 -o "$tmp/b"
wait $a || fail "concurrent ranges: curl failed"
dd if="$root/big.bin" bs=1M iflag=skip_bytes,count_bytes skip=1000 count=29999001 status=none |
        cmp -s - "$tmp/a" || fail "concurrent range 1 differs"
dd if="$root/big.bin" bs=1M iflag=skip_bytes,count_bytes skip=30000000 count=30000001 \
        status=none | cmp -s - "$tmp/b" || fail "concurrent range 2 differs"
ok "two ranges of one file at once, on two connections: both exact"

# ---- the open-file cache: changes seen after open-file-cache-valid ----
[ "$(get tcp /c.txt)" = "version one" ] || fail "c.txt"
printf 'version two, longer\n' >"$root/c.txt"
sleep 1.3
[ "$(get tcp /c.txt)" = "version two, longer" ] || fail "cache: change in place not seen after 1 s"
printf 'three\n' >"$root/c.new"
mv "$root/c.new" "$root/c.txt"
sleep 1.3
[ "$(get unix /c.txt)" = "three" ] || fail "cache: replacement not seen after 1 s"
rm "$root/c.txt"
sleep 1.3
code=$(get tls /c.txt -o /dev/null -w '%{http_code}')
[ "$code" = 404 ] || fail "cache: deletion not seen after 1 s: $code"
ok "open-file cache: a change in place, a replacement and a deletion seen after 1 s"

kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ $rc = 0 ] || fail "SIGTERM: exit $rc"
echo "all $n_checks checks passed"
