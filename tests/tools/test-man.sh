#!/bin/sh
# tests/tools/test-man.sh — the man pages render without a warning, and say what the code does:
# paf.conf(5) documents exactly the options of the core's and the plugins' tables (type, range,
# choices, default), its example passes `paf config check`, and paf(1) documents every command
# and every option of each command's --help.
set -eu
command -v man >/dev/null 2>&1 || { echo "man (man-db) not found: skipping"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "python3 not found: skipping"; exit 77; }
export PAF_PLUGIN_PATH=$PAF_TEST_PLUGINDIR

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n_checks=0
ok() {
        n_checks=$((n_checks + 1))
        echo "ok $n_checks: $*"
}
fail() {
        echo "FAIL: $*" >&2
        exit 1
}
doc=$PAF_TEST_SRCDIR/doc

# ---- rendering: man's warnings are failures ----
for page in paf.1 paf.conf.5 paf-plugin.7; do
        f=$PAF_TEST_BUILDDIR/doc/$page
        [ -s "$f" ] || fail "$page was not built ($f)"
        MANWIDTH=80 MANPAGER=cat man --warnings -l "$f" >"$tmp/out" 2>"$tmp/err" ||
                fail "$page: man failed: $(cat "$tmp/err")"
        [ ! -s "$tmp/err" ] || fail "$page: man warns: $(cat "$tmp/err")"
        [ "$(wc -l <"$tmp/out")" -gt 50 ] || fail "$page: rendered to $(wc -l <"$tmp/out") lines"
        # Placeholders the build fills in, and scdoc markup that went through.
        ! grep -nE '@[A-Z_]+@|%EXAMPLE%|\*[a-z-]+\*|(^|[ (])_[A-Za-z]+_([ ,.)]|$)' "$tmp/out" ||
                fail "$page: unfilled placeholder or markup in the rendered page"
        ok "$page renders ($(wc -l <"$tmp/out") lines), no warning"
done
MANWIDTH=80 MANPAGER=cat man -l "$PAF_TEST_BUILDDIR/doc/paf.1" >"$tmp/paf.1.txt" 2>/dev/null
grep -qF "$PAF_TEST_BUILDDIR" "$tmp/paf.1.txt" && fail "paf(1) names the build tree"
MANWIDTH=200 MANPAGER=cat man -l "$PAF_TEST_BUILDDIR/doc/paf.1" 2>/dev/null |
        grep -qF "$(pkg-config --variable=pluginsdir "$PAF_TEST_BUILDDIR/pkgconfig/paf.pc")" ||
        fail "paf(1) does not name the plugins directory"
ok "paf(1) names the installation's plugins directory, not the build tree"

# The example of paf-plugin(7) is examples/plugin/loop.c, whole.
MANWIDTH=200 MANPAGER=cat man -l "$PAF_TEST_BUILDDIR/doc/paf-plugin.7" 2>/dev/null |
        sed 's/^ *//' >"$tmp/plugin.txt"
n=0
while IFS= read -r line; do
        stripped=$(printf '%s\n' "$line" | sed 's/^ *//')
        [ -n "$stripped" ] || continue
        grep -qxF -- "$stripped" "$tmp/plugin.txt" || fail "paf-plugin(7) lacks loop.c's line: $line"
        n=$((n + 1))
done <"$PAF_TEST_SRCDIR/examples/plugin/loop.c"
ok "paf-plugin(7) shows examples/plugin/loop.c whole ($n lines)"

# ---- paf.conf(5) against the option tables ----
# The page documents each option as
#     *KEY* = _VALUE_
#     <tab>Integer, MIN to MAX, one of A, B; default D.
# under a "## [SECTION]" heading; this reads them back in option-tables' format.
python3 - "$doc/paf.conf.5.scd" >"$tmp/documented" <<'EOF'
import re, sys
attr = re.compile(r'^\t(String|Integer|Boolean)(?:, (-?\d+) to (-?\d+))?(?:, one of ([^;]+))?; '
                  r'(?:default (.+)|no default)\.$')
section, expect, bad = None, None, 0
for n, line in enumerate(open(sys.argv[1], encoding='utf-8'), 1):
    line = line.rstrip('\n')
    if expect:
        m = attr.match(line.replace('\\_', '_').replace('\\*', '*'))
        if not m:
            print(f'paf.conf.5.scd:{n}: [{section}] {expect}: expected "<tab>TYPE[, MIN to MAX]'
                  f'[, one of …]; default X." or "; no default.", got {line!r}', file=sys.stderr)
            bad = 1
        else:
            t, lo, hi, choices, default = m.groups()
            choices = ','.join(c.strip() for c in choices.split(',')) if choices else '-'
            print('\t'.join([section, expect, t.lower(), lo or '-', hi or '-', choices,
                             default if default is not None else '-']))
        expect = None
        continue
    if line.startswith('#'):
        m = re.match(r'^## \[([a-z0-9_.A-Z-]+)\]$', line)
        section = m.group(1) if m else None
        continue
    m = re.match(r'^\*([a-z0-9-]+)\* = ', line)
    if m and section:
        expect = m.group(1)
sys.exit(bad)
EOF
"$PAF_TEST_OPTION_TABLES" "$PAF_TEST_PLUGINDIR"/*.so >"$tmp/declared" || fail "option-tables failed"
[ "$(wc -l <"$tmp/declared")" -gt 10 ] || fail "option-tables listed only: $(cat "$tmp/declared")"
sort "$tmp/documented" >"$tmp/documented.sorted"
sort "$tmp/declared" >"$tmp/declared.sorted"
if ! diff -u "$tmp/declared.sorted" "$tmp/documented.sorted" >"$tmp/diff"; then
        echo "--- what the code declares (-) and what paf.conf.5.scd documents (+):" >&2
        cat "$tmp/diff" >&2
        fail "paf.conf(5) and the option tables differ: update doc/paf.conf.5.scd"
fi
ok "paf.conf(5) documents the $(wc -l <"$tmp/declared") options the code declares, with their types, ranges and defaults"

# Its example is a file paf takes.
mkdir "$tmp/conf" "$tmp/conf/tls"
sed -n '/^# EXAMPLE$/,/^# SEE ALSO$/p' "$doc/paf.conf.5.scd" | sed -n '/^```$/,/^```$/p' |
        sed '1d;$d' >"$tmp/conf/paf.conf"
grep -q '^\[listen\.' "$tmp/conf/paf.conf" || fail "no example in paf.conf.5.scd"
if command -v openssl >/dev/null 2>&1; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
                -subj /CN=localhost -keyout "$tmp/conf/tls/web.key" -out "$tmp/conf/tls/web.pem" \
                2>/dev/null || fail "openssl could not make a certificate"
fi
"$PAF_BIN" config check "$tmp/conf/paf.conf" >"$tmp/check" 2>&1 ||
        fail "paf.conf(5)'s example is refused: $(cat "$tmp/check")"
ok "paf.conf(5)'s example passes paf config check"

# ---- paf(1) against the commands ----
# Every command of `paf help` has its section.
"$PAF_BIN" help >"$tmp/help"
cmds=$(sed -n '/^Commands:/,/^$/s/^  \([a-z]\+\( [a-z]\+\)\?\).*/\1/p' "$tmp/help" |
        sed 's/ URL$//; s/ FILE$//')
[ -n "$cmds" ] || fail "no commands in paf help: $(cat "$tmp/help")"
for cmd in $(echo "$cmds" | tr ' ' '_'); do
        cmd=$(echo "$cmd" | tr '_' ' ')
        grep -qE "^## paf $cmd( |\$)" "$doc/paf.1.scd" || fail "paf(1) has no section for \"paf $cmd\""
done
ok "paf(1) has a section for each command: $(echo "$cmds" | tr '\n' ',' | sed 's/,$//')"

# Every option a command's --help names is documented, in its command's section.
for cmd in serve get plugins cert bench; do
        "$PAF_BIN" "$cmd" --help >"$tmp/help" 2>&1 || fail "paf $cmd --help failed"
        sed -n "/^## paf $cmd /,/^## /p" "$doc/paf.1.scd" >"$tmp/section"
        opts=$(grep -oE '(^|[ ,(])--[a-z][a-z0-9.-]*[a-z0-9]' "$tmp/help" | sed 's/^[ ,(]//' | sort -u)
        shorts=$(grep -oE '^ +-[A-Za-z],' "$tmp/help" | tr -d ' ,' | sort -u)
        [ -n "$opts" ] || fail "paf $cmd --help lists no option"
        for o in $opts $shorts; do
                grep -qF -- "*$o*" "$tmp/section" ||
                        fail "paf(1), section \"paf $cmd\", does not document $o (from paf $cmd --help)"
        done
done
ok "paf(1) documents every option of paf serve, get, plugins, cert and bench --help"

echo "all $n_checks checks passed"
