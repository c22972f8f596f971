#!/bin/sh
# tests/tools/test-run-sh.sh — ./run.sh serves its demo directory, examples/www/, not the repository:
# run as it is, in a copy of the checkout's layout whose deps and build steps are stubs (the
# build is this test's), with a .git/config and files of the repository next to it.
set -eu
command -v curl >/dev/null 2>&1 || { echo "curl not found: skipping"; exit 77; }
command -v bash >/dev/null 2>&1 || { echo "bash not found: skipping"; exit 77; }

tmp=$(mktemp -d)
pid=
cleanup() {
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
        echo "FAIL: $*" >&2
        [ -f "$tmp/run.err" ] && { echo "--- run.sh's stderr" >&2; tail -n 20 "$tmp/run.err" >&2; }
        exit 1
}
c() { curl -sS --max-time 30 "$@"; }

# The checkout: run.sh and examples/www/ as they are, a repository around them.
repo=$tmp/repo
mkdir -p "$repo/scripts" "$repo/examples" "$repo/.git"
cp "$PAF_TEST_SRCDIR/run.sh" "$repo/run.sh"
cp -R "$PAF_TEST_SRCDIR/examples/www" "$repo/examples/www"
printf '[core]\n\tREPOSITORYCONFIG = 1\n' >"$repo/.git/config"
echo "REPOSITORYREADME" >"$repo/README.md"
# deps.sh and build.sh are the real ones' contract (exit 0 when all is there
# and built); the build is the one under test.
printf '#!/bin/sh\nexit 0\n' >"$repo/scripts/deps.sh"
printf '#!/bin/sh\nexit 0\n' >"$repo/scripts/build.sh"
chmod +x "$repo/scripts/deps.sh" "$repo/scripts/build.sh"
ln -s "$PAF_TEST_BUILDDIR" "$repo/build"

# Started from elsewhere, as `path/to/run.sh`: it must not serve its cwd either.
: >"$tmp/run.err"
(cd "$tmp" && exec env PAF_PLUGIN_PATH= bash "$repo/run.sh" --listen 127.0.0.1:0 \
        --listen "$tmp/run.sock") 2>>"$tmp/run.err" &
pid=$!
i=0
while [ "$(grep -c 'listening on' "$tmp/run.err" || true)" -lt 2 ]; do
        kill -0 "$pid" 2>/dev/null || fail "run.sh exited early"
        i=$((i + 1))
        [ $i -lt 200 ] || fail "run.sh did not start paf serve"
        sleep 0.05
done
tcp=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/run.err")
[ -n "$tcp" ] || fail "no TCP listener announced"

c -o "$tmp/index" "http://$tcp/" || fail "GET /"
cmp -s "$tmp/index" "$PAF_TEST_SRCDIR/examples/www/index.html" ||
        fail "/ is not examples/www/index.html: $(head -c 300 "$tmp/index")"
echo "ok 1: run.sh serves examples/www/"

for p in /.git/config /README.md /run.sh /scripts/deps.sh /examples/www/index.html; do
        code=$(c -o "$tmp/out" -w '%{http_code}' "http://$tcp$p")
        [ "$code" = 404 ] || fail "$p answered $code"
        ! grep -Eq 'REPOSITORYCONFIG|REPOSITORYREADME|exit 0' "$tmp/out" || fail "$p leaked"
done
echo "ok 2: nothing of the repository is served (404)"

# Arguments win: --root of the user replaces the demo directory.
kill -TERM "$pid"
wait "$pid" || true
pid=
mkdir "$tmp/mine"
echo mine >"$tmp/mine/mine.txt"
: >"$tmp/run.err"
bash "$repo/run.sh" --listen 127.0.0.1:0 --listen "$tmp/run2.sock" --root "$tmp/mine" \
        2>>"$tmp/run.err" &
pid=$!
i=0
while [ "$(grep -c 'listening on' "$tmp/run.err" || true)" -lt 2 ]; do
        kill -0 "$pid" 2>/dev/null || fail "run.sh --root exited early"
        i=$((i + 1))
        [ $i -lt 200 ] || fail "run.sh --root did not start"
        sleep 0.05
done
tcp=$(sed -n 's|^paf serve: listening on http://||p' "$tmp/run.err")
[ "$(c "http://$tcp/mine.txt")" = mine ] || fail "--root given to run.sh was not served"
echo "ok 3: run.sh --root DIR serves DIR"
kill -TERM "$pid"
wait "$pid" || true
pid=
echo "all 3 checks passed"
