#!/bin/sh
# doc/scdoc.sh SCDOC IN OUT — renders an scdoc page to roff, neither hyphenated nor justified:
# these pages are full of identifiers, paths and options that a reader copies, and a
# hyphen that is not in the name would break them.
set -eu
"$1" <"$2" >"$3.tmp"
sed -i '/^\.TH /a .nh\n.ad l' "$3.tmp"
mv "$3.tmp" "$3"
