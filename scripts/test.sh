#!/usr/bin/env bash
# The test command: install what is missing, then lint, typecheck and run the whole suite against
# the real Temporal dev server, moto and the emulators (started by the suite itself on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test-tools
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
npx tsc -p tsconfig.json --noEmit
npx eslint .
npx prettier --check . >/dev/null || { echo "prettier: run npx prettier --write ." >&2; exit 1; }
npx jest --runInBand "$@"
