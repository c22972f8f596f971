#!/usr/bin/env bash
# The ABI check of libpaf and the plugin headers, on libabigail (abidw, abidiff).
#
#   abi-check.sh dump LIB HEADERS_DIR OUT.abi
#       The ABI of LIB as paf records it: types of HEADERS_DIR only, no
#       source locations or paths, so that a baseline changes only with
#       the ABI.
#   abi-check.sh compare OLD.abi NEW.abi HEADERS_DIR
#       0: the same, or only compatible additions (listed); 1: an
#       incompatible change (the report says which); 2: cannot compare.
#   abi-check.sh bump OLD_DIR NEW_DIR HEADERS_DIR
#       Two baselines (*.abi and VERSION, as abi/ holds them): 0 when NEW
#       is compatible with OLD, or comes with a new ABI major and soversion;
#       1 otherwise.
#   abi-check.sh check SRCDIR LIBPAF PLUGIN_PROBE
#       The meson test: the build's libpaf and plugin headers (PLUGIN_PROBE,
#       a library that makes them reachable) against SRCDIR/abi, the
#       baseline's VERSION against the tree's, and, in a git checkout, a
#       changed baseline against the one before it (see bump).
#
# What is compatible: new functions and variables, new enumerators, and
# members appended to the structs a size field describes (those with a
# size_t struct_size member, and paf_option_spec, whose stride the
# descriptor's option_spec_size gives): the reader of such a struct knows
# how much of it the other side has. Anything else that abidiff reports (a
# removed function, a changed signature, a member inserted, moved or
# retyped, a struct grown that programs allocate or index) is not.
set -uo pipefail

# Structs that may grow at the end although they carry no struct_size.
EXTRA_EXTENSIBLE=(paf_option_spec)

die() {
        echo "abi-check: $*" >&2
        exit 2
}

need_tools() {
        command -v abidw >/dev/null && command -v abidiff >/dev/null ||
                die "abidw and abidiff not found: install abigail-tools (scripts/deps.sh)"
}

cmd_dump() {
        local lib=$1 headers=$2 out=$3
        [ -f "$lib" ] || die "$lib: no such library"
        # --exported-interfaces-only: without it, abidw 2.2 ties a function
        # another file of the library calls to that caller's declaration, and
        # loses the definition and every change to it.
        abidw --exported-interfaces-only --headers-dir "$headers" --drop-private-types \
                --no-show-locs --no-corpus-path --no-comp-dir-path --no-elf-needed \
                --type-id-style hash --out-file "$out" "$lib" || die "abidw failed on $lib"
}

# The suppression specification that lets the extensible structs of the
# headers in dir grow at the end.
suppressions() {
        local dir=$1 names
        names=$(awk '
                /^(typedef )?struct [A-Za-z_0-9]+ \{/ { name = $0; sub(/^(typedef )?struct /, "", name); sub(/ .*/, "", name); ext = 0; inside = 1; next }
                inside && /^[ \t]+size_t struct_size;/ { ext = 1 }
                inside && /^\}/ { if (ext) print name; inside = 0 }
        ' "$dir"/*.h | sort -u)
        names="$names ${EXTRA_EXTENSIBLE[*]}"
        # shellcheck disable=SC2086 # word splitting wanted
        names=$(printf '%s\n' $names | sort -u | paste -sd'|')
        printf '[suppress_type]\n  type_kind = struct\n  name_regexp = ^(%s)$\n' "$names"
        printf '  has_data_member_inserted_at = end\n  has_size_change = yes\n'
}

# compare OLD NEW HEADERS: the report on stdout; the verdict as exit status.
cmd_compare() {
        local old=$1 new=$2 headers=$3 tmp rc
        tmp=$(mktemp -d) || die "mktemp failed"
        suppressions "$headers" >"$tmp/suppr"
        abidiff --suppressions "$tmp/suppr" "$old" "$new" >"$tmp/report" 2>&1
        rc=$?
        if [ $((rc & 3)) -ne 0 ]; then
                cat "$tmp/report"
                rm -rf "$tmp"
                die "abidiff could not compare $old and $new (exit $rc)"
        fi
        local verdict=0
        if [ $((rc & 8)) -ne 0 ]; then
                verdict=1
        elif [ $((rc & 4)) -ne 0 ]; then
                # An ABI change abidiff does not call incompatible: only additions
                # are. Every summary line must say 0 Removed, 0 Changed.
                local summaries
                summaries=$(grep 'changes summary:' "$tmp/report")
                if [ -z "$summaries" ] ||
                   echo "$summaries" | grep -Eq '(^|[^0-9])[1-9][0-9]* (Removed|Changed)' ||
                   grep -Eq 'SONAME changed|architecture changed' "$tmp/report"; then
                        verdict=1
                fi
        fi
        cat "$tmp/report"
        rm -rf "$tmp"
        return $verdict
}

# VERSION: "abi MAJOR.MINOR" and "soversion N" lines.
version_field() {
        sed -n "s/^$2 //p" "$1" | head -n 1
}

cmd_bump() {
        local old=$1 new=$2 headers=$3 incompatible=0 f
        for f in "$old"/*.abi; do
                local name
                name=$(basename "$f")
                [ -f "$new/$name" ] || { echo "abi-check: $new/$name is gone"; incompatible=1; continue; }
                local out rc
                out=$(cmd_compare "$f" "$new/$name" "$headers")
                rc=$?
                [ $rc -eq 2 ] && exit 2
                if [ $rc -ne 0 ]; then
                        echo "abi-check: $name changed incompatibly:"
                        echo "$out"
                        incompatible=1
                fi
        done
        local oa ob na nb os ns
        oa=$(version_field "$old/VERSION" abi) os=$(version_field "$old/VERSION" soversion)
        na=$(version_field "$new/VERSION" abi) ns=$(version_field "$new/VERSION" soversion)
        [ -n "$oa" ] && [ -n "$os" ] && [ -n "$na" ] && [ -n "$ns" ] ||
                die "VERSION of $old or $new lacks its \"abi M.N\" or \"soversion N\" line"
        ob=${oa#*.} oa=${oa%%.*} nb=${na#*.} na=${na%%.*}
        if [ $incompatible -eq 1 ]; then
                if [ "$na" -gt "$oa" ] && [ "$ns" -gt "$os" ]; then
                        echo "abi-check: incompatible, with the ABI bumped from $oa.$ob (soversion $os) to $na.$nb (soversion $ns)"
                        return 0
                fi
                echo "abi-check: the baseline changed incompatibly but the ABI is still $na.$nb (soversion $ns), was $oa.$ob (soversion $os):"
                echo "  raise PAF_ABI_MAJOR (include/paf/plugin.h) and the soversion (core/meson.build) in the same commit"
                return 1
        fi
        if [ "$na" -lt "$oa" ] || { [ "$na" -eq "$oa" ] && [ "$nb" -lt "$ob" ]; } || [ "$ns" -lt "$os" ]; then
                echo "abi-check: the ABI went back from $oa.$ob (soversion $os) to $na.$nb (soversion $ns)"
                return 1
        fi
        return 0
}

# The previous baseline, from git, into dir: the one of HEAD when the
# working tree's differs from it, else the one before HEAD's last change to
# it when HEAD made that change. 1 when there is none to compare with. Read
# only, without optional locks: a test never holds the index another git
# command wants.
previous_baseline() {
        local src=$1 dir=$2 rev=
        command -v git >/dev/null && git --no-optional-locks -C "$src" rev-parse --git-dir >/dev/null 2>&1 || return 1
        git --no-optional-locks -C "$src" cat-file -e HEAD:abi/VERSION 2>/dev/null || return 1
        if ! git --no-optional-locks -C "$src" diff --quiet HEAD -- abi 2>/dev/null; then
                rev=HEAD
        elif git --no-optional-locks -C "$src" cat-file -e HEAD^:abi/VERSION 2>/dev/null &&
             ! git --no-optional-locks -C "$src" diff --quiet HEAD^ HEAD -- abi 2>/dev/null; then
                rev=HEAD^
        else
                return 1
        fi
        local f
        for f in $(git --no-optional-locks -C "$src" ls-tree --name-only "$rev" abi/); do
                git --no-optional-locks -C "$src" show "$rev:$f" >"$dir/$(basename "$f")" || return 1
        done
        echo "$rev"
}

cmd_check() {
        local src=$1 libpaf=$2 probe=$3 base=$1/abi headers=$1/include/paf
        need_tools
        [ -f "$base/VERSION" ] && [ -f "$base/libpaf.abi" ] && [ -f "$base/plugin.abi" ] ||
                { echo "abi-check: no baseline in $base: run scripts/abi-baseline.sh"; exit 1; }
        if command -v readelf >/dev/null && ! readelf -S "$libpaf" | grep -q '\.debug_info'; then
                echo "abi-check: $libpaf has no debug info (built without -g): nothing to compare"
                exit 77
        fi
        local tmp
        tmp=$(mktemp -d) || die "mktemp failed"
        # shellcheck disable=SC2064 # expanded now, on purpose
        trap "rm -rf '$tmp'" EXIT
        cmd_dump "$libpaf" "$headers" "$tmp/libpaf.abi"
        cmd_dump "$probe" "$headers" "$tmp/plugin.abi"
        local arch_base arch_build
        arch_base=$(sed -n "1s/.*architecture='\([^']*\)'.*/\1/p" "$base/libpaf.abi")
        arch_build=$(sed -n "1s/.*architecture='\([^']*\)'.*/\1/p" "$tmp/libpaf.abi")
        if [ "$arch_base" != "$arch_build" ]; then
                echo "abi-check: the baseline is of $arch_base, this build of $arch_build: not comparable"
                exit 77
        fi

        local failed=0 name rc out
        for name in libpaf plugin; do
                out=$(cmd_compare "$base/$name.abi" "$tmp/$name.abi" "$headers")
                rc=$?
                [ $rc -eq 2 ] && exit 1
                if [ $rc -ne 0 ]; then
                        echo "abi-check: FAIL: incompatible change against abi/$name.abi:"
                        echo "$out"
                        echo "abi-check: restore the ABI, or bump PAF_ABI_MAJOR (include/paf/plugin.h) and the"
                        echo "  soversion (core/meson.build) and run scripts/abi-baseline.sh, in the same commit"
                        failed=1
                elif echo "$out" | grep -Eq '(^|[^0-9])[1-9][0-9]* Added'; then
                        echo "abi-check: abi/$name.abi: compatible additions (scripts/abi-baseline.sh records them):"
                        echo "$out"
                elif [ -n "$out" ]; then
                        echo "abi-check: abi/$name.abi: no incompatible change:"
                        echo "$out"
                else
                        echo "abi-check: abi/$name.abi: the same"
                fi
        done

        # The baseline says which ABI it is; the tree must agree.
        local major minor so want have
        major=$(sed -n 's/^#define PAF_ABI_MAJOR \([0-9]*\).*/\1/p' "$headers/plugin.h")
        minor=$(sed -n 's/^#define PAF_ABI_MINOR \([0-9]*\).*/\1/p' "$headers/plugin.h")
        so=$(sed -n "1s/.*soname='[^']*\.so\.\([0-9]*\)'.*/\1/p" "$tmp/libpaf.abi")
        want="abi $major.$minor, soversion $so"
        have="abi $(version_field "$base/VERSION" abi), soversion $(version_field "$base/VERSION" soversion)"
        if [ "$want" != "$have" ]; then
                echo "abi-check: FAIL: abi/VERSION says $have, the tree is $want: run scripts/abi-baseline.sh"
                failed=1
        fi

        # A baseline that changed goes with a bump when it changed incompatibly.
        mkdir "$tmp/previous"
        local rev
        if rev=$(previous_baseline "$src" "$tmp/previous"); then
                echo "abi-check: the baseline changed since $rev; comparing the two"
                out=$(cmd_bump "$tmp/previous" "$base" "$headers")
                rc=$?
                echo "$out"
                [ $rc -eq 0 ] || failed=1
        fi
        [ $failed -eq 0 ] && echo "abi-check: ok"
        exit $failed
}

[ $# -ge 1 ] || die "usage: abi-check.sh dump|compare|bump|check ARGS…"
cmd=$1
shift
case $cmd in
dump) [ $# -eq 3 ] || die "usage: dump LIB HEADERS_DIR OUT.abi"; need_tools; cmd_dump "$@" ;;
compare) [ $# -eq 3 ] || die "usage: compare OLD.abi NEW.abi HEADERS_DIR"; need_tools; cmd_compare "$@" ;;
bump) [ $# -eq 3 ] || die "usage: bump OLD_DIR NEW_DIR HEADERS_DIR"; need_tools; cmd_bump "$@" ;;
check) [ $# -eq 3 ] || die "usage: check SRCDIR LIBPAF PLUGIN_PROBE"; cmd_check "$@" ;;
suppressions) [ $# -eq 1 ] || die "usage: suppressions HEADERS_DIR"; suppressions "$@" ;;
*) die "unknown command \"$cmd\" (dump, compare, bump, check)" ;;
esac
