#!/usr/bin/env bash
# Installs what is missing, builds into build/, and runs paf's main job:
# `paf serve` on its embedded default (the current directory on
# http://127.0.0.1:8080). Arguments go to `paf serve`:
#   ./run.sh --listen 8080 --listen /tmp/paf.sock --root /srv/www
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
scripts/build.sh build
export PAF_PLUGIN_PATH=$PWD/build/plugins${PAF_PLUGIN_PATH:+:$PAF_PLUGIN_PATH}
exec build/tools/paf serve "$@"
