#!/bin/sh
# doc/embed.sh IN FILE OUT — copies the scdoc page IN to OUT with the line
# "%EXAMPLE%" replaced by FILE as a literal block: the man page shows the
# example that the test suite builds, not a copy that could drift from it.
set -eu
grep -qx '%EXAMPLE%' "$1" || { echo "embed.sh: $1 has no %EXAMPLE% line" >&2; exit 1; }
{
        echo '```'
        # scdoc reads backslashes as escapes, in literal blocks too.
        sed 's/\\/\\\\/g' "$2"
        echo '```'
} >"$3.block"
sed -e "/^%EXAMPLE%\$/{r $3.block" -e 'd}' "$1" >"$3.tmp"
rm -f "$3.block"
mv "$3.tmp" "$3"
