#!/bin/sh
# scripts/abi-check.sh on fixture libraries (tests/abi/fixtures): it passes
# compatible additions and fails each kind of incompatible change, and a
# baseline that changed incompatibly passes only with a major and
# soversion bump. Arguments: the fixture libraries v1 … v5, in order.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
check=$PAF_TEST_SRCDIR/scripts/abi-check.sh
fixtures=$PAF_TEST_SRCDIR/tests/abi/fixtures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

v=1
for lib in "$@"; do
        bash "$check" dump "$lib" "$fixtures/v$v" "$tmp/v$v.abi"
        v=$((v + 1))
done
[ -f "$tmp/v5.abi" ] || fail "expected 5 fixture libraries, got $#"

# compare OLD NEW WANT (0 or 1) WHAT: the checker's verdict on NEW against OLD.
compare() {
        rc=0
        bash "$check" compare "$tmp/$1.abi" "$tmp/$2.abi" "$fixtures/$2" >"$tmp/out" 2>&1 || rc=$?
        [ "$rc" = "$3" ] || { cat "$tmp/out" >&2; fail "$4: exit $rc, want $3"; }
        echo "ok: $4 (exit $rc)"
}
compare v1 v1 0 "no change"
compare v1 v2 0 "appended member of a struct_size struct, new function, new enumerator"
grep -q "fx_new" "$tmp/out" || fail "the addition is not listed"
compare v1 v3 1 "member appended to a struct without struct_size"
grep -q "fx_info" "$tmp/out" || fail "the report does not name fx_info"
compare v1 v4 1 "function removed"
grep -q "fx_old" "$tmp/out" || fail "the report does not name fx_old"
compare v1 v5 1 "member inserted before the others of a struct_size struct"
# And plain abidiff, for the record, calls v3 and v5 no more than "a change".
rc=0
abidiff "$tmp/v1.abi" "$tmp/v3.abi" >/dev/null || rc=$?
[ $((rc & 8)) -eq 0 ] || echo "note: abidiff itself now flags v3 as incompatible"

# A baseline directory: NAME.abi of a fixture and VERSION.
baseline() {
        mkdir -p "$tmp/$1"
        cp "$tmp/$2.abi" "$tmp/$1/libpaf.abi"
        printf 'abi %s\nsoversion %s\n' "$3" "$4" >"$tmp/$1/VERSION"
}
# bump OLD NEW HEADERS WANT WHAT
bump() {
        rc=0
        bash "$check" bump "$tmp/$1" "$tmp/$2" "$fixtures/$3" >"$tmp/out" 2>&1 || rc=$?
        [ "$rc" = "$4" ] || { cat "$tmp/out" >&2; fail "$5: exit $rc, want $4"; }
        echo "ok: $5 (exit $rc)"
}
baseline old v1 1.2 1
baseline same-incompatible v3 1.2 1
baseline minor-incompatible v3 1.3 1
baseline bumped-incompatible v3 2.0 2
baseline same-compatible v2 1.2 1
baseline backwards v2 1.1 1
bump old same-incompatible v3 1 "baseline changed incompatibly, same version"
grep -q "raise PAF_ABI_MAJOR" "$tmp/out" || fail "no hint to bump"
bump old minor-incompatible v3 1 "baseline changed incompatibly, only the minor bumped"
bump old bumped-incompatible v3 0 "baseline changed incompatibly, major and soversion bumped"
bump old same-compatible v2 0 "baseline grew compatibly"
bump old backwards v2 1 "version went backwards"
