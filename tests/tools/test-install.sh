#!/bin/sh
# tests/tools/test-install.sh — paf installed like a package: `meson install` into a prefix under
# /tmp, the build tree deleted, and then, with an empty environment (env -i), `paf plugins`
# finds libpaf (RUNPATH) and every plugin (the compiled-in pluginsdir), `paf serve` and
# `paf get` exchange a file; a third-party plugin builds against the installed paf with
# pkg-config and is used by URL, by paf serve and listed; the man pages, paf.conf and the
# systemd units are installed, the units naming the installed paf.
set -eu
command -v meson >/dev/null 2>&1 || { echo "meson not found: skipping"; exit 77; }

tmp=$(mktemp -d)
pid=
cleanup() {
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT
n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok $n_checks: $*"
}
fail() {
        for f in "$tmp"/*.log "$tmp"/*.err; do
                [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
        done
        # Last: meson shows the end of a long log only.
        echo "FAIL: $*" >&2
        exit 1
}

# A prefix of its own, not /usr: what needs a RUNPATH and the compiled-in
# plugins directory. Unoptimized and without the tests: the build is only
# the means here.
prefix=$tmp/prefix
build=$tmp/build
meson setup "$build" "$PAF_TEST_SRCDIR" --prefix="$prefix" -Dtests=false -Dbuildtype=plain \
        -Dwerror=false >"$tmp/setup.log" 2>&1 || fail "meson setup"
meson compile -C "$build" >"$tmp/compile.log" 2>&1 || fail "meson compile"
meson install -C "$build" >"$tmp/install.log" 2>&1 || fail "meson install"
# Nothing may lead back to the build tree from here on.
rm -rf "$build"
ok "built and installed into $prefix"

paf=$prefix/bin/paf
[ -x "$paf" ] || fail "no $paf"
pluginsdir=$(PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name paf.pc | head -n 1)") \
        pkg-config --variable=pluginsdir paf)
case $pluginsdir in
"$prefix"/*/paf-1/plugins) ;;
*) fail "pluginsdir \"$pluginsdir\" is not under the prefix" ;;
esac
for p in tcp unix tls vsock; do
        [ -f "$pluginsdir/$p.so" ] || fail "$p.so not installed in $pluginsdir"
done
libdir=${pluginsdir%/paf-1/plugins}
readelf -d "$paf" >"$tmp/readelf.log"
grep -E 'RUNPATH|RPATH' "$tmp/readelf.log" | grep -qF "[$libdir]" ||
        fail "paf's RUNPATH is not [$libdir]: $(grep -E 'R(UN)?PATH' "$tmp/readelf.log")"
ok "RUNPATH $libdir, plugins in $pluginsdir"

# An empty environment: no PAF_PLUGIN_PATH, no LD_LIBRARY_PATH, no PATH.
env -i "$paf" version >"$tmp/version.log" 2>&1 || fail "paf version"
grep -q '^paf [0-9]' "$tmp/version.log" || fail "paf version: $(cat "$tmp/version.log")"
env -i "$paf" plugins >"$tmp/plugins.log" 2>&1 || fail "paf plugins"
for p in tcp unix tls vsock; do
        grep -E "^$p +.* $pluginsdir/$p\.so\$" "$tmp/plugins.log" >/dev/null ||
                fail "paf plugins does not list $p from $pluginsdir"
done
! grep -q refused "$tmp/plugins.log" || fail "a plugin was refused"
ok "env -i paf plugins: tcp, unix, tls, vsock loaded from $pluginsdir"

# Serve and fetch with the installed binaries alone.
mkdir "$tmp/www"
head -c 70000 /dev/urandom >"$tmp/www/file.bin"
: >"$tmp/serve.err"
env -i "$paf" serve --listen 127.0.0.1:0 --listen "$tmp/paf.sock" --root "$tmp/www" \
        2>>"$tmp/serve.err" &
pid=$!
i=0
while [ "$(grep -c 'listening on' "$tmp/serve.err" || true)" -lt 2 ]; do
        kill -0 "$pid" 2>/dev/null || fail "paf serve exited early"
        i=$((i + 1))
        [ $i -lt 200 ] || fail "paf serve did not start"
        sleep 0.05
done
tcp=$(sed -n 's|^paf\( serve\)\{0,1\}: listening on http://||p' "$tmp/serve.err")
[ -n "$tcp" ] || fail "no TCP listener announced"
env -i "$paf" get -s --max-time 30 -o "$tmp/got.bin" "http://$tcp/file.bin" >"$tmp/get.err" 2>&1 ||
        fail "paf get http://$tcp/file.bin"
cmp -s "$tmp/got.bin" "$tmp/www/file.bin" || fail "paf get: the bytes differ"
env -i "$paf" get -s --max-time 30 -o "$tmp/got2.bin" \
        "http+unix://$(echo "$tmp/paf.sock" | sed 's|/|%2F|g')/file.bin" >"$tmp/get.err" 2>&1 ||
        fail "paf get over the unix socket"
cmp -s "$tmp/got2.bin" "$tmp/www/file.bin" || fail "paf get over unix: the bytes differ"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ $rc = 0 ] || fail "paf serve: exit $rc on SIGTERM"
ok "env -i paf serve and paf get: a file over TCP and a unix socket"

# A third-party plugin built out of tree against the installed paf, with
# pkg-config alone, and installed where that paf looks: it registers its own
# URL scheme and an option, and every command takes it.
pcdir=$(dirname "$(find "$prefix" -name paf.pc | head -n 1)")
if command -v make >/dev/null 2>&1 && command -v cc >/dev/null 2>&1; then
        mkdir "$tmp/loop"
        PKG_CONFIG_PATH=$pcdir make -s -C "$PAF_TEST_SRCDIR/examples/plugin" O="$tmp/loop" install \
                >"$tmp/make.log" 2>&1 || fail "make install of the example plugin against $prefix"
        [ -f "$pluginsdir/loop.so" ] || fail "loop.so not installed into $pluginsdir"
        env -i "$paf" plugins -v >"$tmp/plugins-v.log" 2>&1 || fail "paf plugins -v with loop.so"
        grep -E "^loop +1\.0\.0 +loop +$pluginsdir/loop\.so\$" "$tmp/plugins-v.log" >/dev/null ||
                fail "paf plugins does not list loop from $pluginsdir"
        grep -E '^  scheme  \+loop +loop' "$tmp/plugins-v.log" >/dev/null ||
                fail "paf plugins does not list the +loop scheme"
        grep -E '^  option  window +integer +default 65536, 512-65536' "$tmp/plugins-v.log" >/dev/null ||
                fail "paf plugins does not list loop's option"
        ok "out-of-tree loop.so (pkg-config against $prefix): listed with its scheme and option"

        # paf get reaches the plugin by its scheme: the loop transport
        # itself answers that nothing listens under that name.
        rc=0
        env -i "$paf" get http+loop://nobody/x >"$tmp/get-loop.out" 2>"$tmp/get-loop.err" || rc=$?
        [ $rc = 7 ] || fail "paf get http+loop://nobody/x: exit $rc, not 7"
        grep -q "nothing listens on loop:nobody" "$tmp/get-loop.err" ||
                fail "paf get http+loop: $(cat "$tmp/get-loop.err")"
        ok "env -i paf get http+loop://nobody/x: the loop transport answered (exit 7)"

        # paf serve listens on it, and announces it by its URL.
        : >"$tmp/serve-loop.err"
        env -i "$paf" serve --listen loop:web --root "$tmp" 2>>"$tmp/serve-loop.err" &
        pid=$!
        i=0
        until grep -q 'listening on http+loop://web' "$tmp/serve-loop.err"; do
                kill -0 "$pid" 2>/dev/null || fail "paf serve --listen loop:web exited"
                i=$((i + 1))
                [ $i -lt 200 ] || fail "paf serve --listen loop:web: not announced"
                sleep 0.05
        done
        kill -TERM "$pid"
        rc=0
        wait "$pid" || rc=$?
        pid=
        [ $rc = 0 ] || fail "paf serve --listen loop:web: exit $rc on SIGTERM"
        ok "env -i paf serve --listen loop:web: announced as http+loop://web"

        # Its option is checked from its table.
        printf '[loop]\nwindow = 100\n' >"$tmp/loop.conf"
        if env -i "$paf" config check "$tmp/loop.conf" >"$tmp/check.out" 2>&1; then
                fail "[loop] window = 100 passed paf config check"
        fi
        grep -q 'loop.conf:2: \[loop\] key "window": value out of range (512-65536)' "$tmp/check.out" ||
                fail "[loop] window = 100: $(cat "$tmp/check.out")"
        ok "[loop] window = 100 refused by paf config check"
else
        echo "note: no make or cc: the out-of-tree plugin is not built here"
fi

# Man pages.
for page in man1/paf.1 man5/paf.conf.5 man7/paf-plugin.7; do
        [ -s "$prefix/share/man/$page" ] || fail "$page not installed"
done
ok "man pages installed under $prefix/share/man"

# The example paf.conf and the systemd units, naming what was installed.
[ -s "$prefix/etc/paf/paf.conf" ] || fail "paf.conf not installed in $prefix/etc/paf"
unitdir=$prefix/lib/systemd/system
for u in paf.service paf.socket paf-local.socket paf-vsock.socket paf-https.socket; do
        [ -s "$unitdir/$u" ] || fail "$u not installed in $unitdir"
done
exec_start=$(sed -n 's/^ExecStart=//p' "$unitdir/paf.service")
[ "$exec_start" = "$paf serve --config $prefix/etc/paf/paf.conf --root /srv/www" ] ||
        fail "paf.service: ExecStart=$exec_start"
! grep -n '@[a-z_]*@' "$unitdir/paf.service" || fail "paf.service has a placeholder left"
ok "paf.conf and the units installed; ExecStart=$exec_start"

# The unit is one systemd takes, as far as it can tell without running it.
if command -v systemd-analyze >/dev/null 2>&1; then
        if systemd-analyze verify --man=no "$unitdir/paf.socket" "$unitdir/paf.service" \
                >"$tmp/verify.log" 2>&1; then
                ok "systemd-analyze verify: paf.service and paf.socket"
        elif grep -qiE 'not booted|Failed to (initialize|connect)|bus' "$tmp/verify.log"; then
                echo "note: systemd-analyze cannot verify here: $(head -n 1 "$tmp/verify.log")"
        else
                fail "systemd-analyze verify: $(cat "$tmp/verify.log")"
        fi
fi

echo "all $n_checks checks passed"
