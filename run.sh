#!/usr/bin/env bash
# Installs what is missing, builds into build/, and runs paf's main job:
# `paf serve` on http://127.0.0.1:8080, serving the demo directory
# examples/www/ (never the repository itself). Arguments go to `paf serve`
# and win over these defaults:
#   ./run.sh --listen 8080 --listen /tmp/paf.sock --root /srv/www
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
scripts/build.sh build
export PAF_PLUGIN_PATH=$PWD/build/plugins${PAF_PLUGIN_PATH:+:$PAF_PLUGIN_PATH}
# The last --root given wins: the user's, when there is one.
exec build/tools/paf serve --root examples/www "$@"
