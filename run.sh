#!/usr/bin/env bash
# Installs what is missing, builds into build/, and runs paf's main job.
set -euo pipefail
cd "$(dirname "$0")"
scripts/deps.sh
scripts/build.sh build
export PAF_PLUGIN_PATH=$PWD/build/plugins${PAF_PLUGIN_PATH:+:$PAF_PLUGIN_PATH}
# Until the HTTP engine lands, the main job lists the transports paf can use.
exec build/tools/paf "${@:-plugins}"
