#!/usr/bin/env bash
# Runs a command with one of the test legs' Node runtimes first on PATH:
#   scripts/with-node.sh 24 node node_modules/jest/bin/jest.js --runInBand test/happy-path.test.ts
# The runtimes are pinned in scripts/setup.sh and installed by `scripts/setup.sh --test-tools` into
# .runtimes/nodeNN/ (docs/DEVELOPMENT.md "Runtimes"). Children that tests spawn use process.execPath
# or `node` from PATH, so the whole process tree runs on that Node.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
major="${1:?usage: scripts/with-node.sh MAJOR COMMAND [ARGS...]}"
shift
bin="$ROOT/.runtimes/node$major/path"
if [ ! -x "$bin/node" ]; then
  echo "with-node: no Node $major in $bin: run 'bash scripts/setup.sh --test-tools'" >&2
  exit 1
fi
export PATH="$bin:$PATH"
exec "$@"
